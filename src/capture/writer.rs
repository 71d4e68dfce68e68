//! Writing a capture file: the recorder pushes events as they arrive; the writer batches
//! them into blocks, writes each block as soon as it is sealed (so a killed recorder
//! loses at most the unsealed batch), and appends the index when recording stops.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use super::block::{BlockBuilder, DEFAULT_ZSTD_LEVEL, MAX_BLOCK_RAW_LEN};
use super::event::{Event, KindCounts};
use super::header::{encode_preamble, Header};
use super::index::{BlockInfo, Index};
use super::latency::LatencyHistogram;
use super::scrub_report::ScrubReport;

/// When the writer seals a block on its own (the recorder also seals one at least once
/// a second with [`CaptureWriter::flush_block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Seal after this many events.
    pub max_block_events: u32,
    /// Seal once the encoded (uncompressed) events reach this many bytes; capped at
    /// 32 MiB so every block stays readable.
    pub max_block_bytes: usize,
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_block_events: 4096,
            max_block_bytes: 1 << 20,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// What a finished capture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// File size, index included.
    pub bytes_written: u64,
    pub events_written: u64,
    pub blocks_written: u64,
    /// Events per kind, in `EventKind::ALL` order.
    pub counts: KindCounts,
}

/// Holds an exclusive flock on a file being written, from before its header, until the
/// writer is dropped: a follower (`capture::follow`) that can take a shared one knows
/// no writer is at it any more. A follower's probe holds its shared lock for an
/// instant, so a busy lock is tried again for a while. A file system without locks
/// loses only that signal (followers then wait for the file to stop growing).
fn lock_while_written(file: &File) {
    for _ in 0..50 {
        match file.try_lock() {
            Ok(()) | Err(std::fs::TryLockError::Error(_)) => return,
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
        }
    }
}

/// Writes one capture file. Call [`CaptureWriter::finish`] to write the index; a file
/// left without one (crash, kill) is still readable by scanning its blocks.
///
/// A write that fails (a full disk) leaves the file as it was before it: the bytes of
/// the cut write are cut off again, and the block is kept, so that calling
/// [`CaptureWriter::flush_block`] tries it again once there is room, or
/// [`CaptureWriter::write_index`] closes the file with the blocks it holds.
pub struct CaptureWriter {
    file: File,
    /// File offset of the next byte written: the end of the last whole block.
    pos: u64,
    builder: BlockBuilder,
    /// The sealed block on its way to the file (frame header and payload), and where it
    /// goes in the index; it stays here until a write of it succeeds.
    block_bytes: Vec<u8>,
    unwritten: Option<BlockInfo>,
    /// A write failed: the file may hold bytes past `pos`, and its position may be
    /// anywhere. They are cut off before the next write.
    cut: bool,
    index: Index,
    options: WriterOptions,
    events_written: u64,
    counts: KindCounts,
}

impl CaptureWriter {
    /// Create (or truncate) `path` with mode 0600 and write the header.
    pub fn create(path: impl AsRef<Path>, header: &Header) -> io::Result<CaptureWriter> {
        Self::create_with(path, header, WriterOptions::default())
    }

    /// A file whose header could not be written is removed again: it would not open.
    pub fn create_with(
        path: impl AsRef<Path>,
        header: &Header,
        options: WriterOptions,
    ) -> io::Result<CaptureWriter> {
        let options = WriterOptions {
            max_block_events: options.max_block_events.max(1),
            max_block_bytes: options.max_block_bytes.clamp(1, MAX_BLOCK_RAW_LEN),
            zstd_level: options.zstd_level,
        };
        let preamble = encode_preamble(header)?;
        let builder = BlockBuilder::new(options.zstd_level)?;
        let mut file = create_private(path.as_ref())?;
        lock_while_written(&file);
        if let Err(e) = file.write_all(&preamble) {
            drop(file);
            let _ = std::fs::remove_file(path.as_ref());
            return Err(e);
        }
        Ok(CaptureWriter {
            file,
            pos: preamble.len() as u64,
            builder,
            block_bytes: Vec::new(),
            unwritten: None,
            cut: false,
            index: Index::default(),
            options,
            events_written: 0,
            counts: KindCounts::default(),
        })
    }

    /// Buffer one event, sealing and writing a block when the batch is full. When the
    /// write fails, the event is kept all the same (in the block that waits).
    pub fn push(&mut self, event: &Event) -> io::Result<()> {
        self.builder.push(event)?;
        if self.builder.len() >= self.options.max_block_events
            || self.builder.raw_len() >= self.options.max_block_bytes
        {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Seal the buffered events into a block and write it through to the file (not
    /// fsynced), after the block of a failed write, if one waits. Nothing happens when no
    /// event is buffered and no block waits.
    pub fn flush_block(&mut self) -> io::Result<()> {
        self.write_unwritten()?;
        if let Some(block) = self.builder.seal()? {
            self.block_bytes.clear();
            self.block_bytes.extend_from_slice(&block.frame.to_bytes());
            self.block_bytes.extend_from_slice(block.payload);
            self.unwritten = Some(BlockInfo {
                offset: 0,
                len: block.frame.frame_len(),
                event_count: block.frame.event_count,
                first_ts: block.frame.first_ts,
                last_ts: block.frame.last_ts,
                counts: block.counts,
            });
        }
        self.write_unwritten()
    }

    fn write_unwritten(&mut self) -> io::Result<()> {
        let Some(block) = self.unwritten else {
            return Ok(());
        };
        self.cut_back()?;
        if let Err(e) = self.file.write_all(&self.block_bytes) {
            self.cut = true;
            // The cut write's bytes go at once: they are room that others may need.
            let _ = self.cut_back();
            return Err(e);
        }
        self.index.blocks.push(BlockInfo {
            offset: self.pos,
            ..block
        });
        self.unwritten = None;
        self.pos += block.len;
        self.events_written += u64::from(block.event_count);
        for (total, n) in self.counts.iter_mut().zip(block.counts) {
            *total += n;
        }
        Ok(())
    }

    /// After a failed write, cut the file back to its last whole block and write on from
    /// there.
    fn cut_back(&mut self) -> io::Result<()> {
        if self.cut {
            self.file.set_len(self.pos)?;
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.cut = false;
        }
        Ok(())
    }

    /// What redaction did to this file's packets, kept in its index (`None`: secrets
    /// were kept).
    pub fn set_redaction(&mut self, report: Option<ScrubReport>) {
        self.index.redaction = report;
    }

    /// The latency histograms this file's index keeps (the recording's so far).
    pub fn set_latency(&mut self, histograms: Vec<LatencyHistogram>) {
        self.index.latency = histograms;
    }

    /// Write the last block and the index, and fsync the file.
    pub fn finish(mut self) -> io::Result<WriteSummary> {
        self.flush_block()?;
        self.write_index()
    }

    /// Write the index of the blocks written so far, and fsync the file: what `finish`
    /// does after the last block. After a write that failed for good, this closes the
    /// file with the blocks it holds; the events not written
    /// ([`CaptureWriter::unwritten_events`]) are left out. When it fails, the file ends
    /// at its last whole block (it opens by scanning), and it may be tried again.
    pub fn write_index(&mut self) -> io::Result<WriteSummary> {
        let tail = self.index.encode_tail(self.pos)?;
        // The index goes right after the last whole block, whatever came after it.
        self.cut = true;
        self.cut_back()?;
        let written = self
            .file
            .write_all(&tail)
            .and_then(|()| self.file.sync_all());
        // Blocks written after this go over the index, and a new one follows them.
        self.cut = true;
        if let Err(e) = written {
            let _ = self.cut_back();
            return Err(e);
        }
        Ok(WriteSummary {
            bytes_written: self.pos + tail.len() as u64,
            events_written: self.events_written,
            blocks_written: self.index.blocks.len() as u64,
            counts: self.counts,
        })
    }

    /// Bytes in the file so far (header and written blocks).
    pub fn bytes_written(&self) -> u64 {
        self.pos
    }

    /// Events in written blocks (not counting the ones still buffered).
    pub fn events_written(&self) -> u64 {
        self.events_written
    }

    /// Events in written blocks per kind, in `EventKind::ALL` order.
    pub fn counts(&self) -> KindCounts {
        self.counts
    }

    /// Events pushed but not yet written.
    pub fn buffered_events(&self) -> u32 {
        self.builder.len()
    }

    /// Events pushed and not in the file: buffered, or in a block whose write failed.
    pub fn unwritten_events(&self) -> u64 {
        u64::from(self.builder.len()) + self.unwritten.map_or(0, |b| u64::from(b.event_count))
    }

    pub fn blocks_written(&self) -> u64 {
        self.index.blocks.len() as u64
    }
}

/// Open for writing, readable and writable by the owner only: captures hold secrets.
#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above only applies to a new file; an existing one is narrowed too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

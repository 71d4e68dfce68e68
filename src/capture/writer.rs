//! Writing a capture file: the recorder pushes events as they arrive; the writer batches
//! them into blocks, writes each block as soon as it is sealed (so a killed recorder
//! loses at most the unsealed batch), and appends the index when recording stops.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::block::{BlockBuilder, DEFAULT_ZSTD_LEVEL, MAX_BLOCK_RAW_LEN};
use super::event::{Event, KindCounts};
use super::header::{encode_preamble, Header};
use super::index::{BlockInfo, Index};
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

/// Writes one capture file. Call [`CaptureWriter::finish`] to write the index; a file
/// left without one (crash, kill) is still readable by scanning its blocks.
pub struct CaptureWriter {
    out: BufWriter<File>,
    /// File offset of the next byte written.
    pos: u64,
    builder: BlockBuilder,
    index: Index,
    options: WriterOptions,
    events_written: u64,
    counts: KindCounts,
    /// After a failed write the file's tail is unknown, so the writer refuses more work
    /// rather than record wrong offsets in the index.
    failed: bool,
}

impl CaptureWriter {
    /// Create (or truncate) `path` with mode 0600 and write the header.
    pub fn create(path: impl AsRef<Path>, header: &Header) -> io::Result<CaptureWriter> {
        Self::create_with(path, header, WriterOptions::default())
    }

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
        let file = create_private(path.as_ref())?;
        let mut out = BufWriter::with_capacity(256 << 10, file);
        out.write_all(&preamble)?;
        out.flush()?;
        Ok(CaptureWriter {
            out,
            pos: preamble.len() as u64,
            builder,
            index: Index::default(),
            options,
            events_written: 0,
            counts: KindCounts::default(),
            failed: false,
        })
    }

    /// Buffer one event, sealing and writing a block when the batch is full.
    pub fn push(&mut self, event: &Event) -> io::Result<()> {
        self.check_usable()?;
        self.builder.push(event)?;
        if self.builder.len() >= self.options.max_block_events
            || self.builder.raw_len() >= self.options.max_block_bytes
        {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Seal the buffered events into a block and write it through to the file (not
    /// fsynced). Nothing happens when no event is buffered.
    pub fn flush_block(&mut self) -> io::Result<()> {
        self.check_usable()?;
        let result = self.write_block();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn write_block(&mut self) -> io::Result<()> {
        let Some(block) = self.builder.seal()? else {
            return Ok(());
        };
        let frame_bytes = block.frame.to_bytes();
        self.out.write_all(&frame_bytes)?;
        self.out.write_all(block.payload)?;
        self.out.flush()?;
        let len = block.frame.frame_len();
        self.index.blocks.push(BlockInfo {
            offset: self.pos,
            len,
            event_count: block.frame.event_count,
            first_ts: block.frame.first_ts,
            last_ts: block.frame.last_ts,
            counts: block.counts,
        });
        self.pos += len;
        self.events_written += u64::from(block.frame.event_count);
        for (total, n) in self.counts.iter_mut().zip(block.counts) {
            *total += n;
        }
        Ok(())
    }

    /// What redaction did to this file's packets, kept in its index (`None`: secrets
    /// were kept).
    pub fn set_redaction(&mut self, report: Option<ScrubReport>) {
        self.index.redaction = report;
    }

    /// Write the last block and the index, and fsync the file.
    pub fn finish(mut self) -> io::Result<WriteSummary> {
        self.flush_block()?;
        let tail = self.index.encode_tail(self.pos)?;
        self.out.write_all(&tail)?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
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

    pub fn blocks_written(&self) -> u64 {
        self.index.blocks.len() as u64
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to the capture file failed; the writer is stopped",
            ));
        }
        Ok(())
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

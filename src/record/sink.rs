//! The writer thread: takes batches of events from the drain loop, writes them into the
//! capture file, flushes a block at least once a second, and rotates files for long
//! incidents (a flight recorder keeping the newest N). Compression and the redaction of
//! secrets run here, off the thread that drains the kernel buffer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::capture::{CaptureWriter, Event, EventKind, Header};
use crate::redact::{ScrubReport, SecretScrubber};

pub enum SinkMessage {
    Events(Vec<Event>),
    Flush,
}

/// What was written, over every file.
#[derive(Debug, Default, Clone)]
pub struct SinkSummary {
    pub files: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    pub events: u64,
    pub bytes: u64,
    pub counts: [u64; 3],
    /// What was redacted; None when secrets were kept.
    pub redaction: Option<ScrubReport>,
}

#[derive(Debug, Clone)]
pub struct Rotation {
    pub size_bytes: Option<u64>,
    pub interval: Option<Duration>,
    pub keep: Option<usize>,
}

impl Rotation {
    fn enabled(&self) -> bool {
        self.size_bytes.is_some() || self.interval.is_some()
    }
}

/// `capture.etr` → `capture-0003.etr` when rotating.
pub fn rotated_path(base: &Path, n: u32) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".into());
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{n:04}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n:04}"),
    };
    base.with_file_name(name)
}

struct Sink {
    base: PathBuf,
    header: Header,
    rotation: Rotation,
    writer: Option<CaptureWriter>,
    opened_at: Instant,
    file_no: u32,
    summary: SinkSummary,
    /// Bytes and events of the files already finished.
    done_bytes: u64,
    scrubber: Option<SecretScrubber>,
}

impl Sink {
    fn current_path(&self) -> PathBuf {
        if self.rotation.enabled() {
            rotated_path(&self.base, self.file_no)
        } else {
            self.base.clone()
        }
    }

    fn open_next(&mut self) -> Result<()> {
        self.file_no += 1;
        let path = self.current_path();
        let writer = CaptureWriter::create(&path, &self.header)
            .with_context(|| format!("creating capture file {}", path.display()))?;
        self.writer = Some(writer);
        self.opened_at = Instant::now();
        self.summary.files.push(path);
        if let Some(keep) = self.rotation.keep {
            while self.summary.files.len() - self.summary.removed.len() > keep {
                let old = self.summary.files[self.summary.removed.len()].clone();
                let _ = std::fs::remove_file(&old);
                self.summary.removed.push(old);
            }
        }
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let written = w.finish().context("writing the capture index")?;
            self.done_bytes += written.bytes_written;
        }
        Ok(())
    }

    fn write(&mut self, events: Vec<Event>) -> Result<()> {
        let Some(mut scrubber) = self.scrubber.take() else {
            return self.write_final(events);
        };
        let mut ready = Vec::with_capacity(events.len());
        for ev in events {
            scrubber.push(ev, &mut ready);
        }
        self.scrubber = Some(scrubber);
        self.write_final(ready)
    }

    /// Writes events that need no more redaction.
    fn write_final(&mut self, events: Vec<Event>) -> Result<()> {
        for ev in events {
            self.summary.events += 1;
            self.summary.counts[kind_index(ev.kind())] += 1;
            let w = self.writer.as_mut().expect("a file is open while writing");
            w.push(ev).context("writing events")?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush_block().context("flushing a block")?;
        }
        let due = self.rotation.enabled()
            && (self
                .rotation
                .size_bytes
                .is_some_and(|s| self.current_bytes() >= s)
                || self
                    .rotation
                    .interval
                    .is_some_and(|i| self.opened_at.elapsed() >= i));
        if due {
            self.finish_current()?;
            self.open_next()?;
        }
        Ok(())
    }

    fn current_bytes(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.bytes_written())
    }
}

fn kind_index(kind: EventKind) -> usize {
    kind.slot()
}

/// Running totals the drain loop reads for its status line.
#[derive(Debug, Default)]
pub struct SinkProgress {
    pub bytes: std::sync::atomic::AtomicU64,
}

pub fn spawn(
    base: PathBuf,
    header: Header,
    rotation: Rotation,
    scrubber: Option<SecretScrubber>,
    progress: std::sync::Arc<SinkProgress>,
) -> Result<(SyncSender<SinkMessage>, JoinHandle<Result<SinkSummary>>)> {
    let mut sink = Sink {
        base,
        header,
        rotation,
        writer: None,
        opened_at: Instant::now(),
        file_no: 0,
        summary: SinkSummary::default(),
        done_bytes: 0,
        scrubber,
    };
    // Open the first file here so that an unwritable path fails before anything attaches.
    sink.open_next()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<SinkMessage>(256);
    let handle = std::thread::Builder::new()
        .name("capture-writer".into())
        .spawn(move || run(sink, rx, progress))?;
    Ok((tx, handle))
}

fn run(
    mut sink: Sink,
    rx: Receiver<SinkMessage>,
    progress: std::sync::Arc<SinkProgress>,
) -> Result<SinkSummary> {
    for msg in rx {
        match msg {
            SinkMessage::Events(evs) => sink.write(evs)?,
            SinkMessage::Flush => sink.flush()?,
        }
        progress.bytes.store(
            sink.done_bytes + sink.current_bytes(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    if let Some(mut scrubber) = sink.scrubber.take() {
        let rest: Vec<Event> = scrubber.finish().collect();
        sink.write_final(rest)?;
        sink.summary.redaction = Some(scrubber.report().clone());
    }
    sink.finish_current()?;
    sink.summary.bytes = sink.done_bytes;
    Ok(sink.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_the_extension() {
        assert_eq!(
            rotated_path(Path::new("/tmp/cap.etr"), 3),
            PathBuf::from("/tmp/cap-0003.etr")
        );
        assert_eq!(
            rotated_path(Path::new("cap"), 12),
            PathBuf::from("cap-0012")
        );
    }
}

//! The writer thread: takes batches of events from the drain loop, writes them into the
//! capture file, flushes a block at least once a second, and rotates files for long
//! incidents (a flight recorder keeping the newest N). Compression and the redaction of
//! secrets run here, and the per-CPU buffers' events are put back in order (`order`), off
//! the thread that drains the kernel buffers.
//!
//! A write that fails stops the writer (its summary says why) after it has closed the
//! file with the index of the blocks written. On a full disk, a flight recorder
//! (rotation with `--keep`) first removes the oldest files of its own set, one at a
//! time, and goes on.

use std::collections::HashSet;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;

use super::layout;
use super::order::{TimeOrder, HOLD_NS};
use super::priority::{WriterPriority, WriterSchedule};
use crate::capture::{
    rotated_path, CaptureWriter, Event, Header, KindCounts, LatencyHistogram, ProcessChange,
    ProcessInfo, WriteSummary,
};
use crate::redact::{ScrubReport, SecretScrubber};
use crate::units::human_bytes;

pub enum SinkMessage {
    /// Events as the kernel wrote them (bpf/events.h), parsed here.
    Raw(RawBatch),
    /// Events made in userspace (loss records, etcd processes that start and end). A
    /// process's start comes before any batch with its events.
    Events(Vec<Event>),
    /// Processes the programs traced for a moment and let go: their events are dropped
    /// (until one of these pids starts as a traced etcd again).
    Untraced(Vec<u32>),
    /// Write out a block: everything handed over before `drained_ns` (less
    /// `order::HOLD_NS`) has been sent by now.
    Flush { drained_ns: u64 },
    /// The kernel's latency histograms since the recording started: the index of every
    /// file finished from now on holds these (or later ones).
    Latency(Vec<LatencyHistogram>),
}

/// Raw events copied out of the kernel's buffers, each behind its length.
#[derive(Debug, Default)]
pub struct RawBatch {
    bytes: Vec<u8>,
    /// When the last drain that added to this batch started (CLOCK_MONOTONIC, ns): what
    /// the CPUs handed over well before then is here or in an earlier batch.
    drained_ns: u64,
}

impl RawBatch {
    /// An empty batch with room for `bytes` without growing (growing a batch copies it,
    /// in the drain loop that competes with etcd for the CPU).
    pub fn with_capacity(bytes: usize) -> RawBatch {
        RawBatch {
            bytes: Vec::with_capacity(bytes),
            drained_ns: 0,
        }
    }

    pub fn drained_at(&mut self, ns: u64) {
        self.drained_ns = ns;
    }

    pub fn push(&mut self, raw: &[u8]) {
        // Kernel events are at most a few hundred KiB: the length fits in 32 bits.
        self.bytes
            .extend_from_slice(&(raw.len() as u32).to_ne_bytes());
        self.bytes.extend_from_slice(raw);
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The batch's bytes, to be shared by the events parsed from them (see
    /// [`raw_ranges`]) rather than copied out one by one.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.bytes)
    }
}

/// Where each raw event of a batch's bytes lies (each is behind its length).
pub fn raw_ranges(bytes: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (len, _) = bytes.get(at..)?.split_first_chunk::<4>()?;
        let start = at + 4;
        let end = start
            .saturating_add(u32::from_ne_bytes(*len) as usize)
            .min(bytes.len());
        at = end;
        Some(start..end)
    })
}

/// What was written, over every file.
#[derive(Debug, Default, Clone)]
pub struct SinkSummary {
    pub files: Vec<PathBuf>,
    /// The files of `files` removed again, oldest first: by `--keep`, or
    /// (`removed_for_room` of them) to make room on a full disk.
    pub removed: Vec<PathBuf>,
    pub removed_for_room: usize,
    /// Events in the files (removed ones too).
    pub events: u64,
    pub bytes: u64,
    /// Events per kind, in `EventKind::ALL` order.
    pub counts: KindCounts,
    /// What was redacted; None when secrets were kept.
    pub redaction: Option<ScrubReport>,
    /// Raw events that could not be parsed (a layout mismatch: a bug), and the first
    /// reason.
    pub malformed: u64,
    pub first_malformed: Option<String>,
    /// Parts of WAL writes longer than one event, joined to their writes' events, and
    /// those that found no place (one before them was lost).
    pub joined_parts: u64,
    pub unjoined_parts: u64,
    /// Why the writer stopped before the end of the recording, if it did.
    pub failure: Option<SinkFailure>,
}

/// A write that failed for good, and what became of the file being written.
#[derive(Debug, Clone)]
pub struct SinkFailure {
    /// With the file, in the OS's words: "writing the capture x.etr: No space left on
    /// device (os error 28)".
    pub error: String,
    /// The file that was open; none when a new one could not be created.
    pub closed: Option<ClosedFile>,
}

/// The file that was open when the writer stopped.
#[derive(Debug, Clone)]
pub struct ClosedFile {
    pub path: PathBuf,
    /// Its whole blocks, the only ones it keeps.
    pub holds: WriteSummary,
    /// Why its index could not be written either, if it could not: the file then ends
    /// at its last whole block and opens by scanning.
    pub index_error: Option<String>,
}

/// What sending to a writer that has stopped returns; the writer's summary says why it
/// stopped.
#[derive(Debug, thiserror::Error)]
#[error("the capture writer stopped")]
pub struct WriterStopped;

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

/// The file being written and the set it belongs to, with what went into them: what a
/// write needs to make room on a full disk.
struct Output {
    rotation: Rotation,
    writer: Option<CaptureWriter>,
    summary: SinkSummary,
}

impl Output {
    /// Runs `op` on the open file. On a full disk, when the set's oldest files may go
    /// (`--keep`), removes the oldest, says so, and runs `op` again, until it succeeds
    /// or no file is left but the open one. Errors name the file.
    fn write<T>(&mut self, mut op: impl FnMut(&mut CaptureWriter) -> io::Result<T>) -> Result<T> {
        loop {
            let w = self.writer.as_mut().expect("a file is open while writing");
            match op(w) {
                Ok(v) => return Ok(v),
                Err(e) if self.make_room(&e) => continue,
                Err(e) => {
                    let path = self.summary.files.last().cloned().unwrap_or_default();
                    return Err(anyhow::Error::new(e)
                        .context(format!("writing the capture {}", path.display())));
                }
            }
        }
    }

    /// Writes an event that needs no more redaction.
    fn push(&mut self, ev: &Event) -> Result<()> {
        self.summary.events += 1;
        self.summary.counts[ev.kind().slot()] += 1;
        // A failed push keeps the event in the block that waits: a retry writes that.
        let mut pushed = false;
        self.write(|w| {
            if std::mem::replace(&mut pushed, true) {
                w.flush_block()
            } else {
                w.push(ev)
            }
        })
    }

    /// Whether `error` is a full disk and the oldest file of the set was removed (never
    /// the open one), so that writing may be tried again.
    fn make_room(&mut self, error: &io::Error) -> bool {
        let full = matches!(
            error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
        if !full || self.rotation.keep.is_none() {
            return false;
        }
        let Some((old, removed)) = self.remove_oldest() else {
            return false;
        };
        self.summary.removed_for_room += 1;
        match removed {
            Ok(size) => eprintln!(
                "disk full: removed the oldest capture {} ({}) to go on",
                old.display(),
                human_bytes(size)
            ),
            Err(e) => eprintln!(
                "disk full: could not remove the oldest capture {} ({e}); trying the next",
                old.display()
            ),
        }
        true
    }

    /// Removes the oldest file of the set that is not open: its path and size. `None`
    /// when no such file is left.
    fn remove_oldest(&mut self) -> Option<(PathBuf, io::Result<u64>)> {
        let s = &mut self.summary;
        let open = usize::from(self.writer.is_some());
        if s.files.len() - s.removed.len() <= open {
            return None;
        }
        let old = s.files[s.removed.len()].clone();
        let size = std::fs::metadata(&old).map(|m| m.len());
        let removed = std::fs::remove_file(&old).and(size);
        s.removed.push(old.clone());
        Some((old, removed))
    }
}

struct Sink {
    base: PathBuf,
    header: Header,
    out: Output,
    opened_at: Instant,
    file_no: u32,
    /// Bytes and events of the files already finished.
    done_bytes: u64,
    done_events: u64,
    done_counts: KindCounts,
    /// Events of the per-CPU buffers on their way back into one order.
    order: TimeOrder,
    scrubber: Option<SecretScrubber>,
    /// The scrubber's report when the current file was opened: each file's index keeps
    /// its own share.
    scrubbed_before: ScrubReport,
    /// Processes let go (SinkMessage::Untraced).
    untraced: HashSet<u32>,
    /// The latest latency histograms (SinkMessage::Latency).
    latency: Vec<LatencyHistogram>,
}

impl Sink {
    fn current_path(&self) -> PathBuf {
        if self.out.rotation.enabled() {
            rotated_path(&self.base, self.file_no)
        } else {
            self.base.clone()
        }
    }

    /// Open the first file, or the next of a rotated set once the current one is
    /// finished.
    fn open_next(&mut self) -> Result<()> {
        let next = self.create_next()?;
        self.install(next);
        Ok(())
    }

    /// Create the next file (writing its header) without finishing the current one: a
    /// follower that sees the current file finished finds the next one there already.
    fn create_next(&mut self) -> Result<(PathBuf, CaptureWriter)> {
        self.file_no += 1;
        let path = self.current_path();
        let writer = loop {
            match CaptureWriter::create(&path, &self.header) {
                Ok(w) => break w,
                Err(e) if self.out.make_room(&e) => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("creating capture file {}", path.display())))
                }
            }
        };
        Ok((path, writer))
    }

    fn install(&mut self, (path, writer): (PathBuf, CaptureWriter)) {
        self.out.writer = Some(writer);
        self.opened_at = Instant::now();
        self.out.summary.files.push(path);
        if let Some(keep) = self.out.rotation.keep {
            let s = &self.out.summary;
            for _ in keep..s.files.len() - s.removed.len() {
                self.out.remove_oldest();
            }
        }
    }

    /// Give the open file its share of the redaction report, as it stands, and the
    /// recording's latency histograms.
    fn fill_index(&mut self) {
        let report = self.scrubber.as_ref().map(SecretScrubber::report);
        if let Some(w) = self.out.writer.as_mut() {
            w.set_redaction(report.map(|r| r.since(&self.scrubbed_before)));
            w.set_latency(self.latency.clone());
        }
    }

    /// Write the open file's last block and index, and count it as done.
    fn finish_current(&mut self) -> Result<()> {
        if self.out.writer.is_none() {
            return Ok(());
        }
        self.fill_index();
        self.out.write(CaptureWriter::flush_block)?;
        let written = self.out.write(CaptureWriter::write_index)?;
        // Finished: dropping the writer lets its followers stop waiting for it.
        self.out.writer = None;
        self.count_done(&written);
        if let Some(scrubber) = &self.scrubber {
            self.scrubbed_before = scrubber.report().clone();
        }
        Ok(())
    }

    fn count_done(&mut self, written: &WriteSummary) {
        self.done_bytes += written.bytes_written;
        self.done_events += written.events_written;
        for (total, n) in self.done_counts.iter_mut().zip(written.counts) {
            *total += n;
        }
    }

    /// After a write failed for good: close the open file with the index of its whole
    /// blocks if that can be written, and count only what the files hold.
    fn stop_on(&mut self, error: anyhow::Error) {
        self.fill_index();
        let closed = self.out.writer.take().map(|mut w| {
            let (holds, index_error) = match w.write_index() {
                Ok(written) => (written, None),
                Err(e) => {
                    let holds = WriteSummary {
                        bytes_written: w.bytes_written(),
                        events_written: w.events_written(),
                        blocks_written: w.blocks_written(),
                        counts: w.counts(),
                    };
                    (holds, Some(e.to_string()))
                }
            };
            self.count_done(&holds);
            ClosedFile {
                path: self.out.summary.files.last().cloned().unwrap_or_default(),
                holds,
                index_error,
            }
        });
        let s = &mut self.out.summary;
        s.events = self.done_events;
        s.counts = self.done_counts;
        s.redaction = self.scrubber.as_ref().map(|r| r.report().clone());
        s.failure = Some(SinkFailure {
            error: format!("{error:#}"),
            closed,
        });
    }

    /// Parse a batch straight into the time order, counting what does not parse. Each
    /// kernel batch says which staging area it came from; single events (the perf
    /// buffer's) come on their own.
    fn take_raw(&mut self, batch: RawBatch) {
        let bytes = batch.into_bytes();
        for raw in raw_ranges(&bytes) {
            let area = layout::batch_stage(&bytes[raw.clone()]);
            for event in layout::batch_events(&bytes, raw) {
                if let Ok(Some(more)) = event
                    .as_ref()
                    .map(|range| layout::syscall_more(&bytes, range.clone()))
                {
                    match more {
                        Ok(more) => self.join_more(area, more),
                        Err(e) => self.malformed(e),
                    }
                    continue;
                }
                match event.and_then(|range| layout::parse(&bytes, range)) {
                    Ok(ev) if self.is_untraced(&ev) => {}
                    Ok(ev) => match area {
                        Some(area) => self.order.push_from(area as usize, ev),
                        None => self.order.push(ev),
                    },
                    Err(e) => self.malformed(e),
                }
            }
        }
    }

    fn malformed(&mut self, e: layout::LayoutError) {
        self.out.summary.malformed += 1;
        if self.out.summary.first_malformed.is_none() {
            self.out.summary.first_malformed = Some(e.to_string());
        }
    }

    /// More of a long WAL write's data, onto its event, which came just before from the
    /// same area. A part that does not start where the event's data ends (one before it
    /// was lost, counted by the kernel) is left out: the write's data ends short, and the
    /// WAL decoding says what it could not read.
    fn join_more(&mut self, area: Option<u32>, more: layout::SyscallMore) {
        let area = area.map(|a| a as usize);
        match self.order.recent_syscall_mut(area, more.tid, more.enter_ns) {
            Some(s) if s.data.len() == more.at as usize => {
                let data = std::mem::take(&mut s.data);
                // The event's own data is a slice of its batch: copied once, into room for
                // the whole write; later parts then append in place.
                let mut joined = data.try_into_mut().unwrap_or_else(|shared| {
                    let whole = usize::try_from(s.ret).unwrap_or(0);
                    let mut v = bytes::BytesMut::with_capacity(
                        whole.clamp(shared.len(), layout::MAX_WAL_WRITE as usize),
                    );
                    v.extend_from_slice(&shared);
                    v
                });
                joined.extend_from_slice(&more.data);
                s.data = joined.freeze();
                self.out.summary.joined_parts += 1;
            }
            _ => self.out.summary.unjoined_parts += 1,
        }
    }

    /// An event of a process let go.
    fn is_untraced(&self, ev: &Event) -> bool {
        if self.untraced.is_empty() {
            return false;
        }
        let pid = match ev {
            Event::Syscall(s) => s.pid,
            Event::Tls(t) => t.pid,
            _ => return false,
        };
        self.untraced.contains(&pid)
    }

    /// Events made in userspace; a process that starts is traced, whatever its pid was
    /// before.
    fn take_events(&mut self, events: Vec<Event>) {
        for ev in events {
            if let Event::Process(p) = &ev {
                if matches!(p.change, ProcessChange::Start { .. }) {
                    self.untraced.remove(&p.pid);
                }
            }
            self.order.push(ev);
        }
    }

    /// Writes, in time order, the events every CPU had certainly handed over by a drain
    /// that started at `drained_ns` (later ones wait for the next batch or flush), or
    /// with `None` at the end, all that wait.
    fn write_handed_over(&mut self, drained_ns: Option<u64>) -> Result<()> {
        let before = drained_ns.map(|ns| ns.saturating_sub(HOLD_NS));
        let Sink {
            order,
            scrubber,
            out,
            header,
            ..
        } = self;
        let mut result = Ok(());
        // One event at a time through redaction and into the block, while it is in the
        // cache: no batch-sized vectors of events between the stages.
        let mut write = |ev: Event| {
            if result.is_ok() {
                note_process(header, &ev);
                result = out.push(&ev);
            }
        };
        order.release(before, |ev| match scrubber.as_mut() {
            Some(scrubber) => scrubber.push(ev, &mut write),
            None => write(ev),
        });
        result
    }

    fn flush(&mut self) -> Result<()> {
        if self.out.writer.is_some() {
            self.out.write(CaptureWriter::flush_block)?;
        }
        let rotation = &self.out.rotation;
        let due = rotation.enabled()
            && (rotation
                .size_bytes
                .is_some_and(|s| self.current_bytes() >= s)
                || rotation
                    .interval
                    .is_some_and(|i| self.opened_at.elapsed() >= i));
        if due {
            let next = self.create_next()?;
            self.finish_current()?;
            self.install(next);
        }
        Ok(())
    }

    fn current_bytes(&self) -> u64 {
        self.out.writer.as_ref().map_or(0, |w| w.bytes_written())
    }
}

/// The header of the next file (rotation) lists the etcd processes running when it is
/// opened.
fn note_process(header: &mut Header, ev: &Event) {
    if let Event::Process(p) = ev {
        header.processes.retain(|known| known.pid != p.pid);
        if let ProcessChange::Start { data_dir, cmdline } = &p.change {
            header.processes.push(ProcessInfo {
                pid: p.pid,
                cmdline: cmdline.clone(),
                data_dir: data_dir.clone(),
            });
        }
    }
}

/// Running totals the drain loop reads for its status line.
#[derive(Debug, Default)]
pub struct SinkProgress {
    pub bytes: std::sync::atomic::AtomicU64,
}

/// The drain loop's end of the channel to the writer thread; it keeps the writer's
/// priority in step with the batches waiting.
pub struct SinkSender {
    tx: SyncSender<SinkMessage>,
    schedule: Arc<WriterSchedule>,
}

impl SinkSender {
    pub fn send(&self, msg: SinkMessage) -> Result<()> {
        // Counted before sending: the writer may take it at once, and a send that
        // blocks (the channel full) has then already raised a lagging writer.
        if matches!(msg, SinkMessage::Flush { .. }) {
            self.schedule.flush_asked();
        }
        self.schedule.sent();
        self.tx.send(msg).map_err(|_| WriterStopped.into())
    }

    /// Raise an idle writer that has fallen behind (called each round of the drain loop).
    pub fn check_writer(&self) {
        self.schedule.check();
    }

    /// The recording ends: the writer finishes at normal priority.
    pub fn finishing(&self) {
        self.schedule.finish();
    }

    /// How many times an idle writer had to be raised to keep up.
    pub fn writer_raises(&self) -> u64 {
        self.schedule.raises()
    }
}

pub fn spawn(
    base: PathBuf,
    header: Header,
    rotation: Rotation,
    scrubber: Option<SecretScrubber>,
    priority: WriterPriority,
    progress: Arc<SinkProgress>,
) -> Result<(SinkSender, JoinHandle<SinkSummary>)> {
    let mut sink = Sink {
        base,
        header,
        out: Output {
            rotation,
            writer: None,
            summary: SinkSummary::default(),
        },
        opened_at: Instant::now(),
        file_no: 0,
        done_bytes: 0,
        done_events: 0,
        done_counts: KindCounts::default(),
        order: TimeOrder::default(),
        scrubber,
        scrubbed_before: ScrubReport::default(),
        untraced: HashSet::new(),
        latency: Vec::new(),
    };
    // Open the first file here so that an unwritable path fails before anything attaches.
    sink.open_next()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<SinkMessage>(256);
    let schedule = Arc::new(WriterSchedule::new(priority));
    let writer_schedule = schedule.clone();
    let handle = std::thread::Builder::new()
        .name("capture-writer".into())
        .spawn(move || run(sink, rx, &writer_schedule, &progress))?;
    Ok((SinkSender { tx, schedule }, handle))
}

/// The writer thread: everything sent, into the files, until the channel closes or a
/// write fails for good.
fn run(
    mut sink: Sink,
    rx: Receiver<SinkMessage>,
    schedule: &WriterSchedule,
    progress: &SinkProgress,
) -> SinkSummary {
    if let Err(e) = schedule.enter_writer() {
        eprintln!("note: the capture writer runs at normal priority ({e})");
    }
    // The channel closes when this returns, even on a failure: the drain loop then
    // stops, and detaches, while the file is being closed.
    if let Err(e) = write_all(&mut sink, rx, schedule, progress) {
        sink.stop_on(e);
    }
    sink.out.summary.bytes = sink.done_bytes;
    sink.out.summary
}

fn write_all(
    sink: &mut Sink,
    rx: Receiver<SinkMessage>,
    schedule: &WriterSchedule,
    progress: &SinkProgress,
) -> Result<()> {
    for msg in rx {
        schedule.taken();
        match msg {
            SinkMessage::Raw(batch) => {
                let drained_ns = batch.drained_ns;
                sink.take_raw(batch);
                sink.write_handed_over(Some(drained_ns))?
            }
            SinkMessage::Events(evs) => sink.take_events(evs),
            SinkMessage::Untraced(pids) => sink.untraced.extend(pids),
            SinkMessage::Latency(histograms) => sink.latency = histograms,
            SinkMessage::Flush { drained_ns } => {
                sink.write_handed_over(Some(drained_ns))?;
                sink.flush()?;
                schedule.flush_done();
            }
        }
        progress.bytes.store(
            sink.done_bytes + sink.current_bytes(),
            std::sync::atomic::Ordering::Relaxed,
        );
        schedule.settle();
    }
    sink.write_handed_over(None)?;
    if let Some(scrubber) = sink.scrubber.as_mut() {
        for ev in scrubber.finish() {
            note_process(&mut sink.header, &ev);
            sink.out.push(&ev)?;
        }
        sink.out.summary.redaction = Some(scrubber.report().clone());
    }
    sink.finish_current()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn raw_batches_give_back_what_was_pushed() {
        let mut batch = RawBatch::default();
        let raws: [&[u8]; 3] = [b"abc", b"", b"0123456789"];
        for raw in raws {
            batch.push(raw);
        }
        assert_eq!(batch.len_bytes(), 3 * 4 + 13);
        let bytes = batch.into_bytes();
        let got: Vec<&[u8]> = raw_ranges(&bytes).map(|r| &bytes[r]).collect();
        assert_eq!(got, raws);
    }

    /// A writer of one file at `path`, without rotation or redaction.
    fn spawn_plain(path: &Path) -> (SinkSender, JoinHandle<SinkSummary>) {
        let rotation = Rotation {
            size_bytes: None,
            interval: None,
            keep: None,
        };
        spawn(
            path.to_path_buf(),
            Header::default(),
            rotation,
            None,
            WriterPriority::Normal,
            Arc::new(SinkProgress::default()),
        )
        .unwrap()
    }

    /// An event that came too close to its drain to be written with its batch (it waits
    /// for other CPUs' older ones) is written by the next flush, though no batch follows:
    /// a recorder killed in a quiet spell keeps it.
    #[test]
    fn a_flush_writes_the_events_that_waited() {
        let dir = crate::sandbox::ScratchDir::new("etcd-trace-sink").unwrap();
        let path = dir.0.join("quiet.etr");
        let (tx, writer) = spawn_plain(&path);
        // A socket read that left the kernel at 350 ns, drained at 1 ms: it waits.
        let mut batch = RawBatch::default();
        batch.push(&layout::syscall_raw(3, 2, &[], b""));
        batch.drained_at(1_000_000);
        tx.send(SinkMessage::Raw(batch)).unwrap();
        tx.send(SinkMessage::Flush {
            drained_ns: 1_000_000_000,
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            let events = crate::capture::CaptureReader::open(&path)
                .map(|r| r.events().count())
                .unwrap_or(0);
            if events > 0 || Instant::now() > deadline {
                break events;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(events, 1, "the flush wrote the event that waited");
        drop(tx);
        assert_eq!(writer.join().unwrap().events, 1);
    }

    /// The parts of a long WAL write are joined onto its event, in order; a part that
    /// does not follow on (one before it lost) is counted and left out.
    #[test]
    fn parts_of_a_long_write_are_joined_to_it() {
        let dir = crate::sandbox::ScratchDir::new("etcd-trace-sink-more").unwrap();
        let path = dir.0.join("more.etr");
        let (tx, writer) = spawn_plain(&path);
        let mut batch = RawBatch::default();
        batch.push(&layout::syscall_raw(0, 1, &["0.wal", "wal"], b"head-"));
        batch.push(&layout::syscall_more_raw(5, b"middle-"));
        batch.push(&layout::syscall_more_raw(12, b"end"));
        batch.push(&layout::syscall_more_raw(40, b"after a lost part"));
        tx.send(SinkMessage::Raw(batch)).unwrap();
        drop(tx);
        let summary = writer.join().unwrap();
        assert_eq!((summary.events, summary.malformed), (1, 0));
        assert_eq!((summary.joined_parts, summary.unjoined_parts), (2, 1));
        let reader = crate::capture::CaptureReader::open(&path).unwrap();
        let Some(crate::capture::ReadItem::Event(Event::Syscall(s))) = reader.events().next()
        else {
            panic!("no syscall event")
        };
        assert_eq!(&s.data[..], b"head-middle-end");
    }

    /// A raw TLS event goes through the sink into the file as a TLS event, counted as
    /// one, in time order with the rest.
    #[test]
    fn raw_tls_events_are_written() {
        let dir = crate::sandbox::ScratchDir::new("etcd-trace-sink-tls").unwrap();
        let path = dir.0.join("tls.etr");
        let (tx, writer) = spawn_plain(&path);
        let mut batch = RawBatch::default();
        // Handed over at 500 ns and at 350 ns.
        batch.push(&layout::tls_raw(1, 4, 5, b"hel"));
        batch.push(&layout::syscall_raw(3, 2, &[], b""));
        tx.send(SinkMessage::Raw(batch)).unwrap();
        drop(tx);
        let summary = writer.join().unwrap();
        assert_eq!(summary.events, 2);
        assert_eq!(summary.malformed, 0);
        assert_eq!(summary.counts[crate::capture::EventKind::Tls.slot()], 1);
        let reader = crate::capture::CaptureReader::open(&path).unwrap();
        let events: Vec<Event> = reader
            .events()
            .map(|item| match item {
                crate::capture::ReadItem::Event(ev) => ev,
                crate::capture::ReadItem::Damaged(d) => panic!("{d}"),
            })
            .collect();
        let [Event::Syscall(_), Event::Tls(tls)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!((tls.conn_id, tls.len, &tls.data[..]), (9, 5, &b"hel"[..]));
        assert!(tls.endpoints.is_some());
    }
}

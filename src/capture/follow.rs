//! Reading a capture while the recorder writes it (`--follow`), for answers during an
//! incident rather than after it. The recorder writes whole blocks at least once a
//! second and appends the index and trailer when it stops; a follower polls the file
//! for the next whole block, takes a block not yet whole as "not yet" (not damage),
//! moves on to the next file of a rotated recording when the current one is finished
//! (the recorder creates the next before it finishes the current), and ends when the
//! last file is finished. A recorder that died (SIGKILL: no trailer ever) is noticed
//! by its flock on the file being gone, so the follower does not wait forever.
//!
//! While nothing arrives, the follower says how far the capture's clock has surely
//! moved ([`FollowItem::Quiet`]), so analyses that hold records for a while (ordering,
//! linking) can let them out without waiting for the next event.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::block::{FrameHeader, PayloadDecoder, SyscallContents, FRAME_HEADER_LEN};
use super::error::CaptureError;
use super::event::Event;
use super::header::{CaptureFormat, Header};
use super::index::{Index, INDEX_MAGIC, TRAILER_LEN};
use super::reader::{find_frame, read_at, read_preamble, Damage, ReadItem, Source};
use super::set::{not_one_recording, rotated_path, rotation_number};

/// How often the file is looked at when nothing new was found.
const POLL: Duration = Duration::from_millis(100);
/// How long a file to follow may take to appear, and its header to be written.
const APPEAR_WITHIN: Duration = Duration::from_secs(10);
/// A file without a trailer whose recorder's lock is gone is given up once it has not
/// grown for this long.
const DEAD_AFTER: Duration = Duration::from_secs(1);
/// Where the recorder's lock cannot be seen (a file system without flock), a file that has not grown for
/// this long is taken as abandoned.
const DEAD_WITHOUT_LOCKS: Duration = Duration::from_secs(60);
/// How far behind the capture's clock an event may still reach the file: the
/// recorder hands events to its writer four times a second and writes a block at
/// least once a second.
pub const DEFAULT_LAG: Duration = Duration::from_millis(1500);
/// How far the capture's clock may be ahead of the last event seen plus the time since.
const CLOCK_SLACK_NS: u64 = 1_500_000_000;

/// One step of a followed capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowItem {
    Read(ReadItem),
    /// Nothing new: every event earlier than `now_ns` (capture time) is in.
    Quiet {
        now_ns: u64,
    },
}

/// Why following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEnd {
    /// The recorder finished the last file.
    Finished,
    /// Asked to stop (Ctrl-C).
    Interrupted,
    /// No recorder writes the file any more, and it was never finished.
    RecorderGone { path: PathBuf },
}

/// A capture followed as it is written; an iterator that waits for what comes next.
pub struct Follower {
    path: PathBuf,
    source: Source,
    format: CaptureFormat,
    header: Header,
    /// Offset of the next block to read.
    pos: u64,
    payload: Vec<u8>,
    decoder: PayloadDecoder,
    current: VecDeque<Event>,
    contents: SyscallContents,
    stop: Arc<AtomicBool>,
    lag_ns: u64,
    first_ts: Option<u64>,
    /// The newest event time read, and when it was read.
    newest: Option<(u64, Instant)>,
    /// The file's length when last looked at, and since when it has been that long.
    len: u64,
    unchanged_since: Instant,
    /// Since when a frame header that does not verify has sat at `pos`.
    bad_since: Option<Instant>,
    /// Items read while waiting for the first block, not handed out yet.
    pending: VecDeque<FollowItem>,
    end: Option<FollowEnd>,
}

impl Follower {
    /// Follow the capture named by `paths`: a file, the files of a rotated recording or
    /// their directory (from the oldest file there), or the `-o` name given to a
    /// rotating recorder. Waits a little for a file that is just being created.
    pub fn open(paths: &[PathBuf], stop: Arc<AtomicBool>) -> Result<Follower, CaptureError> {
        let first = first_file(paths)?;
        let (source, format, header, pos) = open_when_ready(&first)?;
        Ok(Follower {
            path: first,
            source,
            format,
            header,
            pos,
            payload: Vec::new(),
            decoder: PayloadDecoder::new(format),
            current: VecDeque::new(),
            contents: SyscallContents::Built,
            stop,
            lag_ns: DEFAULT_LAG.as_nanos() as u64,
            first_ts: None,
            newest: None,
            len: 0,
            unchanged_since: Instant::now(),
            bad_since: None,
            pending: VecDeque::new(),
            end: None,
        })
    }

    /// Syscalls from the next block on come with an empty path and data, as
    /// [`super::Events`] can give them.
    pub fn skip_syscall_contents(&mut self) {
        self.contents = SyscallContents::Skipped;
    }

    /// How far behind the capture's clock events may still arrive: a shorter lag lets
    /// held records out sooner, at the risk of a late event finding them gone.
    pub fn set_lag(&mut self, lag: Duration) {
        self.lag_ns = lag.as_nanos().try_into().unwrap_or(u64::MAX);
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The time of the first event, waiting for the first block (what a finished
    /// capture's offsets count from); `None` when the capture ended without one.
    pub fn first_ts(&mut self) -> Option<u64> {
        while self.first_ts.is_none() && self.end.is_none() {
            if let Some(item) = self.step() {
                self.pending.push_back(item);
            }
        }
        self.first_ts
    }

    /// Why following ended, once it has.
    pub fn end(&self) -> Option<&FollowEnd> {
        self.end.as_ref()
    }

    /// The next event, damage or quiet spell; `None` at the end.
    fn step(&mut self) -> Option<FollowItem> {
        loop {
            if let Some(ev) = self.current.pop_front() {
                return Some(FollowItem::Read(ReadItem::Event(ev)));
            }
            if self.end.is_some() {
                return None;
            }
            if self.stop.load(Ordering::Relaxed) {
                self.end = Some(FollowEnd::Interrupted);
                return None;
            }
            match self.read_next() {
                Ok(Progress::Read) => continue,
                Ok(Progress::Damaged(d)) => return Some(FollowItem::Read(ReadItem::Damaged(d))),
                Ok(Progress::Finished) => match self.next_file() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.end = Some(FollowEnd::Finished);
                        return None;
                    }
                    Err(e) => return Some(self.give_up(format!("{e}"))),
                },
                Ok(Progress::NotYet) => {}
                Err(e) => return Some(self.give_up(format!("reading failed: {e}"))),
            }
            if let Some(item) = self.check_recorder() {
                return Some(item);
            }
            std::thread::sleep(POLL);
            if let Some(now_ns) = self.capture_now() {
                return Some(FollowItem::Quiet { now_ns });
            }
        }
    }

    /// Try to read the block at `pos`.
    fn read_next(&mut self) -> io::Result<Progress> {
        let len = self.source_len()?;
        if len != self.len {
            self.len = len;
            self.unchanged_since = Instant::now();
        }
        let avail = len.saturating_sub(self.pos);
        let mut head = [0u8; FRAME_HEADER_LEN];
        let n = avail.min(FRAME_HEADER_LEN as u64) as usize;
        read_at(&self.source, &mut head[..n], self.pos)?;
        if n >= INDEX_MAGIC.len() && head[..INDEX_MAGIC.len()] == INDEX_MAGIC {
            return self.finished(len);
        }
        if n < FRAME_HEADER_LEN {
            return Ok(Progress::NotYet);
        }
        let frame = match FrameHeader::parse(&head) {
            Ok(frame) => frame,
            Err(e) => return self.bad_frame(len, e.to_string()),
        };
        self.bad_since = None;
        if self.pos.saturating_add(frame.frame_len()) > len {
            return Ok(Progress::NotYet);
        }
        self.payload.clear();
        self.payload.resize(frame.payload_len as usize, 0);
        read_at(
            &self.source,
            &mut self.payload,
            self.pos + FRAME_HEADER_LEN as u64,
        )?;
        let at = self.pos;
        self.pos += frame.frame_len();
        match self
            .decoder
            .decode_into(&frame, &self.payload, self.contents, &mut self.current)
        {
            Ok(()) => {
                if frame.event_count > 0 {
                    self.first_ts.get_or_insert(frame.first_ts);
                    let newest = self
                        .newest
                        .map_or(frame.last_ts, |(t, _)| t.max(frame.last_ts));
                    self.newest = Some((newest, Instant::now()));
                }
                Ok(Progress::Read)
            }
            Err(e) => Ok(Progress::Damaged(Damage {
                offset: at,
                reason: format!("block {e}"),
                events_lost: Some(u64::from(frame.event_count)),
                ts_range: Some((frame.first_ts, frame.last_ts)),
            })),
        }
    }

    /// An index section at `pos`: the file is finished once its trailer points there.
    fn finished(&self, len: u64) -> io::Result<Progress> {
        if len < self.pos + TRAILER_LEN as u64 {
            return Ok(Progress::NotYet);
        }
        let mut trailer = [0u8; TRAILER_LEN];
        read_at(&self.source, &mut trailer, len - TRAILER_LEN as u64)?;
        Ok(match Index::parse_trailer(&trailer) {
            Some(at) if at == self.pos => Progress::Finished,
            _ => Progress::NotYet,
        })
    }

    /// A frame header that does not verify: bytes still arriving, or damage once they
    /// have stayed so for a while; then the next block that verifies is read.
    fn bad_frame(&mut self, len: u64, why: String) -> io::Result<Progress> {
        let since = *self.bad_since.get_or_insert_with(Instant::now);
        if since.elapsed() < DEAD_AFTER {
            return Ok(Progress::NotYet);
        }
        let Some(next) = find_frame(&self.source, self.pos + 1, len)? else {
            return Ok(Progress::NotYet);
        };
        self.bad_since = None;
        let at = std::mem::replace(&mut self.pos, next);
        Ok(Progress::Damaged(Damage {
            offset: at,
            reason: format!(
                "invalid block frame header ({why}); skipped {} bytes to the next valid block",
                next - at
            ),
            events_lost: None,
            ts_range: None,
        }))
    }

    /// Move to the next file of a rotated recording, if there is one.
    fn next_file(&mut self) -> Result<bool, CaptureError> {
        let Some((base, n)) = rotation_number(&self.path) else {
            return Ok(false);
        };
        let next = rotated_path(&base, n.saturating_add(1));
        if !next.exists() {
            return Ok(false);
        }
        let (source, format, header, pos) = open_when_ready(&next)?;
        if let Some(why) = not_one_recording(&self.header, &header) {
            return Err(CaptureError::Set {
                reason: format!(
                    "{} does not continue {} ({why}): stopped following",
                    next.display(),
                    self.path.display()
                ),
            });
        }
        self.path = next;
        self.source = source;
        self.format = format;
        self.decoder = PayloadDecoder::new(format);
        self.pos = pos;
        self.len = 0;
        self.unchanged_since = Instant::now();
        Ok(true)
    }

    /// Whether a recorder still writes the file; ends following when none does.
    fn check_recorder(&mut self) -> Option<FollowItem> {
        let quiet = self.unchanged_since.elapsed();
        let gone = match recorder_holds(&self.source) {
            Some(true) => false,
            Some(false) => quiet >= DEAD_AFTER,
            None => quiet >= DEAD_WITHOUT_LOCKS,
        };
        if !gone {
            return None;
        }
        self.end = Some(FollowEnd::RecorderGone {
            path: self.path.clone(),
        });
        // What is left past the last whole block is a block the recorder never
        // finished writing.
        let left = self.len.saturating_sub(self.pos);
        (left > 0).then(|| {
            FollowItem::Read(ReadItem::Damaged(Damage {
                offset: self.pos,
                reason: format!(
                    "the file ends {left} bytes into a block (the recorder stopped while \
                     writing it)"
                ),
                events_lost: None,
                ts_range: None,
            }))
        })
    }

    fn give_up(&mut self, reason: String) -> FollowItem {
        self.end = Some(FollowEnd::RecorderGone {
            path: self.path.clone(),
        });
        FollowItem::Read(ReadItem::Damaged(Damage {
            offset: self.pos,
            reason,
            events_lost: None,
            ts_range: None,
        }))
    }

    fn source_len(&self) -> io::Result<u64> {
        match &self.source {
            Source::File(f) => Ok(f.metadata()?.len()),
            Source::Bytes(b) => Ok(b.len() as u64),
        }
    }

    /// The capture time before which every event is surely in: the newest event read
    /// plus the time since, or the wall clock through the header's clock offset when
    /// that is later (on the recording host it is the recorder's clock), at most
    /// [`CLOCK_SLACK_NS`] past it; less the lag.
    fn capture_now(&self) -> Option<u64> {
        let (newest, read_at) = self.newest?;
        let since = u64::try_from(read_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let floor = newest.saturating_add(since);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let by_wall =
            i128::try_from(wall).unwrap_or(i128::MAX) - i128::from(self.header.clock_offset_ns);
        let by_wall = u64::try_from(by_wall.max(0)).unwrap_or(u64::MAX);
        let now = by_wall.clamp(floor, floor.saturating_add(CLOCK_SLACK_NS));
        Some(now.saturating_sub(self.lag_ns))
    }
}

enum Progress {
    Read,
    Damaged(Damage),
    Finished,
    NotYet,
}

impl Iterator for Follower {
    type Item = FollowItem;

    fn next(&mut self) -> Option<FollowItem> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        self.step()
    }
}

/// The file to start with: the oldest of a set or directory, or file 1 of a rotating
/// recorder's `-o` name.
fn first_file(paths: &[PathBuf]) -> Result<PathBuf, CaptureError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(super::set::expand(std::slice::from_ref(path))?);
        } else if path.exists() {
            files.push(path.clone());
        } else if rotated_path(path, 1).exists() {
            files.push(rotated_path(path, 1));
        } else {
            files.push(path.clone());
        }
    }
    if files.len() > 1 {
        if let Some(odd) = files.iter().find(|p| rotation_number(p).is_none()) {
            return Err(CaptureError::Set {
                reason: format!(
                    "{} is not named as a file of a rotated recording (NAME-0001.etr): \
                     --follow reads one recording, on from its oldest file; follow one file \
                     at a time, or give the recording's directory",
                    odd.display()
                ),
            });
        }
    }
    files.sort_by_key(|p| rotation_number(p).map(|(_, n)| n));
    files.into_iter().next().ok_or_else(|| CaptureError::Set {
        reason: "no capture file to follow".into(),
    })
}

/// Open a file once it exists and its header is whole.
fn open_when_ready(path: &Path) -> Result<(Source, CaptureFormat, Header, u64), CaptureError> {
    let started = Instant::now();
    loop {
        let attempt = File::open(path)
            .map_err(|source| CaptureError::Io {
                path: path.to_path_buf(),
                source,
            })
            .and_then(|file| {
                let source = Source::File(file);
                let len = match &source {
                    Source::File(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
                    Source::Bytes(b) => b.len() as u64,
                };
                let (format, header, start) = read_preamble(&source, len, path)?;
                Ok((source, format, header, start))
            });
        let whole_magic = std::fs::metadata(path).is_ok_and(|m| m.len() >= 16);
        match attempt {
            Ok(ready) => return Ok(ready),
            Err(e @ CaptureError::UnsupportedVersion { .. }) => return Err(e),
            // Not one of ours (a pcap file, say): nothing to wait for.
            Err(CaptureError::NotACapture { .. }) if whole_magic => {
                return Err(CaptureError::Set {
                    reason: format!(
                        "{} is not an etcd-trace capture: only captures being recorded by \
                         `etcd-trace record` can be followed",
                        path.display()
                    ),
                })
            }
            Err(e) if started.elapsed() >= APPEAR_WITHIN => return Err(e),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Whether a writer holds its lock on the file (the recorder does while it writes it:
/// `CaptureWriter`): `None` where that cannot be seen. The probe takes a shared lock for
/// an instant, which is atomic, where reading /proc/locks while other locks come and go
/// can miss an entry and end following too soon.
fn recorder_holds(source: &Source) -> Option<bool> {
    let Source::File(file) = source else {
        return None;
    };
    writer_holds_lock(file)
}

/// A recorder is writing `path` now (it holds the file's lock until the file is
/// finished): an analysis given it may follow it rather than read what is there.
pub fn being_recorded(path: &Path) -> bool {
    File::open(path)
        .ok()
        .and_then(|f| writer_holds_lock(&f))
        .unwrap_or(false)
}

fn writer_holds_lock(file: &File) -> Option<bool> {
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(true),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

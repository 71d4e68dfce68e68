//! Following one WAL file through the `write()` calls etcd makes to it: [`WalStream`]
//! finds record boundaries (proving them by the CRC chain when recording began
//! mid-file), and [`decode_wal_file`] reads a whole file read from disk the same way.

use std::collections::VecDeque;

use serde::Serialize;

use super::record::{
    parse_record, zero_sector, WalCrc, WalError, WalRecord, WalRecordKind, FRAME_HEADER_BYTES,
};

/// How many recent record boundaries a [`WalStream`] remembers to follow rewrites.
const REMEMBERED_BOUNDARIES: usize = 1024;

/// A record and where it sits in its file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WalRecordAt {
    /// The file offset of the record's length word.
    pub offset: u64,
    pub record: WalRecord,
    /// Whether the record's CRC matches the chain; None when the chain value before it
    /// is unknown (the first record seen mid-file, a file's leading crc record).
    pub crc_ok: Option<bool>,
}

impl WalRecordAt {
    /// The file offset just past the record (and its padding).
    pub fn end_offset(&self) -> u64 {
        self.offset.saturating_add(self.record.frame_len)
    }
}

/// Why a [`WalStream`] saw bytes but did not decode them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// The write did not start at an 8-byte aligned offset, so not at a record start.
    Unaligned,
    /// Records parsed from a write's start, but the CRC chain never confirmed that the
    /// write started at a record boundary.
    Unproven,
    /// The rest of a write after a record that failed to decode.
    AfterError,
}

/// What a [`WalStream`] reports, in file order within each write.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum WalEvent {
    /// A record decoded at a proven record boundary.
    Record(WalRecordAt),
    /// File bytes no write covered (recording began mid-file, or writes were lost).
    Gap { start: u64, end: u64 },
    /// File bytes that were written but could not be decoded.
    Skipped {
        start: u64,
        end: u64,
        reason: SkipReason,
    },
    /// A record at `offset` failed to decode; decoding resumes at a later proven
    /// boundary. An [`WalError::Incomplete`] here means the record was cut short (a
    /// gap, a rewrite, or the end of the capture).
    Error { offset: u64, error: WalError },
    /// A zero length word: the end of written data at `offset`.
    EndOfData { offset: u64 },
    /// A write went back to `offset`, before bytes already decoded (etcd rewriting a
    /// torn tail after a restart, for example).
    Rewind { offset: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncState {
    /// No record boundary known: the next write start is a candidate.
    Unsynced,
    /// Parsing from a write start that might be a record boundary; records are held
    /// until the CRC chain links two of them.
    Candidate,
    /// `buf_start` is a proven record boundary.
    Synced,
}

/// A push decoder for one WAL file, fed the file's writes as (offset, bytes).
///
/// Records may be split across writes and one write may hold many records. The rule
/// for finding record boundaries:
/// - a write at offset 0 starts at a boundary (the file's first record);
/// - while synced, each decoded record's end is the next boundary, so contiguous
///   writes keep the decoder synced;
/// - after a gap (or when recording began mid-file), a write that starts at an 8-byte
///   aligned offset is a *candidate* boundary. Records parsed from it are held back
///   until the CRC chain proves the parse: a later record whose stored CRC equals
///   CRC-32C(previous record's CRC, its data) — a 1 in 2^32 accident otherwise. Only
///   then are they reported (the first with `crc_ok: None`); a candidate that fails to
///   parse or to verify is reported as [`WalEvent::Skipped`], and the next write is the
///   next candidate.
/// - a write before the decoded position is a rewrite ([`WalEvent::Rewind`]): decoding
///   restarts there when it is a remembered record boundary, else as a candidate.
///
/// A record that fails to decode, or fails its CRC over an all-zero 512-byte sector
/// (a torn write, as etcd's decoder calls it), ends the synced run with a
/// [`WalEvent::Error`]; a CRC mismatch alone is reported on the record (`crc_ok`) and
/// decoding goes on.
#[derive(Debug, Clone)]
pub struct WalStream {
    state: SyncState,
    /// Bytes from `buf_start` on that are not yet consumed by a record.
    buf: Vec<u8>,
    /// The file offset of `buf[0]`: a (candidate) record boundary unless unsynced.
    buf_start: u64,
    crc: WalCrc,
    /// Candidate records awaiting CRC confirmation, and where the candidate began.
    tentative: Vec<WalRecordAt>,
    candidate_start: u64,
    /// The end of the furthest write seen, for gap reports.
    seen_end: Option<u64>,
    /// Where a zero length word was met while synced (reported once).
    end_of_data: Option<u64>,
    /// Recent proven boundaries and the chain value before each, for rewinds.
    boundaries: VecDeque<(u64, Option<u32>)>,
}

impl Default for WalStream {
    fn default() -> Self {
        Self::new()
    }
}

impl WalStream {
    /// A decoder that has seen nothing of the file yet.
    pub fn new() -> Self {
        WalStream {
            state: SyncState::Unsynced,
            buf: Vec::new(),
            buf_start: 0,
            crc: WalCrc::new(),
            tentative: Vec::new(),
            candidate_start: 0,
            seen_end: None,
            end_of_data: None,
            boundaries: VecDeque::new(),
        }
    }

    /// True when the decoder knows where the next record starts.
    pub fn is_synced(&self) -> bool {
        self.state == SyncState::Synced
    }

    /// The offset of the next record to decode, when synced.
    pub fn next_record_offset(&self) -> Option<u64> {
        (self.state == SyncState::Synced).then_some(self.buf_start)
    }

    /// Feeds one write of `bytes` at file offset `offset`; returns what it revealed.
    pub fn push(&mut self, offset: u64, bytes: &[u8]) -> Vec<WalEvent> {
        let mut events = Vec::new();
        let end = offset.saturating_add(bytes.len() as u64);
        let gap = match self.seen_end {
            None if offset > 0 => Some(WalEvent::Gap {
                start: 0,
                end: offset,
            }),
            Some(seen) if offset > seen => Some(WalEvent::Gap {
                start: seen,
                end: offset,
            }),
            _ => None,
        };
        self.seen_end = Some(self.seen_end.map_or(end, |seen| seen.max(end)));

        match self.state {
            SyncState::Unsynced => {
                events.extend(gap);
                self.start_fresh(offset, bytes, &mut events);
            }
            SyncState::Synced | SyncState::Candidate => {
                let expected = self.buf_start.saturating_add(self.buf.len() as u64);
                if offset == expected {
                    self.buf.extend_from_slice(bytes);
                } else if offset > expected {
                    // What was lost comes before the gap in file order.
                    self.abandon(&mut events);
                    events.extend(gap);
                    self.start_fresh(offset, bytes, &mut events);
                } else if offset >= self.buf_start {
                    // Rewriting the not-yet-decoded tail: keep what precedes it.
                    let keep = usize::try_from(offset - self.buf_start).unwrap_or(usize::MAX);
                    self.buf.truncate(keep);
                    self.buf.extend_from_slice(bytes);
                    if self.end_of_data == Some(offset) {
                        self.end_of_data = None;
                    }
                } else {
                    events.push(WalEvent::Rewind { offset });
                    let known = self
                        .boundaries
                        .iter()
                        .find(|(at, _)| *at == offset)
                        .map(|&(_, crc)| crc);
                    match (self.state, known) {
                        (SyncState::Synced, Some(crc)) => {
                            self.boundaries.retain(|(at, _)| *at < offset);
                            self.buf.clear();
                            self.buf.extend_from_slice(bytes);
                            self.buf_start = offset;
                            self.crc = WalCrc::resume(crc);
                            self.end_of_data = None;
                        }
                        _ => {
                            self.abandon(&mut events);
                            self.start_fresh(offset, bytes, &mut events);
                        }
                    }
                }
            }
        }
        self.parse(&mut events);
        events
    }

    /// Ends the stream: reports a record left incomplete and unproven candidates.
    pub fn finish(mut self) -> Vec<WalEvent> {
        let mut events = Vec::new();
        self.abandon(&mut events);
        events
    }

    /// Drops the current partial state, reporting what is lost.
    fn abandon(&mut self, events: &mut Vec<WalEvent>) {
        match self.state {
            SyncState::Synced => {
                if !self.buf.is_empty() {
                    let needed = match parse_record(&self.buf) {
                        Err(WalError::Incomplete { needed }) => needed,
                        _ => FRAME_HEADER_BYTES as u64,
                    };
                    events.push(WalEvent::Error {
                        offset: self.buf_start,
                        error: WalError::Incomplete { needed },
                    });
                }
            }
            SyncState::Candidate => self.reject_candidate(events),
            SyncState::Unsynced => {}
        }
        self.buf.clear();
        self.tentative.clear();
        self.state = SyncState::Unsynced;
    }

    /// Reports a candidate's bytes as unproven and forgets them.
    fn reject_candidate(&mut self, events: &mut Vec<WalEvent>) {
        let end = self.buf_start.saturating_add(self.buf.len() as u64);
        if end > self.candidate_start {
            events.push(WalEvent::Skipped {
                start: self.candidate_start,
                end,
                reason: SkipReason::Unproven,
            });
        }
        self.buf.clear();
        self.tentative.clear();
        self.state = SyncState::Unsynced;
    }

    /// Begins decoding a write when no boundary is known.
    fn start_fresh(&mut self, offset: u64, bytes: &[u8], events: &mut Vec<WalEvent>) {
        self.buf.clear();
        self.tentative.clear();
        self.end_of_data = None;
        self.crc = WalCrc::new();
        if offset == 0 {
            self.state = SyncState::Synced;
            self.boundaries.clear();
        } else if offset.is_multiple_of(8) {
            self.state = SyncState::Candidate;
            self.candidate_start = offset;
        } else {
            self.state = SyncState::Unsynced;
            events.push(WalEvent::Skipped {
                start: offset,
                end: offset.saturating_add(bytes.len() as u64),
                reason: SkipReason::Unaligned,
            });
            return;
        }
        self.buf_start = offset;
        self.buf.extend_from_slice(bytes);
    }

    fn remember_boundary(&mut self, offset: u64, crc_before: Option<u32>) {
        if self.boundaries.len() >= REMEMBERED_BOUNDARIES {
            self.boundaries.pop_front();
        }
        self.boundaries.push_back((offset, crc_before));
    }

    /// Decodes every complete record in the buffer.
    fn parse(&mut self, events: &mut Vec<WalEvent>) {
        let mut pos = 0usize;
        while self.state != SyncState::Unsynced {
            let rest = self.buf.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            let offset = self.buf_start.saturating_add(pos as u64);
            match parse_record(rest) {
                Ok((record, used)) => {
                    pos = pos.saturating_add(used);
                    if self.state == SyncState::Synced {
                        let before = self.crc.current();
                        let crc_ok = self.crc.feed(&record);
                        // A CRC mismatch over an all-zero sector is a torn write: etcd
                        // treats it as the end of the log, and so do we.
                        let torn = if crc_ok == Some(false) {
                            zero_sector(rest, offset)
                        } else {
                            None
                        };
                        if let Some(sector_offset) = torn {
                            self.crc = WalCrc::resume(before);
                            self.fail_synced(offset, WalError::TornWrite { sector_offset }, events);
                            pos = 0;
                            continue;
                        }
                        self.remember_boundary(offset, before);
                        events.push(WalEvent::Record(WalRecordAt {
                            offset,
                            record,
                            crc_ok,
                        }));
                    } else if !plausible(&record) {
                        self.consume(pos);
                        pos = 0;
                        self.reject_candidate(events);
                    } else {
                        let crc_ok = self.crc.feed(&record);
                        self.tentative.push(WalRecordAt {
                            offset,
                            record,
                            crc_ok,
                        });
                        match crc_ok {
                            Some(true) => {
                                // Proven: release the held records in order.
                                self.state = SyncState::Synced;
                                let held = std::mem::take(&mut self.tentative);
                                let mut crc_before = None;
                                for r in held {
                                    self.remember_boundary(r.offset, crc_before);
                                    crc_before = Some(r.record.crc);
                                    events.push(WalEvent::Record(r));
                                }
                            }
                            Some(false) => {
                                self.consume(pos);
                                pos = 0;
                                self.reject_candidate(events);
                            }
                            None => {}
                        }
                    }
                }
                Err(WalError::Incomplete { .. }) => break,
                Err(WalError::EndOfData) => {
                    if self.state == SyncState::Synced {
                        if self.end_of_data != Some(offset) {
                            events.push(WalEvent::EndOfData { offset });
                            self.end_of_data = Some(offset);
                        }
                        // The rest is preallocated space; a later write here resumes.
                        self.buf.truncate(pos);
                    } else {
                        self.consume(pos);
                        pos = 0;
                        self.reject_candidate(events);
                    }
                    break;
                }
                Err(error) => {
                    if self.state == SyncState::Synced {
                        let error = match error {
                            WalError::Record(_) => zero_sector(rest, offset)
                                .map_or(error, |sector_offset| WalError::TornWrite {
                                    sector_offset,
                                }),
                            other => other,
                        };
                        self.fail_synced(offset, error, events);
                        pos = 0;
                    } else {
                        self.consume(pos);
                        pos = 0;
                        self.reject_candidate(events);
                    }
                }
            }
        }
        self.consume(pos);
    }

    /// Reports a record that failed while synced, skips the rest of what is buffered,
    /// and waits for a new candidate boundary.
    fn fail_synced(&mut self, offset: u64, error: WalError, events: &mut Vec<WalEvent>) {
        let end = self.buf_start.saturating_add(self.buf.len() as u64);
        events.push(WalEvent::Error { offset, error });
        events.push(WalEvent::Skipped {
            start: offset,
            end,
            reason: SkipReason::AfterError,
        });
        self.buf.clear();
        self.state = SyncState::Unsynced;
    }

    /// Drops the first `used` buffered bytes (decoded records).
    fn consume(&mut self, used: usize) {
        let used = used.min(self.buf.len());
        self.buf.drain(..used);
        self.buf_start = self.buf_start.saturating_add(used as u64);
    }
}

/// Whether a record parsed at a candidate boundary looks like one etcd wrote: a known
/// type whose payload decodes.
pub(super) fn plausible(record: &WalRecord) -> bool {
    match record.kind {
        WalRecordKind::Unknown(_) => false,
        WalRecordKind::Crc => record.data.is_empty(),
        _ => record.decode().is_ok(),
    }
}

/// The result of decoding a whole WAL file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WalFileDecode {
    /// The records, in file order.
    pub records: Vec<WalRecordAt>,
    /// The offset just past the last valid record: where etcd would append next.
    pub end_offset: u64,
    /// True when a zero length word ended the data (rather than the file's end or an
    /// error).
    pub end_of_data: bool,
    /// Decoding errors with their offsets (decoding stops at the first one).
    pub errors: Vec<(u64, WalError)>,
}

/// Decodes a WAL file read from disk. Uses the same [`WalStream`] as live capture, fed
/// the whole file as one write at offset 0.
pub fn decode_wal_file(bytes: &[u8]) -> WalFileDecode {
    let mut stream = WalStream::new();
    let mut events = stream.push(0, bytes);
    events.extend(stream.finish());
    let mut out = WalFileDecode {
        records: Vec::new(),
        end_offset: 0,
        end_of_data: false,
        errors: Vec::new(),
    };
    for event in events {
        match event {
            WalEvent::Record(r) => {
                out.end_offset = r.end_offset();
                out.records.push(r);
            }
            WalEvent::Error { offset, error } => out.errors.push((offset, error)),
            WalEvent::EndOfData { .. } => out.end_of_data = true,
            WalEvent::Gap { .. } | WalEvent::Skipped { .. } | WalEvent::Rewind { .. } => {}
        }
    }
    out
}

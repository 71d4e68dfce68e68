//! A member's WAL directory as etcd reads it: the segment files in sequence order, one
//! CRC chain across all of them. Each file's head crc record must carry the chain value
//! the previous file ended with; inside a file, each record's CRC continues the chain.
//! Where the chain breaks, [`SegmentChain`] says where, what it expected and found, and
//! whether valid records follow (corruption in the middle) or not (a torn tail).

use std::fmt;

use super::record::{parse_record, zero_sector, WalCrc, WalError, WalRecord, WalRecordKind};
use super::stream::{plausible, WalRecordAt};

/// The largest segment file read. etcd cuts a segment once it passes 64 MB, so a
/// segment is at most that plus one record ([`super::MAX_RECORD_BYTES`]).
pub const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// A segment file's name, `<seq>-<index>.wal` in 16 hex digits each: its place in the
/// sequence, and the raft index of the first entry it was cut for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub seq: u64,
    pub index: u64,
}

impl SegmentName {
    /// The name of a segment file, or None for any other file (`0.tmp`, ...).
    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(".wal")?;
        let (seq, index) = stem.split_once('-')?;
        let hex = |s: &str| {
            (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        Some(SegmentName {
            seq: hex(seq)?,
            index: hex(index)?,
        })
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:016x}.wal", self.seq, self.index)
    }
}

/// What breaks the chain.
#[derive(Clone, Debug, PartialEq)]
pub enum BreakKind {
    /// Segments are missing: the file before this one had sequence number `after`.
    MissingSegments { after: u64 },
    /// The file does not start with a crc record.
    NoCrcHead { found: &'static str },
    /// The head crc record does not carry the chain value the previous file ended with.
    CarriedCrc { expected: u32, found: u32 },
    /// A record's stored CRC is not the chain continued over its data.
    RecordCrc {
        kind: &'static str,
        expected: u32,
        found: u32,
    },
    /// The bytes at the offset are not a record (a zero length word among records
    /// included).
    Undecodable(WalError),
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::MissingSegments { after } => {
                write!(f, "segments missing after sequence number {after}")
            }
            BreakKind::NoCrcHead { found } => {
                write!(f, "the file starts with a {found} record, not a crc record")
            }
            BreakKind::CarriedCrc { expected, found } => write!(
                f,
                "head crc record carries {found:#010x}, the previous file ended with {expected:#010x}"
            ),
            BreakKind::RecordCrc {
                kind,
                expected,
                found,
            } => write!(
                f,
                "{kind} record's CRC is {found:#010x}, the chain gives {expected:#010x}"
            ),
            BreakKind::Undecodable(WalError::EndOfData) => {
                f.write_str("zero length word among the records")
            }
            BreakKind::Undecodable(e) => write!(f, "{e}"),
        }
    }
}

/// One place where the chain breaks.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainBreak {
    /// File offset of the record (or bytes) at fault; 0 for missing segments.
    pub offset: u64,
    pub kind: BreakKind,
    /// Where valid records (proven by the chain) resume in this file, if they do.
    pub resumes_at: Option<u64>,
}

/// How a segment's written data ends.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentEnd {
    /// A zero length word at `offset`, zeros after it: the preallocated space, etcd's
    /// normal end of data.
    Preallocated { offset: u64 },
    /// The file ends right after its last record (etcd truncates a segment it cuts).
    EndOfFile { offset: u64 },
    /// After the last good record at `offset`: `bytes` bytes that make no record
    /// (through the last non-zero byte; `error` says why), and no valid record after
    /// them. In the last file this is a torn write, which etcd discards; elsewhere the
    /// chain breaks here.
    Tail {
        offset: u64,
        bytes: u64,
        error: WalError,
    },
}

/// One segment file decoded as part of the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentDecode {
    pub name: SegmentName,
    /// The records in file order. `crc_ok` is judged against the whole chain: a file's
    /// head crc record against the previous file (None in the first file read), and
    /// the first record after a break is None.
    pub records: Vec<WalRecordAt>,
    /// Where the chain breaks in this file, in file order.
    pub breaks: Vec<ChainBreak>,
    pub end: SegmentEnd,
}

/// Follows the chain across a member's segment files, fed in sequence order.
#[derive(Clone, Debug, Default)]
pub struct SegmentChain {
    prev: Option<SegmentName>,
    /// The chain value the previous file ended with.
    running: Option<u32>,
}

impl SegmentChain {
    pub fn new() -> Self {
        SegmentChain::default()
    }

    /// Decodes the next segment file, `bytes` being all of it.
    pub fn next(&mut self, name: SegmentName, bytes: &[u8]) -> SegmentDecode {
        let mut breaks = Vec::new();
        let mut carried = self.running;
        match self.prev {
            Some(prev) if prev.seq.checked_add(1) != Some(name.seq) => {
                breaks.push(ChainBreak {
                    offset: 0,
                    kind: BreakKind::MissingSegments { after: prev.seq },
                    resumes_at: None,
                });
                carried = None;
            }
            // The first segment etcd creates starts the chain at zero.
            None if name.seq == 0 => carried = Some(0),
            _ => {}
        }
        let mut records: Vec<WalRecordAt> = Vec::new();
        let mut chain = WalCrc::resume(carried);
        let mut pos = 0usize;
        let mut budget = ResyncBudget::for_file(bytes.len());
        let end = loop {
            let rest = bytes.get(pos..).unwrap_or_default();
            let offset = pos as u64;
            let failure = match parse_record(rest) {
                Ok((record, used)) => {
                    let before = chain.current();
                    let crc_ok = chain.feed(&record);
                    if pos == 0 && record.kind != WalRecordKind::Crc {
                        breaks.push(ChainBreak {
                            offset: 0,
                            kind: BreakKind::NoCrcHead {
                                found: record.kind.name(),
                            },
                            resumes_at: None,
                        });
                    }
                    let torn = match crc_ok {
                        Some(false) => zero_sector(rest, offset),
                        _ => None,
                    };
                    if let Some(sector_offset) = torn {
                        chain = WalCrc::resume(before);
                        Some(WalError::TornWrite { sector_offset })
                    } else {
                        let next = pos.saturating_add(used);
                        if crc_ok == Some(false) {
                            breaks.push(crc_break(&record, offset, before, bytes, next));
                        }
                        records.push(WalRecordAt {
                            offset,
                            record,
                            crc_ok,
                        });
                        pos = next;
                        None
                    }
                }
                Err(WalError::Incomplete { .. }) if rest.is_empty() => {
                    break SegmentEnd::EndOfFile { offset };
                }
                // Zeros to the end, even fewer than a length word's 8 bytes.
                Err(WalError::EndOfData | WalError::Incomplete { .. })
                    if rest.iter().all(|&b| b == 0) =>
                {
                    break SegmentEnd::Preallocated { offset };
                }
                Err(WalError::Record(e)) => Some(match zero_sector(rest, offset) {
                    Some(sector_offset) => WalError::TornWrite { sector_offset },
                    None => WalError::Record(e),
                }),
                Err(error) => Some(error),
            };
            let Some(error) = failure else { continue };
            match resync(bytes, pos.saturating_add(8), &mut budget) {
                Some(at) => {
                    breaks.push(ChainBreak {
                        offset,
                        kind: BreakKind::Undecodable(error),
                        resumes_at: Some(at as u64),
                    });
                    chain = WalCrc::new();
                    pos = at;
                }
                None => {
                    let last = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    break SegmentEnd::Tail {
                        offset,
                        bytes: last as u64,
                        error,
                    };
                }
            }
        };
        self.prev = Some(name);
        self.running = chain.current();
        SegmentDecode {
            name,
            records,
            breaks,
            end,
        }
    }
}

/// The break a record at `offset` makes when its CRC does not continue the chain from
/// `before`. The chain goes on from the stored value, so valid records resume at `next`
/// if only this one is damaged.
fn crc_break(
    record: &WalRecord,
    offset: u64,
    before: Option<u32>,
    bytes: &[u8],
    next: usize,
) -> ChainBreak {
    let found = record.crc;
    let expected = match (record.kind, before) {
        (WalRecordKind::Crc, Some(b)) => b,
        (_, Some(b)) => crc32c::crc32c_append(b, &record.data),
        (_, None) => found,
    };
    let kind = match record.kind {
        WalRecordKind::Crc if offset == 0 => BreakKind::CarriedCrc { expected, found },
        _ => BreakKind::RecordCrc {
            kind: record.kind.name(),
            expected,
            found,
        },
    };
    ChainBreak {
        offset,
        kind,
        resumes_at: verifies_at(bytes, next, found).then_some(next as u64),
    }
}

/// Whether the record at `pos` decodes and its CRC continues the chain from `crc`.
fn verifies_at(bytes: &[u8], pos: usize, crc: u32) -> bool {
    let Some(rest) = bytes.get(pos..) else {
        return false;
    };
    match parse_record(rest) {
        Ok((record, _)) => {
            let mut chain = WalCrc::starting_at(crc);
            chain.feed(&record) == Some(true)
        }
        Err(_) => false,
    }
}

/// How many bytes of candidate records a resync scan may parse, so that a crafted file
/// cannot make it quadratic.
struct ResyncBudget(u64);

impl ResyncBudget {
    fn for_file(len: usize) -> Self {
        ResyncBudget((len as u64).saturating_mul(4).saturating_add(64 << 20))
    }
}

/// The first 8-aligned offset at or after `from` where a record starts that the next
/// record's CRC proves (a 1 in 2^32 accident otherwise), or None.
fn resync(bytes: &[u8], from: usize, budget: &mut ResyncBudget) -> Option<usize> {
    let mut at = from.checked_next_multiple_of(8)?;
    while let Some(rest) = bytes.get(at..).filter(|r| r.len() >= 16) {
        budget.0 = budget.0.saturating_sub(8);
        if rest.get(..8)?.iter().any(|&b| b != 0) {
            if let Ok((first, used)) = parse_record(rest) {
                budget.0 = budget.0.saturating_sub(first.frame_len);
                if plausible(&first) && verifies_at(bytes, at.saturating_add(used), first.crc) {
                    return Some(at);
                }
            }
        }
        if budget.0 == 0 {
            return None;
        }
        at = at.checked_add(8)?;
    }
    None
}

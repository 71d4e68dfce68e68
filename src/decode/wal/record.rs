//! One WAL record: the length word, the walpb.Record around the payload, the payloads
//! by record type, and the CRC-32C chain that links records across a member's files.
//! [`WalEncoder`] writes records as etcd's encoder does, for tests and tools.

use prost::Message;
use serde::Serialize;

use crate::decode::etcdpb::json;
use crate::decode::raftpb::{ConfState, Entry, HardState, PayloadError};

/// The largest record data length accepted. etcd 3.4's decoder refuses records of
/// 10 MiB or more (`maxWALEntrySizeLimit`); newer versions bound a record by the file's
/// remaining size, and segments are preallocated to 64 MB (but grow past that for one
/// huge entry). 64 MiB keeps every record etcd writes in practice while bounding what a
/// corrupt length word can make us buffer.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// The size of the length word that precedes every record.
pub const FRAME_HEADER_BYTES: usize = 8;

/// The walpb.Record type field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WalRecordKind {
    /// etcdserverpb.Metadata (node and cluster ID), at the head of every file.
    Metadata,
    /// A raftpb.Entry.
    Entry,
    /// A raftpb.HardState (term, vote, commit).
    State,
    /// The CRC chain value carried into a new file.
    Crc,
    /// A walpb.Snapshot marker (index, term).
    Snapshot,
    /// A type number etcd does not write.
    Unknown(i64),
}

impl WalRecordKind {
    /// The kind of a walpb.Record type number.
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => WalRecordKind::Metadata,
            2 => WalRecordKind::Entry,
            3 => WalRecordKind::State,
            4 => WalRecordKind::Crc,
            5 => WalRecordKind::Snapshot,
            other => WalRecordKind::Unknown(other),
        }
    }

    /// The walpb.Record type number.
    pub fn code(self) -> i64 {
        match self {
            WalRecordKind::Metadata => 1,
            WalRecordKind::Entry => 2,
            WalRecordKind::State => 3,
            WalRecordKind::Crc => 4,
            WalRecordKind::Snapshot => 5,
            WalRecordKind::Unknown(code) => code,
        }
    }

    /// A short lowercase name for tables.
    pub fn name(self) -> &'static str {
        match self {
            WalRecordKind::Metadata => "metadata",
            WalRecordKind::Entry => "entry",
            WalRecordKind::State => "state",
            WalRecordKind::Crc => "crc",
            WalRecordKind::Snapshot => "snapshot",
            WalRecordKind::Unknown(_) => "unknown",
        }
    }
}

/// Why WAL bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WalError {
    /// Not an error in the data: the record is not complete yet. `needed` is the total
    /// number of bytes, counted from the record's start, that the record occupies (or 8
    /// while the length word itself is incomplete).
    #[error("incomplete WAL record: {needed} bytes needed")]
    Incomplete { needed: u64 },
    /// A zero length word: the end of written data (the rest is preallocated space).
    #[error("end of written WAL data")]
    EndOfData,
    /// The length word is not one etcd's encoder writes.
    #[error("bad WAL length word {word:#018x}: {reason}")]
    BadFrame { word: u64, reason: &'static str },
    /// The length word declares more data than any record may hold.
    #[error("WAL record of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u64, max: u64 },
    /// The record data is not a valid walpb.Record.
    #[error("malformed walpb.Record: {0}")]
    Record(prost::DecodeError),
    /// The record's payload is not a valid message of its kind.
    #[error("malformed {kind} payload: {source}")]
    Payload {
        kind: &'static str,
        source: prost::DecodeError,
    },
    /// The record failed to decode and part of it is an all-zero disk sector: the write
    /// was torn (a crash mid-write), which etcd treats as the end of the log.
    #[error("torn write: all-zero sector at offset {sector_offset} inside the record")]
    TornWrite { sector_offset: u64 },
    /// A payload was asked for from a record of another kind.
    #[error("{wanted} asked of a {found} record")]
    WrongKind {
        wanted: &'static str,
        found: &'static str,
    },
}

impl From<PayloadError> for WalError {
    fn from(e: PayloadError) -> Self {
        WalError::Payload {
            kind: e.kind,
            source: e.source,
        }
    }
}

/// walpb.Record as it is encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct RecordMessage {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(uint32, tag = "2")]
    crc: u32,
    #[prost(bytes = "vec", tag = "3")]
    data: Vec<u8>,
}

/// One decoded WAL record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalRecord {
    /// The record type.
    pub kind: WalRecordKind,
    /// The CRC chain value after this record (for a crc record: the chain carried in).
    pub crc: u32,
    /// The payload (for an entry record: an encoded raftpb.Entry).
    #[serde(serialize_with = "json::bytes")]
    pub data: Vec<u8>,
    /// The record's size on disk: length word, record, padding.
    pub frame_len: u64,
}

/// Splits a length word into (data length, padding length), checking that it is one
/// etcd's encoder can write.
fn decode_length_word(word: u64) -> Result<(u64, u64), WalError> {
    let len = word & 0x00ff_ffff_ffff_ffff;
    let top = word >> 56;
    let pad = if top & 0x80 != 0 {
        if top & 0x78 != 0 {
            return Err(WalError::BadFrame {
                word,
                reason: "reserved bits set in the padding byte",
            });
        }
        top & 0x07
    } else if top != 0 {
        return Err(WalError::BadFrame {
            word,
            reason: "padding bits set without the padding flag",
        });
    } else {
        0
    };
    if len > MAX_RECORD_BYTES {
        return Err(WalError::TooLarge {
            len,
            max: MAX_RECORD_BYTES,
        });
    }
    // etcd always pads to 8 bytes, so the total is a multiple of 8: a length word that
    // breaks this did not come from etcd's encoder.
    if !(len + pad).is_multiple_of(8) {
        return Err(WalError::BadFrame {
            word,
            reason: "padding does not align the record to 8 bytes",
        });
    }
    Ok((len, pad))
}

/// Parses the record at the start of `buf`. Returns the record and the bytes it
/// occupies (length word + data + padding), [`WalError::Incomplete`] when `buf` ends
/// first, or [`WalError::EndOfData`] at a zero length word.
pub fn parse_record(buf: &[u8]) -> Result<(WalRecord, usize), WalError> {
    let Some(word_bytes) = buf.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(WalError::Incomplete {
            needed: FRAME_HEADER_BYTES as u64,
        });
    };
    let word = u64::from_le_bytes(*word_bytes);
    if word == 0 {
        return Err(WalError::EndOfData);
    }
    let (len, pad) = decode_length_word(word)?;
    // Bounded by MAX_RECORD_BYTES above, so these cannot overflow.
    let frame_len = FRAME_HEADER_BYTES as u64 + len + pad;
    let (Ok(len_usize), Ok(frame_usize)) = (usize::try_from(len), usize::try_from(frame_len))
    else {
        return Err(WalError::TooLarge {
            len,
            max: MAX_RECORD_BYTES,
        });
    };
    if buf.len() < frame_usize {
        return Err(WalError::Incomplete { needed: frame_len });
    }
    let data = buf
        .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len_usize)
        .ok_or(WalError::Incomplete { needed: frame_len })?;
    let message = RecordMessage::decode(data).map_err(WalError::Record)?;
    Ok((
        WalRecord {
            kind: WalRecordKind::from_code(message.r#type),
            crc: message.crc,
            data: message.data,
            frame_len,
        },
        frame_usize,
    ))
}

/// Frames a record the way etcd's encoder does (type and crc always written, data when
/// not empty, zero padding to 8 bytes).
pub fn frame_record(kind: WalRecordKind, crc: u32, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len().saturating_add(20));
    prost::encoding::int64::encode(1, &kind.code(), &mut body);
    prost::encoding::uint32::encode(2, &crc, &mut body);
    if !data.is_empty() {
        prost::encoding::encode_key(3, prost::encoding::WireType::LengthDelimited, &mut body);
        prost::encoding::encode_varint(data.len() as u64, &mut body);
        body.extend_from_slice(data);
    }
    let pad = (8 - body.len() % 8) % 8;
    let mut word = body.len() as u64;
    if pad != 0 {
        word |= (0x80 | pad as u64) << 56;
    }
    let mut out = Vec::with_capacity(8 + body.len() + pad);
    out.extend_from_slice(&word.to_le_bytes());
    out.extend_from_slice(&body);
    out.resize(out.len() + pad, 0);
    out
}

/// Writes WAL records with the CRC chain, like etcd's encoder: for tests, fixtures and
/// tools that need WAL bytes.
#[derive(Clone, Debug)]
pub struct WalEncoder {
    crc: u32,
}

impl WalEncoder {
    /// An encoder that continues the chain from `prev_crc` (0 for the first file).
    pub fn new(prev_crc: u32) -> Self {
        WalEncoder { crc: prev_crc }
    }

    /// The crc record that starts a file, carrying the chain value.
    pub fn crc_record(&mut self) -> Vec<u8> {
        frame_record(WalRecordKind::Crc, self.crc, &[])
    }

    /// A record of `kind` with `data`, advancing the chain.
    pub fn record(&mut self, kind: WalRecordKind, data: &[u8]) -> Vec<u8> {
        self.crc = crc32c::crc32c_append(self.crc, data);
        frame_record(kind, self.crc, data)
    }

    /// The chain value after the last record.
    pub fn crc(&self) -> u32 {
        self.crc
    }
}

/// Follows etcd's CRC-32C chain over a sequence of records. Each non-crc record stores
/// `crc32c_append(previous, data)`; a crc record (at the head of every file) carries the
/// chain value in. The chain value after a record equals the value it stores, so any
/// record can start a chain: mid-file, the first record is unverifiable and the rest
/// verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalCrc {
    running: Option<u32>,
}

impl WalCrc {
    /// A chain whose current value is not known yet.
    pub fn new() -> Self {
        WalCrc::default()
    }

    /// A chain whose current value is `crc`.
    pub fn starting_at(crc: u32) -> Self {
        WalCrc { running: Some(crc) }
    }

    /// A chain whose current value is `crc`, or not known.
    pub(super) fn resume(crc: Option<u32>) -> Self {
        WalCrc { running: crc }
    }

    /// The current chain value, if known.
    pub fn current(&self) -> Option<u32> {
        self.running
    }

    /// Feeds the next record. Returns whether its stored CRC matches the chain, or None
    /// when that cannot be told (chain value unknown, or a crc record met with a zero
    /// chain, which etcd does not check either). After a mismatch the chain continues
    /// from the record's stored value, so one bad record does not fail all later ones.
    pub fn feed(&mut self, record: &WalRecord) -> Option<bool> {
        let verdict = match (record.kind, self.running) {
            (_, None) => None,
            (WalRecordKind::Crc, Some(0)) => None,
            (WalRecordKind::Crc, Some(running)) => Some(running == record.crc),
            (_, Some(running)) => Some(crc32c::crc32c_append(running, &record.data) == record.crc),
        };
        self.running = Some(record.crc);
        verdict
    }
}

/// walpb.Snapshot: marks that a raft snapshot at (index, term) was saved.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WalSnapshot {
    #[prost(uint64, tag = "1")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf_state: Option<ConfState>,
}

/// etcdserverpb.Metadata: the member and cluster a WAL belongs to.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message, Serialize)]
pub struct WalMetadata {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "NodeID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub node_id: u64,
    #[prost(uint64, tag = "2")]
    #[serde(
        rename = "ClusterID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub cluster_id: u64,
}

fn payload_error(kind: &'static str, source: prost::DecodeError) -> WalError {
    WalError::Payload { kind, source }
}

/// A record's payload, decoded by kind.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WalPayload {
    Metadata(WalMetadata),
    Entry(Entry),
    State(HardState),
    /// The chain value carried in (the record's crc field).
    Crc(u32),
    Snapshot(WalSnapshot),
    /// A record type etcd does not write: its data is left as is.
    Unknown,
}

impl WalRecord {
    fn expect_kind(&self, wanted: WalRecordKind) -> Result<(), WalError> {
        if self.kind == wanted {
            Ok(())
        } else {
            Err(WalError::WrongKind {
                wanted: wanted.name(),
                found: self.kind.name(),
            })
        }
    }

    /// The raftpb.Entry of an entry record.
    pub fn decode_entry(&self) -> Result<Entry, WalError> {
        self.expect_kind(WalRecordKind::Entry)?;
        Entry::decode(self.data.as_slice()).map_err(|e| payload_error("raftpb.Entry", e))
    }

    /// The raftpb.HardState of a state record.
    pub fn decode_hard_state(&self) -> Result<HardState, WalError> {
        self.expect_kind(WalRecordKind::State)?;
        HardState::decode(self.data.as_slice()).map_err(|e| payload_error("raftpb.HardState", e))
    }

    /// The walpb.Snapshot of a snapshot record.
    pub fn decode_snapshot(&self) -> Result<WalSnapshot, WalError> {
        self.expect_kind(WalRecordKind::Snapshot)?;
        WalSnapshot::decode(self.data.as_slice()).map_err(|e| payload_error("walpb.Snapshot", e))
    }

    /// The etcdserverpb.Metadata of a metadata record.
    pub fn decode_metadata(&self) -> Result<WalMetadata, WalError> {
        self.expect_kind(WalRecordKind::Metadata)?;
        WalMetadata::decode(self.data.as_slice())
            .map_err(|e| payload_error("etcdserverpb.Metadata", e))
    }

    /// The payload, whatever the kind.
    pub fn decode(&self) -> Result<WalPayload, WalError> {
        Ok(match self.kind {
            WalRecordKind::Metadata => WalPayload::Metadata(self.decode_metadata()?),
            WalRecordKind::Entry => WalPayload::Entry(self.decode_entry()?),
            WalRecordKind::State => WalPayload::State(self.decode_hard_state()?),
            WalRecordKind::Crc => WalPayload::Crc(self.crc),
            WalRecordKind::Snapshot => WalPayload::Snapshot(self.decode_snapshot()?),
            WalRecordKind::Unknown(_) => WalPayload::Unknown,
        })
    }
}

/// Errors print as their message in JSON output.
impl Serialize for WalError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The sector size etcd's torn-write check assumes.
const SECTOR_BYTES: u64 = 512;

/// Finds an all-zero sector-aligned chunk in the data of the frame at the start of
/// `frame` (which begins at file offset `offset`), as etcd's torn-write check does.
pub(super) fn zero_sector(frame: &[u8], offset: u64) -> Option<u64> {
    let word = u64::from_le_bytes(*frame.first_chunk::<FRAME_HEADER_BYTES>()?);
    let (len, pad) = decode_length_word(word).ok()?;
    let end = usize::try_from(FRAME_HEADER_BYTES as u64 + len + pad).ok()?;
    let mut data = frame.get(FRAME_HEADER_BYTES..end)?;
    let mut file_off = offset.saturating_add(FRAME_HEADER_BYTES as u64);
    while !data.is_empty() {
        let room = SECTOR_BYTES - file_off % SECTOR_BYTES;
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        let (chunk, rest) = data.split_at(take);
        if chunk.iter().all(|&b| b == 0) {
            return Some(file_off);
        }
        file_off = file_off.saturating_add(take as u64);
        data = rest;
    }
    None
}

//! etcdserverpb Maintenance service messages (alarms, status, defragment, hashes,
//! snapshot, leader moves, downgrades), and a copy-free summary of snapshot chunks.

use serde::Serialize;

use super::json::{self, proto_enum};
use super::kv::ResponseHeader;

proto_enum! {
    /// etcdserverpb.AlarmType.
    pub enum AlarmType {
        None = 0 => "NONE",
        Nospace = 1 => "NOSPACE",
        Corrupt = 2 => "CORRUPT",
    }
}

proto_enum! {
    /// etcdserverpb.AlarmRequest.AlarmAction.
    pub enum AlarmAction {
        Get = 0 => "GET",
        Activate = 1 => "ACTIVATE",
        Deactivate = 2 => "DEACTIVATE",
    }
}

/// etcdserverpb.AlarmRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AlarmRequest {
    #[prost(enumeration = "AlarmAction", tag = "1")]
    #[serde(
        serialize_with = "AlarmAction::json",
        skip_serializing_if = "json::is_default"
    )]
    pub action: i32,
    #[prost(uint64, tag = "2")]
    #[serde(
        rename = "memberID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub member_id: u64,
    #[prost(enumeration = "AlarmType", tag = "3")]
    #[serde(
        serialize_with = "AlarmType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub alarm: i32,
}

/// etcdserverpb.AlarmMember.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AlarmMember {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "memberID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub member_id: u64,
    #[prost(enumeration = "AlarmType", tag = "2")]
    #[serde(
        serialize_with = "AlarmType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub alarm: i32,
}

/// etcdserverpb.AlarmResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AlarmResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub alarms: Vec<AlarmMember>,
}

empty_message! {
    /// etcdserverpb.StatusRequest (no fields).
    StatusRequest;
    /// etcdserverpb.DefragmentRequest (no fields).
    DefragmentRequest;
    /// etcdserverpb.HashRequest (no fields).
    HashRequest;
    /// etcdserverpb.SnapshotRequest (no fields).
    SnapshotRequest;
}

header_only_response! {
    /// etcdserverpb.DefragmentResponse.
    DefragmentResponse;
    /// etcdserverpb.MoveLeaderResponse.
    MoveLeaderResponse;
}

/// etcdserverpb.DowngradeInfo (in StatusResponse, etcd 3.6+).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DowngradeInfo {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub enabled: bool,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub target_version: String,
}

/// etcdserverpb.StatusResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub version: String,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub db_size: i64,
    #[prost(uint64, tag = "4")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub leader: u64,
    #[prost(uint64, tag = "5")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub raft_index: u64,
    #[prost(uint64, tag = "6")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub raft_term: u64,
    #[prost(uint64, tag = "7")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub raft_applied_index: u64,
    #[prost(string, repeated, tag = "8")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub errors: Vec<String>,
    #[prost(int64, tag = "9")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub db_size_in_use: i64,
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub is_learner: bool,
    #[prost(string, tag = "11")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub storage_version: String,
    #[prost(int64, tag = "12")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub db_size_quota: i64,
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade_info: Option<DowngradeInfo>,
}

/// etcdserverpb.HashResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct HashResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub hash: u32,
}

/// etcdserverpb.HashKVRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct HashKVRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub revision: i64,
}

/// etcdserverpb.HashKVResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HashKVResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub hash: u32,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub compact_revision: i64,
    #[prost(int64, tag = "4")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub hash_revision: i64,
}

/// etcdserverpb.SnapshotResponse: one chunk of the backend database stream.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub remaining_bytes: u64,
    #[prost(bytes = "vec", tag = "3")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub blob: Vec<u8>,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub version: String,
}

/// etcdserverpb.MoveLeaderRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MoveLeaderRequest {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "targetID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub target_id: u64,
}

proto_enum! {
    /// etcdserverpb.DowngradeRequest.DowngradeAction.
    pub enum DowngradeAction {
        Validate = 0 => "VALIDATE",
        Enable = 1 => "ENABLE",
        Cancel = 2 => "CANCEL",
    }
}

/// etcdserverpb.DowngradeRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DowngradeRequest {
    #[prost(enumeration = "DowngradeAction", tag = "1")]
    #[serde(
        serialize_with = "DowngradeAction::json",
        skip_serializing_if = "json::is_default"
    )]
    pub action: i32,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub version: String,
}

/// etcdserverpb.DowngradeResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DowngradeResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub version: String,
}

/// What one SnapshotResponse chunk says about itself, read without copying the blob.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotChunk {
    /// The response header, when it was complete in the bytes given.
    pub header: Option<ResponseHeader>,
    /// Bytes of the database still to come after this chunk.
    pub remaining_bytes: u64,
    /// The blob's length as declared by its length prefix (even if the bytes are cut).
    pub blob_len: u64,
    /// How many blob bytes are actually present in the bytes given.
    pub blob_present: u64,
    /// True when the bytes given end inside a field (a kept prefix). A cut that falls
    /// exactly between two fields cannot be seen and leaves this false.
    pub truncated: bool,
}

/// Why a snapshot chunk could not be summarised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotChunkError {
    #[error("malformed SnapshotResponse at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
}

/// Summarises a SnapshotResponse from its first bytes (the gRPC layer may keep only a
/// prefix of a multi-megabyte chunk). Walks the protobuf fields by hand so the blob is
/// never copied; a prefix that ends mid-field is reported as `truncated`, not an error.
pub fn snapshot_chunk_summary(bytes: &[u8]) -> Result<SnapshotChunk, SnapshotChunkError> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    use prost::Message;

    let mut chunk = SnapshotChunk {
        header: None,
        remaining_bytes: 0,
        blob_len: 0,
        blob_present: 0,
        truncated: false,
    };
    let total = bytes.len();
    let mut buf: &[u8] = bytes;
    let malformed = |buf: &[u8], reason| SnapshotChunkError::Malformed {
        offset: total.saturating_sub(buf.len()),
        reason,
    };
    while !buf.is_empty() {
        let field_start = buf;
        // A cut in the middle of a key or varint is a truncation, a bad one is malformed.
        let (tag, wire_type) = match decode_key(&mut buf) {
            Ok(key) => key,
            Err(_) if varint_is_cut(field_start) => {
                chunk.truncated = true;
                break;
            }
            Err(_) => return Err(malformed(field_start, "invalid field key")),
        };
        match wire_type {
            WireType::Varint => {
                let before = buf;
                let value = match decode_varint(&mut buf) {
                    Ok(v) => v,
                    Err(_) if varint_is_cut(before) => {
                        chunk.truncated = true;
                        break;
                    }
                    Err(_) => return Err(malformed(before, "invalid varint")),
                };
                if tag == 2 {
                    chunk.remaining_bytes = value;
                }
            }
            WireType::LengthDelimited => {
                let before = buf;
                let len = match decode_varint(&mut buf) {
                    Ok(v) => v,
                    Err(_) if varint_is_cut(before) => {
                        chunk.truncated = true;
                        break;
                    }
                    Err(_) => return Err(malformed(before, "invalid length")),
                };
                let present = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
                let (body, rest) = buf.split_at(present);
                let complete = u64::try_from(present).is_ok_and(|p| p == len);
                match tag {
                    1 if complete => match ResponseHeader::decode(body) {
                        Ok(h) => chunk.header = Some(h),
                        Err(_) => return Err(malformed(before, "invalid header")),
                    },
                    3 => {
                        chunk.blob_len = len;
                        chunk.blob_present = u64::try_from(present).unwrap_or(u64::MAX);
                    }
                    _ => {}
                }
                buf = rest;
                if !complete {
                    chunk.truncated = true;
                    break;
                }
            }
            WireType::ThirtyTwoBit | WireType::SixtyFourBit => {
                let width = if wire_type == WireType::ThirtyTwoBit {
                    4
                } else {
                    8
                };
                if buf.len() < width {
                    chunk.truncated = true;
                    break;
                }
                buf = buf.get(width..).unwrap_or_default();
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(malformed(field_start, "unexpected group field"));
            }
        }
    }
    Ok(chunk)
}

/// True when `buf` holds only continuation bytes of a varint (at most 9 of them), so the
/// varint was cut by the end of the buffer rather than being invalid.
fn varint_is_cut(buf: &[u8]) -> bool {
    buf.len() < 10 && buf.iter().all(|b| b & 0x80 != 0)
}

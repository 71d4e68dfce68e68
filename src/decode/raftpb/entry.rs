//! The raft types etcd persists: log entries and their payload kinds, the HardState,
//! the ConfState, snapshots and conf changes. The WAL carries them, and so do the peers' raft
//! messages. Field numbers follow etcd's raftpb (raft/raftpb/raft.proto).

use prost::Message;
use serde::Serialize;

use crate::decode::etcdpb::json::{self, proto_enum};
use crate::decode::etcdpb::raft_internal::{decode_entry_data, EntryRequest};

/// An entry's payload is not a valid message of the kind its type names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed {kind} payload: {source}")]
pub struct PayloadError {
    /// The message the payload should hold (`InternalRaftRequest`, `ConfChange`, ...).
    pub kind: &'static str,
    pub source: prost::DecodeError,
}

proto_enum! {
    /// raftpb.EntryType.
    pub enum EntryType {
        EntryNormal = 0 => "EntryNormal",
        EntryConfChange = 1 => "EntryConfChange",
        EntryConfChangeV2 = 2 => "EntryConfChangeV2",
    }
}

/// raftpb.Entry: one raft log entry.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Entry {
    #[prost(uint64, tag = "2")]
    #[serde(
        rename = "Term",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub term: u64,
    #[prost(uint64, tag = "3")]
    #[serde(
        rename = "Index",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub index: u64,
    #[prost(enumeration = "EntryType", tag = "1")]
    #[serde(
        rename = "Type",
        serialize_with = "EntryType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub r#type: i32,
    #[prost(bytes = "vec", tag = "4")]
    #[serde(
        rename = "Data",
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub data: Vec<u8>,
}

impl Entry {
    /// Decodes a normal entry's data (an InternalRaftRequest, or a bare v2 request).
    /// None for conf changes and for empty entries (a new leader's first entry).
    pub fn decode_request(&self) -> Option<Result<EntryRequest, PayloadError>> {
        if self.r#type != EntryType::EntryNormal as i32 || self.data.is_empty() {
            return None;
        }
        Some(
            decode_entry_data(&self.data).map_err(|source| PayloadError {
                kind: "InternalRaftRequest",
                source,
            }),
        )
    }

    /// Decodes a conf-change entry's data. None for other entry types.
    pub fn decode_conf_change(&self) -> Option<Result<ConfChangeEntry, PayloadError>> {
        let payload = |kind, source| PayloadError { kind, source };
        match EntryType::try_from(self.r#type) {
            Ok(EntryType::EntryConfChange) => Some(
                ConfChange::decode(self.data.as_slice())
                    .map(ConfChangeEntry::V1)
                    .map_err(|e| payload("ConfChange", e)),
            ),
            Ok(EntryType::EntryConfChangeV2) => Some(
                ConfChangeV2::decode(self.data.as_slice())
                    .map(ConfChangeEntry::V2)
                    .map_err(|e| payload("ConfChangeV2", e)),
            ),
            _ => None,
        }
    }
}

/// raftpb.HardState: the term, vote and commit index a member persisted.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message, Serialize)]
pub struct HardState {
    #[prost(uint64, tag = "1")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub term: u64,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub vote: u64,
    #[prost(uint64, tag = "3")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub commit: u64,
}

/// raftpb.ConfState: the voters and learners at a snapshot.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfState {
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    #[serde(
        serialize_with = "json::u64_str_list",
        skip_serializing_if = "json::is_default"
    )]
    pub voters: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    #[serde(
        serialize_with = "json::u64_str_list",
        skip_serializing_if = "json::is_default"
    )]
    pub learners: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    #[serde(
        serialize_with = "json::u64_str_list",
        skip_serializing_if = "json::is_default"
    )]
    pub voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    #[serde(
        serialize_with = "json::u64_str_list",
        skip_serializing_if = "json::is_default"
    )]
    pub learners_next: Vec<u64>,
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub auto_leave: bool,
}

/// raftpb.SnapshotMetadata: the state a snapshot was taken at.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMetadata {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf_state: Option<ConfState>,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub index: u64,
    #[prost(uint64, tag = "3")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub term: u64,
}

/// raftpb.Snapshot: a snapshot's data (for etcd: the v2 store as JSON) and metadata, as
/// saved in member/snap/*.snap and sent to a lagging follower.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub data: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SnapshotMetadata>,
}

proto_enum! {
    /// raftpb.ConfChangeType.
    pub enum ConfChangeType {
        ConfChangeAddNode = 0 => "ConfChangeAddNode",
        ConfChangeRemoveNode = 1 => "ConfChangeRemoveNode",
        ConfChangeUpdateNode = 2 => "ConfChangeUpdateNode",
        ConfChangeAddLearnerNode = 3 => "ConfChangeAddLearnerNode",
    }
}

/// raftpb.ConfChange: a membership change (the v1 form etcd proposes).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfChange {
    #[prost(uint64, tag = "1")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
    #[prost(enumeration = "ConfChangeType", tag = "2")]
    #[serde(
        serialize_with = "ConfChangeType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub r#type: i32,
    #[prost(uint64, tag = "3")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub node_id: u64,
    /// For etcd: a JSON-encoded membership.Member.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub context: Vec<u8>,
}

/// raftpb.ConfChangeSingle.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfChangeSingle {
    #[prost(enumeration = "ConfChangeType", tag = "1")]
    #[serde(
        serialize_with = "ConfChangeType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub r#type: i32,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub node_id: u64,
}

/// raftpb.ConfChangeV2: a joint-consensus membership change.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfChangeV2 {
    #[prost(int32, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub transition: i32,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub changes: Vec<ConfChangeSingle>,
    #[prost(bytes = "vec", tag = "3")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub context: Vec<u8>,
}

/// A conf-change entry's data.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfChangeEntry {
    /// raftpb.ConfChange.
    V1(ConfChange),
    /// raftpb.ConfChangeV2.
    V2(ConfChangeV2),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_metadata_field_numbers() {
        // Hand-encoded as etcd writes it: metadata {conf_state {voters 7}, index 9,
        // term 2}, data "{}".
        let mut meta = Vec::new();
        prost::encoding::message::encode(
            1,
            &ConfState {
                voters: vec![7],
                ..Default::default()
            },
            &mut meta,
        );
        prost::encoding::uint64::encode(2, &9, &mut meta);
        prost::encoding::uint64::encode(3, &2, &mut meta);
        let mut snap = Vec::new();
        prost::encoding::bytes::encode(1, &b"{}".to_vec(), &mut snap);
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut snap);
        prost::encoding::encode_varint(meta.len() as u64, &mut snap);
        snap.extend_from_slice(&meta);

        let decoded = Snapshot::decode(snap.as_slice()).unwrap();
        assert_eq!(decoded.data, b"{}");
        let m = decoded.metadata.clone().unwrap();
        assert_eq!((m.index, m.term), (9, 2));
        assert_eq!(m.conf_state.unwrap().voters, vec![7]);
        let json = serde_json::to_value(&decoded).unwrap();
        assert_eq!(json["metadata"]["index"], "9");
        assert_eq!(json["metadata"]["confState"]["voters"][0], "7");
        assert_eq!(decoded.encode_to_vec(), snap);
    }
}

//! raftpb.Message: one message between raft members, as rafthttp carries it on the peer
//! port, and the snapshot it may carry. Field numbers are raft.proto's. etcd 3.4 (gogo,
//! non-nullable fields) writes every scalar even when it is zero; newer raft leaves unset
//! fields out: both decode to the same values here. The log entries are the WAL's
//! `raftpb.Entry` type.

use serde::Serialize;

pub use super::entry::{ConfState, Entry, EntryType, Snapshot, SnapshotMetadata};
use crate::decode::etcdpb::json::{self, proto_enum};

proto_enum! {
    /// raftpb.MessageType.
    pub enum MessageType {
        MsgHup = 0 => "MsgHup",
        MsgBeat = 1 => "MsgBeat",
        MsgProp = 2 => "MsgProp",
        MsgApp = 3 => "MsgApp",
        MsgAppResp = 4 => "MsgAppResp",
        MsgVote = 5 => "MsgVote",
        MsgVoteResp = 6 => "MsgVoteResp",
        MsgSnap = 7 => "MsgSnap",
        MsgHeartbeat = 8 => "MsgHeartbeat",
        MsgHeartbeatResp = 9 => "MsgHeartbeatResp",
        MsgUnreachable = 10 => "MsgUnreachable",
        MsgSnapStatus = 11 => "MsgSnapStatus",
        MsgCheckQuorum = 12 => "MsgCheckQuorum",
        MsgTransferLeader = 13 => "MsgTransferLeader",
        MsgTimeoutNow = 14 => "MsgTimeoutNow",
        MsgReadIndex = 15 => "MsgReadIndex",
        MsgReadIndexResp = 16 => "MsgReadIndexResp",
        MsgPreVote = 17 => "MsgPreVote",
        MsgPreVoteResp = 18 => "MsgPreVoteResp",
    }
}

/// raftpb.Message.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[prost(enumeration = "MessageType", tag = "1")]
    #[serde(serialize_with = "MessageType::json")]
    pub r#type: i32,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub to: u64,
    #[prost(uint64, tag = "3")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub from: u64,
    #[prost(uint64, tag = "4")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub term: u64,
    #[prost(uint64, tag = "5")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub log_term: u64,
    #[prost(uint64, tag = "6")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub index: u64,
    #[prost(message, repeated, tag = "7")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub entries: Vec<Entry>,
    #[prost(uint64, tag = "8")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub commit: u64,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_empty_snapshot")]
    pub snapshot: Option<Snapshot>,
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub reject: bool,
    #[prost(uint64, tag = "11")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub reject_hint: u64,
    #[prost(bytes = "vec", tag = "12")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub context: Vec<u8>,
}

/// etcd 3.4 writes an empty snapshot into every message (a non-nullable field).
fn is_empty_snapshot(snapshot: &Option<Snapshot>) -> bool {
    snapshot.as_ref().is_none_or(|s| {
        s.data.is_empty()
            && s.metadata.as_ref().is_none_or(|m| {
                m.index == 0 && m.term == 0 && m.conf_state.as_ref().is_none_or(json::is_default)
            })
    })
}

impl Message {
    /// The message type, when it is one raft.proto names.
    pub fn kind(&self) -> Option<MessageType> {
        MessageType::try_from(self.r#type).ok()
    }

    /// The type's name (`MsgApp`), or its number for a type raft.proto does not name.
    pub fn type_name(&self) -> std::borrow::Cow<'static, str> {
        match MessageType::proto_name(self.r#type) {
            Some(name) => name.into(),
            None => format!("MsgType({})", self.r#type).into(),
        }
    }

    /// rafthttp's link heartbeat: a MsgHeartbeat from 0 to 0 that keeps a stream open
    /// and never reaches raft.
    pub fn is_link_heartbeat(&self) -> bool {
        self.r#type == MessageType::MsgHeartbeat as i32 && self.from == 0 && self.to == 0
    }

    /// The index of the last entry carried, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.entries.last().map(|e| e.index)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// A MsgApp as etcd 3.4 (gogo) writes it: every scalar field present, zeros too, and
    /// the non-nullable snapshot as an empty message.
    fn gogo_msgapp() -> Vec<u8> {
        let mut b = Vec::new();
        for (tag, value) in [(1u8, 3u64), (2, 2), (3, 1), (4, 5), (5, 5), (6, 10)] {
            b.push(tag << 3);
            prost::encoding::encode_varint(value, &mut b);
        }
        // entries: Term 5, Index 11, Type 0, Data "x"
        let entry = [0x10, 5, 0x18, 11, 0x08, 0, 0x22, 1, b'x'];
        b.push(7 << 3 | 2);
        b.push(entry.len() as u8);
        b.extend_from_slice(&entry);
        b.extend_from_slice(&[8 << 3, 9]); // commit 9
                                           // snapshot: metadata { conf_state {}, index 0, term 0 }
        let snapshot = [0x12, 6, 0x0a, 0, 0x10, 0, 0x18, 0];
        b.push(9 << 3 | 2);
        b.push(snapshot.len() as u8);
        b.extend_from_slice(&snapshot);
        b.extend_from_slice(&[10 << 3, 0, 11 << 3, 0]); // reject false, rejectHint 0
        b
    }

    #[test]
    fn decodes_gogo_and_sparse_encodings_alike() {
        let gogo = Message::decode(gogo_msgapp().as_slice()).unwrap();
        assert_eq!(gogo.kind(), Some(MessageType::MsgApp));
        assert_eq!((gogo.to, gogo.from, gogo.term, gogo.log_term), (2, 1, 5, 5));
        assert_eq!((gogo.index, gogo.commit), (10, 9));
        assert_eq!(gogo.entries.len(), 1);
        assert_eq!((gogo.entries[0].term, gogo.entries[0].index), (5, 11));
        assert_eq!(gogo.entries[0].data, b"x");
        assert_eq!(gogo.last_index(), Some(11));
        // Newer raft leaves the zeros and the empty snapshot out.
        let sparse = Message {
            snapshot: None,
            ..gogo.clone()
        };
        let again = Message::decode(sparse.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, sparse);
        // Both print the same JSON: the empty snapshot is left out.
        assert_eq!(
            serde_json::to_string(&gogo).unwrap(),
            serde_json::to_string(&sparse).unwrap()
        );
    }

    #[test]
    fn link_heartbeat_and_type_names() {
        let beat = Message {
            r#type: MessageType::MsgHeartbeat as i32,
            ..Message::default()
        };
        assert!(beat.is_link_heartbeat());
        assert_eq!(beat.type_name(), "MsgHeartbeat");
        let real = Message {
            to: 2,
            from: 1,
            ..beat
        };
        assert!(!real.is_link_heartbeat());
        let odd = Message {
            r#type: 99,
            ..Message::default()
        };
        assert_eq!(odd.kind(), None);
        assert_eq!(odd.type_name(), "MsgType(99)");
        let json = serde_json::to_value(&real).unwrap();
        assert_eq!(json["type"], "MsgHeartbeat");
        assert_eq!(json["from"], "1");
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = crate::test_rng::XorShift(0x5eed_0f7a_f7f7);
        let good = gogo_msgapp();
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..=rng.index(4) {
                let i = rng.index(b.len());
                b[i] = rng.next() as u8;
            }
            b.truncate(rng.index(b.len() + 1));
            let _ = Message::decode(b.as_slice());
            let n = rng.index(64);
            let _ = Message::decode(rng.bytes(n).as_slice());
        }
    }
}

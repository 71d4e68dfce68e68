//! etcd's write-ahead log (server/storage/wal): record framing, the CRC-32C chain, and a
//! push decoder that follows one WAL file through the `write()` calls etcd makes to it.
//! This is how a capture tells which raft entries reached disk, when, and whether the
//! bytes on disk were intact. The raft payloads the records carry are in
//! [`crate::decode::raftpb`].
//!
//! A member's WAL is a directory of segment files, `member/wal/<seq>-<index>.wal` (both
//! 16 hex digits: the segment's sequence number and the raft index of its first
//! entry), each preallocated to 64 MB, written under a temporary name and renamed once
//! its head is on disk. A record on disk is an 8-byte little-endian length word (low 56
//! bits: data length; when bit 63 is set, bits 56–58 count the padding bytes), a
//! walpb.Record protobuf {type 1, crc 2, data 3}, and zero padding to an 8-byte
//! boundary. A zero length word marks the end of written data in the preallocated file.
//!
//! Record types: metadata (1, etcdserverpb.Metadata: node and cluster ID), entry (2,
//! raftpb.Entry), state (3, raftpb.HardState), crc (4), snapshot (5, walpb.Snapshot).
//! Each record's crc field is CRC-32C over its data, continued from the previous
//! record's: one chain over the whole log. Every file starts with a crc record that
//! carries the chain value the previous file ended with (0 in the first file), then the
//! metadata record, so a file can be checked on its own and against its predecessor.
//!
//! `record` holds the framing and the chain, `stream` the decoders that follow a file
//! through writes or read it whole, and `segments` a directory's files as one chain.

mod record;
mod segments;
mod stream;
#[cfg(test)]
mod tests;

pub use record::{
    frame_record, parse_record, WalCrc, WalEncoder, WalError, WalMetadata, WalPayload, WalRecord,
    WalRecordKind, WalSnapshot, FRAME_HEADER_BYTES, MAX_RECORD_BYTES,
};
pub use segments::{
    BreakKind, ChainBreak, SegmentChain, SegmentDecode, SegmentEnd, SegmentName, MAX_SEGMENT_BYTES,
};
pub use stream::{decode_wal_file, SkipReason, WalEvent, WalFileDecode, WalRecordAt, WalStream};

//! etcd's raft protobuf types (raftpb), as our own prost definitions.

pub mod entry;

pub use entry::*;

//! raft's protobuf types (go.etcd.io/raft raftpb) as our own prost types: what members
//! send each other on the peer port, and what the WAL holds.

pub mod entry;
pub mod message;

pub use entry::*;
pub use message::{Message, MessageType};

//! Decoders for untrusted bytes, layer by layer: TCP reassembly (and TLS plaintext
//! streams), HTTP/2 frames, HPACK, gRPC framing, etcd protobuf, WAL records; and for
//! the peer port, HTTP/1.1, rafthttp's framings and raft's protobuf. Each takes borrowed
//! bytes, returns explicit "incomplete" or error results, never panics, and never
//! allocates from a length field without a bound.

#![forbid(unsafe_code)]

pub mod etcdpb;
pub mod grpc;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod rafthttp;
pub mod raftpb;
pub mod tcp;
pub mod tls;
pub mod wal;

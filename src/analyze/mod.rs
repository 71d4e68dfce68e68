//! Analyses over a capture's events. Each streams: bounded memory whatever the capture's
//! size (state grows with connections and files, not with events).

#![forbid(unsafe_code)]

pub mod api;
pub mod baseline;
pub mod clock_offsets;
pub mod correlate;
pub mod detect;
pub mod diff;
pub mod disk;
pub mod histogram;
pub mod member;
pub mod merge;
pub mod order;
pub mod pattern;
pub mod peers;
pub mod phases;
pub mod profile;
pub mod raft;
pub mod rpc;
pub mod sharded;
pub mod streams;
pub mod summary;
#[cfg(test)]
mod test_wire;
pub mod top;
pub mod wal_log;

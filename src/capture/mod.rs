//! The capture file: the product's contract with its users, treated like a database file
//! format. Events, the header, the block framing, the index, and recovery of files whose
//! recorder died before writing the index; the files of a rotated recording read as one
//! (`set`), and a file read while it is still being written (`follow`).
//!
//! # Layout (format version 6)
//!
//! All integers are little-endian; every checksum is CRC-32C; "bincode" means bincode 2
//! with `config::standard()` (varint integers).
//!
//! ```text
//! preamble  magic b"ETCDTRACE\0" (10) | format_version u32 | header_len u32
//!           | header: bincode(Header), header_len bytes
//!           | crc u32 of everything before it in the preamble
//! blocks    zero or more, back to back, each:
//!           frame header (36 bytes):
//!             magic b"ETRB" | payload_len u32 | event_count u32
//!             | first_ts u64 | last_ts u64     (min and max Event::ts_ns in the block)
//!             | payload_crc u32                (of the payload)
//!             | header_crc u32                 (of the 32 frame header bytes before it)
//!           payload: zstd frame of the block's events, payload_len bytes:
//!             formats 2 to 6: each event bincode-encoded as `packed` describes
//!             format 1: bincode(Vec<Event>)
//! index     magic b"ETRI" | len u32 | bincode(Index), len bytes
//!             (a block's counts: [u64; 6], packet, syscall, loss, tls, process,
//!             api; formats 3 to 5: [u64; 5]; formats 1, 2: [u64; 3]; format 1: no `redaction`; before format 5: no
//!             `latency`, the list of histograms that ends it, each
//!             data dir (str) | kind (varint: wal sync, wal write, db sync, db write)
//!             | buckets (Vec<u64>, log2 ns) | sum_ns u64)
//!           | crc u32 of the magic, len and index bytes
//! trailer   index_offset u64 (offset of b"ETRI") | magic b"ETRIDX\0\0"
//! ```
//!
//! A file ends with its trailer only when recording finished. Readers bound every
//! length: payload_len ≤ 64 MiB, a decompressed payload ≤ 256 MiB, header ≤ 16 MiB,
//! index ≤ 256 MiB; in the index, at most 65536 histograms, each of 1 to 64 buckets and a
//! data dir name of at most 4096 bytes (`latency`). Without a valid trailer and index, a reader walks the frames from
//! the end of the preamble, resynchronising on the next `ETRB` whose header checksum
//! verifies, and reports what it could not read. Any change to this layout, to the
//! header or to the event types is a new format version, and readers keep reading the
//! older ones. Format 1 differs from 2 in the block payload and the index; format 3
//! adds TLS plaintext events (`Event::Tls`, packed kind 3) and etcd processes that start
//! and end (`Event::Process`, kind 4), with a 3-bit kind in the packed tag (format 2's
//! has two bits, all taken, and refuses kind 3), and their counts in the index. Format 4
//! adds `hosts` at the end of the header: the hosts of a capture merged from several
//! (`Header::hosts`, empty for one recorder's capture); its blocks and index are format
//! 3's. A header of formats 1 to 3 reads as one without hosts. Format 5 adds the kernel's
//! latency histograms at the end of the index (`Index::latency`): per data dir, log2
//! histograms of WAL and backend syncs and writes since the recording started, so each
//! file of a rotated set holds the whole recording's; header and blocks are format 4's.
//! An index of formats 1 to 4, or one recovered by scanning, has none. Format 6 adds
//! what API mode saw (`record --mode api`, for where eBPF cannot run: no root, a
//! managed etcd): `Event::Api`, packed kind 5, and its count, a sixth per block in the
//! index; and `Header::mode` at the end of the header (eBPF or API, with the
//! endpoints). A header of formats 4 and 5 reads as eBPF; their blocks refuse kind 5.

#![forbid(unsafe_code)]

pub mod api;
pub mod block;
pub mod error;
pub mod event;
pub mod follow;
pub mod header;
pub mod index;
pub mod latency;
pub mod packed;
pub mod pcap;
pub mod reader;
pub mod scrub_report;
pub mod set;
pub mod writer;

#[cfg(test)]
mod tests;

pub use block::{FrameHeader, FRAME_HEADER_LEN, MAX_DECOMPRESSED_LEN, MAX_PAYLOAD_LEN};
pub use error::CaptureError;
pub use event::*;
pub use follow::{being_recorded, FollowEnd, FollowItem, Follower};
pub use header::{
    CaptureFormat, CaptureMode, Header, HostInfo, InterfaceInfo, ProcessInfo, RecordConfig,
    FILE_MAGIC, FORMAT_VERSION, HOST_CONN_ID_STRIDE, HOST_ID_STRIDE,
};
pub use index::{BlockInfo, Index};
pub use latency::{BucketRange, LatencyHistogram, LatencyKind};
pub use reader::{CaptureReader, Damage, Events, IndexState, ReadItem};
pub use scrub_report::{ScrubReport, TlsScrubReport};
pub use set::{open_set, rotated_path};
pub use writer::{CaptureWriter, WriteSummary, WriterOptions};

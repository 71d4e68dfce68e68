//! Format 2's and 3's encoding of a block's events. Format 1 wrote bincode's
//! `Vec<Event>`, which spent ~42 bytes on a packet's header and ~40 on a socket syscall:
//! nine for every timestamp, both socket addresses, a data file's path on every write.
//! Format 2 is still bincode (standard configuration: varint integers, zigzag for signed
//! ones), of fewer and smaller fields: an event's time as the difference from the event
//! before it, a TCP sequence number as the difference from the one its connection's
//! last segment implied, and connections, files and threads written out once per block
//! and named by their index after that. zstd, the recorder's largest cost, takes time
//! per byte it is given, and the block's events are about 40% smaller. Format 3 adds
//! kind 3, TLS plaintext, and kind 4, etcd processes that start and end, the same way;
//! its tag has a 3-bit kind, so that there is room for more. A format-2 block holds
//! neither and decodes with its own tag. Format 6 adds kind 5, what API mode saw: rare
//! events of nested lists, so bincode's encoding of the whole observation, decoded
//! under a bound of its own.
//!
//! ```text
//! event    tag u8 | ts: i64, the difference from the previous event's ts (0 before
//!          the first)
//!          tag, format 3: kind in bits 0-2 (0 packet, 1 syscall, 2 loss, 3 tls,
//!            4 process, 5 api), the kind's flags in bits 3-7
//!          tag, format 2: kind in bits 0-1 (0 packet, 1 syscall, 2 loss), the kind's
//!            flags in bits 2-7
//! packet   | connection | [seq: i32] | [ack: i32] | flags u8 | [window u16]
//!          | payload_len u32 | payload &[u8]
//! syscall  | exit - enter: i64 | thread | call u8 | fd i32 | file | [offset u64]
//!          | requested u64 | ret i64 | data &[u8]
//! loss     | source u8 | count u64
//! tls      | thread | stream | [offset: i64] | [len u32] | data &[u8]
//! process  | pid u32 | change u8 (0 start, 1 exit)
//!          | start: data_dir Option<&str> | cmdline: count u64, then each &str
//!          | exit: code Option<i32> | signal Option<i32>
//! api      | body &[u8]: bincode of (endpoint, observation), see `capture::api`
//! ```
//!
//! The flags, numbered from the flags' first bit: packets: 0 a new connection entry, 1
//! `seq` left out, 2 `ack` left out, 3 `window` left out; syscalls: 0 a new file entry,
//! 1 a new thread entry, 2 `offset` present; TLS: 0 a new stream entry, 1 a new thread
//! entry, 2 `offset` left out, 3 `len` left out. Loss and process events have none.
//!
//! A connection, file, thread or stream is a u64 index into the block's table of them
//! or, flagged in the tag, a new entry (connection: ifindex u32, direction u8, source
//! and destination as family u8, address [u8; 4 or 16], port u16; file: kind u8, path
//! &str, local and peer port u16; thread: pid u32, tid u32; stream: conn_id u64,
//! direction u8, endpoints as family 0 when not known, else the local and the remote
//! address as a connection's are). `seq` is the difference from the sequence number the
//! connection's last segment implied, `ack` from its last ack (both from 0 for a new
//! connection); the tag's flags leave out a `seq` that is the implied one and an `ack`
//! or `window` that repeats. A TLS event's `offset` is the difference from the offset
//! its stream's last event implied (its offset + len; 0 for a new stream), left out
//! when it is that one, and its `len` is left out when `data` holds all of it. Every
//! table starts empty in each block, so blocks decode on their own.

use std::collections::HashMap;

use super::api::ApiObservation;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bincode::config::Configuration;
use bincode::de::read::{BorrowReader, Reader};
use bincode::de::{BorrowDecode, Decode, DecoderImpl};
use bincode::enc::{Encode, EncoderImpl};
use bincode::error::DecodeError;
use bytes::Bytes;
use foldhash::fast::RandomState;
use thiserror::Error;

use super::event::{
    ApiEvent, Direction, Event, EventKind, FileKind, FileRef, Loss, LossSource, Packet,
    ProcessChange, ProcessEvent, Syscall, SyscallKind, TcpFlags, TlsData, TlsEndpoints,
};
use super::header::CaptureFormat;

const KIND_PACKET: u8 = 0;
const KIND_SYSCALL: u8 = 1;
const KIND_LOSS: u8 = 2;
const KIND_TLS: u8 = 3;
const KIND_PROCESS: u8 = 4;
const KIND_API: u8 = 5;
/// What decoding one API event's body may claim (bincode reserves a list's claimed
/// length before reading it): in proportion to the body, so a few damaged bytes cannot
/// reserve much. A real body claims less than 64 bytes per byte of it (a list entry
/// takes at least three bytes there and at most 88 in memory); the largest tier bounds
/// any block's.
const API_LIMIT_SMALL: usize = 256 << 10;
const API_LIMIT_MEDIUM: usize = 4 << 20;
const API_LIMIT_LARGE: usize = 64 << 20;
const API_SMALL_BODY: usize = API_LIMIT_SMALL / 64;
const API_MEDIUM_BODY: usize = API_LIMIT_MEDIUM / 64;

type ApiBody = (String, ApiObservation);

fn decode_api_body(body: &[u8]) -> Result<(ApiBody, usize), DecodeError> {
    fn with<const LIMIT: usize>(body: &[u8]) -> Result<(ApiBody, usize), DecodeError> {
        bincode::decode_from_slice(body, bincode::config::standard().with_limit::<LIMIT>())
    }
    match body.len() {
        n if n <= API_SMALL_BODY => with::<API_LIMIT_SMALL>(body),
        n if n <= API_MEDIUM_BODY => with::<API_LIMIT_MEDIUM>(body),
        _ => with::<API_LIMIT_LARGE>(body),
    }
}
// The flags, as numbered from the flags' first bit of the tag (see `TagLayout`).
/// A new connection (packets), file (syscalls) or stream (TLS) entry follows instead of
/// an index.
const NEW_ENTRY: u8 = 0x01;
/// Packets: the sequence number is the one the connection's last segment implied.
const SEQ_EXPECTED: u8 = 0x02;
/// Packets: the ack is the connection's last segment's.
const ACK_SAME: u8 = 0x04;
/// Packets: the window is the connection's last segment's.
const WINDOW_SAME: u8 = 0x08;
/// Syscalls and TLS: a new thread entry follows instead of an index.
const NEW_THREAD: u8 = 0x02;
/// Syscalls: an offset follows.
const HAS_OFFSET: u8 = 0x04;
/// TLS: the offset is the one the stream's last event implied.
const OFFSET_EXPECTED: u8 = 0x04;
/// TLS: `len` is the length of `data`.
const LEN_CAPTURED: u8 = 0x08;
/// Every flag a TLS tag may carry.
const TLS_FLAGS: u8 = NEW_ENTRY | NEW_THREAD | OFFSET_EXPECTED | LEN_CAPTURED;
const PROCESS_START: u8 = 0;
const PROCESS_EXIT: u8 = 1;

/// How a tag byte holds an event's kind and its flags: the kind in the low bits, the
/// flags above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagLayout {
    /// Format 2: a 2-bit kind (packet, syscall, loss), six bits of flags.
    KindBits2,
    /// Format 3: a 3-bit kind, five bits of flags.
    KindBits3,
}

impl TagLayout {
    fn of(format: CaptureFormat) -> TagLayout {
        match format {
            CaptureFormat::V1 | CaptureFormat::V2 => TagLayout::KindBits2,
            CaptureFormat::V3 | CaptureFormat::V4 | CaptureFormat::V5 | CaptureFormat::V6 => {
                TagLayout::KindBits3
            }
        }
    }

    fn kind_bits(self) -> u32 {
        match self {
            TagLayout::KindBits2 => 2,
            TagLayout::KindBits3 => 3,
        }
    }

    fn tag(self, kind: u8, flags: u8) -> u8 {
        kind | flags << self.kind_bits()
    }

    /// The kind and the flags of a tag.
    fn split(self, tag: u8) -> (u8, u8) {
        let bits = self.kind_bits();
        (tag & ((1 << bits) - 1), tag >> bits)
    }
}

/// Upper bound on the fixed part of one event (everything but its path and bytes).
const MAX_HEAD_LEN: usize = 160;

/// Why a format-2 block's events do not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PackedError {
    #[error("event {0} is cut short")]
    Truncated(usize),
    #[error("event {event} does not decode: {reason}")]
    Malformed { event: usize, reason: String },
    #[error("event {event} has an unknown {what} {value}")]
    Unknown {
        event: usize,
        what: &'static str,
        value: u64,
    },
    #[error("event {event} names {what} {index}, but the block has {len}")]
    BadIndex {
        event: usize,
        what: &'static str,
        index: u64,
        len: usize,
    },
}

/// The key of a connection entry: one direction of one TCP connection, as seen at one
/// interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Connection {
    ifindex: u32,
    direction: Direction,
    src: SocketAddr,
    dst: SocketAddr,
}

/// The key of a TLS stream entry: one direction of one TLS connection, with its
/// endpoints as far as they were known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TlsStream {
    conn_id: u64,
    direction: Direction,
    endpoints: Option<TlsEndpoints>,
}

impl TlsStream {
    fn of(t: &TlsData) -> TlsStream {
        TlsStream {
            conn_id: t.conn_id,
            direction: t.direction,
            endpoints: t.endpoints,
        }
    }
}

/// What a connection's last segment lets the next one be written as a difference from.
#[derive(Debug, Clone, Copy, Default)]
struct SegmentState {
    next_seq: u32,
    ack: u32,
    window: u16,
}

impl SegmentState {
    fn after(packet: &Packet) -> SegmentState {
        let flags = packet.flags;
        let mut next_seq = packet.seq.wrapping_add(packet.payload_len);
        if flags.syn() {
            next_seq = next_seq.wrapping_add(1);
        }
        if flags.fin() {
            next_seq = next_seq.wrapping_add(1);
        }
        SegmentState {
            next_seq,
            ack: packet.ack,
            window: packet.window,
        }
    }
}

/// A connection, file or thread as one integer, for the common cases (IPv4, sockets):
/// hashing and comparing it costs a fraction of the full key's, on the recorder's hot
/// path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ShortKey(u128);

impl ShortKey {
    fn of_connection(c: &Connection) -> Option<ShortKey> {
        let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (c.src, c.dst) else {
            return None;
        };
        if c.ifindex >= 1 << 31 {
            return None;
        }
        let direction = match c.direction {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        };
        Some(ShortKey(
            u128::from(u32::from(*src.ip())) << 96
                | u128::from(u32::from(*dst.ip())) << 64
                | u128::from(src.port()) << 48
                | u128::from(dst.port()) << 32
                | u128::from(c.ifindex) << 1
                | direction,
        ))
    }

    fn of_thread(pid: u32, tid: u32) -> Option<ShortKey> {
        Some(ShortKey(u128::from(pid) << 32 | u128::from(tid)))
    }

    fn of_file(f: &FileRef) -> Option<ShortKey> {
        if !f.path.is_empty() {
            return None;
        }
        Some(ShortKey(
            u128::from(file_kind_code(f.kind)) << 32
                | u128::from(f.local_port) << 16
                | u128::from(f.peer_port),
        ))
    }
}

/// Entries of one table, found by their short key where they have one.
struct Table<K> {
    short: HashMap<ShortKey, usize, RandomState>,
    long: HashMap<K, usize, RandomState>,
    len: usize,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Table {
            short: HashMap::default(),
            long: HashMap::default(),
            len: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    /// The entry's index, and whether it is new.
    fn index(&mut self, short: Option<ShortKey>, key: &K) -> (usize, bool) {
        let next = self.len;
        let index = match short {
            Some(short) => *self.short.entry(short).or_insert(next),
            None => match self.long.get(key) {
                Some(&index) => index,
                None => {
                    self.long.insert(key.clone(), next);
                    next
                }
            },
        };
        let new = index == next;
        if new {
            self.len += 1;
        }
        (index, new)
    }

    fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
        self.len = 0;
    }
}

/// Encodes one block's events (in the current format); [`reset`](Self::reset) starts the
/// next block.
pub struct PackedEncoder {
    layout: TagLayout,
    prev_ts: u64,
    connections: Table<Connection>,
    segments: Vec<SegmentState>,
    files: Table<FileRef>,
    threads: Table<(u32, u32)>,
    streams: Table<TlsStream>,
    /// Per stream entry: the offset its last event implied for the next.
    stream_offsets: Vec<u64>,
}

impl Default for PackedEncoder {
    fn default() -> Self {
        PackedEncoder {
            layout: TagLayout::KindBits3,
            prev_ts: 0,
            connections: Table::default(),
            segments: Vec::new(),
            files: Table::default(),
            threads: Table::default(),
            streams: Table::default(),
            stream_offsets: Vec::new(),
        }
    }
}

impl PackedEncoder {
    /// An encoder of format 2's blocks (tests make format-2 files with it): only its
    /// kinds may be given to it.
    #[cfg(test)]
    pub(crate) fn format_2() -> PackedEncoder {
        PackedEncoder {
            layout: TagLayout::KindBits2,
            ..PackedEncoder::default()
        }
    }

    /// Forget the block's tables and time: the next event starts a block.
    pub fn reset(&mut self) {
        self.prev_ts = 0;
        self.connections.clear();
        self.segments.clear();
        self.files.clear();
        self.threads.clear();
        self.streams.clear();
        self.stream_offsets.clear();
    }

    /// Append `event` to `out`.
    pub fn encode(&mut self, event: &Event, out: &mut Vec<u8>) {
        let ts = event.ts_ns();
        let delta = ts.wrapping_sub(self.prev_ts) as i64;
        self.prev_ts = ts;
        out.reserve(MAX_HEAD_LEN + payload_len(event));
        let tag_at = out.len();
        let mut fields = Fields(EncoderImpl::new(
            VecWriter(out),
            bincode::config::standard(),
        ));
        fields.put(0u8); // the tag, set below
        fields.put(delta);
        let (kind, flags) = match event {
            Event::Packet(p) => (KIND_PACKET, self.packet(p, &mut fields)),
            Event::Syscall(s) => (KIND_SYSCALL, self.syscall(s, &mut fields)),
            Event::Loss(l) => {
                fields.put(match l.source {
                    LossSource::Kernel => 0u8,
                    LossSource::PerfBuffer => 1,
                });
                fields.put(l.count);
                (KIND_LOSS, 0)
            }
            Event::Tls(t) => (KIND_TLS, self.tls(t, &mut fields)),
            Event::Process(p) => {
                process(p, &mut fields);
                (KIND_PROCESS, 0)
            }
            Event::Api(a) => {
                let body =
                    bincode::encode_to_vec((&a.endpoint, &a.observed), bincode::config::standard())
                        .unwrap_or_default();
                fields.put(body.as_slice());
                (KIND_API, 0)
            }
        };
        out[tag_at] = self.layout.tag(kind, flags);
    }

    /// A packet's fields; returns its flags.
    fn packet(&mut self, p: &Packet, fields: &mut Fields) -> u8 {
        let key = Connection {
            ifindex: p.ifindex,
            direction: p.direction,
            src: p.src,
            dst: p.dst,
        };
        let (index, new) = self.connections.index(ShortKey::of_connection(&key), &key);
        let mut flags = 0;
        let last = if new {
            flags |= NEW_ENTRY;
            fields.put(p.ifindex);
            fields.put(direction_code(p.direction));
            fields.address(p.src);
            fields.address(p.dst);
            self.segments.push(SegmentState::after(p));
            SegmentState {
                next_seq: 0,
                ack: 0,
                window: 0,
            }
        } else {
            fields.put(index as u64);
            let last = self.segments[index];
            self.segments[index] = SegmentState::after(p);
            last
        };
        if last.next_seq == p.seq && !new {
            flags |= SEQ_EXPECTED;
        } else {
            fields.put(p.seq.wrapping_sub(last.next_seq) as i32);
        }
        if last.ack == p.ack && !new {
            flags |= ACK_SAME;
        } else {
            fields.put(p.ack.wrapping_sub(last.ack) as i32);
        }
        fields.put(p.flags.0);
        if last.window == p.window && !new {
            flags |= WINDOW_SAME;
        } else {
            fields.put(p.window);
        }
        fields.put(p.payload_len);
        fields.put(&p.payload[..]);
        flags
    }

    /// A syscall's fields; returns its flags.
    fn syscall(&mut self, s: &Syscall, fields: &mut Fields) -> u8 {
        let mut flags = 0;
        fields.put(s.exit_ns.wrapping_sub(s.enter_ns) as i64);
        flags |= self.thread(s.pid, s.tid, fields);
        fields.put(s.call.code());
        fields.put(s.fd);
        let (file, new) = self.files.index(ShortKey::of_file(&s.file), &s.file);
        if new {
            flags |= NEW_ENTRY;
            fields.put(file_kind_code(s.file.kind));
            fields.put(s.file.path.as_str());
            fields.put(s.file.local_port);
            fields.put(s.file.peer_port);
        } else {
            fields.put(file as u64);
        }
        if let Some(offset) = s.offset {
            flags |= HAS_OFFSET;
            fields.put(offset);
        }
        fields.put(s.requested);
        fields.put(s.ret);
        fields.put(&s.data[..]);
        flags
    }

    /// The thread's index, or a new entry; returns its flag.
    fn thread(&mut self, pid: u32, tid: u32, fields: &mut Fields) -> u8 {
        let (thread, new) = self
            .threads
            .index(ShortKey::of_thread(pid, tid), &(pid, tid));
        if new {
            fields.put(pid);
            fields.put(tid);
            NEW_THREAD
        } else {
            fields.put(thread as u64);
            0
        }
    }

    /// A TLS event's fields; returns its flags.
    fn tls(&mut self, t: &TlsData, fields: &mut Fields) -> u8 {
        let mut flags = self.thread(t.pid, t.tid, fields);
        let key = TlsStream::of(t);
        let (index, new) = self.streams.index(None, &key);
        let implied = if new {
            flags |= NEW_ENTRY;
            fields.put(t.conn_id);
            fields.put(direction_code(t.direction));
            match t.endpoints {
                None => fields.put(0u8),
                Some(e) => {
                    fields.address(e.local);
                    fields.address(e.remote);
                }
            }
            self.stream_offsets.push(0);
            0
        } else {
            fields.put(index as u64);
            self.stream_offsets[index]
        };
        self.stream_offsets[index] = t.offset.wrapping_add(u64::from(t.len));
        if t.offset == implied {
            flags |= OFFSET_EXPECTED;
        } else {
            fields.put(t.offset.wrapping_sub(implied) as i64);
        }
        if t.data.len() as u64 == u64::from(t.len) {
            flags |= LEN_CAPTURED;
        } else {
            fields.put(t.len);
        }
        fields.put(&t.data[..]);
        flags
    }
}

/// A process event's fields (it has no flags).
fn process(p: &ProcessEvent, fields: &mut Fields) {
    fields.put(p.pid);
    match &p.change {
        ProcessChange::Start { data_dir, cmdline } => {
            fields.put(PROCESS_START);
            fields.put(data_dir.as_deref());
            fields.put(cmdline.len() as u64);
            for arg in cmdline {
                fields.put(arg.as_str());
            }
        }
        ProcessChange::Exit { code, signal } => {
            fields.put(PROCESS_EXIT);
            fields.put(*code);
            fields.put(*signal);
        }
    }
}

fn direction_code(direction: Direction) -> u8 {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// bincode output appended straight to a Vec: its `std::io::Write` adapter costs a
/// fallible call per field, and this is the recorder's hot path.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// An event's fields, each bincode-encoded in turn.
struct Fields<'a>(EncoderImpl<VecWriter<'a>, Configuration>);

impl Fields<'_> {
    fn put<T: Encode>(&mut self, value: T) {
        // Encoding into a Vec does not fail: the writer cannot.
        let _ = value.encode(&mut self.0);
    }

    fn address(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.put(4u8);
                self.put(ip.octets());
            }
            IpAddr::V6(ip) => {
                self.put(6u8);
                self.put(ip.octets());
            }
        }
        self.put(addr.port());
    }
}

/// The bytes an event carries beyond its fixed fields.
fn payload_len(event: &Event) -> usize {
    match event {
        Event::Packet(p) => p.payload.len(),
        Event::Syscall(s) => s.file.path.len() + s.data.len(),
        Event::Loss(_) => 0,
        Event::Tls(t) => t.data.len(),
        Event::Process(p) => match &p.change {
            // Each argument's length takes at most 10 bytes.
            ProcessChange::Start { data_dir, cmdline } => {
                data_dir.as_ref().map_or(0, String::len)
                    + cmdline.iter().map(|a| a.len() + 10).sum::<usize>()
            }
            ProcessChange::Exit { .. } => 0,
        },
        // Its body, and the length of that.
        Event::Api(a) => api_body_len_bound(a),
    }
}

/// At least the length of an API event's bincode body (lengths as 10 bytes at most,
/// numbers as 10).
fn api_body_len_bound(a: &ApiEvent) -> usize {
    use super::api::ApiObservation as O;
    let text = |s: &str| s.len() + 10;
    let texts = |v: &[String]| 10 + v.iter().map(|s| text(s)).sum::<usize>();
    20 + text(&a.endpoint)
        + match &a.observed {
            O::Change(c) => c.key.len() + 100,
            O::Status(s) => 200 + text(&s.version) + texts(&s.errors),
            O::Members(m) => {
                20 + m
                    .members
                    .iter()
                    .map(|m| 40 + text(&m.name) + texts(&m.peer_urls) + texts(&m.client_urls))
                    .sum::<usize>()
            }
            O::Metrics(m) => {
                20 + m
                    .samples
                    .iter()
                    .map(|s| {
                        30 + text(&s.name)
                            + s.labels
                                .iter()
                                .map(|(k, v)| text(k) + text(v))
                                .sum::<usize>()
                    })
                    .sum::<usize>()
            }
            O::Failed { what, error } => text(what) + text(error),
        }
}

/// At least as many bytes as `event` encodes to, whatever the block before it.
pub fn encoded_len_bound(event: &Event) -> usize {
    MAX_HEAD_LEN + payload_len(event)
}

/// A block's bytes, read by bincode with the position kept, so the decoder knows when
/// the block ends.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let bytes: &'a [u8] = self.bytes;
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= bytes.len())
            .ok_or(DecodeError::UnexpectedEnd {
                additional: n.saturating_sub(bytes.len() - self.at),
            })?;
        let taken = &bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }
}

impl Reader for Input<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        out.copy_from_slice(self.take(out.len())?);
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.bytes.get(self.at..self.at.checked_add(n)?)
    }

    fn consume(&mut self, n: usize) {
        self.at = self.at.saturating_add(n).min(self.bytes.len());
    }
}

impl<'a> BorrowReader<'a> for Input<'a> {
    fn take_bytes(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        self.take(length)
    }
}

/// Decodes one block's events, in the order they were encoded.
pub struct PackedDecoder<'a> {
    fields: DecoderImpl<Input<'a>, Configuration, ()>,
    /// Events decoded so far, for errors that say where.
    event: usize,
    prev_ts: u64,
    connections: Vec<(Connection, SegmentState)>,
    files: Vec<FileRef>,
    threads: Vec<(u32, u32)>,
    /// Each stream entry, and the offset its last event implied for the next.
    streams: Vec<(TlsStream, u64)>,
    /// Whether syscalls get their path and data, or empty ones (still checked).
    with_contents: bool,
    /// The format of the block: its flags layout, and the kinds it may hold.
    format: CaptureFormat,
}

impl<'a> PackedDecoder<'a> {
    /// A decoder of format 3's events.
    pub fn new(input: &'a [u8], with_contents: bool) -> PackedDecoder<'a> {
        let input = Input {
            bytes: input,
            at: 0,
        };
        PackedDecoder {
            fields: DecoderImpl::new(input, bincode::config::standard(), ()),
            event: 0,
            prev_ts: 0,
            connections: Vec::new(),
            files: Vec::new(),
            threads: Vec::new(),
            streams: Vec::new(),
            with_contents,
            format: CaptureFormat::V3,
        }
    }

    /// A decoder of a block of this format (2 or 3).
    pub fn with_format(self, format: CaptureFormat) -> PackedDecoder<'a> {
        PackedDecoder { format, ..self }
    }

    /// Bytes not decoded yet.
    pub fn remaining(&mut self) -> usize {
        let input = bincode::de::Decoder::reader(&mut self.fields);
        input.bytes.len() - input.at
    }

    /// The next event; call it only while [`remaining`](Self::remaining) is not zero.
    pub fn next_event(&mut self) -> Result<Event, PackedError> {
        let flags: u8 = self.get()?;
        let (kind, flags) = TagLayout::of(self.format).split(flags);
        let delta: i64 = self.get()?;
        let ts = self.prev_ts.wrapping_add(delta as u64);
        self.prev_ts = ts;
        let holds = |kind: EventKind| self.format.holds(kind);
        let event = match kind {
            KIND_PACKET => Event::Packet(self.packet(flags, ts)?),
            KIND_SYSCALL => Event::Syscall(self.syscall(flags, ts)?),
            KIND_LOSS => Event::Loss(Loss {
                ts_ns: ts,
                source: match self.get::<u8>()? {
                    0 => LossSource::Kernel,
                    1 => LossSource::PerfBuffer,
                    other => return Err(self.unknown("loss source", other.into())),
                },
                count: self.get()?,
            }),
            KIND_TLS if holds(EventKind::Tls) => Event::Tls(self.tls(flags, ts)?),
            KIND_PROCESS if holds(EventKind::Process) => Event::Process(self.process(flags, ts)?),
            KIND_API if holds(EventKind::Api) => Event::Api(self.api(flags, ts)?),
            other => return Err(self.unknown("event kind", other.into())),
        };
        self.event += 1;
        Ok(event)
    }

    fn packet(&mut self, flags: u8, ts_ns: u64) -> Result<Packet, PackedError> {
        let (index, last) = if flags & NEW_ENTRY != 0 {
            let ifindex = self.get()?;
            let direction = self.direction()?;
            let src = self.address()?;
            let dst = self.address()?;
            let key = Connection {
                ifindex,
                direction,
                src,
                dst,
            };
            self.connections.push((key, SegmentState::default()));
            (self.connections.len() - 1, None)
        } else {
            let index = self.index("connection", self.connections.len())?;
            (index, Some(self.connections[index].1))
        };
        let base = last.unwrap_or_default();
        let seq = match last {
            Some(last) if flags & SEQ_EXPECTED != 0 => last.next_seq,
            _ => base.next_seq.wrapping_add(self.get::<i32>()? as u32),
        };
        let ack = match last {
            Some(last) if flags & ACK_SAME != 0 => last.ack,
            _ => base.ack.wrapping_add(self.get::<i32>()? as u32),
        };
        let tcp_flags = TcpFlags(self.get()?);
        let window = match last {
            Some(last) if flags & WINDOW_SAME != 0 => last.window,
            _ => self.get()?,
        };
        let payload_len = self.get()?;
        let payload = Bytes::copy_from_slice(self.slice()?);
        let (key, state) = &mut self.connections[index];
        let packet = Packet {
            ts_ns,
            ifindex: key.ifindex,
            direction: key.direction,
            src: key.src,
            dst: key.dst,
            seq,
            ack,
            flags: tcp_flags,
            window,
            payload_len,
            payload,
        };
        *state = SegmentState::after(&packet);
        Ok(packet)
    }

    fn syscall(&mut self, flags: u8, enter_ns: u64) -> Result<Syscall, PackedError> {
        let exit_ns = enter_ns.wrapping_add(self.get::<i64>()? as u64);
        let (pid, tid) = self.thread(flags)?;
        let code = self.get::<u8>()?;
        let call = SyscallKind::from_code(code.into())
            .ok_or_else(|| self.unknown("syscall", code.into()))?;
        let fd = self.get()?;
        let file = if flags & NEW_ENTRY != 0 {
            let kind = match self.get::<u8>()? {
                0 => FileKind::Wal,
                1 => FileKind::Snap,
                2 => FileKind::Db,
                3 => FileKind::OtherData,
                4 => FileKind::Socket,
                other => return Err(self.unknown("file kind", other.into())),
            };
            let path = <&str>::borrow_decode(&mut self.fields)
                .map_err(|e| self.field_error(e))?
                .to_owned();
            let file = FileRef {
                kind,
                path,
                local_port: self.get()?,
                peer_port: self.get()?,
            };
            self.files.push(file);
            self.files.len() - 1
        } else {
            self.index("file", self.files.len())?
        };
        let offset = if flags & HAS_OFFSET != 0 {
            Some(self.get()?)
        } else {
            None
        };
        let requested = self.get()?;
        let ret = self.get()?;
        let data = self.slice()?;
        let entry = &self.files[file];
        let (file, data) = if self.with_contents {
            (entry.clone(), Bytes::copy_from_slice(data))
        } else {
            let file = FileRef {
                kind: entry.kind,
                path: String::new(),
                local_port: entry.local_port,
                peer_port: entry.peer_port,
            };
            (file, Bytes::new())
        };
        Ok(Syscall {
            enter_ns,
            exit_ns,
            pid,
            tid,
            call,
            fd,
            file,
            offset,
            requested,
            ret,
            data,
        })
    }

    fn tls(&mut self, flags: u8, ts_ns: u64) -> Result<TlsData, PackedError> {
        if flags & !TLS_FLAGS != 0 {
            return Err(self.unknown("TLS flags", flags.into()));
        }
        let (pid, tid) = self.thread(flags)?;
        let (index, implied) = if flags & NEW_ENTRY != 0 {
            let conn_id = self.get()?;
            let direction = self.direction()?;
            let endpoints = match self.get::<u8>()? {
                0 => None,
                family => Some(TlsEndpoints {
                    local: self.address_of(family)?,
                    remote: self.address()?,
                }),
            };
            let key = TlsStream {
                conn_id,
                direction,
                endpoints,
            };
            self.streams.push((key, 0));
            (self.streams.len() - 1, 0)
        } else {
            let index = self.index("stream", self.streams.len())?;
            (index, self.streams[index].1)
        };
        let offset = if flags & OFFSET_EXPECTED != 0 {
            implied
        } else {
            implied.wrapping_add(self.get::<i64>()? as u64)
        };
        let len = if flags & LEN_CAPTURED != 0 {
            None
        } else {
            Some(self.get::<u32>()?)
        };
        let data = self.slice()?;
        let len = match len {
            Some(len) => len,
            None => u32::try_from(data.len()).map_err(|_| PackedError::Malformed {
                event: self.event,
                reason: "TLS data longer than a u32 length".into(),
            })?,
        };
        let (key, next) = &mut self.streams[index];
        *next = offset.wrapping_add(u64::from(len));
        Ok(TlsData {
            ts_ns,
            pid,
            tid,
            conn_id: key.conn_id,
            direction: key.direction,
            endpoints: key.endpoints,
            offset,
            len,
            data: Bytes::copy_from_slice(data),
        })
    }

    fn process(&mut self, flags: u8, ts_ns: u64) -> Result<ProcessEvent, PackedError> {
        if flags != 0 {
            return Err(self.unknown("process flags", flags.into()));
        }
        let pid = self.get()?;
        let change = match self.get::<u8>()? {
            PROCESS_START => {
                let data_dir = Option::<&str>::borrow_decode(&mut self.fields)
                    .map_err(|e| self.field_error(e))?
                    .map(str::to_owned);
                // Each argument takes at least its length's byte: a count past the
                // block's end is refused before anything is allocated for it.
                let count: u64 = self.get()?;
                if count > self.remaining() as u64 {
                    return Err(PackedError::Truncated(self.event));
                }
                let mut cmdline = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let arg =
                        <&str>::borrow_decode(&mut self.fields).map_err(|e| self.field_error(e))?;
                    cmdline.push(arg.to_owned());
                }
                ProcessChange::Start { data_dir, cmdline }
            }
            PROCESS_EXIT => ProcessChange::Exit {
                code: self.get()?,
                signal: self.get()?,
            },
            other => return Err(self.unknown("process change", other.into())),
        };
        Ok(ProcessEvent { ts_ns, pid, change })
    }

    fn api(&mut self, flags: u8, ts_ns: u64) -> Result<ApiEvent, PackedError> {
        if flags != 0 {
            return Err(self.unknown("api flags", flags.into()));
        }
        let body = self.slice()?;
        let ((endpoint, observed), used) =
            decode_api_body(body).map_err(|e| PackedError::Malformed {
                event: self.event,
                reason: format!("api event: {e}"),
            })?;
        if used != body.len() {
            return Err(PackedError::Malformed {
                event: self.event,
                reason: format!("api event: {} bytes past its end", body.len() - used),
            });
        }
        Ok(ApiEvent {
            ts_ns,
            endpoint,
            observed,
        })
    }

    fn thread(&mut self, flags: u8) -> Result<(u32, u32), PackedError> {
        if flags & NEW_THREAD != 0 {
            let thread = (self.get()?, self.get()?);
            self.threads.push(thread);
            Ok(thread)
        } else {
            let index = self.index("thread", self.threads.len())?;
            Ok(self.threads[index])
        }
    }

    fn direction(&mut self) -> Result<Direction, PackedError> {
        match self.get::<u8>()? {
            0 => Ok(Direction::Ingress),
            1 => Ok(Direction::Egress),
            other => Err(self.unknown("direction", other.into())),
        }
    }

    fn get<T: Decode<()>>(&mut self) -> Result<T, PackedError> {
        T::decode(&mut self.fields).map_err(|e| self.field_error(e))
    }

    /// A length-prefixed byte string, borrowed: a length past the input's end is
    /// refused before anything is allocated for it.
    fn slice(&mut self) -> Result<&'a [u8], PackedError> {
        <&'a [u8]>::borrow_decode(&mut self.fields).map_err(|e| self.field_error(e))
    }

    fn field_error(&self, error: DecodeError) -> PackedError {
        match error {
            DecodeError::UnexpectedEnd { .. } => PackedError::Truncated(self.event),
            other => PackedError::Malformed {
                event: self.event,
                reason: other.to_string(),
            },
        }
    }

    fn unknown(&self, what: &'static str, value: u64) -> PackedError {
        PackedError::Unknown {
            event: self.event,
            what,
            value,
        }
    }

    fn index(&mut self, what: &'static str, len: usize) -> Result<usize, PackedError> {
        let index: u64 = self.get()?;
        usize::try_from(index)
            .ok()
            .filter(|&i| i < len)
            .ok_or(PackedError::BadIndex {
                event: self.event,
                what,
                index,
                len,
            })
    }

    fn address(&mut self) -> Result<SocketAddr, PackedError> {
        let family = self.get()?;
        self.address_of(family)
    }

    /// An address whose family byte was read already.
    fn address_of(&mut self, family: u8) -> Result<SocketAddr, PackedError> {
        let ip = match family {
            4 => IpAddr::V4(Ipv4Addr::from(self.get::<[u8; 4]>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.get::<[u8; 16]>()?)),
            other => return Err(self.unknown("address family", other.into())),
        };
        Ok(SocketAddr::new(ip, self.get()?))
    }
}

fn file_kind_code(kind: FileKind) -> u8 {
    match kind {
        FileKind::Wal => 0,
        FileKind::Snap => 1,
        FileKind::Db => 2,
        FileKind::OtherData => 3,
        FileKind::Socket => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    fn packet(ts: u64, conn: (&str, &str), seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Event {
        Event::Packet(Packet {
            ts_ns: ts,
            ifindex: 1,
            direction: Direction::Egress,
            src: conn.0.parse().unwrap(),
            dst: conn.1.parse().unwrap(),
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 512,
            payload_len: payload.len() as u32,
            payload: Bytes::copy_from_slice(payload),
        })
    }

    fn syscall(enter: u64, tid: u32, call: SyscallKind, file: FileRef, data: &[u8]) -> Event {
        Event::Syscall(Syscall {
            enter_ns: enter,
            exit_ns: enter.wrapping_add(900),
            pid: 4242,
            tid,
            call,
            fd: 7,
            file,
            offset: None,
            requested: data.len() as u64,
            ret: data.len() as i64,
            data: Bytes::copy_from_slice(data),
        })
    }

    /// A TLS event of connection `conn` at `offset`, standing for `len` bytes of which
    /// `data` was read.
    fn tls(
        ts: u64,
        conn: u64,
        endpoints: Option<(&str, &str)>,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> Event {
        Event::Tls(TlsData {
            ts_ns: ts,
            pid: 4242,
            tid: 13,
            conn_id: conn,
            direction: Direction::Egress,
            endpoints: endpoints.map(|(local, remote)| TlsEndpoints {
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
            }),
            offset,
            len,
            data: Bytes::copy_from_slice(data),
        })
    }

    fn process(ts: u64, pid: u32, change: ProcessChange) -> Event {
        Event::Process(ProcessEvent {
            ts_ns: ts,
            pid,
            change,
        })
    }

    fn exit(code: Option<i32>, signal: Option<i32>) -> ProcessChange {
        ProcessChange::Exit { code, signal }
    }

    /// A format-3 tag.
    fn tag(kind: u8, flags: u8) -> u8 {
        TagLayout::KindBits3.tag(kind, flags)
    }

    fn socket(local: u16, peer: u16) -> FileRef {
        FileRef {
            kind: FileKind::Socket,
            path: String::new(),
            local_port: local,
            peer_port: peer,
        }
    }

    fn wal() -> FileRef {
        FileRef {
            kind: FileKind::Wal,
            path: "member/wal/0000000000000000-0000000000000000.wal".into(),
            local_port: 0,
            peer_port: 0,
        }
    }

    /// Every shape the encoding has a case for: new and known connections, files,
    /// threads and streams, sequence numbers and offsets that follow, repeat and jump,
    /// cut payloads and plaintext, IPv6, the long keys, times that go backwards, and
    /// extreme values.
    fn varied_events() -> Vec<Event> {
        const CLIENT: (&str, &str) = ("127.0.0.1:40000", "127.0.0.1:2379");
        const SERVER: (&str, &str) = ("127.0.0.1:2379", "127.0.0.1:40000");
        const V6: (&str, &str) = ("[::1]:40001", "[2001:db8::7]:2380");
        let mut events = vec![
            packet(1_000, CLIENT, u32::MAX, 0, TcpFlags::SYN, b""),
            packet(1_010, SERVER, 77, 0, TcpFlags::SYN | TcpFlags::ACK, b""),
            packet(
                1_020,
                CLIENT,
                0,
                78,
                TcpFlags::PSH | TcpFlags::ACK,
                b"hello",
            ),
            // A retransmission: the sequence number goes back.
            packet(
                1_030,
                CLIENT,
                0,
                78,
                TcpFlags::PSH | TcpFlags::ACK,
                b"hello",
            ),
            packet(1_025, SERVER, 78, 5, TcpFlags::ACK, b"world!"),
            // A jump forward (bytes not seen) and a changed ack.
            packet(1_040, CLIENT, 9_000, 84, TcpFlags::ACK, b"x"),
            packet(1_050, V6, 5, 6, TcpFlags::RST, b""),
            packet(1_060, V6, 5, 6, TcpFlags::FIN | TcpFlags::ACK, b"v6"),
            syscall(1_070, 10, SyscallKind::Read, socket(2379, 40000), b""),
            syscall(1_080, 11, SyscallKind::Write, wal(), &[0x75; 300]),
            syscall(1_090, 11, SyscallKind::Fdatasync, wal(), b""),
            syscall(1_095, 10, SyscallKind::Write, socket(2379, 40000), b"reply"),
            Event::Loss(Loss {
                ts_ns: 1_100,
                source: LossSource::Kernel,
                count: 3,
            }),
            Event::Loss(Loss {
                ts_ns: 5,
                source: LossSource::PerfBuffer,
                count: u64::MAX,
            }),
            syscall(u64::MAX, 12, SyscallKind::Pwrite64, wal(), b"p"),
            syscall(0, 12, SyscallKind::Fsync, socket(1, 2), b""),
            // A client's first writes, before its socket is known; then the same
            // connection with its endpoints, one chunk of which was not read whole.
            tls(2_000, 1, None, 0, 5, b"hello"),
            tls(2_010, 1, None, 5, 3, b"abc"),
            tls(2_020, 1, Some(SERVER), 8, 100, b"only-this"),
            tls(2_030, 1, Some(SERVER), 108, 2, b"ok"),
            // The stream jumps ahead, then goes back; an empty chunk.
            tls(2_040, 1, Some(SERVER), 5_000, 1, b"j"),
            tls(2_050, 1, Some(SERVER), 7, 1, b"b"),
            tls(2_060, 1, Some(SERVER), 8, 0, b""),
            // IPv6, a late first offset, extreme values.
            tls(2_070, 2, Some(V6), 1 << 40, 4, b"six!"),
            tls(2_080, u64::MAX, Some(V6), u64::MAX, u32::MAX, b"max"),
            tls(2_090, u64::MAX, Some(V6), 2, 0, b""),
            // A process killed, one started in its place, one that exited, odd values.
            process(3_000, 4242, exit(None, Some(9))),
            process(
                3_100,
                4301,
                ProcessChange::Start {
                    data_dir: Some("/var/lib/etcd".into()),
                    cmdline: vec!["etcd".into(), "--data-dir".into(), "/var/lib/etcd".into()],
                },
            ),
            process(
                3_050,
                u32::MAX,
                ProcessChange::Start {
                    data_dir: None,
                    cmdline: vec![String::new(), "é".into()],
                },
            ),
            process(3_200, 0, exit(Some(i32::MIN), None)),
            process(3_300, 4301, exit(Some(0), Some(i32::MAX))),
        ];
        // A payload cut at the snaplen, a changed window, an interface index beyond
        // the short key, odd syscall fields.
        if let Event::Packet(p) = &mut events[4] {
            p.payload_len = 1_000;
            p.window = 3;
        }
        if let Event::Packet(p) = &mut events[5] {
            p.ifindex = u32::MAX;
            p.direction = Direction::Ingress;
        }
        if let Event::Syscall(s) = &mut events[9] {
            s.offset = Some(u64::MAX);
            s.fd = i32::MIN;
            s.ret = i64::MIN;
            s.exit_ns = 3; // before its enter
        }
        if let Event::Syscall(s) = &mut events[14] {
            s.offset = Some(0);
            s.exit_ns = 0;
            s.requested = u64::MAX;
        }
        // The other direction of connection 1, on another thread of another process;
        // mixed families.
        if let Event::Tls(t) = &mut events[17] {
            t.direction = Direction::Ingress;
            t.pid = 1;
            t.tid = u32::MAX;
        }
        if let Event::Tls(t) = &mut events[22] {
            if let Some(e) = &mut t.endpoints {
                e.remote = "[::ffff:10.1.2.3]:443".parse().unwrap();
            }
        }
        // What API mode sees, between the kernel's events.
        let api = super::super::api::every_observation(2_500)
            .into_iter()
            .map(Event::Api);
        events.splice(20..20, api);
        events
    }

    fn encode_all(events: &[Event]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = PackedEncoder::default();
        for e in events {
            encoder.encode(e, &mut out);
        }
        out
    }

    /// Decode `bytes` as the current format's block.
    fn decode_all(bytes: &[u8], with_contents: bool) -> Result<Vec<Event>, PackedError> {
        decode_with(PackedDecoder::new(bytes, with_contents).with_format(CaptureFormat::V6))
    }

    fn decode_with(mut decoder: PackedDecoder) -> Result<Vec<Event>, PackedError> {
        let mut events = Vec::new();
        while decoder.remaining() > 0 {
            events.push(decoder.next_event()?);
        }
        Ok(events)
    }

    #[test]
    fn events_round_trip() {
        let events = varied_events();
        let bytes = encode_all(&events);
        assert_eq!(decode_all(&bytes, true).unwrap(), events);
        for (e, bound) in events.iter().zip(events.iter().map(encoded_len_bound)) {
            let mut one = Vec::new();
            PackedEncoder::default().encode(e, &mut one);
            assert!(one.len() <= bound, "{e:?}");
        }
    }

    #[test]
    fn contents_can_be_left_out() {
        let events = varied_events();
        let hollow: Vec<Event> = events
            .iter()
            .cloned()
            .map(|mut e| {
                if let Event::Syscall(s) = &mut e {
                    s.file.path.clear();
                    s.data.clear();
                }
                e
            })
            .collect();
        assert_eq!(decode_all(&encode_all(&events), false).unwrap(), hollow);
    }

    /// After a reset, a block stands alone: no entry or time of the block before is
    /// assumed.
    #[test]
    fn reset_starts_a_block_that_decodes_alone() {
        let events = varied_events();
        let mut encoder = PackedEncoder::default();
        let mut first = Vec::new();
        for e in &events {
            encoder.encode(e, &mut first);
        }
        encoder.reset();
        let mut second = Vec::new();
        for e in events.iter().rev() {
            encoder.encode(e, &mut second);
        }
        let mut reversed = events.clone();
        reversed.reverse();
        assert_eq!(decode_all(&second, true).unwrap(), reversed);
    }

    /// The encoding is bincode's of the fields the module doc lists, in that order.
    #[test]
    fn an_event_is_bincode_of_its_fields() {
        let event = packet(300, ("10.0.0.1:5000", "10.0.0.2:2379"), 9, 8, 0x18, b"hi");
        let mut ours = Vec::new();
        PackedEncoder::default().encode(&event, &mut ours);
        let fields = (
            TagLayout::KindBits3.tag(KIND_PACKET, NEW_ENTRY),
            300i64,
            1u32,
            1u8,
            (4u8, [10u8, 0, 0, 1], 5000u16),
            (4u8, [10u8, 0, 0, 2], 2379u16),
            9i32,
            8i32,
            0x18u8,
            512u16,
            2u32,
            &b"hi"[..],
        );
        let theirs = bincode::encode_to_vec(fields, bincode::config::standard()).unwrap();
        assert_eq!(ours, theirs);
    }

    /// Known connections and files cost a few bytes, not their addresses and paths.
    #[test]
    fn repeated_headers_are_small() {
        let first = packet(1_000, ("10.0.0.1:5000", "10.0.0.2:2379"), 1, 1, 0x18, b"");
        let next = packet(1_100, ("10.0.0.1:5000", "10.0.0.2:2379"), 1, 1, 0x18, b"");
        let mut encoder = PackedEncoder::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encoder.encode(&first, &mut a);
        encoder.encode(&next, &mut b);
        // tag, ts delta, connection, flags, payload length, payload (its length).
        assert_eq!(b.len(), 6, "{b:?}");
        let write = syscall(2_000, 1, SyscallKind::Write, wal(), b"");
        let (mut c, mut d) = (Vec::new(), Vec::new());
        encoder.encode(&write, &mut c);
        encoder.encode(&write, &mut d);
        assert!(c.len() > wal().path.len());
        assert!(d.len() <= 12, "{d:?}");
    }

    /// Every cut of a valid encoding decodes to an error or, cut between events, to
    /// fewer events; never a panic or more events.
    #[test]
    fn cut_encodings_are_errors_or_fewer_events() {
        let events = varied_events();
        let bytes = encode_all(&events);
        for cut in 0..bytes.len() {
            if let Ok(decoded) = decode_all(&bytes[..cut], true) {
                assert!(decoded.len() < events.len());
                assert_eq!(decoded[..], events[..decoded.len()]);
            }
        }
    }

    /// Random and mutated input (capture files come from strangers) decodes to events
    /// or an error, without a panic and without allocating past the input.
    #[test]
    fn hostile_input_never_panics() {
        let valid = encode_all(&varied_events());
        let mut rng = XorShift(0x5eed_c0de);
        for round in 0..4000 {
            let input = if round % 2 == 0 {
                let len = rng.index(200);
                rng.bytes(len)
            } else {
                let mut m = valid.clone();
                for _ in 0..1 + rng.index(4) {
                    let at = rng.index(m.len());
                    m[at] = rng.next() as u8;
                }
                m
            };
            for with_contents in [true, false] {
                if let Ok(events) = decode_all(&input, with_contents) {
                    let payload: usize = events
                        .iter()
                        .map(|e| match e {
                            Event::Packet(p) => p.payload.len(),
                            Event::Syscall(s) => s.data.len() + s.file.path.len(),
                            Event::Loss(_) => 0,
                            Event::Tls(t) => t.data.len(),
                            Event::Process(p) => match &p.change {
                                ProcessChange::Start { data_dir, cmdline } => {
                                    data_dir.as_ref().map_or(0, String::len)
                                        + cmdline.iter().map(String::len).sum::<usize>()
                                }
                                ProcessChange::Exit { .. } => 0,
                            },
                            Event::Api(a) => bincode::encode_to_vec(a, bincode::config::standard())
                                .unwrap()
                                .len(),
                        })
                        .sum();
                    assert!(events.len() <= input.len());
                    assert!(payload <= input.len() * events.len().max(1));
                }
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        // A packet naming connection 5 of an empty table.
        let bad_index = [KIND_PACKET, 0, 5];
        assert_eq!(
            decode_all(&bad_index, true),
            Err(PackedError::BadIndex {
                event: 0,
                what: "connection",
                index: 5,
                len: 0
            })
        );
        // A ts that is not a bincode varint of an i64.
        assert!(matches!(
            decode_all(&[KIND_LOSS, 254, 0, 0], true),
            Err(PackedError::Malformed { event: 0, .. })
        ));
        // Kind 3 is not one of format 2's.
        assert!(matches!(
            decode_with(PackedDecoder::new(&[3, 0, 8, 1, 1], true).with_format(CaptureFormat::V2)),
            Err(PackedError::Unknown {
                what: "event kind",
                value: 3,
                ..
            })
        ));
        // A TLS event naming a stream of an empty table, and one with a flag TLS
        // events do not have.
        assert_eq!(
            decode_all(&[tag(KIND_TLS, NEW_THREAD), 0, 1, 1, 0], true),
            Err(PackedError::BadIndex {
                event: 0,
                what: "stream",
                index: 0,
                len: 0
            })
        );
        assert!(matches!(
            decode_all(&[tag(KIND_TLS, 0x10), 0], true),
            Err(PackedError::Unknown {
                what: "TLS flags",
                ..
            })
        ));
        // A new stream with an unknown direction, and one with an unknown family.
        let stream = |direction: u8, family: u8| {
            vec![
                tag(KIND_TLS, NEW_THREAD | NEW_ENTRY),
                0,
                1,
                1,
                9,
                direction,
                family,
            ]
        };
        assert!(matches!(
            decode_all(&stream(2, 0), true),
            Err(PackedError::Unknown {
                what: "direction",
                value: 2,
                ..
            })
        ));
        assert!(matches!(
            decode_all(&stream(1, 5), true),
            Err(PackedError::Unknown {
                what: "address family",
                value: 5,
                ..
            })
        ));
    }

    /// Format 2's events decode as they always did, with its tag of a 2-bit kind; format
    /// 3 encodes the same fields behind a tag of a 3-bit kind.
    #[test]
    fn a_format_2_block_still_decodes() {
        let old: Vec<Event> = varied_events()
            .into_iter()
            .filter(|e| CaptureFormat::V2.holds(e.kind()))
            .collect();
        let mut encoder = PackedEncoder::format_2();
        let mut bytes = Vec::new();
        for e in &old {
            encoder.encode(e, &mut bytes);
        }
        let as_v2 = |bytes: &[u8]| {
            decode_with(PackedDecoder::new(bytes, true).with_format(CaptureFormat::V2))
        };
        assert_eq!(as_v2(&bytes).unwrap(), old);
        let v3 = encode_all(&old);
        assert_eq!(v3.len(), bytes.len());
        assert_eq!(decode_all(&v3, true).unwrap(), old);
        // A new connection's first packet: the flag right above the kind's bits.
        assert_eq!(bytes[0], KIND_PACKET | 0x04);
        assert_eq!(v3[0], KIND_PACKET | 0x08);
        // Hand-made bytes of a format-2 loss record.
        let loss = [KIND_LOSS, 20, 0, 3];
        assert_eq!(
            as_v2(&loss).unwrap(),
            [Event::Loss(Loss {
                ts_ns: 10,
                source: LossSource::Kernel,
                count: 3
            })]
        );
    }

    /// A TLS event's fields, in the module doc's order: a new stream carries its
    /// connection and endpoints, a known one is a few bytes beside its data.
    #[test]
    fn a_tls_event_is_bincode_of_its_fields() {
        let ends = Some(("10.0.0.2:2379", "10.0.0.1:5000"));
        let mut encoder = PackedEncoder::default();
        let mut first = Vec::new();
        encoder.encode(&tls(300, 7, ends, 10, 9, b"hi"), &mut first);
        // The next chunk, where the first ended, read whole.
        let mut next = Vec::new();
        encoder.encode(&tls(310, 7, ends, 19, 3, b"abc"), &mut next);
        let config = bincode::config::standard();
        let new_stream = (
            (
                tag(KIND_TLS, NEW_THREAD | NEW_ENTRY),
                300i64,
                (4242u32, 13u32),
            ),
            (7u64, 1u8, (4u8, [10u8, 0, 0, 2], 2379u16)),
            (4u8, [10u8, 0, 0, 1], 5000u16),
            (10i64, 9u32, &b"hi"[..]),
        );
        assert_eq!(first, bincode::encode_to_vec(new_stream, config).unwrap());
        // Tag, ts, thread, stream, then the data.
        let known = (
            tag(KIND_TLS, OFFSET_EXPECTED | LEN_CAPTURED),
            10i64,
            0u64,
            0u64,
            &b"abc"[..],
        );
        assert_eq!(next, bincode::encode_to_vec(known, config).unwrap());
        assert_eq!(next.len(), 8);
    }

    /// A process event's fields, in the module doc's order.
    #[test]
    fn a_process_event_is_bincode_of_its_fields() {
        let config = bincode::config::standard();
        let start = process(
            10,
            7,
            ProcessChange::Start {
                data_dir: Some("/d".into()),
                cmdline: vec!["etcd".into(), "-x".into()],
            },
        );
        let fields = (
            tag(KIND_PROCESS, 0),
            10i64,
            7u32,
            PROCESS_START,
            Some("/d"),
            2u64,
            ("etcd", "-x"),
        );
        assert_eq!(
            encode_all(&[start]),
            bincode::encode_to_vec(fields, config).unwrap()
        );
        let end = process(20, 7, exit(None, Some(9)));
        let fields = (
            tag(KIND_PROCESS, 0),
            20i64,
            7u32,
            PROCESS_EXIT,
            None::<i32>,
            Some(9i32),
        );
        assert_eq!(
            encode_all(&[end]),
            bincode::encode_to_vec(fields, config).unwrap()
        );
    }

    /// A command line's count that the block cannot hold is refused before anything is
    /// allocated; flags, a change or a kind that does not exist are errors.
    #[test]
    fn bad_process_events_are_errors() {
        let huge = [
            tag(KIND_PROCESS, 0),
            0,
            1,
            PROCESS_START,
            0,
            253,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            16,
        ];
        assert_eq!(decode_all(&huge, true), Err(PackedError::Truncated(0)));
        assert!(matches!(
            decode_all(&[tag(KIND_PROCESS, 1), 0, 1, 1, 0, 0], true),
            Err(PackedError::Unknown {
                what: "process flags",
                ..
            })
        ));
        assert!(matches!(
            decode_all(&[tag(KIND_PROCESS, 0), 0, 1, 2], true),
            Err(PackedError::Unknown {
                what: "process change",
                value: 2,
                ..
            })
        ));
        assert!(matches!(
            decode_all(&[tag(6, 0), 0], true),
            Err(PackedError::Unknown {
                what: "event kind",
                value: 6,
                ..
            })
        ));
    }

    fn api_events() -> Vec<Event> {
        super::super::api::every_observation(100)
            .into_iter()
            .map(Event::Api)
            .collect()
    }

    /// An API event is its tag, its ts, and bincode's encoding of its endpoint and
    /// observation as one length-prefixed slice.
    #[test]
    fn an_api_event_is_bincode_of_its_observation() {
        let config = bincode::config::standard();
        for event in api_events() {
            let Event::Api(a) = &event else {
                unreachable!()
            };
            let body = bincode::encode_to_vec((&a.endpoint, &a.observed), config).unwrap();
            let fields = (tag(KIND_API, 0), a.ts_ns as i64, body.as_slice());
            let ours = encode_all(std::slice::from_ref(&event));
            assert_eq!(ours, bincode::encode_to_vec(fields, config).unwrap());
            assert!(ours.len() <= encoded_len_bound(&event), "{event:?}");
            assert_eq!(decode_all(&ours, false).unwrap(), [event]);
        }
    }

    /// Kind 5 is format 6's: in a block of format 5 (or older) it is an unknown kind,
    /// not an API event.
    #[test]
    fn a_format_5_block_holds_no_api_events() {
        let bytes = encode_all(&api_events());
        assert_eq!(bytes[0], tag(KIND_API, 0));
        for format in [CaptureFormat::V3, CaptureFormat::V4, CaptureFormat::V5] {
            assert_eq!(
                decode_with(PackedDecoder::new(&bytes, true).with_format(format)),
                Err(PackedError::Unknown {
                    event: 0,
                    what: "event kind",
                    value: 5
                })
            );
        }
        assert_eq!(
            decode_with(PackedDecoder::new(&bytes, true).with_format(CaptureFormat::V6)).unwrap(),
            api_events()
        );
    }

    /// An API event of `body`, at ts 0.
    fn api_bytes(flags: u8, body: &[u8]) -> Vec<u8> {
        bincode::encode_to_vec(
            (tag(KIND_API, flags), 0i64, body),
            bincode::config::standard(),
        )
        .unwrap()
    }

    /// A damaged API body is an error of that event: random bytes, bytes past its end,
    /// a body cut short, a length it claims but does not hold (however large), flags it
    /// does not have. Nothing panics, and no length is believed past the bound.
    #[test]
    fn damaged_api_bodies_are_errors() {
        let config = bincode::config::standard();
        let malformed = |bytes: &[u8]| {
            matches!(
                decode_all(bytes, true),
                Err(PackedError::Malformed { event: 0, .. })
            )
        };
        let good = api_events();
        let Event::Api(status) = &good[2] else {
            unreachable!()
        };
        let body = bincode::encode_to_vec((&status.endpoint, &status.observed), config).unwrap();
        let at_0 = Event::Api(ApiEvent {
            ts_ns: 0,
            ..status.clone()
        });
        assert_eq!(decode_all(&api_bytes(0, &body), true).unwrap(), [at_0]);
        for cut in 0..body.len() {
            assert!(malformed(&api_bytes(0, &body[..cut])), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(malformed(&api_bytes(0, &longer)));
        // An endpoint, then Metrics (variant 3) or a Change (0) of a key, claiming
        // 2^64-1, 2^40 and 2^24 elements or bytes: past the bound, or past the body.
        for variant in [0u8, 3] {
            for claim in [u64::MAX, 1 << 40, 1 << 24, 1000] {
                let mut body = bincode::encode_to_vec(("e", variant), config).unwrap();
                if variant == 0 {
                    // The revision and the delete flag come before the key.
                    body.extend_from_slice(&[2, 0]);
                }
                body.extend(bincode::encode_to_vec(claim, config).unwrap());
                body.extend_from_slice(&[1, 2, 3]);
                assert!(malformed(&api_bytes(0, &body)), "{variant} {claim}");
            }
        }
        // A body whose own length is more than the block holds.
        let mut huge = vec![tag(KIND_API, 0), 0];
        huge.extend(bincode::encode_to_vec(1u64 << 40, config).unwrap());
        huge.extend_from_slice(&[0; 16]);
        assert_eq!(decode_all(&huge, true), Err(PackedError::Truncated(0)));
        assert!(matches!(
            decode_all(&api_bytes(1, &body), true),
            Err(PackedError::Unknown {
                what: "api flags",
                ..
            })
        ));
        let mut rng = XorShift(0xa91);
        for len in 0..3000 {
            let _ = decode_all(&api_bytes(0, &rng.bytes(len % 300)), true);
        }
    }
}

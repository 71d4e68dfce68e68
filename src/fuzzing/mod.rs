//! The bodies of the fuzz targets (`fuzz/`), one function per decoder of untrusted bytes.
//! The fuzz targets call them, and `tests/fuzz_corpus.rs` runs each over its committed
//! corpus, so the corpus is a regression test without the fuzzer. Not an API.
//!
//! A target turns its input into the calls a capture would make: a whole capture file,
//! a block payload, a sequence of TCP segments or TLS plaintext chunks (one record
//! format, [`EventRecord`]), the bytes of an HTTP/2, HTTP/1 or peer (rafthttp)
//! connection, HPACK header blocks, DATA of a gRPC stream, one etcd message, or WAL
//! writes. Every format is a sequence
//! of small records read by [`Input`], which never fails: a short input reads as
//! zeros, so every byte string is a valid input. [`seeds`] writes real captures in these
//! formats, as the corpus starts from them. Besides not panicking, the reassemblers'
//! output is checked against their contract (stream offsets without holes or overlaps),
//! and so are the HTTP/1 and peer decoders' events (in an order their docs allow).

pub mod seeds;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use foldhash::HashMap;

use crate::analyze::rpc::infer::{self, Side};
use crate::analyze::rpc::RpcDecoder;
use crate::analyze::wal_log::{WalLog, WalLogOutput};
use crate::capture::block::{PayloadDecoder, SyscallContents, BLOCK_MAGIC};
use crate::capture::header::PREAMBLE_FIXED_LEN;
use crate::capture::index::INDEX_MAGIC;
use crate::capture::packed::PackedDecoder;
use crate::capture::{
    CaptureFormat, CaptureReader, Direction, Event, FileKind, FileRef, FrameHeader, Packet,
    Syscall, SyscallKind, TcpFlags, TlsData, TlsEndpoints, FILE_MAGIC, FRAME_HEADER_LEN,
};
use crate::decode::etcdpb::{self, METHODS};
use crate::decode::grpc::{GrpcEvent, GrpcLimits, GrpcMessageAssembler};
use crate::decode::hpack::HpackDecoder;
use crate::decode::http1::{Http1Connection, Http1Event, Stop};
use crate::decode::http2::stream::Http2Event;
use crate::decode::http2::Http2Connection;
use crate::decode::rafthttp::{NoteKind, PeerConnection, PeerEvent};
use crate::decode::tcp::{
    CloseReason, ConnectionKey, FlowDirection, TcpEvent, TcpReassembler, TcpReassemblerConfig,
};
use crate::decode::tls::TlsReassembler;
use crate::decode::wal::{decode_wal_file, WalPayload};

/// A target's body: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("capture_file", capture_file),
    ("capture_block", capture_block),
    ("packet_file", packet_file),
    ("tcp", tcp),
    ("tls", tls),
    ("replay", replay),
    ("http2", http2),
    ("http1", http1),
    ("rafthttp", rafthttp),
    ("hpack", hpack),
    ("grpc", grpc),
    ("etcdpb", etcdpb),
    ("wal", wal),
];

/// Reads a fuzz input front to back; past its end every number is 0 and every byte
/// string empty.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
}

/// The address of the traced server in synthetic events.
fn server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2379)
}

/// The client of connection `n` (0..8) in synthetic events.
fn client(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000 + u16::from(n & 7))
}

/// One packet or TLS plaintext chunk: the record format of the `tcp`, `tls` and
/// `replay` targets. On the wire (integers little-endian):
///
/// ```text
/// kind u8: bit 7 TLS chunk (else packet), bit 6 server to client, bits 0-2 connection;
///          TLS only: bit 4 endpoints known, bit 3 taken by a second process at the
///          client's end (a traced etcd peer: its view of the same connection)
/// ts_delta u16 (units of 10 µs; 0xFFFF: one minute)
/// packet: flags u8 (TCP flags), seq u32, ack u32 | TLS chunk: offset u32
/// len u16, missing u16 (bytes the event stands for beyond `len`), then len bytes
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub kind: u8,
    pub ts_delta: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub missing: u16,
    pub data: Vec<u8>,
}

impl EventRecord {
    pub const TLS: u8 = 0x80;
    pub const TO_CLIENT: u8 = 0x40;
    pub const SECOND_PROCESS: u8 = 0x08;
    pub const ENDPOINTS: u8 = 0x10;

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind);
        out.extend(self.ts_delta.to_le_bytes());
        if self.kind & Self::TLS == 0 {
            out.push(self.flags);
            out.extend(self.seq.to_le_bytes());
            out.extend(self.ack.to_le_bytes());
        } else {
            out.extend(self.seq.to_le_bytes());
        }
        let len = self.data.len().min(usize::from(u16::MAX));
        out.extend((len as u16).to_le_bytes());
        out.extend(self.missing.to_le_bytes());
        out.extend(&self.data[..len]);
    }

    fn parse(input: &mut Input) -> EventRecord {
        let kind = input.u8();
        let ts_delta = input.u16();
        let (flags, seq, ack) = if kind & Self::TLS == 0 {
            (input.u8(), input.u32(), input.u32())
        } else {
            (0, input.u32(), 0)
        };
        let len = input.u16();
        let missing = input.u16();
        let data = input.bytes(usize::from(len)).to_vec();
        EventRecord {
            kind,
            ts_delta,
            flags,
            seq,
            ack,
            missing,
            data,
        }
    }

    /// The event this record stands for, at `ts_ns` (the previous event's time plus
    /// this record's delta).
    fn event(&self, ts_ns: u64) -> Event {
        let conn = self.kind & 7;
        let to_client = self.kind & Self::TO_CLIENT != 0;
        let len = (self.data.len() as u32).saturating_add(u32::from(self.missing));
        let data = Bytes::copy_from_slice(&self.data);
        if self.kind & Self::TLS == 0 {
            let (src, dst) = if to_client {
                (server(), client(conn))
            } else {
                (client(conn), server())
            };
            return Event::Packet(Packet {
                ts_ns,
                ifindex: 1,
                direction: Direction::Egress,
                src,
                dst,
                seq: self.seq,
                ack: self.ack,
                flags: TcpFlags(self.flags),
                window: 512,
                payload_len: len,
                payload: data,
            });
        }
        let at_client = self.kind & Self::SECOND_PROCESS != 0;
        let (local, remote) = if at_client {
            (client(conn), server())
        } else {
            (server(), client(conn))
        };
        Event::Tls(TlsData {
            ts_ns,
            pid: 1000 + u32::from(at_client),
            tid: 1,
            conn_id: u64::from(conn),
            // The process writes what goes to the other end.
            direction: if to_client != at_client {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            endpoints: (self.kind & Self::ENDPOINTS != 0).then_some(TlsEndpoints { local, remote }),
            offset: u64::from(self.seq),
            len,
            data,
        })
    }

    /// The delta as nanoseconds.
    fn delta_ns(&self) -> u64 {
        match self.ts_delta {
            u16::MAX => 60_000_000_000,
            d => u64::from(d) * 10_000,
        }
    }
}

/// The events of an [`EventRecord`] input, timed from one second on.
fn events(data: &[u8]) -> Vec<Event> {
    let mut input = Input::new(data);
    let mut ts = 1_000_000_000u64;
    let mut out = Vec::new();
    while !input.is_empty() {
        let record = EventRecord::parse(&mut input);
        ts = ts.saturating_add(record.delta_ns());
        out.push(record.event(ts));
    }
    out
}

/// Checks reassembled streams against the [`TcpEvent`] contract: bytes of a connection
/// only while it is open, and each direction's `Data` and `Gap` back to back in offset
/// order.
#[derive(Default)]
struct StreamCheck {
    /// Open connections, and where each direction's next bytes must start once known.
    open: HashMap<ConnectionKey, [Option<u64>; 2]>,
}

impl StreamCheck {
    fn check(&mut self, events: &[TcpEvent]) {
        for event in events {
            match event {
                // Anew: a TLS stream forgotten while idle opens again when it speaks.
                TcpEvent::Opened { key, .. } => {
                    self.open.insert(*key, [None; 2]);
                }
                TcpEvent::Data {
                    key,
                    dir,
                    offset,
                    bytes,
                    ..
                } => self.advance(key, *dir, *offset, bytes.len() as u64),
                TcpEvent::Gap {
                    key,
                    dir,
                    offset,
                    len,
                    ..
                } => self.advance(key, *dir, *offset, *len),
                TcpEvent::Closed { key, .. } => {
                    assert!(self.open.remove(key).is_some(), "{key:?} closed unopened");
                }
            }
        }
    }

    fn advance(&mut self, key: &ConnectionKey, dir: FlowDirection, offset: u64, len: u64) {
        let Some(next) = self.open.get_mut(key) else {
            panic!("bytes of {key:?}, which is not open");
        };
        let next = &mut next[usize::from(dir == FlowDirection::ServerToClient)];
        if let Some(expected) = *next {
            assert_eq!(offset, expected, "{key:?} {dir:?}: a hole or an overlap");
        }
        *next = Some(offset.saturating_add(len));
    }
}

/// A whole capture file: opened from memory, every event read, then a time range.
/// The first byte chooses whether the checksums are repaired first (so that the
/// structures behind them get fuzzed too) or left as they are.
pub fn capture_file(data: &[u8]) {
    let mut input = Input::new(data);
    let repair = input.u8() & 1 == 1;
    let mut file = input.rest().to_vec();
    if repair {
        repair_checksums(&mut file);
    }
    if let Ok(reader) = CaptureReader::from_bytes("fuzz.etr", file) {
        read_all(&reader);
    }
}

/// A pcap or pcapng file (the input as it is), read as a capture.
pub fn packet_file(data: &[u8]) {
    if let Ok(reader) = CaptureReader::from_bytes("fuzz.pcap", data.to_vec()) {
        read_all(&reader);
    }
}

/// Every event of a reader, then those of a time range.
fn read_all(reader: &CaptureReader) {
    let mut first = None;
    for item in reader.events() {
        if let crate::capture::ReadItem::Event(e) = item {
            first.get_or_insert(e.ts_ns());
        }
    }
    let since = first.unwrap_or(0).saturating_add(1);
    for _ in reader
        .events_between(Some(since), Some(since.saturating_add(1_000_000)))
        .without_syscall_contents()
    {}
}

/// Rewrites every checksum a reader verifies where the bytes around it are laid out as
/// in a capture: the preamble's, then each block frame's while frames follow one
/// another, then the index section's.
pub fn repair_checksums(file: &mut [u8]) {
    let le_u32 = |file: &[u8], at: usize| {
        file.get(at..at.saturating_add(4))
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    if !file.starts_with(&FILE_MAGIC) {
        return;
    }
    let Some(header_len) = le_u32(file, FILE_MAGIC.len() + 4) else {
        return;
    };
    let crc_at = PREAMBLE_FIXED_LEN.saturating_add(header_len as usize);
    if crc_at.saturating_add(4) > file.len() {
        return;
    }
    let crc = crc32c::crc32c(&file[..crc_at]);
    file[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let mut pos = crc_at + 4;
    while file.get(pos..pos + 4) == Some(&BLOCK_MAGIC[..]) {
        let field = |at: usize| le_u32(file, pos + at).unwrap_or(0);
        let payload_at = pos + FRAME_HEADER_LEN;
        let end = payload_at.saturating_add(field(4) as usize);
        let Some(payload) = file.get(payload_at..end) else {
            break;
        };
        let frame = FrameHeader {
            payload_len: field(4),
            event_count: field(8),
            first_ts: u64::from(field(12)) | u64::from(field(16)) << 32,
            last_ts: u64::from(field(20)) | u64::from(field(24)) << 32,
            payload_crc: crc32c::crc32c(payload),
        };
        file[pos..payload_at].copy_from_slice(&frame.to_bytes());
        pos = end;
    }
    if file.get(pos..pos + 4) == Some(&INDEX_MAGIC[..]) {
        let len = le_u32(file, pos + 4).unwrap_or(0) as usize;
        let crc_at = pos.saturating_add(8).saturating_add(len);
        if crc_at.saturating_add(4) <= file.len() {
            let crc = crc32c::crc32c(&file[pos..crc_at]);
            file[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// One block payload, decompressed, of any format. `mode` (the first byte): bits 0-1
/// the format (1, 2, 3; 0 reads as 3), bits 2-3 how it is decoded: 0 with
/// [`PackedDecoder`] alone (formats 2, 3), 1 zstd-compressed here and then decoded as a
/// block, 2 as a block's compressed payload as it is (fuzzing the decompression), bit 4
/// syscall contents skipped. The second byte is the event count the frame claims.
pub fn capture_block(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let format = CaptureFormat::of_version(u32::from(mode & 3)).unwrap_or(CaptureFormat::V3);
    let contents = if mode & 0x10 == 0 {
        SyscallContents::Built
    } else {
        SyscallContents::Skipped
    };
    let count = u32::from(input.u8());
    let payload = input.rest();
    let compressed;
    let payload = match (mode >> 2) & 3 {
        0 => {
            let mut decoder =
                PackedDecoder::new(payload, contents == SyscallContents::Built).with_format(format);
            while decoder.remaining() > 0 {
                if decoder.next_event().is_err() {
                    break;
                }
            }
            return;
        }
        1 => {
            let Ok(bytes) = zstd::bulk::compress(payload, -1) else {
                return;
            };
            compressed = bytes;
            &compressed[..]
        }
        _ => payload,
    };
    let frame = FrameHeader {
        payload_len: payload.len() as u32,
        event_count: count,
        first_ts: 0,
        last_ts: u64::MAX,
        payload_crc: crc32c::crc32c(payload),
    };
    let _ = PayloadDecoder::new(format).decode(&frame, payload, contents);
}

/// The first byte of the `tcp` input: bit 0 small reassembly buffers (to reach their
/// limits).
fn tcp_config(flags: u8) -> TcpReassemblerConfig {
    let defaults = TcpReassemblerConfig::default();
    if flags & 1 == 0 {
        return defaults;
    }
    TcpReassemblerConfig {
        max_buffered_bytes: 2048,
        max_buffered_segments: 8,
        ..defaults
    }
}

/// TCP reassembly of the packets of an [`EventRecord`] sequence (TLS records are left
/// out), behind a first byte of configuration; the idle flush runs every 16 packets.
pub fn tcp(data: &[u8]) {
    let mut input = Input::new(data);
    let mut reassembler = TcpReassembler::with_config(tcp_config(input.u8()));
    let mut check = StreamCheck::default();
    let mut out = Vec::new();
    for (i, event) in events(input.rest()).iter().enumerate() {
        let Event::Packet(p) = event else { continue };
        reassembler.push(p, &mut out);
        if i % 16 == 15 {
            reassembler.idle_flush(p.ts_ns, &mut out);
        }
        check.check(&out);
        out.clear();
    }
    reassembler.finish(&mut out);
    check.check(&out);
}

/// TLS plaintext reassembly of the TLS chunks of an [`EventRecord`] sequence (packets
/// are left out).
pub fn tls(data: &[u8]) {
    let mut reassembler = TlsReassembler::new(vec![2379, 2380]);
    let mut check = StreamCheck::default();
    let mut out = Vec::new();
    for event in events(data) {
        let Event::Tls(chunk) = event else { continue };
        reassembler.push(&chunk, &mut out);
        check.check(&out);
        out.clear();
    }
    reassembler.finish(&mut out);
    check.check(&out);
}

/// The whole RPC decoding of `replay` over an [`EventRecord`] sequence: packets and TLS
/// chunks through reassembly, HTTP/2, HPACK, gRPC and etcd messages.
pub fn replay(data: &[u8]) {
    let mut decoder = RpcDecoder::new(Vec::new());
    let mut calls = Vec::new();
    for event in events(data) {
        decoder.push_owned(event, &mut calls);
    }
    decoder.finish(&mut calls);
    for mut call in calls {
        let _ = (call.method_name().len(), call.completeness());
        call.redact();
    }
}

/// A record of the `http2`, `hpack` and `grpc` inputs: an operation, a length, then
/// the bytes when the operation carries some (`op & 0x80` clear).
pub struct OpRecord<'a> {
    pub op: u8,
    pub len: u16,
    pub bytes: &'a [u8],
}

impl OpRecord<'_> {
    /// Operations with this bit carry no bytes (a gap, a setting).
    pub const NO_BYTES: u8 = 0x80;

    pub fn encode(op: u8, bytes: &[u8], out: &mut Vec<u8>) {
        let len = bytes.len().min(usize::from(u16::MAX));
        out.push(op);
        out.extend((len as u16).to_le_bytes());
        if op & Self::NO_BYTES == 0 {
            out.extend(&bytes[..len]);
        }
    }

    /// A record without bytes, whose length is `len`.
    pub fn encode_len(op: u8, len: u16, out: &mut Vec<u8>) {
        out.push(op | Self::NO_BYTES);
        out.extend(len.to_le_bytes());
    }

    fn parse<'a>(input: &mut Input<'a>) -> OpRecord<'a> {
        let op = input.u8();
        let len = input.u16();
        let bytes = if op & Self::NO_BYTES == 0 {
            input.bytes(usize::from(len))
        } else {
            &[]
        };
        OpRecord { op, len, bytes }
    }
}

/// What an [`OpRecord`] of a connection's input stands for: the next bytes of one
/// direction, or bytes of it that were not captured.
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Data(&'a [u8]),
    Gap(u64),
}

/// The connection inputs (`http2`, `http1`, `rafthttp`) after their first byte:
/// [`OpRecord`]s, bit 0 of `op` the server's direction, bit 7 a gap of `len` bytes
/// (else data). Each piece goes to `each` with its direction's index (0 the client's)
/// and its time: one more microsecond each, from one millisecond.
fn pieces<'a>(input: &mut Input<'a>, mut each: impl FnMut(usize, Piece<'a>, u64)) {
    let mut ts = 1_000_000u64;
    while !input.is_empty() {
        let record = OpRecord::parse(input);
        ts += 1000;
        let piece = if record.op & OpRecord::NO_BYTES == 0 {
            Piece::Data(record.bytes)
        } else {
            Piece::Gap(u64::from(record.len))
        };
        each(usize::from(record.op & 1), piece, ts);
    }
}

/// Both directions of one HTTP/2 connection. The first byte: bit 0 the connection's
/// start was seen. Then its pieces (`pieces`). Header blocks are decoded with each direction's
/// HPACK decoder.
pub fn http2(data: &[u8]) {
    http2_decode(data, |_, event, hpack| match event {
        Http2Event::HeaderBlock { fragment, .. } => {
            let _ = hpack.decode(fragment);
        }
        Http2Event::HeaderBlockLost { .. } => hpack.mark_desynced(),
        _ => {}
    });
}

/// Decodes an `http2` input, handing each event to `each` with its direction (0 the
/// client's) and that direction's HPACK decoder.
fn http2_decode(data: &[u8], mut each: impl FnMut(usize, &Http2Event, &mut HpackDecoder)) {
    let mut input = Input::new(data);
    let handshake = input.u8() & 1 == 1;
    let mut conn = Http2Connection::new(handshake);
    let new_hpack = || {
        if handshake {
            HpackDecoder::new(4096)
        } else {
            HpackDecoder::new_midstream(65536)
        }
    };
    let mut hpack = [new_hpack(), new_hpack()];
    let mut ends = [0u64; 2];
    let mut out = Vec::new();
    pieces(&mut input, |i, piece, ts| {
        let dir = DIRECTIONS[i];
        match piece {
            Piece::Data(bytes) => {
                conn.push_data(dir, ends[i], bytes, ts, &mut out);
                ends[i] += bytes.len() as u64;
            }
            Piece::Gap(len) => {
                conn.push_gap(dir, ends[i], len, ts, &mut out);
                ends[i] += len;
            }
        }
        for event in out.drain(..) {
            each(i, &event, &mut hpack[i]);
        }
    });
    let mut s2c = Vec::new();
    conn.finish(&mut out, &mut s2c);
    for (i, events) in [out, s2c].into_iter().enumerate() {
        for event in events {
            each(i, &event, &mut hpack[i]);
        }
    }
}

/// The two directions, by their index in the records.
const DIRECTIONS: [FlowDirection; 2] =
    [FlowDirection::ClientToServer, FlowDirection::ServerToClient];

/// Where one direction of an HTTP/1 connection is, as its events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http1Place {
    /// Looking for a start: only `Synced` may come.
    Seeking,
    /// Between messages: a head comes next.
    Between,
    /// In a message's body (or right after its head).
    InMessage,
    /// Stopped or finished: nothing more comes.
    Done,
}

/// Checks each direction's [`Http1Event`]s against the order their docs give: a head,
/// its body, its end; after `Lost` only `Synced`; nothing after `Stopped` (on either
/// direction for HTTP/2 or an upgrade); requests only from the client, responses only
/// from the server.
struct Http1Check {
    places: [Http1Place; 2],
}

impl Http1Check {
    fn new(start_seen: bool) -> Http1Check {
        let place = if start_seen {
            Http1Place::Between
        } else {
            Http1Place::Seeking
        };
        Http1Check { places: [place; 2] }
    }

    fn check(&mut self, i: usize, event: &Http1Event<'_>) {
        use Http1Place::*;
        let place = self.places[i];
        assert_ne!(place, Done, "direction {i}: {event:?} after its end");
        self.places[i] = match event {
            Http1Event::Synced { in_body, .. } => {
                assert_eq!(place, Seeking, "direction {i}: {event:?}");
                if *in_body {
                    InMessage
                } else {
                    Between
                }
            }
            Http1Event::Request { .. } | Http1Event::Response { .. } => {
                assert_eq!(place, Between, "direction {i}: {event:?}");
                let request = matches!(event, Http1Event::Request { .. });
                assert_eq!(request, i == 0, "direction {i}: {event:?}");
                InMessage
            }
            Http1Event::Body { .. } | Http1Event::BodyGap { .. } => {
                assert_eq!(place, InMessage, "direction {i}: {event:?}");
                InMessage
            }
            Http1Event::End { .. } => {
                assert_eq!(place, InMessage, "direction {i}: {event:?}");
                Between
            }
            Http1Event::Lost(_) => {
                assert_ne!(place, Seeking, "direction {i}: {event:?}");
                Seeking
            }
            Http1Event::Stopped(why) => {
                let _ = why.to_string();
                if matches!(why, Stop::Http2 | Stop::Upgraded) {
                    self.places = [Done; 2];
                }
                Done
            }
        };
    }
}

/// Both directions of one HTTP/1 connection. The first byte: bit 0 the connection's
/// start was seen, bit 1 the server's direction ends first. Then its pieces (`pieces`); at the
/// end both directions finish. The events are checked with [`Http1Check`].
pub fn http1(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let start_seen = flags & 1 == 1;
    let mut conn = Http1Connection::new(start_seen);
    let mut check = Http1Check::new(start_seen);
    pieces(&mut input, |i, piece, _| {
        let mut sink = |event: Http1Event<'_>| check.check(i, &event);
        match piece {
            Piece::Data(bytes) => conn.push(DIRECTIONS[i], bytes, &mut sink),
            Piece::Gap(len) => conn.push_gap(DIRECTIONS[i], len, &mut sink),
        }
        let _ = (conn.in_message(DIRECTIONS[i]), conn.skipped(DIRECTIONS[i]));
    });
    let order = if flags & 2 == 0 { [0, 1] } else { [1, 0] };
    for i in order {
        conn.finish(DIRECTIONS[i], &mut |event| check.check(i, &event));
        check.places[i] = Http1Place::Done;
    }
}

/// How a `rafthttp` input's connection ends, by bits 1-2 of its first byte: the
/// capture ends with it open, or it closes for one of the reasons reassembly gives.
const PEER_ENDS: [Option<CloseReason>; 4] = [
    None,
    Some(CloseReason::Fin),
    Some(CloseReason::Rst),
    Some(CloseReason::Reused),
];

/// One peer connection (rafthttp over HTTP/1: stream, msgapp, pipeline and snapshot
/// bodies, the connection seen from its middle, lost bytes). The first byte: bit 0 the
/// connection's start was seen, bits 1-2 how it ends ([`PEER_ENDS`]). Then its pieces (`pieces`).
/// Every event is formatted as `peers` shows it, is no later than the bytes that
/// revealed it, and nothing follows the close; an HTTP/2 connection is said to be so
/// once, and then nothing of HTTP/1 comes.
pub fn rafthttp(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let mut conn = PeerConnection::new(flags & 1 == 1);
    let mut out = Vec::new();
    let mut check = PeerCheck::default();
    let mut now = 0;
    pieces(&mut input, |i, piece, ts| {
        match piece {
            Piece::Data(bytes) => conn.push(DIRECTIONS[i], bytes, ts, &mut out),
            Piece::Gap(len) => conn.push_gap(DIRECTIONS[i], len, ts, &mut out),
        }
        check.check(&mut out, ts);
        now = ts;
    });
    assert_eq!(conn.is_http2(), check.http2);
    now += 1000;
    match PEER_ENDS[usize::from((flags >> 1) & 3)] {
        Some(reason) => {
            conn.close(now, reason, &mut out);
            assert!(matches!(out.last(), Some(PeerEvent::Closed { .. })));
        }
        None => conn.finish(now, &mut out),
    }
    check.check(&mut out, now);
}

/// What the `rafthttp` target checks of a connection's events as they come.
#[derive(Default)]
struct PeerCheck {
    http2: bool,
}

impl PeerCheck {
    /// Takes the events of bytes pushed at `now`.
    fn check(&mut self, out: &mut Vec<PeerEvent>, now: u64) {
        for event in out.drain(..) {
            assert!(event.ts_ns() <= now, "{event:?} after {now}");
            let _ = (event.to_string(), event.dir());
            if let PeerEvent::Note {
                kind: NoteKind::Http2,
                ..
            } = event
            {
                assert!(!self.http2, "HTTP/2 said twice");
                self.http2 = true;
            } else if self.http2 {
                assert!(
                    matches!(event, PeerEvent::Note { .. } | PeerEvent::Closed { .. }),
                    "{event:?} on an HTTP/2 connection"
                );
            }
        }
    }
}

/// One direction's HPACK header blocks. The first byte: bit 0 joined mid-stream, bits
/// 1-2 the table size (0, 256, 4096, 65536). Then [`OpRecord`]s by `op & 3`: 0 decode a
/// block, 1 decode it field by field, 2 (with bit 7) set the table size to `len`, 3
/// (with bit 7) a block was lost.
pub fn hpack(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let size = [0, 256, 4096, 65536][usize::from((flags >> 1) & 3)];
    let mut decoder = if flags & 1 == 0 {
        HpackDecoder::new(size)
    } else {
        HpackDecoder::new_midstream(size)
    };
    while !input.is_empty() {
        let record = OpRecord::parse(&mut input);
        match record.op & 3 {
            0 => {
                if let Ok(block) = decoder.decode(record.bytes) {
                    let _ = block.get(b":path");
                    for field in &block.fields {
                        let _ = (field.name_str(), field.value_str());
                    }
                }
            }
            1 => {
                let _ = decoder.decode_each(record.bytes, |field| {
                    let _ = field.is_known();
                });
            }
            2 => decoder.set_max_table_size(u32::from(record.len)),
            _ => decoder.mark_desynced(),
        }
        let _ = decoder.table_state();
    }
}

/// Two bytes of an input: a method (an index into `METHODS`), and flags whose bit 0
/// says responses (else requests). The method's path, the side, and the flags.
fn method_and_side(input: &mut Input) -> (&'static str, Side, u8) {
    let path = METHODS
        .get(usize::from(input.u8()) % METHODS.len().max(1))
        .map_or("", |m| m.path);
    let flags = input.u8();
    let side = if flags & 1 == 0 {
        Side::Request
    } else {
        Side::Response
    };
    (path, side, flags)
}

/// One direction of a gRPC stream's DATA. Three bytes first: the `grpc-encoding`
/// (none, identity, gzip, snappy), the method (an index into `METHODS`), and flags
/// (bit 0 responses, bit 1 small limits). Then [`OpRecord`]s: bytes, or with bit 7 a gap
/// of `len` bytes (bit 0: its length is not exact). Whole messages are decoded as the
/// method's messages.
pub fn grpc(data: &[u8]) {
    let (path, side, events) = grpc_decode(data);
    for event in events {
        if let GrpcEvent::Message(m) = event {
            if m.complete && m.decode_error.is_none() {
                decode_message(path, side, &m.data);
            }
        }
    }
}

/// What a `grpc` input's records make of its stream, and its method and side.
fn grpc_decode(data: &[u8]) -> (&'static str, Side, Vec<GrpcEvent>) {
    let mut input = Input::new(data);
    let encoding =
        [None, Some("identity"), Some("gzip"), Some("snappy")][usize::from(input.u8() & 3)];
    let (path, side, flags) = method_and_side(&mut input);
    let limits = if flags & 2 == 0 {
        GrpcLimits::default()
    } else {
        GrpcLimits {
            max_kept: 64,
            max_decompressed: 256,
        }
    };
    let mut assembler = GrpcMessageAssembler::with_limits(encoding, limits);
    let mut ts = 0u64;
    let mut out = Vec::new();
    while !input.is_empty() {
        let record = OpRecord::parse(&mut input);
        ts += 1000;
        if record.op & OpRecord::NO_BYTES == 0 {
            assembler.push_data(record.bytes, ts, &mut out);
        } else {
            assembler.push_gap(u64::from(record.len), record.op & 1 == 0, ts, &mut out);
        }
    }
    assembler.finish(ts, &mut out);
    (path, side, out)
}

/// Decodes `bytes` as the `side` message of the method at `path`, and uses what
/// `replay` and `detect` use of it.
fn decode_message(path: &str, side: Side, bytes: &[u8]) {
    let decoded = match side {
        Side::Request => etcdpb::decode_request(path, bytes),
        Side::Response => etcdpb::decode_response(path, bytes),
    };
    if let Ok(mut message) = decoded {
        let _ = (
            message.key().map(etcdpb::display_key),
            message.range_end(),
            message.kv_count(),
            message.response_header(),
        );
        let _ = serde_json::to_vec(&message);
        message.redact();
    }
}

/// One etcd message. Two bytes first: the method (an index into `METHODS`) and flags
/// (bit 0 a response, bit 1 also infer the method from the message alone).
pub fn etcdpb(data: &[u8]) {
    let mut input = Input::new(data);
    let (path, side, flags) = method_and_side(&mut input);
    let bytes = input.rest();
    decode_message(path, side, bytes);
    let _ = infer::fits(path, side, bytes);
    let _ = infer::whole_fields_prefix(bytes);
    if flags & 2 != 0 {
        let _ = infer::infer_method(&[(side, bytes)]);
    }
}

/// The most of a WAL file the `wal` target builds in memory.
const MAX_WAL_FILE: usize = 1 << 20;

/// Writes to one WAL file, each: `op` u8 (bit 0: an offset follows; else the write
/// goes where the previous one ended), len u16, offset u32 if any, then len bytes. The
/// writes go through `wal`'s decoding (as write syscalls), and the file they leave is
/// decoded whole as `wal --file` does.
pub fn wal(data: &[u8]) {
    let mut input = Input::new(data);
    let mut log = WalLog::new();
    let mut out = WalLogOutput::default();
    let mut file = Vec::new();
    let mut offset = 0u64;
    let mut ts = 0u64;
    while !input.is_empty() {
        let op = input.u8();
        let len = input.u16();
        if op & 1 == 1 {
            offset = u64::from(input.u32());
        }
        let bytes = input.bytes(usize::from(len));
        ts += 1000;
        log.push(&wal_write(ts, offset, bytes), &mut out);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(bytes.len());
        if end <= MAX_WAL_FILE {
            if file.len() < end {
                file.resize(end, 0);
            }
            file[start..end].copy_from_slice(bytes);
        }
        offset += bytes.len() as u64;
    }
    log.finish(&mut out);
    for r in decode_wal_file(&file).records {
        if let Ok(WalPayload::Entry(entry)) = r.record.decode() {
            let _ = entry.decode_request();
            let _ = entry.decode_conf_change();
        }
    }
}

/// A write syscall of `bytes` at `offset` of a WAL file.
fn wal_write(ts_ns: u64, offset: u64, bytes: &[u8]) -> Event {
    Event::Syscall(Syscall {
        enter_ns: ts_ns,
        exit_ns: ts_ns + 100,
        pid: 1000,
        tid: 1,
        call: SyscallKind::Write,
        fd: 9,
        file: FileRef {
            kind: FileKind::Wal,
            path: "member/wal/0000000000000000-0000000000000000.wal".into(),
            local_port: 0,
            peer_port: 0,
        },
        offset: Some(offset),
        requested: bytes.len() as u64,
        ret: bytes.len() as i64,
        data: Bytes::copy_from_slice(bytes),
    })
}

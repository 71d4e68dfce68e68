//! The etcd RPCs that clients made, recovered from captured traffic: the capture's
//! packets go through TCP reassembly, HTTP/2 framing, HPACK, gRPC message framing and
//! etcd's protobuf types, and come out as [`RpcCall`] records. On a TLS connection the
//! packets carry ciphertext, which is recognised and set aside, and the plaintext the
//! recorder took inside Go's crypto/tls takes its place (`decode::tls` reassembles it
//! into the same stream events as TCP). Streaming: state is kept
//! per open connection and stream only; a stream's records are emitted when it ends (a
//! streaming call's messages as they arrive) and its state dropped.
//!
//! `connection` holds one connection's decoding, `infer` names methods whose `:path` was
//! never seen, `watches` names the watch each message of a Watch stream is about; packets
//! are put back in time order within a small window first.

mod connection;
pub mod infer;
mod watches;

use std::net::SocketAddr;

use foldhash::{HashMap, HashMapExt};

use crate::capture::{Event, TlsData};
use crate::decode::etcdpb::{self, EtcdMessage};
use crate::decode::tcp::{ConnectionKey, TcpEvent, TcpReassembler, DEFAULT_SERVER_PORTS};
use crate::decode::tls::{looks_like_tls_record, TlsReassembler};

use crate::analyze::order::TimeOrder;
use crate::capture::Packet;
use connection::ConnectionDecoder;

/// Longest undecodable message body kept, in bytes.
pub const MAX_RAW_KEPT: usize = 1024;

/// Which way a message of a streaming call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageDirection {
    Request,
    Response,
}

/// What a record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A whole unary call (or a call whose kind is unknown): first request, first
    /// response, status.
    Call,
    /// One message of a streaming call; `index` counts the direction's messages from 0.
    Message {
        direction: MessageDirection,
        index: u64,
    },
    /// The end of a streaming call: its status and message counts.
    StreamEnd { requests: u64, responses: u64 },
}

/// A message body as far as it could be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcBody {
    /// Decoded completely.
    Message(EtcdMessage),
    /// The message's end was not captured: the whole fields before the cut, decoded.
    Partial {
        message: EtcdMessage,
        /// Bytes of the message that were seen, of `len`.
        captured: usize,
        len: u32,
    },
    /// Not decodable: the first [`MAX_RAW_KEPT`] bytes and why.
    Raw {
        bytes: Vec<u8>,
        len: u32,
        reason: String,
    },
    /// A Snapshot's responses, counted rather than kept.
    SnapshotChunks {
        chunks: u64,
        blob_bytes: u64,
        /// `remaining_bytes` of the last chunk summarised (0 at the end).
        remaining_bytes: u64,
    },
}

impl RpcBody {
    /// The decoded message, whole or partial.
    pub fn message(&self) -> Option<&EtcdMessage> {
        match self {
            RpcBody::Message(m) | RpcBody::Partial { message: m, .. } => Some(m),
            _ => None,
        }
    }

    /// Decoded completely (a snapshot tally counts as complete).
    pub fn is_complete(&self) -> bool {
        matches!(self, RpcBody::Message(_) | RpcBody::SnapshotChunks { .. })
    }
}

/// One RPC (or, for streaming calls, one message or the end of the stream).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub kind: RecordKind,
    /// Capture time of the first request byte (of the message, for stream messages).
    pub ts_ns: u64,
    /// Capture time of the last response byte seen (of the message, for stream messages).
    pub end_ns: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub stream_id: u32,
    /// The gRPC `:path`; None when unknown (see `notes`).
    pub method: Option<String>,
    /// The method was not seen but inferred (see `notes` for how).
    pub inferred: bool,
    /// `grpc-status` of the trailers.
    pub status: Option<u32>,
    pub grpc_message: Option<String>,
    /// From the first request byte to the last response byte, when both were seen.
    pub latency_ns: Option<u64>,
    pub request: Option<RpcBody>,
    pub response: Option<RpcBody>,
    /// DATA bytes (gRPC framing included) of each direction, as on the wire.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The key and range end the call addresses (a streaming call's first request's;
    /// for a message of a Watch stream, the keys of the watch it is about).
    pub key: Option<Vec<u8>>,
    pub range_end: Option<Vec<u8>>,
    /// The `token` metadata header (an auth token: a secret).
    pub token: Option<String>,
    /// Some bytes of the call were not captured.
    pub gaps: bool,
    /// The call went over TLS and was decoded from the plaintext the recorder took.
    pub tls: bool,
    /// What could not be decoded, and why.
    pub notes: Vec<String>,
}

/// Placeholder for redacted secrets.
pub const REDACTED: &str = "<redacted>";

/// Methods whose undecoded bodies may hold a password or token.
fn may_carry_secret(method: Option<&str>) -> bool {
    match method {
        None => true,
        Some(path) => {
            path.starts_with("/etcdserverpb.Auth/") && !path.ends_with("Status")
                || !path.starts_with('/')
        }
    }
}

impl RpcCall {
    /// The method's short name (`Put`), or `?` when unknown.
    pub fn method_name(&self) -> &str {
        match &self.method {
            Some(path) => etcdpb::method(path)
                .map(|m| m.method)
                .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path)),
            None => "?",
        }
    }

    /// Replaces secrets: passwords and tokens in messages, the `token` header, and the
    /// bytes of bodies that could not be decoded but may hold one.
    pub fn redact(&mut self) {
        if self.token.is_some() {
            self.token = Some(REDACTED.to_string());
        }
        let secret_raw = may_carry_secret(self.method.as_deref());
        for body in [&mut self.request, &mut self.response]
            .into_iter()
            .flatten()
        {
            match body {
                RpcBody::Message(m) | RpcBody::Partial { message: m, .. } => m.redact(),
                RpcBody::Raw { bytes, reason, .. } if secret_raw && !bytes.is_empty() => {
                    bytes.clear();
                    reason.push_str(" (bytes withheld: they may hold a secret; --show-secrets)");
                }
                _ => {}
            }
        }
    }

    /// How completely the record was decoded.
    pub fn completeness(&self) -> Completeness {
        if self.method.is_none() {
            return Completeness::UnknownMethod;
        }
        let bodies_ok = [&self.request, &self.response]
            .into_iter()
            .flatten()
            .all(RpcBody::is_complete);
        if !self.inferred && !self.gaps && bodies_ok {
            Completeness::Full
        } else {
            Completeness::Partial
        }
    }
}

/// See [`RpcCall::completeness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Method seen, every message decoded, nothing lost.
    Full,
    /// Method inferred, or some bytes or messages could not be decoded.
    Partial,
    /// The method is unknown.
    UnknownMethod,
}

/// Counters over a whole decoding run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcStats {
    pub packets: u64,
    /// Stream bytes that TCP reassembly reported as gaps.
    pub gap_bytes: u64,
    /// Events the recorder reported lost.
    pub events_lost: u64,
    pub connections: u64,
    /// Connections already open when recording began.
    pub midstream_connections: u64,
    /// Connections that carried TLS (ciphertext seen, or plaintext captured).
    pub tls_connections: u64,
    /// TLS connections whose ciphertext was seen but no plaintext: recorded with
    /// `--no-tls`, or no traced etcd at either end could be probed.
    pub tls_without_plaintext: u64,
    /// Plaintext bytes of TLS connections whose socket the recorder never learned.
    pub tls_unplaced_bytes: u64,
}

/// Packets in, RPC records out. Feed every event of a capture in file order with
/// [`push`](Self::push), then call [`finish`](Self::finish).
#[derive(Debug)]
pub struct RpcDecoder {
    reorder: TimeOrder<Ordered>,
    /// Events the reorder window released, waiting for reassembly (kept for its
    /// allocation).
    released: Vec<Ordered>,
    tcp: TcpReassembler,
    tls: TlsReassembler,
    conns: HashMap<ConnectionKey, ConnectionDecoder>,
    /// Connections known to carry TLS, and whether plaintext was seen for them.
    tls_conns: HashMap<ConnectionKey, TlsSeen>,
    tcp_events: Vec<TcpEvent>,
    plain_events: Vec<TcpEvent>,
    stats: RpcStats,
    since_flush: u64,
}

/// What the reorder window holds: the events that carry stream bytes.
#[derive(Debug)]
enum Ordered {
    Packet(Packet),
    Tls(TlsData),
}

#[derive(Debug, Clone, Copy, Default)]
struct TlsSeen {
    plaintext: bool,
}

/// Packets re-sorted by time within this window (events come only roughly in order).
pub const REORDER_WINDOW_NS: u64 = 100_000_000;

/// Packets held for reordering at most, whatever their timestamps.
const MAX_HELD_PACKETS: usize = 65_536;

/// How often (in packets) idle connections' holes are given up.
const IDLE_FLUSH_EVERY: u64 = 1024;

impl RpcDecoder {
    /// A decoder for traffic whose server side is on one of `server_ports` (empty: etcd's
    /// defaults).
    pub fn new(server_ports: Vec<u16>) -> RpcDecoder {
        let ports = if server_ports.is_empty() {
            DEFAULT_SERVER_PORTS.to_vec()
        } else {
            server_ports
        };
        RpcDecoder {
            reorder: TimeOrder::new(REORDER_WINDOW_NS, MAX_HELD_PACKETS),
            released: Vec::new(),
            tls: TlsReassembler::new(ports.clone()),
            tcp: TcpReassembler::new(ports),
            conns: HashMap::new(),
            tls_conns: HashMap::new(),
            tcp_events: Vec::new(),
            plain_events: Vec::new(),
            stats: RpcStats::default(),
            since_flush: 0,
        }
    }

    pub fn stats(&self) -> &RpcStats {
        &self.stats
    }

    /// Takes one event; finished records are appended to `out`. A packet is copied to
    /// wait in the reorder window: callers that own their events use
    /// [`push_owned`](Self::push_owned) instead.
    pub fn push(&mut self, event: &Event, out: &mut Vec<RpcCall>) {
        match event {
            Event::Packet(p) => self.push_ordered(p.ts_ns, Ordered::Packet(p.clone()), out),
            Event::Tls(t) => self.push_ordered(t.ts_ns, Ordered::Tls(t.clone()), out),
            other => self.push_other(other),
        }
    }

    /// Takes one event by value (no copy of the payload); finished records go to `out`.
    pub fn push_owned(&mut self, event: Event, out: &mut Vec<RpcCall>) {
        match event {
            Event::Packet(p) => self.push_ordered(p.ts_ns, Ordered::Packet(p), out),
            Event::Tls(t) => self.push_ordered(t.ts_ns, Ordered::Tls(t), out),
            other => self.push_other(&other),
        }
    }

    fn push_other(&mut self, event: &Event) {
        if let Event::Loss(l) = event {
            self.stats.events_lost = self.stats.events_lost.saturating_add(l.count)
        }
    }

    fn push_ordered(&mut self, ts: u64, item: Ordered, out: &mut Vec<RpcCall>) {
        if let Ordered::Packet(_) = item {
            self.stats.packets = self.stats.packets.saturating_add(1);
        }
        self.reorder.push(ts, item);
        self.reorder.release(ts, &mut self.released);
        let mut released = std::mem::take(&mut self.released);
        for item in released.drain(..) {
            self.reassemble(item, out);
        }
        self.released = released;
    }

    /// One event in time order: through its reassembler, and what that completes on to
    /// the connections (in the order the events came, so that a TLS connection is known
    /// as one before its plaintext arrives).
    fn reassemble(&mut self, item: Ordered, out: &mut Vec<RpcCall>) {
        match item {
            Ordered::Packet(packet) => {
                self.tcp.push(&packet, &mut self.tcp_events);
                self.since_flush += 1;
                if self.since_flush >= IDLE_FLUSH_EVERY {
                    self.since_flush = 0;
                    self.tcp.idle_flush(packet.ts_ns, &mut self.tcp_events);
                }
                self.drain_tcp(out);
            }
            Ordered::Tls(chunk) => {
                self.tls.push(&chunk, &mut self.plain_events);
                self.drain_plaintext(out);
            }
        }
    }

    /// The capture ended: every call still open is emitted with what was seen of it.
    pub fn finish(&mut self, out: &mut Vec<RpcCall>) {
        let mut ready = Vec::new();
        self.reorder.drain(&mut ready);
        for item in ready {
            self.reassemble(item, out);
        }
        self.tls.finish(&mut self.plain_events);
        self.drain_plaintext(out);
        self.tcp.finish(&mut self.tcp_events);
        self.drain_tcp(out);
        self.stats.tls_unplaced_bytes = self.tls.stats().unplaced_bytes;
        let mut keys: Vec<ConnectionKey> = self.conns.keys().copied().collect();
        keys.sort();
        for key in keys {
            if let Some(mut conn) = self.conns.remove(&key) {
                conn.finish("the capture ended before the call did", out);
            }
        }
        for (_, seen) in self.tls_conns.drain() {
            self.stats.tls_connections += 1;
            if !seen.plaintext {
                self.stats.tls_without_plaintext += 1;
            }
        }
    }

    /// A connection seen to carry TLS is done with: count it.
    fn tls_closed(&mut self, key: &ConnectionKey) {
        if let Some(seen) = self.tls_conns.remove(key) {
            self.stats.tls_connections += 1;
            if !seen.plaintext {
                self.stats.tls_without_plaintext += 1;
            }
        }
    }

    /// The reassembled plaintext of TLS connections.
    fn drain_plaintext(&mut self, out: &mut Vec<RpcCall>) {
        let mut events = std::mem::take(&mut self.plain_events);
        for ev in events.drain(..) {
            match ev {
                TcpEvent::Opened { key, .. } => {
                    let known = self.tls_conns.entry(key).or_default();
                    let ciphertext_seen = !known.plaintext && self.conns.contains_key(&key);
                    known.plaintext = true;
                    // A connection known as TLS keeps its decoder, which was fed nothing
                    // and knows whether the stream's start was seen; one whose
                    // ciphertext was taken for HTTP/2 (opened before recording, cut
                    // mid-record) starts over on the plaintext.
                    let keep = ciphertext_seen
                        && self.conns.get(&key).is_some_and(ConnectionDecoder::is_tls);
                    if !keep {
                        self.conns.insert(key, ConnectionDecoder::new(key, false));
                    }
                    self.conn(key).set_tls();
                }
                TcpEvent::Data {
                    key,
                    dir,
                    ts_ns,
                    offset,
                    bytes,
                } => self.conn(key).push_data(dir, offset, &bytes, ts_ns, out),
                TcpEvent::Gap {
                    key,
                    dir,
                    ts_ns,
                    offset,
                    len,
                    reason: _,
                } => {
                    self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(len);
                    self.conn(key).push_gap(dir, offset, len, ts_ns, out);
                }
                TcpEvent::Closed { .. } => {}
            }
        }
        self.plain_events = events;
    }

    /// Ciphertext of a connection: recognised at its first bytes, and set aside.
    fn is_ciphertext(&mut self, key: ConnectionKey, offset: u64, bytes: &[u8]) -> bool {
        if self.tls_conns.contains_key(&key) {
            return true;
        }
        if offset != 0 || !looks_like_tls_record(bytes) {
            return false;
        }
        self.tls_conns.insert(key, TlsSeen::default());
        self.conn(key).set_tls();
        true
    }

    fn drain_tcp(&mut self, out: &mut Vec<RpcCall>) {
        // Taken out while the connections use `self`, then put back for its allocation.
        let mut tcp_events = std::mem::take(&mut self.tcp_events);
        for ev in tcp_events.drain(..) {
            match ev {
                TcpEvent::Opened {
                    key,
                    ts_ns: _,
                    handshake_seen,
                } => {
                    self.stats.connections += 1;
                    if !handshake_seen {
                        self.stats.midstream_connections += 1;
                    }
                    self.tls_closed(&key);
                    if let Some(mut old) = self
                        .conns
                        .insert(key, ConnectionDecoder::new(key, handshake_seen))
                    {
                        old.finish("the connection was replaced before the call ended", out);
                    }
                }
                TcpEvent::Data {
                    key,
                    dir,
                    ts_ns,
                    offset,
                    bytes,
                } => {
                    if !self.is_ciphertext(key, offset, &bytes) {
                        self.conn(key).push_data(dir, offset, &bytes, ts_ns, out)
                    }
                }
                TcpEvent::Gap {
                    key,
                    dir,
                    ts_ns,
                    offset,
                    len,
                    reason: _,
                } => {
                    if !self.tls_conns.contains_key(&key) {
                        self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(len);
                        self.conn(key).push_gap(dir, offset, len, ts_ns, out);
                    }
                }
                TcpEvent::Closed { key, .. } => {
                    self.tls_closed(&key);
                    if let Some(mut conn) = self.conns.remove(&key) {
                        conn.finish("the connection closed before the call ended", out);
                    }
                }
            }
        }
        self.tcp_events = tcp_events;
    }

    fn conn(&mut self, key: ConnectionKey) -> &mut ConnectionDecoder {
        self.conns
            .entry(key)
            .or_insert_with(|| ConnectionDecoder::new(key, false))
    }
}

#[cfg(test)]
mod tests;

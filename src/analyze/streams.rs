//! Capture events to ordered byte streams per connection, for every analysis that
//! decodes traffic. Packets and TLS plaintext chunks are put back in time order within
//! a small window, then through their reassemblers (`decode::tcp`, `decode::tls`). On a
//! TLS connection the packets carry ciphertext, which is recognised at its first bytes
//! and set aside, and the plaintext the recorder took inside Go's crypto/tls takes its
//! place: a connection's decoder gets one stream of bytes per direction either way.
//!
//! [`StreamDemux`] owns one [`StreamDecoder`] per connection (of the ports it is told
//! to decode), creates it when the connection is first seen, feeds it, and ends it when
//! the connection closes, is replaced, or the capture ends. What the decoders produce
//! goes to the caller's output unchanged.

use foldhash::{HashMap, HashMapExt};

use crate::analyze::order::TimeOrder;
use crate::capture::{Event, Packet, TlsData};
use crate::decode::tcp::{
    CloseReason, ConnectionKey, FlowDirection, TcpEvent, TcpReassembler, DEFAULT_SERVER_PORTS,
};
use crate::decode::tls::{looks_like_tls_record, TlsReassembler};

/// Packets re-sorted by time within this window (events come only roughly in order).
pub const REORDER_WINDOW_NS: u64 = 100_000_000;

/// Packets held for reordering at most, whatever their timestamps.
const MAX_HELD_PACKETS: usize = 65_536;

/// How often (in packets) idle connections' holes are given up.
const IDLE_FLUSH_EVERY: u64 = 1024;

/// Why a connection's decoder is told to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The connection closed.
    Closed { ts_ns: u64, reason: CloseReason },
    /// A new connection took its 4-tuple (its close was not seen).
    Replaced { ts_ns: u64 },
    /// The capture ended with the connection open.
    CaptureEnded,
}

/// The decoder of one connection's two byte streams.
pub trait StreamDecoder {
    /// What it produces.
    type Record;

    /// A decoder for a connection first seen now; `handshake_seen`: its streams start
    /// at their first bytes.
    fn new(key: ConnectionKey, handshake_seen: bool) -> Self;
    /// The connection carries TLS: from now on it is fed plaintext only.
    fn set_tls(&mut self);
    fn is_tls(&self) -> bool;
    /// In-order bytes of one direction, from stream `offset`.
    fn push_data(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<Self::Record>,
    );
    /// `len` bytes from `offset` were not captured.
    fn push_gap(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<Self::Record>,
    );
    /// No more bytes will come.
    fn finish(&mut self, end: StreamEnd, out: &mut Vec<Self::Record>);
}

/// Counters over a whole decoding run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
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

/// Capture events in, one decoder per connection, its records out. Feed every event
/// of a capture in file order with [`push`](Self::push), then call
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct StreamDemux<D> {
    reorder: TimeOrder<Ordered>,
    /// Events the reorder window released, waiting for reassembly (kept for its
    /// allocation).
    released: Vec<Ordered>,
    tcp: TcpReassembler,
    tls: TlsReassembler,
    /// The server ports whose connections are decoded; None: all.
    only: Option<Vec<u16>>,
    conns: HashMap<ConnectionKey, D>,
    /// Connections known to carry TLS, and whether plaintext was seen for them.
    tls_conns: HashMap<ConnectionKey, TlsSeen>,
    tcp_events: Vec<TcpEvent>,
    plain_events: Vec<TcpEvent>,
    stats: StreamStats,
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

impl<D: StreamDecoder> StreamDemux<D> {
    /// Connections whose server side is on one of `server_ports` (empty: etcd's
    /// defaults) are oriented by it when their handshake was not seen. `only`: decode
    /// just the connections to these server ports (None: all).
    pub fn new(server_ports: Vec<u16>, only: Option<Vec<u16>>) -> StreamDemux<D> {
        let mut ports = if server_ports.is_empty() {
            DEFAULT_SERVER_PORTS.to_vec()
        } else {
            server_ports
        };
        for p in only.iter().flatten() {
            if !ports.contains(p) {
                ports.push(*p);
            }
        }
        StreamDemux {
            reorder: TimeOrder::new(REORDER_WINDOW_NS, MAX_HELD_PACKETS),
            released: Vec::new(),
            tls: TlsReassembler::new(ports.clone()),
            tcp: TcpReassembler::new(ports),
            only,
            conns: HashMap::new(),
            tls_conns: HashMap::new(),
            tcp_events: Vec::new(),
            plain_events: Vec::new(),
            stats: StreamStats::default(),
            since_flush: 0,
        }
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// A segment between these ports may belong to a decoded connection. (Every TLS
    /// chunk is reassembled: the first chunks of a connection may not name it yet.)
    fn wants_ports(&self, a: u16, b: u16) -> bool {
        self.only
            .as_ref()
            .is_none_or(|ports| ports.contains(&a) || ports.contains(&b))
    }

    fn wants(&self, key: &ConnectionKey) -> bool {
        self.only
            .as_ref()
            .is_none_or(|ports| ports.contains(&key.server.port()))
    }

    /// Takes one event; finished records are appended to `out`. A packet is copied to
    /// wait in the reorder window: callers that own their events use
    /// [`push_owned`](Self::push_owned) instead.
    pub fn push(&mut self, event: &Event, out: &mut Vec<D::Record>) {
        match event {
            Event::Packet(p) if self.wants_ports(p.src.port(), p.dst.port()) => {
                self.push_ordered(p.ts_ns, Ordered::Packet(p.clone()), out)
            }
            Event::Tls(t) => self.push_ordered(t.ts_ns, Ordered::Tls(t.clone()), out),
            other => self.push_other(other),
        }
    }

    /// Takes one event by value (no copy of the payload); finished records go to `out`.
    pub fn push_owned(&mut self, event: Event, out: &mut Vec<D::Record>) {
        match event {
            Event::Packet(p) if self.wants_ports(p.src.port(), p.dst.port()) => {
                self.push_ordered(p.ts_ns, Ordered::Packet(p), out)
            }
            Event::Tls(t) => self.push_ordered(t.ts_ns, Ordered::Tls(t), out),
            other => self.push_other(&other),
        }
    }

    fn push_other(&mut self, event: &Event) {
        match event {
            Event::Loss(l) => {
                self.stats.events_lost = self.stats.events_lost.saturating_add(l.count)
            }
            Event::Packet(_) => self.stats.packets = self.stats.packets.saturating_add(1),
            _ => {}
        }
    }

    fn push_ordered(&mut self, ts: u64, item: Ordered, out: &mut Vec<D::Record>) {
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
    fn reassemble(&mut self, item: Ordered, out: &mut Vec<D::Record>) {
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

    /// The capture ended: every connection's decoder finishes with what it has.
    pub fn finish(&mut self, out: &mut Vec<D::Record>) {
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
                conn.finish(StreamEnd::CaptureEnded, out);
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
    fn drain_plaintext(&mut self, out: &mut Vec<D::Record>) {
        let mut events = std::mem::take(&mut self.plain_events);
        for ev in events.drain(..) {
            match ev {
                TcpEvent::Opened { key, .. } => {
                    if !self.wants(&key) {
                        continue;
                    }
                    let known = self.tls_conns.entry(key).or_default();
                    let ciphertext_seen = !known.plaintext && self.conns.contains_key(&key);
                    known.plaintext = true;
                    // A connection known as TLS keeps its decoder, which was fed nothing
                    // and knows whether the stream's start was seen; one whose
                    // ciphertext was taken for cleartext (opened before recording, cut
                    // mid-record) starts over on the plaintext.
                    let keep = ciphertext_seen && self.conns.get(&key).is_some_and(D::is_tls);
                    if !keep {
                        self.conns.insert(key, D::new(key, false));
                    }
                    self.conn(key).set_tls();
                }
                ev @ (TcpEvent::Data { key, .. } | TcpEvent::Gap { key, .. }) => {
                    if self.wants(&key) {
                        self.deliver(ev, out);
                    }
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

    fn drain_tcp(&mut self, out: &mut Vec<D::Record>) {
        // Taken out while the connections use `self`, then put back for its allocation.
        let mut tcp_events = std::mem::take(&mut self.tcp_events);
        for ev in tcp_events.drain(..) {
            match ev {
                TcpEvent::Opened {
                    key,
                    ts_ns,
                    handshake_seen,
                } => {
                    if !self.wants(&key) {
                        continue;
                    }
                    self.stats.connections += 1;
                    if !handshake_seen {
                        self.stats.midstream_connections += 1;
                    }
                    self.tls_closed(&key);
                    if let Some(mut old) = self.conns.insert(key, D::new(key, handshake_seen)) {
                        old.finish(StreamEnd::Replaced { ts_ns }, out);
                    }
                }
                TcpEvent::Data {
                    key,
                    offset,
                    ref bytes,
                    ..
                } => {
                    if self.wants(&key) && !self.is_ciphertext(key, offset, bytes) {
                        self.deliver(ev, out);
                    }
                }
                TcpEvent::Gap { key, .. } => {
                    if self.wants(&key) && !self.tls_conns.contains_key(&key) {
                        self.deliver(ev, out);
                    }
                }
                TcpEvent::Closed { key, ts_ns, reason } => {
                    self.tls_closed(&key);
                    if let Some(mut conn) = self.conns.remove(&key) {
                        conn.finish(StreamEnd::Closed { ts_ns, reason }, out);
                    }
                }
            }
        }
        self.tcp_events = tcp_events;
    }

    /// Bytes or a gap of a decoded connection, to its decoder.
    fn deliver(&mut self, ev: TcpEvent, out: &mut Vec<D::Record>) {
        match ev {
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
            TcpEvent::Opened { .. } | TcpEvent::Closed { .. } => {}
        }
    }

    fn conn(&mut self, key: ConnectionKey) -> &mut D {
        self.conns.entry(key).or_insert_with(|| D::new(key, false))
    }
}

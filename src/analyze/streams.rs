//! Capture events to ordered byte streams per connection, for every analysis that
//! decodes traffic. Packets and TLS plaintext chunks are put back in time order within
//! a small window, then through their reassemblers (`decode::tcp`, `decode::tls`). On a
//! TLS connection the packets carry ciphertext, which is recognised at its first bytes
//! and set aside, and the plaintext the recorder took inside Go's crypto/tls takes its
//! place: a connection's decoder gets one stream of bytes per direction either way.
//!
//! [`StreamDemux`] owns one [`StreamDecoder`] per connection (of the ports it is told
//! to decode), creates it when the connection is first seen, feeds it, and ends it when
//! the connection closes, is replaced, or the capture ends. A TLS connection's decoder
//! ends a second of capture time after its TCP connection: etcd reads the plaintext
//! that arrived before the close after it, and may write after it. What the decoders
//! produce goes to the caller's output unchanged.

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

/// Capture time a TLS connection's decoder outlives its TCP connection: etcd reads
/// plaintext that arrived before the close after it, and writes until it notices.
const TLS_CLOSE_GRACE_NS: u64 = 1_000_000_000;

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
    /// The same, when the bytes can be handed over (a decoder that keeps them takes
    /// them without a copy).
    fn push_data_owned(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: Vec<u8>,
        ts_ns: u64,
        out: &mut Vec<Self::Record>,
    ) {
        self.push_data(dir, offset, &bytes, ts_ns, out);
    }
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

/// What a [`StreamDemux`] decodes: see [`StreamDemux::new`] and
/// [`StreamDemux::skip_midstream`].
#[derive(Debug, Clone, Default)]
pub struct DemuxConfig {
    pub server_ports: Vec<u16>,
    pub only: Option<Vec<u16>>,
    pub skip_midstream: Vec<u16>,
}

impl DemuxConfig {
    pub fn build<D: StreamDecoder>(&self) -> StreamDemux<D> {
        StreamDemux::new(self.server_ports.clone(), self.only.clone())
            .skip_midstream(self.skip_midstream.clone())
    }
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
    /// Of those, connections to ports decoded only from their start, passed over.
    pub midstream_skipped: u64,
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
    /// Server ports whose connections are decoded only from their start (see
    /// [`skip_midstream`](Self::skip_midstream)), and the connections passed over.
    from_start_only: Vec<u16>,
    skipped: std::collections::HashSet<ConnectionKey>,
    conns: HashMap<ConnectionKey, D>,
    /// Connections known to carry TLS, and whether plaintext was seen for them.
    tls_conns: HashMap<ConnectionKey, TlsSeen>,
    tcp_events: Vec<TcpEvent>,
    plain_events: Vec<TcpEvent>,
    /// TLS connections whose TCP connection ended, how, and until when their decoder
    /// (still in `conns`) takes late plaintext.
    closing: HashMap<ConnectionKey, (StreamEnd, u64)>,
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
            from_start_only: Vec::new(),
            skipped: std::collections::HashSet::new(),
            conns: HashMap::new(),
            tls_conns: HashMap::new(),
            tcp_events: Vec::new(),
            plain_events: Vec::new(),
            closing: HashMap::new(),
            stats: StreamStats::default(),
            since_flush: 0,
        }
    }

    /// Connections to `ports` that were open before recording are passed over (and
    /// counted): what flows on them mid-way cannot be told from this decoder's protocol
    /// (the RPC decoder and etcd's peer streams).
    pub fn skip_midstream(mut self, ports: Vec<u16>) -> Self {
        self.from_start_only = ports;
        self
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
            && !self.skipped.contains(key)
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
    /// An event that carries no stream bytes to decode is handed back.
    pub fn push_owned(&mut self, event: Event, out: &mut Vec<D::Record>) -> Option<Event> {
        match event {
            Event::Packet(p) if self.wants_ports(p.src.port(), p.dst.port()) => {
                self.push_ordered(p.ts_ns, Ordered::Packet(p), out);
                None
            }
            Event::Tls(t) => {
                self.push_ordered(t.ts_ns, Ordered::Tls(t), out);
                None
            }
            other => {
                self.push_other(&other);
                Some(other)
            }
        }
    }

    /// Capture time has reached `now_ns` without events (a followed capture's quiet
    /// spell): packets held for reordering that are older than the window go on.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<D::Record>) {
        self.reorder.release(now_ns, &mut self.released);
        let mut released = std::mem::take(&mut self.released);
        for item in released.drain(..) {
            self.reassemble(item, out);
        }
        self.released = released;
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
        self.advance(ts, out);
    }

    /// One event in time order: through its reassembler, and what that completes on to
    /// the connections (in the order the events came, so that a TLS connection is known
    /// as one before its plaintext arrives).
    fn reassemble(&mut self, item: Ordered, out: &mut Vec<D::Record>) {
        let now = match &item {
            Ordered::Packet(p) => p.ts_ns,
            Ordered::Tls(t) => t.ts_ns,
        };
        if !self.closing.is_empty() {
            self.end_closing(|deadline| deadline < now, out);
        }
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
        self.end_closing(|_| true, out);
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

    /// Ends the decoders of closed TLS connections whose grace time `over`.
    fn end_closing(&mut self, over: impl Fn(u64) -> bool, out: &mut Vec<D::Record>) {
        let mut due: Vec<(ConnectionKey, StreamEnd)> = self
            .closing
            .iter()
            .filter(|(_, (_, deadline))| over(*deadline))
            .map(|(key, (end, _))| (*key, *end))
            .collect();
        due.sort_by_key(|(key, _)| *key);
        for (key, end) in due {
            self.closing.remove(&key);
            if let Some(mut conn) = self.conns.remove(&key) {
                conn.finish(end, out);
            }
        }
    }

    /// The decoder of a closed TLS connection ends now, before the 4-tuple is reused.
    fn end_closed(&mut self, key: &ConnectionKey, out: &mut Vec<D::Record>) {
        if let Some((end, _)) = self.closing.remove(key) {
            if let Some(mut conn) = self.conns.remove(key) {
                conn.finish(end, out);
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
                    self.end_closed(&key, out);
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
                    if handshake_seen {
                        self.skipped.remove(&key);
                    } else if self.from_start_only.contains(&key.server.port()) {
                        self.skipped.insert(key);
                        self.stats.midstream_skipped += 1;
                    }
                    if !self.wants(&key) {
                        continue;
                    }
                    self.stats.connections += 1;
                    if !handshake_seen {
                        self.stats.midstream_connections += 1;
                    }
                    // A connection open before recording whose plaintext came first (a
                    // write is taken before its segment leaves): the same connection.
                    let plaintext_first = !handshake_seen
                        && self.conns.contains_key(&key)
                        && self.tls_conns.get(&key).is_some_and(|t| t.plaintext);
                    if plaintext_first {
                        continue;
                    }
                    self.tls_closed(&key);
                    self.end_closed(&key, out);
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
                    let end = StreamEnd::Closed { ts_ns, reason };
                    let plaintext = self.tls_conns.get(&key).is_some_and(|t| t.plaintext);
                    self.tls_closed(&key);
                    if plaintext && self.conns.contains_key(&key) {
                        let deadline = ts_ns.saturating_add(TLS_CLOSE_GRACE_NS);
                        self.closing.insert(key, (end, deadline));
                    } else if let Some(mut conn) = self.conns.remove(&key) {
                        conn.finish(end, out);
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
            } => self
                .conn(key)
                .push_data_owned(dir, offset, bytes, ts_ns, out),
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::analyze::test_wire::{TlsWire, Wire};
    use crate::capture::TcpFlags;

    /// A decoder that writes down what it is fed.
    #[derive(Debug)]
    struct Log {
        tls: bool,
    }

    impl StreamDecoder for Log {
        type Record = String;

        fn new(_: ConnectionKey, _: bool) -> Log {
            Log { tls: false }
        }

        fn set_tls(&mut self) {
            self.tls = true;
        }

        fn is_tls(&self) -> bool {
            self.tls
        }

        fn push_data(
            &mut self,
            _: FlowDirection,
            _: u64,
            bytes: &[u8],
            _: u64,
            out: &mut Vec<String>,
        ) {
            let tls = if self.tls { "tls " } else { "" };
            out.push(format!("{tls}{}", String::from_utf8_lossy(bytes)));
        }

        fn push_gap(&mut self, _: FlowDirection, _: u64, len: u64, _: u64, out: &mut Vec<String>) {
            out.push(format!("gap {len}"));
        }

        fn finish(&mut self, end: StreamEnd, out: &mut Vec<String>) {
            let end = match end {
                StreamEnd::Closed { .. } => "closed",
                StreamEnd::Replaced { .. } => "replaced",
                StreamEnd::CaptureEnded => "capture ended",
            };
            out.push(end.to_string());
        }
    }

    fn ends() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.1:50000".parse().unwrap(),
            "127.0.0.1:2380".parse().unwrap(),
        )
    }

    fn run(events: &mut [Event], only: Option<Vec<u16>>) -> Vec<String> {
        events.sort_by_key(Event::ts_ns);
        let mut demux: StreamDemux<Log> = StreamDemux::new(vec![2379, 2380], only);
        let mut out = Vec::new();
        for e in events.iter() {
            demux.push(e, &mut out);
        }
        demux.finish(&mut out);
        out
    }

    #[test]
    fn plaintext_read_after_the_tcp_close_goes_to_the_same_decoder() {
        let (client, server) = ends();
        let mut w = Wire::between(client, server, true);
        w.send(true, &[0x16, 3, 1, 0, 2, 1, 0]);
        w.send(false, &[0x16, 3, 3, 0, 2, 2, 0]);
        let mut tls = TlsWire::new(client, server);
        let first = tls.chunk(w.ts + 1, true, b"request");
        w.raw(true, TcpFlags::FIN | TcpFlags::ACK, &[], 1);
        w.raw(false, TcpFlags::FIN | TcpFlags::ACK, &[], 1);
        // etcd reads the last bytes after the FINs went by.
        let late = tls.chunk(w.ts + 5_000_000, true, b"last");
        let mut events = w.packets;
        events.extend([first, late]);
        assert_eq!(
            run(&mut events, None),
            ["tls request", "tls last", "closed"]
        );
    }

    #[test]
    fn plaintext_before_the_first_packet_of_a_connection_open_before_recording() {
        let (client, server) = ends();
        let mut tls = TlsWire::new(client, server);
        let mut w = Wire::between(client, server, false);
        // The write is taken before its segment (ciphertext cut mid-record) leaves.
        let first = tls.chunk(w.ts, false, b"response");
        w.send(false, b"\x8f\x01ciphertext");
        let second = tls.chunk(w.ts + 1, false, b" more");
        w.send(false, b"\x17\x03\x03\x00\x01z");
        let mut events = w.packets;
        events.extend([first, second]);
        assert_eq!(
            run(&mut events, None),
            ["tls response", "tls  more", "capture ended"]
        );
    }

    #[test]
    fn only_the_connections_to_the_ports_asked_for() {
        let (client, server) = ends();
        let mut peer = Wire::between(client, server, true);
        peer.send(true, b"GET /raft/probing HTTP/1.1\r\n\r\n");
        let mut other = Wire::new(true);
        other.send(true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut events = peer.packets;
        events.extend(other.packets);
        assert_eq!(
            run(&mut events, Some(vec![2380])),
            ["GET /raft/probing HTTP/1.1\r\n\r\n", "capture ended"]
        );
    }
}

//! TCP reassembly: turns the recorder's segments into two ordered byte streams per
//! connection, with every byte we could not see reported as an explicit gap.
//!
//! Rules, per direction of a connection:
//! - Stream offsets count from the first byte after the SYN when the handshake was seen,
//!   otherwise from the first byte seen in that direction (earlier bytes are unknown and
//!   late-arriving segments before that point are dropped). Offsets are 64-bit; 32-bit
//!   sequence numbers are unwrapped relative to the next expected byte, so wraparound is
//!   invisible to consumers.
//! - Bytes are delivered in order, exactly once: duplicates and retransmissions are
//!   trimmed against what was already delivered.
//! - Out-of-order segments wait in a bounded buffer. A hole in front of them is declared
//!   a [`GapReason::Missing`] gap only when it provably will not be filled: the peer
//!   acknowledged bytes beyond it (so the recorder missed them) and `ack_grace_ns` of
//!   capture time passed without them showing up; the connection was reset; the capture
//!   ended ([`TcpReassembler::finish`]); or the connection idled past
//!   `idle_timeout_ns` ([`TcpReassembler::idle_flush`]). When the buffer bound is hit
//!   first, the hole becomes a [`GapReason::BufferLimit`] gap.
//! - A payload cut at snaplen delivers its captured bytes, then a [`GapReason::Snaplen`]
//!   gap for the rest.
//! - `Closed` is emitted once both FINs were reached in order, or at the first RST. The
//!   4-tuple then stays a small tombstone (late ACKs and retransmissions are ignored)
//!   until a new SYN reopens it or `closed_linger_ns` passes. Connections still open at
//!   `finish` are flushed but get no `Closed`.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use foldhash::{HashMap, HashMapExt};

use crate::capture::Packet;

/// The etcd client and peer ports: the server side when no handshake was seen.
pub const DEFAULT_SERVER_PORTS: [u16; 2] = [2379, 2380];

/// A TCP connection, named by its two endpoints with roles assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnectionKey {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// Hashes every field `Eq` compares, in a few wide writes: the derived hash made about
/// a dozen small ones, and reassembly hashes a key several times per packet.
impl Hash for ConnectionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for addr in [self.client, self.server] {
            match addr {
                SocketAddr::V4(a) => {
                    state.write_u64(u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()))
                }
                SocketAddr::V6(a) => {
                    state.write_u128(a.ip().to_bits());
                    state.write_u64(u64::from(a.flowinfo()) << 32 | u64::from(a.scope_id()));
                    state.write_u16(a.port());
                }
            }
        }
    }
}

impl ConnectionKey {
    /// The connection a segment from `src` to `dst` belongs to, and which way it flows,
    /// when no handshake says who is the server: the end on a server port, or the lower
    /// port when both or neither are. Every analysis that orients a lone segment uses this.
    pub fn of_segment(
        src: SocketAddr,
        dst: SocketAddr,
        is_server_port: impl Fn(u16) -> bool,
    ) -> (ConnectionKey, FlowDirection) {
        let dst_is_server = match (is_server_port(dst.port()), is_server_port(src.port())) {
            (true, false) => true,
            (false, true) => false,
            _ => dst.port() <= src.port(),
        };
        if dst_is_server {
            (
                ConnectionKey {
                    client: src,
                    server: dst,
                },
                FlowDirection::ClientToServer,
            )
        } else {
            (
                ConnectionKey {
                    client: dst,
                    server: src,
                },
                FlowDirection::ServerToClient,
            )
        }
    }
}

/// Which way bytes flow on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowDirection {
    ClientToServer,
    ServerToClient,
}

impl FlowDirection {
    /// The other direction.
    pub fn reverse(self) -> FlowDirection {
        match self {
            FlowDirection::ClientToServer => FlowDirection::ServerToClient,
            FlowDirection::ServerToClient => FlowDirection::ClientToServer,
        }
    }

    fn index(self) -> usize {
        match self {
            FlowDirection::ClientToServer => 0,
            FlowDirection::ServerToClient => 1,
        }
    }
}

/// Why a range of a byte stream is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// The recorder cut the payload at its snaplen.
    Snaplen,
    /// Segments never seen: lost on the wire and never retransmitted, or not captured.
    Missing,
    /// Out-of-order data waited beyond the reassembly buffer bound; the hole in front of it
    /// was given up.
    BufferLimit,
    /// TLS plaintext the recorder could not read from etcd's memory.
    Unreadable,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both directions reached their FIN.
    Fin,
    /// A RST was seen.
    Rst,
    /// A new SYN reused the 4-tuple before a FIN/RST of the previous connection was seen.
    Reused,
}

/// What reassembly produces, in order of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpEvent {
    /// A connection was first seen. `handshake_seen` false means it was already open when
    /// recording began: stream bytes before the first seen byte are unknown.
    Opened {
        key: ConnectionKey,
        ts_ns: u64,
        handshake_seen: bool,
    },
    /// In-order bytes of one direction, starting at stream `offset`.
    Data {
        key: ConnectionKey,
        dir: FlowDirection,
        ts_ns: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// `len` bytes from stream `offset` are unknown; delivery continues after them.
    Gap {
        key: ConnectionKey,
        dir: FlowDirection,
        ts_ns: u64,
        offset: u64,
        len: u64,
        reason: GapReason,
    },
    /// The connection ended; no more events for it (until a new `Opened`).
    Closed {
        key: ConnectionKey,
        ts_ns: u64,
        reason: CloseReason,
    },
}

/// Bounds and policy of a [`TcpReassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpReassemblerConfig {
    /// Ports that identify the server side when no handshake was seen.
    pub server_ports: Vec<u16>,
    /// Captured bytes of out-of-order segments kept per direction.
    pub max_buffered_bytes: usize,
    /// Out-of-order segments kept per direction.
    pub max_buffered_segments: usize,
    /// Capture time a hole may stay open after the peer acknowledged bytes beyond it
    /// (events are only roughly time-ordered, so the ACK can come before the data).
    pub ack_grace_ns: u64,
    /// How long a closed 4-tuple ignores stray segments before it may be seen anew.
    pub closed_linger_ns: u64,
    /// `idle_flush` gives up holes of connections silent for this long.
    pub idle_timeout_ns: u64,
}

impl Default for TcpReassemblerConfig {
    fn default() -> Self {
        TcpReassemblerConfig {
            server_ports: DEFAULT_SERVER_PORTS.to_vec(),
            max_buffered_bytes: 4 << 20,
            max_buffered_segments: 4096,
            ack_grace_ns: 200_000_000,
            closed_linger_ns: 120_000_000_000,
            idle_timeout_ns: 30_000_000_000,
        }
    }
}

/// Segments starting further than this past the next expected byte are not TCP data we
/// can place (the largest TCP window is 1 GiB); they are dropped rather than buffered.
const MAX_AHEAD: u64 = 1 << 30;

/// How often (in packets) closed-connection tombstones are swept.
const SWEEP_EVERY: u64 = 4096;

/// Reassembles every connection of a capture. Feed packets in capture order.
#[derive(Debug)]
pub struct TcpReassembler {
    config: TcpReassemblerConfig,
    connections: HashMap<ConnectionKey, Slot>,
    packets: u64,
    latest_ts: u64,
}

#[derive(Debug)]
enum Slot {
    Open(Box<Connection>),
    /// A closed connection: only remembers when, to ignore its stragglers.
    Closed {
        at_ns: u64,
    },
}

#[derive(Debug)]
struct Connection {
    key: ConnectionKey,
    client_isn: Option<u32>,
    server_isn: Option<u32>,
    halves: [Half; 2],
    last_ts: u64,
}

/// One direction of a connection.
#[derive(Debug, Default)]
struct Half {
    /// Sequence number of stream offset 0, once known.
    base: Option<u32>,
    /// Next stream offset to deliver.
    next: u64,
    /// Stream offset of the FIN, once seen.
    fin_at: Option<u64>,
    /// The FIN was reached in order: nothing more will come.
    fin_done: bool,
    /// Out-of-order segments by start offset.
    pending: BTreeMap<u64, Segment>,
    pending_bytes: usize,
    /// The peer acknowledged up to this offset (beyond `next`) at this time.
    ack_check: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Segment {
    ts_ns: u64,
    wire_len: u64,
    bytes: Vec<u8>,
}

/// Where a half emits its events.
#[derive(Clone, Copy)]
struct Sink {
    key: ConnectionKey,
    dir: FlowDirection,
}

impl Sink {
    fn data(self, ts_ns: u64, offset: u64, bytes: &[u8], out: &mut Vec<TcpEvent>) {
        if !bytes.is_empty() {
            out.push(TcpEvent::Data {
                key: self.key,
                dir: self.dir,
                ts_ns,
                offset,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn gap(self, ts_ns: u64, offset: u64, len: u64, reason: GapReason, out: &mut Vec<TcpEvent>) {
        if len > 0 {
            out.push(TcpEvent::Gap {
                key: self.key,
                dir: self.dir,
                ts_ns,
                offset,
                len,
                reason,
            });
        }
    }
}

impl Half {
    fn with_base(base: u32) -> Half {
        Half {
            base: Some(base),
            ..Half::default()
        }
    }

    /// The stream offset of `seq`, unwrapped to be nearest to the next expected byte.
    /// Negative: before the start of the stream.
    fn offset_of(&self, seq: u32) -> Option<i128> {
        let base = self.base?;
        // Truncation to 32 bits is the point: sequence numbers live modulo 2^32.
        let next_seq = base.wrapping_add(self.next as u32);
        let delta = seq.wrapping_sub(next_seq) as i32;
        Some(i128::from(self.next) + i128::from(delta))
    }

    /// Takes one segment whose first byte is at stream offset `start`.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        sink: Sink,
        cfg: &TcpReassemblerConfig,
        ts_ns: u64,
        start: i128,
        wire_len: u64,
        bytes: &[u8],
        fin: bool,
        out: &mut Vec<TcpEvent>,
    ) {
        if self.fin_done {
            return;
        }
        let end = start + i128::from(wire_len);
        if fin && self.fin_at.is_none() && end >= i128::from(self.next) {
            self.fin_at = u64::try_from(end).ok();
        }
        // Trim what lies before what we still need.
        let next = i128::from(self.next);
        let (start, bytes) = if start < next {
            let cut = usize::try_from(next - start).unwrap_or(usize::MAX);
            (next, bytes.get(cut..).unwrap_or(&[]))
        } else {
            (start, bytes)
        };
        // Nothing can follow the FIN.
        let end = match self.fin_at {
            Some(f) => end.min(i128::from(f)),
            None => end,
        };
        if end > start {
            let (Ok(start), Ok(end)) = (u64::try_from(start), u64::try_from(end)) else {
                return;
            };
            let wire_len = end - start;
            let bytes = bytes.get(
                ..bytes
                    .len()
                    .min(usize::try_from(wire_len).unwrap_or(usize::MAX)),
            );
            let bytes = bytes.unwrap_or(&[]);
            if start == self.next {
                self.deliver(sink, ts_ns, start, wire_len, bytes, out);
                self.drain(sink, out);
            } else if start - self.next <= MAX_AHEAD {
                self.buffer(start, ts_ns, wire_len, bytes);
                self.enforce_bounds(sink, cfg, ts_ns, out);
            }
        }
        self.check_fin();
    }

    /// Delivers a segment that starts at or before `next`, trimming what was delivered.
    fn deliver(
        &mut self,
        sink: Sink,
        ts_ns: u64,
        start: u64,
        wire_len: u64,
        bytes: &[u8],
        out: &mut Vec<TcpEvent>,
    ) {
        let end = start.saturating_add(wire_len);
        if end <= self.next {
            return;
        }
        let skip = self.next - start;
        let captured_end = start.saturating_add(bytes.len() as u64);
        if captured_end > self.next {
            let from = usize::try_from(skip).unwrap_or(usize::MAX);
            let slice = bytes.get(from..).unwrap_or(&[]);
            let slice_end = slice
                .len()
                .min(usize::try_from(end - self.next).unwrap_or(usize::MAX));
            sink.data(ts_ns, self.next, slice.get(..slice_end).unwrap_or(&[]), out);
            self.next = captured_end.min(end);
        }
        if end > self.next {
            sink.gap(ts_ns, self.next, end - self.next, GapReason::Snaplen, out);
            self.next = end;
        }
    }

    fn buffer(&mut self, start: u64, ts_ns: u64, wire_len: u64, bytes: &[u8]) {
        if let Some(existing) = self.pending.get(&start) {
            if existing.wire_len >= wire_len && existing.bytes.len() >= bytes.len() {
                return;
            }
        }
        self.pending_bytes += bytes.len();
        if let Some(old) = self.pending.insert(
            start,
            Segment {
                ts_ns,
                wire_len,
                bytes: bytes.to_vec(),
            },
        ) {
            self.pending_bytes -= old.bytes.len();
        }
    }

    /// Delivers buffered segments that have become contiguous.
    fn drain(&mut self, sink: Sink, out: &mut Vec<TcpEvent>) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let start = *entry.key();
            let seg = entry.remove();
            self.pending_bytes -= seg.bytes.len();
            self.deliver(sink, seg.ts_ns, start, seg.wire_len, &seg.bytes, out);
        }
    }

    /// Declares `[next, target)` unknown, then delivers what became contiguous.
    fn skip_to(
        &mut self,
        sink: Sink,
        target: u64,
        ts_ns: u64,
        reason: GapReason,
        out: &mut Vec<TcpEvent>,
    ) {
        if target > self.next {
            sink.gap(ts_ns, self.next, target - self.next, reason, out);
            self.next = target;
        }
        self.drain(sink, out);
    }

    fn enforce_bounds(
        &mut self,
        sink: Sink,
        cfg: &TcpReassemblerConfig,
        ts_ns: u64,
        out: &mut Vec<TcpEvent>,
    ) {
        while self.pending_bytes > cfg.max_buffered_bytes
            || self.pending.len() > cfg.max_buffered_segments
        {
            let Some((&first, _)) = self.pending.first_key_value() else {
                break;
            };
            self.skip_to(sink, first, ts_ns, GapReason::BufferLimit, out);
        }
    }

    /// Gives up every hole before `limit` (all holes when `None`): delivers all that is
    /// buffered below it and declares the rest missing.
    fn flush_until(&mut self, sink: Sink, limit: Option<u64>, ts_ns: u64, out: &mut Vec<TcpEvent>) {
        if self.fin_done {
            return;
        }
        let limit = match (limit, self.fin_at) {
            (Some(l), Some(f)) => Some(l.min(f)),
            (l, f) => l.or(f),
        };
        while let Some((&first, _)) = self.pending.first_key_value() {
            if limit.is_some_and(|l| first >= l) {
                break;
            }
            self.skip_to(sink, first, ts_ns, GapReason::Missing, out);
        }
        if let Some(l) = limit {
            self.skip_to(sink, l, ts_ns, GapReason::Missing, out);
        }
        self.check_fin();
    }

    fn check_fin(&mut self) {
        if self.fin_at.is_some_and(|f| self.next >= f) {
            self.fin_done = true;
            self.pending.clear();
            self.pending_bytes = 0;
            self.ack_check = None;
        }
    }

    /// The peer acknowledged `ack`: bytes before it exist even if we never saw them.
    fn note_ack(&mut self, ack: u32, ts_ns: u64) {
        if self.fin_done || self.ack_check.is_some() {
            return;
        }
        if let Some(off) = self.offset_of(ack) {
            if off > i128::from(self.next) {
                if let Ok(off) = u64::try_from(off) {
                    self.ack_check = Some((off, ts_ns));
                }
            }
        }
    }

    /// Gives up holes the peer acknowledged long enough ago.
    fn check_ack(&mut self, sink: Sink, grace: u64, ts_ns: u64, out: &mut Vec<TcpEvent>) {
        if let Some((target, since)) = self.ack_check {
            if target <= self.next {
                self.ack_check = None;
            } else if ts_ns >= since.saturating_add(grace) {
                self.ack_check = None;
                self.flush_until(sink, Some(target), ts_ns, out);
            }
        }
    }
}

impl Connection {
    fn sink(&self, dir: FlowDirection) -> Sink {
        Sink { key: self.key, dir }
    }

    fn flush_all(&mut self, ts_ns: u64, out: &mut Vec<TcpEvent>) {
        for dir in [FlowDirection::ClientToServer, FlowDirection::ServerToClient] {
            let sink = self.sink(dir);
            self.halves[dir.index()].flush_until(sink, None, ts_ns, out);
        }
    }

    fn any_fin(&self) -> bool {
        self.halves.iter().any(|h| h.fin_at.is_some())
    }

    /// Whether a SYN on an open connection starts a new one (rather than repeating the
    /// handshake we already know).
    fn is_new_connection(&self, pkt: &Packet, dir: FlowDirection) -> bool {
        let syn_ack = pkt.flags.ack();
        match (dir, syn_ack) {
            (FlowDirection::ClientToServer, false) => self.client_isn != Some(pkt.seq),
            (FlowDirection::ServerToClient, true) => {
                self.server_isn.is_some_and(|isn| isn != pkt.seq)
            }
            // SYN from the server side or SYN-ACK from the client side: roles reversed on
            // a live 4-tuple, which TCP does not do; treat as noise.
            _ => false,
        }
    }
}

impl TcpReassembler {
    /// A reassembler with default bounds; `server_ports` names the server side of
    /// connections whose handshake was not seen.
    pub fn new(server_ports: Vec<u16>) -> TcpReassembler {
        TcpReassembler::with_config(TcpReassemblerConfig {
            server_ports,
            ..TcpReassemblerConfig::default()
        })
    }

    /// A reassembler with explicit bounds.
    pub fn with_config(config: TcpReassemblerConfig) -> TcpReassembler {
        TcpReassembler {
            config,
            connections: HashMap::new(),
            packets: 0,
            latest_ts: 0,
        }
    }

    /// Connections currently open (not counting closed tombstones).
    pub fn open_connections(&self) -> usize {
        self.connections
            .values()
            .filter(|s| matches!(s, Slot::Open(_)))
            .count()
    }

    /// Takes one captured segment; appends what it reveals to `out`.
    pub fn push(&mut self, pkt: &Packet, out: &mut Vec<TcpEvent>) {
        self.packets += 1;
        self.latest_ts = self.latest_ts.max(pkt.ts_ns);
        if self.packets.is_multiple_of(SWEEP_EVERY) {
            self.sweep_tombstones(self.latest_ts);
        }

        let forward = ConnectionKey {
            client: pkt.src,
            server: pkt.dst,
        };
        let backward = ConnectionKey {
            client: pkt.dst,
            server: pkt.src,
        };
        let found = if self.connections.contains_key(&forward) {
            Some((forward, FlowDirection::ClientToServer))
        } else if self.connections.contains_key(&backward) {
            Some((backward, FlowDirection::ServerToClient))
        } else {
            None
        };
        let syn = pkt.flags.syn();
        let syn_ack = syn && pkt.flags.ack();

        if let Some((key, dir)) = found {
            let linger = self.config.closed_linger_ns;
            // One lookup serves the common case: a segment of an open connection.
            match self.connections.get_mut(&key) {
                Some(Slot::Closed { at_ns }) => {
                    if !syn && pkt.ts_ns <= at_ns.saturating_add(linger) {
                        return;
                    }
                    self.connections.remove(&key);
                }
                Some(Slot::Open(conn)) if syn && conn.is_new_connection(pkt, dir) => {
                    if let Some(Slot::Open(mut conn)) = self.connections.remove(&key) {
                        conn.flush_all(pkt.ts_ns, out);
                        let reason = if conn.any_fin() {
                            CloseReason::Fin
                        } else {
                            CloseReason::Reused
                        };
                        out.push(TcpEvent::Closed {
                            key,
                            ts_ns: pkt.ts_ns,
                            reason,
                        });
                    }
                }
                Some(slot) => {
                    push_to(slot, &self.config, dir, pkt, out);
                    return;
                }
                None => return,
            }
        }

        let (key, dir, conn) = if syn && !syn_ack {
            let key = forward;
            let conn = Connection {
                key,
                client_isn: Some(pkt.seq),
                server_isn: None,
                halves: [Half::with_base(pkt.seq.wrapping_add(1)), Half::default()],
                last_ts: pkt.ts_ns,
            };
            (key, FlowDirection::ClientToServer, conn)
        } else if syn_ack {
            let key = backward;
            let conn = Connection {
                key,
                client_isn: Some(pkt.ack.wrapping_sub(1)),
                server_isn: Some(pkt.seq),
                halves: [
                    Half::with_base(pkt.ack),
                    Half::with_base(pkt.seq.wrapping_add(1)),
                ],
                last_ts: pkt.ts_ns,
            };
            (key, FlowDirection::ServerToClient, conn)
        } else {
            if pkt.flags.rst() {
                // A reset of a connection we never saw opening tells us nothing.
                return;
            }
            let ports = &self.config.server_ports;
            let (key, dir) = ConnectionKey::of_segment(pkt.src, pkt.dst, |p| ports.contains(&p));
            let conn = Connection {
                key,
                client_isn: None,
                server_isn: None,
                halves: [Half::default(), Half::default()],
                last_ts: pkt.ts_ns,
            };
            (key, dir, conn)
        };
        out.push(TcpEvent::Opened {
            key,
            ts_ns: pkt.ts_ns,
            handshake_seen: syn,
        });
        let slot = self
            .connections
            .entry(key)
            .insert_entry(Slot::Open(Box::new(conn)))
            .into_mut();
        push_to(slot, &self.config, dir, pkt, out);
    }

    /// Gives up the holes of connections silent for `idle_timeout_ns` before `now_ns`
    /// (declaring them missing and delivering what waited behind them), and forgets
    /// closed connections older than `closed_linger_ns`.
    pub fn idle_flush(&mut self, now_ns: u64, out: &mut Vec<TcpEvent>) {
        self.sweep_tombstones(now_ns);
        let timeout = self.config.idle_timeout_ns;
        let mut keys: Vec<ConnectionKey> = self
            .connections
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Open(c) if c.last_ts.saturating_add(timeout) < now_ns => Some(*k),
                _ => None,
            })
            .collect();
        keys.sort();
        for key in keys {
            if let Some(Slot::Open(conn)) = self.connections.get_mut(&key) {
                let ts = conn.last_ts;
                for dir in [FlowDirection::ClientToServer, FlowDirection::ServerToClient] {
                    let sink = conn.sink(dir);
                    let half = &mut conn.halves[dir.index()];
                    if !half.pending.is_empty() {
                        let last = half.pending.last_key_value().map(|(k, _)| *k);
                        half.flush_until(sink, last, ts, out);
                        half.drain(sink, out);
                    }
                }
            }
        }
    }

    /// The capture ended: delivers everything still buffered, declaring its holes missing,
    /// and forgets every connection.
    pub fn finish(&mut self, out: &mut Vec<TcpEvent>) {
        let mut conns: Vec<(ConnectionKey, Slot)> = self.connections.drain().collect();
        conns.sort_by_key(|(k, _)| *k);
        for (_, slot) in conns {
            if let Slot::Open(mut conn) = slot {
                let ts = conn.last_ts;
                conn.flush_all(ts, out);
            }
        }
    }

    fn sweep_tombstones(&mut self, now_ns: u64) {
        let linger = self.config.closed_linger_ns;
        self.connections.retain(|_, s| match s {
            Slot::Closed { at_ns } => at_ns.saturating_add(linger) >= now_ns,
            Slot::Open(_) => true,
        });
    }
}

/// Takes a segment of the connection in `slot`, which becomes a tombstone if the segment
/// closes it.
fn push_to(
    slot: &mut Slot,
    cfg: &TcpReassemblerConfig,
    dir: FlowDirection,
    pkt: &Packet,
    out: &mut Vec<TcpEvent>,
) {
    let Slot::Open(conn) = slot else {
        return;
    };
    let key = conn.key;
    conn.last_ts = conn.last_ts.max(pkt.ts_ns);
    let flags = pkt.flags;

    if flags.syn() && flags.ack() && dir == FlowDirection::ServerToClient {
        // The SYN-ACK of a handshake whose SYN we saw.
        if conn.server_isn.is_none() {
            conn.server_isn = Some(pkt.seq);
            let half = &mut conn.halves[dir.index()];
            if half.base.is_none() {
                half.base = Some(pkt.seq.wrapping_add(1));
            }
        }
    }

    if flags.rst() {
        conn.flush_all(pkt.ts_ns, out);
        out.push(TcpEvent::Closed {
            key,
            ts_ns: pkt.ts_ns,
            reason: CloseReason::Rst,
        });
        *slot = Slot::Closed { at_ns: pkt.ts_ns };
        return;
    }

    let data_seq = if flags.syn() {
        pkt.seq.wrapping_add(1)
    } else {
        pkt.seq
    };
    let wire_len = u64::from(pkt.payload_len);
    let sink = conn.sink(dir);
    {
        let half = &mut conn.halves[dir.index()];
        if half.base.is_none() && (wire_len > 0 || flags.fin()) {
            half.base = Some(data_seq);
        }
        if wire_len > 0 || flags.fin() {
            if let Some(start) = half.offset_of(data_seq) {
                half.accept(
                    sink,
                    cfg,
                    pkt.ts_ns,
                    start,
                    wire_len,
                    &pkt.payload,
                    flags.fin(),
                    out,
                );
            }
        }
    }
    if flags.ack() {
        conn.halves[dir.reverse().index()].note_ack(pkt.ack, pkt.ts_ns);
    }
    for d in [FlowDirection::ClientToServer, FlowDirection::ServerToClient] {
        let sink = conn.sink(d);
        conn.halves[d.index()].check_ack(sink, cfg.ack_grace_ns, pkt.ts_ns, out);
    }

    if conn.halves.iter().all(|h| h.fin_done) {
        out.push(TcpEvent::Closed {
            key,
            ts_ns: pkt.ts_ns,
            reason: CloseReason::Fin,
        });
        *slot = Slot::Closed { at_ns: pkt.ts_ns };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Direction, TcpFlags};

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;
    const PSH: u8 = TcpFlags::PSH;

    fn client() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }
    fn server() -> SocketAddr {
        "127.0.0.1:2379".parse().unwrap()
    }
    fn key() -> ConnectionKey {
        ConnectionKey {
            client: client(),
            server: server(),
        }
    }

    fn packet(ts: u64, c2s: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Packet {
        let (src, dst) = if c2s {
            (client(), server())
        } else {
            (server(), client())
        };
        Packet {
            ts_ns: ts,
            ifindex: 1,
            direction: Direction::Egress,
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            payload_len: payload.len() as u32,
            payload: payload.to_vec().into(),
        }
    }

    /// Bytes per direction, with gaps written as `len` zero-free markers in a list.
    #[derive(Default, Debug)]
    struct Streams {
        bytes: [Vec<u8>; 2],
        gaps: Vec<(FlowDirection, u64, u64, GapReason)>,
        opened: Vec<bool>,
        closed: Vec<CloseReason>,
    }

    fn collect(events: &[TcpEvent]) -> Streams {
        let mut s = Streams::default();
        let mut expected = [0u64; 2];
        for e in events {
            match e {
                TcpEvent::Opened { handshake_seen, .. } => {
                    s.opened.push(*handshake_seen);
                    expected = [0, 0];
                    s.bytes = [Vec::new(), Vec::new()];
                }
                TcpEvent::Data {
                    dir, offset, bytes, ..
                } => {
                    assert_eq!(*offset, expected[dir.index()], "data out of order");
                    expected[dir.index()] += bytes.len() as u64;
                    s.bytes[dir.index()].extend_from_slice(bytes);
                }
                TcpEvent::Gap {
                    dir,
                    offset,
                    len,
                    reason,
                    ..
                } => {
                    assert_eq!(*offset, expected[dir.index()], "gap out of order");
                    expected[dir.index()] += len;
                    s.gaps.push((*dir, *offset, *len, *reason));
                }
                TcpEvent::Closed { reason, .. } => s.closed.push(*reason),
            }
        }
        s
    }

    fn run(packets: &[Packet]) -> Vec<TcpEvent> {
        let mut r = TcpReassembler::new(DEFAULT_SERVER_PORTS.to_vec());
        let mut out = Vec::new();
        for p in packets {
            r.push(p, &mut out);
        }
        r.finish(&mut out);
        out
    }

    fn handshake(cisn: u32, sisn: u32) -> Vec<Packet> {
        vec![
            packet(1, true, cisn, 0, SYN, b""),
            packet(2, false, sisn, cisn.wrapping_add(1), SYN | ACK, b""),
            packet(
                3,
                true,
                cisn.wrapping_add(1),
                sisn.wrapping_add(1),
                ACK,
                b"",
            ),
        ]
    }

    #[test]
    fn in_order_both_directions_and_fin() {
        let mut p = handshake(1000, 5000);
        p.push(packet(4, true, 1001, 5001, ACK | PSH, b"hello "));
        p.push(packet(5, true, 1007, 5001, ACK | PSH, b"world"));
        p.push(packet(6, false, 5001, 1012, ACK | PSH, b"ok"));
        p.push(packet(7, true, 1012, 5003, ACK | FIN, b""));
        p.push(packet(8, false, 5003, 1013, ACK | FIN, b""));
        p.push(packet(9, true, 1013, 5004, ACK, b""));
        let ev = run(&p);
        let s = collect(&ev);
        assert_eq!(s.opened, vec![true]);
        assert_eq!(s.bytes[0], b"hello world");
        assert_eq!(s.bytes[1], b"ok");
        assert!(s.gaps.is_empty());
        assert_eq!(s.closed, vec![CloseReason::Fin]);
        assert!(matches!(ev[0], TcpEvent::Opened { key: k, .. } if k == key()));
    }

    #[test]
    fn pure_acks_produce_no_data() {
        let mut p = handshake(1, 1);
        for i in 0..5 {
            p.push(packet(10 + i, i % 2 == 0, 2, 2, ACK, b""));
        }
        let ev = run(&p);
        assert_eq!(ev.len(), 1, "{ev:?}");
    }

    #[test]
    fn reordering_and_duplicates() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 14, 21, ACK, b"def"));
        p.push(packet(5, true, 11, 21, ACK, b"abc"));
        p.push(packet(6, true, 11, 21, ACK, b"abc"));
        p.push(packet(7, true, 14, 21, ACK, b"def"));
        p.push(packet(8, true, 17, 21, ACK, b"ghi"));
        let s = collect(&run(&p));
        assert_eq!(s.bytes[0], b"abcdefghi");
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn partial_overlap_is_trimmed() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"abcd"));
        p.push(packet(5, true, 13, 21, ACK, b"cdefg"));
        p.push(packet(6, true, 19, 21, ACK, b"ijk")); // out of order, then overlapped
        p.push(packet(7, true, 18, 21, ACK, b"hijkl"));
        let s = collect(&run(&p));
        assert_eq!(s.bytes[0], b"abcdefghijkl");
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn sequence_wraparound() {
        let isn = u32::MAX - 5;
        let mut p = handshake(isn, 7);
        let mut seq = isn.wrapping_add(1);
        let mut all = Vec::new();
        for (i, chunk) in [&b"0123"[..], b"4567", b"89ab", b"cdef"].iter().enumerate() {
            all.extend_from_slice(chunk);
            p.push(packet(10 + i as u64, true, seq, 8, ACK, chunk));
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        // Reorder the two segments across the wrap.
        p.swap(4, 5);
        let s = collect(&run(&p));
        assert_eq!(s.bytes[0], all);
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn snaplen_truncation_reports_gap() {
        let mut p = handshake(10, 20);
        let mut cut = packet(4, true, 11, 21, ACK, b"abc");
        cut.payload_len = 10;
        p.push(cut);
        p.push(packet(5, true, 21, 21, ACK, b"xyz"));
        let s = collect(&run(&p));
        assert_eq!(s.bytes[0], b"abcxyz");
        assert_eq!(
            s.gaps,
            vec![(FlowDirection::ClientToServer, 3, 7, GapReason::Snaplen)]
        );
    }

    #[test]
    fn missing_segment_declared_at_finish() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"abc"));
        p.push(packet(6, true, 17, 21, ACK, b"ghi"));
        let mut r = TcpReassembler::new(vec![2379]);
        let mut out = Vec::new();
        for pk in &p {
            r.push(pk, &mut out);
        }
        // Nothing known about the hole yet: "ghi" waits.
        assert_eq!(collect(&out).bytes[0], b"abc");
        r.finish(&mut out);
        let s = collect(&out);
        assert_eq!(s.bytes[0], b"abcghi");
        assert_eq!(
            s.gaps,
            vec![(FlowDirection::ClientToServer, 3, 3, GapReason::Missing)]
        );
    }

    #[test]
    fn missing_segment_declared_once_acked_and_grace_passed() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"abc"));
        p.push(packet(6, true, 17, 21, ACK, b"ghi"));
        // The server acked everything: the recorder missed "def".
        p.push(packet(7, false, 21, 20, ACK, b""));
        let mut r = TcpReassembler::new(vec![2379]);
        let mut out = Vec::new();
        for pk in &p {
            r.push(pk, &mut out);
        }
        assert!(collect(&out).gaps.is_empty(), "within grace: still waiting");
        // Any later packet past the grace period settles it.
        r.push(&packet(7 + 300_000_000, false, 21, 20, ACK, b""), &mut out);
        let s = collect(&out);
        assert_eq!(s.bytes[0], b"abcghi");
        assert_eq!(
            s.gaps,
            vec![(FlowDirection::ClientToServer, 3, 3, GapReason::Missing)]
        );
    }

    #[test]
    fn late_data_within_grace_fills_the_hole() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"abc"));
        p.push(packet(5, false, 21, 20, ACK, b"")); // ack seen before the data
        p.push(packet(6, true, 17, 21, ACK, b"ghi"));
        p.push(packet(7, true, 14, 21, ACK, b"def"));
        p.push(packet(300_000_000, false, 21, 20, ACK, b""));
        let s = collect(&run(&p));
        assert_eq!(s.bytes[0], b"abcdefghi");
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn buffer_limit_gives_up_the_hole() {
        let cfg = TcpReassemblerConfig {
            max_buffered_segments: 2,
            ..TcpReassemblerConfig::default()
        };
        let mut r = TcpReassembler::with_config(cfg);
        let mut out = Vec::new();
        let mut p = handshake(0, 0);
        p.push(packet(4, true, 4, 1, ACK, b"b")); // hole [0,3)
        p.push(packet(5, true, 5, 1, ACK, b"c"));
        p.push(packet(6, true, 6, 1, ACK, b"d"));
        for pk in &p {
            r.push(pk, &mut out);
        }
        let s = collect(&out);
        assert_eq!(s.bytes[0], b"bcd");
        assert_eq!(
            s.gaps,
            vec![(FlowDirection::ClientToServer, 0, 3, GapReason::BufferLimit)]
        );
    }

    #[test]
    fn mid_stream_start_uses_server_ports() {
        // Server on a high port known by configuration, client on a lower port.
        let c: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let s: SocketAddr = "10.0.0.2:32379".parse().unwrap();
        let mut p1 = packet(1, false, 777, 1, ACK, b"resp");
        p1.src = s;
        p1.dst = c;
        let mut r = TcpReassembler::new(vec![32379]);
        let mut out = Vec::new();
        r.push(&p1, &mut out);
        assert_eq!(
            out[0],
            TcpEvent::Opened {
                key: ConnectionKey {
                    client: c,
                    server: s
                },
                ts_ns: 1,
                handshake_seen: false
            }
        );
        assert!(matches!(
            &out[1],
            TcpEvent::Data { dir: FlowDirection::ServerToClient, offset: 0, bytes, .. } if bytes == b"resp"
        ));
        // Without the port hint the lower port is the server.
        let mut r = TcpReassembler::new(vec![]);
        let mut out = Vec::new();
        r.push(&p1, &mut out);
        assert!(matches!(&out[0], TcpEvent::Opened { key, .. } if key.server == c));
    }

    #[test]
    fn mid_stream_start_drops_earlier_bytes() {
        let p = vec![
            packet(1, true, 100, 1, ACK, b"def"),
            packet(2, true, 97, 1, ACK, b"abc"),
            packet(3, true, 103, 1, ACK, b"ghi"),
        ];
        let s = collect(&run(&p));
        assert_eq!(s.opened, vec![false]);
        assert_eq!(s.bytes[0], b"defghi");
    }

    #[test]
    fn rst_closes_and_flushes() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"abc"));
        p.push(packet(5, true, 17, 21, ACK, b"ghi"));
        p.push(packet(6, false, 21, 14, RST | ACK, b""));
        p.push(packet(7, true, 20, 21, ACK, b"late")); // ignored: closed
        let ev = run(&p);
        let s = collect(&ev);
        assert_eq!(s.bytes[0], b"abcghi");
        assert_eq!(s.closed, vec![CloseReason::Rst]);
        assert!(matches!(ev.last(), Some(TcpEvent::Closed { .. })));
    }

    #[test]
    fn fin_out_of_order_waits_for_data() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 14, 21, ACK | FIN, b"def"));
        p.push(packet(5, false, 21, 11, ACK | FIN, b""));
        p.push(packet(6, true, 11, 22, ACK, b"abc"));
        let ev = run(&p);
        let s = collect(&ev);
        assert_eq!(s.bytes[0], b"abcdef");
        assert_eq!(s.closed, vec![CloseReason::Fin]);
    }

    #[test]
    fn port_reuse_after_fin_is_a_new_connection() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"one"));
        p.push(packet(5, true, 14, 21, ACK | FIN, b""));
        p.push(packet(6, false, 21, 15, ACK | FIN, b""));
        p.push(packet(7, true, 15, 22, ACK, b"")); // last ACK: ignored
        p.push(packet(8, false, 21, 15, ACK | FIN, b"")); // retransmitted FIN: ignored
        p.push(packet(9, true, 9000, 0, SYN, b""));
        p.push(packet(10, false, 7000, 9001, SYN | ACK, b""));
        p.push(packet(11, true, 9001, 7001, ACK, b"two"));
        let ev = run(&p);
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| match e {
                TcpEvent::Opened { .. } => "open",
                TcpEvent::Data { .. } => "data",
                TcpEvent::Gap { .. } => "gap",
                TcpEvent::Closed { .. } => "close",
            })
            .collect();
        assert_eq!(kinds, ["open", "data", "close", "open", "data"]);
        assert!(matches!(&ev[4], TcpEvent::Data { bytes, offset: 0, .. } if bytes == b"two"));
    }

    #[test]
    fn new_syn_without_close_reuses() {
        let mut p = handshake(10, 20);
        p.push(packet(4, true, 11, 21, ACK, b"one"));
        p.push(packet(5, true, 10, 0, SYN, b"")); // retransmitted SYN: same ISN, ignored
        p.push(packet(6, true, 77, 0, SYN, b"")); // new ISN: a new connection
        p.push(packet(7, true, 78, 0, ACK, b"two"));
        let s = collect(&run(&p));
        assert_eq!(s.opened, vec![true, true]);
        assert_eq!(s.closed, vec![CloseReason::Reused]);
        assert_eq!(s.bytes[0], b"two");
    }

    #[test]
    fn syn_ack_first_identifies_roles() {
        let p = vec![
            packet(1, false, 500, 101, SYN | ACK, b""),
            packet(2, true, 101, 501, ACK, b"req"),
            packet(3, false, 501, 104, ACK, b"resp"),
        ];
        let ev = run(&p);
        assert!(
            matches!(ev[0], TcpEvent::Opened { key: k, handshake_seen: true, .. } if k == key())
        );
        let s = collect(&ev);
        assert_eq!(s.bytes[0], b"req");
        assert_eq!(s.bytes[1], b"resp");
    }

    #[test]
    fn idle_flush_gives_up_holes() {
        let mut r = TcpReassembler::new(vec![2379]);
        let mut out = Vec::new();
        for pk in handshake(10, 20) {
            r.push(&pk, &mut out);
        }
        r.push(&packet(4, true, 14, 21, ACK, b"def"), &mut out);
        r.idle_flush(5, &mut out);
        assert!(collect(&out).bytes[0].is_empty());
        r.idle_flush(60_000_000_000, &mut out);
        let s = collect(&out);
        assert_eq!(s.bytes[0], b"def");
        assert_eq!(s.gaps.len(), 1);
    }

    use crate::test_rng::XorShift;

    /// Segments a known stream (sizes random, some overlapping re-segmentations), shuffles
    /// them locally, duplicates some: reassembly must give back the exact bytes.
    #[test]
    fn random_shuffle_duplicate_reassembles_exactly() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let len = 1 + rng.below(5000) as usize;
            let stream: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let isn = if round % 3 == 0 {
                u32::MAX - rng.below(3000) as u32
            } else {
                rng.next() as u32
            };
            let mut segs = Vec::new();
            let mut pos = 0usize;
            while pos < len {
                let n = (1 + rng.below(300) as usize).min(len - pos);
                segs.push((pos, n));
                // Sometimes a retransmission re-cut differently.
                if rng.below(5) == 0 {
                    let back = rng.below(pos as u64 + 1) as usize;
                    let n2 = (1 + rng.below(400) as usize).min(len - (pos - back));
                    segs.push((pos - back, n2));
                }
                pos += n;
            }
            // Local shuffle: swap within a window of 8.
            for i in 0..segs.len() {
                let j = (i + rng.below(8) as usize).min(segs.len() - 1);
                segs.swap(i, j);
            }
            let mut p = handshake(isn, 1);
            for (k, (off, n)) in segs.iter().enumerate() {
                let seq = isn.wrapping_add(1).wrapping_add(*off as u32);
                p.push(packet(
                    10 + k as u64,
                    true,
                    seq,
                    2,
                    ACK,
                    &stream[*off..off + n],
                ));
                if rng.below(4) == 0 {
                    p.push(packet(
                        10 + k as u64,
                        true,
                        seq,
                        2,
                        ACK,
                        &stream[*off..off + n],
                    ));
                }
            }
            let s = collect(&run(&p));
            assert!(s.gaps.is_empty(), "round {round}: {:?}", s.gaps);
            assert_eq!(s.bytes[0], stream, "round {round}");
        }
    }

    /// Drops some segments (and truncates others): every byte is either delivered with
    /// the right value at the right offset or covered by exactly one gap.
    #[test]
    fn random_drops_are_reported_exactly() {
        let mut rng = XorShift(0xfeed_f00d);
        for round in 0..200 {
            let len = 1 + rng.below(4000) as usize;
            let stream: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let isn = rng.next() as u32;
            let mut p = handshake(isn, 1);
            let mut pos = 0usize;
            let mut seen = vec![false; len];
            let mut k = 0u64;
            while pos < len {
                let n = (1 + rng.below(200) as usize).min(len - pos);
                let seq = isn.wrapping_add(1).wrapping_add(pos as u32);
                let roll = rng.below(10);
                if roll > 0 {
                    let mut pk = packet(10 + k, true, seq, 2, ACK, &stream[pos..pos + n]);
                    if roll == 1 {
                        let keep = rng.below(n as u64) as usize;
                        pk.payload.truncate(keep);
                    }
                    for s in &mut seen[pos..pos + pk.payload.len()] {
                        *s = true;
                    }
                    p.push(pk);
                }
                pos += n;
                k += 1;
            }
            // A closing segment so trailing drops show up as holes before it.
            let tail_seq = isn.wrapping_add(1).wrapping_add(len as u32);
            p.push(packet(10 + k, true, tail_seq, 2, ACK | FIN, b""));
            let ev = run(&p);
            let s = collect(&ev);
            let mut covered = vec![0u8; len];
            let mut data_at = 0usize;
            let mut gaps = s.gaps.clone();
            gaps.sort_by_key(|g| g.1);
            let mut gi = 0;
            let mut off = 0usize;
            let mut rebuilt = vec![None; len];
            while off < len {
                if gi < gaps.len() && gaps[gi].1 as usize == off {
                    for c in &mut covered[off..off + gaps[gi].2 as usize] {
                        *c += 1;
                    }
                    off += gaps[gi].2 as usize;
                    gi += 1;
                } else {
                    rebuilt[off] = s.bytes[0].get(data_at).copied();
                    covered[off] += 1;
                    data_at += 1;
                    off += 1;
                }
            }
            assert!(covered.iter().all(|&c| c == 1), "round {round}");
            for i in 0..len {
                if let Some(b) = rebuilt[i] {
                    assert!(seen[i], "round {round}: byte {i} invented");
                    assert_eq!(b, stream[i], "round {round}: byte {i}");
                } else {
                    assert!(!seen[i], "round {round}: captured byte {i} reported as gap");
                }
            }
            assert_eq!(data_at, s.bytes[0].len());
        }
    }

    /// Garbage segments must never panic, and events stay consistent.
    #[test]
    fn random_packets_no_panic() {
        let mut rng = XorShift(12345);
        let mut r = TcpReassembler::with_config(TcpReassemblerConfig {
            max_buffered_segments: 16,
            max_buffered_bytes: 4096,
            ..TcpReassemblerConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..20_000u64 {
            let n = rng.below(64) as usize;
            let payload: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let mut p = packet(
                i * rng.below(1_000_000),
                rng.below(2) == 0,
                (rng.next() as u32 % 512).wrapping_add(if rng.below(2) == 0 {
                    u32::MAX - 256
                } else {
                    0
                }),
                rng.next() as u32 % 1024,
                rng.next() as u8 & (SYN | ACK | FIN | RST | PSH),
                &payload,
            );
            if rng.below(8) == 0 {
                p.payload_len = rng.next() as u32;
            }
            if rng.below(4) == 0 {
                p.src.set_port(40000 + rng.below(3) as u16);
            }
            r.push(&p, &mut out);
            if i % 1000 == 0 {
                r.idle_flush(i * 1_000_000, &mut out);
            }
            out.clear();
        }
        r.finish(&mut out);
    }
}

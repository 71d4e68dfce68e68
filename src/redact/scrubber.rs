//! [`SecretScrubber`]: the event side of redaction. It follows the two byte streams of
//! each connection, holds a direction's events while the frame or message they carry is
//! incomplete (a secret may span several), patches the held bytes in place, and releases
//! every event in the order it came.
//!
//! It follows two kinds of connection with the same machinery: a TCP connection's
//! packets, placed in their direction's stream by sequence number, and a TLS
//! connection's plaintext chunks (taken in etcd's crypto/tls), placed by the offset they
//! carry. Either way what it scrubs is bytes of a direction at a stream offset.
//!
//! It does not use `decode::tcp::TcpReassembler`: that one copies bytes out, while this
//! one must edit the packets themselves and must not hold them long. A TCP direction is
//! followed only from its SYN. Its bytes are scrubbed in stream order, never guessed:
//!
//! - A segment past a hole (an earlier segment lost on the way, or overtaken) is held
//!   as it is, unscrubbed, until segments fill the hole: TC sees a segment before the
//!   receiver does, so a segment the receiver never got comes again, and a segment that
//!   overtook another is followed by it. Then the held bytes are scrubbed in stream
//!   order, and every event still goes out in the order it came.
//! - A hole that does not fill within the bounds on holding (bytes, capture time,
//!   events queued), or that was open when the recorder reported lost events, gives the
//!   direction up: its bytes may never be seen. So does a hole at the end of the capture.
//!   A client's direction given up takes the server's with it: which of the server's
//!   streams answer auth calls, with a token, only the client's requests say.
//! - Retransmitted bytes get the patches already made to them, in whole or in part; a
//!   retransmission reaching back past the patches kept goes out counted as unscrubbed.
//!   So do copies that come after the connection closed: what they need (where each
//!   direction's bytes were, and their recent patches) is kept a while after the close.
//!
//! Whatever goes out with bytes whose secrets were not decided (a direction given up
//! with events held, a stream that ends inside a frame) is counted as unscrubbed.
//!
//! A TLS connection has no SYN, and its chunks' offsets count from the first byte the
//! probes saw: it is followed only when the client's plaintext at offset 0 opens a
//! connection (the HTTP/2 client preface, or an HTTP/1 request line); otherwise it was
//! open before recording. Which end is the client comes from the endpoints, which the
//! first chunks may lack. Until both are known its chunks are held (within the usual
//! bounds; past them the connection is given up, counted). Plaintext is never sent
//! again, so a hole in it is bytes the probes lost: the direction is given up at once.

use std::collections::hash_map::{Entry, VacantEntry};
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use bytes::{Bytes, BytesMut};
use foldhash::{HashMap, HashMapExt};

use super::frames::{ConnectionScrubber, Patch, Unscrubbable};
use super::ScrubReport;
use crate::capture::{Event, Packet, TlsData, TlsScrubReport};
use crate::decode::http2::CLIENT_PREFACE;
use crate::decode::tcp::{ConnectionKey, FlowDirection};
use crate::decode::tls;

/// Bytes a direction may hold unreleased before it is given up (and a TLS connection
/// may hold before its start is known): from its first byte not final to the end of
/// the last byte held past a hole, and the bytes held past holes.
pub(super) const MAX_HELD_BYTES: u64 = 1 << 20;
/// Capture time an event may be held before its direction is given up: the recorder
/// must not sit on events (a block is flushed every second).
pub const MAX_HOLD_NS: u64 = 500_000_000;
/// Events waiting behind held events.
pub(super) const MAX_QUEUED_EVENTS: usize = 1 << 16;
/// Connections followed at once; more pass unscrubbed (counted).
const MAX_CONNECTIONS: usize = 1 << 14;
/// Patches kept per direction for retransmissions of bytes already released.
pub(super) const MAX_RECENT_PATCHES: usize = 64;
/// Connections silent this long (capture time) are forgotten.
const IDLE_NS: u64 = 600_000_000_000;
/// How long (capture time) a closed connection is kept for copies of its bytes that
/// still come (sent again, or held up on the way), and how many are kept.
const LINGER_NS: u64 = 10_000_000_000;
const MAX_LINGERING: usize = 1 << 12;
/// How often (in events of followed connections) idle connections are swept.
const SWEEP_EVERY: u64 = 4096;

/// Redacts passwords and tokens from the packets and TLS plaintext of etcd's client
/// connections.
#[derive(Debug)]
pub struct SecretScrubber {
    ports: Vec<u16>,
    connections: Connections,
    work: Work,
    /// Events of followed connections, for the sweep of idle ones.
    followed: u64,
    latest_ts: u64,
}

/// A connection followed: a TCP connection by its ends, a TLS connection by the process
/// and the number the recorder's programs gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKey {
    Tcp(ConnectionKey),
    Tls { pid: u32, conn_id: u64 },
}

/// The key's own fields only, without the variant: a TCP and a TLS key that hash alike
/// are still told apart by `Eq`, and a packet's lookup costs what it did before TLS.
impl Hash for StreamKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            StreamKey::Tcp(key) => key.hash(state),
            StreamKey::Tls { pid, conn_id } => {
                state.write_u64(*conn_id);
                state.write_u32(*pid);
            }
        }
    }
}

#[derive(Debug)]
struct Connections {
    map: HashMap<StreamKey, Connection>,
    generations: u64,
    /// TCP connections closed lately: what their bytes' copies need.
    lingering: HashMap<StreamKey, Lingering>,
    /// Their keys and generations, oldest first.
    lingering_order: VecDeque<(StreamKey, u64)>,
}

/// A closed connection's directions: where their bytes were, and their recent patches.
#[derive(Debug)]
struct Lingering {
    generation: u64,
    closed_ts: u64,
    dirs: [Direction; 2],
}

/// The connection of a packet or chunk.
enum Found<'c> {
    Followed(&'c mut Connection),
    Closed(&'c mut Lingering),
    /// Not followed (over the limit, counted): it passes as it is.
    Passed,
}

/// What scrubbing an event needs besides its connection: the queue of events, and what
/// to report.
#[derive(Debug)]
struct Work {
    queue: VecDeque<Queued>,
    /// Sequence number of `queue[0]`.
    queue_base: u64,
    report: ScrubReport,
    patches: Vec<Patch>,
}

#[derive(Debug)]
struct Queued {
    event: Event,
    hold: Option<Hold>,
}

/// Why a queued event waits.
#[derive(Debug, Clone, Copy)]
struct Hold {
    key: StreamKey,
    generation: u64,
    /// The direction whose bytes up to `end` are not final yet; `None`: a TLS chunk
    /// waiting until its connection's endpoints and start are known.
    dir: Option<FlowDirection>,
    end: u64,
    ts_ns: u64,
}

#[derive(Debug)]
struct Connection {
    generation: u64,
    last_ts: u64,
    http2: ConnectionScrubber,
    dirs: [Direction; 2],
    /// TLS: which way etcd's writes flow, once a chunk named the endpoints.
    etcd_writes: Option<FlowDirection>,
    /// TLS, while its directions are `Waiting`: the queue numbers of its chunks, and
    /// their bytes.
    waiting: Vec<u64>,
    waiting_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Scrubbing,
    /// Open before recording began: HPACK state and frame boundaries unknown.
    Midstream,
    NotHttp2,
    GivenUp,
    /// TLS: which end is the client, or whether the start was seen, is not known yet.
    Waiting,
}

#[derive(Debug)]
struct Direction {
    mode: Mode,
    /// TCP: the sequence number of stream offset 0, once the SYN was seen.
    seq_base: Option<u32>,
    /// The end of the bytes scrubbed, all of them in order.
    next_offset: u64,
    /// Bytes before this offset will not be patched any more.
    final_through: u64,
    /// Queued events with bytes not final, in queue order (those past a hole too).
    held: VecDeque<HeldEvent>,
    /// TCP: the events held with bytes past a hole, not scrubbed yet, by (start, queue
    /// number), with their ends.
    ahead: BTreeMap<(u64, u64), u64>,
    /// The bytes of `ahead`'s events, and the end of the last of them.
    ahead_bytes: u64,
    ahead_end: u64,
    recent: VecDeque<Patch>,
    /// Patches dropped from `recent` ended at or before this offset: bytes sent again
    /// from before it may miss one.
    forgotten_through: u64,
    fin: bool,
    /// TCP: the stream offset of the FIN, when the SYN was seen.
    fin_at: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct HeldEvent {
    queue_no: u64,
    start: u64,
    end: u64,
}

/// Bytes of one direction of a followed connection, at a stream offset: a packet's
/// payload or a TLS chunk's data, in the event queued as `queue_no`.
struct Piece<'b> {
    key: &'b StreamKey,
    dir: FlowDirection,
    start: u64,
    bytes: &'b mut Bytes,
    /// The event stands for more bytes than it holds.
    truncated: bool,
    ts_ns: u64,
    queue_no: u64,
}

impl Direction {
    fn new(mode: Mode) -> Direction {
        Direction {
            mode,
            seq_base: None,
            next_offset: 0,
            final_through: 0,
            held: VecDeque::new(),
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            ahead_end: 0,
            recent: VecDeque::new(),
            forgotten_through: 0,
            fin: false,
            fin_at: None,
        }
    }

    /// The stream offset of a segment's first byte (`None`: before the stream's start,
    /// or the start was not seen).
    fn offset_of(&self, seq: u32) -> Option<u64> {
        let next_seq = self.seq_base?.wrapping_add(self.next_offset as u32);
        let relative = i64::from(seq.wrapping_sub(next_seq) as i32);
        self.next_offset.checked_add_signed(relative)
    }

    /// Whether every byte before its FIN has come (or no longer matters).
    fn ended(&self) -> bool {
        self.fin
            && (self.mode != Mode::Scrubbing || self.fin_at.is_none_or(|at| self.next_offset >= at))
    }

    /// What copies of its bytes need once its connection closed.
    fn closed(self) -> Direction {
        Direction {
            seq_base: self.seq_base,
            next_offset: self.next_offset,
            recent: self.recent,
            forgotten_through: self.forgotten_through,
            ..Direction::new(self.mode)
        }
    }

    /// Whether it holds bytes past a hole.
    fn has_hole(&self) -> bool {
        self.mode == Mode::Scrubbing && !self.ahead.is_empty()
    }
}

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

/// Both directions, in `index` order.
const DIRECTIONS: [FlowDirection; 2] =
    [FlowDirection::ClientToServer, FlowDirection::ServerToClient];

/// Whether `port` is one of `ports`. Up to four lookups a packet: `contains` stays an
/// out-of-line call here (about 25 instructions a call, some 5% of a packet's
/// scrubbing), this loop over a few ports inlines.
#[inline]
#[allow(clippy::manual_contains)]
fn is_port(ports: &[u16], port: u16) -> bool {
    ports.iter().any(|&p| p == port)
}

/// The event queued as number `no`, while it is queued (`base` is `queue[0]`'s).
fn queued(queue: &VecDeque<Queued>, base: u64, no: u64) -> Option<&Queued> {
    queue.get(usize::try_from(no.checked_sub(base)?).ok()?)
}

fn queued_mut(queue: &mut VecDeque<Queued>, base: u64, no: u64) -> Option<&mut Queued> {
    queue.get_mut(usize::try_from(no.checked_sub(base)?).ok()?)
}

/// The bytes an event carries, for patching.
fn bytes_of(event: &mut Event) -> Option<&mut Bytes> {
    match event {
        Event::Packet(p) => Some(&mut p.payload),
        Event::Tls(t) => Some(&mut t.data),
        Event::Syscall(_) | Event::Loss(_) | Event::Process(_) | Event::Api(_) => None,
    }
}

/// The bytes an event carries, to read.
fn bytes_in(event: &Event) -> Option<&Bytes> {
    match event {
        Event::Packet(p) => Some(&p.payload),
        Event::Tls(t) => Some(&t.data),
        Event::Syscall(_) | Event::Loss(_) | Event::Process(_) | Event::Api(_) => None,
    }
}

/// Whether a client's first plaintext bytes open a connection: the HTTP/2 client
/// preface (as much of it as they hold), or an HTTP/1 request line (peer traffic).
fn opens_connection(data: &[u8]) -> bool {
    let n = data.len().min(CLIENT_PREFACE.len());
    (n > 0 && data[..n] == CLIENT_PREFACE[..n]) || crate::decode::http1::starts_request_line(data)
}

impl SecretScrubber {
    /// A scrubber for connections to the given server ports (where a SYN does not say).
    pub fn new(ports: Vec<u16>) -> SecretScrubber {
        SecretScrubber {
            ports,
            connections: Connections {
                map: HashMap::new(),
                generations: 0,
                lingering: HashMap::new(),
                lingering_order: VecDeque::new(),
            },
            work: Work {
                queue: VecDeque::new(),
                queue_base: 0,
                report: ScrubReport {
                    tls: Some(TlsScrubReport::default()),
                    ..ScrubReport::default()
                },
                patches: Vec::new(),
            },
            followed: 0,
            latest_ts: 0,
        }
    }

    /// What was redacted, and what could not be.
    pub fn report(&self) -> &ScrubReport {
        &self.work.report
    }

    /// Takes the next event of the capture and hands `ready` every event whose bytes
    /// are now final, in capture order (often just this one).
    pub fn push(&mut self, event: Event, mut ready: impl FnMut(Event)) {
        self.latest_ts = self.latest_ts.max(event.ts_ns());
        match event {
            Event::Packet(packet)
                if is_port(&self.ports, packet.src.port())
                    || is_port(&self.ports, packet.dst.port()) =>
            {
                self.push_packet(packet, &mut ready)
            }
            Event::Tls(chunk) => self.push_tls(chunk, &mut ready),
            Event::Loss(loss) => {
                self.give_up_holes();
                self.work.enqueue(Event::Loss(loss), None, &mut ready)
            }
            other => self.work.enqueue(other, None, &mut ready),
        }
        self.bound_holding();
        while let Some(front) = self.work.queue.front() {
            if front
                .hold
                .is_some_and(|hold| !self.connections.released(&hold))
            {
                break;
            }
            self.work.queue_base += 1;
            if let Some(q) = self.work.queue.pop_front() {
                ready(q.event);
            }
        }
    }

    /// Every event still queued, released as it is (the capture ends): those past a
    /// hole, or inside a frame or message that never ended, counted.
    pub fn finish(&mut self) -> impl Iterator<Item = Event> + '_ {
        for (key, conn) in &mut self.connections.map {
            if conn.dirs[0].mode == Mode::Waiting {
                self.work.give_up_start(conn, *key);
            }
            self.work.let_go(conn, key);
        }
        self.work.queue_base += self.work.queue.len() as u64;
        self.work.queue.drain(..).map(|q| q.event)
    }

    /// The recorder lost events: a hole open now may be one of them, and never fill.
    fn give_up_holes(&mut self) {
        for (key, conn) in &mut self.connections.map {
            for dir in DIRECTIONS {
                if conn.dirs[index(dir)].has_hole() {
                    self.work.give_up(conn, dir, key);
                }
            }
        }
    }

    fn count_followed(&mut self) {
        self.followed += 1;
        if self.followed.is_multiple_of(SWEEP_EVERY) {
            let now = self.latest_ts;
            self.connections
                .map
                .retain(|_, conn| now.saturating_sub(conn.last_ts) < IDLE_NS);
        }
    }

    fn push_packet(&mut self, mut packet: Packet, ready: &mut impl FnMut(Event)) {
        self.count_followed();
        let ports = &self.ports;
        let (tcp, dir) = ConnectionKey::of_segment(packet.src, packet.dst, |p| is_port(ports, p));
        let key = StreamKey::Tcp(tcp);
        let flags = packet.flags;
        let syn = flags.syn() && !flags.ack() && dir == FlowDirection::ClientToServer;
        if syn && (!self.connections.full() || self.connections.map.contains_key(&key)) {
            // A new connection, replacing one on the same 4-tuple (over the limit, the
            // lookup below counts it).
            let mut conn = self.connections.new_connection(Mode::Scrubbing);
            conn.dirs[0].seq_base = Some(packet.seq.wrapping_add(1));
            self.connections.map.insert(key, conn);
        }
        let has_payload = !packet.payload.is_empty();
        // One lookup per packet: everything below works on this entry.
        let found = self.connections.get_or_insert(
            key,
            Mode::Midstream,
            &mut self.work.report,
            has_payload,
        );
        let conn = match found {
            Found::Followed(conn) => conn,
            Found::Closed(closed) => {
                self.work.scrub_copy(closed, &key, dir, &mut packet);
                return self.work.enqueue(Event::Packet(packet), None, ready);
            }
            Found::Passed => return self.work.enqueue(Event::Packet(packet), None, ready),
        };
        conn.last_ts = packet.ts_ns;
        let d = &mut conn.dirs[index(dir)];
        if flags.syn() && flags.ack() && d.seq_base.is_none() && d.mode == Mode::Scrubbing {
            d.seq_base = Some(packet.seq.wrapping_add(1));
        }
        if flags.fin() {
            d.fin = true;
            d.fin_at = d
                .offset_of(packet.seq)
                .map(|at| at + u64::from(packet.payload_len));
        }
        let hold = if has_payload {
            self.work.scrub_packet(conn, key, dir, &mut packet)
        } else {
            None
        };
        // A FIN overtook bytes before it: the connection ends once they have come.
        let closed = flags.rst() || conn.dirs.iter().all(Direction::ended);
        if closed {
            self.work.let_go(conn, &key);
        }
        let ts_ns = packet.ts_ns;
        self.work.enqueue(Event::Packet(packet), hold, ready);
        if closed {
            // Nothing more to patch: release its packets, and keep only what copies of
            // its bytes need.
            if let Some(conn) = self.connections.map.remove(&key) {
                self.connections.linger(key, conn, ts_ns);
            }
        }
    }

    fn push_tls(&mut self, mut chunk: TlsData, ready: &mut impl FnMut(Event)) {
        self.count_followed();
        let key = StreamKey::Tls {
            pid: chunk.pid,
            conn_id: chunk.conn_id,
        };
        let has_data = !chunk.data.is_empty();
        let found =
            self.connections
                .get_or_insert(key, Mode::Waiting, &mut self.work.report, has_data);
        // TLS connections never close, so none lingers.
        let Found::Followed(conn) = found else {
            return self.work.enqueue(Event::Tls(chunk), None, ready);
        };
        conn.last_ts = chunk.ts_ns;
        if let (None, Some(ends)) = (conn.etcd_writes, &chunk.endpoints) {
            let ports = &self.ports;
            conn.etcd_writes = Some(tls::placement(ends, |p| is_port(ports, p)).1);
        }
        if conn.dirs[0].mode == Mode::Waiting {
            conn.waiting.push(self.work.next_queue_no());
            conn.waiting_bytes += chunk.data.len() as u64;
            let hold = Hold {
                key,
                generation: conn.generation,
                dir: None,
                end: 0,
                ts_ns: chunk.ts_ns,
            };
            self.work.enqueue(Event::Tls(chunk), Some(hold), ready);
            if conn.waiting_bytes > MAX_HELD_BYTES {
                self.work.give_up_start(conn, key);
            } else {
                self.work.start_tls(conn, key);
            }
            return;
        }
        let queue_no = self.work.next_queue_no();
        let hold = self.work.scrub_chunk(conn, key, &mut chunk, queue_no);
        self.work.enqueue(Event::Tls(chunk), hold, ready);
    }

    /// Gives up the direction (or the waiting TLS connection) holding the oldest event
    /// when holding lasts too long or queues too much.
    fn bound_holding(&mut self) {
        while let Some(hold) = self.work.queue.front().and_then(|q| q.hold) {
            let too_long = self.latest_ts.saturating_sub(hold.ts_ns) > MAX_HOLD_NS;
            let too_many = self.work.queue.len() > MAX_QUEUED_EVENTS;
            if self.connections.released(&hold) || !(too_long || too_many) {
                return;
            }
            if let Some(conn) = self.connections.map.get_mut(&hold.key) {
                match hold.dir {
                    Some(dir) => self.work.give_up(conn, dir, &hold.key),
                    None => self.work.give_up_start(conn, hold.key),
                }
            }
        }
    }
}

impl Connections {
    fn full(&self) -> bool {
        self.map.len() >= MAX_CONNECTIONS
    }

    fn new_connection(&mut self, mode: Mode) -> Connection {
        self.generations += 1;
        Connection::new(self.generations, mode)
    }

    /// The connection `key` names, a closed one if it closed lately, or a new one in
    /// `mode` (`Midstream` counted); `Passed` over the limit (counted, with the event
    /// when it carries bytes: it passes as it is).
    #[inline]
    fn get_or_insert(
        &mut self,
        key: StreamKey,
        mode: Mode,
        report: &mut ScrubReport,
        has_bytes: bool,
    ) -> Found<'_> {
        let full = self.full();
        match self.map.entry(key) {
            Entry::Occupied(o) => Found::Followed(o.into_mut()),
            Entry::Vacant(v) => {
                let (lingering, generations) = (&mut self.lingering, &mut self.generations);
                not_followed(v, lingering, generations, mode, report, has_bytes, full)
            }
        }
    }

    /// Keeps what copies of a closed connection's bytes need, for a while.
    fn linger(&mut self, key: StreamKey, conn: Connection, now: u64) {
        while let Some(&(old, generation)) = self.lingering_order.front() {
            // Not the same connection: the key closed again since.
            let same = self
                .lingering
                .get(&old)
                .filter(|l| l.generation == generation);
            let keep = same.is_some_and(|l| now.saturating_sub(l.closed_ts) < LINGER_NS);
            if keep && self.lingering_order.len() < MAX_LINGERING {
                break;
            }
            self.lingering_order.pop_front();
            if same.is_some() {
                self.lingering.remove(&old);
            }
        }
        let [client, server] = conn.dirs;
        let closed = Lingering {
            generation: conn.generation,
            closed_ts: now,
            dirs: [client.closed(), server.closed()],
        };
        self.lingering.insert(key, closed);
        self.lingering_order.push_back((key, conn.generation));
    }

    fn released(&self, hold: &Hold) -> bool {
        match self.map.get(&hold.key) {
            Some(conn) if conn.generation == hold.generation => match hold.dir {
                Some(dir) => {
                    let d = &conn.dirs[index(dir)];
                    d.mode != Mode::Scrubbing || d.final_through >= hold.end
                }
                None => conn.dirs[0].mode != Mode::Waiting,
            },
            _ => true,
        }
    }
}

/// [`Connections::get_or_insert`] of a key not followed (rare: out of line, the lookup of
/// every packet stays small).
#[cold]
#[inline(never)]
fn not_followed<'c>(
    vacant: VacantEntry<'c, StreamKey, Connection>,
    lingering: &'c mut HashMap<StreamKey, Lingering>,
    generations: &mut u64,
    mode: Mode,
    report: &mut ScrubReport,
    has_bytes: bool,
    full: bool,
) -> Found<'c> {
    let key = *vacant.key();
    if let Some(closed) = lingering.get_mut(&key) {
        return Found::Closed(closed);
    }
    if full {
        report.count(&key, Passed::OverLimit);
        if has_bytes {
            report.count(&key, Passed::Unscrubbed);
        }
        return Found::Passed;
    }
    if mode == Mode::Midstream {
        report.count(&key, Passed::Midstream);
    }
    *generations += 1;
    Found::Followed(vacant.insert(Connection::new(*generations, mode)))
}

impl Connection {
    fn new(generation: u64, mode: Mode) -> Connection {
        Connection {
            generation,
            last_ts: 0,
            http2: ConnectionScrubber::default(),
            dirs: [Direction::new(mode), Direction::new(mode)],
            etcd_writes: None,
            waiting: Vec::new(),
            waiting_bytes: 0,
        }
    }
}

/// What passed unscrubbed, counted apart for packets and for TLS plaintext.
#[derive(Debug, Clone, Copy)]
enum Passed {
    /// A connection open before recording began.
    Midstream,
    /// A direction given up.
    GivenUp,
    /// A connection beyond the number followed.
    OverLimit,
    /// An event whose bytes were not scrubbed.
    Unscrubbed,
}

impl ScrubReport {
    fn tls_mut(&mut self) -> &mut TlsScrubReport {
        self.tls.get_or_insert_with(TlsScrubReport::default)
    }

    fn count(&mut self, key: &StreamKey, what: Passed) {
        let counter = match key {
            StreamKey::Tcp(_) => match what {
                Passed::Midstream => &mut self.midstream_connections,
                Passed::GivenUp => &mut self.directions_given_up,
                Passed::OverLimit => &mut self.connections_over_limit,
                Passed::Unscrubbed => &mut self.unscrubbed_packets,
            },
            StreamKey::Tls { .. } => {
                let tls = self.tls_mut();
                match what {
                    Passed::Midstream => &mut tls.midstream_connections,
                    Passed::GivenUp => &mut tls.directions_given_up,
                    Passed::OverLimit => &mut tls.connections_over_limit,
                    Passed::Unscrubbed => &mut tls.unscrubbed_chunks,
                }
            }
        };
        *counter += 1;
    }
}

impl Work {
    /// The queue number the next queued event gets.
    fn next_queue_no(&self) -> u64 {
        self.queue_base + self.queue.len() as u64
    }

    /// Queues an event behind those waiting; one that need not wait, with nothing ahead
    /// of it, goes out at once (the usual case: this runs for every event recorded).
    fn enqueue(&mut self, event: Event, hold: Option<Hold>, ready: &mut impl FnMut(Event)) {
        if hold.is_none() && self.queue.is_empty() {
            ready(event);
        } else {
            self.queue.push_back(Queued { event, hold });
        }
    }

    /// Whether bytes of a direction in `mode` are scrubbed; counts those that pass
    /// unscrubbed where secrets may be.
    fn scrubbing(&mut self, mode: Mode, key: &StreamKey) -> bool {
        match mode {
            Mode::Scrubbing => true,
            Mode::NotHttp2 => false,
            Mode::Midstream | Mode::GivenUp | Mode::Waiting => {
                self.report.count(key, Passed::Unscrubbed);
                false
            }
        }
    }

    /// Scrubs a packet with payload, which is queued next.
    fn scrub_packet(
        &mut self,
        conn: &mut Connection,
        key: StreamKey,
        dir: FlowDirection,
        packet: &mut Packet,
    ) -> Option<Hold> {
        let d = &mut conn.dirs[index(dir)];
        if !self.scrubbing(d.mode, &key) {
            return None;
        }
        if d.seq_base.is_none() {
            // Data before the SYN-ACK was seen: the start is unknown.
            self.give_up(conn, dir, &key);
            self.report.count(&key, Passed::Unscrubbed);
            return None;
        }
        // Before the first byte: not data of this connection.
        let start = d.offset_of(packet.seq)?;
        let piece = Piece {
            key: &key,
            dir,
            start,
            truncated: packet.truncated(),
            ts_ns: packet.ts_ns,
            queue_no: self.next_queue_no(),
            bytes: &mut packet.payload,
        };
        self.scrub(conn, piece)
    }

    /// Scrubs a chunk of a TLS connection whose start is known, queued as `queue_no`.
    fn scrub_chunk(
        &mut self,
        conn: &mut Connection,
        key: StreamKey,
        chunk: &mut TlsData,
        queue_no: u64,
    ) -> Option<Hold> {
        // A connection given up before its endpoints were known has both directions
        // given up, so either says so.
        let dir = conn.etcd_writes.map_or(FlowDirection::ClientToServer, |w| {
            tls::flow(w, chunk.direction)
        });
        let mode = conn.dirs[index(dir)].mode;
        if chunk.len == 0 || (chunk.data.is_empty() && mode != Mode::Scrubbing) {
            return None;
        }
        if !self.scrubbing(mode, &key) {
            return None;
        }
        let piece = Piece {
            key: &key,
            dir,
            start: chunk.offset,
            truncated: chunk.truncated(),
            ts_ns: chunk.ts_ns,
            queue_no,
            bytes: &mut chunk.data,
        };
        self.scrub(conn, piece)
    }

    /// Decides, once its chunks say, whether a waiting TLS connection was seen from its
    /// start, and feeds its waiting chunks to the scrubber or lets them pass.
    fn start_tls(&mut self, conn: &mut Connection, key: StreamKey) {
        let Some(etcd_writes) = conn.etcd_writes else {
            return;
        };
        let first_from_client = conn.waiting.iter().find_map(|&no| {
            match &queued(&self.queue, self.queue_base, no)?.event {
                Event::Tls(t)
                    if tls::flow(etcd_writes, t.direction) == FlowDirection::ClientToServer =>
                {
                    Some(t)
                }
                _ => None,
            }
        });
        let Some(first) = first_from_client else {
            return; // the client's first bytes decide
        };
        let mode = if first.offset == 0 && opens_connection(&first.data) {
            self.report.tls_mut().connections += 1;
            Mode::Scrubbing
        } else {
            self.report.count(&key, Passed::Midstream);
            Mode::Midstream
        };
        conn.dirs = [Direction::new(mode), Direction::new(mode)];
        let waiting = std::mem::take(&mut conn.waiting);
        conn.waiting_bytes = 0;
        for no in waiting {
            let Some(Queued {
                event: Event::Tls(chunk),
                hold,
            }) = queued_mut(&mut self.queue, self.queue_base, no)
            else {
                continue;
            };
            *hold = None;
            // Out of the queue while it is scrubbed (the scrubber patches queued
            // events); without its data the rest of it is cheap to copy.
            let data = std::mem::take(&mut chunk.data);
            let mut taken = TlsData {
                data,
                ..chunk.clone()
            };
            let new_hold = self.scrub_chunk(conn, key, &mut taken, no);
            if let Some(Queued {
                event: Event::Tls(chunk),
                hold,
            }) = queued_mut(&mut self.queue, self.queue_base, no)
            {
                chunk.data = taken.data;
                *hold = new_hold;
            }
        }
    }

    /// A TLS connection whose endpoints or start stayed unknown too long: its chunks,
    /// and all that follow, pass unscrubbed.
    fn give_up_start(&mut self, conn: &mut Connection, key: StreamKey) {
        self.report.tls_mut().connections_given_up += 1;
        conn.dirs = [Direction::new(Mode::GivenUp), Direction::new(Mode::GivenUp)];
        for no in std::mem::take(&mut conn.waiting) {
            let carries_bytes = queued(&self.queue, self.queue_base, no)
                .is_some_and(|q| matches!(&q.event, Event::Tls(t) if !t.data.is_empty()));
            if carries_bytes {
                self.report.count(&key, Passed::Unscrubbed);
            }
        }
        conn.waiting_bytes = 0;
    }

    /// Bytes seen before (sent again), in whole or in part: the patches already made to
    /// them. Counted when they reach back past the patches kept.
    fn patch_again(&mut self, d: &Direction, key: &StreamKey, start: u64, bytes: &mut Bytes) {
        if start < d.forgotten_through {
            self.report.count(key, Passed::Unscrubbed);
        }
        for patch in &d.recent {
            apply(bytes, start, patch);
        }
    }

    /// A packet of a connection closed lately: a copy of bytes it carried gets their
    /// patches; bytes it never carried pass, counted.
    fn scrub_copy(
        &mut self,
        closed: &Lingering,
        key: &StreamKey,
        dir: FlowDirection,
        packet: &mut Packet,
    ) {
        let d = &closed.dirs[index(dir)];
        if packet.payload.is_empty() || !self.scrubbing(d.mode, key) {
            return;
        }
        // Before the first byte: not data of this connection.
        let Some(start) = d.offset_of(packet.seq) else {
            return;
        };
        if start + packet.payload.len() as u64 > d.next_offset {
            self.report.count(key, Passed::Unscrubbed);
        } else {
            self.patch_again(d, key, start, &mut packet.payload);
        }
    }

    /// Gives a direction up: the rest of it passes unscrubbed, and so do its events held
    /// now (counted). A client's takes its server's with it: which of the server's
    /// streams answer auth calls (with a token) is known from the client's requests only.
    fn give_up(&mut self, conn: &mut Connection, dir: FlowDirection, key: &StreamKey) {
        self.give_up_direction(&mut conn.dirs[index(dir)], key);
        let server = &mut conn.dirs[index(FlowDirection::ServerToClient)];
        if dir == FlowDirection::ClientToServer && server.mode == Mode::Scrubbing {
            self.give_up_direction(server, key);
        }
    }

    fn give_up_direction(&mut self, d: &mut Direction, key: &StreamKey) {
        d.mode = Mode::GivenUp;
        self.report.count(key, Passed::GivenUp);
        self.count_undecided(d, key);
    }

    /// Counts the direction's queued events whose bytes are not final, which go out as
    /// they are, and forgets them.
    fn count_undecided(&mut self, d: &mut Direction, key: &StreamKey) {
        for held in d.held.drain(..) {
            if held.queue_no >= self.queue_base && held.end > d.final_through {
                self.report.count(key, Passed::Unscrubbed);
            }
        }
        d.ahead.clear();
        (d.ahead_bytes, d.ahead_end) = (0, 0);
    }

    /// Nothing more will come on a connection (it closed, or the capture ends): a
    /// direction with a hole is given up, and the events of a frame or message that
    /// never ended go out counted.
    fn let_go(&mut self, conn: &mut Connection, key: &StreamKey) {
        for d in &mut conn.dirs {
            if d.has_hole() {
                self.give_up_direction(d, key);
            } else if d.mode == Mode::Scrubbing && d.final_through < d.next_offset {
                self.count_undecided(d, key);
                d.final_through = d.next_offset;
            }
        }
    }

    /// Holds a piece that starts past its direction's bytes until the hole fills; gives
    /// the direction up when it cannot (TLS plaintext, which never comes again; bytes
    /// not all captured; past the bounds).
    fn hold_ahead(&mut self, conn: &mut Connection, piece: Piece<'_>) -> Option<Hold> {
        let d = &mut conn.dirs[index(piece.dir)];
        let len = piece.bytes.len() as u64;
        let end = piece.start + len;
        let ahead_end = d.ahead_end.max(end);
        if matches!(piece.key, StreamKey::Tls { .. })
            || piece.truncated
            || ahead_end - d.final_through > MAX_HELD_BYTES
            || d.ahead_bytes + len > MAX_HELD_BYTES
        {
            self.give_up(conn, piece.dir, piece.key);
            self.report.count(piece.key, Passed::Unscrubbed);
            return None;
        }
        d.ahead.insert((piece.start, piece.queue_no), end);
        d.ahead_bytes += len;
        d.ahead_end = ahead_end;
        Some(self.hold(conn, &piece, end))
    }

    /// Notes that the piece's event waits for its bytes up to `end` to be final.
    fn hold(&mut self, conn: &mut Connection, piece: &Piece<'_>, end: u64) -> Hold {
        conn.dirs[index(piece.dir)].held.push_back(HeldEvent {
            queue_no: piece.queue_no,
            start: piece.start,
            end,
        });
        Hold {
            key: *piece.key,
            generation: conn.generation,
            dir: Some(piece.dir),
            end,
            ts_ns: piece.ts_ns,
        }
    }

    /// Feeds a piece's new bytes to its direction (and those held past the hole they
    /// fill), patches it and the direction's held events, and says whether its event
    /// must wait (its bytes are not final yet).
    fn scrub(&mut self, conn: &mut Connection, piece: Piece<'_>) -> Option<Hold> {
        let key = piece.key;
        let dir = piece.dir;
        let start = piece.start;
        let end = start + piece.bytes.len() as u64;
        // The client sent the HTTP/2 preface: a server direction that does not open
        // with SETTINGS began before the probes saw it (TLS only: their offsets count
        // from the first byte they saw).
        let client = &conn.dirs[0];
        let client_spoke_http2 = matches!(key, StreamKey::Tls { .. })
            && client.mode == Mode::Scrubbing
            && client.next_offset >= CLIENT_PREFACE.len() as u64;
        let d = &mut conn.dirs[index(dir)];
        while d.held.front().is_some_and(|h| h.queue_no < self.queue_base) {
            d.held.pop_front();
        }
        if start > d.next_offset {
            // Bytes missing in front of these.
            return self.hold_ahead(conn, piece);
        }
        self.patch_again(d, key, start, piece.bytes);
        let new_from = usize::try_from(d.next_offset - start).unwrap_or(usize::MAX);
        self.patches.clear();
        let report = &mut self.report;
        let mut outcome = Ok(());
        if let Some(new) = piece.bytes.get(new_from..).filter(|b| !b.is_empty()) {
            outcome = conn
                .http2
                .feed(dir, d.next_offset, new, &mut self.patches, report);
            d.next_offset = end;
            if outcome.is_ok() && !d.ahead.is_empty() {
                let queue = (&self.queue, self.queue_base);
                outcome = feed_ahead(&mut conn.http2, d, dir, queue, &mut self.patches, report);
            }
        }
        // Patch these bytes and every held event of the direction (retransmissions and
        // bytes past the hole too).
        for patch in self.patches.iter() {
            apply(piece.bytes, start, patch);
            for held in &d.held {
                let Some(slot) = queued_mut(&mut self.queue, self.queue_base, held.queue_no) else {
                    continue;
                };
                if let Some(held_bytes) = bytes_of(&mut slot.event) {
                    apply(held_bytes, held.start, patch);
                }
            }
            if d.recent.len() == MAX_RECENT_PATCHES {
                if let Some(old) = d.recent.pop_front() {
                    let old_end = old.offset + old.bytes.len() as u64;
                    d.forgotten_through = d.forgotten_through.max(old_end);
                }
            }
            d.recent.push_back(patch.clone());
        }
        let mut give_up = match outcome {
            Ok(()) => false,
            Err(Unscrubbable::NotHttp2)
                if !(client_spoke_http2 && dir == FlowDirection::ServerToClient) =>
            {
                d.mode = Mode::NotHttp2;
                report.not_http2_directions += 1;
                d.held.clear();
                d.ahead.clear();
                false
            }
            // Not HTTP/2 where the client spoke it, or HTTP/2 this scrubber cannot follow.
            Err(_) => true,
        };
        // Bytes past the snaplen (or unreadable plaintext) are unknown: frame sync is
        // lost.
        give_up |= d.mode == Mode::Scrubbing && piece.truncated;
        if d.mode == Mode::Scrubbing && !give_up {
            d.final_through = conn.http2.pinned_from(dir).unwrap_or(d.next_offset);
            give_up = d.next_offset - d.final_through > MAX_HELD_BYTES;
        }
        if give_up {
            self.give_up(conn, dir, key);
            self.report.count(key, Passed::Unscrubbed);
            return None;
        }
        // Bytes all final need no holding (the usual case: a complete frame or message).
        if d.mode != Mode::Scrubbing || end <= d.final_through {
            return None;
        }
        Some(self.hold(conn, &piece, end))
    }
}

/// Feeds the bytes of the events held past a hole that the direction's bytes now
/// reach, in stream order, as far as they go without a hole.
fn feed_ahead(
    http2: &mut ConnectionScrubber,
    d: &mut Direction,
    dir: FlowDirection,
    (queue, queue_base): (&VecDeque<Queued>, u64),
    patches: &mut Vec<Patch>,
    report: &mut ScrubReport,
) -> Result<(), Unscrubbable> {
    while let Some(entry) = d.ahead.first_entry() {
        let (start, queue_no) = *entry.key();
        if start > d.next_offset {
            break;
        }
        let end = entry.remove();
        d.ahead_bytes -= end - start;
        let new_from = usize::try_from(d.next_offset - start).unwrap_or(usize::MAX);
        let new = queued(queue, queue_base, queue_no)
            .and_then(|q| bytes_in(&q.event))
            .and_then(|bytes| bytes.get(new_from..))
            .filter(|new| !new.is_empty());
        if let Some(new) = new {
            http2.feed(dir, d.next_offset, new, patches, report)?;
            d.next_offset = end;
        }
    }
    if d.ahead.is_empty() {
        d.ahead_end = 0;
    }
    Ok(())
}

/// Writes the part of `patch` that falls in bytes starting at stream offset `start`.
/// The bytes are shared with the batch they were read in, so the first patch gives them
/// their own copy (patches are rare: secrets only); later ones write into that copy.
fn apply(payload: &mut Bytes, start: u64, patch: &Patch) {
    let end = start + payload.len() as u64;
    let patch_end = patch.offset + patch.bytes.len() as u64;
    let (lo, hi) = (patch.offset.max(start), patch_end.min(end));
    if lo >= hi {
        return;
    }
    let dst = (lo - start) as usize..(hi - start) as usize;
    let src = (lo - patch.offset) as usize..(hi - patch.offset) as usize;
    let mut own = std::mem::take(payload)
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    if let (Some(dst), Some(src)) = (own.get_mut(dst), patch.bytes.get(src)) {
        dst.copy_from_slice(src);
    }
    *payload = own.freeze();
}

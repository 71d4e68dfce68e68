//! [`SecretScrubber`]: the packet side of redaction. It follows each connection's two TCP
//! byte streams by sequence number, holds a direction's packets while the frame or
//! message they carry is incomplete (a secret may span segments), patches the held
//! payloads in place, and releases every event in the order it came.
//!
//! It does not use `decode::tcp::TcpReassembler`: that one copies bytes out and waits
//! for out-of-order segments, while this one must edit the packets themselves and must
//! not hold them long. So its policy is strict: a direction is followed only from its
//! SYN and only while its bytes come in order. Any gap or reordering gives the direction
//! up (counted); retransmitted bytes get the patches already made to those bytes.

use std::collections::VecDeque;

use std::collections::hash_map::Entry;

use bytes::{Bytes, BytesMut};
use foldhash::{HashMap, HashMapExt};

use super::frames::{ConnectionScrubber, Patch, Unscrubbable};
use super::ScrubReport;
use crate::capture::{Event, Packet};
use crate::decode::tcp::{ConnectionKey, FlowDirection};

/// Bytes a direction may hold unreleased before it is given up.
const MAX_HELD_BYTES: u64 = 1 << 20;
/// Capture time a packet may be held before its direction is given up: the recorder
/// must not sit on events (a block is flushed every second).
const MAX_HOLD_NS: u64 = 500_000_000;
/// Events waiting behind held packets.
const MAX_QUEUED_EVENTS: usize = 1 << 16;
/// Connections followed at once; more pass unscrubbed (counted).
const MAX_CONNECTIONS: usize = 1 << 14;
/// Patches kept per direction for retransmissions of bytes already released.
const MAX_RECENT_PATCHES: usize = 64;
/// Connections silent this long (capture time) are forgotten.
const IDLE_NS: u64 = 600_000_000_000;
/// How often (in packets) idle connections are swept.
const SWEEP_EVERY: u64 = 4096;

/// Redacts passwords and tokens from the packets of etcd's client connections.
#[derive(Debug)]
pub struct SecretScrubber {
    ports: Vec<u16>,
    connections: HashMap<ConnectionKey, Connection>,
    queue: VecDeque<Queued>,
    /// Sequence number of `queue[0]`.
    queue_base: u64,
    generations: u64,
    packets: u64,
    latest_ts: u64,
    report: ScrubReport,
    patches: Vec<Patch>,
}

#[derive(Debug)]
struct Queued {
    event: Event,
    hold: Option<Hold>,
}

/// Why a queued packet waits: its direction's bytes up to `end` are not final yet.
#[derive(Debug, Clone, Copy)]
struct Hold {
    key: ConnectionKey,
    generation: u64,
    dir: FlowDirection,
    end: u64,
    ts_ns: u64,
}

#[derive(Debug)]
struct Connection {
    generation: u64,
    last_ts: u64,
    http2: ConnectionScrubber,
    dirs: [Direction; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Scrubbing,
    /// Open before recording began: HPACK state and frame boundaries unknown.
    Midstream,
    NotHttp2,
    GivenUp,
}

#[derive(Debug)]
struct Direction {
    mode: Mode,
    /// Sequence number of the byte at `next_offset`, once the SYN was seen.
    next_seq: Option<u32>,
    next_offset: u64,
    /// Bytes before this offset will not be patched any more.
    final_through: u64,
    held: VecDeque<HeldPacket>,
    recent: VecDeque<Patch>,
    fin: bool,
}

#[derive(Debug, Clone, Copy)]
struct HeldPacket {
    queue_no: u64,
    start: u64,
}

impl Direction {
    fn new(mode: Mode) -> Direction {
        Direction {
            mode,
            next_seq: None,
            next_offset: 0,
            final_through: 0,
            held: VecDeque::new(),
            recent: VecDeque::new(),
            fin: false,
        }
    }
}

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

impl SecretScrubber {
    /// A scrubber for connections to the given server ports (where a SYN does not say).
    pub fn new(ports: Vec<u16>) -> SecretScrubber {
        SecretScrubber {
            ports,
            connections: HashMap::new(),
            queue: VecDeque::new(),
            queue_base: 0,
            generations: 0,
            packets: 0,
            latest_ts: 0,
            report: ScrubReport::default(),
            patches: Vec::new(),
        }
    }

    /// What was redacted, and what could not be.
    pub fn report(&self) -> &ScrubReport {
        &self.report
    }

    /// Takes the next event of the capture and hands `ready` every event whose bytes
    /// are now final, in capture order (often just this one).
    pub fn push(&mut self, event: Event, mut ready: impl FnMut(Event)) {
        self.latest_ts = self.latest_ts.max(event.ts_ns());
        match event {
            Event::Packet(packet)
                if self.ports.contains(&packet.src.port())
                    || self.ports.contains(&packet.dst.port()) =>
            {
                self.push_packet(packet, &mut ready)
            }
            other => self.enqueue(other, None, &mut ready),
        }
        self.bound_holding();
        while let Some(front) = self.queue.front() {
            if front.hold.is_some_and(|hold| !self.released(&hold)) {
                break;
            }
            self.queue_base += 1;
            if let Some(q) = self.queue.pop_front() {
                ready(q.event);
            }
        }
    }

    /// Every event still queued, released as it is (the capture ends).
    pub fn finish(&mut self) -> impl Iterator<Item = Event> + '_ {
        for conn in self.connections.values_mut() {
            for d in &mut conn.dirs {
                if d.mode == Mode::Scrubbing && d.final_through < d.next_offset {
                    // Data ended inside a frame or message: nothing more will come.
                    d.final_through = d.next_offset;
                }
            }
        }
        self.queue_base += self.queue.len() as u64;
        self.queue.drain(..).map(|q| q.event)
    }

    fn released(&self, hold: &Hold) -> bool {
        match self.connections.get(&hold.key) {
            Some(conn) if conn.generation == hold.generation => {
                let d = &conn.dirs[index(hold.dir)];
                d.mode != Mode::Scrubbing || d.final_through >= hold.end
            }
            _ => true,
        }
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

    fn push_packet(&mut self, mut packet: Packet, ready: &mut impl FnMut(Event)) {
        self.packets += 1;
        if self.packets % SWEEP_EVERY == 0 {
            self.sweep_idle();
        }
        let ports = &self.ports;
        let (key, dir) = ConnectionKey::of_segment(packet.src, packet.dst, |p| ports.contains(&p));
        let flags = packet.flags;
        let full = self.connections.len() >= MAX_CONNECTIONS;
        let syn = flags.syn() && !flags.ack() && dir == FlowDirection::ClientToServer;
        if syn && (!full || self.connections.contains_key(&key)) {
            // A new connection, replacing one on the same 4-tuple (over the limit, the
            // lookup below counts it).
            self.generations += 1;
            let mut conn = Connection::new(self.generations, Mode::Scrubbing);
            conn.dirs[0].next_seq = Some(packet.seq.wrapping_add(1));
            self.connections.insert(key, conn);
        }
        // One lookup per packet: everything below works on this entry.
        let conn = match self.connections.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(_) if full => {
                self.report.connections_over_limit += 1;
                self.report.unscrubbed_packets += u64::from(!packet.payload.is_empty());
                return self.enqueue(Event::Packet(packet), None, ready);
            }
            Entry::Vacant(v) => {
                // Open before recording began: HPACK state and frame boundaries unknown.
                self.report.midstream_connections += 1;
                self.generations += 1;
                v.insert(Connection::new(self.generations, Mode::Midstream))
            }
        };
        conn.last_ts = packet.ts_ns;
        let d = &mut conn.dirs[index(dir)];
        if flags.syn() && flags.ack() && d.next_seq.is_none() && d.mode == Mode::Scrubbing {
            d.next_seq = Some(packet.seq.wrapping_add(1));
        }
        d.fin |= flags.fin();
        let closed = flags.rst() || conn.dirs.iter().all(|d| d.fin);
        let hold = if packet.payload.is_empty() {
            None
        } else {
            let mut work = PacketWork {
                queue: &mut self.queue,
                queue_base: self.queue_base,
                patches: &mut self.patches,
                report: &mut self.report,
            };
            work.scrub(conn, key, dir, &mut packet)
        };
        self.enqueue(Event::Packet(packet), hold, ready);
        if closed {
            // Nothing more to patch: release its packets and forget it.
            self.connections.remove(&key);
        }
    }

    /// Gives up the direction holding the oldest event when holding lasts too long or
    /// queues too much.
    fn bound_holding(&mut self) {
        while let Some(hold) = self.queue.front().and_then(|q| q.hold) {
            let too_long = self.latest_ts.saturating_sub(hold.ts_ns) > MAX_HOLD_NS;
            if self.released(&hold) || !(too_long || self.queue.len() > MAX_QUEUED_EVENTS) {
                return;
            }
            if let Some(conn) = self.connections.get_mut(&hold.key) {
                conn.dirs[index(hold.dir)].mode = Mode::GivenUp;
                self.report.directions_given_up += 1;
            }
        }
    }

    fn sweep_idle(&mut self) {
        let now = self.latest_ts;
        self.connections
            .retain(|_, conn| now.saturating_sub(conn.last_ts) < IDLE_NS);
    }
}

impl Connection {
    fn new(generation: u64, mode: Mode) -> Connection {
        Connection {
            generation,
            last_ts: 0,
            http2: ConnectionScrubber::default(),
            dirs: [Direction::new(mode), Direction::new(mode)],
        }
    }
}

/// What scrubbing one packet needs of the scrubber besides the packet's connection.
struct PacketWork<'a> {
    queue: &'a mut VecDeque<Queued>,
    queue_base: u64,
    patches: &'a mut Vec<Patch>,
    report: &'a mut ScrubReport,
}

impl PacketWork<'_> {
    /// Feeds a packet's new bytes to its direction, patches it and the direction's held
    /// packets, and says whether it must wait (its bytes are not final yet). The caller
    /// queues it next, so it gets queue number `queue_base + queue.len()`.
    fn scrub(
        &mut self,
        conn: &mut Connection,
        key: ConnectionKey,
        dir: FlowDirection,
        packet: &mut Packet,
    ) -> Option<Hold> {
        let report = &mut *self.report;
        let d = &mut conn.dirs[index(dir)];
        let next_seq = match (d.mode, d.next_seq) {
            (Mode::Scrubbing, Some(seq)) => seq,
            (Mode::Scrubbing, None) => {
                // Data before the SYN-ACK was seen: the start is unknown.
                d.mode = Mode::GivenUp;
                report.directions_given_up += 1;
                report.unscrubbed_packets += 1;
                return None;
            }
            (Mode::NotHttp2, _) => return None,
            (Mode::Midstream | Mode::GivenUp, _) => {
                report.unscrubbed_packets += 1;
                return None;
            }
        };
        let relative = i64::from(packet.seq.wrapping_sub(next_seq) as i32);
        // Before the first byte: not data of this connection.
        let start = d.next_offset.checked_add_signed(relative)?;
        if start > d.next_offset {
            d.mode = Mode::GivenUp;
            report.directions_given_up += 1;
            report.unscrubbed_packets += 1;
            return None;
        }
        let end = start + packet.payload.len() as u64;
        // Retransmitted bytes: the patches already made to them.
        for patch in &d.recent {
            apply(&mut packet.payload, start, patch);
        }
        let new_from = usize::try_from(d.next_offset - start).unwrap_or(usize::MAX);
        self.patches.clear();
        let mut outcome = Ok(());
        if let Some(new) = packet.payload.get(new_from..).filter(|b| !b.is_empty()) {
            outcome = conn
                .http2
                .feed(dir, d.next_offset, new, self.patches, report);
            d.next_seq = Some(next_seq.wrapping_add(new.len() as u32));
            d.next_offset = end;
        }
        // Patch this packet and every held one of the direction (retransmissions too).
        while d.held.front().is_some_and(|h| h.queue_no < self.queue_base) {
            d.held.pop_front();
        }
        for patch in self.patches.iter() {
            apply(&mut packet.payload, start, patch);
            for held in &d.held {
                let Some(slot) = usize::try_from(held.queue_no - self.queue_base)
                    .ok()
                    .and_then(|i| self.queue.get_mut(i))
                else {
                    continue;
                };
                if let Event::Packet(p) = &mut slot.event {
                    apply(&mut p.payload, held.start, patch);
                }
            }
            if d.recent.len() == MAX_RECENT_PATCHES {
                d.recent.pop_front();
            }
            d.recent.push_back(patch.clone());
        }
        match outcome {
            Ok(()) => {}
            Err(Unscrubbable::NotHttp2) => {
                d.mode = Mode::NotHttp2;
                report.not_http2_directions += 1;
            }
            Err(Unscrubbable::Broken) => {
                d.mode = Mode::GivenUp;
                report.directions_given_up += 1;
            }
        }
        if d.mode == Mode::Scrubbing && packet.truncated() {
            // Bytes past the snaplen are unknown: frame sync is lost.
            d.mode = Mode::GivenUp;
            report.directions_given_up += 1;
        }
        d.final_through = conn.http2.pinned_from(dir).unwrap_or(d.next_offset);
        if d.mode == Mode::Scrubbing && d.next_offset - d.final_through > MAX_HELD_BYTES {
            d.mode = Mode::GivenUp;
            report.directions_given_up += 1;
        }
        // A packet whose bytes are all final needs no holding (the usual case: a
        // complete frame or message).
        if d.mode != Mode::Scrubbing || end <= d.final_through {
            return None;
        }
        let queue_no = self.queue_base + self.queue.len() as u64;
        d.held.push_back(HeldPacket { queue_no, start });
        Some(Hold {
            key,
            generation: conn.generation,
            dir,
            end,
            ts_ns: packet.ts_ns,
        })
    }
}

/// Writes the part of `patch` that falls in a payload starting at stream offset `start`.
/// The payload shares its bytes with the batch it was read in, so the first patch gives
/// it its own copy (patches are rare: secrets only); later ones write into that copy.
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

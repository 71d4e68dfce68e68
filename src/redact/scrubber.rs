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

    /// Takes the next event of the capture. Take released events with
    /// [`SecretScrubber::pop_ready`] after each push.
    pub fn push(&mut self, event: Event) {
        self.latest_ts = self.latest_ts.max(event.ts_ns());
        match event {
            Event::Packet(packet)
                if self.ports.contains(&packet.src.port())
                    || self.ports.contains(&packet.dst.port()) =>
            {
                self.push_packet(packet)
            }
            other => self.enqueue(other, None),
        }
        self.bound_holding();
    }

    /// The next event whose bytes are final, in capture order.
    pub fn pop_ready(&mut self) -> Option<Event> {
        let front = self.queue.front()?;
        if let Some(hold) = front.hold {
            if !self.released(&hold) {
                return None;
            }
        }
        self.queue_base += 1;
        self.queue.pop_front().map(|q| q.event)
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

    fn enqueue(&mut self, event: Event, hold: Option<Hold>) {
        self.queue.push_back(Queued { event, hold });
    }

    fn push_packet(&mut self, packet: Packet) {
        self.packets += 1;
        if self.packets % SWEEP_EVERY == 0 {
            self.sweep_idle();
        }
        let ports = &self.ports;
        let (key, dir) = ConnectionKey::of_segment(packet.src, packet.dst, |p| ports.contains(&p));
        let flags = packet.flags;
        if flags.syn() && !flags.ack() && dir == FlowDirection::ClientToServer {
            self.open(key, Mode::Scrubbing);
            if let Some(conn) = self.connections.get_mut(&key) {
                conn.dirs[0].next_seq = Some(packet.seq.wrapping_add(1));
            }
        }
        if !self.connections.contains_key(&key) {
            self.report.midstream_connections += 1;
            self.open(key, Mode::Midstream);
        }
        let Some(conn) = self.connections.get_mut(&key) else {
            self.report.unscrubbed_packets += u64::from(!packet.payload.is_empty());
            return self.enqueue(Event::Packet(packet), None);
        };
        conn.last_ts = packet.ts_ns;
        let d = &mut conn.dirs[index(dir)];
        if flags.syn() && flags.ack() && d.next_seq.is_none() && d.mode == Mode::Scrubbing {
            d.next_seq = Some(packet.seq.wrapping_add(1));
        }
        d.fin |= flags.fin();
        let closed = flags.rst() || conn.dirs.iter().all(|d| d.fin);
        if packet.payload.is_empty() {
            self.enqueue(Event::Packet(packet), None);
        } else {
            self.scrub_packet(key, dir, packet);
        }
        if closed {
            // Nothing more to patch: release its packets and forget it.
            self.connections.remove(&key);
        }
    }

    /// Starts following `key` (replacing a previous connection on the same 4-tuple).
    fn open(&mut self, key: ConnectionKey, mode: Mode) {
        if self.connections.len() >= MAX_CONNECTIONS && !self.connections.contains_key(&key) {
            self.report.connections_over_limit += 1;
            return;
        }
        self.generations += 1;
        self.connections.insert(
            key,
            Connection {
                generation: self.generations,
                last_ts: 0,
                http2: ConnectionScrubber::default(),
                dirs: [Direction::new(mode), Direction::new(mode)],
            },
        );
    }

    fn scrub_packet(&mut self, key: ConnectionKey, dir: FlowDirection, mut packet: Packet) {
        let Some(conn) = self.connections.get_mut(&key) else {
            return self.enqueue(Event::Packet(packet), None);
        };
        let d = &mut conn.dirs[index(dir)];
        let next_seq = match (d.mode, d.next_seq) {
            (Mode::Scrubbing, Some(seq)) => seq,
            (Mode::Scrubbing, None) => {
                // Data before the SYN-ACK was seen: the start is unknown.
                d.mode = Mode::GivenUp;
                self.report.directions_given_up += 1;
                self.report.unscrubbed_packets += 1;
                return self.enqueue(Event::Packet(packet), None);
            }
            (Mode::NotHttp2, _) => return self.enqueue(Event::Packet(packet), None),
            (Mode::Midstream | Mode::GivenUp, _) => {
                self.report.unscrubbed_packets += 1;
                return self.enqueue(Event::Packet(packet), None);
            }
        };
        let relative = i64::from(packet.seq.wrapping_sub(next_seq) as i32);
        let Some(start) = d.next_offset.checked_add_signed(relative) else {
            // Before the first byte: not data of this connection.
            return self.enqueue(Event::Packet(packet), None);
        };
        if start > d.next_offset {
            d.mode = Mode::GivenUp;
            self.report.directions_given_up += 1;
            self.report.unscrubbed_packets += 1;
            return self.enqueue(Event::Packet(packet), None);
        }
        let end = start + packet.payload.len() as u64;
        // Retransmitted bytes: the patches already made to them.
        for patch in &d.recent {
            apply(&mut packet.payload, start, patch);
        }
        let truncated = packet.truncated();
        let queue_no = self.queue_base + self.queue.len() as u64;
        let new_from = usize::try_from(d.next_offset - start).unwrap_or(usize::MAX);
        self.patches.clear();
        let mut outcome = Ok(());
        if let Some(new) = packet.payload.get(new_from..).filter(|b| !b.is_empty()) {
            outcome = conn
                .http2
                .feed(dir, d.next_offset, new, &mut self.patches, &mut self.report);
            d.next_seq = Some(next_seq.wrapping_add(new.len() as u32));
            d.next_offset = end;
        }
        let hold = (end > d.final_through).then_some(Hold {
            key,
            generation: conn.generation,
            dir,
            end,
            ts_ns: packet.ts_ns,
        });
        if hold.is_some() {
            d.held.push_back(HeldPacket { queue_no, start });
        }
        self.queue.push_back(Queued {
            event: Event::Packet(packet),
            hold,
        });
        // Patch every held packet of the direction (retransmissions included).
        while d.held.front().is_some_and(|h| h.queue_no < self.queue_base) {
            d.held.pop_front();
        }
        for patch in &self.patches {
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
                self.report.not_http2_directions += 1;
            }
            Err(Unscrubbable::Broken) => {
                d.mode = Mode::GivenUp;
                self.report.directions_given_up += 1;
            }
        }
        if d.mode == Mode::Scrubbing && truncated {
            // Bytes past the snaplen are unknown: frame sync is lost.
            d.mode = Mode::GivenUp;
            self.report.directions_given_up += 1;
        }
        d.final_through = conn.http2.pinned_from(dir).unwrap_or(d.next_offset);
        if d.mode == Mode::Scrubbing && d.next_offset - d.final_through > MAX_HELD_BYTES {
            d.mode = Mode::GivenUp;
            self.report.directions_given_up += 1;
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

/// Writes the part of `patch` that falls in a payload starting at stream offset `start`.
fn apply(payload: &mut [u8], start: u64, patch: &Patch) {
    let end = start + payload.len() as u64;
    let patch_end = patch.offset + patch.bytes.len() as u64;
    let (lo, hi) = (patch.offset.max(start), patch_end.min(end));
    if lo >= hi {
        return;
    }
    let dst = (lo - start) as usize..(hi - start) as usize;
    let src = (lo - patch.offset) as usize..(hi - patch.offset) as usize;
    if let (Some(dst), Some(src)) = (payload.get_mut(dst), patch.bytes.get(src)) {
        dst.copy_from_slice(src);
    }
}

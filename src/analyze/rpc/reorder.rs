//! Packets come out of a capture only roughly in time order (each CPU's are in order,
//! the CPUs' streams interleave late). TCP reassembly copes with disorder, but a request
//! and its response on different CPUs are easier to pair in time order, so packets are
//! held for a short window and released sorted by timestamp. Memory is bounded by the
//! window and a packet count.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::capture::Packet;

/// Packets held at most, whatever their timestamps.
const MAX_HELD: usize = 65_536;

#[derive(Debug)]
struct Held {
    ts_ns: u64,
    seq: u64,
    packet: Packet,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ns, self.seq) == (other.ts_ns, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts_ns, self.seq).cmp(&(other.ts_ns, other.seq))
    }
}

/// A bounded time-window sorter.
#[derive(Debug)]
pub(super) struct PacketReorder {
    window_ns: u64,
    heap: BinaryHeap<Reverse<Held>>,
    newest_ns: u64,
    seq: u64,
}

impl PacketReorder {
    pub(super) fn new(window_ns: u64) -> PacketReorder {
        PacketReorder {
            window_ns,
            heap: BinaryHeap::new(),
            newest_ns: 0,
            seq: 0,
        }
    }

    /// Holds `packet`; packets older than the window behind the newest are released to
    /// `out` in time order (equal times in arrival order).
    pub(super) fn push(&mut self, packet: Packet, out: &mut Vec<Packet>) {
        self.newest_ns = self.newest_ns.max(packet.ts_ns);
        self.seq += 1;
        self.heap.push(Reverse(Held {
            ts_ns: packet.ts_ns,
            seq: self.seq,
            packet,
        }));
        let horizon = self.newest_ns.saturating_sub(self.window_ns);
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.ts_ns >= horizon && self.heap.len() <= MAX_HELD {
                break;
            }
            if let Some(Reverse(held)) = self.heap.pop() {
                out.push(held.packet);
            }
        }
    }

    /// Releases every held packet in time order.
    pub(super) fn drain(&mut self, out: &mut Vec<Packet>) {
        while let Some(Reverse(held)) = self.heap.pop() {
            out.push(held.packet);
        }
    }
}

//! Events come out of a capture only roughly in time order (each CPU's are in order,
//! the CPUs' streams interleave late, and syscalls are handed over at their exit), and
//! analyses emit records when they end rather than when they start. `TimeOrder` holds
//! items for a window of capture time and releases them sorted by timestamp (equal
//! times in arrival order). Memory is bounded by the window and an item count.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

#[derive(Debug)]
struct Held<T> {
    ts_ns: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ns, self.seq) == (other.ts_ns, other.seq)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Held<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts_ns, self.seq).cmp(&(other.ts_ns, other.seq))
    }
}

/// A bounded time-window sorter.
#[derive(Debug)]
pub struct TimeOrder<T> {
    window_ns: u64,
    max_held: usize,
    heap: BinaryHeap<Reverse<Held<T>>>,
    newest_ns: u64,
    seq: u64,
}

impl<T> TimeOrder<T> {
    /// Items wait until the capture is `window_ns` past them, or until more than
    /// `max_held` wait.
    pub fn new(window_ns: u64, max_held: usize) -> TimeOrder<T> {
        TimeOrder {
            window_ns,
            max_held,
            heap: BinaryHeap::new(),
            newest_ns: 0,
            seq: 0,
        }
    }

    /// Hold `item`, stamped `ts_ns`.
    pub fn push(&mut self, ts_ns: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Held {
            ts_ns,
            seq: self.seq,
            item,
        }));
    }

    /// The capture has reached `now_ns`: release to `out`, in time order, what is older
    /// than the window behind it (and the oldest beyond `max_held`).
    pub fn release(&mut self, now_ns: u64, out: &mut Vec<T>) {
        self.newest_ns = self.newest_ns.max(now_ns);
        let horizon = self.newest_ns.saturating_sub(self.window_ns);
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.ts_ns >= horizon && self.heap.len() <= self.max_held {
                break;
            }
            if let Some(Reverse(held)) = self.heap.pop() {
                out.push(held.item);
            }
        }
    }

    /// Release everything held, in time order.
    pub fn drain(&mut self, out: &mut Vec<T>) {
        while let Some(Reverse(held)) = self.heap.pop() {
            out.push(held.item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_time_order_after_the_window() {
        let mut o = TimeOrder::new(10, 100);
        let mut out = Vec::new();
        for (ts, v) in [(5, 'b'), (3, 'a'), (5, 'c'), (20, 'd')] {
            o.push(ts, v);
            o.release(ts, &mut out);
        }
        assert_eq!(out, vec!['a', 'b', 'c']);
        o.drain(&mut out);
        assert_eq!(out, vec!['a', 'b', 'c', 'd']);
    }

    #[test]
    fn holds_at_most_max_items() {
        let mut o = TimeOrder::new(u64::MAX, 2);
        let mut out = Vec::new();
        for ts in [3, 1, 2, 0] {
            o.push(ts, ts);
            o.release(ts, &mut out);
        }
        assert_eq!(out, vec![1, 0]);
    }
}

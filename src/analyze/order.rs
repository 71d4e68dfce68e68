//! Events come out of a capture only roughly in time order (each CPU's are in order,
//! the CPUs' streams interleave late, and syscalls are handed over at their exit), and
//! analyses emit records when they end rather than when they start. `TimeOrder` holds
//! items for a window of capture time and releases them sorted by timestamp (equal
//! times in arrival order). Memory is bounded by the window and an item count.

use std::collections::VecDeque;

/// A bounded time-window sorter. Input is nearly sorted, so items are kept in a deque in
/// time order and a new one is placed by looking back from the newest: O(1) for items
/// in order, and no per-item moves through a heap.
#[derive(Debug)]
pub struct TimeOrder<T> {
    window_ns: u64,
    max_held: usize,
    held: VecDeque<(u64, T)>,
    newest_ns: u64,
}

impl<T> TimeOrder<T> {
    /// Items wait until the capture is `window_ns` past them, or until more than
    /// `max_held` wait.
    pub fn new(window_ns: u64, max_held: usize) -> TimeOrder<T> {
        TimeOrder {
            window_ns,
            max_held,
            held: VecDeque::new(),
            newest_ns: 0,
        }
    }

    /// Hold `item`, stamped `ts_ns` (after any held item with the same time).
    pub fn push(&mut self, ts_ns: u64, item: T) {
        let pos = self
            .held
            .iter()
            .rposition(|(t, _)| *t <= ts_ns)
            .map_or(0, |p| p + 1);
        self.held.insert(pos, (ts_ns, item));
    }

    /// The capture has reached `now_ns`: release to `out`, in time order, what is older
    /// than the window behind it (and the oldest beyond `max_held`).
    pub fn release(&mut self, now_ns: u64, out: &mut Vec<T>) {
        self.newest_ns = self.newest_ns.max(now_ns);
        let horizon = self.newest_ns.saturating_sub(self.window_ns);
        while let Some((ts, _)) = self.held.front() {
            if *ts >= horizon && self.held.len() <= self.max_held {
                break;
            }
            if let Some((_, item)) = self.held.pop_front() {
                out.push(item);
            }
        }
    }

    /// Release everything held, in time order.
    pub fn drain(&mut self, out: &mut Vec<T>) {
        out.extend(self.held.drain(..).map(|(_, item)| item));
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

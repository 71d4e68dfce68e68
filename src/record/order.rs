//! Puts the events of per-CPU buffers back in time order. Each CPU's ring (or perf
//! buffer) is in order, but the drain reads them one after another, so a connection's
//! packets sent from two CPUs would reach the writer swapped; the redaction scrubber
//! gives up on a direction whose bytes come out of order. Events wait here until every
//! CPU has certainly handed over what came before them: an event is written within
//! microseconds of its timestamp, so one older than the last drain's start by
//! [`HOLD_NS`] is complete.

use super::layout::event_time;
use super::sink::RawBatch;

/// How long an event waits for older ones from other CPUs.
pub const HOLD_NS: u64 = 25_000_000;

/// Raw events waiting for their turn.
#[derive(Default)]
pub struct TimeOrder {
    bytes: Vec<u8>,
    waiting: Vec<Waiting>,
}

#[derive(Clone, Copy)]
struct Waiting {
    time: u64,
    start: usize,
    len: usize,
}

impl TimeOrder {
    pub fn push(&mut self, raw: &[u8]) {
        self.waiting.push(Waiting {
            time: event_time(raw),
            start: self.bytes.len(),
            len: raw.len(),
        });
        self.bytes.extend_from_slice(raw);
    }

    /// Move every event older than `before` to `batch`, oldest first (events of the same
    /// time keep the order they came in); the rest wait.
    pub fn release(&mut self, before: u64, batch: &mut RawBatch) {
        // Each CPU's events arrive sorted: the sort merges a few runs.
        self.waiting.sort_by_key(|w| w.time);
        let cut = self.waiting.partition_point(|w| w.time < before);
        for w in &self.waiting[..cut] {
            batch.push(&self.bytes[w.start..w.start + w.len]);
        }
        if cut == self.waiting.len() {
            self.waiting.clear();
            self.bytes.clear();
            return;
        }
        // Keep the few that wait, at the front of the buffer.
        let mut kept = Vec::with_capacity(self.bytes.len() / 4);
        for w in &mut self.waiting[cut..] {
            let start = kept.len();
            kept.extend_from_slice(&self.bytes[w.start..w.start + w.len]);
            w.start = start;
        }
        self.waiting.drain(..cut);
        self.bytes = kept;
    }

    pub fn release_all(&mut self, batch: &mut RawBatch) {
        self.release(u64::MAX, batch);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::layout::ET_PACKET;

    /// A raw packet event (header only) with this time and a tag in its ifindex.
    fn packet(time: u64, tag: u32) -> Vec<u8> {
        let mut raw = vec![0u8; 80];
        raw[..4].copy_from_slice(&ET_PACKET.to_ne_bytes());
        raw[4..8].copy_from_slice(&tag.to_ne_bytes());
        raw[8..16].copy_from_slice(&time.to_ne_bytes());
        raw
    }

    fn tags<'a>(raws: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        raws.into_iter()
            .map(|raw| u32::from_ne_bytes(raw[4..8].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn two_cpus_merge_in_time_order_and_recent_events_wait() {
        let mut order = TimeOrder::default();
        // CPU 0's ring, then CPU 1's: each sorted, interleaved in time.
        for (time, tag) in [(10, 1), (30, 3), (50, 5), (70, 7)] {
            order.push(&packet(time, tag));
        }
        for (time, tag) in [(20, 2), (40, 4), (60, 6)] {
            order.push(&packet(time, tag));
        }
        let mut batch = RawBatch::default();
        order.release(55, &mut batch);
        assert_eq!(tags(batch.iter()), [1, 2, 3, 4, 5]);
        assert!(!order.is_empty());

        // The next drain brings an event older than those still waiting.
        order.push(&packet(65, 65));
        let mut batch = RawBatch::default();
        order.release_all(&mut batch);
        assert_eq!(tags(batch.iter()), [6, 65, 7]);
        assert!(order.is_empty());
    }

    #[test]
    fn equal_times_keep_their_order_and_unparsable_events_leave_first() {
        let mut order = TimeOrder::default();
        order.push(&packet(5, 1));
        order.push(&packet(5, 2));
        order.push(&[9, 9]);
        let mut batch = RawBatch::default();
        order.release(6, &mut batch);
        let raws: Vec<&[u8]> = batch.iter().collect();
        assert_eq!(raws[0], &[9, 9]);
        assert_eq!(tags(raws[1..].iter().copied()), [1, 2]);
    }
}

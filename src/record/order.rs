//! Puts the events of per-CPU buffers back in the order they were handed over. The
//! drain reads the CPUs' buffers one after another, and a CPU's ring holds its batches of
//! syscalls and of packets as each filled up, so a connection's packets sent from two
//! CPUs would reach the writer swapped, and the redaction scrubber gives up on a
//! direction whose bytes come out of order. Events wait here until every CPU has
//! certainly handed over what came before them: each drain first has every CPU hand over
//! what it staged, and an event is written within microseconds of its time, so one older
//! than a drain's start by [`HOLD_NS`] is complete. This runs in the writer thread, at
//! the writer's low priority, not in the drain that competes with etcd for the CPU.

use crate::capture::Event;

/// How long an event waits for older ones from other CPUs.
pub const HOLD_NS: u64 = 25_000_000;

/// When an event was handed over: a packet's time, a syscall's exit (when its event was
/// written), a loss record's time.
fn handover_ns(ev: &Event) -> u64 {
    match ev {
        Event::Packet(p) => p.ts_ns,
        Event::Syscall(s) => s.exit_ns,
        Event::Loss(l) => l.ts_ns,
    }
}

/// Events waiting for their turn.
#[derive(Default)]
pub struct TimeOrder {
    waiting: Vec<Event>,
}

impl TimeOrder {
    pub fn push(&mut self, ev: Event) {
        self.waiting.push(ev);
    }

    /// Hands `out` every event handed over before `before` (every event with `None`),
    /// oldest first (events of the same time keep the order they came in); the rest wait.
    pub fn release(&mut self, before: Option<u64>, out: impl FnMut(Event)) {
        // Each batch arrives sorted: the stable sort merges runs.
        self.waiting.sort_by_key(handover_ns);
        let cut = match before {
            Some(before) => self.waiting.partition_point(|ev| handover_ns(ev) < before),
            None => self.waiting.len(),
        };
        self.waiting.drain(..cut).for_each(out);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Loss, LossSource};

    /// An event with this time, told apart by its count.
    fn event(time: u64, tag: u64) -> Event {
        Event::Loss(Loss {
            ts_ns: time,
            source: LossSource::Kernel,
            count: tag,
        })
    }

    fn tags(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .map(|ev| match ev {
                Event::Loss(l) => l.count,
                _ => unreachable!("the tests push loss records only"),
            })
            .collect()
    }

    #[test]
    fn two_cpus_merge_in_time_order_and_recent_events_wait() {
        let mut order = TimeOrder::default();
        // CPU 0's ring, then CPU 1's: each sorted, interleaved in time.
        for (time, tag) in [(10, 1), (30, 3), (50, 5), (70, 7)] {
            order.push(event(time, tag));
        }
        for (time, tag) in [(20, 2), (40, 4), (60, 6)] {
            order.push(event(time, tag));
        }
        let mut out = Vec::new();
        order.release(Some(55), |ev| out.push(ev));
        assert_eq!(tags(&out), [1, 2, 3, 4, 5]);
        assert!(!order.is_empty());

        // The next drain brings an event older than those still waiting.
        order.push(event(65, 65));
        let mut out = Vec::new();
        order.release(None, |ev| out.push(ev));
        assert_eq!(tags(&out), [6, 65, 7]);
        assert!(order.is_empty());
    }

    #[test]
    fn equal_times_keep_their_order() {
        let mut order = TimeOrder::default();
        order.push(event(5, 1));
        order.push(event(5, 2));
        order.push(event(4, 3));
        let mut out = Vec::new();
        order.release(Some(6), |ev| out.push(ev));
        assert_eq!(tags(&out), [3, 1, 2]);
    }
}

//! Puts the events of per-CPU buffers back in the order they were handed over. The
//! drain reads the CPUs' buffers one after another, and a CPU's ring holds its batches of
//! syscalls and of packets as each filled up, so a connection's packets sent from two
//! CPUs would reach the writer swapped, and the redaction scrubber would hold a
//! direction's later bytes until the earlier ones came. Events wait here until every CPU
//! has certainly handed over what came before them: each drain first has every CPU hand
//! over what it staged, and an event is written within microseconds of its time, so one
//! older than a drain's start by [`HOLD_NS`] is complete. Each staging area's events come
//! in order, so the areas' queues are merged rather than sorted: every event is moved
//! once.
//! This runs in the writer thread, at the writer's low priority, not in the drain that
//! competes with etcd for the CPU.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::capture::Event;

/// How long an event waits for older ones from other CPUs.
pub const HOLD_NS: u64 = 25_000_000;

/// Staging areas kept apart (two per CPU); an event naming another comes on its own.
const MAX_AREAS: usize = 1 << 14;

/// When an event was handed over: a packet's time, a syscall's exit (when its event was
/// written), a TLS event's, a process event's or a loss record's time.
fn handover_ns(ev: &Event) -> u64 {
    match ev {
        Event::Packet(p) => p.ts_ns,
        Event::Syscall(s) => s.exit_ns,
        Event::Loss(l) => l.ts_ns,
        Event::Tls(t) => t.ts_ns,
        Event::Process(p) => p.ts_ns,
        Event::Api(a) => a.ts_ns,
    }
}

/// Events waiting for their turn: one queue per staging area of the kernel programs,
/// each in time order as it came (so putting them in order is a merge, each event moved
/// once), and the events that came one by one (the perf buffer's, loss records), sorted
/// when released.
#[derive(Default)]
pub struct TimeOrder {
    /// Indexed by staging area.
    areas: Vec<VecDeque<Event>>,
    loose: VecDeque<Event>,
}

impl TimeOrder {
    /// An event that came on its own.
    pub fn push(&mut self, ev: Event) {
        self.loose.push_back(ev);
    }

    /// An event from staging area `area`, whose events come in time order; one that
    /// does not (never seen) still finds its place.
    pub fn push_from(&mut self, area: usize, ev: Event) {
        if area >= MAX_AREAS {
            return self.push(ev);
        }
        if area >= self.areas.len() {
            self.areas.resize_with(area + 1, VecDeque::new);
        }
        let queue = &mut self.areas[area];
        let t = handover_ns(&ev);
        match queue.back() {
            Some(last) if handover_ns(last) > t => {
                let at = queue.partition_point(|e| handover_ns(e) <= t);
                queue.insert(at, ev);
            }
            _ => queue.push_back(ev),
        }
    }

    /// The syscall event of thread `tid` that entered at `enter_ns`, among the last few
    /// that came from `area` (or on their own): where the rest of a long WAL write's
    /// data goes, which follows its event from the same area.
    pub fn recent_syscall_mut(
        &mut self,
        area: Option<usize>,
        tid: u32,
        enter_ns: u64,
    ) -> Option<&mut crate::capture::Syscall> {
        const LOOK_BACK: usize = 64;
        let queue = match area {
            Some(a) if a < MAX_AREAS => self.areas.get_mut(a)?,
            _ => &mut self.loose,
        };
        queue
            .iter_mut()
            .rev()
            .take(LOOK_BACK)
            .find_map(|ev| match ev {
                Event::Syscall(s) if s.tid == tid && s.enter_ns == enter_ns => Some(s),
                _ => None,
            })
    }

    /// Hands `out` every event handed over before `before` (every event with `None`),
    /// oldest first (events of the same time in the order they came in, area by area,
    /// the loose ones last); the rest wait.
    pub fn release(&mut self, before: Option<u64>, mut out: impl FnMut(Event)) {
        let due = |t: u64| before.is_none_or(|before| t < before);
        self.loose.make_contiguous().sort_by_key(handover_ns);
        let loose = self.areas.len();
        // The oldest waiting event of each queue, smallest first.
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = self
            .areas
            .iter()
            .chain(std::iter::once(&self.loose))
            .enumerate()
            .filter_map(|(q, events)| events.front().map(|ev| Reverse((handover_ns(ev), q))))
            .filter(|Reverse((t, _))| due(*t))
            .collect();
        while let Some(Reverse((_, q))) = heads.pop() {
            let events = if q == loose {
                &mut self.loose
            } else {
                &mut self.areas[q]
            };
            let Some(ev) = events.pop_front() else {
                continue;
            };
            out(ev);
            if let Some(next) = events.front() {
                let t = handover_ns(next);
                if due(t) {
                    heads.push(Reverse((t, q)));
                }
            }
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.loose.is_empty() && self.areas.iter().all(VecDeque::is_empty)
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
    fn staging_areas_merge_in_time_order() {
        let mut order = TimeOrder::default();
        // Two CPUs' syscall and packet areas, batches taken area by area.
        for (area, times) in [
            (0, &[10u64, 40, 90][..]),
            (1, &[20, 50][..]),
            (3, &[5, 30, 60, 80][..]),
        ] {
            for &t in times {
                order.push_from(area, event(t, t));
            }
        }
        order.push(event(45, 45)); // a loss record
        let mut out = Vec::new();
        order.release(Some(60), |ev| out.push(ev));
        assert_eq!(tags(&out), [5, 10, 20, 30, 40, 45, 50]);

        // An area's later batch; and one event out of its area's order still finds its
        // place (ties: the earlier arrival first).
        order.push_from(1, event(85, 85));
        order.push_from(1, event(70, 70));
        order.push_from(1, event(70, 71));
        let mut out = Vec::new();
        order.release(None, |ev| out.push(ev));
        assert_eq!(tags(&out), [60, 70, 71, 80, 85, 90]);
        assert!(order.is_empty());
    }

    #[test]
    fn equal_times_go_area_by_area_and_loose_ones_keep_their_order() {
        let mut order = TimeOrder::default();
        order.push(event(5, 1));
        order.push_from(2, event(5, 10));
        order.push_from(0, event(5, 20));
        order.push(event(5, 2));
        let mut out = Vec::new();
        order.release(Some(6), |ev| out.push(ev));
        assert_eq!(tags(&out), [20, 10, 1, 2]);
    }

    #[test]
    fn the_last_release_takes_every_event() {
        let mut order = TimeOrder::default();
        order.push_from(0, event(u64::MAX, 1));
        order.push(event(u64::MAX, 2));
        let mut out = Vec::new();
        order.release(None, |ev| out.push(ev));
        assert_eq!(tags(&out), [1, 2]);
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

//! The CPU priority of the capture writer thread.
//!
//! Why it exists: the writer (parsing, redaction, encoding, compression) is nearly all of
//! the recorder's CPU, and on a busy etcd host every cycle it takes at normal priority is
//! taken from etcd. None of its work is urgent, though: the drain thread empties the
//! kernel buffer at normal priority, copying raw events and nothing more, and the writer
//! only has to keep up on average. So it runs as SCHED_IDLE, on CPU time nothing else
//! wants (on the benchmark host etcd leaves 5-10% idle while it waits for its fsyncs).
//! Idle time can run out; then the batches pile up, and the drain thread raises the
//! writer to normal priority until it has caught up, so waiting costs memory for a
//! moment, never events.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Instant;

/// How the writer thread is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterPriority {
    /// SCHED_IDLE, raised to normal while it falls behind.
    #[default]
    Idle,
    /// SCHED_OTHER, like any process.
    Normal,
}

/// Batches waiting that make the drain thread raise an idle writer: 4 MiB of raw events
/// (256 KiB batches), under a second of a busy etcd; a quiet one stalls first.
pub const BOOST_BACKLOG: u64 = 16;
/// A writer that has left a message waiting this long is raised too.
pub const BOOST_STALL_MS: u64 = 1000;
/// A block flush (asked for every second) may wait this long: what the recorder took
/// reaches the file within about a second and a half even when the host has no idle
/// time, so a killed recorder loses little.
pub const FLUSH_WAIT_MS: u64 = 500;

/// Shared by the drain thread (which sends batches and raises the writer) and the
/// writer (which takes them and lowers itself again once it has caught up).
#[derive(Debug)]
pub struct WriterSchedule {
    mode: WriterPriority,
    started: Instant,
    /// The writer's thread id, once it runs (0 before).
    tid: AtomicI32,
    /// Messages sent and not yet taken.
    backlog: AtomicU64,
    /// Since when (ms since `started`) the oldest message still waiting has waited, at
    /// most: set when the backlog goes from empty to one, and at each take that leaves
    /// some behind. Not the time of the last take: on a quiet recorder the once-a-second
    /// flush is the only message, and it would always find the writer "a second idle".
    waiting_since_ms: AtomicU64,
    /// Flushes asked for and done, and when the last was asked for (ms).
    flushes_asked: AtomicU64,
    flushes_done: AtomicU64,
    flush_asked_ms: AtomicU64,
    raised: AtomicBool,
    /// How many times the writer was raised to normal priority.
    raises: AtomicU64,
}

impl WriterSchedule {
    pub fn new(mode: WriterPriority) -> WriterSchedule {
        WriterSchedule {
            mode,
            started: Instant::now(),
            tid: AtomicI32::new(0),
            backlog: AtomicU64::new(0),
            waiting_since_ms: AtomicU64::new(0),
            flushes_asked: AtomicU64::new(0),
            flushes_done: AtomicU64::new(0),
            flush_asked_ms: AtomicU64::new(0),
            raised: AtomicBool::new(false),
            raises: AtomicU64::new(0),
        }
    }

    /// Called on the writer thread before its first message: takes its priority.
    pub fn enter_writer(&self) -> std::io::Result<()> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.tid.store(tid, Ordering::Relaxed);
        if self.mode == WriterPriority::Idle {
            set_policy(0, libc::SCHED_IDLE)?;
        }
        Ok(())
    }

    /// Drain thread: a message was sent.
    pub fn sent(&self) {
        if self.backlog.fetch_add(1, Ordering::Relaxed) == 0 {
            self.waiting_since_ms
                .store(self.now_ms(), Ordering::Relaxed);
        }
        self.check();
    }

    /// Drain thread, after each send and each poll: raise an idle writer that falls
    /// behind.
    pub fn check(&self) {
        if self.mode != WriterPriority::Idle || self.raised.load(Ordering::Relaxed) {
            return;
        }
        let now = self.now_ms();
        let backlog = self.backlog.load(Ordering::Relaxed);
        let waited_ms = now.saturating_sub(self.waiting_since_ms.load(Ordering::Relaxed));
        let flushes_waiting = self
            .flushes_asked
            .load(Ordering::Relaxed)
            .saturating_sub(self.flushes_done.load(Ordering::Relaxed));
        let flush_ms = now.saturating_sub(self.flush_asked_ms.load(Ordering::Relaxed));
        if should_raise(backlog, waited_ms) || flush_overdue(flushes_waiting, flush_ms) {
            self.raise();
        }
    }

    /// Drain thread: a block flush was asked for.
    pub fn flush_asked(&self) {
        self.flush_asked_ms.store(self.now_ms(), Ordering::Relaxed);
        self.flushes_asked.fetch_add(1, Ordering::Relaxed);
    }

    /// Writer thread: a block flush was done.
    pub fn flush_done(&self) {
        self.flushes_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Raise a writer that fell behind to normal priority (counted).
    pub fn raise(&self) {
        if self.lift() {
            self.raises.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The recording ends: the last blocks and the index are written at normal
    /// priority, promptly.
    pub fn finish(&self) {
        self.lift();
    }

    fn lift(&self) -> bool {
        let tid = self.tid.load(Ordering::Relaxed);
        if self.mode != WriterPriority::Idle
            || tid == 0
            || self.raised.swap(true, Ordering::Relaxed)
        {
            return false;
        }
        set_policy(tid, libc::SCHED_OTHER).is_ok()
    }

    /// Writer thread: a message was taken.
    pub fn taken(&self) {
        if self.backlog.fetch_sub(1, Ordering::Relaxed) > 1 {
            self.waiting_since_ms
                .store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Writer thread, after handling a message: back to idle once nothing waits.
    pub fn settle(&self) {
        if self.raised.load(Ordering::Relaxed) && self.backlog.load(Ordering::Relaxed) == 0 {
            self.raised.store(false, Ordering::Relaxed);
            let _ = set_policy(0, libc::SCHED_IDLE);
        }
    }

    /// How many times the writer had to be raised to keep up.
    pub fn raises(&self) -> u64 {
        self.raises.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Whether an idle writer with `backlog` messages waiting, the oldest for `waited_ms`,
/// has fallen behind.
fn should_raise(backlog: u64, waited_ms: u64) -> bool {
    backlog >= BOOST_BACKLOG || (backlog > 0 && waited_ms >= BOOST_STALL_MS)
}

/// Whether a thread of this process that went SCHED_IDLE can come back to normal
/// (CAP_SYS_NICE, or a high enough RLIMIT_NICE). Tried on a thread of its own, so that
/// a refusal strands nothing that matters.
pub fn idle_is_reversible() -> bool {
    std::thread::spawn(|| {
        set_policy(0, libc::SCHED_IDLE).is_ok() && set_policy(0, libc::SCHED_OTHER).is_ok()
    })
    .join()
    .unwrap_or(false)
}

/// Whether a flush is overdue: `waiting` asked for and not done, the last asked for
/// `asked_ms` ago (with two waiting, the first is a second old).
fn flush_overdue(waiting: u64, asked_ms: u64) -> bool {
    waiting >= 2 || (waiting == 1 && asked_ms >= FLUSH_WAIT_MS)
}

/// sched_setscheduler(2) on one thread (0: the calling one).
fn set_policy(tid: i32, policy: i32) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid sched_param for the duration of the call.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_is_raised_when_batches_pile_up_or_it_stalls() {
        assert!(!should_raise(0, 60_000));
        assert!(!should_raise(BOOST_BACKLOG - 1, BOOST_STALL_MS - 1));
        assert!(should_raise(BOOST_BACKLOG, 0));
        assert!(should_raise(1, BOOST_STALL_MS));
        assert!(!flush_overdue(0, 60_000));
        assert!(!flush_overdue(1, FLUSH_WAIT_MS - 1));
        assert!(flush_overdue(1, FLUSH_WAIT_MS));
        assert!(flush_overdue(2, 0));
    }

    #[test]
    fn a_quiet_writer_is_not_raised_by_the_flush_it_was_waiting_for() {
        // No writer thread: raising needs its tid, so a raise would show as `raised`.
        let schedule = WriterSchedule::new(WriterPriority::Idle);
        schedule.tid.store(-1, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(BOOST_STALL_MS + 50));
        // The once-a-second flush of a recorder with nothing to record.
        schedule.flush_asked();
        schedule.sent();
        assert!(!schedule.raised.load(Ordering::Relaxed));
        schedule.taken();
        schedule.flush_done();
        schedule.check();
        assert!(!schedule.raised.load(Ordering::Relaxed));
    }

    /// Needs root (CAP_SYS_NICE) for the way back to normal, like the recorder.
    #[test]
    fn the_writer_goes_idle_and_is_raised_and_settles() {
        if crate::sandbox::skip_without_root() {
            return;
        }
        let schedule = std::sync::Arc::new(WriterSchedule::new(WriterPriority::Idle));
        let s = schedule.clone();
        let (to_writer, from_drain) = std::sync::mpsc::channel::<()>();
        let (to_test, from_writer) = std::sync::mpsc::channel::<i32>();
        let writer = std::thread::spawn(move || {
            s.enter_writer().unwrap();
            // SAFETY: sched_getscheduler(0) has no preconditions.
            to_test
                .send(unsafe { libc::sched_getscheduler(0) })
                .unwrap();
            for () in from_drain {
                // SAFETY: as above.
                to_test
                    .send(unsafe { libc::sched_getscheduler(0) })
                    .unwrap();
                s.taken();
                s.settle();
                // SAFETY: as above.
                to_test
                    .send(unsafe { libc::sched_getscheduler(0) })
                    .unwrap();
            }
        });
        assert_eq!(from_writer.recv().unwrap(), libc::SCHED_IDLE);
        for _ in 0..BOOST_BACKLOG {
            schedule.sent();
        }
        assert_eq!(schedule.raises(), 1);
        to_writer.send(()).unwrap();
        // Raised while the backlog was there; still raised with 15 waiting.
        assert_eq!(from_writer.recv().unwrap(), libc::SCHED_OTHER);
        assert_eq!(from_writer.recv().unwrap(), libc::SCHED_OTHER);
        let mut after = Vec::new();
        for _ in 1..BOOST_BACKLOG {
            to_writer.send(()).unwrap();
            from_writer.recv().unwrap();
            after.push(from_writer.recv().unwrap());
        }
        // Normal while batches wait, idle again once the last is taken.
        let last = after.pop();
        assert!(after.iter().all(|&p| p == libc::SCHED_OTHER), "{after:?}");
        assert_eq!(last, Some(libc::SCHED_IDLE));
        assert!(idle_is_reversible());
        drop(to_writer);
        writer.join().unwrap();
    }
}

//! The phases of one operation, from a correlated call: request received → WAL appended
//! → fsync done → reply sent. The answer to "why was this Put slow — raft and the WAL
//! write, the fsync, or applying and replying?".

use serde::Serialize;

use crate::analyze::correlate::CorrelatedCall;

/// One phase of an operation, [start, end) in monotonic ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Phase {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Phase names, in order.
pub const APPEND: &str = "raft + WAL append";
pub const FSYNC: &str = "fsync";
pub const REPLY: &str = "apply + reply";

/// The consecutive phases of a linked write (empty for anything else): from the first
/// request byte to the WAL write's end, from there to the end of the fdatasync that made
/// it durable, and from there to the last reply byte.
pub fn phases_of(c: &CorrelatedCall) -> Vec<Phase> {
    let Some(w) = &c.wal else { return Vec::new() };
    let Some(reply) = c.reply_ts_ns() else {
        return Vec::new();
    };
    let received = c.call.ts_ns;
    let appended = w.write_end_ns.clamp(received, reply);
    let mut out = vec![Phase {
        name: APPEND,
        start_ns: received,
        end_ns: appended,
    }];
    let durable = match w.fsync_ts_ns {
        Some(done) => {
            let done = done.clamp(appended, reply);
            out.push(Phase {
                name: FSYNC,
                start_ns: appended,
                end_ns: done,
            });
            done
        }
        None => appended,
    };
    out.push(Phase {
        name: REPLY,
        start_ns: durable,
        end_ns: reply,
    });
    out
}

/// The phase that took the most time, if any.
pub fn slowest(phases: &[Phase]) -> Option<Phase> {
    phases.iter().copied().max_by_key(Phase::duration_ns)
}

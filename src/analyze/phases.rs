//! The phases of one operation, from a correlated call: request received → WAL appended
//! → fsync done → (a backend commit the apply waited behind) → reply sent. The answer to
//! "why was this Put slow — raft and the WAL write, the fsync, the backend, or applying
//! and replying?".

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
pub const BACKEND_WAIT: &str = "backend commit wait";
pub const REPLY: &str = "apply + reply";
/// Every phase in order, with the short name `diff` takes for it.
pub const PHASES: [(&str, &str); 4] = [
    ("append", APPEND),
    ("fsync", FSYNC),
    ("backend", BACKEND_WAIT),
    ("reply", REPLY),
];

/// The consecutive phases of a linked write (empty for anything else): from the first
/// request byte to the WAL write's end, from there to the end of the fdatasync that made
/// it durable, then to the end of a backend commit the apply waited behind (if one
/// was running), and from there to the last reply byte.
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
    let applied_from = match w.backend_commit {
        Some(b) if b.end_ns > durable => {
            let end = b.end_ns.min(reply);
            out.push(Phase {
                name: BACKEND_WAIT,
                start_ns: durable,
                end_ns: end,
            });
            end
        }
        _ => durable,
    };
    out.push(Phase {
        name: REPLY,
        start_ns: applied_from,
        end_ns: reply,
    });
    out
}

/// The phase that took the most time, if any.
pub fn slowest(phases: &[Phase]) -> Option<Phase> {
    phases.iter().copied().max_by_key(Phase::duration_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::correlate::{BackendCommitWait, WalLink};
    use crate::analyze::member::Member;
    use crate::analyze::rpc::RpcBody;
    use crate::analyze::test_wire::rpc_call;

    fn linked(backend_commit: Option<BackendCommitWait>) -> CorrelatedCall {
        let mut call = rpc_call("127.0.0.1:40000", 1_000, "KV/Put", None);
        call.end_ns = 9_000;
        call.response = Some(RpcBody::Raw {
            bytes: Vec::new(),
            len: 0,
            reason: String::new(),
        });
        CorrelatedCall {
            call,
            op: Some("put"),
            wal: Some(WalLink {
                term: 2,
                index: 7,
                member: Member::process(1),
                file: "member/wal/0.wal".into(),
                write_ts_ns: 1_500,
                write_end_ns: 2_000,
                fsync_start_ns: Some(2_100),
                fsync_ts_ns: Some(3_000),
                fsync_ns: Some(900),
                backend_commit,
                how: "test",
                confidence: "high",
            }),
            unlinked: None,
        }
    }

    #[test]
    fn an_apply_held_by_a_backend_commit_is_its_own_phase() {
        let names = |c: &CorrelatedCall| -> Vec<(&str, u64, u64)> {
            phases_of(c)
                .iter()
                .map(|p| (p.name, p.start_ns, p.end_ns))
                .collect()
        };
        assert_eq!(
            names(&linked(None)),
            [
                (APPEND, 1_000, 2_000),
                (FSYNC, 2_000, 3_000),
                (REPLY, 3_000, 9_000)
            ]
        );
        let commit = BackendCommitWait {
            start_ns: 2_500,
            end_ns: 7_000,
            writes: 3,
            sync_ns: 4_000,
        };
        assert_eq!(
            names(&linked(Some(commit))),
            [
                (APPEND, 1_000, 2_000),
                (FSYNC, 2_000, 3_000),
                (BACKEND_WAIT, 3_000, 7_000),
                (REPLY, 7_000, 9_000)
            ]
        );
        assert_eq!(
            slowest(&phases_of(&linked(Some(commit)))).unwrap().name,
            BACKEND_WAIT
        );
    }
}

//! What a leader does for each follower, from the messages between them: heartbeats
//! and their gaps, appends and how long the follower took to acknowledge them, how far
//! behind it fell, what it refused, and the snapshots it needed; and per leader, how
//! long an entry took from its first MsgApp to the first message announcing it committed.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::{Msg, RaftEvent};
use crate::analyze::histogram::{Histogram, LatencySummary};
use crate::analyze::member::Member;

/// Appends awaiting their acknowledgement, per follower, at most.
const MAX_OUTSTANDING: usize = 4096;
/// Entries awaiting their commit announcement, per leader, at most.
const MAX_UNCOMMITTED: usize = 100_000;

/// One leader → follower pair, over the whole capture.
#[derive(Debug, Clone, Serialize)]
pub struct FollowerSummary {
    pub leader: Member,
    pub follower: Member,
    pub heartbeats: u64,
    pub heartbeat_interval: LatencySummary,
    /// MsgApps sent, and the entries they carried.
    pub appends: u64,
    pub entries: u64,
    /// From a MsgApp to the MsgAppResp that acknowledged its last entry.
    pub ack: LatencySummary,
    pub rejected: u64,
    /// The most entries the follower was behind the leader's last sent entry (once its
    /// match was known).
    pub max_lag_entries: u64,
    /// When the follower was furthest behind, and when its slowest ack came.
    pub max_lag_at_ns: Option<u64>,
    pub slowest_ack_at_ns: Option<u64>,
    pub snapshots: u64,
    pub snapshot_bytes: u64,
}

/// One leader's commits.
#[derive(Debug, Clone, Serialize)]
pub struct CommitSummary {
    pub leader: Member,
    pub first_commit: u64,
    pub last_commit: u64,
    /// Entries whose commit was announced, and the time from their first MsgApp to the
    /// first leader message whose commit index covered them.
    pub committed: u64,
    pub commit_latency: LatencySummary,
}

#[derive(Debug, Default)]
struct Link {
    term: u64,
    last_heartbeat: Option<u64>,
    heartbeats: u64,
    intervals: Histogram,
    appends: u64,
    entries: u64,
    /// (last index, its term, sent at), in send order.
    outstanding: VecDeque<(u64, u64, u64)>,
    acks: Histogram,
    matched: u64,
    rejected: u64,
    max_lag: u64,
    max_lag_at: Option<u64>,
    slowest_ack: u64,
    slowest_ack_at: Option<u64>,
    snapshots: u64,
    snapshot_bytes: u64,
}

#[derive(Debug, Default)]
struct Commits {
    first_sent: BTreeMap<u64, u64>,
    newest_sent: u64,
    first_commit: Option<u64>,
    last_commit: u64,
    latency: Histogram,
}

/// Every leader → follower pair and every leader's commits.
#[derive(Debug)]
pub(super) struct Links {
    gap_ns: u64,
    links: BTreeMap<(u64, u64), Link>,
    commits: BTreeMap<u64, Commits>,
}

impl Links {
    /// Heartbeat pauses from `gap_ns` are reported.
    pub(super) fn new(gap_ns: u64) -> Links {
        Links {
            gap_ns,
            links: BTreeMap::new(),
            commits: BTreeMap::new(),
        }
    }

    fn link(&mut self, leader: u64, follower: u64) -> &mut Link {
        self.links.entry((leader, follower)).or_default()
    }

    /// A MsgHeartbeat: a gap in the same term is reported.
    pub(super) fn heartbeat(&mut self, m: &Msg, out: &mut Vec<RaftEvent>) {
        let gap_ns = self.gap_ns;
        let link = self.link(m.from, m.to);
        link.heartbeats += 1;
        if let Some(last) = link.last_heartbeat.filter(|_| link.term == m.term) {
            let interval = m.ts_ns.saturating_sub(last);
            link.intervals.record(interval);
            if interval >= gap_ns {
                out.push(RaftEvent::HeartbeatGap {
                    ts_ns: m.ts_ns,
                    term: m.term,
                    leader: Member::with_id(m.from),
                    follower: Member::with_id(m.to),
                    gap_ns: interval,
                });
            }
        }
        link.last_heartbeat = Some(m.ts_ns);
        link.term = m.term;
        self.commit(m);
    }

    /// A MsgApp: counted, its last entry awaits an ack, its new entries their commit.
    pub(super) fn append(&mut self, m: &Msg, last_term: u64) {
        let link = self.link(m.from, m.to);
        link.appends += 1;
        link.entries += m.entries;
        if let Some(last) = m.last_index {
            if link.outstanding.len() >= MAX_OUTSTANDING {
                link.outstanding.pop_front();
            }
            link.outstanding.push_back((last, last_term, m.ts_ns));
            let lag = last.saturating_sub(link.matched);
            if link.matched > 0 && lag > link.max_lag {
                link.max_lag = lag;
                link.max_lag_at = Some(m.ts_ns);
            }
            let commits = self.commits.entry(m.from).or_default();
            let first = (last + 1)
                .saturating_sub(m.entries)
                .max(commits.newest_sent + 1);
            for index in first..=last {
                if commits.first_sent.len() >= MAX_UNCOMMITTED {
                    commits.first_sent.pop_first();
                }
                commits.first_sent.insert(index, m.ts_ns);
            }
            commits.newest_sent = commits.newest_sent.max(last);
        }
        self.commit(m);
    }

    /// A leader message's commit index: entries it covers are committed.
    fn commit(&mut self, m: &Msg) {
        if m.commit == 0 {
            return;
        }
        let c = self.commits.entry(m.from).or_default();
        c.first_commit.get_or_insert(m.commit);
        c.last_commit = c.last_commit.max(m.commit);
        while let Some((&index, &sent)) = c.first_sent.first_key_value() {
            if index > m.commit {
                break;
            }
            c.first_sent.pop_first();
            c.latency.record(m.ts_ns.saturating_sub(sent));
        }
    }

    /// A MsgAppResp from a follower: an ack, or a refusal. Returns the follower's last
    /// log position (term, index) once acked.
    pub(super) fn append_response(
        &mut self,
        m: &Msg,
        out: &mut Vec<RaftEvent>,
    ) -> Option<(u64, u64)> {
        let link = self.link(m.to, m.from);
        if m.reject {
            link.rejected += 1;
            out.push(RaftEvent::AppendRejected {
                ts_ns: m.ts_ns,
                term: m.term,
                leader: Member::with_id(m.to),
                follower: Member::with_id(m.from),
                index: m.index,
                hint: m.reject_hint,
            });
            return None;
        }
        link.matched = link.matched.max(m.index);
        let mut position = None;
        while let Some(&(last, term, sent)) = link.outstanding.front() {
            if last > m.index {
                break;
            }
            link.outstanding.pop_front();
            let took = m.ts_ns.saturating_sub(sent);
            link.acks.record(took);
            if took >= link.slowest_ack {
                link.slowest_ack = took;
                link.slowest_ack_at = Some(m.ts_ns);
            }
            position = Some((term, last));
        }
        position
    }

    pub(super) fn snapshot(&mut self, leader: u64, follower: u64, bytes: u64) {
        let link = self.link(leader, follower);
        link.snapshots += 1;
        link.snapshot_bytes += bytes;
    }

    pub(super) fn summaries(&self) -> (Vec<FollowerSummary>, Vec<CommitSummary>) {
        let followers = self
            .links
            .iter()
            .map(|(&(leader, follower), l)| FollowerSummary {
                leader: Member::with_id(leader),
                follower: Member::with_id(follower),
                heartbeats: l.heartbeats,
                heartbeat_interval: l.intervals.summary(),
                appends: l.appends,
                entries: l.entries,
                ack: l.acks.summary(),
                rejected: l.rejected,
                max_lag_entries: l.max_lag,
                max_lag_at_ns: l.max_lag_at,
                slowest_ack_at_ns: l.slowest_ack_at,
                snapshots: l.snapshots,
                snapshot_bytes: l.snapshot_bytes,
            })
            .collect();
        let commits = self
            .commits
            .iter()
            .filter_map(|(&leader, c)| {
                Some(CommitSummary {
                    leader: Member::with_id(leader),
                    first_commit: c.first_commit?,
                    last_commit: c.last_commit,
                    committed: c.latency.count(),
                    commit_latency: c.latency.summary(),
                })
            })
            .collect();
        (followers, commits)
    }
}

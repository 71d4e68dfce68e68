//! The rules that an API-mode capture (`record --mode api`) can feed: what the members'
//! Status, the member list and /metrics show. Leader changes and slow disks are judged
//! by the same rules (and thresholds) as from packets and syscalls; alarms, unreachable
//! members and a backend near its quota only API mode sees. The client is the endpoint
//! polled.

use std::collections::{HashMap, VecDeque};

use super::{plural, Ctx, Evidence, Finding, Severity};
use crate::analyze::api::{ApiFact, ApiState, Buckets};
use crate::capture::ApiEvent;
use crate::units::{human_bytes, human_duration_ns};

#[derive(Default)]
pub(super) struct ApiRules {
    state: ApiState,
    facts: Vec<ApiFact>,
    /// Leader changes seen, for raft-frequent-elections.
    changes: VecDeque<u64>,
    /// Per endpoint: the WAL fsync buckets of the intervals within the rule's window.
    fsyncs: HashMap<String, VecDeque<(u64, Buckets)>>,
    /// Per endpoint: failed Status polls in a row (their times), for member-unreachable.
    failing: HashMap<String, Vec<u64>>,
    /// Endpoints already found over the quota share (told once until they drop below).
    over_quota: HashMap<String, bool>,
}

impl ApiRules {
    pub(super) fn push(&mut self, ev: &ApiEvent, ctx: &mut Ctx) {
        self.state.push(ev, &mut self.facts);
        let facts = std::mem::take(&mut self.facts);
        for f in &facts {
            self.judge(f, ctx);
        }
        self.facts = facts;
        self.facts.clear();
    }

    fn judge(&mut self, fact: &ApiFact, ctx: &mut Ctx) {
        let rules = &ctx.rules.rules;
        match fact {
            ApiFact::Leader {
                ts_ns,
                endpoint,
                leader,
                term,
                previous: Some(previous),
            } => {
                if rules.raft_leader_change.enabled {
                    let what = if previous == leader {
                        format!("{leader:x} was elected again in term {term}")
                    } else {
                        format!("the leader changed from {previous:x} to {leader:x} in term {term}")
                    };
                    ctx.out.push(finding(
                        "raft-leader-change",
                        rules.raft_leader_change.severity,
                        endpoint,
                        *ts_ns,
                        *ts_ns,
                        format!("{what}, as {endpoint}'s Status reports (API mode: the cause is not in the capture)"),
                        vec![evidence(*ts_ns, endpoint, "Status", what)],
                    ));
                }
                let r = &rules.raft_frequent_elections;
                self.changes.push_back(*ts_ns);
                while self
                    .changes
                    .front()
                    .is_some_and(|&t| t.saturating_add(r.window) < *ts_ns)
                {
                    self.changes.pop_front();
                }
                if r.enabled && self.changes.len() as u64 >= r.threshold {
                    let first = self.changes.front().copied().unwrap_or(*ts_ns);
                    let n = self.changes.len() as u64;
                    self.changes.clear();
                    ctx.out.push(finding(
                        "raft-frequent-elections",
                        r.severity,
                        endpoint,
                        first,
                        *ts_ns,
                        format!(
                            "{} within {}: every change pauses writes for every client",
                            plural(n, "leader change"),
                            human_duration_ns(ts_ns - first)
                        ),
                        Vec::new(),
                    ));
                }
            }
            ApiFact::Alarm {
                ts_ns,
                endpoint,
                errors,
            } if rules.cluster_alarm.enabled && !errors.is_empty() => {
                let text = errors.join("; ");
                ctx.out.push(finding(
                    "cluster-alarm",
                    rules.cluster_alarm.severity,
                    endpoint,
                    *ts_ns,
                    *ts_ns,
                    format!("{endpoint} reports {text} in its Status"),
                    vec![evidence(*ts_ns, endpoint, "Status", text)],
                ));
            }
            ApiFact::DbSize {
                ts_ns,
                endpoint,
                size,
                quota,
                ..
            } => {
                let r = &rules.db_size_quota;
                let over = *quota > 0 && *size as f64 >= r.share * *quota as f64;
                let told = self.over_quota.insert(endpoint.clone(), over);
                if r.enabled && over && told != Some(true) {
                    let (size, quota) = (
                        u64::try_from(*size).unwrap_or(0),
                        u64::try_from(*quota).unwrap_or(0),
                    );
                    ctx.out.push(finding(
                        "db-size-quota",
                        r.severity,
                        endpoint,
                        *ts_ns,
                        *ts_ns,
                        format!(
                            "{endpoint}'s backend is {} of its {} quota ({:.0}%): at the quota \
                             etcd raises NOSPACE and refuses writes (compact and defragment)",
                            human_bytes(size),
                            human_bytes(quota),
                            size as f64 / quota.max(1) as f64 * 100.0
                        ),
                        Vec::new(),
                    ));
                }
            }
            ApiFact::Failed {
                ts_ns,
                endpoint,
                what,
                error,
            } if what == "status" || what == "connect" => {
                let r = &rules.member_unreachable;
                let streak = self.failing.entry(endpoint.clone()).or_default();
                streak.push(*ts_ns);
                streak.retain(|&t| t.saturating_add(r.window) >= *ts_ns);
                if r.enabled && streak.len() as u64 >= r.threshold {
                    let first = streak[0];
                    let n = streak.len() as u64;
                    streak.clear();
                    ctx.out.push(finding(
                        "member-unreachable",
                        r.severity,
                        endpoint,
                        first,
                        *ts_ns,
                        format!(
                            "{} of {endpoint} failed in a row within {}: the member is down \
                             or cut off ({error})",
                            plural(n, "poll"),
                            human_duration_ns(ts_ns - first)
                        ),
                        vec![evidence(*ts_ns, endpoint, what, error.clone())],
                    ));
                }
            }
            ApiFact::Interval {
                ts_ns,
                endpoint,
                wal_fsync,
                backend_commit,
                ..
            } => {
                // A Status answered in between ends a streak of failures.
                self.failing.remove(endpoint);
                let stall = &rules.disk_fsync_stall;
                let min_s = stall.min as f64 / 1e9;
                let stalled = wal_fsync.at_least(min_s) + backend_commit.at_least(min_s);
                if stall.enabled && stalled > 0 {
                    ctx.out.push(finding(
                        "disk-fsync-stall",
                        stall.severity,
                        endpoint,
                        *ts_ns,
                        *ts_ns,
                        format!(
                            "{} of {endpoint} took {} or more (counted by /metrics): writes \
                             waited, and a leader's heartbeats stall behind such a sync",
                            plural(stalled, "WAL fsync or backend commit"),
                            human_duration_ns(stall.min)
                        ),
                        Vec::new(),
                    ));
                }
                self.fsync_window(*ts_ns, endpoint, wal_fsync, ctx);
            }
            _ => {}
        }
    }

    /// disk-wal-fsync-slow over the rule's window of intervals: judged by the lower
    /// bound of the bucket the quantile falls in, so that a bucket's width never makes
    /// a fast disk look slow.
    fn fsync_window(&mut self, ts_ns: u64, endpoint: &str, b: &Buckets, ctx: &mut Ctx) {
        let r = &ctx.rules.rules.disk_wal_fsync_slow;
        let window = self.fsyncs.entry(endpoint.to_string()).or_default();
        window.push_back((ts_ns, b.clone()));
        while window
            .front()
            .is_some_and(|(t, _)| t.saturating_add(r.window) < ts_ns)
        {
            window.pop_front();
        }
        let mut all = Buckets::default();
        for (_, b) in window.iter() {
            all.add(b);
        }
        let n = all.count();
        let p99 = all.quantile_lower_ns(0.99);
        let p50 = all.quantile_lower_ns(0.50);
        let slow99 = n >= r.min_syncs_p99 && p99.is_some_and(|v| v >= r.p99);
        let slow50 = n >= r.min_syncs && p50.is_some_and(|v| v >= r.p50);
        if !r.enabled || !(slow99 || slow50) {
            return;
        }
        let first = window.front().map_or(ts_ns, |(t, _)| *t);
        window.clear();
        let (q, v) = if slow99 { ("p99", p99) } else { ("p50", p50) };
        ctx.out.push(finding(
            "disk-wal-fsync-slow",
            r.severity,
            endpoint,
            first,
            ts_ns,
            format!(
                "{endpoint}'s WAL fsync {q} was over {} across {} (from /metrics buckets): \
                 every write waits for it",
                human_duration_ns(v.unwrap_or(0)),
                plural(n, "fsync")
            ),
            Vec::new(),
        ));
    }
}

fn finding(
    rule: &'static str,
    severity: Severity,
    endpoint: &str,
    start_ns: u64,
    end_ns: u64,
    summary: String,
    evidence: Vec<Evidence>,
) -> Finding {
    Finding {
        rule,
        severity,
        client: endpoint.to_string(),
        start_ns,
        end_ns,
        summary,
        events: evidence.len().max(1) as u64,
        evidence,
        evidence_omitted: 0,
        volume: None,
    }
}

fn evidence(ts_ns: u64, endpoint: &str, method: &str, detail: String) -> Evidence {
    Evidence {
        ts_ns,
        stream: endpoint.to_string(),
        method: method.to_string(),
        detail,
    }
}

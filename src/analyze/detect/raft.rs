//! Consensus in trouble, from the traffic between members (`analyze::raft`): two leaders
//! in one term, a stale leader still sending, frequent leader changes, leadership lost
//! after a disk stall, a follower falling behind, repeated snapshots to one member, and
//! peer requests refused. Judged at the end, over the whole consensus timeline; the
//! `client` of a finding is the member it is about.

use super::{plural, Ctx, Evidence, Finding, Severity};
use crate::analyze::peers::peer_ports_of;
use crate::analyze::raft::{Election, RaftAnalyzer, RaftEvent, RaftOptions, RaftReport, TermStart};
use crate::capture::Event;
use crate::units::human_duration_ns;

pub struct Raft {
    /// None when every raft rule is off, or no peer port was recorded.
    analyzer: Option<RaftAnalyzer>,
}

impl Raft {
    pub fn new(rules: &super::Rules, ports: &[u16]) -> Raft {
        let r = &rules.rules;
        let any = [
            r.raft_two_leaders.enabled,
            r.raft_stale_leader.enabled,
            r.raft_leader_change.enabled,
            r.raft_frequent_elections.enabled,
            r.raft_disk_stall.enabled,
            r.raft_lagging_follower.enabled,
            r.raft_repeated_snapshots.enabled,
            r.raft_peer_refused.enabled,
        ]
        .contains(&true);
        let mut recorded = ports.to_vec();
        if !peer_ports_of(ports).iter().any(|p| ports.contains(p)) {
            recorded.push(rules.peer_port);
        }
        let options = RaftOptions {
            election_timeout_ns: rules.election_timeout,
        };
        Raft {
            analyzer: any.then(|| RaftAnalyzer::new(&recorded, options)),
        }
    }

    pub fn push(&mut self, ev: &Event) {
        if let Some(a) = &mut self.analyzer {
            a.push(ev);
        }
    }

    /// Member ids per process, from the correlator's WAL decoding.
    pub fn learn_processes(&mut self, members: &crate::analyze::member::Members) {
        if let Some(a) = &mut self.analyzer {
            a.learn_processes(members);
        }
    }

    pub fn finish(&mut self, ctx: &mut Ctx) {
        let Some(a) = self.analyzer.take() else {
            return;
        };
        judge(&a.finish(), ctx);
    }
}

/// Every raft rule over a finished consensus timeline.
pub(super) fn judge(report: &RaftReport, ctx: &mut Ctx) {
    let limit = ctx.evidence_limit();
    let mut finding = |rule: &'static str,
                       severity: Severity,
                       client: String,
                       summary: String,
                       evidence: Vec<Evidence>| {
        let start_ns = evidence.iter().map(|e| e.ts_ns).min().unwrap_or(0);
        let end_ns = evidence.iter().map(|e| e.ts_ns).max().unwrap_or(0);
        let events = evidence.len() as u64;
        let omitted = evidence.len().saturating_sub(limit) as u64;
        ctx.out.push(Finding {
            rule,
            severity,
            client,
            start_ns,
            end_ns,
            summary,
            events,
            evidence: evidence.into_iter().take(limit).collect(),
            evidence_omitted: omitted,
            volume: None,
        });
    };
    let rules = &ctx.rules.rules;
    let evidence = |ts_ns: u64, method: &str, detail: String| Evidence {
        ts_ns,
        stream: "raft".into(),
        method: method.into(),
        detail,
    };
    for e in &report.events {
        match e {
            RaftEvent::TwoLeaders {
                ts_ns,
                term,
                members,
            } if rules.raft_two_leaders.enabled => {
                finding(
                        "raft-two-leaders",
                        rules.raft_two_leaders.severity,
                        members[1].to_string(),
                        format!(
                            "{} and {} both sent leader messages in term {term}: raft allows one leader per term, so this is a bug in etcd or a decode error",
                            members[0], members[1]
                        ),
                        vec![evidence(*ts_ns, "leader", format!("term {term}: {} then {}", members[0], members[1]))],
                    );
            }
            RaftEvent::StaleLeader {
                ts_ns,
                member,
                term,
                newer_term,
                newer_leader,
            } if rules.raft_stale_leader.enabled => {
                finding(
                        "raft-stale-leader",
                        rules.raft_stale_leader.severity,
                        member.to_string(),
                        format!(
                            "{member} still acted as leader of term {term} after {newer_leader} took term {newer_term}: it was paused or cut off, and clients that reach only it may read stale data"
                        ),
                        vec![evidence(*ts_ns, "leader", format!("term {term} after term {newer_term}"))],
                    );
            }
            RaftEvent::PeerRefused {
                ts_ns,
                status,
                request,
                client,
                server,
                from,
                ..
            } if rules.raft_peer_refused.enabled => {
                let why = match status {
                        412 => "the cluster ID or version did not match: a member of another cluster, or one started on a stale data dir",
                        404 => "the member id was not known to it",
                        410 => "the member was removed from the cluster",
                        _ => "it refused the request",
                    };
                let who = from.map_or_else(|| client.clone(), |m| m.to_string());
                finding(
                    "raft-peer-refused",
                    rules.raft_peer_refused.severity,
                    who.clone(),
                    format!("{server} answered {status} to {who}'s {request} request: {why}"),
                    vec![evidence(
                        *ts_ns,
                        &status.to_string(),
                        format!("{client} -> {server} {request}"),
                    )],
                );
            }
            _ => {}
        }
    }
    let elections: Vec<&Election> = report
        .events
        .iter()
        .filter_map(|e| match e {
            RaftEvent::Election(e) => Some(e),
            _ => None,
        })
        .collect();
    let r = &rules.raft_frequent_elections;
    if r.enabled {
        let won: Vec<&&Election> = elections.iter().filter(|e| e.winner.is_some()).collect();
        let threshold = usize::try_from(r.threshold).unwrap_or(usize::MAX);
        // The busiest window: the most elections won within `window` of one.
        let busiest = (0..won.len())
            .map(|i| {
                let until = won[i].start_ns.saturating_add(r.window);
                let n = won[i..].iter().take_while(|e| e.start_ns <= until).count();
                (n, i)
            })
            .max_by_key(|(n, i)| (*n, std::cmp::Reverse(*i)));
        if let Some((n, i)) = busiest.filter(|(n, _)| *n >= threshold) {
            let ev = won[i..i + n]
                .iter()
                .map(|e| {
                    evidence(
                        e.start_ns,
                        "election",
                        format!(
                            "term {} won by {} after {}",
                            e.term,
                            e.winner.map(|w| w.to_string()).unwrap_or_default(),
                            human_duration_ns(e.duration_ns.unwrap_or(0))
                        ),
                    )
                })
                .collect();
            finding(
                    "raft-frequent-elections",
                    r.severity,
                    "cluster".into(),
                    format!(
                        "the leader changed {} within {}: each change pauses every client's writes; look for slow disks, an overloaded member or a flaky network",
                        plural(n as u64, "time"),
                        human_duration_ns(r.window)
                    ),
                    ev,
                );
        }
    }
    let r = &rules.raft_leader_change;
    if r.enabled {
        for e in elections.iter().filter(|e| e.winner.is_some()) {
            let why = leader_change_cause(report, e, rules.raft_disk_stall.min_fsync);
            let winner = e.winner.map(|w| w.to_string()).unwrap_or_default();
            let from = e
                .previous_leader
                .map_or("before recording".to_string(), |p| p.to_string());
            finding(
                "raft-leader-change",
                r.severity,
                winner.clone(),
                format!(
                    "leadership moved from {from} to {winner} in term {}, {} without a leader: {why}",
                    e.term,
                    human_duration_ns(e.leaderless_ns.or(e.duration_ns).unwrap_or(0))
                ),
                vec![evidence(
                    e.end_ns.unwrap_or(e.start_ns),
                    "election",
                    format!("term {} won by {winner}", e.term),
                )],
            );
        }
    }
    let r = &rules.raft_disk_stall;
    if r.enabled {
        for e in elections
            .iter()
            .filter(|e| e.winner.is_some() && e.winner != e.previous_leader)
        {
            let Some(old) = e.previous_leader.and_then(|m| m.id) else {
                continue;
            };
            let Some(d) = e
                .disks
                .iter()
                .find(|d| d.member.id == Some(old) && d.slowest_fsync_ns >= r.min_fsync)
            else {
                continue;
            };
            finding(
                    "raft-disk-stall",
                    r.severity,
                    format!("{old:x}"),
                    format!(
                        "{old:x} lost leadership in term {} after a WAL sync of {}: a slow disk stalls the leader's heartbeats until the followers elect another",
                        e.term,
                        human_duration_ns(d.slowest_fsync_ns)
                    ),
                    vec![
                        evidence(d.slowest_start_ns, "fsync", format!("WAL sync of {}", human_duration_ns(d.slowest_fsync_ns))),
                        evidence(e.start_ns, "election", format!("term {} began", e.term)),
                    ],
                );
        }
    }
    lagging(report, &rules.raft_lagging_follower, &mut finding);
    let r = &rules.raft_repeated_snapshots;
    if r.enabled {
        let mut by_target: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for e in &report.events {
            if let RaftEvent::Snapshot { ts_ns, to, .. } = e {
                by_target.entry(to.to_string()).or_default().push(*ts_ns);
            }
        }
        for (to, times) in by_target {
            let threshold = usize::try_from(r.threshold).unwrap_or(usize::MAX);
            let hit = (0..times.len()).find(|&i| {
                let until = times[i].saturating_add(r.window);
                times[i..].iter().take_while(|t| **t <= until).count() >= threshold
            });
            if let Some(i) = hit {
                let n = times.len() - i;
                finding(
                        "raft-repeated-snapshots",
                        r.severity,
                        to.clone(),
                        format!(
                            "{to} was sent {} from the leader: it keeps falling behind the log, or losing its data",
                            plural(n as u64, "snapshot")
                        ),
                        times[i..].iter().map(|&t| evidence(t, "snapshot", format!("to {to}"))).collect(),
                    );
            }
        }
    }
}

/// Why leadership moved, as far as the capture shows: a transfer, the old leader's
/// process ending, a long WAL sync of it, or it going silent (and coming back stale).
fn leader_change_cause(report: &RaftReport, e: &Election, min_fsync: u64) -> String {
    if e.began == TermStart::Transfer {
        return "the leader handed over (move-leader, or a leader shutting down)".into();
    }
    let Some(old) = e.previous_leader else {
        return "the previous leader was not seen".into();
    };
    let lookback = e.start_ns.saturating_sub(10_000_000_000);
    let ended = report.events.iter().find_map(|ev| match ev {
        RaftEvent::Process {
            ts_ns,
            member,
            what,
            ..
        } if *member == Some(old) && (lookback..=e.start_ns).contains(ts_ns) => Some(what),
        _ => None,
    });
    if let Some(what) = ended {
        return format!("the leader's process ended ({what})");
    }
    if let Some(d) = e
        .disks
        .iter()
        .find(|d| d.member.id == old.id && d.slowest_fsync_ns >= min_fsync)
    {
        return format!(
            "the leader's WAL sync took {} just before",
            human_duration_ns(d.slowest_fsync_ns)
        );
    }
    let stale = report.events.iter().any(|ev| {
        matches!(ev, RaftEvent::StaleLeader { member, ts_ns, .. }
            if *member == old && *ts_ns >= e.start_ns)
    });
    if stale {
        return format!("{old} went silent and came back still leading its old term: it was paused or cut off, not its disk");
    }
    if e.unanswered.contains(&old) {
        return format!("{old} went silent (stopped, overloaded or cut off)");
    }
    "the cause is not visible in the capture".into()
}

/// Followers behind by entries or slow to acknowledge.
fn lagging(
    report: &RaftReport,
    r: &super::rules::LaggingRule,
    finding: &mut impl FnMut(&'static str, Severity, String, String, Vec<Evidence>),
) {
    if !r.enabled {
        return;
    }
    for f in &report.followers {
        let p99 = f.ack.p99_ns.unwrap_or(0);
        if f.max_lag_entries < r.max_lag_entries && p99 < r.ack_p99 {
            continue;
        }
        finding(
            "raft-lagging-follower",
            r.severity,
            f.follower.to_string(),
            format!(
                "{} fell behind leader {}: up to {} behind, appends acknowledged in {} at p99: a slow disk or an overloaded member",
                f.follower,
                f.leader,
                plural(f.max_lag_entries, "entry"),
                human_duration_ns(p99)
            ),
            [
                (f.max_lag_at_ns, format!("{} behind", plural(f.max_lag_entries, "entry"))),
                (f.slowest_ack_at_ns, format!("slowest ack, of {} appends", f.appends)),
            ]
            .into_iter()
            .filter_map(|(at, detail)| {
                Some(Evidence {
                    ts_ns: at?,
                    stream: "raft".into(),
                    method: "replication".into(),
                    detail,
                })
            })
            .collect(),
        );
    }
}

//! etcd's health, against etcd's own guidance: WAL fsyncs slower than 10 ms at p99 (the
//! disk etcd needs), any fsync of a second or more (etcd's "slow fdatasync"), requests
//! over 100 ms (etcd's "apply request took too long"), and applies held behind a
//! backend commit. Each finding is about a member (its id, or `pid:N`; the server
//! address when the process is not known) and carries the fsyncs or calls involved.

use std::collections::HashMap;

use super::window::{Burst, Sample};
use super::{plural, span, Ctx, Evidence, Observation, Opening, Severity, Volume};
use crate::analyze::correlate::CorrelatedCall;
use crate::analyze::disk::DiskPhase;
use crate::analyze::phases::{phases_of, BACKEND_WAIT};
use crate::analyze::rpc::RecordKind;
use crate::capture::FileKind;
use crate::units::human_duration_ns;

/// Members (or servers) tracked at most; beyond, the state starts over.
const MAX_TRACKED: usize = 4096;
/// WAL fsync durations kept per member and window (a bound on memory: p99 of the
/// first ones).
const MAX_WINDOW_SYNCS: usize = 100_000;

/// One member's WAL fsyncs in the current window.
#[derive(Debug, Default)]
struct SyncWindow {
    start_ns: u64,
    durations: Vec<u64>,
    /// The slowest few, as evidence.
    slowest: Vec<(u64, Evidence)>,
}

#[derive(Default)]
pub struct Health {
    wal: HashMap<String, SyncWindow>,
    slow_requests: HashMap<String, Burst>,
    backend_waits: HashMap<String, Burst>,
}

/// Counts one occurrence for `who`; opens (or extends) the finding when the rule's
/// threshold is reached within its window.
#[allow(clippy::too_many_arguments)]
fn counted(
    state: &mut HashMap<String, Burst>,
    rule: &'static str,
    severity: Severity,
    window: u64,
    threshold: u64,
    who: String,
    obs: Observation,
    ctx: &mut Ctx,
    summarize: super::Summarize,
) {
    if ctx.episodes.is_open(rule, &who) {
        ctx.episodes.extend(rule, &who, obs);
        return;
    }
    if state.len() >= MAX_TRACKED && !state.contains_key(&who) {
        state.clear();
    }
    let limit = ctx.evidence_limit();
    let sample = Sample {
        ts_ns: obs.ts_ns,
        end_ns: obs.end_ns,
        bytes: 0,
        keys: 0,
    };
    let burst = state.entry(who.clone()).or_default();
    if let Some(fired) = burst.hit(sample, obs.evidence, threshold, window, limit) {
        let how = Opening {
            rule,
            severity,
            client: who,
            quiet_ns: window,
            with_volume: false,
            summarize,
        };
        ctx.open_fired(how, fired);
    }
}

fn sync_evidence(start_ns: u64, file: &str, call: &str, took: u64) -> Evidence {
    Evidence {
        ts_ns: start_ns,
        stream: file.to_string(),
        method: call.to_string(),
        detail: format!("{call} {file} took {}", human_duration_ns(took)),
    }
}

impl Health {
    /// A disk phase: syncs are judged.
    pub fn phase(&mut self, p: &DiskPhase, ctx: &mut Ctx) {
        let DiskPhase::Sync {
            start_ns,
            end_ns,
            member,
            file,
            kind,
            call,
            ..
        } = p
        else {
            return;
        };
        let took = end_ns.saturating_sub(*start_ns);
        let who = member.to_string();
        let stall = &ctx.rules.rules.disk_fsync_stall;
        if stall.enabled && took >= stall.min && matches!(kind, FileKind::Wal | FileKind::Db) {
            let how = Opening {
                rule: "disk-fsync-stall",
                severity: stall.severity,
                client: who.clone(),
                quiet_ns: 60_000_000_000,
                with_volume: false,
                summarize: Box::new(|f| {
                    format!(
                        "{} of {} took a second or more (within {}): etcd logs \"slow fdatasync\"; while the WAL syncs, \
                         writes wait and the leader's heartbeats stall. The disk is too slow or saturated",
                        plural(f.events, "fsync"),
                        f.client,
                        span(f)
                    )
                }),
            };
            let obs = Observation {
                ts_ns: *start_ns,
                end_ns: *end_ns,
                evidence: sync_evidence(*start_ns, file, call, took),
                volume: Volume::default(),
            };
            ctx.episodes.single(how, obs, ctx.out);
        }
        if *kind != FileKind::Wal {
            return;
        }
        let rule = &ctx.rules.rules.disk_wal_fsync_slow;
        if !rule.enabled {
            return;
        }
        if self.wal.len() >= MAX_TRACKED && !self.wal.contains_key(&who) {
            self.wal.clear();
        }
        let window = rule.window;
        let w = self.wal.entry(who.clone()).or_insert_with(|| SyncWindow {
            start_ns: *start_ns,
            ..SyncWindow::default()
        });
        if start_ns.saturating_sub(w.start_ns) >= window {
            let done = std::mem::replace(
                w,
                SyncWindow {
                    start_ns: *start_ns,
                    ..SyncWindow::default()
                },
            );
            judge_window(&who, done, ctx);
        }
        let Some(w) = self.wal.get_mut(&who) else {
            return;
        };
        if w.durations.len() < MAX_WINDOW_SYNCS {
            w.durations.push(took);
        }
        let limit = ctx.evidence_limit().clamp(1, 5);
        if w.slowest.len() < limit || w.slowest.iter().any(|(d, _)| *d < took) {
            w.slowest
                .push((took, sync_evidence(*start_ns, file, call, took)));
            w.slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
            w.slowest.truncate(limit);
        }
    }

    /// A settled call: slow requests, and applies held by a backend commit.
    pub fn call(&mut self, c: &CorrelatedCall, ctx: &mut Ctx) {
        let call = &c.call;
        if call.kind != RecordKind::Call {
            return;
        }
        // Whose: the member that wrote the entry, else the server that answered.
        let who = c
            .wal
            .as_ref()
            .map_or_else(|| call.server.to_string(), |w| w.member.to_string());
        let rules = &ctx.rules.rules;
        let slow = &rules.slow_request;
        let streaming = matches!(
            call.method_name(),
            "Watch" | "LeaseKeepAlive" | "Snapshot" | "Observe" | "Campaign" | "Lock"
        );
        if let (true, false, Some(lat)) = (slow.enabled, streaming, call.latency_ns) {
            if lat >= slow.min {
                let min = slow.min;
                let obs = Observation {
                    ts_ns: call.ts_ns,
                    end_ns: call.end_ns,
                    evidence: Evidence::of_call(call, format!("took {}", human_duration_ns(lat))),
                    volume: Volume::default(),
                };
                counted(
                    &mut self.slow_requests,
                    "slow-request",
                    slow.severity,
                    slow.window,
                    slow.threshold,
                    who.clone(),
                    obs,
                    ctx,
                    Box::new(move |f| {
                        format!(
                            "{} served by {} took {} or more (within {}): etcd logs \"apply request took too long\" \
                             from 100 ms; look at the disk (timeline --slow shows the phase that took the time)",
                            plural(f.events, "request"),
                            f.client,
                            human_duration_ns(min),
                            span(f)
                        )
                    }),
                );
            }
        }
        let rule = &ctx.rules.rules.apply_behind_backend_commit;
        if !rule.enabled {
            return;
        }
        // Only a write linked to a backend commit can have waited behind one.
        if c.wal.as_ref().is_none_or(|w| w.backend_commit.is_none()) {
            return;
        }
        let Some(wait) = phases_of(c).into_iter().find(|p| p.name == BACKEND_WAIT) else {
            return;
        };
        if wait.duration_ns() < rule.min_wait {
            return;
        }
        let commit = c.wal.as_ref().and_then(|w| w.backend_commit);
        let detail = match commit {
            Some(b) => format!(
                "waited {} behind a backend commit of {} (fdatasync {})",
                human_duration_ns(wait.duration_ns()),
                plural(b.writes, "write"),
                human_duration_ns(b.sync_ns)
            ),
            None => format!("waited {}", human_duration_ns(wait.duration_ns())),
        };
        let obs = Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, detail),
            volume: Volume::default(),
        };
        let (severity, window, threshold) = (rule.severity, rule.window, rule.threshold);
        counted(
            &mut self.backend_waits,
            "apply-behind-backend-commit",
            severity,
            window,
            threshold,
            who,
            obs,
            ctx,
            Box::new(|f| {
                format!(
                    "{} on {} waited for a backend commit before they could apply (within {}): bbolt's commit \
                     and its fdatasync hold the backend's lock; a slow disk or large transactions",
                    plural(f.events, "write"),
                    f.client,
                    span(f)
                )
            }),
        );
    }

    /// The capture ended: the last windows are judged.
    pub fn finish(&mut self, ctx: &mut Ctx) {
        let mut windows: Vec<(String, SyncWindow)> = self.wal.drain().collect();
        windows.sort_by_key(|(_, w)| w.start_ns);
        for (who, w) in windows {
            judge_window(&who, w, ctx);
        }
    }
}

/// One window of a member's WAL fsyncs: p99 (over enough syncs) or p50 at or above the
/// rule's.
fn judge_window(who: &str, mut w: SyncWindow, ctx: &mut Ctx) {
    let rule = &ctx.rules.rules.disk_wal_fsync_slow;
    let n = w.durations.len();
    if (n as u64) < rule.min_syncs.min(rule.min_syncs_p99).max(1) {
        return;
    }
    w.durations.sort_unstable();
    let quantile = |q: f64| w.durations[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    let (p50, p99) = (quantile(0.5), quantile(0.99));
    let slow_p99 = n as u64 >= rule.min_syncs_p99 && p99 >= rule.p99;
    let slow_p50 = n as u64 >= rule.min_syncs && p50 >= rule.p50;
    if !slow_p99 && !slow_p50 {
        return;
    }
    let (guidance, window) = (rule.p99, rule.window);
    let how = Opening {
        rule: "disk-wal-fsync-slow",
        severity: rule.severity,
        client: who.to_string(),
        quiet_ns: window,
        with_volume: false,
        summarize: Box::new(move |f| {
            format!(
                "WAL fsyncs of {} were slow (for {}): p50 {}, p99 {} over {n} syncs in the first \
                 window of {}, where etcd needs p99 under {}; every write waits on this fsync. \
                 A slow, shared or throttled disk",
                f.client,
                span(f),
                human_duration_ns(p50),
                human_duration_ns(p99),
                human_duration_ns(window),
                human_duration_ns(guidance)
            )
        }),
    };
    let end = w
        .slowest
        .iter()
        .map(|(_, e)| e.ts_ns)
        .max()
        .unwrap_or(w.start_ns);
    let observe = |ts_ns: u64, evidence: Evidence| Observation {
        ts_ns,
        end_ns: end,
        evidence,
        volume: Volume::default(),
    };
    let mut slowest = w.slowest.into_iter().map(|(_, e)| e);
    let Some(first) = slowest.next() else {
        return;
    };
    ctx.episodes
        .single(how, observe(w.start_ns, first), ctx.out);
    for e in slowest {
        ctx.episodes
            .extend("disk-wal-fsync-slow", who, observe(e.ts_ns, e));
    }
}

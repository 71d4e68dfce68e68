//! What an API-mode capture (`record --mode api`) says, in the terms the analyses use:
//! its watch's writes, leader changes seen in the members' Status, membership changes,
//! alarms, polls that failed, and per poll what /metrics counted since the poll before
//! (WAL fsyncs and backend commits as histogram buckets, calls per method). timeline,
//! diff and detect read these [`ApiFact`]s; what such a capture cannot show (client
//! identities, reads' keys, per-call latency, syscalls) is said by [`MISSING`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::capture::api::{ApiEvent, ApiMember, ApiObservation, KeyChange, Metric};

/// What an API-mode capture does not hold, for the analyses to say.
pub const MISSING: &str = "an API-mode capture (record --mode api) has no client \
identities, no reads' keys, no per-call latency and no syscalls: it holds the keyspace's \
writes, the members' Status, the member list and /metrics";

/// The WAL fsync and backend commit histograms in etcd's /metrics.
const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds_bucket";
const BACKEND_COMMIT: &str = "etcd_disk_backend_commit_duration_seconds_bucket";
const HANDLED: &str = "grpc_server_handled_total";
const QUOTA: &str = "etcd_server_quota_backend_bytes";

/// Counts of a Prometheus histogram over a stretch of time: per bucket upper bound
/// (seconds, `+Inf` last), how many observations fell at or below it and above the
/// bound before.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Buckets {
    pub bounds: Vec<(f64, u64)>,
}

impl Buckets {
    pub fn count(&self) -> u64 {
        self.bounds.iter().map(|(_, n)| n).sum()
    }

    /// The lower and upper bound (seconds) of the bucket the `q` quantile falls in;
    /// `None` when empty.
    fn bucket_of(&self, q: f64) -> Option<(f64, f64)> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let (mut seen, mut lower) = (0, 0.0);
        for &(le, n) in &self.bounds {
            seen += n;
            if seen >= rank {
                return Some((lower, le));
            }
            lower = le;
        }
        Some((lower, f64::INFINITY))
    }

    /// The upper bound (ns) of the bucket the `q` quantile falls in; `None` when empty,
    /// or when it falls above the largest finite bound.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        let (_, upper) = self.bucket_of(q)?;
        upper.is_finite().then_some((upper * 1e9) as u64)
    }

    /// The lower bound (ns) of the bucket the `q` quantile falls in: the quantile is
    /// surely at least this; `None` when empty.
    pub fn quantile_lower_ns(&self, q: f64) -> Option<u64> {
        self.bucket_of(q).map(|(lower, _)| (lower * 1e9) as u64)
    }

    /// Observations above `min_s` seconds (those in buckets whose lower bound is at or
    /// past it).
    pub fn at_least(&self, min_s: f64) -> u64 {
        let mut lower = 0.0;
        let mut n = 0;
        for &(le, c) in &self.bounds {
            if lower >= min_s {
                n += c;
            }
            lower = le;
        }
        n
    }

    /// Each observation into `h` at its bucket's upper bound (those past the last bound
    /// at twice it): what the histograms of the other analyses can hold of it.
    pub fn record_into(&self, h: &mut crate::analyze::histogram::Histogram) {
        let mut last = 0.0;
        for &(le, n) in &self.bounds {
            let at = if le.is_finite() { le } else { last * 2.0 };
            last = at;
            h.record_n((at * 1e9) as u64, n);
        }
    }

    pub fn add(&mut self, other: &Buckets) {
        if self.bounds.is_empty() {
            self.bounds = other.bounds.clone();
            return;
        }
        for ((le, n), (ole, on)) in self.bounds.iter_mut().zip(&other.bounds) {
            if le == ole {
                *n += on;
            }
        }
    }
}

/// One thing an API-mode capture shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum ApiFact {
    /// A write of the keyspace (the watch's change).
    Write { ts_ns: u64, change: KeyChange },
    /// The leader the members report changed (or was first seen).
    Leader {
        ts_ns: u64,
        endpoint: String,
        leader: u64,
        term: u64,
        previous: Option<u64>,
    },
    /// A member reports no leader.
    NoLeader {
        ts_ns: u64,
        endpoint: String,
        term: u64,
    },
    /// The member list changed (the first list: every member added).
    Members {
        ts_ns: u64,
        added: Vec<ApiMember>,
        removed: Vec<ApiMember>,
        first: bool,
    },
    /// A member's alarms or errors changed.
    Alarm {
        ts_ns: u64,
        endpoint: String,
        errors: Vec<String>,
    },
    /// The backend's size against its quota: when first known, and when it moved by a
    /// tenth since told.
    DbSize {
        ts_ns: u64,
        endpoint: String,
        size: i64,
        in_use: i64,
        quota: i64,
    },
    /// A poll or the watch failed.
    Failed {
        ts_ns: u64,
        endpoint: String,
        what: String,
        error: String,
    },
    /// What /metrics counted since this endpoint's poll before.
    Interval {
        ts_ns: u64,
        /// When the poll before was taken.
        since_ns: u64,
        endpoint: String,
        wal_fsync: Buckets,
        backend_commit: Buckets,
        /// Calls handled per method (`/etcdserverpb.KV/Put`), by grpc-status code.
        calls: BTreeMap<String, BTreeMap<u32, u64>>,
        /// Leader changes the member counted.
        leader_changes: u64,
    },
}

impl ApiFact {
    pub fn ts_ns(&self) -> u64 {
        match self {
            ApiFact::Write { ts_ns, .. }
            | ApiFact::Leader { ts_ns, .. }
            | ApiFact::NoLeader { ts_ns, .. }
            | ApiFact::Members { ts_ns, .. }
            | ApiFact::Alarm { ts_ns, .. }
            | ApiFact::DbSize { ts_ns, .. }
            | ApiFact::Failed { ts_ns, .. }
            | ApiFact::Interval { ts_ns, .. } => *ts_ns,
        }
    }

    /// The timeline's label and line for people.
    pub fn describe(&self) -> (&'static str, String) {
        use crate::units::{human_bytes, human_duration_ns};
        let member = |id: &u64| format!("{id:x}");
        match self {
            ApiFact::Write { change, .. } => ("write", describe_change(change)),
            ApiFact::Leader {
                leader,
                term,
                previous,
                endpoint,
                ..
            } => {
                let text = match previous {
                    None => format!("leader {} in term {term} (as {endpoint} reports)", member(leader)),
                    Some(p) if p == leader => format!(
                        "leader {} again, in a new term {term}: an election (as {endpoint} reports)",
                        member(leader)
                    ),
                    Some(p) => format!(
                        "leader changed from {} to {} in term {term} (as {endpoint} reports)",
                        member(p),
                        member(leader)
                    ),
                };
                ("raft", text)
            }
            ApiFact::NoLeader { endpoint, term, .. } => {
                ("raft", format!("{endpoint} has no leader (term {term})"))
            }
            ApiFact::Members {
                added,
                removed,
                first,
                ..
            } => {
                let names = |v: &[ApiMember]| {
                    v.iter()
                        .map(|m| {
                            let learner = if m.is_learner { " (learner)" } else { "" };
                            format!("{} {}{learner}", m.name, member(&m.id))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let text = if *first {
                    format!("members: {}", names(added))
                } else {
                    let mut parts = Vec::new();
                    if !added.is_empty() {
                        parts.push(format!("added {}", names(added)));
                    }
                    if !removed.is_empty() {
                        parts.push(format!("removed {}", names(removed)));
                    }
                    format!("membership changed: {}", parts.join("; "))
                };
                ("member", text)
            }
            ApiFact::Alarm {
                endpoint, errors, ..
            } => (
                "alarm",
                if errors.is_empty() {
                    format!("{endpoint} reports no alarm any more")
                } else {
                    format!("{endpoint} reports {}", errors.join("; "))
                },
            ),
            ApiFact::DbSize {
                endpoint,
                size,
                in_use,
                quota,
                ..
            } => (
                "db",
                format!(
                    "{endpoint}: backend {} ({} in use) of a {} quota",
                    human_bytes(u64::try_from(*size).unwrap_or(0)),
                    human_bytes(u64::try_from(*in_use).unwrap_or(0)),
                    human_bytes(u64::try_from(*quota).unwrap_or(0))
                ),
            ),
            ApiFact::Failed {
                endpoint,
                what,
                error,
                ..
            } => ("FAILED", format!("{what} of {endpoint}: {error}")),
            ApiFact::Interval {
                endpoint,
                wal_fsync,
                backend_commit,
                calls,
                ts_ns,
                since_ns,
                ..
            } => {
                let q = |b: &Buckets, q: f64| {
                    b.quantile_ns(q)
                        .map_or("above the largest bucket".to_string(), |v| {
                            format!("≤ {}", human_duration_ns(v))
                        })
                };
                let mut parts = Vec::new();
                let total = |codes: &BTreeMap<u32, u64>| codes.values().sum::<u64>();
                let n: u64 = calls.values().map(total).sum();
                if n > 0 {
                    let mut top: Vec<(&String, u64)> =
                        calls.iter().map(|(m, c)| (m, total(c))).collect();
                    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    let list: Vec<String> = top
                        .iter()
                        .take(4)
                        .map(|(m, n)| format!("{n} {}", m.rsplit('/').next().unwrap_or(m)))
                        .collect();
                    parts.push(format!("{n} calls ({})", list.join(", ")));
                }
                if wal_fsync.count() > 0 {
                    parts.push(format!(
                        "{} WAL fsyncs p99 {}",
                        wal_fsync.count(),
                        q(wal_fsync, 0.99)
                    ));
                }
                if backend_commit.count() > 0 {
                    parts.push(format!(
                        "{} backend commits p99 {}",
                        backend_commit.count(),
                        q(backend_commit, 0.99)
                    ));
                }
                if parts.is_empty() {
                    parts.push("idle".to_string());
                }
                (
                    "stats",
                    format!(
                        "{endpoint} over {}: {}",
                        human_duration_ns(ts_ns.saturating_sub(*since_ns)),
                        parts.join(", ")
                    ),
                )
            }
        }
    }
}

/// A write as people read it: "put /a/b 120 B (was 100 B, revision 42)".
pub fn describe_change(c: &KeyChange) -> String {
    use crate::decode::etcdpb::display_key;
    use crate::units::human_bytes;
    let key = display_key(&c.key);
    if c.delete {
        return format!("delete {key} (revision {})", c.revision);
    }
    let was = c.prev_value_bytes.map_or("new".to_string(), |b| {
        format!("was {}", human_bytes(u64::from(b)))
    });
    let lease = if c.lease != 0 {
        format!(", lease {:x}", c.lease)
    } else {
        String::new()
    };
    format!(
        "put {key} {} ({was}, revision {}{lease})",
        human_bytes(u64::from(c.value_bytes)),
        c.revision
    )
}

/// The counters of one /metrics poll that intervals are the differences of.
#[derive(Debug, Clone, Default)]
struct Counters {
    ts_ns: u64,
    wal_fsync: Vec<(f64, u64)>,
    backend_commit: Vec<(f64, u64)>,
    calls: BTreeMap<String, BTreeMap<u32, u64>>,
    leader_changes: u64,
    /// Only for telling a restart: a counter that went down.
    proposals_failed: u64,
    /// The backend quota, a gauge.
    quota: Option<i64>,
}

/// API events in, facts out.
#[derive(Default)]
pub struct ApiState {
    leader: Option<(u64, u64)>,
    no_leader: HashMap<String, bool>,
    members: Option<Vec<ApiMember>>,
    errors: HashMap<String, Vec<String>>,
    counters: HashMap<String, Counters>,
    quota: HashMap<String, i64>,
    /// The backend size last told per endpoint: told again when it moved by a tenth.
    db_told: HashMap<String, i64>,
}

impl ApiState {
    pub fn push(&mut self, ev: &ApiEvent, out: &mut Vec<ApiFact>) {
        let ts_ns = ev.ts_ns;
        let endpoint = &ev.endpoint;
        match &ev.observed {
            ApiObservation::Change(change) => out.push(ApiFact::Write {
                ts_ns,
                change: change.clone(),
            }),
            ApiObservation::Status(s) => {
                if s.leader == 0 {
                    let was = self.no_leader.insert(endpoint.clone(), true);
                    if was != Some(true) {
                        out.push(ApiFact::NoLeader {
                            ts_ns,
                            endpoint: endpoint.clone(),
                            term: s.raft_term,
                        });
                    }
                } else {
                    self.no_leader.insert(endpoint.clone(), false);
                    // The first leader seen, or a newer term's (a re-election of the same
                    // member too); a member's stale view of an older term is not news.
                    let news = self.leader.is_none_or(|(_, term)| s.raft_term > term);
                    if news {
                        out.push(ApiFact::Leader {
                            ts_ns,
                            endpoint: endpoint.clone(),
                            leader: s.leader,
                            term: s.raft_term,
                            previous: self.leader.map(|(l, _)| l),
                        });
                        self.leader = Some((s.leader, s.raft_term));
                    }
                }
                let before = self.errors.entry(endpoint.clone()).or_default();
                if *before != s.errors {
                    *before = s.errors.clone();
                    out.push(ApiFact::Alarm {
                        ts_ns,
                        endpoint: endpoint.clone(),
                        errors: s.errors.clone(),
                    });
                }
                let told = self.db_told.get(endpoint).copied();
                let moved = told.is_none_or(|t| (s.db_size - t).abs() >= (t / 10).max(1));
                if let (Some(&quota), true) = (self.quota.get(endpoint), moved) {
                    self.db_told.insert(endpoint.clone(), s.db_size);
                    out.push(ApiFact::DbSize {
                        ts_ns,
                        endpoint: endpoint.clone(),
                        size: s.db_size,
                        in_use: s.db_size_in_use,
                        quota,
                    });
                }
            }
            ApiObservation::Members(list) => {
                let first = self.members.is_none();
                let before = self.members.take().unwrap_or_default();
                let added: Vec<ApiMember> = list
                    .members
                    .iter()
                    .filter(|m| {
                        !before
                            .iter()
                            .any(|b| b.id == m.id && b.is_learner == m.is_learner)
                    })
                    .cloned()
                    .collect();
                let removed: Vec<ApiMember> = before
                    .iter()
                    .filter(|b| {
                        !list
                            .members
                            .iter()
                            .any(|m| m.id == b.id && m.is_learner == b.is_learner)
                    })
                    .cloned()
                    .collect();
                if first || !added.is_empty() || !removed.is_empty() {
                    out.push(ApiFact::Members {
                        ts_ns,
                        added,
                        removed,
                        first,
                    });
                }
                self.members = Some(list.members.clone());
            }
            ApiObservation::Metrics(m) => {
                let now = counters_of(ts_ns, &m.samples);
                if let Some(q) = now.quota {
                    self.quota.insert(endpoint.clone(), q);
                }
                if let Some(before) = self.counters.get(endpoint) {
                    out.push(interval(endpoint, before, &now));
                }
                self.counters.insert(endpoint.clone(), now);
            }
            ApiObservation::Failed { what, error } => out.push(ApiFact::Failed {
                ts_ns,
                endpoint: endpoint.clone(),
                what: what.clone(),
                error: error.clone(),
            }),
        }
    }
}

fn counters_of(ts_ns: u64, samples: &[Metric]) -> Counters {
    let mut c = Counters {
        ts_ns,
        ..Counters::default()
    };
    for s in samples {
        let value = s.value();
        let count = if value.is_finite() && value >= 0.0 {
            value as u64
        } else {
            0
        };
        match s.name.as_str() {
            WAL_FSYNC | BACKEND_COMMIT => {
                let Some(le) = s.label("le").and_then(bound) else {
                    continue;
                };
                let list = if s.name == WAL_FSYNC {
                    &mut c.wal_fsync
                } else {
                    &mut c.backend_commit
                };
                list.push((le, count));
            }
            HANDLED => {
                let (Some(service), Some(method)) =
                    (s.label("grpc_service"), s.label("grpc_method"))
                else {
                    continue;
                };
                let code = code_number(s.label("grpc_code").unwrap_or(""));
                *c.calls
                    .entry(format!("/{service}/{method}"))
                    .or_default()
                    .entry(code)
                    .or_default() += count;
            }
            "etcd_server_leader_changes_seen_total" => c.leader_changes = count,
            "etcd_server_proposals_failed_total" => c.proposals_failed = count,
            QUOTA => c.quota = Some(value as i64),
            _ => {}
        }
    }
    for list in [&mut c.wal_fsync, &mut c.backend_commit] {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    c
}

/// A grpc-go code name (`DeadlineExceeded`) as its number; 2 (UNKNOWN) for others.
fn code_number(name: &str) -> u32 {
    let plain = |s: &str| s.replace('_', "").to_ascii_lowercase();
    (0..=16)
        .find(|&c| plain(crate::decode::grpc::status_code_name(c)) == plain(name))
        .unwrap_or(2)
}

fn bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" => Some(f64::INFINITY),
        v => v.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// The difference of two polls' counters: cumulative buckets become per-bucket counts.
/// When any counter went down, etcd restarted in between: everything counts from 0.
fn interval(endpoint: &str, before: &Counters, now: &Counters) -> ApiFact {
    let fell = |b: &[(f64, u64)], n: &[(f64, u64)]| {
        b.len() != n.len() || b.iter().zip(n).any(|(x, y)| x.0 != y.0 || y.1 < x.1)
    };
    let restarted = fell(&before.wal_fsync, &now.wal_fsync)
        || fell(&before.backend_commit, &now.backend_commit)
        || now.leader_changes < before.leader_changes
        || now.proposals_failed < before.proposals_failed
        || before.calls.iter().any(|(m, codes)| {
            codes.iter().any(|(c, &n)| {
                now.calls
                    .get(m)
                    .and_then(|x| x.get(c))
                    .copied()
                    .unwrap_or(0)
                    < n
            })
        });
    let diff = |b: u64, n: u64| if restarted { n } else { n.saturating_sub(b) };
    let buckets = |b: &[(f64, u64)], n: &[(f64, u64)]| {
        let mut prev = 0;
        let mut out = Vec::with_capacity(n.len());
        for (i, &(le, cum)) in n.iter().enumerate() {
            let delta = diff(b.get(i).map_or(0, |x| x.1), cum);
            out.push((le, delta.saturating_sub(prev)));
            prev = delta;
        }
        Buckets { bounds: out }
    };
    let calls = now
        .calls
        .iter()
        .map(|(m, codes)| {
            let was = before.calls.get(m);
            let codes: BTreeMap<u32, u64> = codes
                .iter()
                .map(|(code, &n)| {
                    let b = was.and_then(|w| w.get(code)).copied().unwrap_or(0);
                    (*code, diff(b, n))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            (m.clone(), codes)
        })
        .filter(|(_, codes)| !codes.is_empty())
        .collect();
    ApiFact::Interval {
        ts_ns: now.ts_ns,
        since_ns: before.ts_ns,
        endpoint: endpoint.to_string(),
        wal_fsync: buckets(&before.wal_fsync, &now.wal_fsync),
        backend_commit: buckets(&before.backend_commit, &now.backend_commit),
        calls,
        leader_changes: diff(before.leader_changes, now.leader_changes),
    }
}

#[cfg(test)]
mod tests;

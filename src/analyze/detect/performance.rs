//! Performance attacks: expensive queries (repeated unbounded ranges and count-only
//! scans, huge transactions), watch and lease storms, defragmentation and repeated
//! compaction, and one client's writes taking most of the WAL's fsync time.

use std::collections::HashMap;
use std::net::IpAddr;

use super::auth::counted;
use super::bulk::{describe_range_call, range_request, response_keys};
use super::rules::CountRule;
use super::window::{Burst, Fired, PerClient, Tumbling};
use super::{client_ip, plural, span, Ctx, Evidence, Observation, Opening, Summarize, Volume};
use crate::analyze::correlate::CorrelatedCall;
use crate::analyze::rpc::{MessageDirection, RecordKind, RpcBody, RpcCall};
use crate::decode::etcdpb::kv::request_op::Request as TxnOp;
use crate::decode::etcdpb::kv::RequestOp;
use crate::decode::etcdpb::{describe_range, watch_request, EtcdMessage};
use crate::units::human_duration_ns;

#[derive(Debug, Default)]
struct FsyncTally {
    fsync_ns: u64,
    writes: u64,
    evidence: Vec<Evidence>,
}

pub struct Performance {
    unbounded: PerClient<Burst>,
    count_only: PerClient<Burst>,
    watches: PerClient<Burst>,
    leases: PerClient<Burst>,
    compactions: PerClient<Burst>,
    fsync: Tumbling<FsyncTally>,
}

/// Operations in a transaction: both branches, nested transactions counted with theirs.
pub fn txn_ops(ops: &[RequestOp], depth: u32) -> u64 {
    ops.iter().fold(0u64, |n, op| {
        let nested = match &op.request {
            Some(TxnOp::RequestTxn(t)) if depth < 32 => {
                txn_ops(&t.success, depth + 1).saturating_add(txn_ops(&t.failure, depth + 1))
            }
            _ => 0,
        };
        n.saturating_add(1).saturating_add(nested)
    })
}

fn obs(call: &RpcCall, detail: String) -> Observation {
    Observation {
        ts_ns: call.ts_ns,
        end_ns: call.end_ns,
        evidence: Evidence::of_call(call, detail),
        volume: Volume {
            rpcs: 1,
            bytes: call.response_bytes,
            keys: response_keys(call),
        },
    }
}

fn count(
    state: &mut PerClient<Burst>,
    id: &'static str,
    rule: &CountRule,
    client: IpAddr,
    o: Observation,
    ctx: &mut Ctx,
    summarize: Summarize,
) {
    if rule.enabled {
        counted(
            state,
            id,
            rule.severity,
            rule.window,
            rule.threshold,
            client,
            o,
            ctx,
            summarize,
        );
    }
}

impl Performance {
    pub fn new(rules: &super::Rules) -> Performance {
        Performance {
            unbounded: PerClient::default(),
            count_only: PerClient::default(),
            watches: PerClient::default(),
            leases: PerClient::default(),
            compactions: PerClient::default(),
            fsync: Tumbling::new(rules.rules.fsync_dominance.window),
        }
    }

    pub fn call(&mut self, c: &CorrelatedCall, ctx: &mut Ctx) {
        let call = &c.call;
        let client = client_ip(call);
        let rules = &ctx.rules.rules;
        if let Some((start, end, totals)) = self.fsync.roll(call.ts_ns) {
            judge_fsync(start, end, totals, ctx);
        }
        if let (Some(w), Some(op)) = (&c.wal, c.op) {
            if let (Some(ns), true) = (w.fsync_ns, rules.fsync_dominance.enabled) {
                let limit = ctx.evidence_limit();
                if let Some(t) = self.fsync.entry(client) {
                    t.fsync_ns = t.fsync_ns.saturating_add(ns);
                    t.writes += 1;
                    if t.evidence.len() < limit {
                        t.evidence.push(Evidence::of_call(
                            call,
                            format!(
                                "{op}: WAL entry {}/{}, fsync {}",
                                w.term,
                                w.index,
                                human_duration_ns(ns)
                            ),
                        ));
                    }
                }
            }
        }
        let body = call.request.as_ref().and_then(RpcBody::message);
        match (call.method_name(), call.kind) {
            ("Range", RecordKind::Call) => {
                let Some(req) = range_request(call) else {
                    return;
                };
                if req.range_end.is_empty() {
                    return;
                }
                if req.count_only {
                    count(
                        &mut self.count_only,
                        "perf-count-only-scans",
                        &rules.perf_count_only_scans,
                        client,
                        obs(
                            call,
                            format!("count {}", describe_range(&req.key, &req.range_end)),
                        ),
                        ctx,
                        Box::new(|f| {
                            format!(
                                "{} ran {} within {}: each one walks every key in its range, so many of them load the member",
                                f.client,
                                plural(f.events, "count-only scan"),
                                span(f)
                            )
                        }),
                    );
                } else if req.limit == 0 {
                    count(
                        &mut self.unbounded,
                        "perf-unbounded-range",
                        &rules.perf_unbounded_range,
                        client,
                        obs(call, describe_range_call(call)),
                        ctx,
                        Box::new(|f| {
                            let v = f.volume.unwrap_or_default();
                            format!(
                                "{} ran {} over key ranges without a limit within {} ({} keys returned): repeated unbounded reads are expensive and can starve other clients",
                                f.client,
                                plural(f.events, "Range"),
                                span(f),
                                v.keys
                            )
                        }),
                    );
                }
            }
            ("Txn", RecordKind::Call) => {
                let rule = &rules.perf_huge_txn;
                let Some(EtcdMessage::TxnRequest(t)) = body else {
                    return;
                };
                let ops = txn_ops(&t.success, 0).saturating_add(txn_ops(&t.failure, 0));
                if !rule.enabled || ops < rule.max_ops {
                    return;
                }
                let how = Opening {
                    rule: "perf-huge-txn",
                    severity: rule.severity,
                    client: client.to_string(),
                    quiet_ns: 60_000_000_000,
                    with_volume: true,
                    summarize: Box::new(|f| {
                        format!(
                            "{} sent {} with a very large number of operations: each one is applied as a single raft entry and holds up every other write while it runs",
                            f.client,
                            plural(f.events, "huge transaction")
                        )
                    }),
                };
                let detail = format!(
                    "{ops} operations, {} compares, status {}",
                    t.compare.len(),
                    call.status.map_or("?".to_string(), |s| s.to_string())
                );
                ctx.episodes.single(how, obs(call, detail), ctx.out);
            }
            (
                "Watch",
                RecordKind::Message {
                    direction: MessageDirection::Request,
                    ..
                },
            ) => {
                let Some(EtcdMessage::WatchRequest(w)) = body else {
                    return;
                };
                let Some(watch_request::RequestUnion::CreateRequest(cr)) = &w.request_union else {
                    return;
                };
                count(
                    &mut self.watches,
                    "watch-storm",
                    &rules.watch_storm,
                    client,
                    obs(
                        call,
                        format!("watch {}", describe_range(&cr.key, &cr.range_end)),
                    ),
                    ctx,
                    Box::new(|f| {
                        format!(
                            "{} created {} within {}: every watch costs the member memory and work on each write, so a storm of them degrades the cluster",
                            f.client,
                            plural(f.events, "watch"),
                            span(f)
                        )
                    }),
                );
            }
            ("LeaseGrant", RecordKind::Call) => {
                let ttl = match body {
                    Some(EtcdMessage::LeaseGrantRequest(l)) => format!("TTL {} s", l.ttl),
                    _ => "lease".into(),
                };
                count(
                    &mut self.leases,
                    "lease-storm",
                    &rules.lease_storm,
                    client,
                    obs(call, ttl),
                    ctx,
                    Box::new(|f| {
                        format!(
                            "{} was granted {} within {}: each lease is a raft write and a timer on every member, so a storm of them degrades the cluster",
                            f.client,
                            plural(f.events, "lease"),
                            span(f)
                        )
                    }),
                );
            }
            ("Defragment", RecordKind::Call) => {
                let rule = &rules.maintenance_defragment;
                if !rule.enabled {
                    return;
                }
                let how = Opening {
                    rule: "maintenance-defragment",
                    severity: rule.severity,
                    client: client.to_string(),
                    quiet_ns: 60_000_000_000,
                    with_volume: false,
                    summarize: Box::new(|f| {
                        format!(
                            "{} asked for {}: a member blocks all reads and writes while it defragments, so unplanned defragmentation is an outage",
                            f.client,
                            plural(f.events, "defragmentation")
                        )
                    }),
                };
                let detail = match call.latency_ns {
                    Some(l) => format!("took {}", human_duration_ns(l)),
                    None => "no reply seen".into(),
                };
                ctx.episodes.single(how, obs(call, detail), ctx.out);
            }
            ("Compact", RecordKind::Call) => {
                let rev = match body {
                    Some(EtcdMessage::CompactionRequest(r)) => {
                        format!("compact to revision {}", r.revision)
                    }
                    _ => "compact".into(),
                };
                count(
                    &mut self.compactions,
                    "maintenance-compact",
                    &rules.maintenance_compact,
                    client,
                    obs(call, rev),
                    ctx,
                    Box::new(|f| {
                        format!(
                            "{} compacted the keyspace {} within {}: compaction erases old revisions and cancels watchers behind them, so repeated compaction destroys history",
                            f.client,
                            plural(f.events, "time"),
                            span(f)
                        )
                    }),
                );
            }
            _ => {}
        }
    }

    pub fn finish(&mut self, ctx: &mut Ctx) {
        if let Some((start, end, totals)) = self.fsync.finish() {
            judge_fsync(start, end, totals, ctx);
        }
    }
}

/// One window of fsync time: the client with the largest share against the rule.
fn judge_fsync(start: u64, end: u64, totals: HashMap<IpAddr, FsyncTally>, ctx: &mut Ctx) {
    let rule = &ctx.rules.rules.fsync_dominance;
    if !rule.enabled || (totals.len() as u64) < rule.min_clients.max(1) {
        return;
    }
    let total: u64 = totals.values().fold(0, |a, t| a.saturating_add(t.fsync_ns));
    let Some((client, top)) = totals
        .into_iter()
        .max_by(|a, b| a.1.fsync_ns.cmp(&b.1.fsync_ns).then(b.0.cmp(&a.0)))
    else {
        return;
    };
    if total == 0 || top.writes < rule.min_writes {
        return;
    }
    let share = top.fsync_ns as f64 / total as f64;
    if share < rule.share {
        return;
    }
    let (top_ns, top_writes) = (top.fsync_ns, top.writes);
    let how = Opening {
        rule: "fsync-dominance",
        severity: rule.severity,
        client: client.to_string(),
        quiet_ns: rule.window,
        with_volume: true,
        summarize: Box::new(move |f| {
            format!(
                "{}'s {} took {:.0}% of the WAL fsync time ({} of {}) within {}: one client's writes are saturating the disk that every write waits on",
                f.client,
                plural(top_writes, "write"),
                share * 100.0,
                human_duration_ns(top_ns),
                human_duration_ns(total),
                span(f)
            )
        }),
    };
    let fired = Fired {
        start_ns: start,
        end_ns: end,
        count: top.writes,
        bytes: 0,
        keys: 0,
        evidence: top.evidence,
    };
    ctx.episodes.open(how, fired, top_writes, ctx.out);
}

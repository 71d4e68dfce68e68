//! Bulk reads and exfiltration: reads of the whole keyspace or of large prefixes without
//! a limit, very large responses, a client reading far more than the others, database
//! snapshots, and watches on every key.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::window::{Fired, Tumbling};
use super::{client_ip, plural, span, Ctx, Evidence, Observation, Opening, Volume};
use crate::analyze::rpc::{MessageDirection, RecordKind, RpcBody, RpcCall};
use crate::decode::etcdpb::{describe_range, prefix_range_end, watch_request, EtcdMessage};
use crate::units::human_bytes;

/// True when the range (key, range_end) selects every key.
pub fn whole_keyspace(key: &[u8], range_end: &[u8]) -> bool {
    (key.is_empty() || key == [0]) && range_end == [0]
}

/// True when the range (key, range_end) selects every key under `prefix` (an empty
/// prefix meaning the whole keyspace). A single-key read (empty range_end) covers nothing.
pub fn covers(key: &[u8], range_end: &[u8], prefix: &[u8]) -> bool {
    if range_end.is_empty() {
        return false;
    }
    if prefix.is_empty() {
        return whole_keyspace(key, range_end);
    }
    let start: &[u8] = if key == [0] { &[] } else { key };
    if start > prefix {
        return false;
    }
    range_end == [0] || range_end >= prefix_range_end(prefix).as_slice()
}

/// Keys a Range response carried: the keys in it, or its `count` when its end was not
/// captured.
pub fn response_keys(call: &RpcCall) -> u64 {
    match call.response.as_ref() {
        Some(RpcBody::Message(EtcdMessage::RangeResponse(r))) => r.kvs.len() as u64,
        Some(RpcBody::Partial {
            message: EtcdMessage::RangeResponse(r),
            ..
        }) => (r.kvs.len() as u64).max(u64::try_from(r.count).unwrap_or(0)),
        _ => 0,
    }
}

/// The Range request of a call, if decoded.
pub fn range_request(call: &RpcCall) -> Option<&crate::decode::etcdpb::RangeRequest> {
    match call.request.as_ref().and_then(RpcBody::message) {
        Some(EtcdMessage::RangeRequest(r)) => Some(r),
        _ => None,
    }
}

/// A Range call in a sentence's terms: its range, limit and result.
pub fn describe_range_call(call: &RpcCall) -> String {
    let (range, limit) = match range_request(call) {
        Some(r) => (describe_range(&r.key, &r.range_end), r.limit),
        None => (
            describe_range(
                call.key.as_deref().unwrap_or_default(),
                call.range_end.as_deref().unwrap_or_default(),
            ),
            0,
        ),
    };
    let limit = if limit > 0 {
        format!(" limit {limit}")
    } else {
        String::new()
    };
    format!(
        "{range}{limit}: {} in {}",
        plural(response_keys(call), "key"),
        human_bytes(call.response_bytes)
    )
}

#[derive(Debug, Default)]
struct ReadTally {
    bytes: u64,
    rpcs: u64,
    keys: u64,
    evidence: Vec<Evidence>,
}

/// Unbounded lists waiting, at most, to see whether a watch from their revision follows.
const MAX_PENDING_LISTS: usize = 4096;

/// A wide list without a limit, held until a watch of the same range from its revision
/// (a cache priming itself) follows or the rule's window passes (a bulk read).
struct PendingList {
    client: IpAddr,
    key: Vec<u8>,
    range_end: Vec<u8>,
    revision: i64,
    obs: Observation,
}

pub struct Bulk {
    volume: Tumbling<ReadTally>,
    lists: VecDeque<PendingList>,
    /// A whole-keyspace read is reported at once, not held for a watch after it.
    pub(super) live: bool,
}

impl Bulk {
    pub fn new(rules: &super::Rules) -> Bulk {
        Bulk {
            volume: Tumbling::new(rules.rules.bulk_client_volume.window),
            lists: VecDeque::new(),
            live: false,
        }
    }

    pub fn call(&mut self, call: &RpcCall, ctx: &mut Ctx) {
        let client = client_ip(call);
        if let Some((start, end, totals)) = self.volume.roll(call.ts_ns) {
            judge_volume(start, end, totals, ctx);
        }
        self.expire_lists(Some(call.ts_ns), ctx);
        match (call.method_name(), call.kind) {
            ("Range", RecordKind::Call) => self.range(call, client, ctx),
            ("Snapshot", RecordKind::Call) => self.snapshot(call, client, ctx),
            ("Watch", RecordKind::Message { direction, .. }) => {
                if direction == MessageDirection::Request {
                    self.watch_after_list(call, client, ctx);
                    watch_create(call, client, ctx);
                } else {
                    self.tally(call, client, call.response_bytes, 0, "watch events", ctx);
                }
            }
            _ => {}
        }
    }

    fn tally(
        &mut self,
        call: &RpcCall,
        client: IpAddr,
        bytes: u64,
        keys: u64,
        what: &str,
        ctx: &Ctx,
    ) {
        if !ctx.rules.rules.bulk_client_volume.enabled || bytes == 0 {
            return;
        }
        let limit = ctx.evidence_limit();
        if let Some(t) = self.volume.entry(client) {
            t.bytes = t.bytes.saturating_add(bytes);
            t.rpcs += 1;
            t.keys = t.keys.saturating_add(keys);
            if t.evidence.len() < limit {
                t.evidence.push(Evidence::of_call(
                    call,
                    format!("{what}: {}", human_bytes(bytes)),
                ));
            }
        }
    }

    fn range(&mut self, call: &RpcCall, client: IpAddr, ctx: &mut Ctx) {
        let rules = &ctx.rules.rules;
        let keys = response_keys(call);
        let bytes = call.response_bytes;
        let obs = || Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, describe_range_call(call)),
            volume: Volume {
                rpcs: 1,
                bytes,
                keys,
            },
        };
        if let Some(req) = range_request(call) {
            let rule = &rules.bulk_range_unbounded;
            let wide = whole_keyspace(&req.key, &req.range_end)
                || rule
                    .prefixes
                    .iter()
                    .any(|p| covers(&req.key, &req.range_end, p));
            if rule.enabled && wide && req.limit == 0 && !req.count_only {
                let revision = match call.response.as_ref().and_then(RpcBody::message) {
                    Some(EtcdMessage::RangeResponse(r)) => r.header.as_ref().map(|h| h.revision),
                    _ => None,
                };
                let held = rules.bulk_list_then_watch.enabled
                    && self.lists.len() < MAX_PENDING_LISTS
                    && !(self.live && whole_keyspace(&req.key, &req.range_end));
                match revision.filter(|_| held) {
                    Some(revision) => self.lists.push_back(PendingList {
                        client,
                        key: req.key.clone(),
                        range_end: req.range_end.clone(),
                        revision,
                        obs: obs(),
                    }),
                    None => unbounded_read(client, obs(), ctx),
                }
            }
        }
        let rule = &rules.bulk_large_response;
        if rule.enabled && (keys >= rule.max_keys || bytes >= rule.max_bytes) {
            let (max_keys, max_bytes) = (rule.max_keys, rule.max_bytes);
            let how = Opening {
                rule: "bulk-large-response",
                severity: rule.severity,
                client: client.to_string(),
                quiet_ns: 60_000_000_000,
                with_volume: true,
                summarize: Box::new(move |f| {
                    let v = f.volume.unwrap_or_default();
                    format!(
                        "{} received {} of at least {max_keys} keys or {} ({} keys, {} in all): responses this large move a big part of the data at once and load the member",
                        f.client,
                        plural(f.events, "Range response"),
                        human_bytes(max_bytes),
                        v.keys,
                        human_bytes(v.bytes)
                    )
                }),
            };
            ctx.episodes.single(how, obs(), ctx.out);
        }
        self.tally(call, client, bytes, keys, "range", ctx);
    }

    fn snapshot(&mut self, call: &RpcCall, client: IpAddr, ctx: &mut Ctx) {
        let blob = match call.response.as_ref() {
            Some(RpcBody::SnapshotChunks { blob_bytes, .. }) => *blob_bytes,
            _ => 0,
        };
        let bytes = blob.max(call.response_bytes);
        self.tally(call, client, bytes, 0, "snapshot", ctx);
        let rule = &ctx.rules.rules.bulk_snapshot;
        if !rule.enabled || rule.allowed_clients.contains(&client) {
            return;
        }
        let detail = match call.response.as_ref() {
            Some(RpcBody::SnapshotChunks {
                chunks, blob_bytes, ..
            }) => format!(
                "{} of database in {}",
                human_bytes(*blob_bytes),
                plural(*chunks, "chunk")
            ),
            _ => format!("{} streamed", human_bytes(call.response_bytes)),
        };
        let how = Opening {
            rule: "bulk-snapshot",
            severity: rule.severity,
            client: client.to_string(),
            quiet_ns: 60_000_000_000,
            with_volume: true,
            summarize: Box::new(|f| {
                let v = f.volume.unwrap_or_default();
                format!(
                    "{} took {} of the database ({} streamed): a snapshot holds every key and value, so it is a full copy of the cluster's data unless this client is a known backup job",
                    f.client,
                    plural(f.events, "snapshot"),
                    human_bytes(v.bytes)
                )
            }),
        };
        let obs = Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, detail),
            volume: Volume {
                rpcs: 1,
                bytes,
                keys: 0,
            },
        };
        ctx.episodes.single(how, obs, ctx.out);
    }

    pub fn finish(&mut self, ctx: &mut Ctx) {
        if let Some((start, end, totals)) = self.volume.finish() {
            judge_volume(start, end, totals, ctx);
        }
        self.expire_lists(None, ctx);
    }

    /// Lists whose window passed with no watch (all of them at the end: `None`) are
    /// bulk reads.
    fn expire_lists(&mut self, now_ns: Option<u64>, ctx: &mut Ctx) {
        let window = ctx.rules.rules.bulk_list_then_watch.window;
        while let Some(l) = self.lists.front() {
            if now_ns.is_some_and(|now| l.obs.end_ns.saturating_add(window) >= now) {
                break;
            }
            if let Some(l) = self.lists.pop_front() {
                unbounded_read(l.client, l.obs, ctx);
            }
        }
    }

    /// A watch create: a list of the same range by the same client, whose revision the
    /// watch starts from (or right after), was a cache priming itself, as Kubernetes'
    /// API server does for each resource: low, and said why.
    fn watch_after_list(&mut self, call: &RpcCall, client: IpAddr, ctx: &mut Ctx) {
        let Some(EtcdMessage::WatchRequest(w)) = call.request.as_ref().and_then(RpcBody::message)
        else {
            return;
        };
        let Some(watch_request::RequestUnion::CreateRequest(c)) = &w.request_union else {
            return;
        };
        let Some(pos) = self.lists.iter().position(|l| {
            l.client == client
                && l.key == c.key
                && l.range_end == c.range_end
                && (c.start_revision == l.revision || c.start_revision == l.revision + 1)
        }) else {
            return;
        };
        let Some(l) = self.lists.remove(pos) else {
            return;
        };
        let rule = &ctx.rules.rules.bulk_list_then_watch;
        let how = Opening {
            rule: "bulk-list-then-watch",
            severity: rule.severity,
            client: client.to_string(),
            quiet_ns: 60_000_000_000,
            with_volume: true,
            summarize: Box::new(|f| {
                let v = f.volume.unwrap_or_default();
                format!(
                    "{} listed {} without a limit ({} keys, {}), each followed by a watch of the same range from the list's revision: a cache priming itself (Kubernetes' API server does this for every resource at start), not a bulk copy",
                    f.client,
                    plural(f.events, "range"),
                    v.keys,
                    human_bytes(v.bytes)
                )
            }),
        };
        let mut obs = l.obs;
        obs.evidence.detail.push_str(&format!(
            "; watched from revision {} at {}",
            c.start_revision, call.ts_ns
        ));
        ctx.episodes.single(how, obs, ctx.out);
    }
}

/// A wide list without a limit that no watch from its revision followed: a bulk read.
fn unbounded_read(client: IpAddr, obs: Observation, ctx: &mut Ctx) {
    let how = Opening {
        rule: "bulk-range-unbounded",
        severity: ctx.rules.rules.bulk_range_unbounded.severity,
        client: client.to_string(),
        quiet_ns: 60_000_000_000,
        with_volume: true,
        summarize: Box::new(|f| {
            let v = f.volume.unwrap_or_default();
            format!(
                "{} read {} without a limit over the whole keyspace or a large prefix ({} keys, {} returned), and no watch from its revision followed: a bulk read like this copies data out of the cluster in one go",
                f.client,
                plural(f.events, "range"),
                v.keys,
                human_bytes(v.bytes)
            )
        }),
    };
    ctx.episodes.single(how, obs, ctx.out);
}

fn watch_create(call: &RpcCall, client: IpAddr, ctx: &mut Ctx) {
    let rule = &ctx.rules.rules.bulk_watch_keyspace;
    if !rule.enabled || rule.allowed_clients.contains(&client) {
        return;
    }
    let Some(EtcdMessage::WatchRequest(w)) = call.request.as_ref().and_then(RpcBody::message)
    else {
        return;
    };
    let Some(watch_request::RequestUnion::CreateRequest(c)) = &w.request_union else {
        return;
    };
    if !whole_keyspace(&c.key, &c.range_end) {
        return;
    }
    let how = Opening {
        rule: "bulk-watch-keyspace",
        severity: rule.severity,
        client: client.to_string(),
        quiet_ns: 60_000_000_000,
        with_volume: false,
        summarize: Box::new(|f| {
            format!(
                "{} opened {} on the whole keyspace: it receives every change to every key (secrets included) as it happens",
                f.client,
                plural(f.events, "watch")
            )
        }),
    };
    let obs = Observation {
        ts_ns: call.ts_ns,
        end_ns: call.end_ns,
        evidence: Evidence::of_call(
            call,
            format!(
                "watch create (whole keyspace) from revision {}",
                c.start_revision
            ),
        ),
        volume: Volume::default(),
    };
    ctx.episodes.single(how, obs, ctx.out);
}

/// One window of read volumes: the busiest client against the next busiest.
fn judge_volume(
    start: u64,
    end: u64,
    totals: std::collections::HashMap<IpAddr, ReadTally>,
    ctx: &mut Ctx,
) {
    let rule = &ctx.rules.rules.bulk_client_volume;
    if !rule.enabled || totals.len() < 2 {
        return;
    }
    let mut ranked: Vec<(IpAddr, ReadTally)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
    let mut it = ranked.into_iter();
    let (Some((client, top)), Some((_, second))) = (it.next(), it.next()) else {
        return;
    };
    let ratio = top.bytes as f64 / (second.bytes.max(1)) as f64;
    if top.bytes < rule.min_bytes || ratio < rule.ratio {
        return;
    }
    let second_bytes = second.bytes;
    let how = Opening {
        rule: "bulk-client-volume",
        severity: rule.severity,
        client: client.to_string(),
        quiet_ns: rule.window,
        with_volume: true,
        summarize: Box::new(move |f| {
            let v = f.volume.unwrap_or_default();
            format!(
                "{} read {} in {} ({} RPCs), {ratio:.0} times more than the next busiest client ({}): one client pulling far more data than the others is how exfiltration looks",
                f.client,
                human_bytes(v.bytes),
                span(f),
                v.rpcs,
                human_bytes(second_bytes)
            )
        }),
    };
    let fired = Fired {
        start_ns: start,
        end_ns: end,
        count: top.rpcs,
        bytes: top.bytes,
        keys: top.keys,
        evidence: top.evidence,
    };
    ctx.episodes.open(how, fired, top.rpcs, ctx.out);
}

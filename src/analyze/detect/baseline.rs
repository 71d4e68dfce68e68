//! Deviations from a learned baseline (`detect --baseline`): a client the baseline never
//! saw, a client reading far faster than it normally does, a key prefix no client read
//! before, and a client whose method mix changed. Each finding says what the baseline
//! said beside what the capture shows.
//!
//! Reads are counted per client in tumbling windows and judged as each window closes;
//! the rest is judged at the end of the capture, since a method mix is a share of all
//! of a client's calls. State is per client, with bounded maps and evidence lists, and
//! at most [`MAX_CLIENTS`] clients are followed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use super::bulk::{describe_range_call, response_keys};
use super::rules::{BaselineMixRule, BaselineReadRule};
use super::window::{Tumbling, MAX_CLIENTS};
use super::{client_ip, plural, Ctx, Evidence, Finding, Severity, Volume};
use crate::analyze::baseline::{
    method_key, prefix_of, rate_span_s, read_key, short_name, Baseline, ClientBaseline,
};
use crate::analyze::rpc::{RecordKind, RpcCall};
use crate::decode::etcdpb::display_key;
use crate::units::{human_bytes, human_duration_ns};

/// Distinct prefixes kept per client and per window.
const MAX_PREFIXES: usize = 64;
/// Evidence kept per method of a client the baseline knows (its first calls).
const METHOD_EXAMPLES: usize = 3;
const RANGE: &str = "/etcdserverpb.KV/Range";

/// A baseline whose key prefixes were cut at another depth than the rules cut them.
#[derive(Debug, thiserror::Error)]
#[error("the baseline was learned with --prefix-depth {learned}, but the rules compare key prefixes at depth {rules} (baseline-new-prefix: prefix_depth): learn it again with `etcd-trace baseline learn --prefix-depth {rules}`, or set `prefix_depth: {learned}` under baseline-new-prefix in a rules file (--rules)")]
pub struct DepthMismatch {
    pub learned: usize,
    pub rules: usize,
}

/// A capture's calls of one method by one client.
#[derive(Debug, Default)]
struct MethodSeen {
    calls: u64,
    first_ns: u64,
    last_ns: u64,
    evidence: Vec<Evidence>,
}

/// Reads of a prefix the baseline never saw read.
#[derive(Debug, Default)]
struct NewPrefix {
    reads: u64,
    first_ns: u64,
    last_ns: u64,
    evidence: Vec<Evidence>,
}

/// A client's reads within the current window.
#[derive(Debug, Default)]
struct WindowTally {
    ranges: u64,
    keys: u64,
    bytes: u64,
    /// Range calls and keys per prefix.
    prefixes: BTreeMap<String, (u64, u64)>,
    first_ns: u64,
    last_ns: u64,
    evidence: Vec<Evidence>,
}

/// The windows in which a client read too fast, merged.
#[derive(Debug, Default)]
struct FastReads {
    windows: u64,
    span_s: f64,
    start_ns: u64,
    end_ns: u64,
    ranges: u64,
    keys: u64,
    bytes: u64,
    /// Whether the keys (or else only the bytes) were over the rule's bounds.
    by_keys: bool,
    prefixes: BTreeMap<String, (u64, u64)>,
    evidence: Vec<Evidence>,
    omitted: u64,
}

/// What a capture shows of one client.
#[derive(Debug, Default)]
struct Seen {
    calls: u64,
    first_ns: u64,
    last_ns: u64,
    methods: BTreeMap<&'static str, MethodSeen>,
    /// Calls per key prefix (kept for clients the baseline does not know).
    prefixes: BTreeMap<String, u64>,
    new_prefixes: BTreeMap<String, NewPrefix>,
    /// Reads of new prefixes beyond `MAX_PREFIXES`.
    new_prefix_reads_untracked: u64,
    /// The first calls (kept for clients the baseline does not know).
    first_calls: Vec<Evidence>,
    fast: Option<FastReads>,
}

/// The baseline rules' state over one capture.
pub struct Deviations {
    base: Baseline,
    /// Index of each known client in `base.clients`.
    known: HashMap<IpAddr, usize>,
    read_prefixes: HashSet<String>,
    /// Clients beyond `MAX_CLIENTS` are not judged.
    seen: HashMap<IpAddr, Seen>,
    window: Tumbling<WindowTally>,
    /// The first and last times of the records seen.
    first_ns: Option<u64>,
    last_ns: u64,
}

/// What a record read or wrote, for its evidence line (which names the method).
fn describe(call: &RpcCall) -> String {
    if call.method_name() == "Range" {
        return describe_range_call(call);
    }
    if let Some(key) = read_key(call) {
        return format!("watch created on {}", display_key(key));
    }
    match &call.key {
        Some(k) => {
            crate::decode::etcdpb::describe_range(k, call.range_end.as_deref().unwrap_or_default())
        }
        None => String::new(),
    }
}

/// Adds the evidence of `call` to `list` unless it holds `limit` already.
fn push_limited(list: &mut Vec<Evidence>, limit: usize, call: &RpcCall) {
    if list.len() < limit {
        list.push(Evidence::of_call(call, describe(call)));
    }
}

fn per_s(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// `Range 20, Put 5`: the busiest first.
fn mix_of<'a>(counts: impl Iterator<Item = (&'a str, u64)>, limit: usize) -> String {
    let mut v: Vec<(&str, u64)> = counts.collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = v
        .iter()
        .take(limit)
        .map(|(m, n)| format!("{} {n}", short_name(m)))
        .collect();
    if v.len() > limit {
        parts.push(format!("{} more", v.len() - limit));
    }
    parts.join(", ")
}

/// The severity and closing words of a finding about something the baseline lacks, when
/// it left out `dropped` such things to stay bounded: this may be one of them, so the
/// finding is only low.
fn if_left_out(
    severity: Severity,
    dropped: u64,
    words: impl FnOnce(u64) -> String,
) -> (Severity, String) {
    if dropped == 0 {
        (severity, String::new())
    } else {
        (Severity::Low, words(dropped))
    }
}

impl Deviations {
    pub fn new(base: Baseline, rules: &super::Rules) -> Deviations {
        let known = base
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.client, i))
            .collect();
        let read_prefixes = base
            .read_prefixes
            .iter()
            .map(|p| p.prefix.clone())
            .collect();
        Deviations {
            base,
            known,
            read_prefixes,
            seen: HashMap::new(),
            window: Tumbling::new(rules.rules.baseline_read_rate.window),
            first_ns: None,
            last_ns: 0,
        }
    }

    pub fn call(&mut self, call: &RpcCall, ctx: &mut Ctx) {
        let ip = client_ip(call);
        self.first_ns = Some(self.first_ns.map_or(call.ts_ns, |f| f.min(call.ts_ns)));
        self.last_ns = self.last_ns.max(call.end_ns.max(call.ts_ns));
        if let Some((start, end, totals)) = self.window.roll(call.ts_ns) {
            let full = end - start;
            self.judge_reads(full, full, full, totals, ctx);
        }
        let known = self.known.contains_key(&ip);
        if !self.seen.contains_key(&ip) && self.seen.len() >= MAX_CLIENTS {
            return;
        }
        let limit = ctx.evidence_limit();
        let depth = self.base.prefix_depth;
        let seen = self.seen.entry(ip).or_default();
        if let Some(key) = read_key(call) {
            let prefix = prefix_of(key, depth);
            if !self.read_prefixes.contains(&prefix) {
                let room = seen.new_prefixes.len() < MAX_PREFIXES;
                match seen.new_prefixes.get_mut(&prefix) {
                    Some(p) => {
                        p.reads += 1;
                        p.last_ns = p.last_ns.max(call.ts_ns);
                        push_limited(&mut p.evidence, limit, call);
                    }
                    None if room => {
                        let mut p = NewPrefix {
                            reads: 1,
                            first_ns: call.ts_ns,
                            last_ns: call.ts_ns,
                            evidence: Vec::new(),
                        };
                        push_limited(&mut p.evidence, limit, call);
                        seen.new_prefixes.insert(prefix, p);
                    }
                    None => seen.new_prefix_reads_untracked += 1,
                }
            }
        }
        if call.kind != RecordKind::Call {
            return;
        }
        let Some(method) = method_key(call) else {
            return;
        };
        if seen.calls == 0 {
            seen.first_ns = call.ts_ns;
        }
        seen.calls += 1;
        seen.first_ns = seen.first_ns.min(call.ts_ns);
        seen.last_ns = seen.last_ns.max(call.ts_ns);
        let m = seen.methods.entry(method).or_default();
        if m.calls == 0 {
            m.first_ns = call.ts_ns;
        }
        m.calls += 1;
        m.first_ns = m.first_ns.min(call.ts_ns);
        m.last_ns = m.last_ns.max(call.ts_ns);
        if known {
            let new_method = self
                .known
                .get(&ip)
                .and_then(|i| self.base.clients.get(*i))
                .is_none_or(|c| c.method(method).is_none());
            let keep = if new_method {
                limit
            } else {
                METHOD_EXAMPLES.min(limit)
            };
            push_limited(&mut m.evidence, keep, call);
        } else {
            push_limited(&mut seen.first_calls, limit, call);
            if let Some(key) = &call.key {
                let prefix = prefix_of(key, depth);
                if let Some(n) = seen.prefixes.get_mut(&prefix) {
                    *n += 1;
                } else if seen.prefixes.len() < MAX_PREFIXES {
                    seen.prefixes.insert(prefix, 1);
                }
            }
        }
        if method == RANGE && known && ctx.rules.rules.baseline_read_rate.enabled {
            if let Some(t) = self.window.entry(ip) {
                let keys = response_keys(call);
                if t.ranges == 0 {
                    t.first_ns = call.ts_ns;
                }
                t.ranges += 1;
                t.keys += keys;
                t.bytes += call.response_bytes;
                t.first_ns = t.first_ns.min(call.ts_ns);
                t.last_ns = t.last_ns.max(call.end_ns.max(call.ts_ns));
                if let Some(key) = &call.key {
                    let prefix = prefix_of(key, depth);
                    let room = t.prefixes.len() < MAX_PREFIXES;
                    if let Some(p) = t.prefixes.get_mut(&prefix) {
                        p.0 += 1;
                        p.1 += keys;
                    } else if room {
                        t.prefixes.insert(prefix, (1, keys));
                    }
                }
                push_limited(&mut t.evidence, limit, call);
            }
        }
    }

    /// Judges one window's reads: `seen_ns` of its `full_ns` were in the capture, which
    /// lasted `capture_ns`.
    fn judge_reads(
        &mut self,
        full_ns: u64,
        seen_ns: u64,
        capture_ns: u64,
        totals: HashMap<IpAddr, WindowTally>,
        ctx: &Ctx,
    ) {
        let rule = &ctx.rules.rules.baseline_read_rate;
        if !rule.enabled {
            return;
        }
        let span_s = rate_span_s(seen_ns, full_ns, capture_ns);
        let floor = 1.0 / self.base.duration_s;
        let limit = ctx.evidence_limit();
        for (ip, t) in totals {
            let Some(b) = self.known.get(&ip).and_then(|i| self.base.clients.get(*i)) else {
                continue;
            };
            if b.reads.ranges == 0 {
                // Reading at all is new for it: the method mix says so.
                continue;
            }
            let (keys_rate, bytes_rate) = (t.keys as f64 / span_s, t.bytes as f64 / span_s);
            let by_keys = t.keys >= rule.min_keys
                && keys_rate >= rule.ratio * b.reads.keys_per_s.max(floor)
                && keys_rate > b.reads.peak_keys_per_s;
            let by_bytes = t.bytes >= rule.min_bytes
                && bytes_rate >= rule.ratio * b.reads.bytes_per_s.max(floor)
                && bytes_rate > b.reads.peak_bytes_per_s;
            if !(by_keys || by_bytes) {
                continue;
            }
            let Some(seen) = self.seen.get_mut(&ip) else {
                continue;
            };
            let f = seen.fast.get_or_insert_with(|| FastReads {
                start_ns: t.first_ns,
                ..FastReads::default()
            });
            f.windows += 1;
            f.span_s += span_s;
            f.start_ns = f.start_ns.min(t.first_ns);
            f.end_ns = f.end_ns.max(t.last_ns);
            f.ranges += t.ranges;
            f.keys += t.keys;
            f.bytes += t.bytes;
            f.by_keys |= by_keys;
            for (prefix, (calls, keys)) in t.prefixes {
                let room = f.prefixes.len() < MAX_PREFIXES;
                if let Some(p) = f.prefixes.get_mut(&prefix) {
                    p.0 += calls;
                    p.1 += keys;
                } else if room {
                    f.prefixes.insert(prefix, (calls, keys));
                }
            }
            let shown = t.evidence.len() as u64;
            for e in t.evidence {
                if f.evidence.len() < limit {
                    f.evidence.push(e);
                } else {
                    f.omitted += 1;
                }
            }
            f.omitted += t.ranges.saturating_sub(shown);
        }
    }

    /// The capture ended (its events ran from `first_ns` to `last_ns`, when known): the
    /// last window is judged, and every finding is emitted.
    pub fn finish(&mut self, first_ns: Option<u64>, last_ns: Option<u64>, ctx: &mut Ctx) {
        let first_ns = first_ns.into_iter().chain(self.first_ns).min().unwrap_or(0);
        let last_ns = last_ns.unwrap_or(0).max(self.last_ns);
        if let Some((start, end, totals)) = self.window.finish() {
            let seen = last_ns.saturating_sub(start);
            self.judge_reads(
                end - start,
                seen,
                last_ns.saturating_sub(first_ns),
                totals,
                ctx,
            );
        }
        let mut seen: Vec<(IpAddr, Seen)> = self.seen.drain().collect();
        seen.sort_by_key(|(ip, s)| (s.first_ns, *ip));
        for (ip, s) in seen {
            let base = self.known.get(&ip).and_then(|i| self.base.clients.get(*i));
            match base {
                None => self.new_client(ip, &s, ctx),
                Some(b) => {
                    method_mix(ip, b, &s, &ctx.rules.rules.baseline_method_mix, ctx.out);
                    if let Some(f) = &s.fast {
                        fast_reads(
                            ip,
                            b,
                            f,
                            &self.base,
                            &ctx.rules.rules.baseline_read_rate,
                            ctx.out,
                        );
                    }
                }
            }
            self.new_prefixes(ip, &s, ctx);
        }
    }

    fn new_client(&self, ip: IpAddr, s: &Seen, ctx: &mut Ctx) {
        let rule = &ctx.rules.rules.baseline_new_client;
        if !rule.enabled || s.calls < rule.min_calls || s.calls == 0 {
            return;
        }
        let mut prefixes: Vec<(&String, &u64)> = s.prefixes.iter().collect();
        prefixes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let on = if prefixes.is_empty() {
            String::new()
        } else {
            let shown: Vec<&str> = prefixes.iter().take(5).map(|p| p.0.as_str()).collect();
            format!(" on {}", shown.join(", "))
        };
        let (severity, caveat) = if_left_out(rule.severity, self.base.dropped.clients, |n| {
            format!(
                "; the baseline left out {} (beyond its cap of clients): this may be one of them",
                plural(n, "client")
            )
        });
        let summary = format!(
            "{ip} is a client the baseline never saw (it knew {} over {}): here it made {} ({}){on} within {}{caveat}",
            plural(self.base.clients.len() as u64, "client"),
            human_duration_ns((self.base.duration_s * 1e9) as u64),
            plural(s.calls, "call"),
            mix_of(s.methods.iter().map(|(m, v)| (*m, v.calls)), 4),
            human_duration_ns(s.last_ns.saturating_sub(s.first_ns)),
        );
        let shown = s.first_calls.len() as u64;
        ctx.out.push(Finding {
            rule: "baseline-new-client",
            severity,
            client: ip.to_string(),
            start_ns: s.first_ns,
            end_ns: s.last_ns,
            summary,
            events: s.calls,
            evidence: s.first_calls.clone(),
            evidence_omitted: s.calls.saturating_sub(shown),
            volume: None,
        });
    }

    fn new_prefixes(&self, ip: IpAddr, s: &Seen, ctx: &mut Ctx) {
        let rule = &ctx.rules.rules.baseline_new_prefix;
        if !rule.enabled {
            return;
        }
        let mut found: Vec<(&String, &NewPrefix)> = s
            .new_prefixes
            .iter()
            .filter(|(_, p)| p.reads >= rule.min_reads)
            .collect();
        if found.is_empty() {
            return;
        }
        found.sort_by(|a, b| b.1.reads.cmp(&a.1.reads).then(a.0.cmp(b.0)));
        let untracked = s.new_prefix_reads_untracked;
        let reads: u64 = found.iter().map(|(_, p)| p.reads).sum::<u64>() + untracked;
        let listed: Vec<String> = found
            .iter()
            .take(8)
            .map(|(prefix, p)| format!("{prefix} ({})", plural(p.reads, "read")))
            .collect();
        let mut more = match found.len() {
            n if n > 8 => format!(" and {} more", n - 8),
            _ => String::new(),
        };
        if untracked > 0 {
            more.push_str(&format!(
                " (and {} of prefixes beyond the first {MAX_PREFIXES})",
                plural(untracked, "read")
            ));
        }
        let dropped = self.base.dropped.read_prefix_reads;
        let (severity, caveat) = if_left_out(rule.severity, dropped, |n| {
            format!(
                "; the baseline left out {} beyond its cap of prefixes: these may be among them",
                plural(n, "read")
            )
        });
        let there = match self.base.read_prefixes.len() {
            1 => "1 prefix was read".to_string(),
            n => format!("{n} prefixes were read"),
        };
        let summary = format!(
            "{ip} read {}{more}: no client read {} in the baseline ({there} there, over {}){caveat}",
            listed.join(", "),
            if found.len() == 1 { "this prefix" } else { "these prefixes" },
            human_duration_ns((self.base.duration_s * 1e9) as u64),
        );
        let mut evidence = Vec::new();
        let limit = ctx.evidence_limit();
        for (_, p) in &found {
            for e in &p.evidence {
                if evidence.len() < limit {
                    evidence.push(e.clone());
                }
            }
        }
        let start = found.iter().map(|(_, p)| p.first_ns).min().unwrap_or(0);
        let end = found.iter().map(|(_, p)| p.last_ns).max().unwrap_or(start);
        ctx.out.push(Finding {
            rule: "baseline-new-prefix",
            severity,
            client: ip.to_string(),
            start_ns: start,
            end_ns: end,
            summary,
            events: reads,
            evidence_omitted: reads.saturating_sub(evidence.len() as u64),
            evidence,
            volume: None,
        });
    }
}

/// The method-mix finding of a client the baseline knows, if its mix changed.
fn method_mix(
    ip: IpAddr,
    b: &ClientBaseline,
    s: &Seen,
    rule: &BaselineMixRule,
    out: &mut Vec<Finding>,
) {
    if !rule.enabled || s.calls == 0 {
        return;
    }
    let mut parts = Vec::new();
    let mut involved: Vec<&MethodSeen> = Vec::new();
    for (method, m) in &s.methods {
        if b.method(method).is_none() && m.calls >= rule.new_method_calls {
            parts.push(format!(
                "{} {}, a method it never called in the baseline",
                short_name(method),
                plural(m.calls, "call")
            ));
            involved.push(m);
        }
    }
    if s.calls >= rule.min_calls && b.calls >= rule.min_calls {
        let now = |method: &str| {
            s.methods
                .get(method)
                .map_or(0.0, |m| m.calls as f64 / s.calls as f64)
        };
        let mut methods: Vec<&str> = s.methods.keys().copied().collect();
        methods.extend(b.methods.iter().map(|m| m.method.as_str()));
        methods.sort_unstable();
        methods.dedup();
        for method in methods {
            let before = b.method(method).map_or(0.0, |m| m.share);
            let after = now(method);
            let moved = (after - before) * 100.0;
            if moved.abs() < rule.shift_points || before == 0.0 {
                // A method new to the client is said above, with its own minimum.
                continue;
            }
            parts.push(format!(
                "{} {} of its {} here, {} in the baseline ({:+.0} points)",
                short_name(method),
                pct(after),
                plural(s.calls, "call"),
                pct(before),
                moved
            ));
            if let Some(m) = s.methods.get(method) {
                involved.push(m);
            }
        }
    }
    if parts.is_empty() {
        return;
    }
    let was: Vec<String> = b
        .methods
        .iter()
        .take(4)
        .map(|m| format!("{} {}", short_name(&m.method), pct(m.share)))
        .collect();
    let summary = format!(
        "{ip}'s method mix changed: {}; in the baseline it made {} ({})",
        parts.join("; "),
        plural(b.calls, "call"),
        was.join(", ")
    );
    let calls: u64 = involved.iter().map(|m| m.calls).sum();
    let evidence: Vec<Evidence> = involved
        .iter()
        .flat_map(|m| m.evidence.iter().cloned())
        .collect();
    out.push(Finding {
        rule: "baseline-method-mix",
        severity: rule.severity,
        client: ip.to_string(),
        start_ns: involved
            .iter()
            .map(|m| m.first_ns)
            .min()
            .unwrap_or(s.first_ns),
        end_ns: involved
            .iter()
            .map(|m| m.last_ns)
            .max()
            .unwrap_or(s.last_ns),
        summary,
        events: calls,
        evidence_omitted: calls.saturating_sub(evidence.len() as u64),
        evidence,
        volume: None,
    });
}

/// The read-rate finding of a client that read too fast in some windows.
fn fast_reads(
    ip: IpAddr,
    b: &ClientBaseline,
    f: &FastReads,
    base: &Baseline,
    rule: &BaselineReadRule,
    out: &mut Vec<Finding>,
) {
    let span = f.span_s.max(1e-3);
    let floor = 1.0 / base.duration_s;
    let (now, normal, peak) = if f.by_keys {
        (
            f.keys as f64 / span,
            b.reads.keys_per_s.max(floor),
            b.reads.peak_keys_per_s,
        )
    } else {
        (
            f.bytes as f64 / span,
            b.reads.bytes_per_s.max(floor),
            b.reads.peak_bytes_per_s,
        )
    };
    let rate = |v: f64| {
        if f.by_keys {
            format!("{} keys/s", per_s(v))
        } else {
            format!("{}/s", human_bytes(v as u64))
        }
    };
    // The prefix whose reads grew the most, against the client's own Range calls there.
    let range = b.method(RANGE);
    let busiest = f
        .prefixes
        .iter()
        .map(|(prefix, (calls, keys))| {
            let before = range.and_then(|m| m.prefixes.iter().find(|p| &p.prefix == prefix));
            let (calls_before, keys_before) =
                before.map_or((0.0, 0.0), |p| (p.per_s, p.keys as f64 / base.duration_s));
            let now = (*calls as f64 / span, *keys as f64 / span);
            (prefix, (calls_before, keys_before), now)
        })
        .max_by(|a, b| (a.2 .1 - a.1 .1).total_cmp(&(b.2 .1 - b.1 .1)));
    let by_prefix = match busiest {
        Some((prefix, (calls, keys), now)) if calls > 0.0 => format!(
            "; on {prefix} it normally made {} Range/s ({} keys/s), now {}/s ({} keys/s)",
            per_s(calls),
            per_s(keys),
            per_s(now.0),
            per_s(now.1)
        ),
        Some((prefix, _, now)) => format!(
            "; on {prefix}, where it made no Range in the baseline, {} Range/s ({} keys/s)",
            per_s(now.0),
            per_s(now.1)
        ),
        None => String::new(),
    };
    let summary = format!(
        "{ip} read {} keys ({}) in {} within {}: {}, {:.0}× its normal {} (busiest 10 s of the baseline: {}; limit {}×){by_prefix}",
        f.keys,
        human_bytes(f.bytes),
        plural(f.ranges, "Range call"),
        match f.windows {
            1 => human_duration_ns((f.span_s * 1e9) as u64),
            n => format!("{n} windows ({})", human_duration_ns((f.span_s * 1e9) as u64)),
        },
        rate(now),
        now / normal,
        rate(normal),
        rate(peak),
        rule.ratio,
    );
    out.push(Finding {
        rule: "baseline-read-rate",
        severity: rule.severity,
        client: ip.to_string(),
        start_ns: f.start_ns,
        end_ns: f.end_ns.max(f.start_ns),
        summary,
        events: f.ranges,
        evidence: f.evidence.clone(),
        evidence_omitted: f.omitted,
        volume: Some(Volume {
            rpcs: f.ranges,
            bytes: f.bytes,
            keys: f.keys,
        }),
    });
}

#[cfg(test)]
mod tests {
    use super::super::tests::plain;
    use super::*;
    use crate::analyze::baseline::tests::{delete, learned, read, workload, LIMITS, S};
    use crate::analyze::baseline::LearnLimits;
    use crate::analyze::detect::Detector;

    fn detect(base: Baseline, mut calls: Vec<RpcCall>) -> Vec<Finding> {
        calls.sort_by_key(|c| c.ts_ns);
        let rules = super::super::Rules::builtin();
        let mut d = Detector::new(rules, vec![2379])
            .with_baseline(base)
            .unwrap();
        let mut out = Vec::new();
        for c in calls {
            d.push_call(&plain(c), &mut out);
        }
        d.finish(&Default::default(), &mut out);
        out
    }

    /// 10.0.0.1 lists the config prefix: `keys` keys.
    fn list(ts: u64, keys: usize) -> RpcCall {
        read("10.0.0.1:1", ts, "/app/config/", "/app/config0", keys)
    }

    fn normal() -> Baseline {
        learned(vec![(0, 60 * S, workload(0, 60, 1))], LIMITS)
    }

    fn says(f: &Finding, words: &str) {
        assert!(f.summary.contains(words), "{words:?} not in: {}", f.summary);
    }

    fn find<'a>(out: &'a [Finding], rule: &str, client: &str) -> &'a Finding {
        out.iter()
            .find(|f| f.rule == rule && f.client == client)
            .unwrap_or_else(|| panic!("no {rule} for {client} in {out:#?}"))
    }

    const T: u64 = 5_000 * S;

    #[test]
    fn a_normal_capture_of_another_length_raises_nothing() {
        for secs in [8, 25, 200] {
            let out = detect(normal(), workload(T, secs, 1));
            assert!(out.is_empty(), "{secs} s: {out:#?}");
        }
    }

    #[test]
    fn each_deviation_is_flagged_with_what_the_baseline_said() {
        // 30 keys per get instead of 1, a new client, deletes, and a prefix never read.
        let mut calls = workload(T, 30, 30);
        for i in 0..3 {
            calls.push(read("10.0.0.9:5000", T + i * S, "/app/config/k1", "", 1));
        }
        for i in 0..5 {
            calls.push(delete(
                "10.0.0.2:6000",
                T + i * S,
                &format!("/app/jobs/j{i}"),
            ));
        }
        calls.push(read(
            "10.0.0.1:7000",
            T + 7 * S,
            "/app/secrets/",
            "/app/secrets0",
            4,
        ));
        let out = detect(normal(), calls);

        let fast = find(&out, "baseline-read-rate", "10.0.0.1");
        assert_eq!(fast.severity, Severity::Medium);
        says(fast, "its normal 1.0 keys/s");
        says(
            fast,
            "on /app/config/ it normally made 1.0 Range/s (1.0 keys/s), now 1.0/s (3",
        );
        assert_eq!(fast.volume.unwrap().keys, 30 * 30 + 4);
        assert_eq!(fast.evidence.len(), 10);
        assert_eq!(fast.evidence_omitted, 21);
        assert!(
            fast.evidence[0].detail.contains("30 keys"),
            "{:?}",
            fast.evidence[0]
        );

        let new = find(&out, "baseline-new-client", "10.0.0.9");
        assert_eq!(new.events, 3);
        assert_eq!(new.evidence.len(), 3);
        says(new, "never saw (it knew 2 clients over 60.000 s)");
        says(new, "3 calls (Range 3) on /app/config/");

        let mix = find(&out, "baseline-method-mix", "10.0.0.2");
        assert_eq!(mix.severity, Severity::Low);
        assert_eq!(mix.events, 5);
        assert_eq!(mix.evidence[0].method, "DeleteRange");
        says(
            mix,
            "DeleteRange 5 calls, a method it never called in the baseline",
        );
        says(mix, "it made 135 calls (Put 89%, Range 11%)");

        let prefix = find(&out, "baseline-new-prefix", "10.0.0.1");
        assert_eq!(prefix.events, 1);
        says(
            prefix,
            "read /app/secrets/ (1 read): no client read this prefix",
        );
        says(prefix, "2 prefixes were read there");
        assert!(prefix.evidence[0].detail.contains("/app/secrets/"));
        let ours = out
            .iter()
            .filter(|f| f.rule.starts_with("baseline-"))
            .count();
        assert_eq!(ours, 4, "{out:#?}");
    }

    #[test]
    fn little_of_anything_is_not_a_deviation() {
        // 30 keys per get for 5 s (150 keys), 2 deletes, a mix moved on 10 calls.
        let mut calls = workload(T, 5, 30);
        calls.push(delete("10.0.0.2:6000", T, "/app/jobs/j1"));
        calls.push(delete("10.0.0.2:6000", T + S, "/app/jobs/j2"));
        let out = detect(normal(), calls);
        assert!(out.is_empty(), "{out:#?}");
        // The same minimums made stricter than the defaults let them through.
        let shifted: Vec<RpcCall> = (0..30)
            .map(|i| read("10.0.0.2:1", T + i * S, "/app/jobs/", "/app/jobs0", 5))
            .collect();
        let out = detect(normal(), shifted);
        let mix = find(&out, "baseline-method-mix", "10.0.0.2");
        says(
            mix,
            "Range 100% of its 30 calls here, 11% in the baseline (+89 points)",
        );
    }

    #[test]
    fn listing_again_what_it_listed_before_is_not_fast() {
        // Ten minutes of gets with one list of 600 keys: normally 2 keys/s, 61 at most.
        let mut calls = workload(0, 600, 1);
        calls.push(list(300 * S, 600));
        let base = learned(vec![(0, 600 * S, calls)], LIMITS);
        let peak = base.clients[0].reads.peak_keys_per_s;
        assert!((60.0..62.0).contains(&peak), "{peak}");
        // 10 s with a list of 500: 51 keys/s, 25 times the average but under the peak.
        let mut calls = workload(T, 10, 1);
        calls.push(list(T + 5 * S, 500));
        assert!(detect(base.clone(), calls).is_empty());
        // A list of 2000 is more than it ever read.
        let mut calls = workload(T, 10, 1);
        calls.push(list(T + 5 * S, 2000));
        let out = detect(base, calls);
        let fast = find(&out, "baseline-read-rate", "10.0.0.1");
        says(fast, "busiest 10 s of the baseline: 61 keys/s");
    }

    #[test]
    fn a_baseline_of_another_depth_is_refused() {
        let limits = LearnLimits {
            prefix_depth: 3,
            ..LIMITS
        };
        let base = learned(vec![(0, 10 * S, workload(0, 10, 1))], limits);
        let rules = super::super::Rules::builtin();
        let err = Detector::new(rules, vec![2379])
            .with_baseline(base)
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("learned with --prefix-depth 3") && text.contains("--prefix-depth 2"),
            "{text}"
        );
    }

    #[test]
    fn the_rules_file_bounds_the_baseline_rules() {
        let r = super::super::Rules::builtin();
        assert_eq!(r.rules.baseline_read_rate.ratio, 10.0);
        assert_eq!(r.rules.baseline_new_prefix.prefix_depth, 2);
        for bad in [
            "rules:\n  baseline-read-rate:\n    ratio: 0.5\n",
            "rules:\n  baseline-new-prefix:\n    prefix_depth: 0\n",
            "rules:\n  baseline-method-mix:\n    shift_points: 150\n",
        ] {
            assert!(super::super::Rules::from_yaml(Some(bad)).is_err(), "{bad}");
        }
        let r = super::super::Rules::from_yaml(Some(
            "rules:\n  baseline-new-prefix:\n    prefix_depth: 3\n",
        ))
        .unwrap();
        assert_eq!(r.rules.baseline_new_prefix.prefix_depth, 3);
    }
}

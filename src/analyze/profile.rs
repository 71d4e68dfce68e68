//! A capture boiled down to what `diff` compares: RPC counts, error counts, latency per
//! method and per phase, request and response sizes, fsync latency, bytes per client and
//! key prefixes. One streaming pass; memory grows with methods, clients and prefixes,
//! not with events.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::analyze::api::{ApiFact, ApiState};
use crate::analyze::correlate::CorrelatedCall;
use crate::analyze::detect::{Detector, Rules, Severity};
use crate::analyze::disk::DiskPhase;
use crate::analyze::histogram::{Histogram, LatencySummary};
use crate::analyze::phases::phases_of;
use crate::analyze::rpc::{RecordKind, RpcCall};
use crate::capture::{CaptureReader, Event, FileKind, ReadItem};
use crate::decode::etcdpb::display_key;
use crate::decode::tcp::ConnectionKey;

#[derive(Debug, Default, Clone)]
pub struct MethodStats {
    pub calls: u64,
    /// Calls by grpc-status (0 = OK); calls without a status seen are not counted here.
    pub statuses: BTreeMap<u32, u64>,
    pub latency: Histogram,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl MethodStats {
    /// Counts one call (a whole RPC, not a message of a stream).
    pub fn record(&mut self, call: &RpcCall) {
        self.calls += 1;
        if let Some(s) = call.status {
            *self.statuses.entry(s).or_default() += 1;
        }
        if let Some(l) = call.latency_ns {
            self.latency.record(l);
        }
        self.request_bytes += call.request_bytes;
        self.response_bytes += call.response_bytes;
    }

    pub fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| **s != 0)
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub start_ns: u64,
    pub end_ns: u64,
    pub methods: BTreeMap<String, MethodStats>,
    pub phases: BTreeMap<&'static str, Histogram>,
    pub wal_fsync: Histogram,
    /// Payload bytes to and from each client address (from the packets).
    pub client_bytes: BTreeMap<IpAddr, u64>,
    /// RPCs per key prefix (the first `depth` path components).
    pub prefixes: BTreeMap<String, u64>,
    /// Findings of `detect`: (rule, client) with the highest severity seen.
    pub findings: BTreeMap<(String, String), Severity>,
    pub lost: u64,
    /// Recorded through etcd's API (`record --mode api`): method counts come from
    /// /metrics and there is no per-call latency.
    pub api_mode: bool,
}

impl Profile {
    pub fn duration_s(&self) -> f64 {
        (self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9).max(1e-3)
    }

    pub fn clients(&self) -> BTreeSet<IpAddr> {
        self.client_bytes.keys().copied().collect()
    }

    /// Build from a capture. `prefix_depth` is how many `/`-separated components name a
    /// key prefix (2: `/registry/pods/`).
    pub fn of(reader: &CaptureReader, prefix_depth: usize, rules: Rules) -> Profile {
        let ports = reader.header().config.ports.clone();
        let mut detector = Detector::new(rules, reader.header().config.ports.clone());
        let mut correlator = detector.correlator();
        let mut findings = Vec::new();
        let mut p = Profile {
            start_ns: u64::MAX,
            api_mode: reader.header().mode.is_api(),
            ..Profile::default()
        };
        let mut api = ApiState::default();
        let mut facts = Vec::new();
        let (mut calls, mut phases) = (Vec::new(), Vec::new());
        for item in reader.events() {
            let ReadItem::Event(ev) = item else { continue };
            p.start_ns = p.start_ns.min(ev.ts_ns());
            p.end_ns = p.end_ns.max(ev.ts_ns());
            match &ev {
                Event::Packet(pk) => {
                    let (addrs, _) =
                        ConnectionKey::of_segment(pk.src, pk.dst, |port| ports.contains(&port));
                    *p.client_bytes.entry(addrs.client.ip()).or_default() +=
                        u64::from(pk.payload_len);
                }
                Event::Loss(l) => p.lost += l.count,
                Event::Api(a) => {
                    api.push(a, &mut facts);
                    for f in facts.drain(..) {
                        p.absorb_api(f, prefix_depth);
                    }
                }
                Event::Syscall(_) | Event::Tls(_) | Event::Process(_) => {}
            }
            detector.push_with(&mut correlator, ev, &mut calls, &mut phases, &mut findings);
            p.absorb(&mut calls, &mut phases, prefix_depth);
        }
        detector.finish_with(correlator, &mut calls, &mut phases, &mut findings);
        p.absorb(&mut calls, &mut phases, prefix_depth);
        for f in findings {
            let sev = p
                .findings
                .entry((f.rule.to_string(), f.client))
                .or_insert(f.severity);
            *sev = (*sev).max(f.severity);
        }
        if p.start_ns == u64::MAX {
            p.start_ns = 0;
        }
        p
    }

    /// What an API-mode capture counts: calls per method and code, and WAL fsyncs, from
    /// /metrics (each fsync at its bucket's upper bound, those past the last bound at
    /// twice it); key prefixes from the watch's writes.
    fn absorb_api(&mut self, fact: ApiFact, depth: usize) {
        match fact {
            ApiFact::Interval {
                calls, wal_fsync, ..
            } => {
                for (method, codes) in calls {
                    let m = self.methods.entry(method).or_default();
                    for (code, n) in codes {
                        m.calls += n;
                        *m.statuses.entry(code).or_default() += n;
                    }
                }
                wal_fsync.record_into(&mut self.wal_fsync);
            }
            ApiFact::Write { change, .. } => {
                *self
                    .prefixes
                    .entry(key_prefix(&change.key, depth))
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    fn absorb(
        &mut self,
        calls: &mut Vec<CorrelatedCall>,
        phases: &mut Vec<DiskPhase>,
        depth: usize,
    ) {
        for c in calls.drain(..) {
            if !matches!(c.call.kind, RecordKind::Call) {
                continue;
            }
            let name = c.call.method.clone().unwrap_or_else(|| "(unknown)".into());
            self.methods.entry(name).or_default().record(&c.call);
            for ph in phases_of(&c) {
                self.phases
                    .entry(ph.name)
                    .or_default()
                    .record(ph.duration_ns());
            }
            if let Some(k) = &c.call.key {
                *self.prefixes.entry(key_prefix(k, depth)).or_default() += 1;
            }
        }
        for ph in phases.drain(..) {
            if let DiskPhase::Sync {
                kind: FileKind::Wal,
                start_ns,
                end_ns,
                ..
            } = ph
            {
                self.wal_fsync.record(end_ns.saturating_sub(start_ns));
            }
        }
    }
}

/// `/registry/pods/default/x` at depth 2 → `/registry/pods/`; keys without `/` → `(flat)`.
pub fn key_prefix(key: &[u8], depth: usize) -> String {
    if key.is_empty() || key == b"\0" {
        return "(whole keyspace)".into();
    }
    if !key.contains(&b'/') {
        return "(flat keys)".into();
    }
    let mut seen = 0;
    let leading = usize::from(key.first() == Some(&b'/'));
    for (i, b) in key.iter().enumerate().skip(leading) {
        if *b == b'/' {
            seen += 1;
            if seen == depth {
                return display_key(&key[..=i]);
            }
        }
    }
    // Shorter than the depth: the key's directory.
    match key.iter().rposition(|b| *b == b'/') {
        Some(i) => display_key(&key[..=i]),
        None => display_key(key),
    }
}

/// A method's numbers in a profile, for output.
#[derive(Debug, Clone, Serialize)]
pub struct MethodRow {
    pub calls: u64,
    pub rate_per_s: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ns: Option<u64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub mean_request_bytes: f64,
    pub mean_response_bytes: f64,
}

impl Profile {
    /// Latency of one phase (empty when the capture has none).
    pub fn phase_summary(&self, phase: &str) -> LatencySummary {
        self.phases
            .get(phase)
            .map(|h| h.summary())
            .unwrap_or_default()
    }

    pub fn method_row(&self, method: &str) -> Option<MethodRow> {
        let m = self.methods.get(method)?;
        let s = m.latency.summary();
        let calls = m.calls.max(1) as f64;
        Some(MethodRow {
            calls: m.calls,
            rate_per_s: m.calls as f64 / self.duration_s(),
            errors: m.errors(),
            error_rate: m.errors() as f64 / calls,
            p50_ns: s.p50_ns,
            p90_ns: s.p90_ns,
            p99_ns: s.p99_ns,
            mean_request_bytes: m.request_bytes as f64 / calls,
            mean_response_bytes: m.response_bytes as f64 / calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            key_prefix(b"/registry/pods/default/web-1", 2),
            "/registry/pods/"
        );
        assert_eq!(key_prefix(b"/registry/pods/default/web-1", 1), "/registry/");
        assert_eq!(key_prefix(b"/a", 2), "/");
        assert_eq!(key_prefix(b"foo", 2), "(flat keys)");
        assert_eq!(key_prefix(b"\0", 2), "(whole keyspace)");
        assert_eq!(key_prefix(b"a/b/c", 1), "a/");
    }
}

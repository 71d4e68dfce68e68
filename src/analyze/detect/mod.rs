//! `detect`: suspicious and abusive use of etcd, found in a capture by rules. The RPCs
//! recovered from the traffic (with their WAL and fsync links) and the raw packets flow
//! through rule families, one module each: bulk reads and exfiltration (`bulk`),
//! enumeration (`enumeration`), authentication and access (`auth`), unexpected peers and
//! clients (`peers`), performance attacks (`performance`), etcd's health against its own
//! guidance (`health`), consensus in trouble (`raft`), and, given a learned baseline,
//! deviations from it (`baseline`). Each finding names its
//! rule, says in one sentence what happened and why it matters, and carries evidence.
//!
//! Streaming: state is kept per client and window and is bounded (`window`); findings
//! that span time (a burst of failed logins) are kept open while the client goes on and
//! emitted once it has been quiet for the rule's window, or at the end.

mod api;
mod auth;
mod baseline;
pub(crate) mod bulk;
mod enumeration;
mod health;
pub mod net;
mod peers;
mod performance;
mod raft;
pub mod rules;
mod window;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

pub use baseline::DepthMismatch;
pub use rules::{Rules, RulesError, Severity, DEFAULT_RULES_YAML};

use crate::analyze::correlate::{CorrelatedCall, Correlator};
use crate::analyze::disk::DiskPhase;
use crate::analyze::rpc::RpcCall;
use crate::capture::Event;

use net::canonical;
use window::Fired;

/// One thing a finding points at: a call or a packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub ts_ns: u64,
    /// `client:port/stream` for a call, `client:port -> server:port` for a packet.
    pub stream: String,
    /// The method's short name, or what the packet was (`SYN`, `RST`).
    pub method: String,
    pub detail: String,
}

impl Evidence {
    /// Evidence for one RPC record.
    pub fn of_call(call: &RpcCall, detail: String) -> Evidence {
        Evidence {
            ts_ns: call.ts_ns,
            stream: format!("{}/{}", call.client, call.stream_id),
            method: call.method_name().to_string(),
            detail,
        }
    }
}

/// How much data a finding involved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub rpcs: u64,
    pub bytes: u64,
    pub keys: u64,
}

/// What a rule found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// The client's IP address (the connecting side, for the peer rules).
    pub client: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// One plain sentence: what happened and why it matters.
    pub summary: String,
    /// How many calls, packets or connections matched.
    pub events: u64,
    pub evidence: Vec<Evidence>,
    /// Evidence not listed (beyond the rules' `evidence_limit`).
    pub evidence_omitted: u64,
    pub volume: Option<Volume>,
}

/// Makes a finding's sentence once it is complete.
type Summarize = Box<dyn Fn(&Finding) -> String>;

/// A finding still growing: more matching calls from the client join it.
struct Episode {
    finding: Finding,
    last_ns: u64,
    quiet_ns: u64,
    summarize: Summarize,
    /// Reported when it opened (live): later occurrences join it silently.
    reported: bool,
}

/// What a new occurrence adds to an open finding.
pub(crate) struct Observation {
    pub ts_ns: u64,
    pub end_ns: u64,
    pub evidence: Evidence,
    pub volume: Volume,
}

/// The open findings, one per rule and client.
pub(crate) struct Episodes {
    open: HashMap<(&'static str, String), Episode>,
    evidence_limit: usize,
    /// Report each finding the moment its rule fires, not when its client has gone
    /// quiet (`detect --follow`); each is still reported once.
    live: bool,
}

/// Open findings kept before the oldest are emitted early.
const MAX_OPEN: usize = 4096;

/// How to open a finding.
pub(crate) struct Opening {
    pub rule: &'static str,
    pub severity: Severity,
    pub client: String,
    /// Emit after this long without a new occurrence.
    pub quiet_ns: u64,
    pub with_volume: bool,
    pub summarize: Summarize,
}

impl Episodes {
    fn new(evidence_limit: usize) -> Episodes {
        Episodes {
            open: HashMap::new(),
            evidence_limit,
            live: false,
        }
    }

    pub fn is_open(&self, rule: &'static str, client: &str) -> bool {
        self.open.contains_key(&(rule, client.to_string()))
    }

    /// Adds to the open finding of `rule` and `client`; false when there is none.
    pub fn extend(&mut self, rule: &'static str, client: &str, obs: Observation) -> bool {
        let limit = self.evidence_limit;
        let Some(ep) = self.open.get_mut(&(rule, client.to_string())) else {
            return false;
        };
        let f = &mut ep.finding;
        f.start_ns = f.start_ns.min(obs.ts_ns);
        f.end_ns = f.end_ns.max(obs.end_ns.max(obs.ts_ns));
        f.events = f.events.saturating_add(1);
        if f.evidence.len() < limit {
            f.evidence.push(obs.evidence);
        } else {
            f.evidence_omitted = f.evidence_omitted.saturating_add(1);
        }
        if let Some(v) = &mut f.volume {
            v.rpcs = v.rpcs.saturating_add(obs.volume.rpcs);
            v.bytes = v.bytes.saturating_add(obs.volume.bytes);
            v.keys = v.keys.saturating_add(obs.volume.keys);
        }
        ep.last_ns = ep.last_ns.max(obs.ts_ns);
        true
    }

    /// Opens a finding from what made a rule fire (or adds to it if already open).
    pub fn open(&mut self, how: Opening, fired: Fired, rpcs: u64, out: &mut Vec<Finding>) {
        let key = (how.rule, how.client.clone());
        let limit = self.evidence_limit;
        if let Some(ep) = self.open.get_mut(&key) {
            // Already open: the new burst joins it.
            let f = &mut ep.finding;
            f.start_ns = f.start_ns.min(fired.start_ns);
            f.end_ns = f.end_ns.max(fired.end_ns);
            f.events = f.events.saturating_add(fired.count);
            let mut added = 0u64;
            for e in fired.evidence {
                if f.evidence.len() < limit {
                    f.evidence.push(e);
                    added += 1;
                }
            }
            f.evidence_omitted = f
                .evidence_omitted
                .saturating_add(fired.count.saturating_sub(added));
            if let Some(v) = &mut f.volume {
                v.rpcs = v.rpcs.saturating_add(rpcs);
                v.bytes = v.bytes.saturating_add(fired.bytes);
                v.keys = v.keys.saturating_add(fired.keys);
            }
            ep.last_ns = ep.last_ns.max(fired.end_ns);
            return;
        }
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&key) {
            // Bounded: the least recently active finding goes out early.
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, e)| e.last_ns)
                .map(|(k, _)| k.clone())
            {
                if let Some(ep) = self.open.remove(&oldest) {
                    out.extend(complete(ep));
                }
            }
        }
        let mut evidence = fired.evidence;
        let kept = evidence.len().min(limit);
        evidence.truncate(kept);
        let omitted = fired.count.saturating_sub(kept as u64);
        let volume = how.with_volume.then_some(Volume {
            rpcs,
            bytes: fired.bytes,
            keys: fired.keys,
        });
        let finding = Finding {
            rule: how.rule,
            severity: how.severity,
            client: how.client,
            start_ns: fired.start_ns,
            end_ns: fired.end_ns.max(fired.start_ns),
            summary: String::new(),
            events: fired.count,
            evidence,
            evidence_omitted: omitted,
            volume,
        };
        let episode = Episode {
            last_ns: finding.end_ns,
            finding,
            quiet_ns: how.quiet_ns,
            summarize: how.summarize,
            reported: self.live,
        };
        if self.live {
            let mut now = episode.finding.clone();
            now.summary = (episode.summarize)(&now);
            out.push(now);
        }
        self.open.insert(key, episode);
    }

    /// One occurrence that is a finding by itself (or joins the client's open one).
    pub fn single(&mut self, how: Opening, obs: Observation, out: &mut Vec<Finding>) {
        if self.is_open(how.rule, &how.client) {
            self.extend(how.rule, &how.client, obs);
            return;
        }
        let fired = Fired {
            start_ns: obs.ts_ns,
            end_ns: obs.end_ns.max(obs.ts_ns),
            count: 1,
            bytes: obs.volume.bytes,
            keys: obs.volume.keys,
            evidence: vec![obs.evidence],
        };
        self.open(how, fired, obs.volume.rpcs, out);
    }

    /// Emits the findings whose client has been quiet long enough.
    fn close_idle(&mut self, now: u64, out: &mut Vec<Finding>) {
        let done: Vec<_> = self
            .open
            .iter()
            .filter(|(_, e)| e.last_ns.saturating_add(e.quiet_ns) < now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            if let Some(ep) = self.open.remove(&k) {
                out.extend(complete(ep));
            }
        }
    }

    fn close_all(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<_> = self.open.drain().map(|(_, e)| e).collect();
        all.sort_by_key(|e| e.finding.start_ns);
        out.extend(all.into_iter().filter_map(complete));
    }
}

/// The finding of an episode that ends, unless it was reported when it opened.
fn complete(ep: Episode) -> Option<Finding> {
    if ep.reported {
        return None;
    }
    let mut f = ep.finding;
    f.summary = (ep.summarize)(&f);
    Some(f)
}

/// What the rule families share while they run.
pub(crate) struct Ctx<'a> {
    pub rules: &'a Rules,
    pub episodes: &'a mut Episodes,
    pub out: &'a mut Vec<Finding>,
}

impl Ctx<'_> {
    pub fn evidence_limit(&self) -> usize {
        self.rules.evidence_limit
    }

    /// Opens (or adds to) the finding a counting rule's burst made, its calls counted.
    pub fn open_fired(&mut self, how: Opening, fired: Fired) {
        let n = fired.count;
        self.episodes.open(how, fired, n, self.out);
    }
}

/// The client of a call, as rules count it.
pub(crate) fn client_ip(call: &RpcCall) -> IpAddr {
    canonical(call.client.ip())
}

/// What the detector looked at, and what it could not see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetectStats {
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub events: u64,
    pub packets: u64,
    pub calls: u64,
    /// Calls whose method was unknown or whose bodies were not fully decoded.
    pub calls_partial: u64,
    /// Events the recorder reported lost.
    pub events_lost: u64,
    /// Stream bytes TCP reassembly could not see.
    pub gap_bytes: u64,
    /// Connections already open when recording began (their early calls are unseen).
    pub midstream_connections: u64,
    /// TLS connections whose plaintext was not captured (their calls are unseen).
    pub tls_without_plaintext: u64,
}

/// Events and correlated calls in, findings out. The caller owns the [`Correlator`]
/// (so one decoding pass can serve several analyses): feed every event in file order
/// with [`push`](Self::push), give the correlator the events `push` says it should see,
/// pass each call it settles to [`push_call`](Self::push_call), then call
/// [`finish`](Self::finish). [`Detector::run`] does all of that for one capture.
pub struct Detector {
    rules: Rules,
    client_ports: Vec<u16>,
    episodes: Episodes,
    bulk: bulk::Bulk,
    enumeration: enumeration::Enumeration,
    auth: auth::Auth,
    peers: peers::Peers,
    performance: performance::Performance,
    raft: raft::Raft,
    health: health::Health,
    api: api::ApiRules,
    baseline: Option<baseline::Deviations>,
    stats: DetectStats,
    now_ns: u64,
    since_close: u64,
}

/// How often (in events) quiet findings are emitted.
const CLOSE_EVERY: u64 = 4096;

impl Detector {
    /// A detector for a capture whose traced ports are `ports` (the peer port of `rules`
    /// among them is checked by the peer rules, the others decoded as gRPC).
    pub fn new(rules: Rules, ports: Vec<u16>) -> Detector {
        let ports = if ports.is_empty() {
            crate::decode::tcp::DEFAULT_SERVER_PORTS.to_vec()
        } else {
            ports
        };
        let client_ports: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| *p != rules.peer_port)
            .collect();
        Detector {
            client_ports,
            episodes: Episodes::new(rules.evidence_limit),
            bulk: bulk::Bulk::new(&rules),
            enumeration: enumeration::Enumeration::default(),
            auth: auth::Auth::default(),
            peers: peers::Peers::default(),
            performance: performance::Performance::new(&rules),
            raft: raft::Raft::new(&rules, &ports),
            health: health::Health::default(),
            api: api::ApiRules::default(),
            baseline: None,
            rules,
            stats: DetectStats::default(),
            now_ns: 0,
            since_close: 0,
        }
    }

    /// Also judges the capture against `base` (the `baseline-*` rules). Refused when the
    /// baseline cut key prefixes at another depth than the rules do.
    pub fn with_baseline(
        mut self,
        base: crate::analyze::baseline::Baseline,
    ) -> Result<Detector, DepthMismatch> {
        let rules = self.rules.rules.baseline_new_prefix.prefix_depth;
        if base.prefix_depth != rules {
            return Err(DepthMismatch {
                learned: base.prefix_depth,
                rules,
            });
        }
        self.baseline = Some(baseline::Deviations::new(base, &self.rules));
        Ok(self)
    }

    /// Report each finding as soon as its rule fires (for a capture followed as it is
    /// recorded): a growing finding is reported once, as it stood then, and a
    /// whole-keyspace read at once rather than after waiting to see whether a watch
    /// follows it (bulk-list-then-watch).
    pub fn live(mut self) -> Detector {
        self.episodes.live = true;
        self.bulk.live = true;
        self
    }

    pub fn stats(&self) -> &DetectStats {
        &self.stats
    }

    /// The ports whose traffic is gRPC (the traced ports but the peer port): what the
    /// caller's correlator is built with.
    pub fn client_ports(&self) -> &[u16] {
        &self.client_ports
    }

    /// A correlator for this detector's client ports.
    pub fn correlator(&self) -> Correlator {
        Correlator::new(self.client_ports.clone())
    }

    /// Takes one event; findings that are complete are appended to `out`. Returns
    /// whether the event belongs in the RPC correlator (peer traffic is not gRPC).
    pub fn push(&mut self, ev: &Event, out: &mut Vec<Finding>) -> bool {
        let from = out.len();
        let to_correlator = self.push_event(ev, out);
        self.trust(&mut out[from..]);
        to_correlator
    }

    fn push_event(&mut self, ev: &Event, out: &mut Vec<Finding>) -> bool {
        let ts = ev.ts_ns();
        self.stats.events += 1;
        self.stats.first_ns = Some(self.stats.first_ns.map_or(ts, |t| t.min(ts)));
        self.stats.last_ns = Some(self.stats.last_ns.map_or(ts, |t| t.max(ts)));
        self.now_ns = self.now_ns.max(ts);
        let mut to_correlator = true;
        self.raft.push(ev);
        if let Event::Api(a) = ev {
            let mut ctx = Ctx {
                rules: &self.rules,
                episodes: &mut self.episodes,
                out,
            };
            self.api.push(a, &mut ctx);
            return false;
        }
        if let Event::Packet(p) = ev {
            self.stats.packets += 1;
            let peer = self.rules.peer_port;
            let mut ctx = Ctx {
                rules: &self.rules,
                episodes: &mut self.episodes,
                out,
            };
            self.peers.packet(p, &self.client_ports, &mut ctx);
            // Peer traffic is not gRPC: keep it out of the RPC decoder.
            let client_side = self.client_ports.contains(&p.src.port())
                || self.client_ports.contains(&p.dst.port());
            if !client_side && (p.src.port() == peer || p.dst.port() == peer) {
                to_correlator = false;
            }
        }
        self.since_close += 1;
        if self.since_close >= CLOSE_EVERY {
            self.since_close = 0;
            self.episodes.close_idle(self.now_ns, out);
        }
        to_correlator
    }

    /// One correlated call straight into the rules (also what `push` does with each call
    /// the correlator settles).
    pub fn push_call(&mut self, c: &CorrelatedCall, out: &mut Vec<Finding>) {
        let from = out.len();
        self.judge_call(c, out);
        self.trust(&mut out[from..]);
    }

    fn judge_call(&mut self, c: &CorrelatedCall, out: &mut Vec<Finding>) {
        let call = &c.call;
        self.stats.calls += 1;
        if call.completeness() != crate::analyze::rpc::Completeness::Full {
            self.stats.calls_partial += 1;
        }
        self.now_ns = self.now_ns.max(call.ts_ns);
        let mut ctx = Ctx {
            rules: &self.rules,
            episodes: &mut self.episodes,
            out,
        };
        self.bulk.call(call, &mut ctx);
        self.enumeration.call(call, &mut ctx);
        self.auth.call(call, &mut ctx);
        self.peers.call(call, &mut ctx);
        self.performance.call(c, &mut ctx);
        self.health.call(c, &mut ctx);
        if let Some(b) = &mut self.baseline {
            b.call(call, &mut ctx);
        }
    }

    /// The capture ended (and the correlator's last calls were pushed): every finding
    /// still open is emitted. `rpc` is the correlator's decoding statistics, for the
    /// report of what could not be seen.
    pub fn finish(&mut self, rpc: &crate::analyze::rpc::RpcStats, out: &mut Vec<Finding>) {
        let from = out.len();
        self.finish_rules(rpc, out);
        self.trust(&mut out[from..]);
    }

    /// Findings about a trusted client are rated low, and say so.
    fn trust(&self, findings: &mut [Finding]) {
        if self.rules.trusted_clients.is_empty() {
            return;
        }
        for f in findings.iter_mut().filter(|f| f.severity > Severity::Low) {
            let Ok(ip) = f.client.parse::<IpAddr>() else {
                continue;
            };
            if self.rules.trusted_clients.iter().any(|c| c.contains(ip)) {
                f.severity = Severity::Low;
                f.summary
                    .push_str(" (a trusted client in the rules: rated low)");
            }
        }
    }

    fn finish_rules(&mut self, rpc: &crate::analyze::rpc::RpcStats, out: &mut Vec<Finding>) {
        self.stats.events_lost = rpc.events_lost;
        self.stats.gap_bytes = rpc.gap_bytes;
        self.stats.midstream_connections = rpc.midstream_connections;
        self.stats.tls_without_plaintext = rpc.tls_without_plaintext;
        let mut ctx = Ctx {
            rules: &self.rules,
            episodes: &mut self.episodes,
            out,
        };
        self.bulk.finish(&mut ctx);
        self.peers.finish(&mut ctx);
        self.performance.finish(&mut ctx);
        self.raft.finish(&mut ctx);
        self.health.finish(&mut ctx);
        if let Some(b) = &mut self.baseline {
            b.finish(self.stats.first_ns, self.stats.last_ns, &mut ctx);
        }
        self.episodes.close_all(out);
    }
}

/// Joins `n` and a noun, pluralised the plain way.
pub(crate) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A span of time for sentences: "within 2.31 s".
pub(crate) fn span(f: &Finding) -> String {
    crate::units::human_duration_ns(f.end_ns.saturating_sub(f.start_ns))
}

impl Detector {
    /// Feed one event to the detector and, where it belongs there, to `correlator`;
    /// settled calls go to the detector too. Disk phases are left in `phases` for the
    /// caller.
    pub fn push_with(
        &mut self,
        correlator: &mut Correlator,
        ev: Event,
        calls: &mut Vec<CorrelatedCall>,
        phases: &mut Vec<DiskPhase>,
        out: &mut Vec<Finding>,
    ) {
        if self.push(&ev, out) {
            correlator.push(ev, calls, phases);
        }
        for c in calls.iter() {
            self.push_call(c, out);
        }
        self.push_phases(phases, out);
    }

    /// Capture time has reached `now_ns` without events (a followed capture): the
    /// calls the correlator settles by then are judged.
    pub fn advance(
        &mut self,
        correlator: &mut Correlator,
        now_ns: u64,
        calls: &mut Vec<CorrelatedCall>,
        out: &mut Vec<Finding>,
    ) {
        correlator.advance(now_ns, calls);
        for c in calls.iter() {
            self.push_call(c, out);
        }
    }

    /// Disk phases into the health rules.
    pub fn push_phases(&mut self, phases: &[DiskPhase], out: &mut Vec<Finding>) {
        let from = out.len();
        let mut ctx = Ctx {
            rules: &self.rules,
            episodes: &mut self.episodes,
            out,
        };
        for p in phases {
            self.health.phase(p, &mut ctx);
        }
        self.trust(&mut out[from..]);
    }

    /// End of the capture: the correlator's last calls, then the open findings.
    pub fn finish_with(
        &mut self,
        correlator: Correlator,
        calls: &mut Vec<CorrelatedCall>,
        phases: &mut Vec<DiskPhase>,
        out: &mut Vec<Finding>,
    ) {
        self.raft.learn_processes(correlator.members());
        let rpc = correlator.finish(calls, phases);
        for c in calls.iter() {
            self.push_call(c, out);
        }
        self.push_phases(phases, out);
        self.finish(&rpc, out);
    }
}

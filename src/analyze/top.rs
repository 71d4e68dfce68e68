//! The numbers behind `top`: a capture's events go in one at a time, as they come (a
//! finished file played back, or a file still being recorded), and a [`Snapshot`] of
//! what the capture shows so far comes out whenever asked. It decodes RPCs as replay does
//! (`analyze::rpc`), times WAL fsyncs from their syscall events, follows leaders and
//! terms through `analyze::raft` when peer traffic is decoded, and counts every loss.
//! It knows nothing of terminals: `commands/top.rs` draws its snapshots.
//!
//! What is counted, so that it agrees with `replay`: a request is a unary call's record
//! or a request message of a streaming call; bytes are the DATA bytes of calls and of
//! stream messages (a stream's end record repeats its messages' bytes, so it adds none);
//! latency is that of unary calls. Rates are per second over the last
//! [`RATE_WINDOW_S`] seconds of capture time; the rest is since the capture began.
//! Memory grows with methods, clients and prefixes (each bounded), not with events.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::analyze::api::{ApiFact, ApiState};
use crate::analyze::histogram::Histogram;
use crate::analyze::profile::key_prefix;
use crate::analyze::raft::{RaftAnalyzer, RaftEvent, RaftOptions};
use crate::analyze::rpc::{MessageDirection, RecordKind, RpcCall, RpcDecoder};
use crate::capture::latency::{BucketRange, LatencyHistogram, LatencyKind};
use crate::capture::{Damage, Event, FileKind, ReadItem};

/// Seconds of capture time a rate is measured over.
pub const RATE_WINDOW_S: u64 = 10;
/// Methods, clients and key prefixes tracked at most; the rest are counted as one
/// "others" row.
const MAX_KEYS: usize = 10_000;
/// What stands for a key beyond [`MAX_KEYS`].
pub const OTHERS: &str = "(others)";

/// Requests per second over the last [`RATE_WINDOW_S`] seconds: one slot per second.
#[derive(Debug, Clone, Default)]
struct Rate {
    /// (second of capture time, requests started in it), indexed by second modulo the
    /// window.
    slots: [(u64, u64); RATE_WINDOW_S as usize],
}

impl Rate {
    fn add(&mut self, ts_ns: u64) {
        self.add_n(ts_ns, 1);
    }

    fn add_n(&mut self, ts_ns: u64, n: u64) {
        let sec = ts_ns / 1_000_000_000;
        let slot = &mut self.slots[(sec % RATE_WINDOW_S) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += n;
    }

    /// Requests per second over the window that ends with the second of `now_ns`
    /// (shorter when the capture began less than a window ago).
    fn per_s(&self, start_ns: u64, now_ns: u64) -> f64 {
        let now = now_ns / 1_000_000_000;
        let first = now
            .saturating_sub(RATE_WINDOW_S - 1)
            .max(start_ns / 1_000_000_000);
        let n: u64 = self
            .slots
            .iter()
            .filter(|(sec, _)| (first..=now).contains(sec))
            .map(|(_, n)| n)
            .sum();
        n as f64 / (now - first.min(now) + 1) as f64
    }
}

#[derive(Debug, Clone, Default)]
struct Tally {
    requests: u64,
    bytes: u64,
    rate: Rate,
}

#[derive(Debug, Clone, Default)]
struct MethodTally {
    tally: Tally,
    latency: Histogram,
    errors: u64,
}

/// Counts per key, at most [`MAX_KEYS`] of them.
#[derive(Debug, Clone)]
struct Bounded<K> {
    map: HashMap<K, Tally>,
    others: Tally,
}

impl<K> Default for Bounded<K> {
    fn default() -> Self {
        Bounded {
            map: HashMap::new(),
            others: Tally::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Bounded<K> {
    fn get(&mut self, key: K) -> &mut Tally {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(&key) {
            return &mut self.others;
        }
        self.map.entry(key).or_default()
    }
}

/// What `top` is asked to show.
#[derive(Debug, Clone, Copy)]
pub struct TopOptions {
    /// Rows of each top list.
    pub top: usize,
    /// How many `/`-separated components name a key prefix.
    pub prefix_depth: usize,
}

impl Default for TopOptions {
    fn default() -> Self {
        TopOptions {
            top: 10,
            prefix_depth: 2,
        }
    }
}

/// Events in, [`Snapshot`]s out. Feed items in file order with [`push`](Self::push);
/// [`finish`](Self::finish) when the capture has ended.
pub struct TopState {
    options: TopOptions,
    rpc: RpcDecoder,
    raft: RaftAnalyzer,
    decoded: Vec<RpcCall>,
    raft_events: Vec<RaftEvent>,
    start_ns: Option<u64>,
    now_ns: u64,
    methods: HashMap<String, MethodTally>,
    clients: Bounded<IpAddr>,
    prefixes: Bounded<String>,
    wal_fsync: Histogram,
    backend_fsync: Histogram,
    kernel_wal_sync: Option<LatencyHistogram>,
    leader: Option<(u64, String)>,
    elections: u64,
    /// An API-mode capture's events, turned into what top counts.
    api: ApiState,
    api_facts: Vec<ApiFact>,
    api_mode: bool,
    losses: Losses,
    events: u64,
    finished: bool,
}

impl TopState {
    /// For a capture whose header recorded `ports`.
    pub fn new(ports: &[u16], options: TopOptions) -> TopState {
        TopState {
            options,
            rpc: RpcDecoder::new(ports.to_vec()),
            raft: RaftAnalyzer::new(ports, RaftOptions::default()),
            decoded: Vec::new(),
            raft_events: Vec::new(),
            start_ns: None,
            now_ns: 0,
            methods: HashMap::new(),
            clients: Bounded::default(),
            prefixes: Bounded::default(),
            wal_fsync: Histogram::new(),
            backend_fsync: Histogram::new(),
            kernel_wal_sync: None,
            leader: None,
            elections: 0,
            api: ApiState::default(),
            api_facts: Vec::new(),
            api_mode: false,
            losses: Losses::default(),
            events: 0,
            finished: false,
        }
    }

    /// Capture time of the newest event taken, or as far as [`advance`](Self::advance)
    /// moved it.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Moves the clock on to `now_ns` without an event (a playback between events, or a
    /// quiet stretch of a capture being recorded): rates fall as they would.
    pub fn advance(&mut self, now_ns: u64) {
        if self.start_ns.is_some() {
            self.now_ns = self.now_ns.max(now_ns);
        }
    }

    /// The kernel's histograms of the whole recording, from the file's index: its WAL
    /// syncs, every data dir's added up, stand beside those timed from the events
    /// (complete even where events were lost).
    pub fn set_kernel_histograms(&mut self, histograms: &[LatencyHistogram]) {
        let mut total: Option<LatencyHistogram> = None;
        for h in histograms.iter().filter(|h| h.kind == LatencyKind::WalSync) {
            match &mut total {
                // One of another shape cannot be added: the first ones stand.
                Some(t) => {
                    let _ = t.add(h);
                }
                None => total = Some(h.clone()),
            }
        }
        self.kernel_wal_sync = total;
    }

    /// Takes one item of a capture's event stream.
    pub fn push(&mut self, item: ReadItem) {
        match item {
            ReadItem::Event(ev) => self.push_event(ev),
            ReadItem::Damaged(d) => self.push_damage(&d),
        }
    }

    fn push_damage(&mut self, d: &Damage) {
        self.losses.damaged_regions += 1;
        self.losses.damaged_events += d.events_lost.unwrap_or(0);
    }

    fn push_event(&mut self, ev: Event) {
        let ts = ev.ts_ns();
        self.events += 1;
        self.start_ns = Some(self.start_ns.map_or(ts, |s| s.min(ts)));
        self.now_ns = self.now_ns.max(ts);
        match &ev {
            Event::Syscall(s) if s.call.is_sync() => match s.file.kind {
                FileKind::Wal => self.wal_fsync.record(s.duration_ns()),
                FileKind::Db => self.backend_fsync.record(s.duration_ns()),
                _ => {}
            },
            Event::Loss(l) => self.losses.kernel_lost += l.count,
            Event::Api(a) => {
                self.api_mode = true;
                self.api.push(a, &mut self.api_facts);
                let facts = std::mem::take(&mut self.api_facts);
                for f in &facts {
                    self.count_api(f);
                }
                self.api_facts = facts;
                self.api_facts.clear();
                return;
            }
            _ => {}
        }
        self.raft.push(&ev);
        self.rpc.push_owned(ev, &mut self.decoded);
        self.absorb();
    }

    /// The capture has ended: calls still open count with what was seen of them.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.rpc.finish(&mut self.decoded);
        self.raft.end();
        self.absorb();
    }

    fn absorb(&mut self) {
        let mut decoded = std::mem::take(&mut self.decoded);
        for call in decoded.drain(..) {
            self.count(&call);
        }
        self.decoded = decoded;
        self.raft.take_new(&mut self.raft_events);
        for e in self.raft_events.drain(..) {
            match e {
                RaftEvent::Leader { term, member, .. }
                    if self.leader.as_ref().is_none_or(|(t, _)| term >= *t) =>
                {
                    self.leader = Some((term, member.to_string()));
                }
                RaftEvent::Election(_) => self.elections += 1,
                _ => {}
            }
        }
    }

    /// An API-mode capture: methods as /metrics counted them (no latency, no clients),
    /// key prefixes as the watch's writes, WAL fsyncs at their buckets' upper bounds,
    /// and the leader the members' Status reports.
    fn count_api(&mut self, fact: &ApiFact) {
        match fact {
            ApiFact::Interval {
                ts_ns,
                calls,
                wal_fsync,
                backend_commit,
                ..
            } => {
                for (method, codes) in calls {
                    let mut label = method.clone();
                    if self.methods.len() >= MAX_KEYS && !self.methods.contains_key(&label) {
                        label = OTHERS.to_string();
                    }
                    let m = self.methods.entry(label).or_default();
                    for (code, n) in codes {
                        m.tally.requests += n;
                        m.tally.rate.add_n(*ts_ns, *n);
                        if *code != 0 {
                            m.errors += n;
                        }
                    }
                }
                wal_fsync.record_into(&mut self.wal_fsync);
                backend_commit.record_into(&mut self.backend_fsync);
            }
            ApiFact::Write { ts_ns, change } => {
                let prefix = key_prefix(&change.key, self.options.prefix_depth);
                let t = self.prefixes.get(prefix);
                t.requests += 1;
                t.bytes += u64::from(change.value_bytes);
                t.rate.add(*ts_ns);
            }
            ApiFact::Leader {
                leader,
                term,
                previous,
                ..
            } => {
                self.leader = Some((*term, format!("{leader:x}")));
                if previous.is_some() {
                    self.elections += 1;
                }
            }
            _ => {}
        }
    }

    fn count(&mut self, call: &RpcCall) {
        let request = match call.kind {
            RecordKind::Call => true,
            RecordKind::Message { direction, .. } => direction == MessageDirection::Request,
            RecordKind::StreamEnd { .. } => false,
        };
        let bytes = match call.kind {
            RecordKind::StreamEnd { .. } => 0,
            _ => call.request_bytes + call.response_bytes,
        };
        if call.gaps && !matches!(call.kind, RecordKind::StreamEnd { .. }) {
            self.losses.calls_with_gaps += 1;
        }
        let mut label = method_label(call);
        // A `:path` is whatever a client sent: methods are bounded too.
        if self.methods.len() >= MAX_KEYS && !self.methods.contains_key(&label) {
            label = OTHERS.to_string();
        }
        let method = self.methods.entry(label).or_default();
        let client = self.clients.get(call.client.ip());
        let prefix = match (&call.key, request) {
            (Some(k), true) => Some(self.prefixes.get(key_prefix(k, self.options.prefix_depth))),
            _ => None,
        };
        for t in [Some(&mut method.tally), Some(client), prefix]
            .into_iter()
            .flatten()
        {
            t.bytes += bytes;
            if request {
                t.requests += 1;
                t.rate.add(call.ts_ns);
            }
        }
        if call.kind == RecordKind::Call {
            if let Some(l) = call.latency_ns {
                method.latency.record(l);
            }
            if call.status.is_some_and(|s| s != 0) {
                method.errors += 1;
            }
        }
    }

    /// What the capture shows up to now.
    pub fn snapshot(&self) -> Snapshot {
        let start = self.start_ns.unwrap_or(0);
        let now = self.now_ns;
        let rate = |t: &Tally| t.rate.per_s(start, now);
        let mut methods: Vec<MethodRow> = self
            .methods
            .iter()
            .map(|(name, m)| MethodRow {
                method: name.clone(),
                requests: m.tally.requests,
                rate_per_s: rate(&m.tally),
                bytes: m.tally.bytes,
                errors: m.errors,
                latency_count: m.latency.count(),
                p50_ns: m.latency.quantile(0.50),
                p99_ns: m.latency.quantile(0.99),
            })
            .collect();
        methods.sort_by(|a, b| {
            b.rate_per_s
                .total_cmp(&a.rate_per_s)
                .then(b.requests.cmp(&a.requests))
                .then(a.method.cmp(&b.method))
        });
        let clients = key_rows(&self.clients, start, now, |ip| ip.to_string());
        let n = self.options.top;
        let clients_by_requests = top_by(&clients, n, |r| r.requests);
        let clients_by_bytes = top_by(&clients, n, |r| r.bytes);
        let prefixes = top_by(
            &key_rows(&self.prefixes, start, now, String::clone),
            n,
            |r| r.requests,
        );
        let stats = self.rpc.stats();
        Snapshot {
            start_ns: start,
            now_ns: now,
            elapsed_s: now.saturating_sub(start) as f64 / 1e9,
            rate_window_s: RATE_WINDOW_S,
            prefix_depth: self.options.prefix_depth,
            events: self.events,
            finished: self.finished,
            api_mode: self.api_mode,
            methods,
            clients_by_requests,
            clients_by_bytes,
            prefixes,
            wal_fsync: FsyncRow::of(&self.wal_fsync),
            backend_fsync: FsyncRow::of(&self.backend_fsync),
            kernel_wal_sync: self.kernel_wal_sync.as_ref().map(|h| KernelRow {
                count: h.count(),
                p50: h.p50(),
                p99: h.p99(),
            }),
            raft: RaftRow {
                leader: self.leader.as_ref().map(|(_, m)| m.clone()),
                term: self.leader.as_ref().map(|(t, _)| *t),
                elections: self.elections,
                peer_connections: self.raft.connections(),
            },
            losses: Losses {
                gap_bytes: stats.gap_bytes,
                ..self.losses
            },
        }
    }
}

/// The method a record counts under: its `:path`, or `?` when unknown.
pub fn method_label(call: &RpcCall) -> String {
    call.method.clone().unwrap_or_else(|| "?".to_string())
}

/// One row per key, and one for the keys past the bound.
fn key_rows<K>(b: &Bounded<K>, start: u64, now: u64, name: impl Fn(&K) -> String) -> Vec<KeyRow> {
    let row = |key: String, t: &Tally| KeyRow {
        key,
        requests: t.requests,
        rate_per_s: t.rate.per_s(start, now),
        bytes: t.bytes,
    };
    let mut rows: Vec<KeyRow> = b.map.iter().map(|(k, t)| row(name(k), t)).collect();
    if b.others.requests + b.others.bytes > 0 {
        rows.push(row(OTHERS.to_string(), &b.others));
    }
    rows
}

/// The `n` rows with the most of `by`, most first (ties by key).
fn top_by(rows: &[KeyRow], n: usize, by: impl Fn(&KeyRow) -> u64) -> Vec<KeyRow> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| by(b).cmp(&by(a)).then(a.key.cmp(&b.key)));
    rows.truncate(n);
    rows
}

/// What a capture shows up to one moment: what `top` draws and `top --once` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Capture times (monotonic ns) of the first and newest event taken.
    pub start_ns: u64,
    pub now_ns: u64,
    pub elapsed_s: f64,
    pub rate_window_s: u64,
    pub prefix_depth: usize,
    pub events: u64,
    /// Recorded through etcd's API: methods counted by /metrics (no latency, no
    /// clients), prefixes from the watch's writes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub api_mode: bool,
    /// The whole capture was taken.
    pub finished: bool,
    /// Every method, busiest first.
    pub methods: Vec<MethodRow>,
    pub clients_by_requests: Vec<KeyRow>,
    pub clients_by_bytes: Vec<KeyRow>,
    pub prefixes: Vec<KeyRow>,
    pub wal_fsync: FsyncRow,
    pub backend_fsync: FsyncRow,
    /// The kernel's count of WAL syncs for the whole recording, when the index has it.
    pub kernel_wal_sync: Option<KernelRow>,
    pub raft: RaftRow,
    pub losses: Losses,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodRow {
    pub method: String,
    pub requests: u64,
    pub rate_per_s: f64,
    pub bytes: u64,
    /// Unary calls that ended with a grpc-status other than OK.
    pub errors: u64,
    /// Unary calls whose latency is known, and its quantiles (within 1/32).
    pub latency_count: u64,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
}

/// A client address or key prefix.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub key: String,
    pub requests: u64,
    pub rate_per_s: f64,
    pub bytes: u64,
}

/// fsync/fdatasync durations of one kind of file, from the capture's syscall events.
#[derive(Debug, Clone, Serialize)]
pub struct FsyncRow {
    pub count: u64,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
}

impl FsyncRow {
    fn of(h: &Histogram) -> FsyncRow {
        FsyncRow {
            count: h.count(),
            p50_ns: h.quantile(0.50),
            p99_ns: h.quantile(0.99),
            max_ns: h.max(),
        }
    }
}

/// A kernel histogram's calls and the log2 buckets its quantiles fall in.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRow {
    pub count: u64,
    pub p50: Option<BucketRange>,
    pub p99: Option<BucketRange>,
}

/// The newest term's leader, as far as the peer traffic shows (it is settled up to
/// half a minute behind the newest event: `analyze::raft` puts messages in order first).
#[derive(Debug, Clone, Serialize)]
pub struct RaftRow {
    pub leader: Option<String>,
    pub term: Option<u64>,
    pub elections: u64,
    pub peer_connections: u64,
}

/// Everything that was not seen: events the kernel could not hand over, unreadable
/// regions of the file, and bytes TCP reassembly found missing.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Losses {
    pub kernel_lost: u64,
    pub damaged_regions: u64,
    pub damaged_events: u64,
    pub gap_bytes: u64,
    pub calls_with_gaps: u64,
}

impl Losses {
    pub fn any(&self) -> bool {
        self.kernel_lost + self.damaged_regions + self.gap_bytes + self.calls_with_gaps > 0
    }
}

#[cfg(test)]
mod tests;

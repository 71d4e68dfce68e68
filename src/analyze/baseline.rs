//! Learned baselines: what each client normally does, learned from captures of normal
//! operation (`baseline learn`) and read back by `detect --baseline`, whose rules
//! (`detect/baseline.rs`) flag what deviates from it.
//!
//! Per client address (etcdctl and many clients open a new connection per command, so
//! the port says nothing), the baseline keeps its calls per method (the method mix); per
//! method their rate, errors, and the distributions of latency, request and response
//! sizes and keys returned, as quantiles; per method and key prefix (the first
//! `prefix_depth` components of the key, as `diff` cuts them) the calls, keys and bytes;
//! and the client's read rate (keys and bytes of Range responses per second) on average
//! and in its busiest 10 s. It also keeps every prefix any client read (Range or a
//! watch created). Rates are per second of capture: each capture's duration is kept, and
//! a baseline learned from several captures divides by their summed durations.
//!
//! The file is JSON with a `format` name and a `version`; a reader refuses other
//! versions. Learning is bounded (clients and prefixes per client are capped, and what
//! was left out is counted in `dropped`), and so is reading: the file's size is capped
//! and every count and rate is checked before use, since a baseline is input like a
//! capture.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analyze::detect::bulk::response_keys;
use crate::analyze::detect::net::canonical;
use crate::analyze::histogram::Histogram;
use crate::analyze::peers::peer_ports_of;
use crate::analyze::profile::{key_prefix, MethodStats};
use crate::analyze::rpc::{MessageDirection, RecordKind, RpcBody, RpcCall, RpcDecoder};
use crate::capture::{CaptureReader, ReadItem};
use crate::decode::etcdpb::{self, watch_request, EtcdMessage};

/// The `format` field of every baseline file.
pub const FORMAT_NAME: &str = "etcd-trace baseline";
/// The version this build writes and the only one it reads.
pub const VERSION: u64 = 1;
/// The read rate's busiest stretch is measured over buckets this long.
pub const BUCKET_NS: u64 = 10_000_000_000;
/// A count is never divided by less than this (or the whole capture, when shorter): a
/// few calls in the last instant of a capture are not a rate.
pub const MIN_RATE_SPAN_NS: u64 = 5_000_000_000;
/// Baseline files larger than this are refused before they are parsed.
pub const MAX_FILE_BYTES: u64 = 128 << 20;
/// Bounds a baseline file must keep (and learning keeps to).
pub const MAX_CLIENTS: usize = 10_000;
/// (method, prefix) entries over all clients.
pub const MAX_PREFIX_ENTRIES: usize = 100_000;
/// Prefixes read, over all clients.
pub const MAX_READ_PREFIXES: usize = 10_000;
pub const MAX_PREFIX_DEPTH: usize = 64;
/// The name under which calls of a method etcd does not serve are counted.
pub const OTHER_METHOD: &str = "(other)";
/// Methods per client in a file: every method etcd serves, and `(other)`.
fn max_methods() -> usize {
    etcdpb::METHODS.len() + 1
}
/// Bytes of a key looked at for its prefix: a prefix is never longer.
const MAX_PREFIX_KEY: usize = 256;
/// Addresses of clients left out that are remembered, to count them.
const MAX_DROPPED_REMEMBERED: usize = 65_536;

/// A distribution in a few numbers (all 0 when nothing was counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

impl From<&Histogram> for Quantiles {
    fn from(h: &Histogram) -> Quantiles {
        let q = |p: f64| h.quantile(p).unwrap_or(0);
        Quantiles {
            count: h.count(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: h.max().unwrap_or(0),
            mean: h.mean().unwrap_or(0),
        }
    }
}

/// One capture a baseline was learned from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedCapture {
    pub file: String,
    /// Its first event (ns since the epoch, as in the capture).
    pub start_ns: u64,
    pub duration_s: f64,
    pub calls: u64,
    /// Calls whose method was never seen (on connections open before recording): not
    /// learned.
    pub calls_unknown_method: u64,
    pub events_lost: u64,
    pub damaged_blocks: u64,
}

/// A client's reads: Range calls, the keys and bytes they returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadRate {
    pub ranges: u64,
    pub keys: u64,
    pub bytes: u64,
    pub keys_per_s: f64,
    pub bytes_per_s: f64,
    /// The rates in the client's busiest 10 s bucket (never below the average).
    pub peak_keys_per_s: f64,
    pub peak_bytes_per_s: f64,
}

/// A client's calls of one method on one key prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixBaseline {
    pub prefix: String,
    pub calls: u64,
    pub per_s: f64,
    /// Keys returned (Range).
    pub keys: u64,
    pub response_bytes: u64,
}

/// A client's calls of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodBaseline {
    /// The gRPC path (`/etcdserverpb.KV/Range`), or `(other)`.
    pub method: String,
    pub calls: u64,
    pub per_s: f64,
    /// Its part of the client's calls (0 to 1).
    pub share: f64,
    /// Calls with a non-zero grpc-status.
    pub errors: u64,
    pub latency_ns: Quantiles,
    pub request_bytes: Quantiles,
    pub response_bytes: Quantiles,
    /// Keys per response (Range only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Quantiles>,
    /// The busiest key prefixes first.
    pub prefixes: Vec<PrefixBaseline>,
}

/// What one client did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientBaseline {
    pub client: IpAddr,
    pub calls: u64,
    pub reads: ReadRate,
    /// The busiest methods first.
    pub methods: Vec<MethodBaseline>,
}

impl ClientBaseline {
    pub fn method(&self, path: &str) -> Option<&MethodBaseline> {
        self.methods.iter().find(|m| m.method == path)
    }
}

/// A key prefix some client read, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixReads {
    pub prefix: String,
    pub reads: u64,
}

/// What learning left out to stay bounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Client addresses beyond the cap, and their calls.
    pub clients: u64,
    pub client_calls: u64,
    /// Calls whose (method, prefix) was beyond a client's cap of prefixes.
    pub prefix_calls: u64,
    /// Reads of prefixes beyond the cap of prefixes read.
    pub read_prefix_reads: u64,
}

impl Dropped {
    pub fn any(&self) -> bool {
        *self != Dropped::default()
    }
}

/// A learned baseline: the file `baseline learn` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub format: String,
    pub version: u64,
    pub prefix_depth: usize,
    pub bucket_s: f64,
    /// The captures' durations, summed: what every rate is per.
    pub duration_s: f64,
    pub captures: Vec<LearnedCapture>,
    pub clients: Vec<ClientBaseline>,
    pub read_prefixes: Vec<PrefixReads>,
    pub dropped: Dropped,
}

/// Why a baseline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("it is larger than {} MiB: not a baseline `baseline learn` wrote", MAX_FILE_BYTES >> 20)]
    TooLarge,
    #[error("it is not a baseline (not JSON: {0}); `etcd-trace baseline learn` writes one")]
    NotJson(serde_json::Error),
    #[error("it is not a baseline (no `format: \"{FORMAT_NAME}\"`); `etcd-trace baseline learn` writes one")]
    NotABaseline,
    #[error("it is a baseline of format version {found}, and this etcd-trace reads version {VERSION} only: learn it again with this etcd-trace (`etcd-trace baseline learn`)")]
    Version { found: u64 },
    #[error("it is damaged: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Head {
    format: Option<String>,
    version: Option<u64>,
}

impl Baseline {
    /// Reads and checks a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let file = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(BaselineError::TooLarge);
        }
        Baseline::from_json(&bytes)
    }

    /// Parses and checks a baseline: its format and version first, then the rest.
    pub fn from_json(bytes: &[u8]) -> Result<Baseline, BaselineError> {
        let head: Head = serde_json::from_slice(bytes).map_err(BaselineError::NotJson)?;
        if head.format.as_deref() != Some(FORMAT_NAME) {
            return Err(BaselineError::NotABaseline);
        }
        match head.version {
            Some(VERSION) => {}
            Some(found) => return Err(BaselineError::Version { found }),
            None => return Err(BaselineError::Invalid("no version".into())),
        }
        let mut b: Baseline =
            serde_json::from_slice(bytes).map_err(|e| BaselineError::Invalid(e.to_string()))?;
        b.check().map_err(BaselineError::Invalid)?;
        for c in &mut b.clients {
            c.client = canonical(c.client);
        }
        Ok(b)
    }

    pub fn to_json(&self) -> String {
        // Plain structs of numbers and strings always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The checks a baseline passes before rules use it.
    fn check(&self) -> Result<(), String> {
        let rate = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} is {v}: rates are finite and not negative"))
            }
        };
        if !(1..=MAX_PREFIX_DEPTH).contains(&self.prefix_depth) {
            return Err(format!(
                "prefix_depth {} is not between 1 and {MAX_PREFIX_DEPTH}",
                self.prefix_depth
            ));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(format!(
                "duration_s {} is not a positive time",
                self.duration_s
            ));
        }
        rate("bucket_s", self.bucket_s)?;
        if self.clients.len() > MAX_CLIENTS || self.read_prefixes.len() > MAX_READ_PREFIXES {
            return Err(format!(
                "more than {MAX_CLIENTS} clients or {MAX_READ_PREFIXES} prefixes read"
            ));
        }
        let mut seen = HashSet::new();
        let mut prefixes = 0usize;
        for c in &self.clients {
            if !seen.insert(canonical(c.client)) {
                return Err(format!("client {} is listed twice", c.client));
            }
            let r = &c.reads;
            for (what, v) in [
                ("keys_per_s", r.keys_per_s),
                ("bytes_per_s", r.bytes_per_s),
                ("peak_keys_per_s", r.peak_keys_per_s),
                ("peak_bytes_per_s", r.peak_bytes_per_s),
            ] {
                rate(&format!("client {} {what}", c.client), v)?;
            }
            if c.methods.len() > max_methods() {
                return Err(format!("client {} has too many methods", c.client));
            }
            for m in &c.methods {
                rate(&format!("client {} {} per_s", c.client, m.method), m.per_s)?;
                if !(0.0..=1.0 + 1e-9).contains(&m.share) {
                    return Err(format!(
                        "client {} {}: share {} is not between 0 and 1",
                        c.client, m.method, m.share
                    ));
                }
                prefixes = prefixes.saturating_add(m.prefixes.len());
                for p in &m.prefixes {
                    rate(
                        &format!("client {} {} {}", c.client, m.method, p.prefix),
                        p.per_s,
                    )?;
                }
            }
        }
        if prefixes > MAX_PREFIX_ENTRIES {
            return Err(format!(
                "more than {MAX_PREFIX_ENTRIES} (method, prefix) entries"
            ));
        }
        Ok(())
    }

    pub fn client(&self, ip: IpAddr) -> Option<&ClientBaseline> {
        self.clients.iter().find(|c| c.client == ip)
    }
}

/// The gRPC path a call is learned under: etcd's own, or `(other)`. None when the
/// method is unknown (a connection open before recording).
pub fn method_key(call: &RpcCall) -> Option<&'static str> {
    let path = call.method.as_deref()?;
    Some(etcdpb::method(path).map_or(OTHER_METHOD, |m| m.path))
}

/// The short name of a learned method path, for sentences (`Range`).
pub fn short_name(path: &str) -> &str {
    etcdpb::method(path).map_or(path, |m| m.method)
}

/// The key a record reads from: a Range call's, or a watch's when it is created.
pub fn read_key(call: &RpcCall) -> Option<&[u8]> {
    match (call.method_name(), call.kind) {
        ("Range", RecordKind::Call) => call.key.as_deref(),
        (
            "Watch",
            RecordKind::Message {
                direction: MessageDirection::Request,
                ..
            },
        ) => match call.request.as_ref().and_then(RpcBody::message) {
            Some(EtcdMessage::WatchRequest(w)) => match &w.request_union {
                Some(watch_request::RequestUnion::CreateRequest(c)) => Some(&c.key),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The key prefix of `key` at `depth`, as `diff` cuts it, from its first 256 bytes only
/// (a prefix is a short name, whatever the client sent).
pub fn prefix_of(key: &[u8], depth: usize) -> String {
    key_prefix(&key[..key.len().min(MAX_PREFIX_KEY)], depth)
}

/// The seconds a count over a window (or bucket) of `full_ns` is divided by, when
/// `seen_ns` of it was seen: the last window of a capture is cut short by its end, but
/// it is never taken as shorter than [`MIN_RATE_SPAN_NS`] (or the whole capture,
/// `capture_ns`, when that is shorter).
pub fn rate_span_s(seen_ns: u64, full_ns: u64, capture_ns: u64) -> f64 {
    let full = full_ns.max(1);
    let floor = MIN_RATE_SPAN_NS.min(full).min(capture_ns.max(1));
    seen_ns.clamp(floor, full) as f64 / 1e9
}

/// How much learning keeps.
#[derive(Debug, Clone, Copy)]
pub struct LearnLimits {
    /// Key prefixes are the first N components of a key.
    pub prefix_depth: usize,
    /// Clients kept (the first ones seen); the others are counted in `dropped`.
    pub max_clients: usize,
    /// (method, prefix) entries kept per client (and [`MAX_PREFIX_ENTRIES`] in all).
    pub max_prefixes: usize,
}

#[derive(Debug, Default)]
struct PrefixTally {
    calls: u64,
    keys: u64,
    response_bytes: u64,
}

#[derive(Debug, Default)]
struct MethodTally {
    stats: MethodStats,
    request_sizes: Histogram,
    response_sizes: Histogram,
    keys: Histogram,
    prefixes: BTreeMap<String, PrefixTally>,
}

/// A client's reads, and the 10 s bucket being counted.
#[derive(Debug, Default)]
struct ReadTally {
    ranges: u64,
    keys: u64,
    bytes: u64,
    /// (bucket index since the capture's start, keys, bytes)
    bucket: Option<(u64, u64, u64)>,
    peak_keys_per_s: f64,
    peak_bytes_per_s: f64,
}

impl ReadTally {
    fn close_bucket(&mut self, span_s: f64) {
        if let Some((_, keys, bytes)) = self.bucket.take() {
            self.peak_keys_per_s = self.peak_keys_per_s.max(keys as f64 / span_s);
            self.peak_bytes_per_s = self.peak_bytes_per_s.max(bytes as f64 / span_s);
        }
    }
}

#[derive(Debug, Default)]
struct ClientTally {
    calls: u64,
    methods: BTreeMap<&'static str, MethodTally>,
    prefix_entries: usize,
    reads: ReadTally,
}

/// The capture being learned.
#[derive(Debug)]
struct Current {
    file: String,
    first_ns: Option<u64>,
    last_ns: u64,
    calls: u64,
    unknown: u64,
    damaged: u64,
}

/// Calls in, a [`Baseline`] out: [`learn`](Self::learn) each capture, then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct Learner {
    limits: LearnLimits,
    clients: HashMap<IpAddr, ClientTally>,
    /// (method, prefix) entries over all clients.
    prefix_entries: usize,
    read_prefixes: BTreeMap<String, u64>,
    captures: Vec<LearnedCapture>,
    current: Option<Current>,
    dropped: Dropped,
    dropped_clients: HashSet<IpAddr>,
}

impl Learner {
    pub fn new(limits: LearnLimits) -> Learner {
        Learner {
            limits: LearnLimits {
                prefix_depth: limits.prefix_depth.clamp(1, MAX_PREFIX_DEPTH),
                max_clients: limits.max_clients.min(MAX_CLIENTS),
                max_prefixes: limits.max_prefixes.min(MAX_PREFIX_ENTRIES),
            },
            clients: HashMap::new(),
            prefix_entries: 0,
            read_prefixes: BTreeMap::new(),
            captures: Vec::new(),
            current: None,
            dropped: Dropped::default(),
            dropped_clients: HashSet::new(),
        }
    }

    /// Learns one capture (named `file` in the baseline); `tick` is called once per item
    /// read, for a progress bar. What was learned of it.
    pub fn learn(
        &mut self,
        reader: &CaptureReader,
        file: &str,
        mut tick: impl FnMut(),
    ) -> Option<&LearnedCapture> {
        let ports = &reader.header().config.ports;
        let peers = peer_ports_of(ports);
        let mut client_ports: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| !peers.contains(p))
            .collect();
        if client_ports.is_empty() {
            client_ports = ports.clone();
        }
        let mut decoder = RpcDecoder::new(client_ports);
        let mut calls = Vec::new();
        self.begin(file);
        for item in reader.events() {
            tick();
            match item {
                ReadItem::Event(ev) => {
                    self.time(ev.ts_ns());
                    decoder.push_owned(ev, &mut calls);
                }
                ReadItem::Damaged(_) => {
                    if let Some(c) = &mut self.current {
                        c.damaged += 1;
                    }
                }
            }
            for c in calls.drain(..) {
                self.call(&c);
            }
        }
        decoder.finish(&mut calls);
        for c in calls.drain(..) {
            self.call(&c);
        }
        self.end(decoder.stats().events_lost)
    }

    /// Starts a capture: its events' times and calls follow.
    pub fn begin(&mut self, file: &str) {
        self.current = Some(Current {
            file: file.to_string(),
            first_ns: None,
            last_ns: 0,
            calls: 0,
            unknown: 0,
            damaged: 0,
        });
    }

    /// An event's time: the capture's duration runs from its first event to its last.
    pub fn time(&mut self, ts_ns: u64) {
        if let Some(c) = &mut self.current {
            c.first_ns = Some(c.first_ns.map_or(ts_ns, |f| f.min(ts_ns)));
            c.last_ns = c.last_ns.max(ts_ns);
        }
    }

    /// One RPC record of the current capture.
    pub fn call(&mut self, call: &RpcCall) {
        let Some(cur) = &mut self.current else {
            return;
        };
        let start = cur.first_ns.unwrap_or(call.ts_ns);
        let depth = self.limits.prefix_depth;
        if let Some(key) = read_key(call) {
            let prefix = prefix_of(key, depth);
            if let Some(n) = self.read_prefixes.get_mut(&prefix) {
                *n += 1;
            } else if self.read_prefixes.len() < MAX_READ_PREFIXES {
                self.read_prefixes.insert(prefix, 1);
            } else {
                self.dropped.read_prefix_reads += 1;
            }
        }
        if call.kind != RecordKind::Call {
            return;
        }
        let Some(method) = method_key(call) else {
            cur.unknown += 1;
            return;
        };
        cur.calls += 1;
        let ip = canonical(call.client.ip());
        if !self.clients.contains_key(&ip) && self.clients.len() >= self.limits.max_clients {
            if self.dropped_clients.len() < MAX_DROPPED_REMEMBERED {
                self.dropped_clients.insert(ip);
            }
            self.dropped.clients = self.dropped_clients.len() as u64;
            self.dropped.client_calls += 1;
            return;
        }
        let client = self.clients.entry(ip).or_default();
        client.calls += 1;
        let m = client.methods.entry(method).or_default();
        m.stats.record(call);
        m.request_sizes.record(call.request_bytes);
        m.response_sizes.record(call.response_bytes);
        let is_range = call.method_name() == "Range";
        let keys = if is_range { response_keys(call) } else { 0 };
        if is_range {
            m.keys.record(keys);
        }
        if let Some(key) = &call.key {
            let prefix = prefix_of(key, depth);
            let room = client.prefix_entries < self.limits.max_prefixes
                && self.prefix_entries < MAX_PREFIX_ENTRIES;
            let entry = match m.prefixes.get_mut(&prefix) {
                Some(p) => Some(p),
                None if room => {
                    client.prefix_entries += 1;
                    self.prefix_entries += 1;
                    Some(m.prefixes.entry(prefix).or_default())
                }
                None => None,
            };
            match entry {
                Some(p) => {
                    p.calls += 1;
                    p.keys += keys;
                    p.response_bytes += call.response_bytes;
                }
                None => self.dropped.prefix_calls += 1,
            }
        }
        if is_range {
            let r = &mut client.reads;
            r.ranges += 1;
            r.keys += keys;
            r.bytes += call.response_bytes;
            let idx = call.ts_ns.saturating_sub(start) / BUCKET_NS;
            match &mut r.bucket {
                Some((i, k, b)) if *i >= idx => {
                    *k += keys;
                    *b += call.response_bytes;
                }
                _ => {
                    r.close_bucket(BUCKET_NS as f64 / 1e9);
                    r.bucket = Some((idx, keys, call.response_bytes));
                }
            }
        }
    }

    /// The current capture ended: its last buckets are closed.
    pub fn end(&mut self, events_lost: u64) -> Option<&LearnedCapture> {
        let cur = self.current.take()?;
        let first = cur.first_ns?;
        let capture_ns = cur.last_ns.saturating_sub(first);
        for c in self.clients.values_mut() {
            if let Some((idx, _, _)) = c.reads.bucket {
                let bucket_start = first.saturating_add(idx.saturating_mul(BUCKET_NS));
                let seen = cur.last_ns.saturating_sub(bucket_start);
                c.reads
                    .close_bucket(rate_span_s(seen, BUCKET_NS, capture_ns));
            }
        }
        self.captures.push(LearnedCapture {
            file: cur.file,
            start_ns: first,
            duration_s: (capture_ns as f64 / 1e9).max(1e-3),
            calls: cur.calls,
            calls_unknown_method: cur.unknown,
            events_lost,
            damaged_blocks: cur.damaged,
        });
        self.captures.last()
    }

    /// Calls learned so far.
    pub fn calls(&self) -> u64 {
        self.clients.values().map(|c| c.calls).sum()
    }

    /// The baseline of every capture learned.
    pub fn finish(mut self) -> Baseline {
        if self.current.is_some() {
            self.end(0);
        }
        let duration_s = self
            .captures
            .iter()
            .map(|c| c.duration_s)
            .sum::<f64>()
            .max(1e-3);
        let per_s = |n: u64| n as f64 / duration_s;
        let mut clients: Vec<ClientBaseline> = self
            .clients
            .into_iter()
            .map(|(ip, c)| {
                let total = c.calls.max(1) as f64;
                let mut methods: Vec<MethodBaseline> = c
                    .methods
                    .into_iter()
                    .map(|(path, m)| {
                        let mut prefixes: Vec<PrefixBaseline> = m
                            .prefixes
                            .into_iter()
                            .map(|(prefix, p)| PrefixBaseline {
                                prefix,
                                calls: p.calls,
                                per_s: per_s(p.calls),
                                keys: p.keys,
                                response_bytes: p.response_bytes,
                            })
                            .collect();
                        prefixes
                            .sort_by(|a, b| b.calls.cmp(&a.calls).then(a.prefix.cmp(&b.prefix)));
                        MethodBaseline {
                            method: path.to_string(),
                            calls: m.stats.calls,
                            per_s: per_s(m.stats.calls),
                            share: m.stats.calls as f64 / total,
                            errors: m.stats.errors(),
                            latency_ns: Quantiles::from(&m.stats.latency),
                            request_bytes: Quantiles::from(&m.request_sizes),
                            response_bytes: Quantiles::from(&m.response_sizes),
                            keys: (m.keys.count() > 0).then(|| Quantiles::from(&m.keys)),
                            prefixes,
                        }
                    })
                    .collect();
                methods.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.method.cmp(&b.method)));
                let r = c.reads;
                let (keys_per_s, bytes_per_s) = (per_s(r.keys), per_s(r.bytes));
                ClientBaseline {
                    client: ip,
                    calls: c.calls,
                    reads: ReadRate {
                        ranges: r.ranges,
                        keys: r.keys,
                        bytes: r.bytes,
                        keys_per_s,
                        bytes_per_s,
                        peak_keys_per_s: r.peak_keys_per_s.max(keys_per_s),
                        peak_bytes_per_s: r.peak_bytes_per_s.max(bytes_per_s),
                    },
                    methods,
                }
            })
            .collect();
        clients.sort_by_key(|c| c.client);
        Baseline {
            format: FORMAT_NAME.to_string(),
            version: VERSION,
            prefix_depth: self.limits.prefix_depth,
            bucket_s: BUCKET_NS as f64 / 1e9,
            duration_s,
            captures: self.captures,
            clients,
            read_prefixes: self
                .read_prefixes
                .into_iter()
                .map(|(prefix, reads)| PrefixReads { prefix, reads })
                .collect(),
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::analyze::detect::tests::{call, range};
    use crate::decode::etcdpb::{DeleteRangeRequest, KeyValue, PutRequest, RangeResponse};

    pub(crate) const S: u64 = 1_000_000_000;

    /// A Range of `key` (to `end`) by `client` that returned `keys` keys of 100 bytes.
    pub(crate) fn read(client: &str, ts: u64, key: &str, end: &str, keys: usize) -> RpcCall {
        let mut c = call(
            client,
            ts,
            "KV/Range",
            range(key.as_bytes(), end.as_bytes(), 0),
        );
        c.response = Some(RpcBody::Message(EtcdMessage::RangeResponse(
            RangeResponse {
                kvs: vec![KeyValue::default(); keys],
                count: keys as i64,
                ..Default::default()
            },
        )));
        c.response_bytes = 100 * keys as u64 + 20;
        c
    }

    pub(crate) fn put(client: &str, ts: u64, key: &str) -> RpcCall {
        let req = EtcdMessage::PutRequest(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        call(client, ts, "KV/Put", Some(req))
    }

    pub(crate) fn delete(client: &str, ts: u64, key: &str) -> RpcCall {
        let req = EtcdMessage::DeleteRangeRequest(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        });
        call(client, ts, "KV/DeleteRange", Some(req))
    }

    /// `secs` seconds of a normal workload from `start`: 10.0.0.1 gets one config key
    /// a second (`keys` keys per get), 10.0.0.2 puts two jobs a second and lists the
    /// jobs every 4 s (5 keys).
    pub(crate) fn workload(start: u64, secs: u64, keys: usize) -> Vec<RpcCall> {
        let mut calls = Vec::new();
        for s in 0..secs {
            let t = start + s * S;
            let end = if keys > 1 { "/app/config0" } else { "" };
            calls.push(read(
                "10.0.0.1:40000",
                t,
                &format!("/app/config/k{}", s % 20),
                end,
                keys,
            ));
            calls.push(put("10.0.0.2:40001", t + S / 4, &format!("/app/jobs/j{s}")));
            calls.push(put(
                "10.0.0.2:40001",
                t + S / 2,
                &format!("/app/jobs/j{s}b"),
            ));
            if s % 4 == 0 {
                calls.push(read(
                    "10.0.0.2:40002",
                    t + 3 * S / 4,
                    "/app/jobs/",
                    "/app/jobs0",
                    5,
                ));
            }
        }
        calls
    }

    /// A baseline learned from captures given as (start, end, calls).
    pub(crate) fn learned(
        captures: Vec<(u64, u64, Vec<RpcCall>)>,
        limits: LearnLimits,
    ) -> Baseline {
        let mut l = Learner::new(limits);
        for (i, (start, end, calls)) in captures.into_iter().enumerate() {
            l.begin(&format!("normal-{i}.etr"));
            l.time(start);
            l.time(end);
            for c in &calls {
                l.call(c);
            }
            l.end(0);
        }
        l.finish()
    }

    pub(crate) const LIMITS: LearnLimits = LearnLimits {
        prefix_depth: 2,
        max_clients: 100,
        max_prefixes: 100,
    };

    #[test]
    fn rates_are_per_second_over_every_capture() {
        // 10 s and 20 s of the same workload: 30 s in all.
        let base = learned(
            vec![
                (0, 10 * S, workload(0, 10, 1)),
                (100 * S, 120 * S, workload(100 * S, 20, 1)),
            ],
            LIMITS,
        );
        assert_eq!(base.captures.len(), 2);
        assert!((base.duration_s - 30.0).abs() < 1e-9, "{}", base.duration_s);
        assert_eq!(base.clients.len(), 2);
        let a = base.client("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(a.calls, 30);
        let range = a.method("/etcdserverpb.KV/Range").unwrap();
        assert!((range.per_s - 1.0).abs() < 1e-9);
        assert_eq!(range.share, 1.0);
        assert_eq!(range.latency_ns.p50, 1_000_000);
        assert_eq!(range.keys.unwrap().p99, 1);
        assert_eq!(range.prefixes[0].prefix, "/app/config/");
        assert!((a.reads.keys_per_s - 1.0).abs() < 1e-9);
        assert!(a.reads.peak_keys_per_s >= a.reads.keys_per_s);
        let b = base.client("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(b.calls, 68);
        let puts = b.method("/etcdserverpb.KV/Put").unwrap();
        assert!((puts.share - 60.0 / 68.0).abs() < 1e-9);
        assert_eq!(b.methods[0].method, "/etcdserverpb.KV/Put", "busiest first");
        let read: Vec<&str> = base
            .read_prefixes
            .iter()
            .map(|p| p.prefix.as_str())
            .collect();
        assert_eq!(read, ["/app/config/", "/app/jobs/"]);
        assert!(!base.dropped.any());
        // What is written reads back the same (rates to within their last digit).
        let again = Baseline::from_json(base.to_json().as_bytes()).unwrap();
        assert_eq!(again.clients.len(), base.clients.len());
        for (x, y) in again.clients.iter().zip(&base.clients) {
            assert_eq!(
                (x.client, x.calls, &x.reads.keys),
                (y.client, y.calls, &y.reads.keys)
            );
            for (m, n) in x.methods.iter().zip(&y.methods) {
                assert_eq!(
                    (&m.method, m.calls, m.latency_ns),
                    (&n.method, n.calls, n.latency_ns)
                );
                assert!((m.share - n.share).abs() < 1e-12 && (m.per_s - n.per_s).abs() < 1e-12);
                assert_eq!(m.prefixes.len(), n.prefixes.len());
            }
        }
        assert_eq!(again.read_prefixes, base.read_prefixes);
    }

    #[test]
    fn the_busiest_ten_seconds_are_kept() {
        // One list of 500 keys in a minute of single-key gets.
        let mut calls = workload(0, 60, 1);
        calls.push(read(
            "10.0.0.1:40000",
            30 * S,
            "/app/config/",
            "/app/config0",
            500,
        ));
        let base = learned(vec![(0, 60 * S, calls)], LIMITS);
        let a = &base.client("10.0.0.1".parse().unwrap()).unwrap().reads;
        assert!((a.keys_per_s - 560.0 / 60.0).abs() < 1e-6, "{a:?}");
        assert!(a.peak_keys_per_s >= 50.0, "{a:?}");
    }

    #[test]
    fn caps_say_what_was_left_out() {
        let mut calls = workload(0, 10, 1);
        calls.push(put("10.0.0.3:1", S, "/other/a"));
        calls.push(put("10.0.0.3:2", 2 * S, "/other/b"));
        calls.push(put("10.0.0.2:3", 3 * S, "/third/x"));
        let limits = LearnLimits {
            prefix_depth: 2,
            max_clients: 2,
            max_prefixes: 1,
        };
        let base = learned(vec![(0, 10 * S, calls)], limits);
        assert_eq!(base.clients.len(), 2);
        assert_eq!(base.dropped.clients, 1);
        assert_eq!(base.dropped.client_calls, 2);
        // 10.0.0.2 keeps its first (method, prefix): Put on /app/jobs/.
        assert_eq!(base.dropped.prefix_calls, 3 + 1);
        assert!(base.dropped.any());
        // A prefix is a short name, whatever the key.
        let mut long = vec![b'x'; 1 << 20];
        long.push(b'/');
        assert!(prefix_of(&long, 2).len() <= 256 * 4);
        assert_eq!(
            prefix_of(b"/registry/pods/default/web-1", 2),
            "/registry/pods/"
        );
    }

    #[test]
    fn other_versions_and_damaged_files_are_refused() {
        let base = learned(vec![(0, 10 * S, workload(0, 10, 1))], LIMITS);
        let json = base.to_json();
        let edit = |from: &str, to: &str| {
            assert!(json.contains(from), "{from}");
            Baseline::from_json(json.replacen(from, to, 1).as_bytes())
        };
        let err = edit("\"version\": 1", "\"version\": 2").unwrap_err();
        assert!(matches!(err, BaselineError::Version { found: 2 }), "{err}");
        assert!(err.to_string().contains("version 2"), "{err}");
        assert!(matches!(
            edit("etcd-trace baseline", "something else"),
            Err(BaselineError::NotABaseline)
        ));
        assert!(matches!(
            Baseline::from_json(b"\x89PNG"),
            Err(BaselineError::NotJson(_))
        ));
        assert!(matches!(
            Baseline::from_json(&json.as_bytes()[..json.len() / 2]),
            Err(BaselineError::NotJson(_))
        ));
        for (from, to) in [
            ("\"prefix_depth\": 2", "\"prefix_depth\": 0"),
            ("\"duration_s\": 10.0", "\"duration_s\": -1.0"),
            ("\"share\": 1.0", "\"share\": 7.0"),
            ("\"client\": \"10.0.0.2\"", "\"client\": \"10.0.0.1\""),
            ("\"client\": \"10.0.0.2\"", "\"client\": \"not an address\""),
            ("\"calls\": 10", "\"calls\": -10"),
        ] {
            let err = edit(from, to).unwrap_err();
            assert!(matches!(err, BaselineError::Invalid(_)), "{from}: {err}");
        }
    }

    /// Random bytes and mutations of a real baseline are refused or read, never a panic.
    #[test]
    fn mutated_baselines_do_not_panic() {
        let base = learned(vec![(0, 10 * S, workload(0, 10, 3))], LIMITS);
        let json = base.to_json().into_bytes();
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut bytes = json.clone();
            for _ in 0..1 + rng.index(4) {
                let i = rng.index(bytes.len());
                bytes[i] = b"0123456789-.e\"{}[],:9 "[rng.index(22)];
            }
            if let Ok(b) = Baseline::from_json(&bytes) {
                assert!(b.duration_s > 0.0);
            }
            let n = rng.index(64);
            let _ = Baseline::from_json(&rng.bytes(n));
        }
    }

    #[test]
    fn spans_of_rates() {
        // A full window; the last, cut short (never below 5 s); a capture shorter than that.
        assert_eq!(rate_span_s(60 * S, 60 * S, 100 * S), 60.0);
        assert_eq!(rate_span_s(20 * S, 60 * S, 100 * S), 20.0);
        assert_eq!(rate_span_s(S, 60 * S, 100 * S), 5.0);
        assert_eq!(rate_span_s(S, 60 * S, 2 * S), 2.0);
        assert_eq!(rate_span_s(0, 2 * S, 100 * S), 2.0);
    }
}

//! What a capture asks to be sent again: its RPC records (analyze::rpc) grouped back into
//! the client connections they came on, each call with the request messages to re-send
//! and what the original cluster answered (for mapping ids and comparing latency). Calls
//! that must not or cannot be sent are kept aside with the reason, for the report.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use anyhow::Result;

use crate::analyze::pattern::method_matches;
use crate::analyze::rpc::{MessageDirection, RecordKind, RpcBody, RpcCall, RpcDecoder};
use crate::capture::{CaptureReader, ReadItem};
use crate::decode::etcdpb::{self, EtcdMessage};

/// Which captured calls to send (`--method`, `--key-prefix`, `--only-reads`,
/// `--only-writes`, `--include-admin`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub method: Option<String>,
    pub key_prefix: Option<Vec<u8>>,
    pub only_reads: bool,
    pub only_writes: bool,
    pub include_admin: bool,
}

/// One captured call to send again.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    /// Capture time of the first request byte, and of the last response byte.
    pub start_ns: u64,
    pub end_ns: u64,
    pub path: String,
    pub streaming: bool,
    /// The request messages with their capture times (one for a unary call).
    pub requests: Vec<(u64, EtcdMessage)>,
    pub original: Original,
    /// The original carried an auth token (redacted in a capture, so never re-sent).
    pub had_token: bool,
}

impl PlannedCall {
    pub fn method_name(&self) -> &str {
        short_name(&self.path)
    }
}

/// What the recorded cluster answered.
#[derive(Debug, Clone, Default)]
pub struct Original {
    pub latency_ns: Option<u64>,
    pub status: Option<u32>,
    /// The revision in the (first) response's header.
    pub revision: Option<i64>,
    /// A LeaseGrant's lease id.
    pub lease_granted: Option<i64>,
    /// Events in a Watch stream's responses.
    pub watch_events: u64,
}

/// A client connection of the capture, with its calls in start order.
#[derive(Debug, Clone)]
pub struct PlannedConnection {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub calls: Vec<PlannedCall>,
}

/// A captured call that is not sent, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Withheld {
    pub start_ns: u64,
    pub method: String,
    pub client: String,
    pub reason: String,
}

/// Everything `reproduce` needs from a capture.
#[derive(Debug, Default)]
pub struct Plan {
    pub connections: Vec<PlannedConnection>,
    pub withheld: Vec<Withheld>,
    /// Cluster ids in the captured response headers.
    pub cluster_ids: BTreeSet<u64>,
    /// Original revisions that the planned calls' responses carry, in order: a revision
    /// in a later request maps through the reproduction of these.
    pub revisions: BTreeSet<i64>,
    /// Lease ids granted by planned calls.
    pub leases: BTreeSet<i64>,
    /// Capture time of the first planned call.
    pub first_ns: u64,
}

impl Plan {
    pub fn calls(&self) -> usize {
        self.connections.iter().map(|c| c.calls.len()).sum()
    }
}

/// Methods held back unless `--include-admin`: they change membership, leadership,
/// alarms, auth or storage (Compact throws history away that later reads may ask for;
/// Snapshot streams the whole database).
pub fn is_admin(path: &str) -> bool {
    let Some(info) = etcdpb::method(path) else {
        return true;
    };
    match info.service {
        "etcdserverpb.Cluster" | "etcdserverpb.Auth" => info.mutating,
        "etcdserverpb.Maintenance" => matches!(
            info.method,
            "Alarm" | "Defragment" | "Snapshot" | "MoveLeader" | "Downgrade"
        ),
        "etcdserverpb.KV" => info.method == "Compact",
        _ => false,
    }
}

fn short_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A streaming call being put together from its message records.
struct OpenStream {
    call: PlannedCall,
    client: SocketAddr,
    server: SocketAddr,
    /// Why it will not be sent, once known.
    withheld: Option<Skip>,
}

/// Reads the capture and builds the plan.
pub fn build(reader: &CaptureReader, selection: &Selection) -> Result<Plan> {
    let ports = reader.header().config.ports.clone();
    let mut decoder = RpcDecoder::new(ports);
    let mut builder = Builder {
        selection,
        plan: Plan::default(),
        connections: BTreeMap::new(),
        streams: BTreeMap::new(),
    };
    let mut records = Vec::new();
    for item in reader.events().without_syscall_contents() {
        match item {
            ReadItem::Event(ev) => decoder.push_owned(ev, &mut records),
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
        for r in records.drain(..) {
            builder.take(r);
        }
    }
    decoder.finish(&mut records);
    for r in records.drain(..) {
        builder.take(r);
    }
    Ok(builder.finish())
}

struct Builder<'a> {
    selection: &'a Selection,
    plan: Plan,
    connections: BTreeMap<(SocketAddr, SocketAddr), Vec<PlannedCall>>,
    streams: BTreeMap<(SocketAddr, SocketAddr, u32), OpenStream>,
}

impl Builder<'_> {
    fn take(&mut self, r: RpcCall) {
        for body in [&r.request, &r.response].into_iter().flatten() {
            if let Some(h) = body.message().and_then(EtcdMessage::response_header) {
                if h.cluster_id != 0 {
                    self.plan.cluster_ids.insert(h.cluster_id);
                }
            }
        }
        if r.is_unreadable_connection() {
            return;
        }
        let key = (r.client, r.server, r.stream_id);
        match r.kind {
            RecordKind::Call => self.take_call(r),
            RecordKind::Message { direction, index } => {
                if !self.streams.contains_key(&key) {
                    let open = self.open_stream(&r);
                    self.streams.insert(key, open);
                }
                let Some(open) = self.streams.get_mut(&key) else {
                    return;
                };
                match direction {
                    MessageDirection::Request => match r.request.as_ref() {
                        Some(RpcBody::Message(m)) => open.call.requests.push((r.ts_ns, m.clone())),
                        _ => {
                            if open.withheld.is_none() {
                                open.withheld = Some(Skip::Because(format!(
                                    "request message {index} was not captured whole"
                                )));
                            }
                        }
                    },
                    MessageDirection::Response => {
                        if let Some(m) = r.response.as_ref().and_then(RpcBody::message) {
                            note_response(&mut open.call.original, m);
                        }
                    }
                }
            }
            RecordKind::StreamEnd { .. } => {
                let mut open = match self.streams.remove(&key) {
                    Some(open) => open,
                    None => self.open_stream(&r),
                };
                open.call.end_ns = r.end_ns.max(open.call.start_ns);
                open.call.original.status = r.status;
                self.close_stream(open);
            }
        }
    }

    /// A stream's first record decides whether it is wanted.
    fn open_stream(&self, r: &RpcCall) -> OpenStream {
        let withheld = self.reason_to_withhold(r);
        OpenStream {
            call: PlannedCall {
                start_ns: r.ts_ns,
                end_ns: r.end_ns,
                path: r.method.clone().unwrap_or_default(),
                streaming: true,
                requests: Vec::new(),
                original: Original::default(),
                had_token: r.token.is_some(),
            },
            client: r.client,
            server: r.server,
            withheld,
        }
    }

    fn close_stream(&mut self, open: OpenStream) {
        match open.withheld {
            Some(Skip::Unselected) => {}
            Some(Skip::Because(reason)) => self.withhold(&open.call, open.client, reason),
            None => self.keep(open.client, open.server, open.call),
        }
    }

    fn take_call(&mut self, r: RpcCall) {
        let mut call = PlannedCall {
            start_ns: r.ts_ns,
            end_ns: r.end_ns,
            path: r.method.clone().unwrap_or_default(),
            streaming: false,
            requests: Vec::new(),
            original: Original {
                latency_ns: r.latency_ns,
                status: r.status,
                ..Original::default()
            },
            had_token: r.token.is_some(),
        };
        if let Some(m) = r.response.as_ref().and_then(RpcBody::message) {
            note_response(&mut call.original, m);
        }
        match self.reason_to_withhold(&r) {
            Some(Skip::Unselected) => return,
            Some(Skip::Because(reason)) => return self.withhold(&call, r.client, reason),
            None => {}
        }
        match r.request {
            Some(RpcBody::Message(m)) => {
                if let Some(reason) = redacted_secret(&m) {
                    return self.withhold(&call, r.client, reason);
                }
                call.requests.push((r.ts_ns, m));
                self.keep(r.client, r.server, call);
            }
            _ => self.withhold(
                &call,
                r.client,
                "the request was not captured whole".to_string(),
            ),
        }
    }

    fn reason_to_withhold(&self, r: &RpcCall) -> Option<Skip> {
        let Some(path) = r.method.as_deref() else {
            return Some(Skip::Because("the method is unknown".to_string()));
        };
        let s = self.selection;
        if s.method
            .as_deref()
            .is_some_and(|g| !method_matches(g, path))
        {
            return Some(Skip::Unselected);
        }
        if let Some(prefix) = &s.key_prefix {
            if !r.key.as_ref().is_some_and(|k| k.starts_with(prefix)) {
                return Some(Skip::Unselected);
            }
        }
        let Some(info) = etcdpb::method(path) else {
            return Some(Skip::Because(format!("{path} is not an etcd method")));
        };
        if s.only_reads && info.mutating || s.only_writes && !info.mutating {
            return Some(Skip::Unselected);
        }
        if is_admin(path) && !s.include_admin {
            return Some(Skip::Because(
                "admin call: held back (--include-admin sends it)".to_string(),
            ));
        }
        if matches!(info.service, "v3lockpb.Lock" | "v3electionpb.Election") {
            return Some(Skip::Because(
                "lock and election calls hold leases whose mapping is not done".to_string(),
            ));
        }
        if r.inferred {
            return Some(Skip::Because(
                "the method was inferred, not seen".to_string(),
            ));
        }
        None
    }

    fn withhold(&mut self, call: &PlannedCall, client: SocketAddr, reason: String) {
        self.plan.withheld.push(Withheld {
            start_ns: call.start_ns,
            method: short_name(&call.path).to_string(),
            client: client.to_string(),
            reason,
        });
    }

    fn keep(&mut self, client: SocketAddr, server: SocketAddr, call: PlannedCall) {
        if let Some(rev) = call.original.revision {
            self.plan.revisions.insert(rev);
        }
        if let Some(id) = call.original.lease_granted {
            self.plan.leases.insert(id);
        }
        self.connections
            .entry((client, server))
            .or_default()
            .push(call);
    }

    fn finish(mut self) -> Plan {
        let open: Vec<_> = std::mem::take(&mut self.streams).into_values().collect();
        for open in open {
            self.close_stream(open);
        }
        let mut first = u64::MAX;
        for ((client, server), mut calls) in std::mem::take(&mut self.connections) {
            calls.sort_by_key(|c| c.start_ns);
            first = first.min(calls.first().map_or(u64::MAX, |c| c.start_ns));
            self.plan.connections.push(PlannedConnection {
                client,
                server,
                calls,
            });
        }
        self.plan.first_ns = if first == u64::MAX { 0 } else { first };
        self.plan.withheld.sort_by_key(|w| w.start_ns);
        self.plan
    }
}

enum Skip {
    /// Not asked for: not reported.
    Unselected,
    /// Asked for but not sendable: reported.
    Because(String),
}

fn note_response(original: &mut Original, m: &EtcdMessage) {
    if original.revision.is_none() {
        if let Some(h) = m.response_header() {
            if h.revision != 0 {
                original.revision = Some(h.revision);
            }
        }
    }
    match m {
        EtcdMessage::LeaseGrantResponse(g) if g.error.is_empty() => {
            original.lease_granted = Some(g.id);
        }
        EtcdMessage::WatchResponse(w) => {
            original.watch_events = original.watch_events.saturating_add(w.events.len() as u64);
        }
        _ => {}
    }
}

/// Record-time redaction overwrites passwords with `*`: such a request cannot be sent.
fn redacted_secret(m: &EtcdMessage) -> Option<String> {
    let scrubbed = |s: &str| !s.is_empty() && s.bytes().all(|b| b == b'*');
    let password = match m {
        EtcdMessage::AuthenticateRequest(r) => &r.password,
        EtcdMessage::AuthUserAddRequest(r) => &r.password,
        EtcdMessage::AuthUserChangePasswordRequest(r) => &r.password,
        _ => return None,
    };
    scrubbed(password)
        .then(|| "its password was redacted at record time: it cannot be sent again".to_string())
}

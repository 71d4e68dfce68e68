//! `etcd-trace replay FILE`: the etcd RPCs that clients made, decoded from the captured
//! traffic, one line (or JSON object) per RPC, then how completely they were decoded.

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use base64::Engine;
use foldhash::HashMap;
use serde_json::{json, Map, Value};

use super::live::Input;
use super::threads;
use super::timespec::resolve;
use crate::analyze::order::TimeOrder;
use crate::analyze::pattern::method_matches;
use crate::analyze::rpc::{
    decode_rpcs, Completeness, MessageDirection, RecordKind, RpcBody, RpcCall, RpcStats,
};
use crate::analyze::sharded::Step;
use crate::capture::Header;
use crate::cli::{Format, ReplayArgs};
use crate::decode::etcdpb::watch_request::RequestUnion;
use crate::decode::etcdpb::{
    describe_range, display_key, EtcdMessage, WatchRequest, WatchResponse,
};
use crate::decode::grpc::status_code_name;
use crate::output::{human_bytes, human_duration_ns, offset};

/// Which RPC records to keep (`--since/--until/--client/--method/--key-prefix`); export
/// keeps the connections of the records it accepts.
pub(crate) struct Filter {
    since: Option<u64>,
    until: Option<u64>,
    client: Option<String>,
    method: Option<String>,
    key_prefix: Option<Vec<u8>>,
}

impl Filter {
    /// The selection of `--since/--until` (offsets from the capture's first event,
    /// `start`, or wall times), `--client` and `--method`.
    pub fn new(
        header: &Header,
        start: u64,
        [since, until]: [&Option<String>; 2],
        client: &Option<String>,
        method: &Option<String>,
    ) -> Result<Filter> {
        let time = |s: &Option<String>| s.as_deref().map(|s| resolve(s, header, start)).transpose();
        Ok(Filter {
            since: time(since)?,
            until: time(until)?,
            client: client.clone(),
            method: method.clone(),
            key_prefix: None,
        })
    }

    fn with_key_prefix(self, prefix: Option<&str>) -> Filter {
        Filter {
            key_prefix: prefix.map(unescape_key),
            ..self
        }
    }

    /// True when no selection was asked for.
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.client.is_none()
            && self.method.is_none()
            && self.key_prefix.is_none()
    }

    pub fn accepts(&self, call: &RpcCall) -> bool {
        if self.since.is_some_and(|t| call.ts_ns < t) || self.until.is_some_and(|t| call.ts_ns >= t)
        {
            return false;
        }
        if let Some(c) = &self.client {
            if call.client.to_string() != *c && call.client.ip().to_string() != *c {
                return false;
            }
        }
        if let Some(glob) = &self.method {
            let Some(path) = &call.method else {
                return false;
            };
            if !method_matches(glob, path) {
                return false;
            }
        }
        if let Some(prefix) = &self.key_prefix {
            if !call.key.as_ref().is_some_and(|k| k.starts_with(prefix)) {
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct Tally {
    records: u64,
    full: u64,
    partial: u64,
    unknown: u64,
    inferred: u64,
    damaged: u64,
    events_lost: u64,
}

pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    let mut input = Input::open(&args.files, args.follow)?;
    super::note_api_mode(input.header(), "replay");
    let live = input.is_live();
    let header = input.header().clone();
    let start = input.start();
    let filter = Filter::new(
        &header,
        start,
        [&args.since, &args.until],
        &args.client,
        &args.method,
    )?
    .with_key_prefix(args.key_prefix.as_deref());
    let progress = input.progress("decoding RPCs");
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut tally = Tally::default();
    // Records come out as calls end: put them back in start order (a stream's end record
    // at its end) within a window; calls longer than the window may still come out late.
    let mut order = TimeOrder::new(ORDER_WINDOW_NS, MAX_HELD_RECORDS);
    let mut lines: Vec<Line> = Vec::new();
    // Each decoding thread filters and formats its records.
    let make_finisher = || {
        let mut endpoints = EndpointTexts::default();
        let (filter, args) = (&filter, &args);
        move |mut call: RpcCall| -> Line {
            let sort_ns = sort_time(&call);
            if !filter.accepts(&call) {
                return Line {
                    sort_ns,
                    shown: None,
                };
            }
            if !args.show_secrets {
                call.redact();
            }
            let mut text = Vec::new();
            // Writing to memory does not fail.
            let _ = match args.format {
                Format::Json => writeln!(text, "{}", to_json(&call)),
                Format::Text => write_text(&mut text, &call, start, &mut endpoints),
            };
            let shown = Shown {
                completeness: call.completeness(),
                inferred: call.inferred,
                text,
            };
            Line {
                sort_ns,
                shown: Some(Box::new(shown)),
            }
        }
    };
    let mut emit = |lines: &mut Vec<Line>, tally: &mut Tally| -> std::io::Result<()> {
        let printed = !lines.is_empty();
        for shown in lines.drain(..).filter_map(|l| l.shown) {
            tally.records += 1;
            match shown.completeness {
                Completeness::Full => tally.full += 1,
                Completeness::Partial => tally.partial += 1,
                Completeness::UnknownMethod => tally.unknown += 1,
            }
            if shown.inferred {
                tally.inferred += 1;
            }
            out.write_all(&shown.text)?;
        }
        // Followed, each record is out as soon as it is complete.
        if live && printed {
            out.flush()?;
        }
        Ok(())
    };
    let mut step = |step: Step<Line>| -> std::io::Result<()> {
        match step {
            Step::Record(line) => order.push(line.sort_ns, line),
            Step::Event { ts_ns, .. } => {
                progress.tick_events(1);
                order.release(ts_ns, &mut lines);
                emit(&mut lines, &mut tally)?;
            }
            Step::Quiet { now_ns } => {
                order.release(now_ns, &mut lines);
                emit(&mut lines, &mut tally)?;
            }
            Step::Damaged(d) => {
                progress.tick_events(1);
                tally.damaged += 1;
                tally.events_lost += d.events_lost.unwrap_or(0);
                eprintln!("warning: {d}");
            }
        }
        Ok(())
    };
    // Syscalls matter here only for their times (they move the output window on).
    let stats = decode_rpcs(
        input.items(false),
        header.config.ports.clone(),
        threads(),
        make_finisher,
        &mut step,
    )?;
    order.drain(&mut lines);
    emit(&mut lines, &mut tally)?;
    progress.finish();
    if args.format == Format::Text {
        write_summary(&mut out, &tally, &stats)?;
    }
    out.flush()?;
    input.end_note();
    Ok(ExitCode::SUCCESS)
}

/// A record as the output takes it: where it goes in time, and unless the filters left
/// it out, its text and what the summary counts of it.
struct Line {
    sort_ns: u64,
    shown: Option<Box<Shown>>,
}

struct Shown {
    completeness: Completeness,
    inferred: bool,
    text: Vec<u8>,
}

/// Capture time a record waits for earlier-starting ones, and records held at most.
const ORDER_WINDOW_NS: u64 = 2_000_000_000;
const MAX_HELD_RECORDS: usize = 1 << 20;

/// A record's place in the output: its start, or for a stream's end record its end.
fn sort_time(r: &RpcCall) -> u64 {
    match r.kind {
        RecordKind::StreamEnd { .. } => r.end_ns,
        _ => r.ts_ns,
    }
}

/// `--key-prefix` text, with `\xNN` escapes (as keys are displayed) turned into bytes.
pub(crate) fn unescape_key(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'x') {
                if let Some(v) = b
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn status_text(status: Option<u32>) -> &'static str {
    status.map_or("-", status_code_name)
}

fn what(call: &RpcCall) -> String {
    match (&call.key, &call.range_end) {
        (Some(k), Some(e)) => describe_range(k, e),
        (Some(k), None) => display_key(k),
        _ => lease_subject(call).unwrap_or_else(|| "-".to_string()),
    }
}

/// Lease calls have no key: name their lease (in hex, as etcdctl prints IDs).
fn lease_subject(call: &RpcCall) -> Option<String> {
    let message = |b: &Option<RpcBody>| b.as_ref().and_then(RpcBody::message).cloned();
    let text = match (message(&call.request), message(&call.response)) {
        (_, Some(EtcdMessage::LeaseGrantResponse(r))) => {
            format!("lease {:x} TTL {}s", r.id, r.ttl)
        }
        (Some(EtcdMessage::LeaseGrantRequest(r)), _) => format!("lease TTL {}s", r.ttl),
        (Some(EtcdMessage::LeaseRevokeRequest(r)), _) => format!("lease {:x}", r.id),
        (Some(EtcdMessage::LeaseKeepAliveRequest(r)), _) => format!("lease {:x}", r.id),
        (_, Some(EtcdMessage::LeaseKeepAliveResponse(r))) => {
            format!("lease {:x} TTL {}s", r.id, r.ttl)
        }
        (Some(EtcdMessage::LeaseTimeToLiveRequest(r)), _) => format!("lease {:x}", r.id),
        _ => return None,
    };
    Some(text)
}

fn body_summary(body: &Option<RpcBody>, bytes: u64) -> Option<String> {
    match body.as_ref()? {
        RpcBody::SnapshotChunks {
            chunks, blob_bytes, ..
        } => Some(format!("{chunks} chunks, {}", human_bytes(*blob_bytes))),
        RpcBody::Raw { .. } => Some(format!("{} undecoded", human_bytes(bytes))),
        b => {
            let partial = if b.is_complete() { "" } else { " (partial)" };
            let what = match b.message()? {
                EtcdMessage::RangeResponse(r) => {
                    let n = r.kvs.len();
                    format!("{n} key{}, {}", plural(n), human_bytes(bytes))
                }
                EtcdMessage::DeleteRangeResponse(d) => format!("deleted {}", d.deleted),
                EtcdMessage::TxnResponse(t) => if t.succeeded {
                    "success branch"
                } else {
                    "failure branch"
                }
                .to_string(),
                EtcdMessage::WatchRequest(w) => watch_request_summary(w),
                EtcdMessage::WatchResponse(w) => watch_response_summary(w),
                _ => human_bytes(bytes),
            };
            Some(format!("{what}{partial}"))
        }
    }
}

/// What a Watch request asks: a create, a cancel (of which watch) or progress.
fn watch_request_summary(w: &WatchRequest) -> String {
    match &w.request_union {
        Some(RequestUnion::CreateRequest(c)) if c.watch_id != 0 => {
            format!("create watch {}", c.watch_id)
        }
        Some(RequestUnion::CreateRequest(_)) => "create watch".to_string(),
        Some(RequestUnion::CancelRequest(c)) => format!("cancel watch {}", c.watch_id),
        Some(RequestUnion::ProgressRequest(_)) => "progress request".to_string(),
        None => "empty request".to_string(),
    }
}

/// Which watch a Watch response is for and what it says: created, canceled, events.
fn watch_response_summary(w: &WatchResponse) -> String {
    let n = w.events.len();
    if w.watch_id == -1 && !w.created && !w.canceled && n == 0 {
        // etcd answers a progress request for the whole stream with watch id -1.
        return "progress".to_string();
    }
    let mut text = format!("watch {}", w.watch_id);
    if w.created {
        text.push_str(" created");
    }
    if w.canceled {
        text.push_str(" canceled");
        if !w.cancel_reason.is_empty() {
            text.push_str(&format!(" ({})", w.cancel_reason));
        }
    }
    if n > 0 || !(w.created || w.canceled) {
        text.push_str(&format!(": {n} event{}", plural(n)));
    }
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `client -> server` texts of recent connections: formatting two socket addresses is a
/// good part of writing a line, and a connection has many lines.
#[derive(Default)]
struct EndpointTexts(HashMap<(SocketAddr, SocketAddr), String>);

/// Connections whose text is kept at most (then the cache starts over).
const MAX_ENDPOINT_TEXTS: usize = 4096;

impl EndpointTexts {
    fn get(&mut self, client: SocketAddr, server: SocketAddr) -> &str {
        if self.0.len() >= MAX_ENDPOINT_TEXTS && !self.0.contains_key(&(client, server)) {
            self.0.clear();
        }
        self.0
            .entry((client, server))
            .or_insert_with(|| format!("{client} -> {server}"))
    }
}

/// One line per record (and one per note), written piece by piece rather than built
/// first: this runs once per RPC.
fn write_text(
    out: &mut dyn Write,
    call: &RpcCall,
    start: u64,
    endpoints: &mut EndpointTexts,
) -> std::io::Result<()> {
    write!(
        out,
        "{} {} #{} {}{}",
        offset(call.ts_ns, start, 6),
        endpoints.get(call.client, call.server),
        call.stream_id,
        call.method_name(),
        if call.inferred { "?" } else { "" }
    )?;
    match call.kind {
        RecordKind::Call => {
            write!(out, " {}", what(call))?;
            if let Some(summary) = body_summary(&call.response, call.response_bytes) {
                write!(out, " -> {summary}")?;
            }
            write!(out, " {} ", status_text(call.status))?;
            write_latency(out, call.latency_ns)?;
        }
        RecordKind::Message { direction, index } => {
            let (arrow, body, bytes) = match direction {
                MessageDirection::Request => ("request", &call.request, call.request_bytes),
                MessageDirection::Response => ("response", &call.response, call.response_bytes),
            };
            let result = body_summary(body, bytes).unwrap_or_else(|| human_bytes(bytes));
            write!(out, " {arrow} #{index} {} {result}", what(call))?;
        }
        RecordKind::StreamEnd {
            requests,
            responses,
        } => {
            write!(
                out,
                " end ({requests} requests, {responses} responses) {} ",
                status_text(call.status)
            )?;
            write_latency(out, call.latency_ns)?;
        }
    }
    out.write_all(b"\n")?;
    for note in &call.notes {
        writeln!(out, "    note: {note}")?;
    }
    Ok(())
}

fn write_latency(out: &mut dyn Write, latency_ns: Option<u64>) -> std::io::Result<()> {
    match latency_ns {
        Some(ns) => out.write_all(human_duration_ns(ns).as_bytes()),
        None => out.write_all(b"-"),
    }
}

fn write_summary(out: &mut dyn Write, t: &Tally, stats: &RpcStats) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{} RPC records: {} decoded fully, {} partially ({} with an inferred method), {} with \
         an unknown method",
        t.records, t.full, t.partial, t.inferred, t.unknown
    )?;
    writeln!(
        out,
        "{} connections ({} open before recording began); {} in gaps; {} events lost; {} \
         damaged regions",
        stats.connections,
        stats.midstream_connections,
        human_bytes(stats.gap_bytes),
        stats.events_lost.saturating_add(t.events_lost),
        t.damaged
    )?;
    if stats.midstream_skipped > 0 {
        writeln!(
            out,
            "{} peer-port connections open before recording began: raft streams, not RPCs (etcd-trace raft decodes them)",
            stats.midstream_skipped
        )?;
    }
    write_tls_summary(out, stats)
}

/// TLS connections, and those whose plaintext the capture lacks: their calls are not
/// in the records, which must not pass for "no calls".
pub fn write_tls_summary(out: &mut dyn Write, stats: &RpcStats) -> std::io::Result<()> {
    if stats.tls_connections == 0 {
        return Ok(());
    }
    write!(
        out,
        "{} TLS connections, decoded from the plaintext taken inside etcd",
        stats.tls_connections
    )?;
    if stats.tls_without_plaintext > 0 {
        write!(
            out,
            "; {} without plaintext, so their calls are missing above (recorded with --no-tls, \
             or no traced etcd there could be probed: see the recorder's start-up messages)",
            stats.tls_without_plaintext
        )?;
    }
    if stats.tls_unplaced_bytes > 0 {
        write!(
            out,
            "; {} of plaintext on connections whose socket was never learned",
            human_bytes(stats.tls_unplaced_bytes)
        )?;
    }
    writeln!(out)
}

fn body_json(obj: &mut Map<String, Value>, name: &str, body: &Option<RpcBody>) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let value = match body {
        None => Value::Null,
        Some(RpcBody::Message(m)) => m.to_json(),
        Some(RpcBody::Partial {
            message,
            captured,
            len,
        }) => {
            obj.insert(
                format!("{name}_partial"),
                json!({ "captured": captured, "len": len }),
            );
            message.to_json()
        }
        Some(RpcBody::Raw { bytes, len, reason }) => {
            obj.insert(
                format!("{name}_raw"),
                json!({ "base64": b64(bytes), "len": len, "reason": reason }),
            );
            Value::Null
        }
        Some(RpcBody::SnapshotChunks {
            chunks,
            blob_bytes,
            remaining_bytes,
        }) => {
            obj.insert(
                "snapshot".into(),
                json!({ "chunks": chunks, "blob_bytes": blob_bytes,
                        "remaining_bytes": remaining_bytes }),
            );
            Value::Null
        }
    };
    obj.insert(name.to_string(), value);
}

fn to_json(call: &RpcCall) -> Value {
    let mut obj = Map::new();
    obj.insert("ts_ns".into(), call.ts_ns.into());
    obj.insert("end_ns".into(), call.end_ns.into());
    obj.insert("client".into(), call.client.to_string().into());
    obj.insert("server".into(), call.server.to_string().into());
    obj.insert("stream".into(), call.stream_id.into());
    let (record, direction, index) = match call.kind {
        RecordKind::Call => ("call", None, None),
        RecordKind::Message { direction, index } => ("message", Some(direction), Some(index)),
        RecordKind::StreamEnd { .. } => ("stream_end", None, None),
    };
    obj.insert("record".into(), record.into());
    if let Some(d) = direction {
        obj.insert("direction".into(), json!(d));
        obj.insert("index".into(), json!(index));
    }
    if let RecordKind::StreamEnd {
        requests,
        responses,
    } = call.kind
    {
        obj.insert("requests".into(), requests.into());
        obj.insert("responses".into(), responses.into());
    }
    obj.insert("method".into(), json!(call.method));
    obj.insert("inferred".into(), call.inferred.into());
    obj.insert("status".into(), json!(call.status));
    obj.insert(
        "status_name".into(),
        json!(call.status.map(status_code_name)),
    );
    if let Some(m) = &call.grpc_message {
        obj.insert("grpc_message".into(), m.clone().into());
    }
    obj.insert("latency_ns".into(), json!(call.latency_ns));
    obj.insert("key".into(), json!(call.key.as_deref().map(display_key)));
    if let Some(end) = &call.range_end {
        obj.insert("range".into(), what(call).into());
        obj.insert("range_end".into(), display_key(end).into());
    }
    body_json(&mut obj, "request", &call.request);
    body_json(&mut obj, "response", &call.response);
    obj.insert("request_bytes".into(), call.request_bytes.into());
    obj.insert("response_bytes".into(), call.response_bytes.into());
    if let Some(t) = &call.token {
        obj.insert("token".into(), t.clone().into());
    }
    obj.insert("gaps".into(), call.gaps.into());
    if call.tls {
        obj.insert("tls".into(), true.into());
    }
    obj.insert("notes".into(), json!(call.notes));
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::{unescape_key, watch_request_summary, watch_response_summary};
    use crate::decode::etcdpb::watch_request::RequestUnion;
    use crate::decode::etcdpb::{
        Event, WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
    };

    #[test]
    fn watch_messages_say_which_watch() {
        let request = |r| {
            watch_request_summary(&WatchRequest {
                request_union: Some(r),
            })
        };
        assert_eq!(
            request(RequestUnion::CreateRequest(WatchCreateRequest::default())),
            "create watch"
        );
        assert_eq!(
            request(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 0
            })),
            "cancel watch 0"
        );
        assert_eq!(
            request(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 7
            })),
            "cancel watch 7"
        );
        let response = |watch_id, created, canceled, events: usize| {
            watch_response_summary(&WatchResponse {
                watch_id,
                created,
                canceled,
                events: vec![Event::default(); events],
                ..Default::default()
            })
        };
        assert_eq!(response(0, true, false, 0), "watch 0 created");
        assert_eq!(response(1, false, true, 0), "watch 1 canceled");
        assert_eq!(response(1, false, false, 2), "watch 1: 2 events");
        assert_eq!(response(0, false, false, 0), "watch 0: 0 events");
        assert_eq!(response(-1, false, false, 0), "progress");
        let refused = WatchResponse {
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: "mvcc: required revision has been compacted".into(),
            ..Default::default()
        };
        assert_eq!(
            watch_response_summary(&refused),
            "watch -1 created canceled (mvcc: required revision has been compacted)"
        );
    }

    #[test]
    fn key_prefix_escapes() {
        assert_eq!(unescape_key("/a/"), b"/a/");
        assert_eq!(unescape_key("\\xff\\xfek"), vec![0xff, 0xfe, b'k']);
        assert_eq!(unescape_key("a\\\\b"), b"a\\b");
        assert_eq!(unescape_key("\\xZZ"), b"\\xZZ");
    }
}

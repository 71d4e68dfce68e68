//! One TCP connection's decoding: both HTTP/2 directions, one HPACK decoder per
//! direction, and the open gRPC streams. A stream's state lives from its first frame to
//! its end (trailers, RST_STREAM, or the connection's end), then becomes records.

use std::collections::{BTreeMap, VecDeque};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::infer::{infer_method, infer_method_among, whole_fields_prefix, Side};
use super::watches::WatchKeys;
use super::{MessageDirection, RecordKind, RpcBody, RpcCall, MAX_RAW_KEPT};
use crate::analyze::streams::{StreamDecoder, StreamEnd};
use crate::decode::etcdpb::{self, snapshot_chunk_summary, EtcdMessage, MethodInfo, StreamKind};
use crate::decode::grpc::{parse_grpc_status, GrpcEvent, GrpcMessage, GrpcMessageAssembler};
use crate::decode::hpack::{
    FieldText, HeaderBlock, HpackDecoder, Indexing, TableState, DEFAULT_MAX_TABLE_SIZE,
};
use crate::decode::http2::{FrameSummary, Http2Connection, Http2Event, SettingId};
use crate::decode::tcp::{ConnectionKey, FlowDirection};

/// Finished stream ids remembered, so late frames of a finished stream are not taken
/// for a new one.
const FINISHED_REMEMBERED: usize = 256;

/// Identities of unseen HPACK entries resolved to a method, kept per connection.
const MAX_RESOLVED: usize = 256;

/// Number of the first dynamic-table index (RFC 7541 §2.3.3).
const FIRST_DYNAMIC_INDEX: u32 = 62;

fn idx(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

fn side_of(dir: FlowDirection) -> Side {
    match dir {
        FlowDirection::ClientToServer => Side::Request,
        FlowDirection::ServerToClient => Side::Response,
    }
}

fn who(dir: FlowDirection) -> &'static str {
    match dir {
        FlowDirection::ClientToServer => "client",
        FlowDirection::ServerToClient => "server",
    }
}

/// Which unseen HPACK entries a request header block referred to: the same list on one
/// connection (within one table epoch) means the same header values, so the same method.
type UnseenKey = (u64, Vec<u32>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Keep the first message of each side; one record at the end.
    Unary,
    /// One record per message, and one at the end.
    Streaming,
    /// Snapshot: responses counted, never kept.
    Snapshot,
}

fn mode_of(path: &str) -> Mode {
    match etcdpb::method(path) {
        Some(m) if m.path == "/etcdserverpb.Maintenance/Snapshot" => Mode::Snapshot,
        Some(m) if m.kind != StreamKind::Unary => Mode::Streaming,
        _ => Mode::Unary,
    }
}

#[derive(Debug, Default)]
struct SnapshotTally {
    chunks: u64,
    blob_bytes: u64,
    remaining_bytes: u64,
}

#[derive(Debug)]
struct StreamState {
    id: u32,
    mode: Mode,
    path: Option<String>,
    inferred: bool,
    unseen: Option<UnseenKey>,
    token: Option<String>,
    ts_ns: u64,
    end_ns: u64,
    request_headers: bool,
    response_headers: bool,
    encodings: [Option<String>; 2],
    assemblers: [Option<GrpcMessageAssembler>; 2],
    ended: [bool; 2],
    first: [Option<GrpcMessage>; 2],
    counts: [u64; 2],
    bytes: [u64; 2],
    snapshot: Option<SnapshotTally>,
    key: Option<Vec<u8>>,
    range_end: Option<Vec<u8>>,
    /// A Watch stream's watches, to name the keys each message is about.
    watches: WatchKeys,
    status: Option<u32>,
    grpc_message: Option<String>,
    gaps: bool,
    /// Decoded from TLS plaintext.
    tls: bool,
    notes: Vec<String>,
}

impl StreamState {
    fn new(id: u32, ts_ns: u64) -> StreamState {
        StreamState {
            id,
            mode: Mode::Unary,
            path: None,
            inferred: false,
            unseen: None,
            token: None,
            ts_ns,
            end_ns: ts_ns,
            request_headers: false,
            response_headers: false,
            encodings: [None, None],
            assemblers: [None, None],
            ended: [false, false],
            first: [None, None],
            counts: [0, 0],
            bytes: [0, 0],
            snapshot: None,
            key: None,
            range_end: None,
            watches: WatchKeys::default(),
            status: None,
            grpc_message: None,
            gaps: false,
            tls: false,
            notes: Vec::new(),
        }
    }

    fn note(&mut self, text: String) {
        if !self.notes.contains(&text) && self.notes.len() < 16 {
            self.notes.push(text);
        }
    }

    fn set_path(&mut self, path: String) {
        self.mode = mode_of(&path);
        if self.mode == Mode::Snapshot && self.snapshot.is_none() {
            self.snapshot = Some(SnapshotTally::default());
        }
        self.path = Some(path);
    }

    fn assembler(&mut self, dir: FlowDirection) -> &mut GrpcMessageAssembler {
        let i = idx(dir);
        let encoding = self.encodings[i].as_deref();
        self.assemblers[i].get_or_insert_with(|| GrpcMessageAssembler::new(encoding))
    }

    fn record(&self, key: ConnectionKey, kind: RecordKind) -> RpcCall {
        RpcCall {
            kind,
            ts_ns: self.ts_ns,
            end_ns: self.end_ns,
            client: key.client,
            server: key.server,
            stream_id: self.id,
            method: self.path.clone(),
            inferred: self.inferred,
            status: None,
            grpc_message: None,
            latency_ns: None,
            request: None,
            response: None,
            request_bytes: self.bytes[0],
            response_bytes: self.bytes[1],
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            token: self.token.clone(),
            gaps: self.gaps,
            tls: self.tls,
            notes: self.notes.clone(),
        }
    }
}

/// Decodes one message body as far as it goes.
fn decode_body(path: Option<&str>, side: Side, m: &GrpcMessage) -> RpcBody {
    let raw = |reason: String| RpcBody::Raw {
        bytes: m.data.get(..MAX_RAW_KEPT).unwrap_or(&m.data).to_vec(),
        len: m.len,
        reason,
    };
    if let Some(e) = &m.decode_error {
        return raw(e.to_string());
    }
    let Some(path) = path else {
        return raw("the method is unknown".to_string());
    };
    let decode = |bytes: &[u8]| match side {
        Side::Request => etcdpb::decode_request(path, bytes),
        Side::Response => etcdpb::decode_response(path, bytes),
    };
    if m.complete {
        return match decode(&m.data) {
            Ok(message) => RpcBody::Message(message),
            Err(e) => raw(e.to_string()),
        };
    }
    match decode(whole_fields_prefix(&m.data)) {
        Ok(message) => RpcBody::Partial {
            message,
            captured: m.data.len(),
            len: m.len,
        },
        Err(e) => raw(e.to_string()),
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Request => "request",
        Side::Response => "response",
    }
}

/// A note on an incomplete message, or None when it is complete.
fn incomplete_note(side: Side, m: &GrpcMessage) -> Option<String> {
    if m.complete && m.decode_error.is_none() {
        return None;
    }
    let why = match &m.incomplete {
        Some(crate::decode::grpc::IncompleteReason::TooLarge { kept }) => {
            format!("larger than the {kept} bytes kept")
        }
        Some(crate::decode::grpc::IncompleteReason::Gap { lost }) => {
            format!("{lost} bytes not captured (snaplen or loss)")
        }
        Some(crate::decode::grpc::IncompleteReason::EndOfStream { missing }) => {
            format!("the stream ended {missing} bytes short")
        }
        None => m
            .decode_error
            .as_ref()
            .map_or_else(String::new, |e| e.to_string()),
    };
    Some(format!(
        "{} message incomplete: {} of {} bytes captured, {why}; only whole fields decoded",
        side_name(side),
        m.data.len(),
        m.len
    ))
}

const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

/// One record for one message of a streaming call.
fn emit_message(
    s: &mut StreamState,
    conn_key: ConnectionKey,
    side: Side,
    index: u64,
    m: &GrpcMessage,
    out: &mut Vec<RpcCall>,
) {
    let body = decode_body(s.path.as_deref(), side, m);
    if side == Side::Request && s.key.is_none() {
        if let Some(msg) = body.message() {
            s.key = msg.key().map(<[u8]>::to_vec);
            s.range_end = msg.range_end().map(<[u8]>::to_vec);
        }
    }
    let mut rec = s.record(
        conn_key,
        RecordKind::Message {
            direction: match side {
                Side::Request => MessageDirection::Request,
                Side::Response => MessageDirection::Response,
            },
            index,
        },
    );
    if s.path.as_deref() == Some(WATCH_PATH) {
        // One watch of the stream's many: the record names that watch's keys.
        let range = match body.message() {
            Some(EtcdMessage::WatchRequest(r)) => s.watches.on_request(r),
            Some(EtcdMessage::WatchResponse(r)) => s.watches.on_response(r),
            _ => None,
        };
        (rec.key, rec.range_end) = range.map_or((None, None), |(k, e)| (Some(k), Some(e)));
    }
    rec.ts_ns = m.ts_first_ns;
    rec.end_ns = m.ts_last_ns;
    rec.gaps = !m.complete;
    rec.notes = incomplete_note(side, m).into_iter().collect();
    if s.inferred {
        rec.notes.extend(
            s.notes
                .iter()
                .filter(|n| n.starts_with("method inferred"))
                .cloned(),
        );
    }
    if s.path.is_none() {
        rec.notes.extend(s.notes.iter().cloned());
    }
    let bytes = u64::from(m.len).saturating_add(5);
    match side {
        Side::Request => {
            rec.request = Some(body);
            rec.request_bytes = bytes;
            rec.response_bytes = 0;
        }
        Side::Response => {
            rec.response = Some(body);
            rec.response_bytes = bytes;
            rec.request_bytes = 0;
        }
    }
    out.push(rec);
}

/// Decoding state of one connection.
#[derive(Debug)]
pub(super) struct ConnectionDecoder {
    key: ConnectionKey,
    midstream: bool,
    /// The connection carries TLS: fed plaintext only.
    tls: bool,
    h2: Http2Connection,
    hpack: [HpackDecoder; 2],
    epoch: [u64; 2],
    streams: BTreeMap<u32, StreamState>,
    finished: VecDeque<u32>,
    /// The same ids, for the lookup every frame makes.
    finished_set: HashSet<u32>,
    resolved: HashMap<UnseenKey, String>,
    /// HTTP/2 events of the bytes being decoded (kept for its allocation).
    h2_events: Vec<Http2Event>,
    /// When and why bytes of a connection seen from its start were not HTTP/2 (the first
    /// time): a connection that carried no call says so in a record of its own.
    undecodable: Option<(u64, String)>,
    /// A stream was seen on the connection.
    had_streams: bool,
    /// The client began with an HTTP/1 request line: etcd's other API (peer traffic,
    /// `/health`, `/metrics`, v2), not gRPC, and not undecodable either.
    http1: bool,
}

impl StreamDecoder for ConnectionDecoder {
    type Record = RpcCall;

    fn new(key: ConnectionKey, handshake_seen: bool) -> ConnectionDecoder {
        let hpack = |_| {
            if handshake_seen {
                HpackDecoder::new(DEFAULT_MAX_TABLE_SIZE)
            } else {
                HpackDecoder::new_midstream(DEFAULT_MAX_TABLE_SIZE)
            }
        };
        ConnectionDecoder {
            key,
            midstream: !handshake_seen,
            tls: false,
            h2: Http2Connection::new(handshake_seen),
            hpack: [hpack(0), hpack(1)],
            epoch: [0, 0],
            streams: BTreeMap::new(),
            finished: VecDeque::new(),
            finished_set: HashSet::new(),
            resolved: HashMap::new(),
            h2_events: Vec::new(),
            undecodable: None,
            had_streams: false,
            http1: false,
        }
    }

    fn set_tls(&mut self) {
        self.tls = true;
    }

    fn is_tls(&self) -> bool {
        self.tls
    }

    fn push_data(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<RpcCall>,
    ) {
        if offset == 0 && dir == FlowDirection::ClientToServer {
            self.http1 = crate::decode::http1::starts_request_line(bytes);
        }
        // Taken out while the events are handled with `self`, then put back.
        let mut events = std::mem::take(&mut self.h2_events);
        self.h2.push_data(dir, offset, bytes, ts_ns, &mut events);
        for ev in events.drain(..) {
            self.on_http2(dir, ev, out);
        }
        self.h2_events = events;
    }

    fn push_gap(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<RpcCall>,
    ) {
        let mut events = Vec::new();
        self.h2.push_gap(dir, offset, len, ts_ns, &mut events);
        for ev in events {
            self.on_http2(dir, ev, out);
        }
    }

    /// The connection (or the capture) ended: open streams are emitted, saying why.
    fn finish(&mut self, end: StreamEnd, out: &mut Vec<RpcCall>) {
        let why = match end {
            StreamEnd::Closed { .. } => "the connection closed before the call ended",
            StreamEnd::Replaced { .. } => "the connection was replaced before the call ended",
            StreamEnd::CaptureEnded => "the capture ended before the call did",
        };
        let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
        self.h2.finish(&mut c2s, &mut s2c);
        for ev in c2s {
            self.on_http2(FlowDirection::ClientToServer, ev, out);
        }
        for ev in s2c {
            self.on_http2(FlowDirection::ServerToClient, ev, out);
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(mut s) = self.streams.remove(&id) {
                s.note(why.to_string());
                self.end_stream(s, out);
            }
        }
        // Garbage, or broken HTTP/2, from the start: no call to tell, but not nothing.
        let quiet = self.had_streams || self.http1;
        if let (false, Some((ts_ns, reason))) = (quiet, self.undecodable.take()) {
            let mut s = StreamState::new(0, ts_ns);
            s.tls = self.tls;
            s.note(format!(
                "{reason}: the connection carried no call that could be read"
            ));
            out.push(s.record(self.key, RecordKind::Call));
        }
    }
}

impl ConnectionDecoder {
    fn on_http2(&mut self, dir: FlowDirection, ev: Http2Event, out: &mut Vec<RpcCall>) {
        match ev {
            Http2Event::Frame { ts_ns, frame, .. } => match frame {
                FrameSummary::Settings {
                    ack: false,
                    settings,
                } => {
                    // A peer's HEADER_TABLE_SIZE bounds the table of the encoder that
                    // sends to it: the other direction.
                    for s in settings {
                        if s.id == SettingId::HeaderTableSize {
                            self.hpack[idx(dir.reverse())].set_max_table_size(s.value);
                        }
                    }
                }
                FrameSummary::RstStream(r) => {
                    if let Some(mut s) = self.streams.remove(&r.stream_id) {
                        s.note(format!("reset by the {} ({})", who(dir), r.error_code));
                        s.end_ns = s.end_ns.max(ts_ns);
                        self.end_stream(s, out);
                    }
                }
                _ => {}
            },
            Http2Event::HeaderBlock {
                stream_id,
                ts_ns,
                end_stream,
                promised_stream_id: None,
                fragment,
            } => {
                let decoded = self.decode_block(dir, &fragment);
                self.on_headers(dir, stream_id, ts_ns, end_stream, decoded, out);
            }
            Http2Event::HeaderBlock { fragment, .. } => {
                // gRPC never pushes; decode only to keep the table in step.
                let _ = self.decode_block(dir, &fragment);
            }
            Http2Event::HeaderBlockLost {
                stream_id,
                ts_ns,
                end_stream,
                reason,
            } => {
                self.desync(dir);
                let why = format!("{} header block lost ({reason:?})", who(dir));
                self.on_headers(dir, stream_id, ts_ns, end_stream, Err(why), out);
            }
            Http2Event::Data {
                stream_id,
                ts_ns,
                end_stream,
                bytes,
                padded_len: _,
            } => self.on_data(dir, stream_id, ts_ns, end_stream, &bytes, out),
            Http2Event::DataGap {
                stream_id,
                ts_ns,
                len,
                exact,
            } => {
                if let Some(s) = self.stream(stream_id, ts_ns) {
                    s.gaps = true;
                    s.bytes[idx(dir)] = s.bytes[idx(dir)].saturating_add(len);
                    let mut events = Vec::new();
                    s.assembler(dir).push_gap(len, exact, ts_ns, &mut events);
                    self.on_grpc(dir, stream_id, events, out);
                }
            }
            Http2Event::Desync { ts_ns, reason, .. } => {
                self.desync(dir);
                if reason == crate::decode::http2::DesyncReason::MidStreamStart {
                    return;
                }
                if !self.midstream && self.undecodable.is_none() {
                    let what = format!("{} bytes are not HTTP/2 ({reason:?})", who(dir));
                    self.undecodable = Some((ts_ns, what));
                }
                // Frames were lost: any open stream of this direction may have lost DATA.
                let ids: Vec<u32> = self.streams.keys().copied().collect();
                for id in ids {
                    if let Some(s) = self.streams.get_mut(&id) {
                        if s.ended[idx(dir)] {
                            continue;
                        }
                        s.gaps = true;
                        s.note(format!("{} HTTP/2 frames lost ({reason:?})", who(dir)));
                        let mut events = Vec::new();
                        s.assembler(dir).push_gap(0, false, ts_ns, &mut events);
                        self.on_grpc(dir, id, events, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn desync(&mut self, dir: FlowDirection) {
        self.hpack[idx(dir)].mark_desynced();
        self.epoch[idx(dir)] += 1;
    }

    /// Decodes a header block; with the identity of the unseen entries it refers to.
    fn decode_block(
        &mut self,
        dir: FlowDirection,
        fragment: &[u8],
    ) -> Result<(HeaderBlock, Option<UnseenKey>), String> {
        let i = idx(dir);
        let before_len = u32::try_from(self.hpack[i].table().len()).unwrap_or(u32::MAX);
        let before_state = self.hpack[i].table_state();
        match self.hpack[i].decode(fragment) {
            Ok(block) => {
                let after_state = self.hpack[i].table_state();
                if after_state == TableState::Desynced && before_state == TableState::Synced {
                    // This block revealed an undetected loss: its references are unreliable.
                    self.epoch[i] += 1;
                    return Ok((block, None));
                }
                let mut inserted = 0u32;
                let mut ranks = Vec::new();
                for f in &block.fields {
                    for text in [&f.name, &f.value] {
                        if let FieldText::Unknown { index } = text {
                            let rank = index.saturating_sub(
                                FIRST_DYNAMIC_INDEX
                                    .saturating_add(before_len)
                                    .saturating_add(inserted),
                            );
                            ranks.push(rank);
                            break;
                        }
                    }
                    if f.indexing == Indexing::Incremental {
                        inserted = inserted.saturating_add(1);
                    }
                }
                let key = (!ranks.is_empty()).then(|| (self.epoch[i], ranks));
                Ok((block, key))
            }
            Err(e) => {
                self.epoch[i] += 1;
                Err(format!("{} header block undecodable: {e}", who(dir)))
            }
        }
    }

    /// The stream with this id, created when first seen; None for a finished one.
    fn stream(&mut self, id: u32, ts_ns: u64) -> Option<&mut StreamState> {
        if self.finished_set.contains(&id) {
            return None;
        }
        let midstream = self.midstream;
        let tls = self.tls;
        self.had_streams = true;
        Some(self.streams.entry(id).or_insert_with(|| {
            let mut s = StreamState::new(id, ts_ns);
            s.tls = tls;
            // Data before any HEADERS: the call began before recording; such calls are
            // long-lived streams (Watch, LeaseKeepAlive), so report their messages one
            // by one.
            s.mode = Mode::Streaming;
            s.note(if midstream {
                "the call began before recording: its HEADERS were not seen".to_string()
            } else {
                "the call's request HEADERS were not seen".to_string()
            });
            s
        }))
    }

    fn on_headers(
        &mut self,
        dir: FlowDirection,
        id: u32,
        ts_ns: u64,
        end_stream: bool,
        decoded: Result<(HeaderBlock, Option<UnseenKey>), String>,
        out: &mut Vec<RpcCall>,
    ) {
        let midstream = self.midstream;
        let resolved_path = match &decoded {
            Ok((_, Some(k))) => self.resolved.get(k).cloned(),
            _ => None,
        };
        let fresh = !self.streams.contains_key(&id);
        let Some(s) = self.stream(id, ts_ns) else {
            return;
        };
        let i = idx(dir);
        if fresh {
            // Created by its HEADERS: not a call that began before recording.
            s.notes.clear();
            s.mode = Mode::Unary;
            s.ts_ns = ts_ns;
        }
        s.end_ns = s.end_ns.max(ts_ns);
        match dir {
            FlowDirection::ClientToServer if !s.request_headers => {
                s.request_headers = true;
                match decoded {
                    Ok((block, unseen)) => {
                        s.encodings[i] = block
                            .get(b"grpc-encoding")
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        s.token = block
                            .get(b"token")
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        if let Some(path) = block.get(b":path") {
                            s.set_path(String::from_utf8_lossy(path).into_owned());
                        } else if let Some(path) = resolved_path {
                            s.set_path(path);
                            s.inferred = true;
                            s.note(
                                "method inferred: the :path is the same unseen HPACK entry as \
                                 an earlier call's on this connection whose messages fit only \
                                 that method"
                                    .to_string(),
                            );
                        } else {
                            s.unseen = unseen;
                            s.note(if block.uncertain {
                                format!(
                                    "the :path is an HPACK dynamic-table entry never seen ({})",
                                    if midstream {
                                        "the connection was open before recording began"
                                    } else {
                                        "a header block of this connection was lost"
                                    }
                                )
                            } else {
                                "the request HEADERS carry no :path".to_string()
                            });
                        }
                    }
                    Err(why) => s.note(why),
                }
            }
            FlowDirection::ClientToServer => {}
            FlowDirection::ServerToClient => {
                let trailers = s.response_headers || end_stream;
                if !s.response_headers {
                    s.response_headers = true;
                    if let Ok((block, _)) = &decoded {
                        s.encodings[i] = block
                            .get(b"grpc-encoding")
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                    }
                }
                match &decoded {
                    Ok((block, _)) if trailers => {
                        let fields: Vec<(&[u8], &[u8])> = block
                            .fields
                            .iter()
                            .filter_map(|f| Some((f.name.as_bytes()?, f.value.as_bytes()?)))
                            .collect();
                        match parse_grpc_status(&fields) {
                            Ok(st) => {
                                s.status = st.code;
                                s.grpc_message = st.message;
                                if st.code.is_none() {
                                    s.note("the trailers carry no readable grpc-status".into());
                                }
                            }
                            Err(e) => s.note(e.to_string()),
                        }
                    }
                    Ok(_) => {}
                    Err(why) => s.note(why.clone()),
                }
            }
        }
        if end_stream {
            self.end_direction(dir, id, ts_ns, out);
        }
    }

    fn on_data(
        &mut self,
        dir: FlowDirection,
        id: u32,
        ts_ns: u64,
        end_stream: bool,
        bytes: &[u8],
        out: &mut Vec<RpcCall>,
    ) {
        let Some(s) = self.stream(id, ts_ns) else {
            return;
        };
        let i = idx(dir);
        s.bytes[i] = s.bytes[i].saturating_add(bytes.len() as u64);
        if dir == FlowDirection::ServerToClient {
            s.end_ns = s.end_ns.max(ts_ns);
        }
        let mut events = Vec::new();
        s.assembler(dir).push_data(bytes, ts_ns, &mut events);
        self.on_grpc(dir, id, events, out);
        if end_stream {
            self.end_direction(dir, id, ts_ns, out);
        }
    }

    /// END_STREAM in one direction; the server's ends the call.
    fn end_direction(&mut self, dir: FlowDirection, id: u32, ts_ns: u64, out: &mut Vec<RpcCall>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let i = idx(dir);
        if !s.ended[i] {
            s.ended[i] = true;
            let mut events = Vec::new();
            if let Some(a) = s.assemblers[i].as_mut() {
                a.finish(ts_ns, &mut events);
            }
            self.on_grpc(dir, id, events, out);
        }
        if dir == FlowDirection::ServerToClient {
            if let Some(s) = self.streams.remove(&id) {
                self.end_stream(s, out);
            }
        }
    }

    fn on_grpc(
        &mut self,
        dir: FlowDirection,
        id: u32,
        events: Vec<GrpcEvent>,
        out: &mut Vec<RpcCall>,
    ) {
        for ev in events {
            match ev {
                GrpcEvent::Message(m) => self.on_message(dir, id, m, out),
                GrpcEvent::Unframeable { reason, .. } => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.gaps = true;
                        s.note(format!(
                            "{} messages unreadable from here on ({reason:?})",
                            side_name(side_of(dir))
                        ));
                    }
                }
            }
        }
    }

    fn on_message(&mut self, dir: FlowDirection, id: u32, m: GrpcMessage, out: &mut Vec<RpcCall>) {
        let conn_key = self.key;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let i = idx(dir);
        let side = side_of(dir);
        let index = s.counts[i];
        s.counts[i] = s.counts[i].saturating_add(1);
        if let Some(note) = incomplete_note(side, &m) {
            s.gaps = true;
            s.note(note);
        }
        match (s.mode, side) {
            (Mode::Snapshot, Side::Response) => {
                let tally = s.snapshot.get_or_insert_with(SnapshotTally::default);
                match snapshot_chunk_summary(&m.data) {
                    Ok(c) => {
                        tally.chunks += 1;
                        tally.blob_bytes = tally.blob_bytes.saturating_add(c.blob_len);
                        tally.remaining_bytes = c.remaining_bytes;
                    }
                    Err(e) => s.note(format!("snapshot chunk {index} unreadable: {e}")),
                }
            }
            (Mode::Streaming, _) => {
                if s.path.is_none() && m.complete {
                    // Several messages one way rule out the methods that send only one.
                    let several = index >= 1;
                    let allowed = |info: &MethodInfo| {
                        !several
                            || match side {
                                Side::Request => {
                                    matches!(info.kind, StreamKind::ClientStream | StreamKind::Bidi)
                                }
                                Side::Response => {
                                    matches!(info.kind, StreamKind::ServerStream | StreamKind::Bidi)
                                }
                            }
                    };
                    if let Some(method) = infer_method_among(&[(side, &m.data)], allowed) {
                        s.set_path(method.path.to_string());
                        s.mode = Mode::Streaming;
                        s.inferred = true;
                        s.note(format!(
                            "method inferred: {} fits only {}'s types",
                            if several {
                                format!("one of several {} messages", side_name(side))
                            } else {
                                format!("a {}", side_name(side))
                            },
                            method.method
                        ));
                        if let Some(k) = s.unseen.clone() {
                            if self.resolved.len() < MAX_RESOLVED {
                                self.resolved.insert(k, method.path.to_string());
                            }
                        }
                    }
                }
                if s.path.is_none() && s.first[i].is_none() {
                    // Held (one per direction) in case a later message names the method.
                    s.first[i] = Some(m);
                    return;
                }
                if s.path.is_some() {
                    if let Some(held) = s.first[i].take() {
                        emit_message(s, conn_key, side, 0, &held, out);
                    }
                }
                emit_message(s, conn_key, side, index, &m, out);
            }
            _ => {
                if s.first[i].is_none() {
                    s.first[i] = Some(m);
                } else if index == 1 {
                    s.note(format!(
                        "more than one {} message: only the first is shown",
                        side_name(side)
                    ));
                }
            }
        }
    }

    /// A stream ended: its records are emitted and its state dropped.
    fn end_stream(&mut self, mut s: StreamState, out: &mut Vec<RpcCall>) {
        self.finished.push_back(s.id);
        self.finished_set.insert(s.id);
        if self.finished.len() > FINISHED_REMEMBERED {
            if let Some(old) = self.finished.pop_front() {
                self.finished_set.remove(&old);
            }
        }
        // Messages still being assembled are cut short.
        for dir in [FlowDirection::ClientToServer, FlowDirection::ServerToClient] {
            let i = idx(dir);
            if !s.ended[i] {
                s.ended[i] = true;
                let mut events = Vec::new();
                if let Some(a) = s.assemblers[i].as_mut() {
                    a.finish(s.end_ns, &mut events);
                }
                let id = s.id;
                self.streams.insert(id, s);
                self.on_grpc(dir, id, events, out);
                match self.streams.remove(&id) {
                    Some(back) => s = back,
                    None => return,
                }
            }
        }
        let key = self.key;
        match s.mode {
            Mode::Streaming => {
                for (i, side) in [Side::Request, Side::Response].into_iter().enumerate() {
                    if let Some(held) = s.first[i].take() {
                        emit_message(&mut s, key, side, 0, &held, out);
                    }
                }
                let mut rec = s.record(
                    key,
                    RecordKind::StreamEnd {
                        requests: s.counts[0],
                        responses: s.counts[1],
                    },
                );
                rec.status = s.status;
                rec.grpc_message = s.grpc_message.clone();
                if s.response_headers || s.status.is_some() {
                    rec.latency_ns = Some(s.end_ns.saturating_sub(s.ts_ns));
                }
                out.push(rec);
            }
            Mode::Unary | Mode::Snapshot => {
                if s.path.is_none() {
                    let msgs: Vec<(Side, &[u8])> = [Side::Request, Side::Response]
                        .into_iter()
                        .zip(s.first.iter())
                        .filter_map(|(side, m)| {
                            m.as_ref()
                                .filter(|m| m.complete && m.decode_error.is_none())
                                .map(|m| (side, m.data.as_slice()))
                        })
                        .collect();
                    if let Some(method) = infer_method(&msgs) {
                        let path = method.path.to_string();
                        if let Some(k) = s.unseen.take() {
                            if self.resolved.len() < MAX_RESOLVED {
                                self.resolved.insert(k, path.clone());
                            }
                        }
                        s.set_path(path);
                        s.inferred = true;
                        s.note(format!(
                            "method inferred: the messages fit only {}'s types",
                            method.method
                        ));
                    }
                }
                let path = s.path.clone();
                let request = s.first[0]
                    .as_ref()
                    .map(|m| decode_body(path.as_deref(), Side::Request, m));
                let response = match &s.snapshot {
                    Some(t) if s.mode == Mode::Snapshot => Some(RpcBody::SnapshotChunks {
                        chunks: t.chunks,
                        blob_bytes: t.blob_bytes,
                        remaining_bytes: t.remaining_bytes,
                    }),
                    _ => s.first[1]
                        .as_ref()
                        .map(|m| decode_body(path.as_deref(), Side::Response, m)),
                };
                if let Some(msg) = request.as_ref().and_then(RpcBody::message) {
                    s.key = msg.key().map(<[u8]>::to_vec);
                    s.range_end = msg.range_end().map(<[u8]>::to_vec);
                }
                for (side, body) in [(Side::Request, &request), (Side::Response, &response)] {
                    if let Some(RpcBody::Raw { reason, .. }) = body {
                        s.note(format!("{} not decoded: {reason}", side_name(side)));
                    }
                }
                let mut rec = s.record(key, RecordKind::Call);
                rec.status = s.status;
                rec.grpc_message = s.grpc_message.clone();
                if s.response_headers || s.status.is_some() {
                    rec.latency_ns = Some(s.end_ns.saturating_sub(s.ts_ns));
                }
                rec.request = request;
                rec.response = response;
                out.push(rec);
            }
        }
    }
}

//! etcd's peer traffic (rafthttp, the peer port): the raft messages members send each
//! other, recovered from one connection's two byte streams.
//!
//! rafthttp speaks HTTP/1.1 (plain or TLS; decoded here from plaintext either way):
//! - `GET /raft/stream/message/<dialer id>` and `GET /raft/stream/msgapp/<dialer id>`
//!   open a stream: the reply is `200` with a chunked body that never ends, carrying
//!   messages from the dialed member (the server) to the dialer. Chunk boundaries are
//!   not message boundaries. `stream.rs` reads the message framing, `msgappv2.rs` the
//!   msgapp one.
//! - `POST /raft` (pipeline) carries one bare raftpb.Message, answered `204`; `POST
//!   /raft/snapshot` a MsgSnap and then the key-value database (`pipeline.rs`).
//! - `GET /raft/probing`, `/version` and `/members` answer JSON, kept as text.
//!
//! Request headers name the members: `X-Server-From` (the sender), `X-Raft-To` (the
//! dialed member, on streams), `X-Etcd-Cluster-ID`, `X-Server-Version`. Errors are
//! `404`, `410` (member removed) and `412` (cluster id or version mismatch).
//!
//! [`PeerConnection`] takes the stream events of one connection and yields
//! [`PeerEvent`]s; a message's time is the time of the stream event that carried its
//! last byte. A connection whose client starts with the HTTP/2 preface is gRPC (etcd
//! 3.4 serves it on the peer port too, behind cmux): it gets one [`NoteKind::Http2`]
//! note and is left to the HTTP/2 decoders. A connection open before recording is
//! decoded from the first place that can be found (see `stream.rs`), with notes that
//! say so.

#![forbid(unsafe_code)]

mod msgappv2;
mod pipeline;
mod stream;

use std::collections::VecDeque;
use std::fmt;

use crate::decode::http1::{
    header, BodyFraming, Http1Connection, Http1Event, LostReason, RequestHead, ResponseHead, Stop,
};
use crate::decode::raftpb::Message;
use crate::decode::tcp::{CloseReason, FlowDirection};

pub use pipeline::MAX_TEXT;
pub use stream::{ETCD_MAX_MESSAGE, MAX_MESSAGE_BYTES};

use msgappv2::MsgAppStream;
use pipeline::{Cut, OtherBody, PipelineBody, SnapshotBody};
use stream::{found_note, MessageStream, Sniffed, Sniffer};

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// `GET /raft/stream/message/<id>`: all messages but MsgApp.
    StreamMessage,
    /// `GET /raft/stream/msgapp/<id>`: MsgApp, in the msgappv2 framing.
    StreamMsgApp,
    /// `POST /raft`: one message.
    Pipeline,
    /// `POST /raft/snapshot`: a MsgSnap and the database.
    Snapshot,
    /// `GET /raft/probing`.
    Probing,
    /// Anything else (`/version`, `/members`, ...).
    Other,
}

impl RequestKind {
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::StreamMessage => "stream message",
            RequestKind::StreamMsgApp => "stream msgapp",
            RequestKind::Pipeline => "pipeline",
            RequestKind::Snapshot => "snapshot",
            RequestKind::Probing => "probing",
            RequestKind::Other => "other",
        }
    }
}

/// Member and cluster ids are lowercase hex on the wire.
fn hex_id(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// A request's line and the rafthttp headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRequest {
    pub kind: RequestKind,
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The member id at the end of a stream's path (the dialer's).
    pub path_id: Option<u64>,
    /// `X-Server-From`: the member that sent the request.
    pub from: Option<u64>,
    /// `X-Raft-To`: the member dialed (stream requests only).
    pub to: Option<u64>,
    /// `X-Etcd-Cluster-ID`.
    pub cluster_id: Option<u64>,
    /// `X-Server-Version`, `X-Min-Cluster-Version`.
    pub server_version: Option<String>,
    pub min_cluster_version: Option<String>,
    /// `X-PeerURLs`: the sender's peer URLs.
    pub peer_urls: Vec<String>,
    /// The body's length, when announced.
    pub content_length: Option<u64>,
}

impl PeerRequest {
    fn of(head: &RequestHead, body: BodyFraming) -> PeerRequest {
        let path = head.target.split('?').next().unwrap_or_default();
        let stream = |kind: &str| {
            path.strip_prefix("/raft/stream/")
                .and_then(|rest| rest.strip_prefix(kind))
                .and_then(|rest| rest.strip_prefix('/'))
        };
        let (kind, path_id) = match head.method.as_str() {
            "GET" => {
                if let Some(id) = stream("message") {
                    (RequestKind::StreamMessage, hex_id(id))
                } else if let Some(id) = stream("msgapp") {
                    (RequestKind::StreamMsgApp, hex_id(id))
                } else if path == "/raft/probing" {
                    (RequestKind::Probing, None)
                } else {
                    (RequestKind::Other, None)
                }
            }
            "POST" if path == "/raft" => (RequestKind::Pipeline, None),
            "POST" if path == "/raft/snapshot" => (RequestKind::Snapshot, None),
            _ => (RequestKind::Other, None),
        };
        let h = |name: &str| header(&head.headers, name);
        PeerRequest {
            kind,
            method: head.method.clone(),
            target: head.target.clone(),
            path_id,
            from: h("X-Server-From").and_then(hex_id),
            to: h("X-Raft-To").and_then(hex_id),
            cluster_id: h("X-Etcd-Cluster-ID").and_then(hex_id),
            server_version: h("X-Server-Version").map(str::to_string),
            min_cluster_version: h("X-Min-Cluster-Version").map(str::to_string),
            peer_urls: h("X-PeerURLs")
                .map(|urls| {
                    urls.split(',')
                        .map(|u| u.trim().to_string())
                        .filter(|u| !u.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            content_length: match body {
                BodyFraming::Length(n) => Some(n),
                BodyFraming::None => Some(0),
                _ => None,
            },
        }
    }
}

/// A response's status line and the rafthttp headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerResponse {
    pub status: u16,
    pub reason: String,
    /// What the request it answers asked for; None when that request was not seen.
    pub request: Option<RequestKind>,
    /// A 1xx before the final response.
    pub interim: bool,
    pub cluster_id: Option<u64>,
    pub server_version: Option<String>,
}

impl PeerResponse {
    fn of(head: &ResponseHead, request: Option<RequestKind>, interim: bool) -> PeerResponse {
        let h = |name: &str| header(&head.headers, name);
        PeerResponse {
            status: head.status,
            reason: head.reason.clone(),
            request,
            interim,
            cluster_id: h("X-Etcd-Cluster-ID").and_then(hex_id),
            server_version: h("X-Server-Version").map(str::to_string),
        }
    }
}

/// How a message was framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `u64 BE length | raftpb.Message`: a message stream, or a snapshot's message.
    LengthPrefixed,
    /// msgappv2 `0x02`: the message whole.
    MsgApp,
    /// msgappv2 `0x01`: entries and commit only; the rest rebuilt from the last MsgApp,
    /// as etcd's decoder does.
    AppEntries,
    /// A pipeline body: the message alone.
    Bare,
}

/// What a note is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteKind {
    /// HTTP/2 on the peer port (gRPC behind cmux): left to the HTTP/2 decoders.
    Http2,
    /// Bytes seen from their middle (a connection open before recording, or after lost
    /// bytes): where decoding starts, and what was passed over.
    Midstream,
    /// Bytes not captured, and what they cost.
    Gap,
    /// A body or message cut short by the end of its connection or of the capture.
    Truncated,
    /// A length beyond what is decoded ([`MAX_MESSAGE_BYTES`]): skipped and counted.
    TooLarge,
    /// Bytes that do not decode as they should.
    Undecodable,
}

/// What a peer connection revealed, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A request head (sent client → server).
    Request { ts_ns: u64, request: PeerRequest },
    /// A response head (sent server → client).
    Response { ts_ns: u64, response: PeerResponse },
    /// A raft message. `dir`: who sent it (`ServerToClient` on streams: the dialed
    /// member). `bytes`: its frame's size in the body.
    Message {
        ts_ns: u64,
        dir: FlowDirection,
        via: RequestKind,
        framing: Framing,
        bytes: u64,
        message: Message,
    },
    /// rafthttp's link heartbeat on a stream (never reaches raft).
    LinkHeartbeat {
        ts_ns: u64,
        dir: FlowDirection,
        via: RequestKind,
    },
    /// The database that follows a snapshot's MsgSnap: `bytes` of it passed (of which
    /// `missing` were not captured); `whole`: the body reached its end.
    SnapshotData {
        ts_ns: u64,
        dir: FlowDirection,
        bytes: u64,
        missing: u64,
        whole: bool,
    },
    /// Any other body: its length and its first [`MAX_TEXT`] bytes as text.
    Body {
        ts_ns: u64,
        dir: FlowDirection,
        via: Option<RequestKind>,
        bytes: u64,
        missing: u64,
        whole: bool,
        text: String,
    },
    /// What could not be decoded, or was decoded only in part, and why.
    Note {
        ts_ns: u64,
        dir: Option<FlowDirection>,
        kind: NoteKind,
        text: String,
    },
    /// The connection ended.
    Closed { ts_ns: u64, reason: CloseReason },
}

impl PeerEvent {
    pub fn ts_ns(&self) -> u64 {
        match self {
            PeerEvent::Request { ts_ns, .. }
            | PeerEvent::Response { ts_ns, .. }
            | PeerEvent::Message { ts_ns, .. }
            | PeerEvent::LinkHeartbeat { ts_ns, .. }
            | PeerEvent::SnapshotData { ts_ns, .. }
            | PeerEvent::Body { ts_ns, .. }
            | PeerEvent::Note { ts_ns, .. }
            | PeerEvent::Closed { ts_ns, .. } => *ts_ns,
        }
    }

    /// Which way the bytes went, when the event is about one direction.
    pub fn dir(&self) -> Option<FlowDirection> {
        match self {
            PeerEvent::Request { .. } => Some(FlowDirection::ClientToServer),
            PeerEvent::Response { .. } => Some(FlowDirection::ServerToClient),
            PeerEvent::Message { dir, .. }
            | PeerEvent::LinkHeartbeat { dir, .. }
            | PeerEvent::SnapshotData { dir, .. }
            | PeerEvent::Body { dir, .. } => Some(*dir),
            PeerEvent::Note { dir, .. } => *dir,
            PeerEvent::Closed { .. } => None,
        }
    }
}

fn arrow(dir: FlowDirection) -> &'static str {
    match dir {
        FlowDirection::ClientToServer => "c->s",
        FlowDirection::ServerToClient => "s->c",
    }
}

/// Longest body text shown by [`PeerEvent`]'s `Display`.
const SHOWN_TEXT: usize = 80;

impl fmt::Display for PeerEvent {
    /// One line, without the time; member ids in hex as etcd prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerEvent::Request { request: r, .. } => {
                write!(f, "{} {} ({})", r.method, r.target, r.kind.name())?;
                if let Some(from) = r.from {
                    write!(f, " from {from:x}")?;
                }
                if let Some(to) = r.to {
                    write!(f, " to {to:x}")?;
                }
                if let Some(cid) = r.cluster_id {
                    write!(f, " cluster {cid:x}")?;
                }
                if let Some(v) = &r.server_version {
                    write!(f, " version {v}")?;
                }
                Ok(())
            }
            PeerEvent::Response { response: r, .. } => {
                write!(f, "{} {}", r.status, r.reason)?;
                match r.request {
                    Some(kind) => write!(f, " ({})", kind.name()),
                    None => f.write_str(" (request not seen)"),
                }
            }
            PeerEvent::Message {
                dir,
                via,
                framing,
                bytes,
                message: m,
                ..
            } => {
                write!(
                    f,
                    "{} {} {:x}->{:x} term {} logTerm {} index {} commit {}",
                    arrow(*dir),
                    m.type_name(),
                    m.from,
                    m.to,
                    m.term,
                    m.log_term,
                    m.index,
                    m.commit
                )?;
                if let (Some(a), Some(b)) = (m.entries.first(), m.entries.last()) {
                    write!(f, " entries {}", m.entries.len())?;
                    // Proposals' entries have no index yet.
                    if b.index > 0 {
                        write!(f, " ({}..={})", a.index, b.index)?;
                    }
                }
                if m.reject {
                    write!(f, " reject hint {}", m.reject_hint)?;
                }
                write!(f, " via {} {framing:?} {bytes} bytes", via.name())
            }
            PeerEvent::LinkHeartbeat { dir, via, .. } => {
                write!(f, "{} link heartbeat via {}", arrow(*dir), via.name())
            }
            PeerEvent::SnapshotData {
                dir,
                bytes,
                missing,
                whole,
                ..
            } => {
                write!(f, "{} snapshot database {bytes} bytes", arrow(*dir))?;
                if *missing > 0 {
                    write!(f, " ({missing} not captured)")?;
                }
                if !whole {
                    f.write_str(", cut short")?;
                }
                Ok(())
            }
            PeerEvent::Body {
                dir,
                via,
                bytes,
                text,
                ..
            } => {
                let via = via.map_or("request not seen", RequestKind::name);
                let shown: String = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(SHOWN_TEXT)
                    .collect();
                write!(
                    f,
                    "{} body of {bytes} bytes ({via}): {}",
                    arrow(*dir),
                    shown.escape_debug()
                )
            }
            PeerEvent::Note {
                dir, kind, text, ..
            } => {
                if let Some(dir) = dir {
                    write!(f, "{} ", arrow(*dir))?;
                }
                write!(f, "note {kind:?}: {text}")
            }
            PeerEvent::Closed { reason, .. } => write!(f, "closed ({reason:?})"),
        }
    }
}

/// The time and direction of the bytes being decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    ts_ns: u64,
    dir: FlowDirection,
}

impl At {
    fn note(self, kind: NoteKind, text: String) -> PeerEvent {
        PeerEvent::Note {
            ts_ns: self.ts_ns,
            dir: Some(self.dir),
            kind,
            text,
        }
    }
}

/// The decoder of one direction's current body.
#[derive(Debug)]
enum Body {
    Message(MessageStream),
    MsgApp(MsgAppStream),
    /// A stream body whose request was not seen.
    Sniff(Sniffer),
    Pipeline(PipelineBody),
    Snapshot(SnapshotBody),
    Other(OtherBody),
}

impl Body {
    fn push(&mut self, bytes: &[u8], chunk_start: bool, at: At, out: &mut Vec<PeerEvent>) {
        match self {
            Body::Message(s) => s.push(bytes, chunk_start, at, out),
            Body::MsgApp(s) => s.push(bytes, chunk_start, at, out),
            Body::Sniff(s) => {
                let sniffed = s.push(bytes, chunk_start, at);
                let skipped = s.passed_over();
                let found = match sniffed {
                    Sniffed::Undecided => return,
                    Sniffed::Message(stream, events) => {
                        (Body::Message(stream), RequestKind::StreamMessage, events)
                    }
                    Sniffed::MsgApp(stream, events) => {
                        (Body::MsgApp(stream), RequestKind::StreamMsgApp, events)
                    }
                };
                let (body, kind, events) = found;
                // The place was found where the first event the winner held is.
                let found_at = At {
                    ts_ns: events.first().map_or(at.ts_ns, PeerEvent::ts_ns),
                    dir: at.dir,
                };
                out.push(found_note(found_at, kind, skipped));
                out.extend(events);
                *self = body;
            }
            Body::Pipeline(b) => b.push(bytes),
            Body::Snapshot(b) => b.push(bytes, at, out),
            Body::Other(b) => b.push(bytes),
        }
    }

    fn gap(&mut self, len: u64, at: At, out: &mut Vec<PeerEvent>) {
        match self {
            Body::Message(s) => s.gap(len, at, out),
            Body::MsgApp(s) => s.gap(len, at, out),
            Body::Sniff(s) => *s = Sniffer::new(s.skipped().saturating_add(len)),
            Body::Pipeline(b) => b.gap(len),
            Body::Snapshot(b) => b.gap(len, at, out),
            Body::Other(b) => b.gap(len),
        }
    }

    /// A stream body that survives lost framing: it finds its place again by itself.
    fn is_stream(&self) -> bool {
        matches!(self, Body::Message(_) | Body::MsgApp(_) | Body::Sniff(_))
    }

    /// The HTTP framing around a stream body was lost.
    fn lose(&mut self) {
        match self {
            Body::Message(s) => s.lose(),
            Body::MsgApp(s) => s.lose(),
            Body::Sniff(s) => *s = Sniffer::new(s.skipped()),
            _ => {}
        }
    }

    /// The body ended (`Cut::Whole`) or was cut short.
    fn end(self, cut: Cut, at: At, out: &mut Vec<PeerEvent>) {
        match self {
            Body::Message(s) if cut == Cut::Closed && s.in_frame() => {
                out.push(at.note(
                    NoteKind::Truncated,
                    "a message stream closed inside a message".to_string(),
                ));
            }
            Body::MsgApp(s) if cut == Cut::Closed && s.in_frame() => {
                out.push(at.note(
                    NoteKind::Truncated,
                    "a msgapp stream closed inside a frame".to_string(),
                ));
            }
            Body::Sniff(s) if s.skipped() > 0 && cut != Cut::Whole => {
                out.push(at.note(
                    NoteKind::Midstream,
                    format!(
                        "a stream body seen from its middle: no message boundary found in \
                         its {} bytes",
                        s.skipped()
                    ),
                ));
            }
            Body::Message(_) | Body::MsgApp(_) | Body::Sniff(_) => {}
            Body::Pipeline(b) => b.end(cut, at, out),
            Body::Snapshot(b) => b.end(cut, at, out),
            Body::Other(b) => b.end(cut, at, out),
        }
    }
}

/// Requests whose responses are awaited, at most.
const MAX_EXCHANGES: usize = 1024;

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

const BOTH: [FlowDirection; 2] = [FlowDirection::ClientToServer, FlowDirection::ServerToClient];

/// One peer connection's decoding.
#[derive(Debug)]
pub struct PeerConnection {
    http: Http1Connection,
    state: State,
}

/// What the HTTP events drive (apart from the HTTP parser, which feeds it).
#[derive(Debug, Default)]
struct State {
    /// What the requests whose responses are awaited asked for, in order.
    exchanges: VecDeque<RequestKind>,
    bodies: [Option<Body>; 2],
    http2: bool,
    closed: bool,
}

impl PeerConnection {
    /// `start_seen`: the connection's first bytes are in the streams (its TCP handshake
    /// was seen). Otherwise decoding starts at the first place that can be found.
    pub fn new(start_seen: bool) -> PeerConnection {
        PeerConnection {
            http: Http1Connection::new(start_seen),
            state: State::default(),
        }
    }

    /// The connection is HTTP/2, left to the HTTP/2 decoders.
    pub fn is_http2(&self) -> bool {
        self.state.http2
    }

    /// The next bytes of `dir`, from one stream event at `ts_ns`.
    pub fn push(&mut self, dir: FlowDirection, bytes: &[u8], ts_ns: u64, out: &mut Vec<PeerEvent>) {
        let at = At { ts_ns, dir };
        let state = &mut self.state;
        self.http
            .push(dir, bytes, &mut |ev| state.on_http(at, ev, out));
    }

    /// `len` bytes of `dir` were not captured.
    pub fn push_gap(&mut self, dir: FlowDirection, len: u64, ts_ns: u64, out: &mut Vec<PeerEvent>) {
        let at = At { ts_ns, dir };
        let state = &mut self.state;
        self.http
            .push_gap(dir, len, &mut |ev| state.on_http(at, ev, out));
    }

    /// The connection closed at `ts_ns`: bodies delimited by its end are complete,
    /// others cut short.
    pub fn close(&mut self, ts_ns: u64, reason: CloseReason, out: &mut Vec<PeerEvent>) {
        self.end(ts_ns, Cut::Closed, out);
        out.push(PeerEvent::Closed { ts_ns, reason });
    }

    /// The capture ended with the connection open.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<PeerEvent>) {
        self.end(ts_ns, Cut::CaptureEnded, out);
    }

    fn end(&mut self, ts_ns: u64, cut: Cut, out: &mut Vec<PeerEvent>) {
        if self.state.closed {
            return;
        }
        self.state.closed = true;
        for dir in BOTH {
            let at = At { ts_ns, dir };
            let state = &mut self.state;
            self.http.finish(dir, &mut |ev| state.on_http(at, ev, out));
            if let Some(body) = self.state.bodies[index(dir)].take() {
                body.end(cut, at, out);
            }
            let skipped = self.http.skipped(dir);
            if skipped > 0 && !self.state.http2 {
                out.push(at.note(
                    NoteKind::Midstream,
                    format!("{skipped} bytes passed over: no HTTP message or chunk start found"),
                ));
            }
        }
    }
}

impl State {
    fn on_http(&mut self, at: At, ev: Http1Event<'_>, out: &mut Vec<PeerEvent>) {
        let i = index(at.dir);
        match ev {
            Http1Event::Request { head, body } => {
                let request = PeerRequest::of(&head, body);
                let kind = request.kind;
                out.push(PeerEvent::Request {
                    ts_ns: at.ts_ns,
                    request,
                });
                if self.exchanges.len() >= MAX_EXCHANGES {
                    self.exchanges.pop_front();
                }
                self.exchanges.push_back(kind);
                let announced = match body {
                    BodyFraming::Length(n) => Some(n),
                    _ => None,
                };
                self.bodies[i] = match (body, kind) {
                    (BodyFraming::None, _) => None,
                    (_, RequestKind::Pipeline) => {
                        Some(Body::Pipeline(PipelineBody::new(announced)))
                    }
                    (_, RequestKind::Snapshot) => Some(Body::Snapshot(SnapshotBody::new())),
                    (_, kind) => Some(Body::Other(OtherBody::new(Some(kind)))),
                };
            }
            Http1Event::Response {
                head,
                body,
                interim,
            } => {
                let request = if interim {
                    self.exchanges.front().copied()
                } else {
                    self.exchanges.pop_front()
                };
                out.push(PeerEvent::Response {
                    ts_ns: at.ts_ns,
                    response: PeerResponse::of(&head, request, interim),
                });
                self.bodies[i] = match (body, request, head.status) {
                    (BodyFraming::None, _, _) => None,
                    (_, Some(RequestKind::StreamMessage), 200) => {
                        Some(Body::Message(MessageStream::new()))
                    }
                    (_, Some(RequestKind::StreamMsgApp), 200) => {
                        Some(Body::MsgApp(MsgAppStream::new()))
                    }
                    (_, request, _) => Some(Body::Other(OtherBody::new(request))),
                };
            }
            Http1Event::Body { bytes, chunk_start } => {
                if let Some(body) = &mut self.bodies[i] {
                    body.push(bytes, chunk_start, at, out);
                }
            }
            Http1Event::BodyGap { len } => {
                if let Some(body) = &mut self.bodies[i] {
                    body.gap(len, at, out);
                }
            }
            Http1Event::End { .. } => {
                if let Some(body) = self.bodies[i].take() {
                    body.end(Cut::Whole, at, out);
                }
            }
            Http1Event::Lost(why) => {
                let kind = match why {
                    LostReason::Gap { .. } => NoteKind::Gap,
                    LostReason::Desync(_) => NoteKind::Undecodable,
                };
                out.push(at.note(
                    kind,
                    format!("HTTP/1 framing lost ({why}): decoding resumes at the next message or chunk start"),
                ));
                match self.bodies[i].take() {
                    Some(mut body) if body.is_stream() => {
                        body.lose();
                        self.bodies[i] = Some(body);
                    }
                    Some(body) => body.end(Cut::Lost, at, out),
                    None => {}
                }
                if at.dir == FlowDirection::ServerToClient {
                    // Lost responses would pair later ones with the wrong requests.
                    self.exchanges.clear();
                }
            }
            Http1Event::Synced { skipped, in_body } => {
                if !in_body {
                    // A message head: whatever body was being followed is over.
                    self.bodies[i] = None;
                    if skipped > 0 {
                        out.push(at.note(
                            NoteKind::Midstream,
                            format!("decoding starts at a message head after {skipped} bytes"),
                        ));
                    }
                } else if !self.bodies[i].as_ref().is_some_and(Body::is_stream) {
                    self.bodies[i] = Some(match at.dir {
                        FlowDirection::ServerToClient => Body::Sniff(Sniffer::new(skipped)),
                        FlowDirection::ClientToServer => {
                            out.push(at.note(
                                NoteKind::Midstream,
                                format!(
                                    "a request body seen from its middle after {skipped} \
                                     bytes: counted, not decoded"
                                ),
                            ));
                            Body::Other(OtherBody::new(None))
                        }
                    });
                }
            }
            Http1Event::Stopped(why) => {
                self.bodies[i] = None;
                match why {
                    Stop::Http2 => {
                        self.bodies = [None, None];
                        if !self.http2 {
                            self.http2 = true;
                            out.push(PeerEvent::Note {
                                ts_ns: at.ts_ns,
                                dir: None,
                                kind: NoteKind::Http2,
                                text: "HTTP/2 (gRPC behind cmux): left to the HTTP/2 decoders"
                                    .to_string(),
                            });
                        }
                    }
                    Stop::Upgraded => out.push(at.note(
                        NoteKind::Undecodable,
                        "the connection left HTTP/1 (upgraded): not decoded further".to_string(),
                    )),
                    Stop::Error(e) => out.push(at.note(
                        NoteKind::Undecodable,
                        format!("not HTTP/1 ({e}): this direction is not decoded further"),
                    )),
                }
            }
        }
    }
}

/// Byte builders shared with the analysis' tests.
#[cfg(test)]
pub(crate) mod tests;

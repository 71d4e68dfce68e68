//! The etcd RPCs that clients made, recovered from captured traffic: the capture's
//! packets go through TCP reassembly, HTTP/2 framing, HPACK, gRPC message framing and
//! etcd's protobuf types, and come out as [`RpcCall`] records. `analyze::streams` turns
//! the capture's packets and TLS plaintext into each connection's byte streams (the
//! plaintext in place of a TLS connection's ciphertext). Streaming: state is kept per
//! open connection and stream only; a stream's records are emitted when it ends (a
//! streaming call's messages as they arrive) and its state dropped.
//!
//! `connection` holds one connection's decoding, `infer` names methods whose `:path` was
//! never seen, `watches` names the watch each message of a Watch stream is about.

mod connection;
pub mod infer;
mod watches;

use std::net::SocketAddr;

use crate::analyze::sharded::{self, Step};
use crate::analyze::streams::{DemuxConfig, StreamDemux, StreamStats};
use crate::capture::{Event, FollowItem};
use crate::decode::etcdpb::{self, EtcdMessage};
use connection::ConnectionDecoder;

pub use crate::analyze::streams::REORDER_WINDOW_NS;

/// Longest undecodable message body kept, in bytes.
pub const MAX_RAW_KEPT: usize = 1024;

/// Which way a message of a streaming call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageDirection {
    Request,
    Response,
}

/// What a record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A whole unary call (or a call whose kind is unknown): first request, first
    /// response, status.
    Call,
    /// One message of a streaming call; `index` counts the direction's messages from 0.
    Message {
        direction: MessageDirection,
        index: u64,
    },
    /// The end of a streaming call: its status and message counts.
    StreamEnd { requests: u64, responses: u64 },
}

/// A message body as far as it could be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcBody {
    /// Decoded completely.
    Message(EtcdMessage),
    /// The message's end was not captured: the whole fields before the cut, decoded.
    Partial {
        message: EtcdMessage,
        /// Bytes of the message that were seen, of `len`.
        captured: usize,
        len: u32,
    },
    /// Not decodable: the first [`MAX_RAW_KEPT`] bytes and why.
    Raw {
        bytes: Vec<u8>,
        len: u32,
        reason: String,
    },
    /// A Snapshot's responses, counted rather than kept.
    SnapshotChunks {
        chunks: u64,
        blob_bytes: u64,
        /// `remaining_bytes` of the last chunk summarised (0 at the end).
        remaining_bytes: u64,
    },
}

impl RpcBody {
    /// The decoded message, whole or partial.
    pub fn message(&self) -> Option<&EtcdMessage> {
        match self {
            RpcBody::Message(m) | RpcBody::Partial { message: m, .. } => Some(m),
            _ => None,
        }
    }

    /// Decoded completely (a snapshot tally counts as complete).
    pub fn is_complete(&self) -> bool {
        matches!(self, RpcBody::Message(_) | RpcBody::SnapshotChunks { .. })
    }
}

impl RpcCall {
    /// The record of a connection that carried no call that could be read (garbage, or
    /// broken HTTP/2, from its start): stream 0, which no call uses, and no method.
    pub fn is_unreadable_connection(&self) -> bool {
        self.stream_id == 0
            && self.kind == RecordKind::Call
            && self.method.is_none()
            && self.request.is_none()
            && self.response.is_none()
    }
}

/// One RPC (or, for streaming calls, one message or the end of the stream).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub kind: RecordKind,
    /// Capture time of the first request byte (of the message, for stream messages).
    pub ts_ns: u64,
    /// Capture time of the last response byte seen (of the message, for stream messages).
    pub end_ns: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub stream_id: u32,
    /// The gRPC `:path`; None when unknown (see `notes`).
    pub method: Option<String>,
    /// The method was not seen but inferred (see `notes` for how).
    pub inferred: bool,
    /// `grpc-status` of the trailers.
    pub status: Option<u32>,
    pub grpc_message: Option<String>,
    /// From the first request byte to the last response byte, when both were seen.
    pub latency_ns: Option<u64>,
    pub request: Option<RpcBody>,
    pub response: Option<RpcBody>,
    /// DATA bytes (gRPC framing included) of each direction, as on the wire.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The key and range end the call addresses (a streaming call's first request's;
    /// for a message of a Watch stream, the keys of the watch it is about).
    pub key: Option<Vec<u8>>,
    pub range_end: Option<Vec<u8>>,
    /// The `token` metadata header (an auth token: a secret).
    pub token: Option<String>,
    /// Some bytes of the call were not captured.
    pub gaps: bool,
    /// The call went over TLS and was decoded from the plaintext the recorder took.
    pub tls: bool,
    /// What could not be decoded, and why.
    pub notes: Vec<String>,
}

/// Placeholder for redacted secrets.
pub const REDACTED: &str = "<redacted>";

/// Methods whose undecoded bodies may hold a password or token.
fn may_carry_secret(method: Option<&str>) -> bool {
    match method {
        None => true,
        Some(path) => {
            path.starts_with("/etcdserverpb.Auth/") && !path.ends_with("Status")
                || !path.starts_with('/')
        }
    }
}

impl RpcCall {
    /// The method's short name (`Put`), or `?` when unknown.
    pub fn method_name(&self) -> &str {
        match &self.method {
            Some(path) => etcdpb::method(path)
                .map(|m| m.method)
                .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path)),
            None => "?",
        }
    }

    /// Replaces secrets: passwords and tokens in messages, the `token` header, and the
    /// bytes of bodies that could not be decoded but may hold one.
    pub fn redact(&mut self) {
        if self.token.is_some() {
            self.token = Some(REDACTED.to_string());
        }
        let secret_raw = may_carry_secret(self.method.as_deref());
        for body in [&mut self.request, &mut self.response]
            .into_iter()
            .flatten()
        {
            match body {
                RpcBody::Message(m) | RpcBody::Partial { message: m, .. } => m.redact(),
                RpcBody::Raw { bytes, reason, .. } if secret_raw && !bytes.is_empty() => {
                    bytes.clear();
                    reason.push_str(" (bytes withheld: they may hold a secret; --show-secrets)");
                }
                _ => {}
            }
        }
    }

    /// How completely the record was decoded.
    pub fn completeness(&self) -> Completeness {
        if self.method.is_none() {
            return Completeness::UnknownMethod;
        }
        let bodies_ok = [&self.request, &self.response]
            .into_iter()
            .flatten()
            .all(RpcBody::is_complete);
        if !self.inferred && !self.gaps && bodies_ok {
            Completeness::Full
        } else {
            Completeness::Partial
        }
    }
}

/// See [`RpcCall::completeness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Method seen, every message decoded, nothing lost.
    Full,
    /// Method inferred, or some bytes or messages could not be decoded.
    Partial,
    /// The method is unknown.
    UnknownMethod,
}

/// Counters over a whole decoding run.
pub type RpcStats = StreamStats;

/// Packets in, RPC records out. Feed every event of a capture in file order with
/// [`push`](Self::push), then call [`finish`](Self::finish).
#[derive(Debug)]
pub struct RpcDecoder {
    streams: StreamDemux<ConnectionDecoder>,
}

impl RpcDecoder {
    /// A decoder for traffic whose server side is on one of `server_ports` (empty: etcd's
    /// defaults).
    pub fn new(server_ports: Vec<u16>) -> RpcDecoder {
        RpcDecoder {
            streams: Self::demux_config(server_ports).build(),
        }
    }

    fn demux_config(server_ports: Vec<u16>) -> DemuxConfig {
        // A peer port's connections are gRPC only when their start says so: open before
        // recording, they are rafthttp streams (analyze::peers), not RPCs.
        let recorded = if server_ports.is_empty() {
            crate::decode::tcp::DEFAULT_SERVER_PORTS.to_vec()
        } else {
            server_ports.clone()
        };
        DemuxConfig {
            skip_midstream: crate::analyze::peers::likely_peer_ports(&recorded),
            server_ports,
            only: None,
        }
    }

    pub fn stats(&self) -> &RpcStats {
        self.streams.stats()
    }

    /// Takes one event; finished records are appended to `out`. A packet is copied to
    /// wait in the reorder window: callers that own their events use
    /// [`push_owned`](Self::push_owned) instead.
    pub fn push(&mut self, event: &Event, out: &mut Vec<RpcCall>) {
        self.streams.push(event, out);
    }

    /// Takes one event by value (no copy of the payload); finished records go to `out`.
    pub fn push_owned(&mut self, event: Event, out: &mut Vec<RpcCall>) {
        self.streams.push_owned(event, out);
    }

    /// Capture time has reached `now_ns` without events (a followed capture): calls
    /// complete by then are emitted.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<RpcCall>) {
        self.streams.advance(now_ns, out);
    }

    /// The capture ended: every call still open is emitted with what was seen of it.
    pub fn finish(&mut self, out: &mut Vec<RpcCall>) {
        self.streams.finish(out);
    }
}

/// A whole capture's RPC records, decoded on `threads` threads (`analyze::sharded`):
/// each record through a finisher (one per thread, made by `make_finisher`), then to
/// `step` in the order one thread makes them, with the points between events.
pub fn decode_rpcs<O, F, E>(
    items: impl Iterator<Item = FollowItem>,
    server_ports: Vec<u16>,
    threads: usize,
    make_finisher: impl Fn() -> F,
    step: &mut dyn FnMut(Step<O>) -> Result<(), E>,
) -> Result<RpcStats, E>
where
    O: Send,
    F: FnMut(RpcCall) -> O + Send,
{
    let config = RpcDecoder::demux_config(server_ports);
    sharded::decode::<ConnectionDecoder, O, F, E>(items, &config, threads, make_finisher, step)
}

#[cfg(test)]
mod tests;

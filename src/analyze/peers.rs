//! The traffic between etcd members, from a capture: each connection to a peer port
//! (packets, or TLS plaintext in place of ciphertext, through `analyze::streams`)
//! decoded by `decode::rafthttp` into [`PeerRecord`]s: the stream and pipeline
//! requests with the member ids their headers name, the responses, every raft message
//! with its time and sender, link heartbeats, snapshot transfers, and notes for what
//! could not be decoded. Records come out in capture-time order per connection, as the
//! bytes that complete them arrive; the first records of a stream seen from its middle
//! wait until its framing is known (a msgapp stream's link heartbeats, for up to eight
//! of them), then come out with their own times.
//!
//! Which ports are peer ports: etcd's 2380 by default. A capture's header lists the
//! ports recorded, not what they serve: [`peer_ports_of`] takes the recorded ports that
//! follow a recorded client port (etcd's convention, 2379/2380), or 2380.

use std::fmt;
use std::net::SocketAddr;

use crate::analyze::streams::{StreamDecoder, StreamDemux, StreamEnd, StreamStats};
use crate::capture::Event;
use crate::decode::rafthttp::{PeerConnection, PeerEvent};
use crate::decode::tcp::{CloseReason, ConnectionKey, FlowDirection};

pub use crate::decode::rafthttp::{Framing, NoteKind, PeerRequest, PeerResponse, RequestKind};

/// etcd's peer port.
pub const DEFAULT_PEER_PORT: u16 = 2380;
/// etcd's client port.
const DEFAULT_CLIENT_PORT: u16 = 2379;

/// One thing seen on a peer connection.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRecord {
    /// The dialer (a member's client side, for its streams and pipeline).
    pub client: SocketAddr,
    /// The dialed member's peer port.
    pub server: SocketAddr,
    /// Decoded from TLS plaintext.
    pub tls: bool,
    /// The connection was open before recording began: its start was not seen.
    pub midstream: bool,
    pub event: PeerEvent,
}

impl PeerRecord {
    pub fn ts_ns(&self) -> u64 {
        self.event.ts_ns()
    }

    /// The address that sent the bytes the event is about, when it is about one side.
    pub fn sender(&self) -> Option<SocketAddr> {
        self.event.dir().map(|dir| match dir {
            FlowDirection::ClientToServer => self.client,
            FlowDirection::ServerToClient => self.server,
        })
    }
}

impl fmt::Display for PeerRecord {
    /// `client -> server [tls] [midstream] event` on one line (times are the caller's).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.client, self.server)?;
        if self.tls {
            f.write_str(" tls")?;
        }
        if self.midstream {
            f.write_str(" midstream")?;
        }
        write!(f, " {}", self.event)
    }
}

/// The peer ports among the ports a capture recorded: those one above another recorded
/// port (etcd's 2379/2380 convention), and 2380. When none fits, every recorded port
/// but etcd's client port 2379 (and 2380 when that leaves none).
pub fn peer_ports_of(recorded: &[u16]) -> Vec<u16> {
    let mut ports = likely_peer_ports(recorded);
    if ports.is_empty() {
        ports = recorded
            .iter()
            .copied()
            .filter(|&p| p != DEFAULT_CLIENT_PORT)
            .collect();
    }
    if ports.is_empty() {
        ports.push(DEFAULT_PEER_PORT);
    }
    ports
}

/// The recorded ports that are peer ports by etcd's conventions alone: 2380, and those
/// one above another recorded port. Unlike [`peer_ports_of`], no guess when none is.
pub fn likely_peer_ports(recorded: &[u16]) -> Vec<u16> {
    let fits =
        |p: u16| p == DEFAULT_PEER_PORT || p.checked_sub(1).is_some_and(|c| recorded.contains(&c));
    recorded.iter().copied().filter(|&p| fits(p)).collect()
}

/// Capture events in, peer records out. Feed every event of a capture in file order
/// with [`push`](Self::push), then call [`finish`](Self::finish).
#[derive(Debug)]
pub struct PeerDecoder {
    streams: StreamDemux<PeerConn>,
}

impl PeerDecoder {
    /// Decodes the connections to `peer_ports` (empty: 2380). `server_ports` (the
    /// recorded ports; empty: etcd's defaults) orient connections whose handshake was
    /// not seen.
    pub fn new(server_ports: Vec<u16>, peer_ports: Vec<u16>) -> PeerDecoder {
        let peer_ports = if peer_ports.is_empty() {
            vec![DEFAULT_PEER_PORT]
        } else {
            peer_ports
        };
        PeerDecoder {
            streams: StreamDemux::new(server_ports, Some(peer_ports)),
        }
    }

    /// For a capture that recorded `ports` (its header's `config.ports`).
    pub fn for_recorded_ports(ports: &[u16]) -> PeerDecoder {
        PeerDecoder::new(ports.to_vec(), peer_ports_of(ports))
    }

    /// Counts over the peer connections (`packets` counts every packet pushed).
    pub fn stats(&self) -> &StreamStats {
        self.streams.stats()
    }

    /// Takes one event; records it completes are appended to `out`.
    pub fn push(&mut self, event: &Event, out: &mut Vec<PeerRecord>) {
        self.streams.push(event, out);
    }

    /// Takes one event by value (no copy of the payload).
    pub fn push_owned(&mut self, event: Event, out: &mut Vec<PeerRecord>) {
        self.streams.push_owned(event, out);
    }

    /// The capture ended: what is still open is emitted with what was seen of it.
    pub fn finish(&mut self, out: &mut Vec<PeerRecord>) {
        self.streams.finish(out);
    }
}

/// One peer connection's decoder, and what its records repeat.
#[derive(Debug)]
struct PeerConn {
    key: ConnectionKey,
    tls: bool,
    midstream: bool,
    decoder: PeerConnection,
    last_ts: u64,
    /// Events of the bytes being decoded (kept for its allocation).
    events: Vec<PeerEvent>,
}

impl PeerConn {
    fn emit(&mut self, out: &mut Vec<PeerRecord>) {
        for event in self.events.drain(..) {
            out.push(PeerRecord {
                client: self.key.client,
                server: self.key.server,
                tls: self.tls,
                midstream: self.midstream,
                event,
            });
        }
    }
}

impl StreamDecoder for PeerConn {
    type Record = PeerRecord;

    fn new(key: ConnectionKey, handshake_seen: bool) -> PeerConn {
        PeerConn {
            key,
            tls: false,
            midstream: !handshake_seen,
            decoder: PeerConnection::new(handshake_seen),
            last_ts: 0,
            events: Vec::new(),
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
        _offset: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<PeerRecord>,
    ) {
        self.last_ts = self.last_ts.max(ts_ns);
        self.decoder.push(dir, bytes, ts_ns, &mut self.events);
        self.emit(out);
    }

    fn push_gap(
        &mut self,
        dir: FlowDirection,
        _offset: u64,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<PeerRecord>,
    ) {
        self.last_ts = self.last_ts.max(ts_ns);
        self.decoder.push_gap(dir, len, ts_ns, &mut self.events);
        self.emit(out);
    }

    fn finish(&mut self, end: StreamEnd, out: &mut Vec<PeerRecord>) {
        match end {
            StreamEnd::Closed { ts_ns, reason } => {
                self.decoder.close(ts_ns, reason, &mut self.events)
            }
            StreamEnd::Replaced { ts_ns } => {
                self.decoder
                    .close(ts_ns, CloseReason::Reused, &mut self.events)
            }
            StreamEnd::CaptureEnded => self.decoder.finish(self.last_ts, &mut self.events),
        }
        self.emit(out);
    }
}

#[cfg(test)]
mod tests;

//! Unit tests' packets: both directions of one TCP connection written as the recorder
//! would capture them, and TLS plaintext chunks as the uprobes would take them; and
//! decoded calls, for the analyses above the decoders.

use std::net::SocketAddr;

use crate::analyze::rpc::{RecordKind, RpcBody, RpcCall};
use crate::capture::{Direction, Event, Packet, TcpFlags, TlsData, TlsEndpoints};
use crate::decode::etcdpb::EtcdMessage;

/// Writes both directions of one connection as packets.
pub struct Wire {
    pub client: SocketAddr,
    pub server: SocketAddr,
    seq: [u32; 2],
    pub ts: u64,
    pub packets: Vec<Event>,
}

impl Wire {
    /// A client of 127.0.0.1:2379, from its handshake on or not.
    pub fn new(handshake: bool) -> Wire {
        let client = "127.0.0.1:40000".parse().expect("address");
        let server = "127.0.0.1:2379".parse().expect("address");
        Wire::between(client, server, handshake)
    }

    pub fn between(client: SocketAddr, server: SocketAddr, handshake: bool) -> Wire {
        let mut w = Wire {
            client,
            server,
            seq: [1000, 5000],
            ts: 1_000_000,
            packets: Vec::new(),
        };
        if handshake {
            w.raw(true, TcpFlags::SYN, &[], 1);
            w.raw(false, TcpFlags::SYN | TcpFlags::ACK, &[], 1);
        }
        w
    }

    /// One segment; `advance` is what the sequence number moves past the payload (1
    /// for a SYN or FIN).
    pub fn raw(&mut self, c2s: bool, flags: u8, payload: &[u8], advance: u32) {
        let i = usize::from(!c2s);
        let (src, dst) = if c2s {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        self.ts += 10_000;
        self.packets.push(Event::Packet(Packet {
            ts_ns: self.ts,
            ifindex: 1,
            direction: Direction::Egress,
            src,
            dst,
            seq: self.seq[i],
            ack: self.seq[1 - i],
            flags: TcpFlags(flags),
            window: 65535,
            payload_len: payload.len() as u32,
            payload: payload.to_vec().into(),
        }));
        self.seq[i] = self.seq[i].wrapping_add(payload.len() as u32 + advance);
    }

    pub fn send(&mut self, c2s: bool, payload: &[u8]) {
        self.raw(c2s, TcpFlags::ACK | TcpFlags::PSH, payload, 0);
    }
}

/// TLS plaintext of one connection as the server's uprobes take it (the server wrote
/// what goes to the client, and read what came from it).
pub struct TlsWire {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub pid: u32,
    pub conn_id: u64,
    offsets: [u64; 2],
}

impl TlsWire {
    pub fn new(client: SocketAddr, server: SocketAddr) -> TlsWire {
        TlsWire {
            client,
            server,
            pid: 4242,
            conn_id: 7,
            offsets: [0, 0],
        }
    }

    /// A chunk of `data`, sent by the client (read by the server) or by the server.
    pub fn chunk(&mut self, ts_ns: u64, c2s: bool, data: &[u8]) -> Event {
        let i = usize::from(!c2s);
        let offset = self.offsets[i];
        self.offsets[i] += data.len() as u64;
        Event::Tls(TlsData {
            ts_ns,
            pid: self.pid,
            tid: self.pid,
            conn_id: self.conn_id,
            direction: if c2s {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            endpoints: Some(TlsEndpoints {
                local: self.server,
                remote: self.client,
            }),
            offset,
            len: data.len() as u32,
            data: data.to_vec().into(),
        })
    }
}

/// A unary call of `method` (`KV/Put`) from `client` at `ts`, 1 ms long, status 0.
pub fn rpc_call(client: &str, ts: u64, method: &str, req: Option<EtcdMessage>) -> RpcCall {
    let client: SocketAddr = client.parse().unwrap();
    let key = req.as_ref().and_then(|m| m.key()).map(<[u8]>::to_vec);
    let range_end = req.as_ref().and_then(|m| m.range_end()).map(<[u8]>::to_vec);
    RpcCall {
        kind: RecordKind::Call,
        ts_ns: ts,
        end_ns: ts + 1_000_000,
        client,
        server: "10.0.0.1:2379".parse().unwrap(),
        stream_id: 1,
        method: Some(format!("/etcdserverpb.{method}")),
        inferred: false,
        status: Some(0),
        grpc_message: None,
        latency_ns: Some(1_000_000),
        request: req.map(RpcBody::Message),
        response: None,
        request_bytes: 10,
        response_bytes: 10,
        key,
        range_end,
        token: None,
        gaps: false,
        tls: false,
        notes: Vec::new(),
    }
}

//! Unit tests' packets: both directions of one TCP connection written as the recorder
//! would capture them.

use std::net::SocketAddr;

use crate::capture::{Direction, Event, Packet, TcpFlags};

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

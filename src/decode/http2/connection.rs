//! [`Http2Connection`]: both directions of one HTTP/2 connection. It exists because one
//! direction's SETTINGS govern the other direction's frames: the MAX_FRAME_SIZE a peer
//! announces is the limit for frames sent TO it, which the decoder of the opposite
//! direction needs in order to tell real frames from misaligned bytes.

use super::settings::SettingId;
use super::stream::{FrameStream, FrameSummary, Http2Event};
use crate::decode::tcp::FlowDirection;

/// The two [`FrameStream`]s of a connection, with SETTINGS routed between them.
#[derive(Debug)]
pub struct Http2Connection {
    streams: [FrameStream; 2],
}

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

impl Http2Connection {
    /// A connection decoder; `handshake_seen` as reported by TCP reassembly (whether
    /// offset 0 of each direction is the start of the connection).
    pub fn new(handshake_seen: bool) -> Http2Connection {
        Http2Connection {
            streams: [
                FrameStream::new(FlowDirection::ClientToServer, handshake_seen),
                FrameStream::new(FlowDirection::ServerToClient, handshake_seen),
            ],
        }
    }

    /// The decoder of one direction.
    pub fn stream_mut(&mut self, dir: FlowDirection) -> &mut FrameStream {
        &mut self.streams[index(dir)]
    }

    /// Takes bytes of one direction; events are appended to `out`.
    pub fn push_data(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<Http2Event>,
    ) {
        let first = out.len();
        self.streams[index(dir)].push_data(offset, bytes, ts_ns, out);
        self.route_settings(dir, out.get(first..).unwrap_or_default());
    }

    /// Declares bytes of one direction lost.
    pub fn push_gap(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<Http2Event>,
    ) {
        let first = out.len();
        self.streams[index(dir)].push_gap(offset, len, ts_ns, out);
        self.route_settings(dir, out.get(first..).unwrap_or_default());
    }

    /// Both directions ended.
    pub fn finish(&mut self, out_c2s: &mut Vec<Http2Event>, out_s2c: &mut Vec<Http2Event>) {
        let [c2s, s2c] = &mut self.streams;
        c2s.finish(out_c2s);
        s2c.finish(out_s2c);
    }

    fn route_settings(&mut self, dir: FlowDirection, events: &[Http2Event]) {
        for e in events {
            if let Http2Event::Frame {
                frame:
                    FrameSummary::Settings {
                        ack: false,
                        settings,
                    },
                ..
            } = e
            {
                let max = settings
                    .iter()
                    .filter(|s| s.id == SettingId::MaxFrameSize)
                    .map(|s| s.value)
                    .next_back();
                if let Some(max) = max {
                    self.streams[index(dir.reverse())].set_max_frame_size(max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Direction, Packet, TcpFlags};
    use crate::decode::grpc::{GrpcEvent, GrpcMessageAssembler};
    use crate::decode::http2::frame::{FrameHeader, FrameType, FLAG_END_HEADERS, FLAG_END_STREAM};
    use crate::decode::http2::CLIENT_PREFACE;
    use crate::decode::tcp::{TcpEvent, TcpReassembler, DEFAULT_SERVER_PORTS};

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = FrameHeader {
            len: payload.len() as u32,
            kind: FrameType::from_u8(kind),
            flags,
            stream_id,
            reserved_bit: false,
        }
        .to_bytes()
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn settings_raise_the_other_directions_limit() {
        let mut c = Http2Connection::new(true);
        let mut out = Vec::new();
        let mut client = CLIENT_PREFACE.to_vec();
        client.extend(frame(4, 0, 0, &[0, 5, 0, 1, 0, 0])); // MAX_FRAME_SIZE 65536
        c.push_data(FlowDirection::ClientToServer, 0, &client, 1, &mut out);
        let big = frame(0, 0, 1, &[0; 30_000]);
        let mut s2c = frame(4, 0, 0, &[]);
        s2c.extend(&big);
        c.push_data(FlowDirection::ServerToClient, 0, &s2c, 2, &mut out);
        assert!(
            out.iter().all(|e| !matches!(e, Http2Event::Desync { .. })),
            "{out:?}"
        );
        // The client-to-server direction keeps the default limit.
        c.push_data(
            FlowDirection::ClientToServer,
            client.len() as u64,
            &big,
            3,
            &mut out,
        );
        assert!(matches!(out.last(), Some(Http2Event::Desync { .. })));
    }

    fn packet(ts: u64, c2s: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Packet {
        let client = "127.0.0.1:45000".parse().unwrap();
        let server = "127.0.0.1:2379".parse().unwrap();
        let (src, dst) = if c2s {
            (client, server)
        } else {
            (server, client)
        };
        Packet {
            ts_ns: ts,
            ifindex: 1,
            direction: Direction::Egress,
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            payload_len: payload.len() as u32,
            payload: payload.to_vec().into(),
        }
    }

    /// `etcdctl put foo bar` from packets to the gRPC message, through every layer here.
    #[test]
    fn packets_to_grpc_message() {
        const ACK: u8 = TcpFlags::ACK;
        let grpc = [
            0, 0, 0, 0, 0x0a, 0x0a, 0x03, b'f', b'o', b'o', 0x12, 0x03, b'b', b'a', b'r',
        ];
        let mut seg1 = CLIENT_PREFACE.to_vec();
        seg1.extend(frame(4, 0, 0, &[]));
        let mut seg2 = frame(4, 1, 0, &[]);
        seg2.extend(frame(1, FLAG_END_HEADERS, 1, &[0x83; 96]));
        seg2.extend(frame(0, FLAG_END_STREAM, 1, &grpc));
        let c0 = 1000u32;
        let packets = [
            packet(1, true, c0, 0, TcpFlags::SYN, b""),
            packet(2, false, 9000, c0 + 1, TcpFlags::SYN | ACK, b""),
            packet(3, true, c0 + 1, 9001, ACK, b""),
            // Out of order: the second segment first.
            packet(5, true, c0 + 1 + seg1.len() as u32, 9001, ACK, &seg2),
            packet(4, true, c0 + 1, 9001, ACK, &seg1),
        ];
        let mut tcp = TcpReassembler::new(DEFAULT_SERVER_PORTS.to_vec());
        let mut tcp_events = Vec::new();
        for p in &packets {
            tcp.push(p, &mut tcp_events);
        }
        tcp.finish(&mut tcp_events);
        let mut conn = None;
        let mut h2 = Vec::new();
        for e in &tcp_events {
            match e {
                TcpEvent::Opened { handshake_seen, .. } => {
                    conn = Some(Http2Connection::new(*handshake_seen))
                }
                TcpEvent::Data {
                    dir,
                    ts_ns,
                    offset,
                    bytes,
                    ..
                } => conn
                    .as_mut()
                    .unwrap()
                    .push_data(*dir, *offset, bytes, *ts_ns, &mut h2),
                _ => {}
            }
        }
        let mut grpc_asm = GrpcMessageAssembler::new(None);
        let mut msgs = Vec::new();
        for e in &h2 {
            if let Http2Event::Data {
                stream_id: 1,
                bytes,
                ts_ns,
                ..
            } = e
            {
                grpc_asm.push_data(bytes, *ts_ns, &mut msgs);
            }
        }
        assert!(h2.iter().any(|e| matches!(e, Http2Event::Preface { .. })));
        assert!(h2
            .iter()
            .any(|e| matches!(e, Http2Event::HeaderBlock { stream_id: 1, .. })));
        match &msgs[..] {
            [GrpcEvent::Message(m)] => {
                assert_eq!(m.data, &grpc[5..]);
                assert_eq!(m.ts_first_ns, 5);
            }
            other => panic!("{other:?}"),
        }
    }
}

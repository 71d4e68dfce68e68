//! Seed inputs cut from a real capture, in each target's input format: the whole file,
//! its blocks, its packets (all of them and each connection's), and each connection's
//! stream bytes taken apart layer by layer: HTTP/2 bytes, TLS-like plaintext chunks,
//! header blocks, each stream's DATA and each message (on the client port) or HTTP/1 and
//! rafthttp bytes (on a peer port); and its WAL writes.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use super::{grpc_decode, http2_decode, EventRecord, OpRecord, DIRECTIONS, PEER_ENDS};
use crate::analyze::peers::peer_ports_of;
use crate::capture::{CaptureReader, Event, FileKind, ReadItem, FRAME_HEADER_LEN};
use crate::decode::etcdpb::METHODS;
use crate::decode::grpc::GrpcEvent;
use crate::decode::http2::stream::Http2Event;
use crate::decode::tcp::{CloseReason, ConnectionKey, FlowDirection, TcpEvent, TcpReassembler};

/// One seed: the target it is for, a file name, and the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

/// Every seed of the capture `bytes`, named after `name` (the capture's file stem).
pub fn seeds(name: &str, bytes: &[u8]) -> Result<Vec<Seed>, String> {
    let reader = CaptureReader::from_bytes(name, bytes.to_vec()).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for item in reader.events() {
        match item {
            ReadItem::Event(e) => events.push(e),
            ReadItem::Damaged(d) => return Err(format!("{name}: {d}")),
        }
    }
    let mut out = Vec::new();
    let mut add = |target: &'static str, what: String, data: Vec<u8>| {
        out.push(Seed {
            target,
            name: format!("seed-{name}-{what}"),
            data,
        })
    };

    for (mode, what) in [(0u8, "file"), (1, "file-repaired")] {
        add("capture_file", what.into(), [&[mode][..], bytes].concat());
    }
    add(
        "capture_file",
        "file-cut".into(),
        [&[0][..], &bytes[..bytes.len() / 2]].concat(),
    );

    add("packet_file", "pcap".into(), to_pcap(&events));

    let version = reader.format_version() as u8;
    for (i, block) in reader.blocks().iter().enumerate() {
        let start = block.offset as usize + FRAME_HEADER_LEN;
        let Some(payload) = bytes.get(start..block.end() as usize) else {
            continue;
        };
        let raw = zstd::decode_all(payload).map_err(|e| e.to_string())?;
        let count = block.event_count.min(255) as u8;
        add(
            "capture_block",
            format!("block{i}-compressed"),
            [&[version | 1 << 2, count][..], &raw].concat(),
        );
        add(
            "capture_block",
            format!("block{i}-zstd"),
            [&[version | 2 << 2, count][..], payload].concat(),
        );
        if version >= 2 {
            add(
                "capture_block",
                format!("block{i}-packed"),
                [&[version, count][..], &raw].concat(),
            );
        }
    }

    let ports = Ports::of(&reader.header().config.ports);
    let connections = packets_by_connection(&events, &ports);
    let mut all = Vec::new();
    let mut last_ts = None;
    for event in &events {
        if let Some(record) = packet_record(event, &connections, &ports, &mut last_ts) {
            record.encode(&mut all);
        }
    }
    add("tcp", "packets".into(), [&[0][..], &all].concat());
    add(
        "tcp",
        "packets-small-buffers".into(),
        [&[1][..], &all].concat(),
    );
    add("replay", "packets".into(), all);

    for (key, conn) in &connections {
        let what = |layer: &str| format!("conn{}-{layer}", conn.number);
        let mut records = Vec::new();
        let mut last_ts = None;
        for event in events.iter().filter(|e| of_connection(e, key, &ports)) {
            if let Some(record) = packet_record(event, &connections, &ports, &mut last_ts) {
                record.encode(&mut records);
            }
        }
        add("tcp", what("packets"), [&[0][..], &records].concat());
        add("replay", what("packets"), records);

        let streams = streams(key, conn.index, &events, &ports);
        add("tls", what("chunks"), streams.tls.clone());
        add("replay", what("tls-chunks"), streams.tls);
        if ports.peer.contains(&key.server.port()) {
            let end = PEER_ENDS
                .iter()
                .position(|e| *e == streams.closed)
                .unwrap_or(0);
            let mut rafthttp = streams.pieces.clone();
            rafthttp[0] |= (end as u8) << 1;
            add("http1", what("streams"), streams.pieces);
            add("rafthttp", what("streams"), rafthttp);
            continue;
        }
        add("http2", what("streams"), streams.pieces.clone());
        for seed in layers(&streams.pieces) {
            add(seed.target, what(&seed.name), seed.data);
        }
    }

    // By process too: the members traced together name their WAL files alike.
    let mut wal_files: BTreeMap<(u32, &str), Vec<u8>> = BTreeMap::new();
    for event in &events {
        let Event::Syscall(s) = event else { continue };
        if s.file.kind != FileKind::Wal || !s.call.is_write() || s.ret <= 0 {
            continue;
        }
        let Some(offset) = s.offset else { continue };
        let writes = wal_files.entry((s.pid, &s.file.path)).or_default();
        let len = s.data.len().min(usize::from(u16::MAX));
        writes.push(1);
        writes.extend((len as u16).to_le_bytes());
        writes.extend((offset as u32).to_le_bytes());
        writes.extend(&s.data[..len]);
    }
    for (i, writes) in wal_files.into_values().enumerate() {
        add("wal", format!("wal{i}-writes"), writes);
    }
    Ok(out)
}

/// A connection of the capture: its number in the order of first packets, and its
/// number in the records (0..8, that one wrapped).
struct Connection {
    number: usize,
    index: u8,
}

/// The ports a capture recorded, and which of them are peer ports.
struct Ports {
    server: Vec<u16>,
    peer: Vec<u16>,
}

impl Ports {
    /// `recorded`: the capture header's ports (etcd's 2379 and 2380 if it names none).
    fn of(recorded: &[u16]) -> Ports {
        let server = if recorded.is_empty() {
            vec![2379, 2380]
        } else {
            recorded.to_vec()
        };
        Ports {
            peer: peer_ports_of(&server),
            server,
        }
    }

    fn key(&self, p: &crate::capture::Packet) -> (ConnectionKey, FlowDirection) {
        ConnectionKey::of_segment(p.src, p.dst, |port| self.server.contains(&port))
    }
}

fn packets_by_connection(events: &[Event], ports: &Ports) -> BTreeMap<ConnectionKey, Connection> {
    let mut out = BTreeMap::new();
    for event in events {
        let Event::Packet(p) = event else { continue };
        let number = out.len();
        out.entry(ports.key(p).0).or_insert(Connection {
            number,
            index: (number & 7) as u8,
        });
    }
    out
}

fn of_connection(event: &Event, key: &ConnectionKey, ports: &Ports) -> bool {
    matches!(event, Event::Packet(p) if ports.key(p).0 == *key)
}

/// The time since the previous record, in a record's units.
fn delta(ts_ns: u64, last_ts: &mut Option<u64>) -> u16 {
    let d = last_ts.map_or(0, |last| ts_ns.saturating_sub(last) / 10_000);
    *last_ts = Some(ts_ns);
    d.min(u64::from(u16::MAX - 1)) as u16
}

fn packet_record(
    event: &Event,
    connections: &BTreeMap<ConnectionKey, Connection>,
    ports: &Ports,
    last_ts: &mut Option<u64>,
) -> Option<EventRecord> {
    let Event::Packet(p) = event else { return None };
    let (key, dir) = ports.key(p);
    let conn = connections.get(&key)?;
    let to_client = if dir == FlowDirection::ServerToClient {
        EventRecord::TO_CLIENT
    } else {
        0
    };
    Some(EventRecord {
        kind: conn.index | to_client,
        ts_delta: delta(p.ts_ns, last_ts),
        flags: p.flags.0,
        seq: p.seq,
        ack: p.ack,
        missing: p
            .payload_len
            .saturating_sub(p.payload.len() as u32)
            .min(0xFFFF) as u16,
        data: p.payload.to_vec(),
    })
}

/// One connection's reassembled streams, cut for the targets.
struct Streams {
    /// As an `http2`, `http1` or `rafthttp` input: the start flag, then one record per
    /// delivery or gap.
    pieces: Vec<u8>,
    /// As TLS plaintext chunks (an `EventRecord` input), one chunk per delivery.
    tls: Vec<u8>,
    /// How the connection closed, if it did.
    closed: Option<CloseReason>,
}

fn streams(key: &ConnectionKey, index: u8, events: &[Event], ports: &Ports) -> Streams {
    let mut reassembler = TcpReassembler::new(vec![key.server.port()]);
    let mut out = Vec::new();
    for event in events.iter().filter(|e| of_connection(e, key, ports)) {
        if let Event::Packet(p) = event {
            reassembler.push(p, &mut out);
        }
    }
    reassembler.finish(&mut out);
    let mut pieces = vec![0u8];
    let mut tls = Vec::new();
    let mut closed = None;
    let mut last_ts = None;
    for event in &out {
        match event {
            TcpEvent::Opened { handshake_seen, .. } => pieces[0] = u8::from(*handshake_seen),
            TcpEvent::Data {
                dir,
                ts_ns,
                offset,
                bytes,
                ..
            } => {
                let i = DIRECTIONS.iter().position(|d| d == dir).unwrap_or(0) as u8;
                OpRecord::encode(i, bytes, &mut pieces);
                EventRecord {
                    kind: EventRecord::TLS
                        | EventRecord::ENDPOINTS
                        | index
                        | if i == 1 { EventRecord::TO_CLIENT } else { 0 },
                    ts_delta: delta(*ts_ns, &mut last_ts),
                    flags: 0,
                    seq: *offset as u32,
                    ack: 0,
                    missing: 0,
                    data: bytes.clone(),
                }
                .encode(&mut tls);
            }
            TcpEvent::Gap { dir, len, .. } => {
                let i = DIRECTIONS.iter().position(|d| d == dir).unwrap_or(0) as u8;
                OpRecord::encode_len(i, (*len).min(u64::from(u16::MAX)) as u16, &mut pieces);
            }
            TcpEvent::Closed { reason, .. } => closed = Some(*reason),
        }
    }
    Streams {
        pieces,
        tls,
        closed,
    }
}

/// The layers of an `http2` input: each direction's header blocks (`hpack`), each
/// stream direction's DATA (`grpc`) and each whole message in it (`etcdpb`).
fn layers(http2: &[u8]) -> Vec<Seed> {
    let handshake = http2.first() == Some(&1);
    let mut blocks = [Vec::new(), Vec::new()];
    let mut paths: HashMap<u32, String> = HashMap::new();
    let mut data: BTreeMap<(u32, usize), Vec<u8>> = BTreeMap::new();
    http2_decode(http2, |i, event, hpack| match event {
        Http2Event::HeaderBlock {
            stream_id,
            fragment,
            ..
        } => {
            OpRecord::encode(0, fragment, &mut blocks[i]);
            if let Ok(block) = hpack.decode(fragment) {
                if let Some(path) = block.get(b":path") {
                    paths.insert(*stream_id, String::from_utf8_lossy(path).into_owned());
                }
            }
        }
        Http2Event::Data {
            stream_id, bytes, ..
        } => OpRecord::encode(0, bytes, data.entry((*stream_id, i)).or_default()),
        _ => {}
    });
    let mut out = Vec::new();
    // Table size 4096 from the start, or an upper bound mid-stream.
    let hpack_flags = if handshake { 2 << 1 } else { 1 | 3 << 1 };
    for (i, records) in blocks.into_iter().enumerate() {
        if !records.is_empty() {
            out.push(Seed {
                target: "hpack",
                name: format!("{}-blocks", ["client", "server"][i]),
                data: [&[hpack_flags][..], &records].concat(),
            });
        }
    }
    for ((stream_id, i), records) in data {
        let method = paths
            .get(&stream_id)
            .and_then(|p| METHODS.iter().position(|m| m.path == p))
            .unwrap_or(0) as u8;
        let side = ["request", "response"][i];
        let input = [&[0, method, i as u8][..], &records].concat();
        let (_, _, events) = grpc_decode(&input);
        for (n, event) in events.iter().enumerate() {
            if let GrpcEvent::Message(m) = event {
                out.push(Seed {
                    target: "etcdpb",
                    name: format!("stream{stream_id}-{side}{n}"),
                    data: [&[method, i as u8][..], &m.data].concat(),
                });
            }
        }
        out.push(Seed {
            target: "grpc",
            name: format!("stream{stream_id}-{side}s"),
            data: input,
        });
    }
    out
}

/// The capture's IPv4 TCP segments as a pcap file (raw IP), payloads as captured.
fn to_pcap(events: &[Event]) -> Vec<u8> {
    let mut out = 0xA1B2_3C4Du32.to_le_bytes().to_vec();
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    for e in events {
        let Event::Packet(p) = e else { continue };
        let (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst)) = (p.src.ip(), p.dst.ip())
        else {
            continue;
        };
        let total = u16::try_from(40 + p.payload_len).unwrap_or(u16::MAX);
        let mut frame = vec![0x45, 0];
        frame.extend_from_slice(&total.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        frame.extend_from_slice(&src.octets());
        frame.extend_from_slice(&dst.octets());
        frame.extend_from_slice(&p.src.port().to_be_bytes());
        frame.extend_from_slice(&p.dst.port().to_be_bytes());
        frame.extend_from_slice(&p.seq.to_be_bytes());
        frame.extend_from_slice(&p.ack.to_be_bytes());
        frame.extend_from_slice(&[0x50, p.flags.0]);
        frame.extend_from_slice(&p.window.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(&p.payload);
        let len = frame.len() as u32;
        let ts = p.ts_ns;
        out.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts % 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        let cut = p.payload_len.saturating_sub(p.payload.len() as u32);
        out.extend_from_slice(&len.saturating_add(cut).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

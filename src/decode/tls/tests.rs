use std::net::SocketAddr;

use bytes::Bytes;

use super::*;
use crate::capture::TlsEndpoints;

const ETCD: &str = "10.0.0.1:2379";
const CLIENT: &str = "10.0.0.9:40000";

fn chunk(
    conn_id: u64,
    direction: Direction,
    ends: Option<(&str, &str)>,
    ts_ns: u64,
    offset: u64,
    data: &[u8],
) -> TlsData {
    TlsData {
        ts_ns,
        pid: 7,
        tid: 7,
        conn_id,
        direction,
        endpoints: ends.map(|(local, remote)| TlsEndpoints {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }),
        offset,
        len: data.len() as u32,
        data: Bytes::copy_from_slice(data),
    }
}

fn served(direction: Direction, ts_ns: u64, offset: u64, data: &[u8]) -> TlsData {
    chunk(1, direction, Some((ETCD, CLIENT)), ts_ns, offset, data)
}

fn run(chunks: &[TlsData]) -> (Vec<TcpEvent>, TlsStats) {
    let mut r = TlsReassembler::new(vec![2379, 2380]);
    let mut out = Vec::new();
    for c in chunks {
        r.push(c, &mut out);
    }
    r.finish(&mut out);
    (out, r.stats().clone())
}

/// (direction, offset, bytes) of the data events, and (direction, offset, len, reason)
/// of the gaps.
type Streams = (
    Vec<(FlowDirection, u64, Vec<u8>)>,
    Vec<(FlowDirection, u64, u64, GapReason)>,
);

fn streams(events: &[TcpEvent]) -> Streams {
    let mut data = Vec::new();
    let mut gaps = Vec::new();
    for e in events {
        match e {
            TcpEvent::Data {
                dir, offset, bytes, ..
            } => data.push((*dir, *offset, bytes.clone())),
            TcpEvent::Gap {
                dir,
                offset,
                len,
                reason,
                ..
            } => gaps.push((*dir, *offset, *len, *reason)),
            _ => {}
        }
    }
    (data, gaps)
}

fn key() -> ConnectionKey {
    ConnectionKey {
        client: CLIENT.parse().unwrap(),
        server: ETCD.parse().unwrap(),
    }
}

#[test]
fn etcd_as_server_reads_requests_and_writes_replies() {
    let (events, stats) = run(&[
        served(Direction::Ingress, 10, 0, b"PRI * HTTP/2.0"),
        served(Direction::Egress, 20, 0, b"settings"),
        served(Direction::Ingress, 30, 14, b"more"),
    ]);
    assert!(matches!(
        events[0],
        TcpEvent::Opened { key: k, ts_ns: 10, handshake_seen: false } if k == key()
    ));
    let (data, gaps) = streams(&events);
    assert_eq!(
        data,
        vec![
            (FlowDirection::ClientToServer, 0, b"PRI * HTTP/2.0".to_vec()),
            (FlowDirection::ServerToClient, 0, b"settings".to_vec()),
            (FlowDirection::ClientToServer, 14, b"more".to_vec()),
        ]
    );
    assert!(gaps.is_empty());
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.bytes, 26);
}

#[test]
fn etcd_as_client_dials_a_peer() {
    let (events, _) = run(&[chunk(
        3,
        Direction::Egress,
        Some(("10.0.0.1:51000", "10.0.0.2:2380")),
        5,
        0,
        b"GET /raft",
    )]);
    let TcpEvent::Opened { key, .. } = events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(key.server, "10.0.0.2:2380".parse::<SocketAddr>().unwrap());
    let (data, _) = streams(&events);
    assert_eq!(data[0].0, FlowDirection::ClientToServer);
}

#[test]
fn chunks_before_the_socket_was_known_wait_for_it() {
    let (events, stats) = run(&[
        chunk(1, Direction::Egress, None, 10, 0, b"first"),
        chunk(1, Direction::Egress, None, 11, 5, b"second"),
        chunk(1, Direction::Ingress, Some((ETCD, CLIENT)), 12, 0, b"reply"),
    ]);
    assert!(matches!(events[0], TcpEvent::Opened { ts_ns: 10, .. }));
    let (data, gaps) = streams(&events);
    assert_eq!(
        data,
        vec![
            (FlowDirection::ServerToClient, 0, b"first".to_vec()),
            (FlowDirection::ServerToClient, 5, b"second".to_vec()),
            (FlowDirection::ClientToServer, 0, b"reply".to_vec()),
        ]
    );
    assert!(gaps.is_empty());
    assert_eq!(stats.unplaced_bytes, 0);
}

#[test]
fn a_connection_never_placed_is_counted() {
    let (events, stats) = run(&[chunk(9, Direction::Egress, None, 10, 0, b"lonely")]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.unplaced_bytes, 6);
}

#[test]
fn out_of_order_chunks_are_put_back_in_order() {
    let (events, _) = run(&[
        served(Direction::Ingress, 10, 0, b"ab"),
        served(Direction::Ingress, 12, 4, b"ef"),
        served(Direction::Ingress, 11, 2, b"cd"),
    ]);
    let (data, gaps) = streams(&events);
    let offsets: Vec<u64> = data.iter().map(|d| d.1).collect();
    assert_eq!(offsets, vec![0, 2, 4]);
    assert!(gaps.is_empty());
}

#[test]
fn a_lost_chunk_is_a_gap_once_its_time_has_passed() {
    let (events, _) = run(&[
        served(Direction::Ingress, 0, 0, b"ab"),
        served(Direction::Ingress, 1, 4, b"ef"),
        served(Direction::Egress, HOLE_GRACE_NS + 10, 0, b"later"),
    ]);
    let (data, gaps) = streams(&events);
    assert_eq!(
        gaps,
        vec![(FlowDirection::ClientToServer, 2, 2, GapReason::Missing)]
    );
    // The gap came before the end of the capture, in stream order.
    let pos_gap = events
        .iter()
        .position(|e| matches!(e, TcpEvent::Gap { .. }))
        .unwrap();
    let pos_later = events
        .iter()
        .position(|e| matches!(e, TcpEvent::Data { bytes, .. } if bytes == b"later"))
        .unwrap();
    assert!(pos_gap < pos_later);
    assert_eq!(data.len(), 3);
}

#[test]
fn bytes_that_could_not_be_read_are_an_unreadable_gap() {
    let mut c = served(Direction::Egress, 10, 0, b"abc");
    c.len = 10;
    let (events, _) = run(&[c, served(Direction::Egress, 11, 10, b"next")]);
    let (data, gaps) = streams(&events);
    assert_eq!(
        gaps,
        vec![(FlowDirection::ServerToClient, 3, 7, GapReason::Unreadable)]
    );
    assert_eq!(
        data[1],
        (FlowDirection::ServerToClient, 10, b"next".to_vec())
    );
}

#[test]
fn repeated_bytes_are_delivered_once() {
    let (events, _) = run(&[
        served(Direction::Ingress, 10, 0, b"abcd"),
        served(Direction::Ingress, 11, 2, b"cdef"),
    ]);
    let (data, _) = streams(&events);
    assert_eq!(
        data,
        vec![
            (FlowDirection::ClientToServer, 0, b"abcd".to_vec()),
            (FlowDirection::ClientToServer, 4, b"ef".to_vec()),
        ]
    );
}

#[test]
fn dual_stack_sockets_name_the_connection_as_packets_do() {
    let (events, _) = run(&[chunk(
        1,
        Direction::Ingress,
        Some(("[::ffff:10.0.0.1]:2379", "[::ffff:10.0.0.9]:40000")),
        1,
        0,
        b"x",
    )]);
    assert!(matches!(events[0], TcpEvent::Opened { key: k, .. } if k == key()));
}

#[test]
fn hostile_offsets_do_not_grow_memory_without_bound() {
    let mut r = TlsReassembler::new(vec![2379]);
    let mut out = Vec::new();
    for i in 0..(MAX_WAITING_CHUNKS as u64 * 3) {
        r.push(
            &served(Direction::Ingress, i, 1 + i * 1_000_000, b"x"),
            &mut out,
        );
        let s = &r.conns[&(7, 1)];
        assert!(s.halves[0].ahead.len() <= MAX_WAITING_CHUNKS);
    }
    r.push(
        &served(Direction::Ingress, 0, u64::MAX - 1, b"yy"),
        &mut out,
    );
    r.finish(&mut out);
}

#[test]
fn a_connection_traced_at_both_ends_is_decoded_once() {
    let mut client_view = chunk(1, Direction::Egress, Some((CLIENT, ETCD)), 11, 0, b"req");
    client_view.pid = 8;
    let (events, stats) = run(&[
        served(Direction::Ingress, 12, 0, b"req"),
        client_view,
        served(Direction::Egress, 13, 0, b"reply"),
    ]);
    let opened = events
        .iter()
        .filter(|e| matches!(e, TcpEvent::Opened { .. }))
        .count();
    assert_eq!(opened, 1, "{events:?}");
    let (data, _) = streams(&events);
    assert_eq!(
        data,
        vec![
            (FlowDirection::ClientToServer, 0, b"req".to_vec()),
            (FlowDirection::ServerToClient, 0, b"reply".to_vec()),
        ]
    );
    assert_eq!(stats.mirrored_bytes, 3);
}

#[test]
fn a_new_connection_on_the_same_ports_is_not_a_mirror() {
    let (events, stats) = run(&[
        served(Direction::Ingress, 10, 0, b"first"),
        chunk(
            2,
            Direction::Ingress,
            Some((ETCD, CLIENT)),
            20,
            0,
            b"second",
        ),
    ]);
    let opened = events
        .iter()
        .filter(|e| matches!(e, TcpEvent::Opened { .. }))
        .count();
    assert_eq!(opened, 2, "{events:?}");
    assert_eq!(stats.mirrored_bytes, 0);
}

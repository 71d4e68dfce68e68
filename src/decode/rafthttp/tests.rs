//! Hand-built peer connections: every framing, each server stream cut at every byte
//! boundary (the events must not depend on where), connections seen from their middle,
//! lost bytes, hostile lengths, and HTTP/2 on the peer port.

use prost::Message as _;

use super::*;
use crate::decode::raftpb::Entry;
use crate::decode::raftpb::MessageType;

const C2S: FlowDirection = FlowDirection::ClientToServer;
const S2C: FlowDirection = FlowDirection::ServerToClient;

pub(crate) const M1: u64 = 0x8211f1d0f64f3269;
pub(crate) const M2: u64 = 0x91bc3c398fb3c146;
pub(crate) const CLUSTER: u64 = 0xcdf818194e3a8c32;

pub(crate) fn msg(t: MessageType, from: u64, to: u64, term: u64) -> Message {
    Message {
        r#type: t as i32,
        from,
        to,
        term,
        ..Message::default()
    }
}

fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        r#type: 0,
        data: data.to_vec(),
    }
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// `u64 BE length | message`.
pub(crate) fn framed(m: &Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut b = be(body.len() as u64).to_vec();
    b.extend(body);
    b
}

/// `body` as chunks of at most `size` bytes, each written as Go writes a flush.
pub(crate) fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend(format!("{:x}\r\n", c.len()).bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub(crate) fn stream_request(kind: &str) -> Vec<u8> {
    format!(
        "GET /raft/stream/{kind}/{M1:x} HTTP/1.1\r\nHost: 127.0.0.1:22380\r\n\
         User-Agent: Go-http-client/1.1\r\nX-Etcd-Cluster-Id: {CLUSTER:x}\r\n\
         X-Min-Cluster-Version: 3.0.0\r\nX-Peerurls: http://127.0.0.1:2380\r\n\
         X-Raft-To: {M2:x}\r\nX-Server-From: {M1:x}\r\nX-Server-Version: 3.4.23\r\n\
         Accept-Encoding: gzip\r\n\r\n"
    )
    .into_bytes()
}

pub(crate) const STREAM_OK: &[u8] = b"HTTP/1.1 200 OK\r\nX-Etcd-Cluster-Id: cdf818194e3a8c32\r\n\
    X-Server-Version: 3.4.23\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
    Content-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Events of a connection fed `pushes` in order, at ts 1, 2, 3, ...
fn run(start_seen: bool, pushes: &[(FlowDirection, &[u8])]) -> Vec<PeerEvent> {
    run_at(start_seen, pushes, |i| i as u64 + 1)
}

/// The same with the time of each push from `stamp` (its index).
fn run_at(
    start_seen: bool,
    pushes: &[(FlowDirection, &[u8])],
    stamp: impl Fn(usize) -> u64,
) -> Vec<PeerEvent> {
    let mut conn = PeerConnection::new(start_seen);
    let mut out = Vec::new();
    for (i, (dir, bytes)) in pushes.iter().enumerate() {
        conn.push(*dir, bytes, stamp(i), &mut out);
    }
    conn.finish(stamp(pushes.len()), &mut out);
    out
}

/// Events whatever the pieces' times.
fn run_untimed(pushes: &[(FlowDirection, &[u8])]) -> Vec<PeerEvent> {
    run_at(true, pushes, |_| 0)
}

/// The events of a request, then `server` whole, checked equal (times aside) to those
/// of `server` cut in two at every byte.
fn every_cut(request: &[u8], server: &[u8]) -> Vec<PeerEvent> {
    let whole = run_untimed(&[(C2S, request), (S2C, server)]);
    for cut in 1..server.len() {
        let (a, b) = server.split_at(cut);
        let got = run_untimed(&[(C2S, request), (S2C, a), (S2C, b)]);
        assert_eq!(got, whole, "cut at {cut}");
    }
    whole
}

fn messages(events: &[PeerEvent]) -> Vec<(Framing, Message)> {
    events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Message {
                framing, message, ..
            } => Some((*framing, message.clone())),
            _ => None,
        })
        .collect()
}

/// The messages alone.
fn sent_messages(events: &[PeerEvent]) -> Vec<Message> {
    messages(events).into_iter().map(|(_, m)| m).collect()
}

/// The first event, a request.
fn first_request(events: &[PeerEvent]) -> &PeerRequest {
    match events.first() {
        Some(PeerEvent::Request { request, .. }) => request,
        _ => panic!("no request first: {events:?}"),
    }
}

fn notes(events: &[PeerEvent]) -> Vec<(NoteKind, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Note { kind, text, .. } => Some((*kind, text.clone())),
            _ => None,
        })
        .collect()
}

fn heartbeats(events: &[PeerEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, PeerEvent::LinkHeartbeat { .. }))
        .count()
}

pub(crate) fn message_stream_body() -> (Vec<u8>, Vec<Message>) {
    let sent = vec![
        msg(MessageType::MsgHeartbeat, M2, M1, 2),
        Message {
            commit: 7,
            ..msg(MessageType::MsgHeartbeat, M2, M1, 2)
        },
        Message {
            index: 6,
            log_term: 2,
            ..msg(MessageType::MsgVote, M2, M1, 3)
        },
        msg(MessageType::MsgTimeoutNow, M2, M1, 3),
    ];
    let mut body = framed(&msg(MessageType::MsgHeartbeat, 0, 0, 0));
    for m in &sent {
        body.extend(framed(m));
    }
    (body, sent)
}

#[test]
fn message_stream_with_chunks_that_are_not_messages() {
    let (body, sent) = message_stream_body();
    let mut server = STREAM_OK.to_vec();
    server.extend(chunked(&body, 7));
    let events = every_cut(&stream_request("message"), &server);
    let request = first_request(&events);
    assert_eq!(request.kind, RequestKind::StreamMessage);
    assert_eq!(
        (request.from, request.to, request.path_id),
        (Some(M1), Some(M2), Some(M1))
    );
    assert_eq!(request.cluster_id, Some(CLUSTER));
    assert_eq!(request.server_version.as_deref(), Some("3.4.23"));
    assert_eq!(request.peer_urls, ["http://127.0.0.1:2380"]);
    let PeerEvent::Response { response, .. } = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(response.status, 200);
    assert_eq!(response.request, Some(RequestKind::StreamMessage));
    assert_eq!(response.cluster_id, Some(CLUSTER));
    assert_eq!(heartbeats(&events), 1);
    let got = messages(&events);
    assert_eq!(got.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), sent);
    assert!(got.iter().all(|(f, _)| *f == Framing::LengthPrefixed));
    assert!(notes(&events).is_empty(), "{:?}", notes(&events));
}

#[test]
fn a_message_has_the_time_of_the_event_with_its_last_byte() {
    let m = msg(MessageType::MsgVote, M2, M1, 3);
    let body = framed(&m);
    let (a, b) = body.split_at(body.len() - 1);
    let mut first = STREAM_OK.to_vec();
    first.extend(format!("{:x}\r\n", body.len()).bytes());
    first.extend_from_slice(a);
    let mut second = b.to_vec();
    second.extend_from_slice(b"\r\n");
    let events = run(
        true,
        &[
            (C2S, &stream_request("message")),
            (S2C, &first),
            (S2C, &second),
        ],
    );
    let ts: Vec<u64> = events
        .iter()
        .filter(|e| matches!(e, PeerEvent::Message { .. }))
        .map(PeerEvent::ts_ns)
        .collect();
    assert_eq!(ts, [3]);
    assert!(events
        .iter()
        .all(|e| !matches!(e, PeerEvent::Message { dir, .. } if *dir != S2C)));
}

/// A msgapp stream: a heartbeat, a MsgApp with two entries, then two AppEntries that
/// continue it.
fn msgapp_body() -> (Vec<u8>, Vec<Message>) {
    let first = Message {
        log_term: 5,
        index: 10,
        commit: 10,
        entries: vec![entry(5, 11, b"a"), entry(5, 12, b"b")],
        ..msg(MessageType::MsgApp, M2, M1, 5)
    };
    let mut body = vec![0u8, 2];
    let encoded = first.encode_to_vec();
    body.extend(be(encoded.len() as u64));
    body.extend(encoded);
    let app_entries = |entries: &[Entry], commit: u64| {
        let mut b = vec![1u8];
        b.extend(be(entries.len() as u64));
        for e in entries {
            let e = e.encode_to_vec();
            b.extend(be(e.len() as u64));
            b.extend(e);
        }
        b.extend(be(commit));
        b
    };
    let second = vec![entry(5, 13, b"c"), entry(5, 14, b"dd")];
    body.extend(app_entries(&second, 12));
    body.push(0);
    body.extend(app_entries(&[entry(5, 15, b"")], 14));
    let expect = vec![
        first.clone(),
        Message {
            index: 12,
            commit: 12,
            entries: second,
            ..first.clone()
        },
        Message {
            index: 14,
            commit: 14,
            entries: vec![entry(5, 15, b"")],
            ..first
        },
    ];
    (body, expect)
}

#[test]
fn msgapp_stream_rebuilds_app_entries_from_the_last_msgapp() {
    let (body, expect) = msgapp_body();
    let mut server = STREAM_OK.to_vec();
    server.extend(chunked(&body, 5));
    let events = every_cut(&stream_request("msgapp"), &server);
    let request = first_request(&events);
    assert_eq!(request.kind, RequestKind::StreamMsgApp);
    let got = messages(&events);
    assert_eq!(sent_messages(&events), expect);
    assert_eq!(
        got.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        [Framing::MsgApp, Framing::AppEntries, Framing::AppEntries]
    );
    assert_eq!(heartbeats(&events), 2);
    assert!(notes(&events).is_empty(), "{:?}", notes(&events));
}

#[test]
fn pipeline_posts_on_one_kept_alive_connection() {
    let a = Message {
        reject: true,
        reject_hint: 4,
        index: 9,
        ..msg(MessageType::MsgAppResp, M1, M2, 5)
    };
    let b = msg(MessageType::MsgHeartbeatResp, M1, M2, 5);
    let mut client = Vec::new();
    for m in [&a, &b] {
        let body = m.encode_to_vec();
        client.extend(
            format!(
                "POST /raft HTTP/1.1\r\nHost: 127.0.0.1:22380\r\nContent-Length: {}\r\n\
                 Content-Type: application/protobuf\r\nX-Server-From: {M1:x}\r\n\
                 X-Etcd-Cluster-Id: {CLUSTER:x}\r\n\r\n",
                body.len()
            )
            .bytes(),
        );
        client.extend(body);
    }
    let server = b"HTTP/1.1 204 No Content\r\nX-Etcd-Cluster-Id: cdf818194e3a8c32\r\n\r\n\
        HTTP/1.1 204 No Content\r\nX-Etcd-Cluster-Id: cdf818194e3a8c32\r\n\r\n";
    // The client side cut at every byte too.
    let whole = run_untimed(&[(C2S, &client), (S2C, server)]);
    for cut in 1..client.len() {
        let (x, y) = client.split_at(cut);
        let got = run_untimed(&[(C2S, x), (C2S, y), (S2C, server)]);
        assert_eq!(got, whole, "cut at {cut}");
    }
    let got = messages(&whole);
    assert_eq!(got, [(Framing::Bare, a), (Framing::Bare, b)]);
    let statuses: Vec<_> = whole
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Response { response, .. } => Some((response.status, response.request)),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [(204, Some(RequestKind::Pipeline)); 2]);
    assert!(whole
        .iter()
        .all(|e| !matches!(e, PeerEvent::Message { dir, .. } if *dir != C2S)));
}

#[test]
fn snapshot_message_then_database_counted() {
    let snap = Message {
        snapshot: Some(crate::decode::raftpb::message::Snapshot {
            data: b"{\"v2\":\"store\"}".to_vec(),
            metadata: Some(crate::decode::raftpb::message::SnapshotMetadata {
                conf_state: None,
                index: 20,
                term: 5,
            }),
        }),
        ..msg(MessageType::MsgSnap, M2, M1, 5)
    };
    let mut body = framed(&snap);
    body.extend(std::iter::repeat_n(0xab, 3000));
    let mut client = format!(
        "POST /raft/snapshot HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\nX-Server-From: {M2:x}\r\n\r\n"
    )
    .into_bytes();
    client.extend(chunked(&body, 1000));
    client.extend_from_slice(b"0\r\n\r\n");
    let events = run(
        true,
        &[(C2S, &client), (S2C, b"HTTP/1.1 204 No Content\r\n\r\n")],
    );
    assert_eq!(messages(&events), [(Framing::LengthPrefixed, snap)]);
    assert!(events.iter().any(|e| matches!(
        e,
        PeerEvent::SnapshotData {
            bytes: 3000,
            missing: 0,
            whole: true,
            ..
        }
    )));
}

#[test]
fn probing_and_errors_keep_their_text() {
    let events = run(
        true,
        &[
            (
                C2S,
                b"GET /raft/probing HTTP/1.1\r\nHost: h\r\n\r\n\
                  GET /raft/stream/message/1 HTTP/1.1\r\nX-Server-From: 1\r\n\r\n",
            ),
            (
                S2C,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n\
                  {\"Health\":true,\"Now\":\"2026-01-01T00:00:00Z\"}\n\
                  HTTP/1.1 412 Precondition Failed\r\nContent-Length: 20\r\n\r\n\
                  cluster ID mismatch\n",
            ),
        ],
    );
    let bodies: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Body { via, text, .. } => Some((*via, text.trim_end().to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        bodies,
        [
            (
                Some(RequestKind::Probing),
                "{\"Health\":true,\"Now\":\"2026-01-01T00:00:00Z\"}".to_string()
            ),
            (
                Some(RequestKind::StreamMessage),
                "cluster ID mismatch".to_string()
            ),
        ]
    );
    assert!(notes(&events).is_empty());
}

#[test]
fn http2_on_the_peer_port_is_left_alone() {
    let mut client = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    client.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let events = run(true, &[(C2S, &client), (S2C, &[0, 0, 0, 4, 1, 0, 0, 0, 0])]);
    assert_eq!(notes(&events).len(), 1);
    assert_eq!(notes(&events)[0].0, NoteKind::Http2);
    assert_eq!(events.len(), 1, "{events:?}");
    let mut conn = PeerConnection::new(true);
    conn.push(C2S, &client, 1, &mut Vec::new());
    assert!(conn.is_http2());
}

#[test]
fn a_message_stream_seen_from_its_middle() {
    let (body, sent) = message_stream_body();
    // The first event starts inside a chunk; the next ones each start a chunk (one
    // flush each) with a message.
    let mut tail = framed(&sent[0])[3..].to_vec();
    tail.extend_from_slice(b"\r\n");
    let mut pushes = vec![tail];
    let rest = &body[framed(&msg(MessageType::MsgHeartbeat, 0, 0, 0)).len()..];
    let mut at = 0;
    for m in &sent {
        let n = framed(m).len();
        pushes.push(chunked(&rest[at..at + n], n));
        at += n;
    }
    let events = run(
        false,
        &pushes
            .iter()
            .map(|p| (S2C, p.as_slice()))
            .collect::<Vec<_>>(),
    );
    let got = sent_messages(&events);
    assert_eq!(got, sent);
    let notes = notes(&events);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].0, NoteKind::Midstream);
    assert!(notes[0].1.contains("a message stream"), "{}", notes[0].1);
}

#[test]
fn a_msgapp_stream_seen_from_its_middle_waits_for_a_msgapp() {
    let (body, expect) = msgapp_body();
    // Heartbeats, each its own flush, then AppEntries before any MsgApp, then the
    // stream as above.
    let mut pushes: Vec<Vec<u8>> = (0..8).map(|_| chunked(&[0], 1)).collect();
    let orphan = {
        let e = entry(5, 9, b"z").encode_to_vec();
        let mut b = vec![1u8];
        b.extend(be(1));
        b.extend(be(e.len() as u64));
        b.extend(e);
        b.extend(be(8));
        b
    };
    pushes.push(chunked(&orphan, orphan.len()));
    pushes.push(chunked(&body, body.len()));
    let events = run(
        false,
        &pushes
            .iter()
            .map(|p| (S2C, p.as_slice()))
            .collect::<Vec<_>>(),
    );
    let got = sent_messages(&events);
    assert_eq!(got, expect);
    assert_eq!(heartbeats(&events), 8 + 2);
    let notes = notes(&events);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].1.contains("a msgapp stream"), "{}", notes[0].1);
    assert!(notes[1].1.contains("before any MsgApp"), "{}", notes[1].1);
}

#[test]
fn lost_bytes_resume_at_a_chunk_that_starts_a_message() {
    let (_, sent) = message_stream_body();
    let mut conn = PeerConnection::new(true);
    let mut out = Vec::new();
    conn.push(C2S, &stream_request("message"), 1, &mut out);
    let mut first = STREAM_OK.to_vec();
    let one = framed(&sent[0]);
    first.extend(format!("{:x}\r\n", one.len() * 2).bytes());
    first.extend_from_slice(&one[..5]);
    conn.push(S2C, &first, 2, &mut out);
    // Inside the chunk: the HTTP framing holds, the message framing does not.
    conn.push_gap(S2C, 10, 3, &mut out);
    conn.push(S2C, &[0; 4], 4, &mut out);
    conn.push_gap(S2C, (one.len() * 2 - 19) as u64, 5, &mut out);
    conn.push(S2C, b"\r\n", 6, &mut out);
    // The next chunk starts a message.
    conn.push(S2C, &chunked(&framed(&sent[3]), 100), 7, &mut out);
    conn.finish(8, &mut out);
    let got = sent_messages(&out);
    assert_eq!(got, [sent[3].clone()]);
    let notes = notes(&out);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].0, NoteKind::Gap);
}

#[test]
fn hostile_lengths_are_bounded() {
    let ok = framed(&msg(MessageType::MsgHeartbeat, M2, M1, 2));
    let cases: Vec<(&str, Vec<u8>, NoteKind)> = vec![
        ("message", be(1 << 40).to_vec(), NoteKind::Undecodable),
        (
            "msgapp",
            [&[1u8][..], &be(1 << 30)].concat(),
            NoteKind::Undecodable,
        ),
        (
            "msgapp",
            [&[1u8][..], &be(1), &be(1 << 40)].concat(),
            NoteKind::Undecodable,
        ),
        (
            "msgapp",
            [&[2u8][..], &be(u64::MAX)].concat(),
            NoteKind::Undecodable,
        ),
        ("msgapp", vec![7], NoteKind::Undecodable),
        (
            "message",
            [&be(3)[..], &[0xff, 0xff, 0xff]].concat(),
            NoteKind::Undecodable,
        ),
    ];
    for (kind, body, note) in cases {
        let mut server = STREAM_OK.to_vec();
        server.extend(chunked(&body, 64));
        let events = run(true, &[(C2S, &stream_request(kind)), (S2C, &server)]);
        let notes = notes(&events);
        assert_eq!(notes.len(), 1, "{kind} {body:?}: {notes:?}");
        assert_eq!(notes[0].0, note, "{kind} {body:?}: {notes:?}");
        assert!(messages(&events).is_empty());
    }
    // A message longer than what is decoded, but within etcd's bound, is skipped and
    // the next one decoded.
    let mut conn = PeerConnection::new(true);
    let mut out = Vec::new();
    conn.push(C2S, &stream_request("message"), 1, &mut out);
    let big = MAX_MESSAGE_BYTES + 1;
    let mut server = STREAM_OK.to_vec();
    server.extend(format!("{:x}\r\n", 8 + big + ok.len() as u64).bytes());
    server.extend(be(big));
    conn.push(S2C, &server, 2, &mut out);
    conn.push_gap(S2C, big, 3, &mut out);
    conn.push(S2C, &ok, 4, &mut out);
    assert_eq!(messages(&out).len(), 1);
    assert_eq!(
        notes(&out).iter().map(|n| n.0).collect::<Vec<_>>(),
        [NoteKind::TooLarge]
    );
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = crate::test_rng::XorShift(0x7261_6674_6874);
    let (mbody, _) = message_stream_body();
    let (abody, _) = msgapp_body();
    let streams = [
        ("message", chunked(&mbody, 9)),
        ("msgapp", chunked(&abody, 6)),
    ];
    for round in 0..2000 {
        let (kind, body) = &streams[round % 2];
        let mut server = STREAM_OK.to_vec();
        server.extend_from_slice(body);
        for _ in 0..=rng.index(4) {
            let i = STREAM_OK.len() + rng.index(body.len());
            server[i] = rng.next() as u8;
        }
        let mut conn = PeerConnection::new(rng.below(4) != 0);
        let mut out = Vec::new();
        conn.push(C2S, &stream_request(kind), 0, &mut out);
        let mut from = 0;
        while from < server.len() {
            let n = 1 + rng.index(server.len() - from);
            conn.push(S2C, &server[from..from + n], 1, &mut out);
            if rng.below(10) == 0 {
                conn.push_gap(S2C, rng.below(30), 1, &mut out);
            }
            from += n;
        }
        let n = rng.index(200);
        conn.push(S2C, &rng.bytes(n), 2, &mut out);
        conn.close(3, CloseReason::Fin, &mut out);
    }
}

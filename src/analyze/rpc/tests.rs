//! The pipeline from hand-built packets: a connection seen from its handshake, one open
//! before recording began (HPACK entries unknown, methods inferred), and random bytes.

use prost::Message;

use super::*;
use crate::analyze::test_wire::Wire;
use crate::decode::etcdpb::{self as pb};

/// From the TCP handshake on, with the client's HTTP/2 preface and SETTINGS sent.
fn h2() -> Wire {
    let mut w = Wire::new(true);
    let mut pre = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    pre.extend(frame(4, 0, 0, &[]));
    w.send(true, &pre);
    w
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK literal with incremental indexing and a literal name (no Huffman).
fn lit(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x40, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

fn grpc(msg: &[u8]) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

const HEADERS: u8 = 1;
const DATA: u8 = 0;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn header() -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 7,
        raft_term: 2,
    })
}

/// A unary call on `stream` with the given request header block.
fn unary(w: &mut Wire, stream: u32, block: &[u8], req: &[u8], resp: &[u8], status: &str) {
    let mut c = frame(HEADERS, END_HEADERS, stream, block);
    c.extend(frame(DATA, END_STREAM, stream, &grpc(req)));
    w.send(true, &c);
    let mut s = frame(HEADERS, END_HEADERS, stream, &[0x88]); // :status 200
    s.extend(frame(DATA, 0, stream, &grpc(resp)));
    s.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &lit("grpc-status", status),
    ));
    w.send(false, &s);
}

fn run(w: &Wire) -> (Vec<RpcCall>, RpcStats) {
    let mut d = RpcDecoder::new(vec![2379]);
    let mut out = Vec::new();
    for e in &w.packets {
        d.push(e, &mut out);
    }
    d.finish(&mut out);
    (out, d.stats().clone())
}

#[test]
fn a_put_and_a_watch_from_the_handshake_on() {
    let mut w = h2();
    w.send(false, &frame(4, 0, 0, &[]));
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend(lit(":path", "/etcdserverpb.KV/Put"));
    block.extend(lit("token", "s3cr3t-token"));
    let put = pb::PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        ..Default::default()
    };
    let resp = pb::PutResponse {
        header: header(),
        ..Default::default()
    };
    unary(
        &mut w,
        1,
        &block,
        &put.encode_to_vec(),
        &resp.encode_to_vec(),
        "0",
    );

    // A Watch: a create request, one response with an event, then the server ends it.
    let mut block = vec![0x83, 0x86];
    block.extend(lit(":path", "/etcdserverpb.Watch/Watch"));
    w.send(true, &frame(HEADERS, END_HEADERS, 3, &block));
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b"/a/".to_vec(),
                range_end: b"/a0".to_vec(),
                ..Default::default()
            },
        )),
    };
    w.send(true, &frame(DATA, 0, 3, &grpc(&create.encode_to_vec())));
    let created = pb::WatchResponse {
        header: header(),
        created: true,
        ..Default::default()
    };
    let mut s = frame(HEADERS, END_HEADERS, 3, &[0x88]);
    s.extend(frame(DATA, 0, 3, &grpc(&created.encode_to_vec())));
    w.send(false, &s);
    w.send(
        false,
        &frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &lit("grpc-status", "1"),
        ),
    );

    let (calls, stats) = run(&w);
    assert_eq!(stats.connections, 1);
    assert_eq!(calls.len(), 4, "{calls:#?}");
    let c = &calls[0];
    assert_eq!(c.kind, RecordKind::Call);
    assert_eq!(c.method.as_deref(), Some("/etcdserverpb.KV/Put"));
    assert_eq!(c.status, Some(0));
    assert_eq!(c.key.as_deref(), Some(&b"foo"[..]));
    assert!(!c.inferred && !c.gaps);
    assert_eq!(c.completeness(), Completeness::Full);
    assert_eq!(
        c.request,
        Some(RpcBody::Message(EtcdMessage::PutRequest(put)))
    );
    assert!(c.latency_ns.is_some_and(|l| l > 0));
    assert_eq!(c.token.as_deref(), Some("s3cr3t-token"));
    let mut r = c.clone();
    r.redact();
    assert_eq!(r.token.as_deref(), Some(REDACTED));

    assert_eq!(
        calls[1].kind,
        RecordKind::Message {
            direction: MessageDirection::Request,
            index: 0
        }
    );
    assert_eq!(calls[1].key.as_deref(), Some(&b"/a/"[..]));
    assert_eq!(
        calls[2].kind,
        RecordKind::Message {
            direction: MessageDirection::Response,
            index: 0
        }
    );
    assert_eq!(
        calls[3].kind,
        RecordKind::StreamEnd {
            requests: 1,
            responses: 1
        }
    );
    assert_eq!(calls[3].status, Some(1));
    assert_eq!(
        calls[3].method.as_deref(),
        Some("/etcdserverpb.Watch/Watch")
    );
}

/// Two watches on one Watch stream: each message's record names the keys of the watch
/// it is about (by watch id), not the stream's first key.
#[test]
fn each_watch_message_names_its_own_watch() {
    let mut w = h2();
    w.send(false, &frame(4, 0, 0, &[]));
    let mut block = vec![0x83, 0x86];
    block.extend(lit(":path", "/etcdserverpb.Watch/Watch"));
    w.send(true, &frame(HEADERS, END_HEADERS, 1, &block));
    w.send(false, &frame(HEADERS, END_HEADERS, 1, &[0x88]));
    let request = |w: &mut Wire, r: pb::watch_request::RequestUnion| {
        let m = pb::WatchRequest {
            request_union: Some(r),
        };
        w.send(true, &frame(DATA, 0, 1, &grpc(&m.encode_to_vec())));
    };
    let create = |key: &[u8], end: &[u8]| {
        pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        })
    };
    let response = |w: &mut Wire, watch_id, created, canceled| {
        let m = pb::WatchResponse {
            header: header(),
            watch_id,
            created,
            canceled,
            ..Default::default()
        };
        w.send(false, &frame(DATA, 0, 1, &grpc(&m.encode_to_vec())));
    };
    request(&mut w, create(b"/a/", b"/a0"));
    request(&mut w, create(b"/b/", b"/b0"));
    response(&mut w, 0, true, false);
    response(&mut w, 1, true, false);
    response(&mut w, 1, false, false);
    let cancel = |watch_id| {
        pb::watch_request::RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id })
    };
    request(&mut w, cancel(1));
    response(&mut w, 1, false, true);
    request(&mut w, cancel(0));
    response(&mut w, 0, false, true);

    let (calls, _) = run(&w);
    let keys: Vec<_> = calls
        .iter()
        .map(|c| {
            let dir = match c.kind {
                RecordKind::Message { direction, .. } => Some(direction),
                _ => None,
            };
            (dir, c.key.as_deref(), c.range_end.as_deref())
        })
        .collect();
    let (req, resp) = (
        Some(MessageDirection::Request),
        Some(MessageDirection::Response),
    );
    let a = (Some(&b"/a/"[..]), Some(&b"/a0"[..]));
    let b = (Some(&b"/b/"[..]), Some(&b"/b0"[..]));
    assert_eq!(
        keys,
        [
            (req, a.0, a.1),
            (req, b.0, b.1),
            (resp, a.0, a.1),
            (resp, b.0, b.1),
            (resp, b.0, b.1),
            (req, b.0, b.1),
            (resp, b.0, b.1),
            (req, a.0, a.1),
            (resp, a.0, a.1),
            // The stream's end keeps the stream's first key.
            (None, a.0, a.1),
        ],
        "{calls:#?}"
    );
}

#[test]
fn a_connection_open_before_recording_gets_its_methods_inferred() {
    let mut w = Wire::new(false);
    // The :path (and :authority) come from dynamic entries we never saw.
    let block = [0x83, 0x86, 0x80 | 63, 0x80 | 62];
    let range = pb::RangeRequest {
        key: b"foo".to_vec(),
        ..Default::default()
    };
    let resp = pb::RangeResponse {
        header: header(),
        kvs: vec![pb::KeyValue {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            ..Default::default()
        }],
        count: 1,
        ..Default::default()
    };
    unary(
        &mut w,
        5,
        &block,
        &range.encode_to_vec(),
        &resp.encode_to_vec(),
        "0",
    );
    // Same unseen entries again; this response alone would fit Put too.
    let empty = pb::RangeResponse {
        header: header(),
        ..Default::default()
    };
    unary(
        &mut w,
        7,
        &block,
        &range.encode_to_vec(),
        &empty.encode_to_vec(),
        "0",
    );
    // Different unseen entries, and messages that fit several methods: stays unknown.
    let other = [0x83, 0x86, 0x80 | 70, 0x80 | 62];
    unary(
        &mut w,
        9,
        &other,
        &range.encode_to_vec(),
        &empty.encode_to_vec(),
        "0",
    );

    let (calls, stats) = run(&w);
    assert_eq!(stats.midstream_connections, 1);
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for c in &calls[..2] {
        assert_eq!(
            c.method.as_deref(),
            Some("/etcdserverpb.KV/Range"),
            "{c:#?}"
        );
        assert!(c.inferred);
        assert_eq!(c.key.as_deref(), Some(&b"foo"[..]));
        assert_eq!(c.completeness(), Completeness::Partial);
    }
    assert!(calls[1]
        .notes
        .iter()
        .any(|n| n.contains("same unseen HPACK entry")));
    assert_eq!(calls[2].method, None);
    assert_eq!(calls[2].completeness(), Completeness::UnknownMethod);
    assert!(
        calls[2].notes.iter().any(|n| n.contains("never seen")),
        "{:?}",
        calls[2].notes
    );
    // Undecoded bodies of unknown methods may hold secrets.
    let mut r = calls[2].clone();
    r.redact();
    assert!(matches!(&r.request, Some(RpcBody::Raw { bytes, .. }) if bytes.is_empty()));
}

#[test]
fn a_value_cut_at_snaplen_is_reported_partial() {
    let mut w = h2();
    let mut block = vec![0x83, 0x86];
    block.extend(lit(":path", "/etcdserverpb.KV/Put"));
    let put = pb::PutRequest {
        key: b"big".to_vec(),
        value: vec![b'x'; 10_000],
        ..Default::default()
    };
    let mut c = frame(HEADERS, END_HEADERS, 1, &block);
    c.extend(frame(DATA, END_STREAM, 1, &grpc(&put.encode_to_vec())));
    // Captured only the first 4096 bytes of the segment.
    w.send(true, &c);
    if let Some(Event::Packet(p)) = w.packets.last_mut() {
        p.payload.truncate(4096);
    }
    let resp = pb::PutResponse {
        header: header(),
        ..Default::default()
    };
    let mut s = frame(HEADERS, END_HEADERS, 1, &[0x88]);
    s.extend(frame(DATA, 0, 1, &grpc(&resp.encode_to_vec())));
    s.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &lit("grpc-status", "0"),
    ));
    w.send(false, &s);
    let (calls, stats) = run(&w);
    assert!(stats.gap_bytes > 5000);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let c = &calls[0];
    assert_eq!(c.status, Some(0));
    assert!(c.gaps);
    assert_eq!(c.key.as_deref(), Some(&b"big"[..]));
    match &c.request {
        Some(RpcBody::Partial { message, len, .. }) => {
            assert_eq!(*len as usize, put.encoded_len());
            assert_eq!(
                message,
                &EtcdMessage::PutRequest(pb::PutRequest {
                    key: b"big".to_vec(),
                    ..Default::default()
                })
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.completeness(), Completeness::Partial);
}

/// Connections seen from their start that are not HTTP/2, or break it before any call,
/// each give one record without a method that says why; a clean one without calls, an
/// HTTP/1.1 one (etcd's peer API, `/health`) and one with a call give none of that.
#[test]
fn connections_that_are_not_http2_say_so() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings = frame(4, 0, 0, &[]);
    let mut huge = settings.clone();
    huge.extend([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
    let mut cut = settings.clone();
    cut.extend(&frame(1, END_HEADERS, 1, &[0x82; 40])[..20]);
    let mut wrong = preface.to_vec();
    wrong[3] = b'-';
    // The bytes, and whether the preface comes first.
    let cases: [(&[u8], bool, &str); 4] = [
        (b"\x7f\x00garbage that is no preface", false, "BadPreface"),
        (&wrong, false, "BadPreface"),
        (&huge, true, "FrameTooLarge"),
        (&cut, true, "EndOfData"),
    ];
    for (bytes, after_preface, reason) in cases {
        let mut w = Wire::new(true);
        let mut sent = Vec::new();
        if after_preface {
            sent.extend(preface);
        }
        sent.extend(bytes);
        w.send(true, &sent);
        let (calls, _) = run(&w);
        assert_eq!(calls.len(), 1, "{reason}: {calls:?}");
        let c = &calls[0];
        assert_eq!((c.method.as_deref(), c.stream_id), (None, 0), "{c:?}");
        assert!(c.request.is_none() && c.response.is_none(), "{c:?}");
        assert_eq!(c.notes.len(), 1, "{c:?}");
        assert!(
            c.notes[0].starts_with("client bytes are not HTTP/2"),
            "{c:?}"
        );
        assert!(c.notes[0].contains(reason), "{c:?}");
    }
    let mut quiet = h2();
    quiet.send(false, &frame(4, 0, 0, &[]));
    assert!(run(&quiet).0.is_empty());
    let mut http1 = Wire::new(true);
    http1.send(true, b"GET /health HTTP/1.1\r\nHost: etcd\r\n\r\n");
    http1.send(false, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(run(&http1).0.is_empty());
    let mut call = h2();
    let mut block = vec![0x83, 0x86];
    block.extend(lit(":path", "/etcdserverpb.KV/Range"));
    unary(&mut call, 1, &block, b"\x0a\x03foo", b"\x0a\x00", "0");
    call.send(true, &frame(0, 0, 3, &[0; 30])[..12]);
    let (calls, _) = run(&call);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method.as_deref(), Some("/etcdserverpb.KV/Range"));
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let mut rng = crate::test_rng::XorShift(0x2545f4914f6cdd1d);
    let mut next = move || rng.next();
    // A valid conversation as the base for mutation.
    let mut base = h2();
    let mut block = vec![0x83, 0x86];
    block.extend(lit(":path", "/etcdserverpb.KV/Range"));
    unary(&mut base, 1, &block, b"\x0a\x03foo", b"\x0a\x00", "0");
    for round in 0..300 {
        let mut d = RpcDecoder::new(vec![]);
        let mut out = Vec::new();
        for e in &base.packets {
            let mut e = e.clone();
            if let Event::Packet(p) = &mut e {
                if round % 2 == 0 && !p.payload.is_empty() {
                    let n = (next() % 4) as usize;
                    let mut payload = p.payload.to_vec();
                    for _ in 0..n {
                        let i = (next() as usize) % payload.len();
                        payload[i] = next() as u8;
                    }
                    p.payload = payload.into();
                } else if round % 2 == 1 {
                    let len = (next() % 64) as usize;
                    p.payload = (0..len).map(|_| next() as u8).collect();
                    p.payload_len = p.payload.len() as u32 + (next() % 3) as u32;
                    p.seq = p.seq.wrapping_add((next() % 5) as u32);
                }
            }
            d.push(&e, &mut out);
        }
        d.finish(&mut out);
        for mut c in out {
            c.redact();
            let _ = c.completeness();
        }
    }
}

#[test]
fn a_snapshot_is_counted_not_kept() {
    let mut w = h2();
    let mut block = vec![0x83, 0x86];
    block.extend(lit(":path", "/etcdserverpb.Maintenance/Snapshot"));
    let mut c = frame(HEADERS, END_HEADERS, 1, &block);
    c.extend(frame(DATA, END_STREAM, 1, &grpc(&[])));
    w.send(true, &c);
    w.send(false, &frame(HEADERS, END_HEADERS, 1, &[0x88]));
    for remaining in [2000u64, 1000, 0] {
        let chunk = pb::SnapshotResponse {
            header: header(),
            remaining_bytes: remaining,
            blob: vec![0xab; 1000],
            ..Default::default()
        };
        w.send(false, &frame(DATA, 0, 1, &grpc(&chunk.encode_to_vec())));
    }
    w.send(
        false,
        &frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &lit("grpc-status", "0"),
        ),
    );
    let (calls, _) = run(&w);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].kind, RecordKind::Call);
    assert_eq!(calls[0].status, Some(0));
    assert_eq!(
        calls[0].response,
        Some(RpcBody::SnapshotChunks {
            chunks: 3,
            blob_bytes: 3000,
            remaining_bytes: 0
        })
    );
    assert_eq!(calls[0].completeness(), Completeness::Full);
}

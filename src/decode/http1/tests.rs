//! The parser from hand-built streams, each split at every byte boundary: the events
//! must not depend on how the bytes were cut.

use super::*;

const C2S: FlowDirection = FlowDirection::ClientToServer;
const S2C: FlowDirection = FlowDirection::ServerToClient;

/// Events with their bytes owned; consecutive body slices of one chunk joined.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Request(String, String, BodyFraming),
    Response(u16, BodyFraming, bool),
    Body(Vec<u8>, bool),
    BodyGap(u64),
    End(Vec<Header>),
    Lost(String),
    Synced(u64, bool),
    Stopped(Stop),
}

fn collect(out: &mut Vec<Ev>) -> impl FnMut(Http1Event<'_>) + '_ {
    move |ev| {
        let ev = match ev {
            Http1Event::Request { head, body } => Ev::Request(head.method, head.target, body),
            Http1Event::Response {
                head,
                body,
                interim,
            } => Ev::Response(head.status, body, interim),
            Http1Event::Body { bytes, chunk_start } => {
                if let (false, Some(Ev::Body(b, _))) = (chunk_start, out.last_mut()) {
                    b.extend_from_slice(bytes);
                    return;
                }
                Ev::Body(bytes.to_vec(), chunk_start)
            }
            Http1Event::BodyGap { len } => Ev::BodyGap(len),
            Http1Event::End { trailers } => Ev::End(trailers),
            Http1Event::Lost(why) => Ev::Lost(why.to_string()),
            Http1Event::Synced { skipped, in_body } => Ev::Synced(skipped, in_body),
            Http1Event::Stopped(why) => Ev::Stopped(why),
        };
        out.push(ev);
    }
}

/// One direction's bytes pushed in pieces cut at `cuts`.
fn run_cut(
    conn: &mut Http1Connection,
    dir: FlowDirection,
    bytes: &[u8],
    cuts: &[usize],
) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain([bytes.len()].iter()) {
        conn.push(dir, &bytes[from..c], &mut collect(&mut out));
        from = c;
    }
    out
}

/// The events of `bytes` whole, checked equal to those of every two-piece cut.
fn every_cut(start_seen: bool, dir: FlowDirection, bytes: &[u8]) -> Vec<Ev> {
    let whole = run_cut(&mut Http1Connection::new(start_seen), dir, bytes, &[]);
    for cut in 1..bytes.len() {
        let got = run_cut(&mut Http1Connection::new(start_seen), dir, bytes, &[cut]);
        assert_eq!(got, whole, "cut at {cut}");
    }
    whole
}

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn keep_alive_requests_with_content_length() {
    let req = b"POST /raft HTTP/1.1\r\nHost: 127.0.0.1:2380\r\nContent-Length: 3\r\n\
        Content-Type: application/protobuf\r\n\r\nabc\
        POST /raft HTTP/1.1\r\nContent-Length: 2\r\n\r\nde";
    let got = every_cut(true, C2S, req);
    assert_eq!(
        got,
        vec![
            Ev::Request("POST".into(), "/raft".into(), BodyFraming::Length(3)),
            Ev::Body(b"abc".to_vec(), false),
            Ev::End(vec![]),
            Ev::Request("POST".into(), "/raft".into(), BodyFraming::Length(2)),
            Ev::Body(b"de".to_vec(), false),
            Ev::End(vec![]),
        ]
    );
    let resp = b"HTTP/1.1 204 No Content\r\nX-Etcd-Cluster-Id: cdf818194e3a8c32\r\n\r\n\
        HTTP/1.1 204 No Content\r\n\r\n";
    let got = every_cut(true, S2C, resp);
    assert_eq!(
        got,
        vec![
            Ev::Response(204, BodyFraming::None, false),
            Ev::End(vec![]),
            Ev::Response(204, BodyFraming::None, false),
            Ev::End(vec![]),
        ]
    );
}

#[test]
fn heads_parse_fields() {
    let mut conn = Http1Connection::new(true);
    let mut heads = Vec::new();
    let req = b"GET /raft/stream/message/8211f1d0f64f3269 HTTP/1.1\r\n\
        X-Server-From: 8211f1d0f64f3269\r\nx-raft-to:  91bc3c398fb3c146 \r\n\
        X-Folded: a\r\n b\r\n\r\n";
    conn.push(C2S, req, &mut |ev| {
        if let Http1Event::Request { head, .. } = ev {
            heads.push(head);
        }
    });
    let head = &heads[0];
    assert_eq!(head.minor, 1);
    assert_eq!(header(&head.headers, "X-Raft-To"), Some("91bc3c398fb3c146"));
    assert_eq!(
        header(&head.headers, "x-server-from"),
        Some("8211f1d0f64f3269")
    );
    assert_eq!(header(&head.headers, "X-Folded"), Some("a b"));
    assert_eq!(header(&head.headers, "missing"), None);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n1\r\n \r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n\
        HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let got = every_cut(true, S2C, resp);
    assert_eq!(
        got,
        vec![
            Ev::Response(200, BodyFraming::Chunked, false),
            Ev::Body(b"hello".to_vec(), true),
            Ev::Body(b" ".to_vec(), true),
            Ev::Body(b"0123456789".to_vec(), true),
            Ev::End(vec![h("X-Trailer", "t")]),
            Ev::Response(404, BodyFraming::None, false),
            Ev::End(vec![]),
        ]
    );
}

#[test]
fn a_stream_that_never_ends_is_delivered_as_it_comes() {
    let mut conn = Http1Connection::new(true);
    let mut out = Vec::new();
    conn.push(
        S2C,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
        &mut collect(&mut out),
    );
    assert_eq!(out.last(), Some(&Ev::Body(b"ab".to_vec(), true)));
    conn.push(S2C, b"c\r\n", &mut collect(&mut out));
    assert_eq!(out.last(), Some(&Ev::Body(b"abc".to_vec(), true)));
    assert!(conn.in_message(S2C));
    let mut end = Vec::new();
    conn.finish(S2C, &mut collect(&mut end));
    assert!(
        end.is_empty(),
        "a chunked body cut by the close does not end: {end:?}"
    );
}

#[test]
fn responses_without_bodies_and_until_close() {
    // HEAD: no body whatever Content-Length says; then 100 Continue, then a body read
    // until the connection closes.
    let mut conn = Http1Connection::new(true);
    let mut out = Vec::new();
    conn.push(
        C2S,
        b"HEAD / HTTP/1.1\r\n\r\nPOST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
        &mut collect(&mut out),
    );
    conn.push(
        S2C,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.0 200 OK\r\n\r\nrest of it",
        &mut collect(&mut out),
    );
    conn.finish(S2C, &mut collect(&mut out));
    assert_eq!(
        out[5..],
        [
            Ev::Response(200, BodyFraming::None, false),
            Ev::End(vec![]),
            Ev::Response(100, BodyFraming::None, true),
            Ev::End(vec![]),
            Ev::Response(200, BodyFraming::UntilClose, false),
            Ev::Body(b"rest of it".to_vec(), false),
            Ev::End(vec![]),
        ]
    );
}

#[test]
fn http2_preface_stops_both_directions() {
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let got = every_cut(true, C2S, &preface);
    assert_eq!(got, vec![Ev::Stopped(Stop::Http2)]);
    let mut conn = Http1Connection::new(true);
    let mut out = Vec::new();
    conn.push(C2S, &preface, &mut collect(&mut out));
    conn.push(S2C, &[0, 0, 0, 4, 0, 0, 0, 0, 0], &mut collect(&mut out));
    assert_eq!(out, vec![Ev::Stopped(Stop::Http2)]);
}

#[test]
fn malformed_input_on_a_connection_seen_from_its_start_stops() {
    let cases: &[(&[u8], FlowDirection)] = &[
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n",
            C2S,
        ),
        (b"GET / HTTP/3.0\r\n\r\n", C2S),
        (b"GET  / HTTP/1.1\r\n\r\n", C2S),
        (b"HTTP/1.1 2000 OK\r\n\r\n", S2C),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", S2C),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", S2C),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", S2C),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", C2S),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            S2C,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            S2C,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            S2C,
        ),
    ];
    for (bytes, dir) in cases {
        let got = every_cut(true, *dir, bytes);
        assert!(
            matches!(got.last(), Some(Ev::Stopped(Stop::Error(_)))),
            "{}: {got:?}",
            bytes.escape_ascii()
        );
    }
}

#[test]
fn bounds_on_heads_lines_and_fields() {
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_FIRST_LINE + 10));
    let got = run_cut(&mut Http1Connection::new(true), C2S, &long, &[]);
    assert!(matches!(
        got[..],
        [Ev::Stopped(Stop::Error(Http1Error::BadRequestLine(_)))]
    ));

    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    while big.len() <= MAX_HEAD_BYTES {
        big.extend_from_slice(b"X-Padding: 0123456789012345678901234567890123456789\r\n");
    }
    let got = run_cut(&mut Http1Connection::new(true), C2S, &big, &[]);
    assert_eq!(
        got,
        [Ev::Stopped(Stop::Error(Http1Error::HeadTooLarge(
            MAX_HEAD_BYTES
        )))]
    );

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let got = run_cut(&mut Http1Connection::new(true), C2S, &many, &[]);
    assert_eq!(
        got,
        [Ev::Stopped(Stop::Error(Http1Error::TooManyHeaders(
            MAX_HEADERS
        )))]
    );

    let mut chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    chunk.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE + 1));
    let got = run_cut(&mut Http1Connection::new(true), S2C, &chunk, &[]);
    assert!(matches!(
        got.last(),
        Some(Ev::Stopped(Stop::Error(Http1Error::BadChunkSize(_))))
    ));
}

#[test]
fn gaps_inside_bodies_keep_the_place() {
    let mut conn = Http1Connection::new(true);
    let mut out = Vec::new();
    conn.push(
        C2S,
        b"POST /raft HTTP/1.1\r\nContent-Length: 10\r\n\r\nab",
        &mut collect(&mut out),
    );
    conn.push_gap(C2S, 5, &mut collect(&mut out));
    conn.push(C2S, b"xyz", &mut collect(&mut out));
    conn.push(
        S2C,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12",
        &mut collect(&mut out),
    );
    conn.push_gap(S2C, 4, &mut collect(&mut out));
    conn.push(S2C, b"78\r\n0\r\n\r\n", &mut collect(&mut out));
    assert_eq!(
        out[1..],
        [
            Ev::Body(b"ab".to_vec(), false),
            Ev::BodyGap(5),
            Ev::Body(b"xyz".to_vec(), false),
            Ev::End(vec![]),
            Ev::Response(200, BodyFraming::Chunked, false),
            Ev::Body(b"12".to_vec(), true),
            Ev::BodyGap(4),
            Ev::Body(b"78".to_vec(), false),
            Ev::End(vec![]),
        ]
    );
}

#[test]
fn a_gap_in_the_framing_loses_the_place_until_a_chunk_starts_an_event() {
    let mut conn = Http1Connection::new(true);
    let mut out = Vec::new();
    conn.push(
        S2C,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r",
        &mut collect(&mut out),
    );
    conn.push_gap(S2C, 7, &mut collect(&mut out));
    // Not a start ('t' is no hex digit): skipped.
    conn.push(S2C, b"tail\r\n", &mut collect(&mut out));
    conn.push(S2C, b"2\r\nxy\r\n", &mut collect(&mut out));
    assert_eq!(
        out[1..],
        [
            Ev::Body(b"abc".to_vec(), true),
            Ev::Lost("7 bytes not captured in chunk framing".into()),
            Ev::Synced(6, true),
            Ev::Body(b"xy".to_vec(), true),
        ]
    );
    // A chunk found by searching that does not end with CRLF loses the place again.
    conn.push(S2C, b"2\r\nxyz", &mut collect(&mut out));
    assert_eq!(
        out[5..],
        [
            Ev::Body(b"xy".to_vec(), true),
            Ev::Lost("chunk data not followed by CRLF".into()),
        ]
    );
}

#[test]
fn a_connection_open_before_recording_seeks_a_start() {
    // The response direction starts inside a chunk, then a segment starts a chunk.
    let mut conn = Http1Connection::new(false);
    let mut out = Vec::new();
    conn.push(S2C, b"tail of a chunk\r\n", &mut collect(&mut out));
    assert_eq!(conn.skipped(S2C), 17);
    conn.push(S2C, b"4\r\nbody\r\n", &mut collect(&mut out));
    // The request direction finds a request line.
    conn.push(C2S, b"\x00garbage", &mut collect(&mut out));
    conn.push(
        C2S,
        b"POST /raft HTTP/1.1\r\nContent-Length: 1\r\n\r\nq",
        &mut collect(&mut out),
    );
    assert_eq!(
        out,
        [
            Ev::Synced(17, true),
            Ev::Body(b"body".to_vec(), true),
            Ev::Synced(8, false),
            Ev::Request("POST".into(), "/raft".into(), BodyFraming::Length(1)),
            Ev::Body(b"q".to_vec(), false),
            Ev::End(vec![]),
        ]
    );
    // A status line at the start of an event is a start too.
    let got = run_cut(
        &mut Http1Connection::new(false),
        S2C,
        b"HTTP/1.1 204 No Content\r\n\r\n",
        &[],
    );
    assert_eq!(
        got,
        [
            Ev::Synced(0, false),
            Ev::Response(204, BodyFraming::None, false),
            Ev::End(vec![])
        ]
    );
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = crate::test_rng::XorShift(0x4854_5450_3131);
    let good: &[&[u8]] = &[
        b"POST /raft HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /raft/probing HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    ];
    for round in 0..3000 {
        let dir = if round % 2 == 0 { C2S } else { S2C };
        let mut bytes = good[round % 2].to_vec();
        for _ in 0..=rng.index(6) {
            let i = rng.index(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        let mut conn = Http1Connection::new(rng.below(2) == 0);
        let mut sink = |_: Http1Event<'_>| {};
        let mut from = 0;
        while from < bytes.len() {
            let n = 1 + rng.index(bytes.len() - from);
            conn.push(dir, &bytes[from..from + n], &mut sink);
            if rng.below(8) == 0 {
                conn.push_gap(dir, rng.below(20), &mut sink);
            }
            from += n;
        }
        let n = rng.index(64);
        conn.push(dir, &rng.bytes(n), &mut sink);
        conn.finish(dir, &mut sink);
    }
}

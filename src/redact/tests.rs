use std::net::SocketAddr;

use super::header_block::{huffman_filler, looks_like_token};
use super::message::secret_field_values;
use super::*;
use crate::capture::{Direction, Event, Packet, TcpFlags, TlsData, TlsEndpoints, TlsScrubReport};
use crate::decode::hpack::huffman::tests::huffman_encode;
use crate::decode::hpack::integer::tests::encode_integer;
use crate::decode::hpack::{huffman, HpackDecoder};
use crate::decode::http2::{parse_frame_bytes, Frame, CLIENT_PREFACE};

const TOKEN: &[u8] = b"hkLIWLOuNqyHHnyz.37";
const PASSWORD: &[u8] = b"s3cr3t-Passw0rd";

fn client() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}
fn server() -> SocketAddr {
    "127.0.0.1:2379".parse().unwrap()
}

fn packet(from_client: bool, seq: u32, flags: u8, payload: &[u8]) -> Event {
    let (src, dst) = if from_client {
        (client(), server())
    } else {
        (server(), client())
    };
    Event::Packet(Packet {
        ts_ns: 1,
        ifindex: 1,
        direction: Direction::Egress,
        src,
        dst,
        seq,
        ack: 0,
        flags: TcpFlags(flags),
        window: 0,
        payload_len: payload.len() as u32,
        payload: payload.to_vec().into(),
    })
}

fn string(value: &[u8], huffman: bool) -> Vec<u8> {
    if huffman {
        let coded = huffman_encode(value);
        let mut out = encode_integer(coded.len() as u32, 7, 0x80);
        out.extend(coded);
        out
    } else {
        let mut out = encode_integer(value.len() as u32, 7, 0);
        out.extend_from_slice(value);
        out
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// A request header block: POST, `:path` as an incremental literal, and optionally the
/// token as an incremental literal with a literal name.
fn request_block(path: &str, token: Option<bool>) -> Vec<u8> {
    let mut b = vec![0x83, 0x86];
    b.push(0x44);
    b.extend(string(path.as_bytes(), true));
    b.push(0x5f); // content-type (static 31), incremental
    b.extend(string(b"application/grpc", true));
    if let Some(huffman) = token {
        b.push(0x40);
        b.extend(string(b"token", huffman));
        b.extend(string(TOKEN, huffman));
    }
    b
}

fn grpc_message(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn field(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2, value.len() as u8];
    out.extend_from_slice(value);
    out
}

/// Client bytes: preface, SETTINGS, an Authenticate call (password split over two DATA
/// frames when `split_data`), then a Put that refers to the token by table index.
fn client_stream(huffman_token: bool, split_data: bool) -> Vec<u8> {
    let mut s = CLIENT_PREFACE.to_vec();
    s.extend(frame(SETTINGS, 0, 0, &[]));
    s.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_block("/etcdserverpb.Auth/Authenticate", None),
    ));
    let mut body = field(1, b"root");
    body.extend(field(2, PASSWORD));
    let message = grpc_message(&body);
    if split_data {
        let cut = message.len() - 6; // inside the password
        s.extend(frame(DATA, 0, 1, &message[..cut]));
        s.extend(frame(DATA, END_STREAM, 1, &message[cut..]));
    } else {
        s.extend(frame(DATA, END_STREAM, 1, &message));
    }
    s.extend(frame(
        HEADERS,
        END_HEADERS,
        3,
        &request_block("/etcdserverpb.KV/Put", Some(huffman_token)),
    ));
    s.extend(frame(DATA, END_STREAM, 3, &grpc_message(&field(1, b"foo"))));
    // A third call: the token by index (newest entry, 62).
    let mut b = vec![0x83, 0x86, 0xbe, 0x44];
    b.extend(string(b"/etcdserverpb.KV/Range", true));
    s.extend(frame(HEADERS, END_HEADERS, 5, &b));
    s
}

fn server_stream() -> Vec<u8> {
    let mut s = frame(SETTINGS, 0, 0, &[]);
    s.extend(frame(HEADERS, END_HEADERS, 1, &[0x88]));
    let mut body = field(1, &[0x08, 0x01]);
    body.extend(field(2, TOKEN));
    s.extend(frame(DATA, 0, 1, &grpc_message(&body)));
    let mut trailers = vec![0x40];
    trailers.extend(string(b"grpc-status", false));
    trailers.extend(string(b"0", false));
    s.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    s
}

const CLIENT_ISN: u32 = 0xffff_fff0; // wraps inside the stream
const SERVER_ISN: u32 = 5000;

/// The connection's SYN and SYN-ACK.
fn handshake() -> Vec<Event> {
    vec![
        packet(true, CLIENT_ISN, TcpFlags::SYN, &[]),
        packet(false, SERVER_ISN, TcpFlags::SYN | TcpFlags::ACK, &[]),
    ]
}

/// The sequence number of a stream offset of the client's or the server's bytes.
fn seq_at(from_client: bool, offset: u64) -> u32 {
    let isn = if from_client { CLIENT_ISN } else { SERVER_ISN };
    isn.wrapping_add(1).wrapping_add(offset as u32)
}

/// The FIN of the client's or the server's bytes, which end at `offset`.
fn fin(from_client: bool, offset: usize) -> Event {
    let seq = seq_at(from_client, offset as u64);
    packet(from_client, seq, TcpFlags::FIN | TcpFlags::ACK, &[])
}

/// A data segment of the connection, at a stream offset of its direction.
fn segment(from_client: bool, offset: u64, bytes: &[u8]) -> Event {
    packet(
        from_client,
        seq_at(from_client, offset),
        TcpFlags::ACK,
        bytes,
    )
}

/// Runs a handshake and the given segments (client?, stream offset, bytes) through a
/// scrubber; returns every event out and the report.
fn run(segments: &[(bool, u64, Vec<u8>)]) -> (Vec<Event>, ScrubReport) {
    let mut events = handshake();
    for (from_client, offset, bytes) in segments {
        events.push(segment(*from_client, *offset, bytes));
    }
    scrub_all(&events)
}

/// The data segments of one direction: (stream offset, bytes) of each.
fn segments_of(events: &[Event], from_client: bool) -> impl Iterator<Item = (usize, &[u8])> {
    events.iter().filter_map(move |ev| match ev {
        Event::Packet(p) if (p.src == client()) == from_client && !p.payload.is_empty() => {
            let offset = p.seq.wrapping_sub(seq_at(from_client, 0)) as usize;
            Some((offset, &p.payload[..]))
        }
        _ => None,
    })
}

/// The bytes of one direction, in order (first copy of each offset).
fn stream_of(events: &[Event], from_client: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (offset, payload) in segments_of(events, from_client) {
        if offset == out.len() {
            out.extend_from_slice(payload);
        }
    }
    out
}

/// The bytes of one direction put together by sequence number, whatever order they came
/// in: every copy of a byte must be the same, and there must be no hole.
fn reassembled(events: &[Event], from_client: bool) -> Vec<u8> {
    let mut out: Vec<Option<u8>> = Vec::new();
    for (offset, payload) in segments_of(events, from_client) {
        if out.len() < offset + payload.len() {
            out.resize(offset + payload.len(), None);
        }
        for (slot, &b) in out[offset..].iter_mut().zip(payload) {
            assert!(slot.is_none_or(|had| had == b), "copies differ");
            *slot = Some(b);
        }
    }
    out.into_iter().map(|b| b.expect("a hole")).collect()
}

/// (stream, path, token) of a header block.
type DecodedBlock = (u32, Option<Vec<u8>>, Option<Vec<u8>>);

/// Decodes a direction with the crate's own decoders: the header blocks, and the DATA
/// bytes per stream.
struct Decoded {
    blocks: Vec<DecodedBlock>,
    data: Vec<(u32, Vec<u8>)>,
}

impl Decoded {
    fn stream_data(&self, stream_id: u32) -> Vec<u8> {
        let frames = self.data.iter().filter(|d| d.0 == stream_id);
        frames.flat_map(|d| d.1.clone()).collect()
    }
}

fn decode(mut bytes: &[u8]) -> Decoded {
    if bytes.starts_with(CLIENT_PREFACE) {
        bytes = &bytes[CLIENT_PREFACE.len()..];
    }
    let mut hpack = HpackDecoder::new(4096);
    let mut out = Decoded {
        blocks: Vec::new(),
        data: Vec::new(),
    };
    while !bytes.is_empty() {
        let (_, frame, rest) = parse_frame_bytes(bytes, 16_384).unwrap();
        match frame {
            Frame::Headers(h) => {
                let block = hpack.decode(h.fragment).unwrap();
                assert!(!block.uncertain);
                out.blocks.push((
                    h.stream_id,
                    block.get(b":path").map(<[u8]>::to_vec),
                    block.get(b"token").map(<[u8]>::to_vec),
                ));
            }
            Frame::Data(d) => out.data.push((d.stream_id, d.data.to_vec())),
            _ => {}
        }
        bytes = rest;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where `needle` first is in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

fn assert_scrubbed(events: &[Event], huffman_token: bool) {
    assert_streams_scrubbed(
        &stream_of(events, true),
        &stream_of(events, false),
        huffman_token,
    );
}

/// The client's and the server's bytes of [`client_stream`] and [`server_stream`] hold
/// no secret, and decode with every secret overwritten in place.
fn assert_streams_scrubbed(c: &[u8], s: &[u8], huffman_token: bool) {
    assert!(!contains(c, PASSWORD) && !contains(c, TOKEN));
    assert!(!contains(s, TOKEN));
    assert!(!contains(c, &huffman_encode(TOKEN)));
    let client = decode(c);
    let paths: Vec<_> = client.blocks.iter().map(|b| b.1.clone().unwrap()).collect();
    assert_eq!(
        paths,
        [
            b"/etcdserverpb.Auth/Authenticate".to_vec(),
            b"/etcdserverpb.KV/Put".to_vec(),
            b"/etcdserverpb.KV/Range".to_vec()
        ]
    );
    let token = client.blocks[1].2.clone().unwrap();
    assert_eq!(token.len(), TOKEN.len());
    if huffman_token {
        assert!(token.iter().all(|b| b"0-:*".contains(b)), "{token:?}");
    } else {
        assert_eq!(token, vec![b'*'; TOKEN.len()]);
    }
    // The indexed reference reads the redacted entry.
    assert_eq!(client.blocks[2].2.as_ref(), Some(&token));
    let auth = client.stream_data(1);
    let ranges = secret_field_values(&auth[5..], &[2]).unwrap();
    assert_eq!(
        &auth[5..][ranges[0].clone()],
        &vec![b'*'; PASSWORD.len()][..]
    );
    assert!(contains(&auth, b"root"));
    let put = client.stream_data(3);
    assert!(contains(&put, b"foo"), "other calls untouched");
    let server = decode(s);
    let reply = &server.data[0].1;
    let ranges = secret_field_values(&reply[5..], &[2]).unwrap();
    assert_eq!(&reply[5..][ranges[0].clone()], &vec![b'*'; TOKEN.len()][..]);
}

#[test]
fn whole_streams_are_scrubbed() {
    for huffman_token in [false, true] {
        for split_data in [false, true] {
            let (events, report) = run(&[
                (true, 0, client_stream(huffman_token, split_data)),
                (false, 0, server_stream()),
            ]);
            assert_scrubbed(&events, huffman_token);
            assert_eq!(report.header_values_redacted, 1);
            assert_eq!(report.fields_redacted, 2);
            assert!(!report.incomplete(), "{report}");
        }
    }
}

#[test]
fn every_split_point_gives_the_same_bytes() {
    for huffman_token in [false, true] {
        let c = client_stream(huffman_token, true);
        let s = server_stream();
        let (whole, _) = run(&[(true, 0, c.clone()), (false, 0, s.clone())]);
        let want = (stream_of(&whole, true), stream_of(&whole, false));
        for cut in 1..c.len().max(s.len()) {
            let mut segments = Vec::new();
            for (from_client, bytes) in [(true, &c), (false, &s)] {
                let cut = cut.min(bytes.len() - 1);
                segments.push((from_client, 0, bytes[..cut].to_vec()));
                segments.push((from_client, cut as u64, bytes[cut..].to_vec()));
            }
            let (events, report) = run(&segments);
            assert_eq!(
                (stream_of(&events, true), stream_of(&events, false)),
                want,
                "cut at {cut}"
            );
            assert!(!report.incomplete(), "cut at {cut}: {report}");
            assert_eq!(events.len(), 2 + segments.len());
        }
    }
}

#[test]
fn retransmissions_get_the_same_patches() {
    let c = client_stream(false, false);
    let token_at = find(&c, TOKEN);
    let cut = token_at + 4;
    let segments = vec![
        (true, 0, c[..cut].to_vec()),
        (true, cut as u64, c[cut..].to_vec()),
        // Both halves again, and a segment straddling old and new bytes.
        (true, 0, c[..cut].to_vec()),
        (true, cut as u64 - 10, c[cut - 10..].to_vec()),
    ];
    let (events, report) = run(&segments);
    assert_eq!(events.len(), 6);
    for ev in &events {
        if let Event::Packet(p) = ev {
            assert!(!contains(&p.payload, &TOKEN[..4]), "{p:?}");
            assert!(!contains(&p.payload, &TOKEN[4..]));
            assert!(!contains(&p.payload, PASSWORD));
        }
    }
    assert!(!report.incomplete());
}

#[test]
fn events_keep_their_order() {
    let c = client_stream(true, true);
    // Byte-by-byte segments interleaved with a syscall-free unrelated packet.
    let mut scrubber = SecretScrubber::new(vec![2379]);
    let mut out = Vec::new();
    let mut input = vec![packet(true, CLIENT_ISN, TcpFlags::SYN, &[])];
    for (i, b) in c.iter().enumerate() {
        input.push(packet(
            true,
            CLIENT_ISN.wrapping_add(1).wrapping_add(i as u32),
            TcpFlags::ACK,
            &[*b],
        ));
        input.push(packet(false, SERVER_ISN, TcpFlags::ACK, &[]));
    }
    for ev in input.clone() {
        scrubber.push(ev, |e| out.push(e));
    }
    out.extend(scrubber.finish());
    assert_eq!(out.len(), input.len());
    for (a, b) in out.iter().zip(&input) {
        assert_eq!(a.ts_ns(), b.ts_ns());
        if let (Event::Packet(a), Event::Packet(b)) = (a, b) {
            assert_eq!((a.seq, a.src), (b.seq, b.src));
        }
    }
    assert!(!contains(&stream_of(&out, true), PASSWORD));
}

#[test]
fn what_cannot_be_scrubbed_is_counted() {
    // A connection already open: no SYN.
    let mut scrubber = SecretScrubber::new(vec![2379]);
    let mut out = Vec::new();
    scrubber.push(packet(true, 77, TcpFlags::ACK, b"anything"), |e| {
        out.push(e)
    });
    assert_eq!(
        out.iter().map(Event::kind).collect::<Vec<_>>(),
        [crate::capture::EventKind::Packet]
    );
    assert_eq!(scrubber.report().midstream_connections, 1);
    assert!(scrubber.report().incomplete());
    // A gap.
    let c = client_stream(false, false);
    let (_, report) = run(&[(true, 0, c[..30].to_vec()), (true, 40, c[40..].to_vec())]);
    assert_eq!(report.directions_given_up, 1);
    assert!(report.to_string().contains("NOT scrubbed"), "{report}");
    // Not HTTP/2: peer traffic.
    let (events, report) = run(&[(true, 0, b"GET /raft/stream/msgapp/1 HTTP/1.1\r\n".to_vec())]);
    assert_eq!(events.len(), 3);
    assert_eq!(report.not_http2_directions, 1);
    assert!(!report.incomplete());
}

#[test]
fn compressed_auth_messages_are_blanked() {
    let mut s = CLIENT_PREFACE.to_vec();
    s.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_block("/etcdserverpb.Auth/Authenticate", None),
    ));
    let mut message = grpc_message(PASSWORD);
    message[0] = 1;
    s.extend(frame(DATA, END_STREAM, 1, &message));
    let (events, report) = run(&[(true, 0, s)]);
    let c = stream_of(&events, true);
    assert!(!contains(&c, PASSWORD));
    assert!(contains(&c, &[1, 0, 0, 0, PASSWORD.len() as u8]));
    assert_eq!(report.compressed_messages_blanked, 1);
}

#[test]
fn unknown_names_with_token_values_are_blanked() {
    assert!(looks_like_token(TOKEN));
    assert!(looks_like_token(
        b"eyJhbGciOiJSUzI1NiJ9.eyJ1c2VyIjoicm9vdCJ9.c2ln"
    ));
    assert!(!looks_like_token(b"application/grpc"));
    assert!(!looks_like_token(b"/etcdserverpb.KV/Range"));
    // A literal whose name is dynamic entry 63, which a fresh decoder never saw.
    let mut decoder = HpackDecoder::new_midstream(4096);
    let mut block = vec![0x7f, 0x00];
    block.extend(string(TOKEN, true));
    let scrubbed = header_block::scrub_header_block(&mut decoder, &mut block);
    assert_eq!(scrubbed.suspected_values, 1);
    assert!(!contains(&block, &huffman_encode(TOKEN)));
}

#[test]
fn huffman_fillers_keep_both_lengths() {
    for text in [&b"a"[..], b"hkLIWLOuNqyHHnyz.37", b"ZZZZZZZZ", b"x", b"&&&"] {
        let coded = huffman_encode(text);
        let filler = huffman_filler(coded.len(), text.len()).unwrap();
        assert_eq!(filler.len(), coded.len());
        let mut decoded = Vec::new();
        huffman::decode(&filler, &mut decoded).unwrap();
        assert_eq!(decoded.len(), text.len(), "{text:?}");
        assert_ne!(decoded, text);
    }
    for n in 0..40 {
        let zeros = header_block::huffman_zeros(n);
        let mut decoded = Vec::new();
        huffman::decode(&zeros, &mut decoded).unwrap();
        assert_eq!((zeros.len(), decoded.len()), (n, 8 * n / 5));
    }
}

/// Random and mutated streams, cut at random points: never a panic, every event out.
#[test]
fn hostile_input_never_panics() {
    // A 64-bit LCG (Knuth's MMIX constants), high bits only.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 24
    };
    let valid = client_stream(true, true);
    for round in 0..3000 {
        let mut c = if round % 3 == 0 {
            let mut s = CLIENT_PREFACE.to_vec();
            s.extend((0..next() % 300).map(|_| next() as u8));
            s
        } else {
            valid.clone()
        };
        for _ in 0..next() % 6 {
            let i = (next() as usize) % c.len();
            c[i] = next() as u8;
        }
        let mut segments = Vec::new();
        let mut at = 0usize;
        while at < c.len() {
            let len = 1 + (next() as usize) % 64;
            let end = (at + len).min(c.len());
            segments.push((true, at as u64, c[at..end].to_vec()));
            at = end;
        }
        // Some out of order, as a network delivers them.
        for i in 1..segments.len() {
            if next() % 8 == 0 {
                segments.swap(i - 1, i);
            }
        }
        let mut s = server_stream();
        let i = (next() as usize) % s.len();
        s[i] ^= next() as u8;
        segments.push((false, 0, s));
        let (events, _) = run(&segments);
        assert_eq!(events.len(), 2 + segments.len());
    }
}

/// A block that scrubbed clean is not decoded again while the table stays as it was;
/// once an insertion makes the same bytes name `token`, they are scrubbed again.
#[test]
fn clean_blocks_are_kept_only_while_the_table_is_the_same() {
    let mut decoder = HpackDecoder::new(4096);
    let mut clean = header_block::CleanBlocks::default();
    // A literal with incremental indexing and a new name: dynamic entry 62.
    let insert = |name: &[u8]| {
        let mut block = vec![0x40];
        block.extend(string(name, false));
        block.extend(string(b"v", false));
        block
    };
    // A literal without indexing whose name is dynamic entry 62 (4-bit prefix: 15 + 47).
    let mut named_62 = vec![0x0f, 0x2f];
    named_62.extend(string(TOKEN, false));
    // A request path, as etcd clients send it: static name 4, not indexed.
    let mut path = vec![0x04];
    path.extend(string(b"/etcdserverpb.KV/Put", true));

    let scrubbed = clean.scrub(&mut decoder, &mut insert(b"x-foo"));
    assert!(scrubbed.redacted.is_empty());
    let generation = decoder.table().generation();
    for _ in 0..3 {
        let mut block = named_62.clone();
        let scrubbed = clean.scrub(&mut decoder, &mut block);
        assert_eq!(scrubbed, header_block::ScrubbedBlock::default());
        assert_eq!(block, named_62);
        let scrubbed = clean.scrub(&mut decoder, &mut path.clone());
        assert_eq!(scrubbed.path.as_deref(), Some(&b"/etcdserverpb.KV/Put"[..]));
    }
    assert_eq!(decoder.table().generation(), generation);
    assert_eq!(clean.kept(), 2);

    // Entry 62 is now `token`: the same bytes hold a secret.
    let scrubbed = clean.scrub(&mut decoder, &mut insert(b"token"));
    assert_eq!(scrubbed.secret_values, 1);
    let mut block = named_62.clone();
    let scrubbed = clean.scrub(&mut decoder, &mut block);
    assert_eq!(scrubbed.secret_values, 1);
    assert!(!contains(&block, TOKEN));
}

// ---------------------------------------------------------------- holes and reordering

/// The events, each with its own time: its place in the input, in µs from 1.
fn stamped(mut events: Vec<Event>) -> Vec<Event> {
    for (i, ev) in events.iter_mut().enumerate() {
        let ts = 1 + 1000 * i as u64;
        match ev {
            Event::Packet(p) => p.ts_ns = ts,
            Event::Loss(l) => l.ts_ns = ts,
            _ => unreachable!("the tests time packets and loss records"),
        }
    }
    events
}

fn times(events: &[Event]) -> Vec<u64> {
    events.iter().map(Event::ts_ns).collect()
}

/// A packet of a connection the scrubber does not follow, at `ts_ns`.
fn unrelated(ts_ns: u64) -> Event {
    let mut ev = packet(true, 1, TcpFlags::ACK, b"x");
    if let Event::Packet(p) = &mut ev {
        p.src = "127.0.0.1:40001".parse().unwrap();
        p.dst = "127.0.0.1:9999".parse().unwrap();
        p.ts_ns = ts_ns;
    }
    ev
}

fn loss(ts_ns: u64) -> Event {
    Event::Loss(crate::capture::Loss {
        ts_ns,
        source: crate::capture::LossSource::Kernel,
        count: 1,
    })
}

/// `bytes` cut at `cuts` (ascending): (offset, bytes) of each piece.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<(u64, Vec<u8>)> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(bytes.len());
    bounds
        .windows(2)
        .map(|w| (w[0] as u64, bytes[w[0]..w[1]].to_vec()))
        .collect()
}

/// Input scrubbed: every event out in the order it came, both directions whole and
/// scrubbed however their segments came, and nothing left unscrubbed. The report.
fn assert_reordered_scrubbed(input: &[Event], huffman_token: bool) -> ScrubReport {
    let (out, report) = scrub_all(input);
    assert_eq!(times(&out), times(input), "released in the order they came");
    assert_streams_scrubbed(
        &reassembled(&out, true),
        &reassembled(&out, false),
        huffman_token,
    );
    assert!(!report.incomplete(), "{report}");
    assert_eq!(report.directions_given_up, 0, "{report}");
    assert_eq!(report.fields_redacted, 2, "{report}");
    report
}

/// An Authenticate whose password is cut between segments that come in every order:
/// held until the hole fills, then scrubbed in stream order.
#[test]
fn reordered_segments_are_held_and_scrubbed_in_stream_order() {
    let c = client_stream(false, false);
    let s = server_stream();
    let password_at = find(&c, PASSWORD);
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for cut in password_at - 3..password_at + PASSWORD.len() + 3 {
        let client = pieces(&c, &[cut, cut + 7]);
        for order in orders {
            let mut input = handshake();
            for i in order {
                let (offset, bytes) = &client[i];
                input.push(segment(true, *offset, bytes));
            }
            input.push(segment(false, 0, &s));
            assert_reordered_scrubbed(&stamped(input), false);
        }
    }
}

/// Until the hole fills, the segments past it, and every event behind them, stay in:
/// none goes out with the password.
#[test]
fn nothing_past_a_hole_goes_out_before_it_fills() {
    let c = client_stream(true, false);
    let password_at = find(&c, PASSWORD);
    let client = pieces(&c, &[password_at + 2, password_at + 9]);
    let mut input = handshake();
    input.push(segment(true, client[0].0, &client[0].1));
    input.push(segment(true, client[2].0, &client[2].1));
    input.push(unrelated(0));
    input.push(segment(true, client[1].0, &client[1].1));
    let input = stamped(input);
    let mut scrubber = SecretScrubber::new(vec![2379]);
    let mut out = Vec::new();
    for (i, ev) in input.iter().cloned().enumerate() {
        scrubber.push(ev, |e| out.push(e));
        if (1..5).contains(&i) {
            // The handshake only: the first segment waits for the rest of its frame.
            assert_eq!(out.len(), 2);
        }
    }
    assert_eq!(
        times(&out),
        times(&input),
        "all out once the hole is filled"
    );
    assert!(!contains(&reassembled(&out, true), PASSWORD));
    assert!(!scrubber.report().incomplete());
}

/// Both directions cut at random, segments duplicated and held back: what comes out is
/// the same as in order, event for event in the order they came. (The server's bytes
/// come after the client's: it replies to requests it has read whole.)
#[test]
fn shuffled_and_duplicated_segments_are_scrubbed_as_in_order() {
    let mut rng = crate::test_rng::XorShift(0x5eed_0f5c_2bb1_e5a7);
    for round in 0..400 {
        let huffman_token = round % 2 == 0;
        let c = client_stream(huffman_token, round % 4 < 2);
        let s = server_stream();
        let mut input = handshake();
        for (from_client, bytes) in [(true, &c), (false, &s)] {
            let mut segments = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let end = (at + 1 + rng.index(120)).min(bytes.len());
                let copies = if rng.below(10) == 0 { 2 } else { 1 };
                for _ in 0..copies {
                    // Each segment moves a few places at most, as a network moves them.
                    let place = segments.len() + rng.index(6);
                    segments.push((place, segment(from_client, at as u64, &bytes[at..end])));
                }
                at = end;
            }
            segments.sort_by_key(|s| s.0);
            input.extend(segments.into_iter().map(|s| s.1));
        }
        assert_reordered_scrubbed(&stamped(input), huffman_token);
    }
}

/// Retransmissions of bytes already scrubbed and released, starting or ending inside a
/// secret, get the same patches; so do copies of bytes still held.
#[test]
fn retransmissions_partly_overlapping_patches_get_them() {
    let c = client_stream(false, false);
    let s = server_stream();
    let password_at = find(&c, PASSWORD);
    let token_at = find(&c, TOKEN);
    let mut input = handshake();
    // The first part of the password is held until the rest of its message comes: its
    // copy too.
    let held_cut = password_at + 6;
    input.push(segment(true, 0, &c[..held_cut]));
    input.push(segment(true, password_at as u64, &c[password_at..held_cut]));
    input.push(segment(true, held_cut as u64, &c[held_cut..]));
    for (at, len) in [(password_at, PASSWORD.len()), (token_at, TOKEN.len())] {
        for (from, to) in [
            (at + 3, at + len - 3),
            (at - 4, at + 5),
            (at + 5, at + len + 4),
            (at - 1, at + len + 1),
        ] {
            input.push(segment(true, from as u64, &c[from..to]));
        }
    }
    input.push(segment(false, 0, &s));
    let report = assert_reordered_scrubbed(&stamped(input), false);
    assert_eq!(report.unscrubbed_packets, 0);
}

/// A retransmission reaching back past the patches kept goes out counted.
#[test]
fn retransmissions_past_the_patches_kept_are_counted() {
    let mut c = CLIENT_PREFACE.to_vec();
    let mut token_at = Vec::new();
    for stream in 0..=super::scrubber::MAX_RECENT_PATCHES as u32 {
        let block = request_block("/etcdserverpb.KV/Range", Some(false));
        let header_len = 9;
        let at = c.len() + header_len + find(&block, TOKEN);
        token_at.push(at);
        c.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1 + 2 * stream,
            &block,
        ));
    }
    let first = token_at[0];
    let last = token_at[token_at.len() - 1];
    for (from, unscrubbed) in [(last - 2, 0), (first - 2, 1)] {
        let (out, report) = run(&[
            (true, 0, c.clone()),
            (true, from as u64, c[from..from + 10].to_vec()),
        ]);
        assert_eq!(report.unscrubbed_packets, unscrubbed, "{report}");
        if unscrubbed == 0 {
            assert!(!contains(&stream_of(&out[3..], true), &TOKEN[2..8]));
        }
    }
}

/// A hole that never fills: what waited past it goes out, counted, and the direction is
/// given up; by the end of the capture, by the hold time, by the recorder's report of
/// lost events, and by a reset. While the connection lives on, the server's direction
/// goes with the client's.
#[test]
fn a_hole_that_never_fills_gives_the_direction_up() {
    let c = client_stream(false, false);
    let s = server_stream();
    let password_at = find(&c, PASSWORD);
    // The first segment ends inside the Authenticate's message, so it waits too.
    let client = pieces(&c, &[password_at + 4, password_at + 8]);
    let late = 1 + super::scrubber::MAX_HOLD_NS + 1;
    let mut rst = segment(false, s.len() as u64, &[]);
    if let Event::Packet(p) = &mut rst {
        p.flags = TcpFlags(TcpFlags::RST);
    }
    for (then, released_by_it, given_up) in [
        (None, false, 1),
        (Some(unrelated(late)), true, 2),
        (Some(loss(1)), true, 2),
        (Some(rst), true, 1),
    ] {
        let mut input = handshake();
        input.push(segment(true, client[0].0, &client[0].1));
        input.push(segment(true, client[2].0, &client[2].1));
        input.push(segment(false, 0, &s));
        input.extend(then);
        let (mut scrubber, mut out) = pushed(&input);
        assert_eq!(out.len() == input.len(), released_by_it);
        out.extend(scrubber.finish());
        assert_eq!(times(&out), times(&input));
        let report = scrubber.report();
        assert_eq!(report.directions_given_up, given_up, "{report}");
        // Both client segments: the password's start, and the bytes past the hole.
        assert_eq!(report.unscrubbed_packets, 2, "{report}");
        assert!(
            report.to_string().contains("NOT scrubbed: 2 packets"),
            "{report}"
        );
        assert_eq!(report.fields_redacted, 1, "the server's token: {report}");
    }
}

/// A FIN that overtakes the last bytes of its direction: the connection is followed
/// until they come.
#[test]
fn a_fin_before_the_last_bytes_waits_for_them() {
    let c = client_stream(false, false);
    let s = server_stream();
    let cut = c.len() - 20;
    let mut input = handshake();
    input.push(segment(true, 0, &c[..cut]));
    input.push(fin(true, c.len()));
    input.push(segment(false, 0, &s));
    input.push(fin(false, s.len()));
    input.push(segment(true, cut as u64, &c[cut..]));
    let (out, report) = scrub_all(&stamped(input));
    assert_scrubbed(&out, false);
    assert!(!report.incomplete(), "{report}");
    assert_eq!(report.midstream_connections, 0);
}

/// The server's replies to auth calls are known from the client's requests: once the
/// client's direction is given up, the server's token would pass unseen, so the server's
/// direction is given up with it, and its bytes are counted.
#[test]
fn a_client_given_up_takes_its_server_with_it() {
    let c = client_stream(false, false);
    let s = server_stream();
    // The hole holds the Authenticate's HEADERS: the server's reply is not known as one.
    let headers_at = CLIENT_PREFACE.len() + frame(SETTINGS, 0, 0, &[]).len();
    let mut input = handshake();
    input.push(segment(true, 0, &c[..headers_at]));
    input.push(segment(true, headers_at as u64 + 20, &c[headers_at + 20..]));
    input.push(loss(1));
    input.push(segment(false, 0, &s));
    let (out, report) = scrub_all(&input);
    assert!(contains(&stream_of(&out, false), TOKEN));
    assert_eq!(report.directions_given_up, 2, "{report}");
    // The client's bytes past the hole, and the server's reply.
    assert_eq!(report.unscrubbed_packets, 2, "{report}");
}

/// Copies of a connection's bytes that come after it closed (sent again, or held up on
/// the way) get the same patches; bytes it never carried pass, counted.
#[test]
fn copies_after_the_close_get_the_patches() {
    let c = client_stream(false, false);
    let s = server_stream();
    let password_at = find(&c, PASSWORD);
    let token_at = find(&s, TOKEN);
    let mut input = handshake();
    input.push(segment(true, 0, &c));
    input.push(segment(false, 0, &s));
    input.push(fin(true, c.len()));
    input.push(fin(false, s.len()));
    input.push(segment(true, password_at as u64 - 3, &c[password_at - 3..]));
    input.push(segment(
        false,
        token_at as u64 + 2,
        &s[token_at + 2..token_at + 9],
    ));
    let input = stamped(input);
    let (out, report) = scrub_all(&input);
    assert_eq!(times(&out), times(&input));
    assert_streams_scrubbed(&reassembled(&out, true), &reassembled(&out, false), false);
    assert!(!report.incomplete(), "{report}");
    assert_eq!(report.midstream_connections, 0, "{report}");
    // Bytes past those it carried.
    let mut input = input;
    input.push(segment(true, c.len() as u64 + 1, b"more"));
    let (_, report) = scrub_all(&input);
    assert_eq!(report.unscrubbed_packets, 1, "{report}");
}

/// Holding past a hole has bounds: bytes as far as the last byte held, bytes held, and
/// events queued behind. Past one, the direction is given up (counted; the server's with
/// it), and every event goes out in the order it came.
#[test]
fn holding_past_the_bounds_gives_the_direction_up() {
    use super::scrubber::{MAX_HELD_BYTES, MAX_QUEUED_EVENTS};
    let c = client_stream(false, false);
    let head = segment(true, 0, &c[..30]);
    let far = MAX_HELD_BYTES as usize;
    let chunk = vec![b'x'; 1000];
    let copies = MAX_HELD_BYTES as usize / chunk.len() + 1;
    let cases: [(Vec<Event>, u64); 3] = [
        // The last byte held too far past the first one not final.
        (vec![segment(true, far as u64, &chunk)], 1),
        // Too many bytes held: copies of one segment past the hole.
        (
            (0..copies).map(|_| segment(true, 40, &chunk)).collect(),
            copies as u64,
        ),
        // Too many events behind the one held.
        (
            std::iter::once(segment(true, 40, &chunk))
                .chain((0..MAX_QUEUED_EVENTS).map(|_| unrelated(0)))
                .collect(),
            1,
        ),
    ];
    for (then, unscrubbed) in cases {
        let mut input = handshake();
        input.push(head.clone());
        input.extend(then);
        let input = stamped(input);
        let (scrubber, out) = pushed(&input);
        assert_eq!(
            times(&out),
            times(&input),
            "all out, in order, before the end"
        );
        let report = scrubber.report();
        assert_eq!(report.directions_given_up, 2, "{report}");
        assert_eq!(report.unscrubbed_packets, unscrubbed, "{report}");
    }
}

// ---------------------------------------------------------------- TLS plaintext

/// Which end of a TLS connection etcd is: the server on `server()` (the client's bytes
/// are what etcd read), or a client of it (the client's bytes are what etcd wrote).
#[derive(Clone, Copy, PartialEq)]
enum Etcd {
    Server,
    Client,
}

/// A chunk of the TLS connection between `client()` and `server()`, as etcd's probes
/// take it, with its endpoints or without (not known yet).
fn chunk(etcd: Etcd, from_client: bool, offset: u64, data: &[u8], known: bool) -> Event {
    let etcd_wrote = from_client == (etcd == Etcd::Client);
    let (local, remote) = match etcd {
        Etcd::Server => (server(), client()),
        Etcd::Client => (client(), server()),
    };
    Event::Tls(TlsData {
        ts_ns: 1,
        pid: 42,
        tid: 43,
        conn_id: 7,
        direction: if etcd_wrote {
            Direction::Egress
        } else {
            Direction::Ingress
        },
        endpoints: known.then_some(TlsEndpoints { local, remote }),
        offset,
        len: data.len() as u32,
        data: data.to_vec().into(),
    })
}

/// `bytes` cut into chunks of `size` from `offset`: (offset, bytes) of each.
fn cut(bytes: &[u8], size: usize, offset: u64) -> Vec<(u64, Vec<u8>)> {
    bytes
        .chunks(size)
        .enumerate()
        .map(|(i, c)| (offset + (i * size) as u64, c.to_vec()))
        .collect()
}

/// A scrubber that took `events`, and the events it let out.
fn pushed(events: &[Event]) -> (SecretScrubber, Vec<Event>) {
    let mut scrubber = SecretScrubber::new(vec![2379, 2380]);
    let mut out = Vec::new();
    for ev in events.iter().cloned() {
        scrubber.push(ev, |e| out.push(e));
    }
    (scrubber, out)
}

fn scrub_all(events: &[Event]) -> (Vec<Event>, ScrubReport) {
    let (mut scrubber, mut out) = pushed(events);
    out.extend(scrubber.finish());
    (out, scrubber.report().clone())
}

/// The plaintext of one direction of the TLS connection, in order (first copy of each
/// offset).
fn plaintext_of(events: &[Event], etcd: Etcd, from_client: bool) -> Vec<u8> {
    let etcd_wrote = from_client == (etcd == Etcd::Client);
    let mut out = Vec::new();
    for ev in events {
        if let Event::Tls(t) = ev {
            if (t.direction == Direction::Egress) == etcd_wrote && t.offset == out.len() as u64 {
                out.extend_from_slice(&t.data);
            }
        }
    }
    out
}

/// Events out are events in, in the same order, but for the bytes.
fn assert_same_events(out: &[Event], input: &[Event]) {
    assert_eq!(out.len(), input.len());
    for (a, b) in out.iter().zip(input) {
        match (a, b) {
            (Event::Tls(a), Event::Tls(b)) => {
                assert_eq!(
                    (a.direction, a.offset, a.len),
                    (b.direction, b.offset, b.len)
                );
                assert_eq!(a.data.len(), b.data.len());
            }
            (a, b) => assert_eq!(a.kind(), b.kind()),
        }
    }
}

/// Chunks of [`client_stream`] and [`server_stream`] come out of a scrubber as they went
/// in, but for the secrets; the report.
fn assert_tls_scrubbed(input: &[Event], etcd: Etcd, huffman_token: bool) -> ScrubReport {
    let (out, report) = scrub_all(input);
    assert_same_events(&out, input);
    assert_streams_scrubbed(
        &plaintext_of(&out, etcd, true),
        &plaintext_of(&out, etcd, false),
        huffman_token,
    );
    report
}

fn tls_report(report: &ScrubReport) -> TlsScrubReport {
    report.tls.expect("a scrubber reports on TLS plaintext")
}

/// The report says that TLS plaintext may have kept a secret, and `says` it; its TLS
/// counts.
fn tls_incomplete(report: &ScrubReport, says: &str) -> TlsScrubReport {
    assert!(report.incomplete(), "{report}");
    assert!(report.to_string().contains(says), "{report}");
    tls_report(report)
}

/// An Authenticate split over chunks of every size, a token header in a HEADERS frame
/// and the token in the AuthenticateResponse: all overwritten in the plaintext, whichever
/// end etcd is, and the chunks come out in the order they came.
#[test]
fn tls_plaintext_is_scrubbed_in_chunks_of_any_size() {
    for etcd in [Etcd::Server, Etcd::Client] {
        for huffman_token in [false, true] {
            let c = client_stream(huffman_token, true);
            let s = server_stream();
            for size in [1, 5, 16, 64, 1000] {
                let mut input = Vec::new();
                for (offset, bytes) in cut(&c, size, 0) {
                    input.push(chunk(etcd, true, offset, &bytes, true));
                }
                for (offset, bytes) in cut(&s, size, 0) {
                    input.push(chunk(etcd, false, offset, &bytes, true));
                }
                let report = assert_tls_scrubbed(&input, etcd, huffman_token);
                assert_eq!(report.header_values_redacted, 1, "size {size}");
                assert_eq!(report.fields_redacted, 2, "size {size}");
                assert_eq!(tls_report(&report).connections, 1);
                assert!(!report.incomplete(), "size {size}: {report}");
                assert!(report.to_string().contains("TLS"), "{report}");
            }
        }
    }
}

/// Chunks before a chunk names the endpoints wait for it (the server's SETTINGS, written
/// before etcd's first read; a client's preface, written before its handshake), then are
/// scrubbed with the rest; events of other kinds keep their place behind them.
#[test]
fn tls_chunks_before_the_endpoints_are_known_wait_for_them() {
    let c = client_stream(false, true);
    let s = server_stream();
    let settings_len = frame(SETTINGS, 0, 0, &[]).len();
    let loss = Event::Loss(crate::capture::Loss {
        ts_ns: 1,
        source: crate::capture::LossSource::Kernel,
        count: 1,
    });
    for etcd in [Etcd::Server, Etcd::Client] {
        let mut input = vec![
            chunk(etcd, false, 0, &s[..settings_len], false),
            loss.clone(),
            chunk(etcd, true, 0, &c[..40], etcd == Etcd::Server),
        ];
        if etcd == Etcd::Client {
            // Not known yet on its second chunk either.
            input.push(chunk(etcd, true, 40, &c[40..100], false));
            input.push(chunk(etcd, true, 100, &c[100..], true));
        } else {
            input.push(chunk(etcd, true, 40, &c[40..], true));
        }
        input.push(chunk(
            etcd,
            false,
            settings_len as u64,
            &s[settings_len..],
            true,
        ));
        let report = assert_tls_scrubbed(&input, etcd, false);
        assert_eq!(report.fields_redacted, 2);
        assert!(!report.incomplete(), "{report}");

        // Released as soon as they are decided: nothing is left for `finish`.
        let mut scrubber = SecretScrubber::new(vec![2379]);
        let mut released = 0;
        for ev in input.iter().cloned() {
            scrubber.push(ev, |_| released += 1);
        }
        assert_eq!(released, input.len());
    }
}

/// A connection whose chunks never name its endpoints is given up once its chunks were
/// held too long (or when the capture ends): they pass as they are, counted.
#[test]
fn tls_endpoints_never_known_give_the_connection_up() {
    let c = client_stream(false, false);
    let late = Event::Loss(crate::capture::Loss {
        ts_ns: 1 + scrubber::MAX_HOLD_NS + 1,
        source: crate::capture::LossSource::Kernel,
        count: 1,
    });
    for input in [
        vec![chunk(Etcd::Client, true, 0, &c, false), late],
        vec![chunk(Etcd::Client, true, 0, &c, false)],
    ] {
        let (mut scrubber, mut out) = pushed(&input);
        let before_finish = out.len();
        out.extend(scrubber.finish());
        let report = scrubber.report();
        assert_eq!(out, input, "passed as they are");
        if input.len() == 2 {
            assert_eq!(before_finish, 2, "released by the hold bound");
        }
        let tls = tls_incomplete(report, "1 TLS plaintext chunks");
        assert_eq!((tls.connections_given_up, tls.unscrubbed_chunks), (1, 1));
    }
}

/// A connection open before recording: the client's plaintext at offset 0 (the first
/// byte the probes saw) is not a connection's start. Its chunks, the server's held
/// until then, pass as they are, counted.
#[test]
fn tls_connection_open_before_recording_passes_counted() {
    let c = client_stream(false, false);
    let s = server_stream();
    // From the Authenticate's HEADERS on: the password is in there.
    let from = CLIENT_PREFACE.len() + frame(SETTINGS, 0, 0, &[]).len();
    let midstream = &c[from..];
    assert!(contains(midstream, PASSWORD));
    let input = vec![
        chunk(Etcd::Server, false, 0, &s[9..], true),
        chunk(Etcd::Server, true, 0, &midstream[..20], true),
        chunk(Etcd::Server, true, 20, &midstream[20..], true),
    ];
    let (out, report) = scrub_all(&input);
    assert_eq!(out, input);
    let tls = tls_incomplete(&report, "1 TLS connections open before");
    assert_eq!((tls.midstream_connections, tls.connections), (1, 0));
    assert_eq!(tls.unscrubbed_chunks, 3);
}

/// Peer traffic over TLS is HTTP/1.1: seen from its start, not HTTP/2, not a gap in
/// redaction (as for cleartext).
#[test]
fn tls_peer_traffic_is_not_http2() {
    let input = vec![
        chunk(
            Etcd::Server,
            true,
            0,
            b"GET /raft/stream/msgapp/1 HTTP/1.1\r\n\r\n",
            true,
        ),
        chunk(Etcd::Server, false, 0, b"HTTP/1.1 200 OK\r\n\r\n", true),
    ];
    let (out, report) = scrub_all(&input);
    assert_eq!(out, input);
    assert_eq!(report.not_http2_directions, 2);
    assert_eq!(tls_report(&report).connections, 1);
    assert!(!report.incomplete(), "{report}");
}

/// Lost or unreadable plaintext, and a server whose first bytes were missed although the
/// client's preface was seen, give the direction up, counted (the client's takes the
/// server's with it).
#[test]
fn tls_directions_with_missing_bytes_are_given_up() {
    let c = client_stream(false, false);
    let s = server_stream();
    let mut unreadable = chunk(Etcd::Server, true, 30, &c[30..], true);
    if let Event::Tls(t) = &mut unreadable {
        t.data = t.data.slice(..10);
    }
    for (input, given_up) in [
        // A gap in the client's bytes.
        (
            vec![
                chunk(Etcd::Server, true, 0, &c[..30], true),
                chunk(Etcd::Server, true, 40, &c[40..], true),
            ],
            2,
        ),
        // Bytes the probes could not read.
        (
            vec![chunk(Etcd::Server, true, 0, &c[..30], true), unreadable],
            2,
        ),
        // The server's SETTINGS before the probes: its first bytes are a later frame.
        (
            vec![
                chunk(Etcd::Server, true, 0, &c, true),
                chunk(Etcd::Server, false, 0, &s[9..], true),
            ],
            1,
        ),
    ] {
        let (out, report) = scrub_all(&input);
        assert_eq!(out.len(), input.len());
        let tls = tls_report(&report);
        assert_eq!(tls.directions_given_up, given_up, "{report}");
        assert_eq!(report.not_http2_directions, 0);
    }
}

/// A TLS connection and a cleartext one of the same ends at once: each followed in its
/// own right.
#[test]
fn tls_and_tcp_connections_are_followed_apart() {
    let c = client_stream(true, true);
    let s = server_stream();
    let mut input = vec![
        packet(true, CLIENT_ISN, TcpFlags::SYN, &[]),
        packet(false, SERVER_ISN, TcpFlags::SYN | TcpFlags::ACK, &[]),
    ];
    for (offset, bytes) in cut(&c, 50, 0) {
        input.push(chunk(Etcd::Server, true, offset, &bytes, true));
        let seq = CLIENT_ISN.wrapping_add(1).wrapping_add(offset as u32);
        input.push(packet(true, seq, TcpFlags::ACK, &bytes));
    }
    for (offset, bytes) in cut(&s, 50, 0) {
        input.push(chunk(Etcd::Server, false, offset, &bytes, true));
        let seq = SERVER_ISN.wrapping_add(1).wrapping_add(offset as u32);
        input.push(packet(false, seq, TcpFlags::ACK, &bytes));
    }
    let (out, report) = scrub_all(&input);
    assert_same_events(&out, &input);
    assert_scrubbed(&out, true);
    assert_streams_scrubbed(
        &plaintext_of(&out, Etcd::Server, true),
        &plaintext_of(&out, Etcd::Server, false),
        true,
    );
    assert_eq!(report.fields_redacted, 4);
    assert!(!report.incomplete(), "{report}");
}

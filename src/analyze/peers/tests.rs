//! Peer records from hand-built packets and TLS chunks: the same message stream over
//! cleartext and TLS, connections of other ports left out, HTTP/2 on the peer port.

use super::*;
use crate::analyze::test_wire::{TlsWire, Wire};
use crate::capture::TcpFlags;
use crate::decode::rafthttp::tests::{chunked, message_stream_body, stream_request, STREAM_OK};
use crate::decode::raftpb::Message;

fn peer_client() -> SocketAddr {
    "127.0.0.1:51000".parse().unwrap()
}

fn peer_server() -> SocketAddr {
    "127.0.0.1:22380".parse().unwrap()
}

fn decode(events: &[Event]) -> Vec<PeerRecord> {
    let mut d = PeerDecoder::for_recorded_ports(&[2379, 2380, 22379, 22380]);
    let mut out = Vec::new();
    for e in events {
        d.push(e, &mut out);
    }
    d.finish(&mut out);
    out
}

fn messages(records: &[PeerRecord]) -> Vec<Message> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            PeerEvent::Message { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// A message stream's request, its 200, and the body in chunks of 50 bytes.
fn message_stream() -> (Vec<u8>, Vec<u8>, Vec<Message>) {
    let (body, sent) = message_stream_body();
    let mut server = STREAM_OK.to_vec();
    server.extend(chunked(&body, 50));
    (stream_request("message"), server, sent)
}

#[test]
fn a_cleartext_stream_and_other_ports_left_out() {
    let (request, response, sent) = message_stream();
    let mut w = Wire::between(peer_client(), peer_server(), true);
    w.send(true, &request);
    w.send(false, &response);
    w.raw(true, TcpFlags::FIN | TcpFlags::ACK, &[], 1);
    w.raw(false, TcpFlags::FIN | TcpFlags::ACK, &[], 1);
    // A client-port connection is not a peer connection.
    let mut other = Wire::new(true);
    other.send(true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let mut events = w.packets.clone();
    events.extend(other.packets);
    events.sort_by_key(Event::ts_ns);
    let records = decode(&events);
    assert!(records
        .iter()
        .all(|r| r.client == peer_client() && r.server == peer_server()));
    assert!(records.iter().all(|r| !r.tls && !r.midstream));
    assert_eq!(messages(&records), sent);
    assert!(matches!(
        &records[0].event,
        PeerEvent::Request { request, .. } if request.kind == RequestKind::StreamMessage
    ));
    assert!(matches!(
        records.last().map(|r| &r.event),
        Some(PeerEvent::Closed { .. })
    ));
    let message = records
        .iter()
        .find(|r| matches!(r.event, PeerEvent::Message { .. }))
        .unwrap();
    assert_eq!(message.sender(), Some(peer_server()));
    assert!(
        message
            .to_string()
            .contains("s->c MsgHeartbeat 91bc3c398fb3c146->8211f1d0f64f3269"),
        "{message}"
    );
}

#[test]
fn a_tls_stream_is_decoded_from_its_plaintext() {
    let (request, response, sent) = message_stream();
    let mut w = Wire::between(peer_client(), peer_server(), true);
    // Ciphertext: the handshake records, then application data.
    w.send(true, &[0x16, 3, 1, 0, 4, 1, 0, 0, 0]);
    w.send(false, &[0x16, 3, 3, 0, 4, 2, 0, 0, 0]);
    let mut tls = TlsWire::new(peer_client(), peer_server());
    let (a, b) = response.split_at(response.len() / 2);
    let chunks = [
        tls.chunk(w.ts + 1, true, &request),
        tls.chunk(w.ts + 2, false, a),
        tls.chunk(w.ts + 3, false, b),
    ];
    w.send(true, &[0x17, 3, 3, 0, 2, 0xaa, 0xbb]);
    w.send(false, &[0x17, 3, 3, 0, 2, 0xcc, 0xdd]);
    let mut events = w.packets;
    events.extend(chunks);
    events.sort_by_key(Event::ts_ns);
    let records = decode(&events);
    assert_eq!(messages(&records), sent);
    assert!(
        records.iter().all(|r| r.tls && !r.midstream),
        "{records:#?}"
    );
    assert!(
        records
            .iter()
            .all(|r| !matches!(r.event, PeerEvent::Note { .. })),
        "{records:#?}"
    );
}

#[test]
fn http2_on_the_peer_port_is_one_note() {
    let mut w = Wire::between(peer_client(), peer_server(), true);
    w.send(
        true,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    );
    w.send(false, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    let records = decode(&w.packets);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert!(matches!(
        records[0].event,
        PeerEvent::Note {
            kind: NoteKind::Http2,
            ..
        }
    ));
}

#[test]
fn peer_ports_from_the_recorded_ports() {
    assert_eq!(
        peer_ports_of(&[2379, 2380, 22379, 22380, 32379, 32380]),
        [2380, 22380, 32380]
    );
    assert_eq!(peer_ports_of(&[2380]), [2380]);
    assert_eq!(peer_ports_of(&[12380]), [12380]);
    assert_eq!(peer_ports_of(&[2379, 12380]), [12380]);
    assert_eq!(peer_ports_of(&[2379]), [2380]);
}

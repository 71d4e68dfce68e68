use std::net::SocketAddr;

use super::*;
use crate::analyze::test_wire::{TlsWire, Wire};
use crate::capture::TcpFlags;
use crate::test_rng::XorShift;

/// A decoder that writes down every call, with its connection.
#[derive(Debug)]
struct Log {
    key: ConnectionKey,
    tls: bool,
    calls: u32,
}

impl StreamDecoder for Log {
    type Record = String;

    fn new(key: ConnectionKey, handshake_seen: bool) -> Log {
        let _ = handshake_seen;
        Log {
            key,
            tls: false,
            calls: 0,
        }
    }

    fn set_tls(&mut self) {
        self.tls = true;
    }

    fn is_tls(&self) -> bool {
        self.tls
    }

    fn push_data(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<String>,
    ) {
        self.calls += 1;
        // Every other call makes two records, some none: the merge keeps them together.
        for n in 0..(self.calls % 3) {
            out.push(format!(
                "{:?} tls={} {dir:?} @{offset} {}B t={ts_ns} #{n}",
                self.key,
                self.tls,
                bytes.len()
            ));
        }
    }

    fn push_gap(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<String>,
    ) {
        out.push(format!(
            "{:?} gap {dir:?} @{offset}+{len} t={ts_ns}",
            self.key
        ));
    }

    fn finish(&mut self, end: StreamEnd, out: &mut Vec<String>) {
        out.push(format!(
            "{:?} end {end:?} after {} calls",
            self.key, self.calls
        ));
    }
}

/// Many connections at once, in the ways the demux meets them: from their handshake or
/// not, closed or left open, lost segments, a 4-tuple used again, TLS with its plaintext.
fn traffic(seed: u64) -> Vec<Event> {
    let mut rng = XorShift(seed);
    let server: SocketAddr = "10.0.0.1:2379".parse().expect("address");
    let mut events = Vec::new();
    for c in 0..60u16 {
        // Some 4-tuples come back.
        let port = 40_000 + c % 45;
        let client: SocketAddr = format!("10.0.0.2:{port}").parse().expect("address");
        let mut w = Wire::between(client, server, rng.below(4) != 0);
        w.ts = 1_000_000 + rng.below(400) * 1_000_000;
        let start = w.packets.len();
        let tls = rng.below(5) == 0;
        let mut plain = TlsWire::new(client, server);
        plain.conn_id = u64::from(c);
        if tls {
            w.send(true, &[0x16, 3, 1, 0, 2, 1, 0]);
        }
        for _ in 0..rng.below(30) {
            let c2s = rng.below(2) == 0;
            let n = 1 + rng.index(300);
            w.send(c2s, &rng.bytes(n));
            if tls {
                events.push(plain.chunk(w.ts + 1, c2s, &rng.bytes(n)));
            }
        }
        if rng.below(3) != 0 {
            w.raw(true, TcpFlags::FIN | TcpFlags::ACK, &[], 1);
            w.raw(false, TcpFlags::FIN | TcpFlags::ACK, &[], 1);
        }
        let mut packets: Vec<Event> = w.packets.drain(start..).collect();
        // Lost segments.
        if rng.below(4) == 0 && packets.len() > 4 {
            let at = 2 + rng.index(packets.len() - 3);
            packets.remove(at);
        }
        events.extend(packets);
    }
    events.sort_by_key(Event::ts_ns);
    // Only roughly in order, as a capture's CPUs interleave.
    for i in 1..events.len() {
        if rng.below(8) == 0 {
            events.swap(i - 1, i);
        }
    }
    events
}

fn run(events: &[Event], threads: usize) -> Vec<String> {
    let config = DemuxConfig {
        server_ports: vec![2379],
        only: None,
        skip_midstream: Vec::new(),
    };
    // A followed capture's quiet spells now and then, at the last event's time.
    let items = events.iter().enumerate().flat_map(|(i, e)| {
        let quiet = (i % 97 == 96).then(|| FollowItem::Quiet { now_ns: e.ts_ns() });
        std::iter::once(FollowItem::Read(ReadItem::Event(e.clone()))).chain(quiet)
    });
    let mut steps = Vec::new();
    let mut step = |s: Step<String>| -> Result<(), ()> {
        steps.push(match s {
            Step::Record(r) => r,
            Step::Event { ts_ns, event } => format!("event t={ts_ns} {}", event.is_some()),
            Step::Quiet { now_ns } => format!("quiet t={now_ns}"),
            Step::Damaged(d) => format!("damaged {d}"),
        });
        Ok(())
    };
    let stats = decode::<Log, String, _, ()>(items, &config, threads, || |r| r, &mut step)
        .expect("no step fails");
    steps.push(format!("{stats:?}"));
    steps
}

#[test]
fn records_come_out_as_one_thread_makes_them() {
    for seed in 1..=20 {
        let events = traffic(seed);
        let one = run(&events, 1);
        assert!(
            one.len() > events.len(),
            "seed {seed}: the test makes records"
        );
        for threads in [2, 3, 5] {
            assert_eq!(run(&events, threads), one, "seed {seed}, {threads} threads");
        }
    }
}

#[test]
fn a_failing_step_stops_the_workers() {
    let events = traffic(7);
    let config = DemuxConfig::default();
    let items = events
        .iter()
        .cloned()
        .map(|e| FollowItem::Read(ReadItem::Event(e)));
    let mut seen = 0;
    let mut step = |s: Step<String>| -> Result<(), &'static str> {
        if let Step::Record(_) = s {
            seen += 1;
            if seen == 10 {
                return Err("enough");
            }
        }
        Ok(())
    };
    let result = decode::<Log, String, _, _>(items, &config, 3, || |r| r, &mut step);
    assert_eq!(result.err(), Some("enough"));
}

//! Prints the peer traffic of a capture, one record a line: the raft messages between
//! etcd members, the stream and pipeline requests, and what could not be decoded.
//!
//!     cargo run --example peers -- capture.etr [PEER_PORT...]
//!
//! Without ports, the peer ports are guessed from the ports the capture recorded.

use std::process::ExitCode;

use etcd_trace::analyze::peers::{peer_ports_of, PeerDecoder, PeerRecord};
use etcd_trace::capture::{CaptureReader, ReadItem};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: peers CAPTURE [PEER_PORT...]");
        return ExitCode::from(2);
    };
    let ports: Result<Vec<u16>, _> = args.map(|p| p.parse::<u16>()).collect();
    let Ok(ports) = ports else {
        eprintln!("a peer port is a number from 1 to 65535");
        return ExitCode::from(2);
    };
    let reader = match CaptureReader::open(&path) {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let recorded = reader.header().config.ports.clone();
    let peer_ports = if ports.is_empty() {
        peer_ports_of(&recorded)
    } else {
        ports
    };
    println!("# peer ports {peer_ports:?}");
    let start = reader.index().time_range().map_or(0, |(first, _)| first);
    let mut decoder = PeerDecoder::new(recorded, peer_ports);
    let mut records = Vec::new();
    let print = |records: &mut Vec<PeerRecord>| {
        for r in records.drain(..) {
            let ms = r.ts_ns().saturating_sub(start) as f64 / 1e6;
            println!("{ms:12.3} ms  {r}");
        }
    };
    for item in reader.events().without_syscall_contents() {
        match item {
            ReadItem::Event(e) => decoder.push_owned(e, &mut records),
            ReadItem::Damaged(d) => eprintln!("damaged: {d:?}"),
        }
        print(&mut records);
    }
    decoder.finish(&mut records);
    print(&mut records);
    ExitCode::SUCCESS
}

//! End-to-end tests of the capture format: events through the writer into a file and
//! back through the reader, and what the reader makes of cut, damaged and foreign files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::block::FRAME_HEADER_LEN;
use super::index::TRAILER_LEN;
use super::*;

use crate::test_rng::XorShift as Rng;

fn sample_header() -> Header {
    Header {
        recorder_version: "0.1.0-test".into(),
        hostname: "etcd-0".into(),
        kernel_release: "6.8.0-test".into(),
        clock_offset_ns: 1_700_000_000_000_000_000,
        started_wall_ns: 1_700_000_001_000_000_000,
        config: RecordConfig {
            ports: vec![2379, 2380],
            interfaces: vec!["lo".into()],
            pids: vec![4242],
            snaplen: 2048,
            file_data_limit: 96,
            data_dir: Some("/var/lib/etcd".into()),
            socket_payload: true,
            buffer: "ringbuf".into(),
            redact_secrets: true,
        },
        processes: vec![ProcessInfo {
            pid: 4242,
            cmdline: vec!["etcd".into(), "--data-dir".into(), "/var/lib/etcd".into()],
            data_dir: Some("/var/lib/etcd".into()),
        }],
        interfaces: vec![InterfaceInfo {
            ifindex: 1,
            name: "lo".into(),
        }],
        hosts: Vec::new(),
        mode: CaptureMode::Ebpf,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Events of every kind with payloads of varied sizes (0 to ~2 KiB), in roughly
/// increasing time order as the recorder sees them.
fn varied_events(rng: &mut Rng, n: usize) -> Vec<Event> {
    let mut ts = 1_000_000_000u64;
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        ts += 1 + rng.below(20_000);
        let jittered = ts.saturating_sub(rng.below(5_000));
        let event = match rng.below(12) {
            0..=4 => {
                let len = [0, 1, 9, 100, 700, 2048][rng.below(6) as usize];
                Event::Packet(Packet {
                    ts_ns: jittered,
                    ifindex: 1,
                    direction: if i % 2 == 0 {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    },
                    src: addr(40000 + rng.below(10) as u16),
                    dst: addr(2379),
                    seq: rng.next() as u32,
                    ack: rng.next() as u32,
                    flags: TcpFlags(rng.below(32) as u8),
                    window: rng.next() as u16,
                    payload_len: len as u32 + rng.below(3) as u32,
                    payload: rng.bytes(len).into(),
                })
            }
            5..=8 => {
                let call = [
                    SyscallKind::Write,
                    SyscallKind::Pwrite64,
                    SyscallKind::Writev,
                    SyscallKind::Read,
                    SyscallKind::Pread64,
                    SyscallKind::Fsync,
                    SyscallKind::Fdatasync,
                ][rng.below(7) as usize];
                let file = if rng.below(3) == 0 {
                    FileRef {
                        kind: FileKind::Socket,
                        path: String::new(),
                        local_port: 2379,
                        peer_port: 40000,
                    }
                } else {
                    FileRef {
                        kind: FileKind::Wal,
                        path: "member/wal/0000000000000000-0000000000000000.wal".into(),
                        local_port: 0,
                        peer_port: 0,
                    }
                };
                let data_len = if call.is_sync() {
                    0
                } else {
                    rng.below(97) as usize
                };
                Event::Syscall(Syscall {
                    enter_ns: jittered,
                    exit_ns: jittered + rng.below(1_000_000),
                    pid: 4242,
                    tid: 4242 + rng.below(8) as u32,
                    call,
                    fd: rng.below(64) as i32,
                    file,
                    offset: if rng.below(2) == 0 {
                        Some(rng.next() >> 20)
                    } else {
                        None
                    },
                    requested: rng.below(1 << 20),
                    ret: rng.below(1 << 20) as i64 - 100,
                    data: rng.bytes(data_len).into(),
                })
            }
            9..=10 => {
                let len = [0, 1, 100, 2048, 16384][rng.below(5) as usize];
                let conn_id = 1 + rng.below(6);
                let endpoints = match conn_id % 3 {
                    0 => None,
                    1 => Some(TlsEndpoints {
                        local: addr(2379),
                        remote: addr(40000 + conn_id as u16),
                    }),
                    _ => Some(TlsEndpoints {
                        local: "[::1]:2379".parse().unwrap(),
                        remote: SocketAddr::new("2001:db8::9".parse().unwrap(), 40100),
                    }),
                };
                // Most chunks were read whole; some only partly.
                let captured = if rng.below(4) == 0 {
                    rng.below(len as u64 + 1) as usize
                } else {
                    len
                };
                Event::Tls(TlsData {
                    ts_ns: jittered,
                    pid: 4242,
                    tid: 4242 + rng.below(8) as u32,
                    conn_id,
                    direction: if rng.below(2) == 0 {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    },
                    endpoints,
                    offset: rng.below(1 << 30),
                    len: len as u32,
                    data: rng.bytes(captured).into(),
                })
            }
            // Now and then an etcd process that starts or ends.
            _ if rng.below(4) == 0 => Event::Process(ProcessEvent {
                ts_ns: jittered,
                pid: 4242 + rng.below(3) as u32,
                change: if rng.below(2) == 0 {
                    ProcessChange::Start {
                        data_dir: (rng.below(3) > 0).then(|| "/var/lib/etcd".to_string()),
                        cmdline: (0..rng.below(6)).map(|i| format!("--arg{i}")).collect(),
                    }
                } else {
                    ProcessChange::exit_of_status(rng.below(1 << 16) as i32)
                },
            }),
            // Now and then what API mode sees.
            _ if rng.below(3) == 0 => {
                let mut all = api::every_observation(jittered);
                let mut event = all.swap_remove(rng.below(all.len() as u64) as usize);
                event.ts_ns = jittered;
                Event::Api(event)
            }
            _ => Event::Loss(Loss {
                ts_ns: jittered,
                source: if rng.below(2) == 0 {
                    LossSource::Kernel
                } else {
                    LossSource::PerfBuffer
                },
                count: rng.below(1000),
            }),
        };
        events.push(event);
    }
    events
}

fn small_blocks(events_per_block: u32) -> WriterOptions {
    WriterOptions {
        max_block_events: events_per_block,
        ..WriterOptions::default()
    }
}

fn write_capture(path: &Path, events: &[Event], options: WriterOptions) -> WriteSummary {
    let mut writer = CaptureWriter::create_with(path, &sample_header(), options).unwrap();
    for event in events {
        writer.push(event).unwrap();
    }
    writer.finish().unwrap()
}

/// All events and all damage items of a stream, in order.
fn drain(items: impl Iterator<Item = ReadItem>) -> (Vec<Event>, Vec<Damage>) {
    let mut events = Vec::new();
    let mut damage = Vec::new();
    for item in items {
        match item {
            ReadItem::Event(e) => events.push(e),
            ReadItem::Damaged(d) => damage.push(d),
        }
    }
    (events, damage)
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn tally(events: &[Event]) -> KindCounts {
    let mut counts = KindCounts::default();
    for e in events {
        counts[e.kind().slot()] += 1;
    }
    counts
}

/// A written capture and what it holds, for the damage tests.
struct Fixture {
    dir: tempfile::TempDir,
    events: Vec<Event>,
    bytes: Vec<u8>,
    blocks: Vec<BlockInfo>,
    index_offset: u64,
}

impl Fixture {
    fn new(seed: u64, n: usize, per_block: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let events = varied_events(&mut Rng(seed), n);
        let path = dir.path().join("good.etrace");
        write_capture(&path, &events, small_blocks(per_block));
        let bytes = std::fs::read(&path).unwrap();
        let reader = CaptureReader::open(&path).unwrap();
        let blocks = reader.blocks().to_vec();
        let trailer = &bytes[bytes.len() - TRAILER_LEN..];
        let index_offset = u64::from_le_bytes(trailer[..8].try_into().unwrap());
        Fixture {
            dir,
            events,
            bytes,
            blocks,
            index_offset,
        }
    }

    /// The events of the blocks that satisfy `keep`, in file order.
    fn events_of_blocks(&self, keep: impl Fn(usize, &BlockInfo) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        let mut at = 0usize;
        for (i, b) in self.blocks.iter().enumerate() {
            let n = b.event_count as usize;
            if keep(i, b) {
                out.extend_from_slice(&self.events[at..at + n]);
            }
            at += n;
        }
        out
    }

    fn open_variant(&self, name: &str, bytes: &[u8]) -> Result<CaptureReader, CaptureError> {
        CaptureReader::open(write_bytes(self.dir.path(), name, bytes))
    }
}

#[test]
fn round_trip_of_all_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.etrace");
    let events = varied_events(&mut Rng(0x5eed), 3000);
    let summary = write_capture(&path, &events, small_blocks(256));

    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.index_state(), &IndexState::Present);
    assert_eq!(reader.format_version(), FORMAT_VERSION);
    assert_eq!(reader.header(), &sample_header());
    assert!(reader.damage().is_empty());
    assert_eq!(reader.blocks().len(), 12);
    assert_eq!(summary.blocks_written, 12);
    assert_eq!(summary.events_written, 3000);
    assert_eq!(
        summary.bytes_written,
        std::fs::metadata(&path).unwrap().len()
    );
    assert_eq!(summary.counts, tally(&events));
    assert_eq!(reader.index().counts(), tally(&events));
    assert_eq!(reader.index().total_events(), 3000);
    assert!(tally(&events).iter().all(|&c| c > 0));

    let (read, damage) = drain(reader.events());
    assert!(damage.is_empty());
    assert_eq!(read, events);

    // The index agrees with the blocks' contents.
    let mut at = 0;
    for b in reader.blocks() {
        let chunk = &events[at..at + b.event_count as usize];
        assert_eq!(b.counts, tally(chunk));
        assert_eq!(b.first_ts, chunk.iter().map(Event::ts_ns).min().unwrap());
        assert_eq!(b.last_ts, chunk.iter().map(Event::ts_ns).max().unwrap());
        at += b.event_count as usize;
    }

    // Without the index, the scan finds the same blocks.
    let bytes = std::fs::read(&path).unwrap();
    let cut = write_bytes(dir.path(), "noindex", &bytes[..bytes.len() - TRAILER_LEN]);
    let recovered = CaptureReader::open(&cut).unwrap();
    assert!(matches!(
        recovered.index_state(),
        IndexState::Recovered { .. }
    ));
    assert_eq!(recovered.blocks(), reader.blocks());
    assert!(recovered.damage().is_empty());
    assert_eq!(drain(recovered.events()).0, events);
}

#[test]
fn writer_accounting_and_auto_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acc.etrace");
    let events = varied_events(&mut Rng(7), 25);
    let mut writer = CaptureWriter::create_with(&path, &sample_header(), small_blocks(10)).unwrap();
    let start = writer.bytes_written();
    assert!(start > 0);
    for e in &events[..9] {
        writer.push(e).unwrap();
    }
    assert_eq!(writer.events_written(), 0);
    assert_eq!(writer.buffered_events(), 9);
    writer.push(&events[9]).unwrap();
    assert_eq!(writer.events_written(), 10);
    assert_eq!(writer.buffered_events(), 0);
    assert_eq!(writer.counts(), tally(&events[..10]));
    // A flushed block is in the file already, without finish.
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        writer.bytes_written()
    );
    writer.flush_block().unwrap(); // nothing buffered: no empty block
    assert_eq!(writer.blocks_written(), 1);
    for e in &events[10..] {
        writer.push(e).unwrap();
    }
    writer.flush_block().unwrap();
    assert_eq!(writer.blocks_written(), 3);
    let summary = writer.finish().unwrap();
    assert_eq!(summary.events_written, 25);
    assert_eq!(
        drain(CaptureReader::open(&path).unwrap().events()).0,
        events
    );

    // Block size bound by bytes.
    let path = dir.path().join("bytes.etrace");
    let options = WriterOptions {
        max_block_events: 1_000_000,
        max_block_bytes: 4096,
        ..WriterOptions::default()
    };
    let events = varied_events(&mut Rng(8), 400);
    let summary = write_capture(&path, &events, options);
    assert!(summary.blocks_written > 5, "{summary:?}");
    assert_eq!(
        drain(CaptureReader::open(&path).unwrap().events()).0,
        events
    );

    // An empty capture is valid.
    let path = dir.path().join("empty.etrace");
    let summary = write_capture(&path, &[], WriterOptions::default());
    assert_eq!(summary.events_written, 0);
    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.index_state(), &IndexState::Present);
    assert_eq!(reader.events().count(), 0);
}

/// An index closes a file at any point (as after a write that failed for good), with the
/// blocks written so far; blocks written after it go over it, and the next index ends
/// the file.
#[test]
fn an_early_index_is_replaced_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("early.etrace");
    let events = varied_events(&mut Rng(9), 30);
    let mut writer = CaptureWriter::create_with(&path, &sample_header(), small_blocks(10)).unwrap();
    for e in &events[..15] {
        writer.push(e).unwrap();
    }
    let early = writer.write_index().unwrap();
    assert_eq!((early.events_written, early.blocks_written), (10, 1));
    assert_eq!(writer.unwritten_events(), 5);
    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(*reader.index_state(), IndexState::Present);
    assert_eq!(drain(reader.events()).0, events[..10]);

    for e in &events[15..] {
        writer.push(e).unwrap();
    }
    let summary = writer.finish().unwrap();
    assert_eq!(summary.events_written, 30);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        summary.bytes_written
    );
    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(*reader.index_state(), IndexState::Present);
    assert_eq!(drain(reader.events()).0, events);
}

#[test]
fn events_between_uses_the_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("range.etrace");
    let events = varied_events(&mut Rng(99), 2000);
    write_capture(&path, &events, small_blocks(100));
    let reader = CaptureReader::open(&path).unwrap();
    let (lo, hi) = reader.index().time_range().unwrap();
    let span = hi - lo;
    let ranges = [
        (None, None),
        (Some(lo + span / 3), Some(lo + span / 2)),
        (Some(lo + span / 2), None),
        (None, Some(lo + span / 4)),
        (Some(hi + 1), None),
        (None, Some(lo)),
        (Some(lo), Some(hi + 1)),
    ];
    for (since, until) in ranges {
        let expected: Vec<Event> = events
            .iter()
            .filter(|e| since.is_none_or(|s| e.ts_ns() >= s) && until.is_none_or(|u| e.ts_ns() < u))
            .cloned()
            .collect();
        let (got, damage) = drain(reader.events_between(since, until));
        assert!(damage.is_empty());
        assert_eq!(got, expected, "range {since:?}..{until:?}");
    }
    // A narrow window touches few blocks.
    let mid = lo + span / 2;
    let touched = reader
        .index()
        .blocks_overlapping(Some(mid), Some(mid + 1_000))
        .count();
    assert!(touched <= 3, "{touched} blocks for a 1 µs window");
}

#[test]
fn a_cut_file_is_recovered() {
    let fx = Fixture::new(0xC0FFEE, 1500, 150);
    let file_len = fx.bytes.len() as u64;
    let mut cuts: Vec<u64> = Vec::new();
    for b in &fx.blocks {
        cuts.push(b.offset); // boundary: the block is not there at all
        cuts.push(b.offset + 1);
        cuts.push(b.offset + FRAME_HEADER_LEN as u64 / 2); // inside the frame header
        cuts.push(b.offset + FRAME_HEADER_LEN as u64); // header complete, no payload
        cuts.push(b.offset + b.len / 2); // inside the payload
        cuts.push(b.end() - 1);
    }
    // Every cut inside the index and the trailer.
    cuts.extend(fx.index_offset..file_len);

    for cut in cuts {
        let reader = fx
            .open_variant("cut", &fx.bytes[..cut as usize])
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert!(
            matches!(reader.index_state(), IndexState::Recovered { .. }),
            "cut at {cut}"
        );
        let complete = fx.events_of_blocks(|_, b| b.end() <= cut);
        let (events, streamed_damage) = drain(reader.events());
        assert_eq!(events, complete, "cut at {cut}");
        assert_eq!(streamed_damage, reader.damage(), "cut at {cut}");

        let cut_block = fx.blocks.iter().find(|b| b.offset < cut && cut < b.end());
        let damage = reader.damage();
        match cut_block {
            Some(b) if cut >= b.offset + FRAME_HEADER_LEN as u64 => {
                assert_eq!(damage.len(), 1, "cut at {cut}: {damage:?}");
                assert_eq!(damage[0].offset, b.offset);
                assert_eq!(damage[0].events_lost, Some(u64::from(b.event_count)));
                assert_eq!(damage[0].ts_range, Some((b.first_ts, b.last_ts)));
            }
            Some(b) => {
                assert_eq!(damage.len(), 1, "cut at {cut}: {damage:?}");
                assert_eq!(damage[0].offset, b.offset);
                assert_eq!(damage[0].events_lost, None);
            }
            None if cut > fx.index_offset && cut < fx.index_offset + 4 => {
                // A few bytes that may be a frame header or the index: reported,
                // with no events claimed lost.
                assert_eq!(damage.len(), 1, "cut at {cut}: {damage:?}");
                assert_eq!(damage[0].events_lost, None);
            }
            None => assert!(damage.is_empty(), "cut at {cut}: {damage:?}"),
        }
    }
}

/// A capture in memory reads exactly as the same bytes in a file: whole, cut inside a
/// block, and cut inside the index.
#[test]
fn bytes_in_memory_read_like_a_file() {
    let fx = Fixture::new(0xB17E5, 400, 60);
    let cuts = [
        fx.bytes.len(),
        (fx.blocks[2].offset + fx.blocks[2].len / 2) as usize,
        fx.index_offset as usize + 3,
    ];
    for cut in cuts {
        let bytes = &fx.bytes[..cut];
        let file = fx.open_variant("memory", bytes).unwrap();
        let memory = CaptureReader::from_bytes("memory", bytes.to_vec()).unwrap();
        assert_eq!(memory.index_state(), file.index_state(), "cut at {cut}");
        assert_eq!(memory.blocks(), file.blocks(), "cut at {cut}");
        assert_eq!(memory.damage(), file.damage(), "cut at {cut}");
        assert_eq!(drain(memory.events()), drain(file.events()), "cut at {cut}");
    }
    let cut = &fx.bytes[..12];
    assert!(matches!(
        CaptureReader::from_bytes("memory", cut.to_vec()),
        Err(CaptureError::CorruptHeader { .. })
    ));
}

#[test]
fn a_flipped_payload_byte_loses_exactly_that_block() {
    let fx = Fixture::new(0xBAD, 1200, 100);
    for victim in [0, fx.blocks.len() / 2, fx.blocks.len() - 1] {
        let b = fx.blocks[victim];
        let mut bytes = fx.bytes.clone();
        bytes[(b.offset + FRAME_HEADER_LEN as u64 + (b.len - FRAME_HEADER_LEN as u64) / 2)
            as usize] ^= 0x20;
        let others = fx.events_of_blocks(|i, _| i != victim);

        // With the index: the damage shows up while reading.
        let reader = fx.open_variant("flip", &bytes).unwrap();
        assert_eq!(reader.index_state(), &IndexState::Present);
        assert!(reader.damage().is_empty());
        let (events, damage) = drain(reader.events());
        assert_eq!(events, others);
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].offset, b.offset);
        assert_eq!(damage[0].events_lost, Some(u64::from(b.event_count)));
        assert!(
            damage[0].reason.contains("checksum"),
            "{}",
            damage[0].reason
        );

        // Without the index: found by the scan.
        let reader = fx
            .open_variant("flip-noindex", &bytes[..fx.index_offset as usize])
            .unwrap();
        assert!(matches!(reader.index_state(), IndexState::Recovered { .. }));
        assert_eq!(reader.damage().len(), 1);
        assert_eq!(reader.damage()[0].offset, b.offset);
        assert_eq!(
            reader.damage()[0].events_lost,
            Some(u64::from(b.event_count))
        );
        assert_eq!(reader.blocks().len(), fx.blocks.len() - 1);
        let (events, damage) = drain(reader.events());
        assert_eq!(events, others);
        assert_eq!(damage, reader.damage());
    }
}

#[test]
fn a_flipped_frame_header_byte_resyncs_to_the_next_block() {
    let fx = Fixture::new(0xF1A9, 1200, 100);
    let victim = 4;
    let b = fx.blocks[victim];
    let others = fx.events_of_blocks(|i, _| i != victim);
    // In the magic, the length, the timestamps, the checksums.
    for at in [0u64, 5, 14, 25, 30, 34] {
        let mut bytes = fx.bytes.clone();
        bytes[(b.offset + at) as usize] ^= 0x01;

        let reader = fx.open_variant("hdr", &bytes).unwrap();
        assert_eq!(reader.index_state(), &IndexState::Present);
        let (events, damage) = drain(reader.events());
        assert_eq!(events, others, "flip at +{at}");
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].offset, b.offset);
        assert_eq!(damage[0].events_lost, Some(u64::from(b.event_count)));

        let reader = fx
            .open_variant("hdr-noindex", &bytes[..fx.index_offset as usize])
            .unwrap();
        assert!(matches!(reader.index_state(), IndexState::Recovered { .. }));
        let (events, damage) = drain(reader.events());
        assert_eq!(events, others, "flip at +{at}");
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(damage[0].offset, b.offset);
        assert_eq!(damage[0].events_lost, None);
        assert!(damage[0]
            .reason
            .contains(&format!("skipped {} bytes", b.len)));
    }
}

#[test]
fn a_damaged_index_falls_back_to_the_scan() {
    let fx = Fixture::new(0x1DE, 600, 100);
    let file_len = fx.bytes.len();
    for at in [
        fx.index_offset as usize,
        fx.index_offset as usize + 6,
        file_len - 20,
        file_len - 12,
        file_len - 1,
    ] {
        let mut bytes = fx.bytes.clone();
        bytes[at] ^= 0x10;
        let reader = fx.open_variant("idx", &bytes).unwrap();
        assert!(
            matches!(reader.index_state(), IndexState::Recovered { .. }),
            "flip at {at}"
        );
        assert_eq!(reader.blocks(), &fx.blocks[..]);
        let (events, damage) = drain(reader.events());
        assert_eq!(events, fx.events);
        assert!(damage.is_empty(), "flip at {at}: {damage:?}");
    }
}

/// The preamble of a current-format file's `bytes` as format 2 has it, and the length of
/// the one it replaces: format 2's header ends before the list of hosts and the mode
/// (empty and eBPF: a 0 byte each).
fn format_2_preamble(bytes: &[u8]) -> (Vec<u8>, usize) {
    let header_len = u32::from_le_bytes(bytes[14..18].try_into().unwrap()) as usize;
    assert_eq!(bytes[18 + header_len - 2..18 + header_len], [0, 0]);
    let header = &bytes[18..18 + header_len - 2];
    let mut out = bytes[..10].to_vec();
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    (out, 18 + header_len + 4)
}

/// The bytes of the format-2 file that holds what the current-format file at `path` holds
/// (only format 2's kinds): the same events in the same blocks, encoded as format 2 does
/// (its tag of a 2-bit kind), behind format 2's version, and its index with three counts
/// a block.
fn as_format_2(path: &Path) -> Vec<u8> {
    use super::block::{BlockBuilder, FrameHeader, PayloadDecoder, SyscallContents};
    let reader = CaptureReader::open(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let (mut out, _) = format_2_preamble(&bytes);
    let mut decoder = PayloadDecoder::new(CaptureFormat::V3);
    let mut builder = BlockBuilder::format_2(3).unwrap();
    let mut blocks = Vec::new();
    for b in reader.blocks() {
        let frame_bytes = &bytes[b.offset as usize..b.end() as usize];
        let (head, payload) = frame_bytes.split_at(FRAME_HEADER_LEN);
        let frame = FrameHeader::parse(head.try_into().unwrap()).unwrap();
        for e in decoder
            .decode(&frame, payload, SyscallContents::Built)
            .unwrap()
        {
            assert!(CaptureFormat::V2.holds(e.kind()), "{e:?}");
            builder.push(&e).unwrap();
        }
        let sealed = builder.seal().unwrap().unwrap();
        let offset = out.len() as u64;
        out.extend_from_slice(&sealed.frame.to_bytes());
        out.extend_from_slice(sealed.payload);
        let [packets, syscalls, losses, ..] = sealed.counts;
        blocks.push((
            offset,
            out.len() as u64 - offset,
            sealed.frame.event_count,
            sealed.frame.first_ts,
            sealed.frame.last_ts,
            [packets, syscalls, losses],
        ));
    }
    let index_offset = out.len() as u64;
    let body = bincode::encode_to_vec(
        (blocks, reader.index().redaction.clone()),
        bincode::config::standard(),
    )
    .unwrap();
    let section_at = out.len();
    out.extend_from_slice(&super::index::INDEX_MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[section_at..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&super::index::TRAILER_MAGIC);
    out
}

/// Files of format 2 read as they always did, with their index or without; a TLS event
/// in one of their blocks is damage, not an event: the format has none.
#[test]
fn a_format_2_file_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = varied_events(&mut Rng(0x2222), 1000)
        .into_iter()
        .filter(|e| CaptureFormat::V2.holds(e.kind()))
        .collect();
    let path = dir.path().join("v3.etr");
    write_capture(&path, &events, small_blocks(100));
    let v2 = as_format_2(&path);
    let reader = CaptureReader::open(write_bytes(dir.path(), "v2.etr", &v2)).unwrap();
    assert_eq!(reader.format_version(), 2);
    assert_eq!(reader.index_state(), &IndexState::Present);
    assert_eq!(reader.index().counts(), tally(&events));
    assert_eq!(drain(reader.events()), (events.clone(), Vec::new()));

    let no_index = write_bytes(dir.path(), "v2-cut.etr", &v2[..v2.len() - TRAILER_LEN]);
    let recovered = CaptureReader::open(no_index).unwrap();
    assert!(matches!(
        recovered.index_state(),
        IndexState::Recovered { .. }
    ));
    assert_eq!(recovered.blocks(), reader.blocks());
    assert_eq!(drain(recovered.events()), (events, Vec::new()));

    // One block of a TLS event, labelled format 2.
    let tls = varied_events(&mut Rng(0x3333), 200)
        .into_iter()
        .find(|e| e.kind() == EventKind::Tls)
        .unwrap();
    let path = dir.path().join("tls.etr");
    write_capture(&path, &[tls], WriterOptions::default());
    let current = std::fs::read(&path).unwrap();
    // Without its index: the blocks moved by the shorter header.
    let (mut bytes, preamble_len) = format_2_preamble(&current);
    bytes.extend_from_slice(&current[preamble_len..current.len() - TRAILER_LEN]);
    let reader = CaptureReader::open(write_bytes(dir.path(), "tls-v2.etr", &bytes)).unwrap();
    let (read, damage) = drain(reader.events());
    assert!(read.is_empty());
    assert_eq!(damage.len(), 1);
    assert!(
        damage[0].reason.contains("unknown event kind 3"),
        "{}",
        damage[0].reason
    );
}

/// Process events serialize tagged with their kind and what changed.
#[test]
fn process_events_serialize_with_their_kind() {
    let start = Event::Process(ProcessEvent {
        ts_ns: 5,
        pid: 4301,
        change: ProcessChange::Start {
            data_dir: Some("/var/lib/etcd".into()),
            cmdline: vec!["etcd".into()],
        },
    });
    assert_eq!(
        serde_json::to_value(&start).unwrap(),
        serde_json::json!({
            "kind": "process", "ts_ns": 5, "pid": 4301, "change": "start",
            "data_dir": "/var/lib/etcd", "cmdline": ["etcd"],
        })
    );
    let end = Event::Process(ProcessEvent {
        ts_ns: 6,
        pid: 4242,
        change: ProcessChange::exit_of_status(9),
    });
    assert_eq!(
        serde_json::to_value(&end).unwrap(),
        serde_json::json!({
            "kind": "process", "ts_ns": 6, "pid": 4242, "change": "exit",
            "code": null, "signal": 9,
        })
    );
}

/// A wait(2) status says how a process ended, in words too.
#[test]
fn exits_are_told_by_code_or_signal() {
    let describe = |status: i32| {
        let p = ProcessEvent {
            ts_ns: 0,
            pid: 4242,
            change: ProcessChange::exit_of_status(status),
        };
        p.describe()
    };
    assert_eq!(describe(9), "etcd pid 4242 killed by SIGKILL");
    assert_eq!(describe(15 | 0x80), "etcd pid 4242 killed by SIGTERM");
    assert_eq!(describe(1 << 8), "etcd pid 4242 exited, exit code 1");
    assert_eq!(describe(0), "etcd pid 4242 exited, exit code 0");
    assert_eq!(describe(40), "etcd pid 4242 killed by signal 40");
    assert_eq!(signal_name(0), "signal 0");
    assert_eq!(signal_name(31), "SIGSYS");
}

/// TLS events serialize like the other kinds: tagged, their data in base64, their
/// endpoints null until known.
#[test]
fn tls_events_serialize_with_their_kind() {
    let mut tls = TlsData {
        ts_ns: 5,
        pid: 1,
        tid: 2,
        conn_id: 3,
        direction: Direction::Egress,
        endpoints: None,
        offset: 10,
        len: 4,
        data: bytes::Bytes::from_static(b"hi"),
    };
    assert!(tls.truncated());
    let json = serde_json::to_value(Event::Tls(tls.clone())).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "tls", "ts_ns": 5, "pid": 1, "tid": 2, "conn_id": 3,
            "direction": "egress", "endpoints": null, "offset": 10, "len": 4,
            "data": "aGk=",
        })
    );
    tls.endpoints = Some(TlsEndpoints {
        local: addr(2379),
        remote: "[::1]:40000".parse().unwrap(),
    });
    tls.len = 2;
    assert!(!tls.truncated());
    let json = serde_json::to_value(Event::Tls(tls)).unwrap();
    assert_eq!(
        json["endpoints"],
        serde_json::json!({"local": "127.0.0.1:2379", "remote": "[::1]:40000"})
    );
}

#[test]
fn wrong_version_is_reported() {
    let fx = Fixture::new(1, 10, 100);
    for version in [0u32, FORMAT_VERSION + 1, 77] {
        let mut bytes = fx.bytes.clone();
        bytes[10..14].copy_from_slice(&version.to_le_bytes());
        let err = fx.open_variant("version", &bytes).unwrap_err();
        match &err {
            CaptureError::UnsupportedVersion {
                found, supported, ..
            } => {
                assert_eq!(*found, version);
                assert_eq!(*supported, FORMAT_VERSION);
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&format!("version {version}")), "{msg}");
        assert!(msg.contains("upgrade etcd-trace"), "{msg}");
    }
}

#[test]
fn foreign_files_are_not_captures() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(42);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"hello, this is a text file\n".to_vec()),
        ("random", rng.bytes(4096)),
        ("magic-prefix", b"ETCDTRA".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = write_bytes(dir.path(), name, &bytes);
        let err = CaptureReader::open(&path).unwrap_err();
        assert!(
            matches!(err, CaptureError::NotACapture { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{} is not an etcd-trace capture file", path.display())
        );
    }
    let missing = CaptureReader::open(dir.path().join("missing")).unwrap_err();
    assert!(matches!(missing, CaptureError::Io { .. }));
    // A pcap file is read as a capture; one cut inside its header says so.
    let cut_pcap = write_bytes(
        dir.path(),
        "pcap",
        &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let err = CaptureReader::open(&cut_pcap).unwrap_err().to_string();
    assert!(
        err.contains("pcap file: the file ends inside the pcap header"),
        "{err}"
    );
}

#[test]
fn a_damaged_header_is_reported() {
    let fx = Fixture::new(2, 10, 100);
    let header_len = u32::from_le_bytes(fx.bytes[14..18].try_into().unwrap()) as usize;
    // Inside the header body, in its checksum, and a huge length.
    for at in [20, 18 + header_len / 2, 18 + header_len + 1] {
        let mut bytes = fx.bytes.clone();
        bytes[at] ^= 0x04;
        let err = fx.open_variant("hdr", &bytes).unwrap_err();
        assert!(matches!(err, CaptureError::CorruptHeader { .. }), "{err:?}");
    }
    let mut bytes = fx.bytes.clone();
    bytes[14..18].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = fx.open_variant("len", &bytes).unwrap_err();
    assert!(matches!(err, CaptureError::CorruptHeader { .. }), "{err:?}");
    // Cut inside the preamble.
    for cut in [10, 13, 17, 18, 18 + header_len, 18 + header_len + 3] {
        let err = fx.open_variant("short", &fx.bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, CaptureError::CorruptHeader { .. }),
            "cut {cut}: {err:?}"
        );
    }
    // The preamble alone is an empty, recovered capture.
    let reader = fx
        .open_variant("bare", &fx.bytes[..18 + header_len + 4])
        .unwrap();
    assert!(matches!(reader.index_state(), IndexState::Recovered { .. }));
    assert_eq!(reader.events().count(), 0);
}

#[cfg(unix)]
#[test]
fn capture_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.etrace");
    write_capture(&path, &[], WriterOptions::default());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // An existing, more open file is narrowed when reused.
    let open = dir.path().join("open.etrace");
    std::fs::write(&open, b"x").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_capture(&open, &[], WriterOptions::default());
    let mode = std::fs::metadata(&open).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn mutated_files_never_panic() {
    let fx = Fixture::new(0xFADE, 300, 40);
    let len = fx.bytes.len() as u64;
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let path = fx.dir.path().join("mutant");
    let mut opened = 0;
    for _ in 0..300 {
        let mut bytes = fx.bytes.clone();
        match rng.below(6) {
            // A few flipped or overwritten bytes anywhere past the magic.
            0..=2 => {
                for _ in 0..1 + rng.below(8) {
                    let at = 10 + rng.below(len - 10) as usize;
                    bytes[at] = rng.next() as u8;
                }
            }
            // Cut anywhere.
            3 => bytes.truncate(rng.below(len) as usize),
            // A run of random bytes over a random place.
            4 => {
                let at = 10 + rng.below(len - 10) as usize;
                let n = (1 + rng.below(200) as usize).min(bytes.len() - at);
                let noise = rng.bytes(n);
                bytes[at..at + n].copy_from_slice(&noise);
            }
            // A duplicated or removed slice (shifts every offset after it).
            _ => {
                let at = rng.below(len) as usize;
                let n = (rng.below(300) as usize).min(bytes.len() - at);
                if rng.below(2) == 0 {
                    let copy = bytes[at..at + n].to_vec();
                    bytes.splice(at..at, copy);
                } else {
                    bytes.drain(at..at + n);
                }
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(reader) = CaptureReader::open(&path) {
            opened += 1;
            let n = reader.events().count();
            assert!(n <= 2 * fx.events.len() + reader.blocks().len() + 10);
            let since = rng.next() % 2_000_000_000;
            let _ = reader
                .events_between(Some(since), Some(since + 50_000_000))
                .count();
        }
    }
    // Most mutations leave a readable file.
    assert!(opened > 150, "{opened}");

    // Pure random bytes behind a valid preamble.
    let header_len = u32::from_le_bytes(fx.bytes[14..18].try_into().unwrap()) as usize;
    let preamble = &fx.bytes[..18 + header_len + 4];
    for i in 0..50 {
        let mut bytes = preamble.to_vec();
        let noise_len = rng.below(5000) as usize;
        bytes.extend(rng.bytes(noise_len));
        if i % 5 == 0 {
            // A plausible block magic in the noise.
            let at = preamble.len() + rng.below((bytes.len() - preamble.len()) as u64) as usize;
            bytes.splice(at..at, *b"ETRB");
        }
        std::fs::write(&path, &bytes).unwrap();
        let reader = CaptureReader::open(&path).unwrap();
        assert!(matches!(reader.index_state(), IndexState::Recovered { .. }));
        assert!(reader.blocks().is_empty());
        let (events, _) = drain(reader.events());
        assert!(events.is_empty());
    }
}

/// A plausible etcd mix: gRPC packets with 100-byte payloads and WAL/socket syscalls
/// with 96 bytes of data, keys and values partly repetitive, partly random.
fn realistic_events(rng: &mut Rng, n: usize) -> Vec<Event> {
    const KEYS: [&str; 4] = [
        "/registry/pods/default/",
        "/registry/leases/kube-node-lease/",
        "/registry/events/default/",
        "/registry/configmaps/kube-system/",
    ];
    let mut ts = 5_000_000_000u64;
    let mut seq = [1_000u32; 8];
    let mut raft_index = 10_000u64;
    let body = |rng: &mut Rng, len: usize, raft_index: u64| {
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&[0, 0, 0x5b, 0, 1, 0, 0, 0, 0x21, 0]); // frame-ish header
        b.extend_from_slice(&raft_index.to_le_bytes());
        b.extend_from_slice(KEYS[rng.below(4) as usize].as_bytes());
        b.extend_from_slice(format!("obj-{}", rng.below(500)).as_bytes());
        while b.len() < len {
            b.push(rng.next() as u8);
        }
        b.truncate(len);
        b
    };
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        ts += 2_000 + rng.below(8_000);
        if i % 2 == 0 {
            let conn = rng.below(8) as usize;
            seq[conn] = seq[conn].wrapping_add(100);
            events.push(Event::Packet(Packet {
                ts_ns: ts,
                ifindex: 1,
                direction: if rng.below(2) == 0 {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                src: addr(41000 + conn as u16),
                dst: addr(2379),
                seq: seq[conn],
                ack: 77_000 + i as u32,
                flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
                window: 512,
                payload_len: 100,
                payload: body(rng, 100, raft_index).into(),
            }));
        } else {
            raft_index += 1;
            events.push(Event::Syscall(Syscall {
                enter_ns: ts,
                exit_ns: ts + 3_000 + rng.below(30_000),
                pid: 4242,
                tid: 4250 + rng.below(4) as u32,
                call: SyscallKind::Write,
                fd: 11,
                file: FileRef {
                    kind: FileKind::Wal,
                    path: "member/wal/0000000000000001-0000000000002710.wal".into(),
                    local_port: 0,
                    peer_port: 0,
                },
                offset: Some(raft_index * 128),
                requested: 128,
                ret: 128,
                data: body(rng, 96, raft_index).into(),
            }));
        }
    }
    events
}

/// Run with `--nocapture` to see the on-disk cost per event.
#[test]
fn bytes_per_event_for_a_realistic_mix() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    for (name, events) in [
        ("realistic", realistic_events(&mut Rng(31337), n)),
        ("random-payload", {
            let mut events = realistic_events(&mut Rng(31337), n);
            let mut rng = Rng(5);
            for e in &mut events {
                match e {
                    Event::Packet(p) => p.payload = rng.bytes(p.payload.len()).into(),
                    Event::Syscall(s) => s.data = rng.bytes(s.data.len()).into(),
                    Event::Loss(_) | Event::Tls(_) | Event::Process(_) | Event::Api(_) => {}
                }
            }
            events
        }),
    ] {
        let path = dir.path().join(name);
        let started = std::time::Instant::now();
        let summary = write_capture(&path, &events, WriterOptions::default());
        let write_secs = started.elapsed().as_secs_f64();
        let per_event = summary.bytes_written as f64 / n as f64;
        let raw: usize = events
            .iter()
            .map(|e| {
                bincode::encode_to_vec(e, bincode::config::standard())
                    .unwrap()
                    .len()
            })
            .sum();
        println!(
            "{name}: {n} events (packets with 100-byte payloads, syscalls with 96-byte data) \
             -> {} bytes on disk in {} blocks: {per_event:.1} bytes/event \
             (bincode before zstd: {:.1} bytes/event); written at {:.0} events/s",
            summary.bytes_written,
            summary.blocks_written,
            raw as f64 / n as f64,
            n as f64 / write_secs
        );
        assert_eq!(
            drain(CaptureReader::open(&path).unwrap().events()).0,
            events
        );
    }
}

/// The latency histograms set on a writer are in its file's index; histograms a reader
/// would refuse are refused at writing, not written into an index nobody can read.
#[test]
fn latency_histograms_round_trip_through_a_file() {
    use super::latency::MAX_BUCKETS;
    use super::{LatencyHistogram, LatencyKind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latency.etr");
    let events = varied_events(&mut Rng(0x1a7), 50);
    let histograms: Vec<LatencyHistogram> = LatencyKind::ALL
        .iter()
        .map(|&kind| LatencyHistogram {
            data_dir: "/var/lib/etcd".into(),
            kind,
            buckets: (0..36).collect(),
            sum_ns: 1 << 40,
        })
        .collect();
    let mut writer = CaptureWriter::create(&path, &sample_header()).unwrap();
    for e in &events {
        writer.push(e).unwrap();
    }
    writer.set_latency(histograms.clone());
    writer.finish().unwrap();
    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.index_state(), &IndexState::Present);
    assert_eq!(reader.index().latency, histograms);

    let mut writer = CaptureWriter::create(dir.path().join("bad.etr"), &sample_header()).unwrap();
    writer.set_latency(vec![LatencyHistogram {
        buckets: vec![1; MAX_BUCKETS + 1],
        ..histograms[0].clone()
    }]);
    assert!(writer.finish().is_err());
}

/// A rotated recording's files read as one capture: in time order whatever order they
/// are named in, as files or as their directory; files of another recording, or that
/// overlap in time, are refused with a reason.
#[test]
fn a_rotated_set_reads_as_one_capture() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let mut events = varied_events(&mut Rng(21), 3000);
    events.sort_by_key(Event::ts_ns);
    let base = set.join("cap.etr");
    let parts: Vec<PathBuf> = events
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| {
            let path = rotated_path(&base, i as u32 + 1);
            write_capture(&path, chunk, small_blocks(100));
            path
        })
        .collect();
    let reversed: Vec<PathBuf> = parts.iter().rev().cloned().collect();
    for named in [parts.clone(), reversed, vec![set.clone()]] {
        let reader = open_set(&named).unwrap();
        assert_eq!(reader.files().count(), 3);
        assert_eq!(reader.blocks().len(), 30);
        assert_eq!(reader.index().total_events(), 3000);
        let (got, damage) = drain(reader.events());
        assert!(damage.is_empty());
        assert_eq!(got, events, "named as {named:?}");
        let (lo, hi) = (events[1500].ts_ns(), events[2500].ts_ns());
        let (between, _) = drain(reader.events_between(Some(lo), Some(hi)));
        assert_eq!(between, events[1500..2500]);
    }
    // The same file twice overlaps itself.
    let twice = [parts[0].clone(), parts[0].clone()];
    let err = open_set(&twice).unwrap_err().to_string();
    assert!(err.contains("overlap in time"), "{err}");
    // Another recording: another start.
    let other = dir.path().join("other.etr");
    let mut header = sample_header();
    header.started_wall_ns += 1;
    let mut w = CaptureWriter::create(&other, &header).unwrap();
    w.push(&events[2999]).unwrap();
    w.finish().unwrap();
    let err = open_set(&[parts[0].clone(), other])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not one recording"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = open_set(&[empty]).unwrap_err().to_string();
    assert!(err.contains("no capture files"), "{err}");
}

/// Items of a follower up to its end: the events, the damage, and whether quiet spells
/// were told.
fn follow_all(follower: &mut Follower) -> (Vec<Event>, Vec<Damage>, bool) {
    let mut events = Vec::new();
    let mut damage = Vec::new();
    let mut quiet = false;
    for item in follower.by_ref() {
        match item {
            FollowItem::Read(ReadItem::Event(e)) => events.push(e),
            FollowItem::Read(ReadItem::Damaged(d)) => damage.push(d),
            FollowItem::Quiet { .. } => quiet = true,
        }
    }
    (events, damage, quiet)
}

/// A rotated recording followed while it is written: blocks as they come, on to the
/// next file, to the end.
#[test]
fn a_capture_is_followed_while_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("live.etr");
    let mut events = varied_events(&mut Rng(5), 600);
    events.sort_by_key(Event::ts_ns);
    let first = rotated_path(&base, 1);
    let mut writer =
        CaptureWriter::create_with(&first, &sample_header(), small_blocks(50)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut follower = Follower::open(std::slice::from_ref(&base), stop).unwrap();
    let (to_write, written) = (events.clone(), first.clone());
    let recorder = std::thread::spawn(move || {
        let halves = to_write.split_at(300);
        for chunk in halves.0.chunks(100) {
            for e in chunk {
                writer.push(e).unwrap();
            }
            writer.flush_block().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
        // As the recorder does: the next file exists before this one is finished.
        let next = rotated_path(&written.with_file_name("live.etr"), 2);
        let mut second =
            CaptureWriter::create_with(&next, &sample_header(), small_blocks(50)).unwrap();
        writer.finish().unwrap();
        for chunk in halves.1.chunks(100) {
            for e in chunk {
                second.push(e).unwrap();
            }
            second.flush_block().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
        second.finish().unwrap();
    });
    assert_eq!(follower.first_ts(), Some(events[0].ts_ns()));
    let (got, damage, quiet) = follow_all(&mut follower);
    recorder.join().unwrap();
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(got, events);
    assert!(quiet, "quiet spells are told");
    assert_eq!(follower.end(), Some(&FollowEnd::Finished));
}

/// A file that stops growing without its trailer, and that nobody holds a lock on,
/// is given up, with its cut block reported; the events before it are read.
#[test]
fn a_follower_gives_up_a_file_nobody_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.etr");
    let events = varied_events(&mut Rng(6), 200);
    write_capture(&path, &events, small_blocks(100));
    let bytes = std::fs::read(&path).unwrap();
    let reader = CaptureReader::open(&path).unwrap();
    let second = reader.blocks()[1];
    // The second block cut in its payload, no index: a recorder killed mid-write.
    std::fs::write(&path, &bytes[..(second.offset + 40) as usize]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut follower = Follower::open(std::slice::from_ref(&path), stop).unwrap();
    let started = std::time::Instant::now();
    let (got, damage, _) = follow_all(&mut follower);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(got.len(), 100);
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].reason.contains("stopped while writing"),
        "{damage:?}"
    );
    assert!(matches!(
        follower.end(),
        Some(FollowEnd::RecorderGone { .. })
    ));
}

/// A writer that writes nothing for longer than a dead recorder is given holds its
/// lock all the while: the follower waits, whatever other locks come and go meanwhile,
/// and reads the whole file once it is finished. A writer dropped unfinished lets go.
#[test]
fn a_quiet_writer_is_waited_for_and_a_dropped_one_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quiet.etr");
    let events = varied_events(&mut Rng(7), 200);
    let mut writer =
        CaptureWriter::create_with(&path, &sample_header(), small_blocks(100)).unwrap();
    assert!(being_recorded(&path));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut follower = Follower::open(std::slice::from_ref(&path), stop).unwrap();
    let recorder = std::thread::spawn(move || {
        for e in &events[..100] {
            writer.push(e).unwrap();
        }
        writer.flush_block().unwrap();
        // Quiet for 2.5 s, while other files are locked and let go.
        let churn = tempfile::tempdir().unwrap();
        for i in 0..25 {
            let other =
                CaptureWriter::create(churn.path().join(format!("{i}.etr")), &sample_header());
            std::thread::sleep(Duration::from_millis(100));
            drop(other);
        }
        for e in &events[100..] {
            writer.push(e).unwrap();
        }
        writer.finish().unwrap();
        events
    });
    let (got, damage, _) = follow_all(&mut follower);
    let events = recorder.join().unwrap();
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(got, events);
    assert_eq!(follower.end(), Some(&FollowEnd::Finished));
    assert!(
        !being_recorded(&path),
        "a finished file is not being recorded"
    );

    let dropped = dir.path().join("dropped.etr");
    let mut writer =
        CaptureWriter::create_with(&dropped, &sample_header(), small_blocks(100)).unwrap();
    for e in &varied_events(&mut Rng(8), 100) {
        writer.push(e).unwrap();
    }
    writer.flush_block().unwrap();
    drop(writer);
    assert!(!being_recorded(&dropped));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut follower = Follower::open(std::slice::from_ref(&dropped), stop).unwrap();
    let (got, _, _) = follow_all(&mut follower);
    assert_eq!(got.len(), 100);
    assert!(matches!(
        follower.end(),
        Some(FollowEnd::RecorderGone { .. })
    ));
}

/// API events of every observation, among the kernel's events and alone in a block,
/// come back from the reader, from the scan without the index and from a follower as
/// they went in, to the byte; an API-mode header comes back with its endpoints.
#[test]
fn api_events_round_trip_through_files_and_followers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.etr");
    let mut events = varied_events(&mut Rng(0xa91), 300);
    let at = events[150].ts_ns();
    let api: Vec<Event> = api::every_observation(at)
        .into_iter()
        .map(Event::Api)
        .collect();
    events.splice(150..150, api.iter().cloned());
    events.extend(api.iter().cloned());
    let header = Header {
        mode: CaptureMode::Api {
            endpoints: vec!["https://10.0.0.1:2379".into(), "http://b:2379".into()],
        },
        ..sample_header()
    };
    let mut writer = CaptureWriter::create_with(&path, &header, small_blocks(40)).unwrap();
    for e in &events[..events.len() - api.len()] {
        writer.push(e).unwrap();
    }
    writer.flush_block().unwrap();
    for e in &api {
        writer.push(e).unwrap();
    }
    writer.finish().unwrap();

    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.format_version(), FORMAT_VERSION);
    assert_eq!(reader.header(), &header);
    assert_eq!(reader.index().counts(), tally(&events));
    assert!(reader.index().count(EventKind::Api) >= 2 * api.len() as u64);
    let last = reader.blocks().last().unwrap();
    assert_eq!(last.counts[EventKind::Api.slot()], api.len() as u64);
    let (read, damage) = drain(reader.events());
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(read, events);
    let bytes_of =
        |events: &[Event]| bincode::encode_to_vec(events, bincode::config::standard()).unwrap();
    assert_eq!(bytes_of(&read), bytes_of(&events));

    let bytes = std::fs::read(&path).unwrap();
    let cut = write_bytes(
        dir.path(),
        "api-noindex.etr",
        &bytes[..bytes.len() - TRAILER_LEN],
    );
    let recovered = CaptureReader::open(&cut).unwrap();
    assert_eq!(recovered.blocks(), reader.blocks());
    assert_eq!(drain(recovered.events()), (events.clone(), Vec::new()));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut follower = Follower::open(std::slice::from_ref(&path), stop).unwrap();
    let (followed, damage, _) = follow_all(&mut follower);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(bytes_of(&followed), bytes_of(&events));
    assert_eq!(follower.end(), Some(&FollowEnd::Finished));
}

/// A damaged API body in a block whose checksums are right (as a buggy or hostile
/// writer would leave it) loses that block, told as damage; the blocks before it read.
#[test]
fn a_damaged_api_body_is_damage() {
    use super::block::{BlockBuilder, FrameHeader, DEFAULT_ZSTD_LEVEL};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.etr");
    let before = varied_events(&mut Rng(3), 20);
    write_capture(&path, &before, WriterOptions::default());
    let bytes = std::fs::read(&path).unwrap();
    let end = CaptureReader::open(&path)
        .unwrap()
        .blocks()
        .last()
        .unwrap()
        .end() as usize;

    let api: Vec<Event> = api::every_observation(5_000_000_000)
        .into_iter()
        .map(Event::Api)
        .collect();
    let mut builder = BlockBuilder::new(DEFAULT_ZSTD_LEVEL).unwrap();
    for e in &api {
        builder.push(e).unwrap();
    }
    let sealed = builder.seal().unwrap().unwrap();
    let frame = sealed.frame;
    let mut payload = zstd::decode_all(sealed.payload).unwrap();
    // The first body: its endpoint, the variant (Change), the revision, the delete
    // flag, then the key's length, made a u64 that the key's bytes complete.
    let Event::Api(first) = &api[0] else {
        unreachable!()
    };
    let needle = first.endpoint.as_bytes();
    let at = payload
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len();
    assert_eq!(payload[at..at + 4], [0, 82, 0, 5]);
    payload[at + 3] = 0xfd;
    let compressed = zstd::encode_all(payload.as_slice(), 0).unwrap();
    let damaged = FrameHeader {
        payload_len: compressed.len() as u32,
        payload_crc: crc32c::crc32c(&compressed),
        ..frame
    };
    let mut out = bytes[..end].to_vec();
    out.extend_from_slice(&damaged.to_bytes());
    out.extend_from_slice(&compressed);
    let reader = CaptureReader::open(write_bytes(dir.path(), "damaged.etr", &out)).unwrap();
    let (read, damage) = drain(reader.events());
    assert_eq!(read, before);
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].reason.contains("api event"),
        "{}",
        damage[0].reason
    );
}

//! The WAL decoders on synthetic files, a real etcd 3.4 WAL, and random bytes.

use prost::Message;

use super::*;
use crate::decode::etcdpb::kv::PutRequest;
use crate::decode::etcdpb::raft_internal::{EntryRequest, InternalRaftRequest, RequestHeader};
use crate::decode::raftpb::{ConfChange, ConfChangeEntry, Entry, EntryType, HardState};
use crate::test_rng::XorShift;

fn put_entry(term: u64, index: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let req = InternalRaftRequest {
        header: Some(RequestHeader {
            id: 0x8e9e_05c5_2164_0000 + index,
            ..Default::default()
        }),
        put: Some(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Entry {
        term,
        index,
        r#type: EntryType::EntryNormal as i32,
        data: req.encode_to_vec(),
    }
    .encode_to_vec()
}

fn hard_state(term: u64, commit: u64) -> Vec<u8> {
    HardState {
        term,
        vote: 10276657743932975437,
        commit,
    }
    .encode_to_vec()
}

/// Builds a WAL file record by record, keeping each record's offset.
struct FileBuilder {
    enc: WalEncoder,
    out: Vec<u8>,
    offsets: Vec<u64>,
}

impl FileBuilder {
    /// A file's head as etcd writes it: the crc record carrying `enc`'s chain in, then
    /// the metadata.
    fn new(mut enc: WalEncoder, node_id: u64, cluster_id: u64) -> Self {
        let crc = enc.crc_record();
        let mut b = FileBuilder {
            enc,
            out: Vec::new(),
            offsets: Vec::new(),
        };
        b.push(crc);
        let meta = WalMetadata {
            node_id,
            cluster_id,
        };
        b.record(WalRecordKind::Metadata, &meta.encode_to_vec());
        b
    }

    fn push(&mut self, bytes: Vec<u8>) {
        self.offsets.push(self.out.len() as u64);
        self.out.extend_from_slice(&bytes);
    }

    fn record(&mut self, kind: WalRecordKind, data: &[u8]) {
        let bytes = self.enc.record(kind, data);
        self.push(bytes);
    }

    /// A put of `foo` and the HardState after it, for each index.
    fn puts(&mut self, indexes: std::ops::RangeInclusive<u64>, value_len: impl Fn(u64) -> usize) {
        for i in indexes {
            let value = vec![b'v'; value_len(i)];
            self.record(WalRecordKind::Entry, &put_entry(2, i, b"foo", &value));
            self.record(WalRecordKind::State, &hard_state(2, i));
        }
    }
}

/// A WAL file as etcd writes it at bootstrap and after a few puts, with the offsets
/// of every record.
fn sample_file() -> (Vec<u8>, Vec<u64>) {
    let mut b = FileBuilder::new(
        WalEncoder::new(0),
        10276657743932975437,
        14841639068965178418,
    );
    // etcd writes the empty snapshot record with explicit zero fields.
    let mut snap_bytes = Vec::new();
    prost::encoding::uint64::encode(1, &0, &mut snap_bytes);
    prost::encoding::uint64::encode(2, &0, &mut snap_bytes);
    b.record(WalRecordKind::Snapshot, &snap_bytes);
    b.puts(1..=6, |i| usize::try_from(i).unwrap() * 3);
    (b.out, b.offsets)
}

fn records_of(events: &[WalEvent]) -> Vec<WalRecordAt> {
    events
        .iter()
        .filter_map(|e| match e {
            WalEvent::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn frame_and_parse_every_padding() {
    for len in 0..=24usize {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let framed = frame_record(WalRecordKind::Entry, 0xdead_beef, &data);
        assert_eq!(framed.len() % 8, 0, "len {len}");
        let word = u64::from_le_bytes(framed[..8].try_into().unwrap());
        let body = usize::try_from(word & 0x00ff_ffff_ffff_ffff).unwrap();
        let pad = framed.len() - 8 - body;
        if pad == 0 {
            assert_eq!(word >> 56, 0);
        } else {
            assert_eq!(word >> 56, 0x80 | pad as u64);
        }
        let (rec, used) = parse_record(&framed).unwrap();
        assert_eq!(used, framed.len());
        assert_eq!(rec.kind, WalRecordKind::Entry);
        assert_eq!(rec.crc, 0xdead_beef);
        assert_eq!(rec.data, data);
        assert_eq!(rec.frame_len, framed.len() as u64);
        // Every strict prefix is incomplete, and says how much is needed.
        for cut in 0..framed.len() {
            let needed = if cut < 8 { 8 } else { framed.len() as u64 };
            assert_eq!(
                parse_record(&framed[..cut]),
                Err(WalError::Incomplete { needed }),
                "len {len} cut {cut}"
            );
        }
    }
}

#[test]
fn length_word_checks() {
    assert_eq!(parse_record(&[0u8; 16]), Err(WalError::EndOfData));
    // Padding bits without the padding flag.
    let word = (0x03u64 << 56) | 5;
    assert!(matches!(
        parse_record(&word.to_le_bytes()),
        Err(WalError::BadFrame { .. })
    ));
    // Padding that does not align the record.
    let word = (0x82u64 << 56) | 5;
    assert!(matches!(
        parse_record(&word.to_le_bytes()),
        Err(WalError::BadFrame { .. })
    ));
    // Reserved bits in the padding byte.
    let word = (0x8bu64 << 56) | 5;
    assert!(matches!(
        parse_record(&word.to_le_bytes()),
        Err(WalError::BadFrame { .. })
    ));
    let word = MAX_RECORD_BYTES + 8;
    assert!(matches!(
        parse_record(&word.to_le_bytes()),
        Err(WalError::TooLarge { .. })
    ));
    // A complete frame whose data is not a walpb.Record.
    let mut bad = 8u64.to_le_bytes().to_vec();
    bad.extend_from_slice(&[0xff; 8]);
    assert!(matches!(parse_record(&bad), Err(WalError::Record(_))));
}

#[test]
fn crc_chain_rules() {
    let mut enc = WalEncoder::new(0x1234_5678);
    let crc_rec = parse_record(&enc.crc_record()).unwrap().0;
    let a = parse_record(&enc.record(WalRecordKind::Entry, b"a"))
        .unwrap()
        .0;
    let b = parse_record(&enc.record(WalRecordKind::State, b"bb"))
        .unwrap()
        .0;
    assert_eq!(crc_rec.crc, 0x1234_5678);
    assert_eq!(a.crc, crc32c::crc32c_append(0x1234_5678, b"a"));

    let mut chain = WalCrc::new();
    assert_eq!(chain.feed(&crc_rec), None);
    assert_eq!(chain.feed(&a), Some(true));
    assert_eq!(chain.feed(&b), Some(true));
    assert_eq!(chain.current(), Some(enc.crc()));

    // Mid-file: the first record starts the chain.
    let mut chain = WalCrc::new();
    assert_eq!(chain.feed(&a), None);
    assert_eq!(chain.feed(&b), Some(true));

    // A crc record must carry the running value (unless the chain is zero).
    let mut chain = WalCrc::starting_at(0x1234_5678);
    assert_eq!(chain.feed(&crc_rec), Some(true));
    let mut chain = WalCrc::starting_at(7);
    assert_eq!(chain.feed(&crc_rec), Some(false));
    let mut chain = WalCrc::starting_at(0);
    assert_eq!(chain.feed(&crc_rec), None);

    // A bad record fails alone; the chain continues from its stored value.
    let mut bad_a = a.clone();
    bad_a.data = b"x".to_vec();
    let mut chain = WalCrc::starting_at(0x1234_5678);
    assert_eq!(chain.feed(&bad_a), Some(false));
    assert_eq!(chain.feed(&b), Some(true));
}

#[test]
fn whole_file_decodes_with_payloads() {
    let (mut file, offsets) = sample_file();
    let written = file.len() as u64;
    file.resize(file.len() + 4096, 0); // preallocated space
    let decoded = decode_wal_file(&file);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert!(decoded.end_of_data);
    assert_eq!(decoded.end_offset, written);
    let got: Vec<u64> = decoded.records.iter().map(|r| r.offset).collect();
    assert_eq!(got, offsets);
    assert_eq!(decoded.records[0].record.kind, WalRecordKind::Crc);
    assert_eq!(decoded.records[0].crc_ok, None);
    assert!(decoded.records[1..].iter().all(|r| r.crc_ok == Some(true)));

    let meta = decoded.records[1].record.decode_metadata().unwrap();
    assert_eq!(meta.cluster_id, 14841639068965178418);
    let snap = decoded.records[2].record.decode_snapshot().unwrap();
    assert_eq!((snap.index, snap.term), (0, 0));
    let entry = decoded.records[3].record.decode_entry().unwrap();
    assert_eq!((entry.term, entry.index), (2, 1));
    let Some(Ok(EntryRequest::Internal(req))) = entry.decode_request() else {
        panic!("entry data is not an InternalRaftRequest");
    };
    let summary = req.summary();
    assert_eq!(summary.op, "put");
    assert_eq!(summary.key, Some(&b"foo"[..]));
    assert_eq!(summary.value_len, Some(3));
    let state = decoded.records[4].record.decode_hard_state().unwrap();
    assert_eq!((state.term, state.commit), (2, 1));
    assert!(matches!(
        decoded.records[4].record.decode_entry(),
        Err(WalError::WrongKind { .. })
    ));
    assert!(matches!(
        decoded.records[4].record.decode().unwrap(),
        WalPayload::State(_)
    ));
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["Term"], "2");
    assert_eq!(json["Index"], "1");
    assert!(json.get("Type").is_none());
}

#[test]
fn file_cut_inside_a_record_reports_it() {
    let (file, offsets) = sample_file();
    let cut = usize::try_from(offsets[5]).unwrap() + 11;
    let decoded = decode_wal_file(&file[..cut]);
    assert_eq!(decoded.records.len(), 5);
    assert_eq!(decoded.end_offset, offsets[5]);
    assert!(!decoded.end_of_data);
    assert!(matches!(
        decoded.errors.as_slice(),
        [(off, WalError::Incomplete { .. })] if *off == offsets[5]
    ));
}

#[test]
fn stream_split_at_every_byte_matches_file_decode() {
    let (file, _) = sample_file();
    let expected = decode_wal_file(&file).records;
    for split in 0..=file.len() {
        let mut stream = WalStream::new();
        let mut events = stream.push(0, &file[..split]);
        events.extend(stream.push(split as u64, &file[split..]));
        events.extend(stream.finish());
        assert_eq!(records_of(&events), expected, "split {split}");
        assert_eq!(events.len(), expected.len(), "split {split}: {events:?}");
    }
    // Many small writes.
    for step in [1usize, 3, 7, 8, 13, 64] {
        let mut stream = WalStream::new();
        let mut events = Vec::new();
        for (i, chunk) in file.chunks(step).enumerate() {
            events.extend(stream.push((i * step) as u64, chunk));
        }
        events.extend(stream.finish());
        assert_eq!(records_of(&events), expected, "step {step}");
    }
}

#[test]
fn mid_file_start_resyncs_on_crc_proof() {
    let (file, offsets) = sample_file();
    let expected = decode_wal_file(&file).records;
    // Recording began at record 5's boundary: provable after record 6 verifies.
    let start = offsets[5];
    let mut stream = WalStream::new();
    let events = stream.push(start, &file[usize::try_from(start).unwrap()..]);
    assert_eq!(
        events[0],
        WalEvent::Gap {
            start: 0,
            end: start
        }
    );
    let recs = records_of(&events);
    assert_eq!(recs.len(), expected.len() - 5);
    assert_eq!(recs[0].offset, start);
    assert_eq!(recs[0].crc_ok, None);
    assert!(recs[1..].iter().all(|r| r.crc_ok == Some(true)));
    assert_eq!(recs[1..], expected[6..]);
    assert!(stream.is_synced());

    // A single record at a candidate boundary cannot be proven on its own.
    let mut stream = WalStream::new();
    let (a, b) = (
        usize::try_from(offsets[5]).unwrap(),
        usize::try_from(offsets[6]).unwrap(),
    );
    let events = stream.push(offsets[5], &file[a..b]);
    assert!(records_of(&events).is_empty());
    assert!(!stream.is_synced());
    // ... until the next contiguous write brings the proof.
    let events = stream.push(offsets[6], &file[b..]);
    assert_eq!(records_of(&events).len(), expected.len() - 5);

    let mut stream = WalStream::new();
    stream.push(offsets[5], &file[a..b]);
    let events = stream.finish();
    assert_eq!(
        events,
        vec![WalEvent::Skipped {
            start: offsets[5],
            end: offsets[6],
            reason: SkipReason::Unproven
        }]
    );
}

#[test]
fn write_starting_inside_a_record_is_not_trusted() {
    let (file, offsets) = sample_file();
    // Find an 8-aligned offset strictly inside a record.
    let inside = offsets[7] + 8;
    assert!(inside < offsets[8]);
    let mut stream = WalStream::new();
    let from = usize::try_from(inside).unwrap();
    let to = usize::try_from(offsets[9]).unwrap();
    let events = stream.push(inside, &file[from..to]);
    assert!(records_of(&events).is_empty(), "{events:?}");
    // An unaligned write is skipped outright.
    let events = stream.push(offsets[9] + 3, &file[to + 3..to + 10]);
    assert!(events.contains(&WalEvent::Skipped {
        start: offsets[9] + 3,
        end: offsets[9] + 10,
        reason: SkipReason::Unaligned
    }));
    // The next write at a real boundary resyncs.
    let resume = usize::try_from(offsets[10]).unwrap();
    let events = stream.push(offsets[10], &file[resume..]);
    let recs = records_of(&events);
    assert_eq!(recs.first().map(|r| r.offset), Some(offsets[10]));
    assert_eq!(recs.len(), offsets.len() - 10);
}

#[test]
fn gap_between_writes_is_reported_and_resynced() {
    let (file, offsets) = sample_file();
    let o = |i: usize| usize::try_from(offsets[i]).unwrap();
    let mut stream = WalStream::new();
    let mut events = stream.push(0, &file[..o(5) + 12]); // ends inside record 5
    events.extend(stream.push(offsets[7], &file[o(7)..]));
    events.extend(stream.finish());
    assert!(events.contains(&WalEvent::Gap {
        start: offsets[5] + 12,
        end: offsets[7]
    }));
    assert!(events.contains(&WalEvent::Error {
        offset: offsets[5],
        error: WalError::Incomplete {
            needed: offsets[6] - offsets[5]
        }
    }));
    let got: Vec<u64> = records_of(&events).iter().map(|r| r.offset).collect();
    let want: Vec<u64> = offsets[..5].iter().chain(&offsets[7..]).copied().collect();
    assert_eq!(got, want);
}

#[test]
fn bad_crc_is_reported_per_record() {
    let (mut file, offsets) = sample_file();
    // Change one byte of record 5's value: still valid protobuf, wrong CRC.
    let at = usize::try_from(offsets[6]).unwrap() - 8;
    let rec_end = file[..at].iter().rposition(|&b| b == b'v').unwrap();
    file[rec_end] = b'w';
    let decoded = decode_wal_file(&file);
    assert!(decoded.errors.is_empty());
    let verdicts: Vec<Option<bool>> = decoded.records.iter().map(|r| r.crc_ok).collect();
    let bad: Vec<usize> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == Some(false))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, vec![5]);
    assert_eq!(verdicts[6], Some(true));
}

#[test]
fn corrupt_length_word_stops_then_next_write_resyncs() {
    let (mut file, offsets) = sample_file();
    let o = |i: usize| usize::try_from(offsets[i]).unwrap();
    file[o(4) + 7] = 0x7f; // padding bits without the flag
    let mut stream = WalStream::new();
    let mut events = stream.push(0, &file[..o(8)]);
    assert!(matches!(
        events.iter().find(|e| matches!(e, WalEvent::Error { .. })),
        Some(WalEvent::Error { offset, error: WalError::BadFrame { .. } }) if *offset == offsets[4]
    ));
    assert!(events.contains(&WalEvent::Skipped {
        start: offsets[4],
        end: offsets[8],
        reason: SkipReason::AfterError
    }));
    events.extend(stream.push(offsets[8], &file[o(8)..]));
    let got: Vec<u64> = records_of(&events).iter().map(|r| r.offset).collect();
    let want: Vec<u64> = offsets[..4].iter().chain(&offsets[8..]).copied().collect();
    assert_eq!(got, want);
}

#[test]
fn torn_write_is_recognised() {
    let (file, offsets) = sample_file();
    let mut enc = WalEncoder::new(decode_wal_file(&file).records.last().unwrap().record.crc);
    let big = enc.record(
        WalRecordKind::Entry,
        &put_entry(2, 7, b"big", &vec![b'x'; 2000]),
    );
    let mut torn = file.clone();
    torn.extend_from_slice(&big);
    // The crash left the record's second half as zeros (sectors never written).
    let half = file.len() + big.len() / 2;
    torn[half..].fill(0);
    let decoded = decode_wal_file(&torn);
    assert_eq!(decoded.records.len(), offsets.len());
    assert!(
        matches!(
            decoded.errors.as_slice(),
            [(off, WalError::TornWrite { .. })] if *off == file.len() as u64
        ),
        "{:?}",
        decoded.errors
    );
}

#[test]
fn torn_write_with_only_the_length_word_is_recognised() {
    let (file, offsets) = sample_file();
    let mut enc = WalEncoder::new(decode_wal_file(&file).records.last().unwrap().record.crc);
    let next = enc.record(WalRecordKind::State, &hard_state(2, 9));
    let mut torn = file.clone();
    torn.extend_from_slice(&next[..8]);
    torn.resize(file.len() + next.len(), 0);
    let decoded = decode_wal_file(&torn);
    assert_eq!(decoded.records.len(), offsets.len());
    assert_eq!(
        decoded.errors,
        vec![(
            file.len() as u64,
            WalError::TornWrite {
                sector_offset: file.len() as u64 + 8
            }
        )]
    );
}

#[test]
fn rewrite_at_a_known_boundary_rewinds() {
    let (file, offsets) = sample_file();
    let o = |i: usize| usize::try_from(offsets[i]).unwrap();
    let mut stream = WalStream::new();
    let first = stream.push(0, &file);
    assert_eq!(records_of(&first).len(), offsets.len());
    // etcd truncates back to record 7 and writes the same records again.
    let events = stream.push(offsets[7], &file[o(7)..]);
    assert_eq!(events[0], WalEvent::Rewind { offset: offsets[7] });
    let recs = records_of(&events);
    assert_eq!(recs.len(), offsets.len() - 7);
    assert!(recs.iter().all(|r| r.crc_ok == Some(true)));
}

#[test]
fn zero_terminator_in_stream() {
    let (file, _) = sample_file();
    let mut stream = WalStream::new();
    let mut bytes = file.clone();
    bytes.extend_from_slice(&[0u8; 64]);
    let events = stream.push(0, &bytes);
    assert_eq!(
        events.last(),
        Some(&WalEvent::EndOfData {
            offset: file.len() as u64
        })
    );
    // The next record written over the preallocated space decodes.
    let mut enc = WalEncoder::new(decode_wal_file(&file).records.last().unwrap().record.crc);
    let next = enc.record(WalRecordKind::State, &hard_state(3, 9));
    let events = stream.push(file.len() as u64, &next);
    let recs = records_of(&events);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].crc_ok, Some(true));
}

/// The first 712 bytes of a WAL written by etcd 3.4.23 (single member, bootstrap,
/// then `etcdctl put foo bar`): crc, metadata, snapshot, the conf change that adds
/// the member, the v2 publish and cluster version requests, then the put.
const ETCD_34_WAL_HEX: &[&str] = &[
        "040000000000008408041000000000001f00000000000081080110c0eee05a1a16088df2f48ec1f7a6d7bd0110aaf4e5",
        "f599f3ebe7d101000d00000000000083080510b6f7e4581a04080010000000006f000000000000810802109eda8cd90f",
        "1a65080110011801225d08001000188df2f48ec1f7a6d7bd01224c7b226964223a313336363830333331353131373139",
        "30313730392c227065657255524c73223a5b22687474703a2f2f3132372e302e302e313a3233383031225d2c226e616d",
        "65223a2274227d001000000000000000080310f192df9e0c1a060801100018011000000000000000080210a3c0aaec07",
        "1a060800100218021900000000000087080310aff0ecd7061a0f0802108df2f48ec1f7a6d7bd01180200000000000000",
        "9800000000000000080210ac8fd8de0e1a8d010800100218032284010881e0bbdcb4c4e8863912035055541a262f302f",
        "6d656d626572732f626461653962626331316464333930642f6174747269627574657322347b226e616d65223a227422",
        "2c22636c69656e7455524c73223a5b22687474703a2f2f3132372e302e302e313a3233373931225d7d28003200380048",
        "00500058006000680070007800800100190000000000008708031088e5fce4011a0f0802108df2f48ec1f7a6d7bd0118",
        "03000000000000004b00000000000085080210c5e8c382051a4108001002180422390884e0bbdcb4c4e8863912035055",
        "541a0a2f302f76657273696f6e2205332e342e3028003200380048005000580060006800700078008001000000000000",
        "19000000000000870803108fd1c58a0b1a0f0802108df2f48ec1f7a6d7bd011804000000000000002b00000000000085",
        "080210f7aeb8c70d1a210800100218052219220a0a03666f6f1203626172a2060a0885e0bbdcb4c4e886390000000000",
        "1900000000000087080310e8f9e1a80d1a0f0802108df2f48ec1f7a6d7bd01180500000000000000",
];

fn etcd_34_wal() -> Vec<u8> {
    let hex: String = ETCD_34_WAL_HEX.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn real_etcd_34_wal_decodes_and_reencodes_byte_for_byte() {
    let file = etcd_34_wal();
    let decoded = decode_wal_file(&file);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let offsets: Vec<u64> = decoded.records.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        [0, 16, 56, 80, 200, 224, 248, 288, 448, 488, 576, 616, 672]
    );
    assert_eq!(decoded.end_offset, 712);
    assert_eq!(decoded.records[0].crc_ok, None);
    assert!(decoded.records[1..].iter().all(|r| r.crc_ok == Some(true)));
    // Our framing reproduces etcd's bytes exactly.
    for r in &decoded.records {
        let start = usize::try_from(r.offset).unwrap();
        let end = usize::try_from(r.end_offset()).unwrap();
        assert_eq!(
            frame_record(r.record.kind, r.record.crc, &r.record.data),
            &file[start..end],
            "record at {}",
            r.offset
        );
    }
    let entry = |i: usize| decoded.records[i].record.decode_entry().unwrap();
    assert!(matches!(
        entry(3).decode_conf_change(),
        Some(Ok(ConfChangeEntry::V1(ConfChange { node_id, .. }))) if node_id == 13668033151171901709
    ));
    let Some(Ok(EntryRequest::V2(publish))) = entry(7).decode_request() else {
        panic!("index 3 is the v2 member publish");
    };
    assert_eq!(publish.path, "/0/members/bdae9bbc11dd390d/attributes");
    let put = entry(11);
    assert_eq!((put.term, put.index), (2, 5));
    let Some(Ok(EntryRequest::Internal(req))) = put.decode_request() else {
        panic!("index 5 is the put");
    };
    assert_eq!(req.summary().key, Some(&b"foo"[..]));
    // PROTOCOLS.md: the put's write() is 96 bytes, an entry and a HardState.
    assert_eq!(
        decoded.records[11].record.frame_len + decoded.records[12].record.frame_len,
        96
    );
}

#[test]
fn real_wal_resync_only_at_true_boundaries() {
    let file = etcd_34_wal();
    let whole = decode_wal_file(&file).records;
    for start in (8..file.len()).step_by(8) {
        let mut stream = WalStream::new();
        let mut events = stream.push(start as u64, &file[start..]);
        events.extend(stream.finish());
        let recs = records_of(&events);
        match whole.iter().position(|r| r.offset == start as u64) {
            Some(i) if i + 1 < whole.len() => {
                // Proven by the next record: everything from here on, the first
                // one unverifiable.
                assert_eq!(recs.len(), whole.len() - i, "start {start}");
                assert_eq!(recs[0].crc_ok, None);
                assert_eq!(recs[1..], whole[i + 1..], "start {start}");
            }
            _ => assert!(recs.is_empty(), "false resync at {start}: {recs:?}"),
        }
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let (file, _) = sample_file();
    for round in 0..400 {
        let mut bytes = if round % 2 == 0 {
            (0..rng.index(300))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
        } else {
            file.clone()
        };
        for _ in 0..=rng.index(6) {
            if !bytes.is_empty() {
                let at = rng.index(bytes.len());
                bytes[at] = rng.next() as u8;
            }
        }
        let _ = parse_record(&bytes);
        let decoded = decode_wal_file(&bytes);
        for r in &decoded.records {
            if let Ok(WalPayload::Entry(e)) = r.record.decode() {
                let _ = e.decode_request();
                let _ = e.decode_conf_change();
            }
        }
        // Random writes: offsets jump around, overlap and go backwards.
        let mut stream = WalStream::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let len = 1 + rng.index(40);
            let end = (pos + len).min(bytes.len());
            let offset = match rng.index(8) {
                0 => rng.next() % 4096,
                1 => u64::MAX - rng.next() % 8,
                _ => pos as u64,
            };
            let _ = stream.push(offset, &bytes[pos..end]);
            pos = end;
        }
        let _ = stream.finish();
        let mut chain = SegmentChain::new();
        let _ = chain.next(seg(0, 0), &bytes);
        let _ = chain.next(seg(1, 0), &bytes);
    }
}

/// A segment file as etcd writes it, continuing `enc`'s chain: `count` puts from
/// `first`, then `prealloc` zero bytes. Returns the bytes and the offset of every record.
fn segment(enc: &mut WalEncoder, first: u64, count: u64, prealloc: usize) -> (Vec<u8>, Vec<u64>) {
    let mut b = FileBuilder::new(enc.clone(), 0x8e9e_05c5_2164_694d, 7);
    b.puts(first..=first + count - 1, |_| 40);
    *enc = b.enc;
    b.out.resize(b.out.len() + prealloc, 0);
    (b.out, b.offsets)
}

fn seg(seq: u64, index: u64) -> SegmentName {
    SegmentName { seq, index }
}

/// The decode of a segment `name` read after the first one (sequence number 0).
fn after_first(first: &[u8], name: SegmentName, bytes: &[u8]) -> SegmentDecode {
    let mut chain = SegmentChain::new();
    chain.next(seg(0, 0), first);
    chain.next(name, bytes)
}

#[test]
fn segment_names() {
    let name = SegmentName::parse("000000000000000a-00000000000000ff.wal").unwrap();
    assert_eq!(name, seg(10, 255));
    assert_eq!(name.to_string(), "000000000000000a-00000000000000ff.wal");
    for other in [
        "0.tmp",
        "000000000000000a-00000000000000ff.wal.broken",
        "a-ff.wal",
        "000000000000000g-00000000000000ff.wal",
        "+00000000000000a-00000000000000ff.wal",
    ] {
        assert_eq!(SegmentName::parse(other), None, "{other}");
    }
}

#[test]
fn chain_across_two_files() {
    let mut enc = WalEncoder::new(0);
    let (first, _) = segment(&mut enc, 1, 5, 4096);
    let end_of_first = enc.crc();
    let (second, _) = segment(&mut enc, 6, 5, 4096);
    let mut chain = SegmentChain::new();
    let a = chain.next(seg(0, 0), &first);
    let b = chain.next(seg(1, 6), &second);
    for d in [&a, &b] {
        assert!(d.breaks.is_empty(), "{:?}", d.breaks);
        assert!(matches!(d.end, SegmentEnd::Preallocated { .. }));
        assert_eq!(d.records.len(), 12);
        assert!(d.records[1..].iter().all(|r| r.crc_ok == Some(true)));
    }
    // The second file's head carries the first's chain, and is checked against it.
    assert_eq!(b.records[0].record.crc, end_of_first);
    assert_eq!(b.records[0].crc_ok, Some(true));

    // A second file that carries another value breaks the chain at its head; its own
    // records still verify among themselves.
    let (other, _) = segment(&mut WalEncoder::new(0xdead_beef), 6, 5, 0);
    let b = after_first(&first, seg(1, 6), &other);
    assert_eq!(
        b.breaks,
        vec![ChainBreak {
            offset: 0,
            kind: BreakKind::CarriedCrc {
                expected: end_of_first,
                found: 0xdead_beef
            },
            resumes_at: Some(b.records[1].offset),
        }]
    );
    assert_eq!(b.records[0].crc_ok, Some(false));
    assert!(b.records[1..].iter().all(|r| r.crc_ok == Some(true)));
    assert_eq!(
        b.end,
        SegmentEnd::EndOfFile {
            offset: other.len() as u64
        }
    );
}

#[test]
fn how_a_segment_ends() {
    let (file, _) = segment(&mut WalEncoder::new(0), 1, 2, 0);
    let end = |bytes: &[u8]| SegmentChain::new().next(seg(0, 0), bytes).end;
    let len = file.len() as u64;
    assert_eq!(end(&file), SegmentEnd::EndOfFile { offset: len });
    for zeros in [3, 8, 4096] {
        let mut padded = file.clone();
        padded.resize(file.len() + zeros, 0);
        assert_eq!(
            end(&padded),
            SegmentEnd::Preallocated { offset: len },
            "{zeros}"
        );
    }
    let mut odd = file.clone();
    odd.extend_from_slice(&[0, 0, 7]);
    assert!(matches!(end(&odd), SegmentEnd::Tail { offset, bytes: 3, .. } if offset == len));
}

#[test]
fn torn_last_write_is_the_tail() {
    let mut enc = WalEncoder::new(0);
    let (mut file, offsets) = segment(&mut enc, 1, 5, 0);
    let written = file.len();
    let big = enc.record(
        WalRecordKind::Entry,
        &put_entry(2, 6, b"big", &vec![b'x'; 3000]),
    );
    file.extend_from_slice(&big);
    // The crash wrote the record's first sector only.
    let torn_from = (written + 8).next_multiple_of(512);
    file[torn_from..].fill(0);
    file.resize(file.len() + 8192, 0);
    let d = SegmentChain::new().next(seg(0, 0), &file);
    assert!(d.breaks.is_empty(), "{:?}", d.breaks);
    assert_eq!(d.records.len(), offsets.len());
    assert_eq!(
        d.end,
        SegmentEnd::Tail {
            offset: written as u64,
            bytes: (torn_from - written) as u64,
            error: WalError::TornWrite {
                sector_offset: torn_from as u64
            }
        }
    );
}

#[test]
fn flipped_byte_mid_file_breaks_one_record() {
    let mut enc = WalEncoder::new(0);
    let (mut file, offsets) = segment(&mut enc, 1, 6, 1024);
    let o = |i: usize| usize::try_from(offsets[i]).unwrap();
    // A byte of record 6's value: the record decodes, its CRC does not match.
    let at = file[..o(7)].iter().rposition(|&b| b == b'v').unwrap();
    assert!(at > o(6));
    file[at] = b'w';
    let d = SegmentChain::new().next(seg(0, 0), &file);
    let [ChainBreak {
        offset,
        kind:
            BreakKind::RecordCrc {
                kind,
                expected,
                found,
            },
        resumes_at,
    }] = d.breaks.as_slice()
    else {
        panic!("{:?}", d.breaks);
    };
    assert_eq!(
        (*offset, *kind, *resumes_at),
        (offsets[6], "entry", Some(offsets[7]))
    );
    assert_eq!(*found, d.records[6].record.crc);
    assert_eq!(
        *expected,
        crc32c::crc32c_append(d.records[5].record.crc, &d.records[6].record.data)
    );
    assert_eq!(d.records.len(), offsets.len());
    assert_eq!(d.records[6].crc_ok, Some(false));
    assert!(d.records[7..].iter().all(|r| r.crc_ok == Some(true)));

    // A flipped length word: the record is lost, the scan finds the next proven one.
    let (mut file, offsets) = segment(&mut WalEncoder::new(0), 1, 6, 1024);
    file[o(6) + 7] = 0x7f;
    let d = SegmentChain::new().next(seg(0, 0), &file);
    assert!(
        matches!(
            d.breaks.as_slice(),
            [ChainBreak {
                kind: BreakKind::Undecodable(WalError::BadFrame { .. }),
                resumes_at: Some(r),
                offset,
            }] if *r == offsets[7] && *offset == offsets[6]
        ),
        "{:?}",
        d.breaks
    );
    let got: Vec<u64> = d.records.iter().map(|r| r.offset).collect();
    let want: Vec<u64> = offsets[..6].iter().chain(&offsets[7..]).copied().collect();
    assert_eq!(got, want);
    assert_eq!(d.records[6].crc_ok, None);
    assert!(matches!(d.end, SegmentEnd::Preallocated { .. }));
}

#[test]
fn missing_middle_file_is_said() {
    let mut enc = WalEncoder::new(0);
    let (first, _) = segment(&mut enc, 1, 3, 0);
    segment(&mut enc, 4, 3, 0);
    let (third, _) = segment(&mut enc, 7, 3, 0);
    let d = after_first(&first, seg(2, 7), &third);
    assert_eq!(
        d.breaks,
        vec![ChainBreak {
            offset: 0,
            kind: BreakKind::MissingSegments { after: 0 },
            resumes_at: None
        }]
    );
    assert_eq!(d.records[0].crc_ok, None);
    assert!(d.records[1..].iter().all(|r| r.crc_ok == Some(true)));
}

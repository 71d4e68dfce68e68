//! The WAL rebuilt from a capture agrees with the WAL files etcd left on disk.
#![cfg(feature = "record")]

mod common;

use std::collections::BTreeMap;

use common::*;
use etcd_trace::decode::wal::{decode_wal_file, WalPayload};

#[test]
fn captured_wal_matches_the_files_on_disk() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("wal");
    let rec = rig.record(&[]);
    for i in 0..30 {
        rig.etcdctl(&["put", &format!("/wal/key-{i}"), &"x".repeat(i * 10)]);
    }
    rig.etcdctl(&["del", "/wal/key-3"]);
    rig.etcdctl(&["lease", "grant", "60"]);
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    // What the capture says: (term, index) -> (op, key).
    let out = etcd_trace(&["wal", "--format", "json", rig.capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut captured = BTreeMap::new();
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let d = &v["detail"];
        let key = (d["term"].as_u64().unwrap(), d["index"].as_u64().unwrap());
        let op = d["request"]["op"].as_str().unwrap_or("").to_string();
        let k = d["request"]["key"].as_str().unwrap_or("").to_string();
        captured.insert(key, (op, k));
    }
    assert!(captured.len() >= 32, "{} entries captured", captured.len());

    // What etcd wrote: decode the WAL files directly.
    let wal_dir = rig.etcd.data_dir.join("member/wal");
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(&wal_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wal") {
            continue;
        }
        let decoded = decode_wal_file(&std::fs::read(&path).unwrap());
        for r in decoded.records {
            if let Ok(WalPayload::Entry(e)) = r.record.decode() {
                on_disk.insert((e.term, e.index), e);
            }
        }
    }
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for ((term, index), (op, key)) in &captured {
        let e = on_disk
            .get(&(*term, *index))
            .unwrap_or_else(|| panic!("entry {term}/{index} from the capture is not on disk"));
        if op == "put" || op == "delete_range" {
            let req = e.decode_request().unwrap().unwrap();
            let etcd_trace::decode::etcdpb::raft_internal::EntryRequest::Internal(i) = req else {
                panic!("v3 request expected")
            };
            let s = i.summary();
            assert_eq!(s.op, op);
            assert_eq!(b64.encode(s.key.unwrap_or_default()), *key);
        }
    }
    // Every entry etcd appended while recording is in the capture.
    let first = *captured.keys().next().unwrap();
    let missing: Vec<_> = on_disk
        .keys()
        .filter(|k| **k >= first && !captured.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "on disk but not captured: {missing:?}");
}

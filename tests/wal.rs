//! The WAL rebuilt from a capture agrees with the WAL files etcd left on disk.
#![cfg(feature = "record")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use etcd_trace::decode::wal::{decode_wal_file, WalPayload};
use etcd_trace::sandbox::EtcdCluster;

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

/// The WAL records of `etcd-trace wal --all --format json PATH`, and its stderr.
fn wal_records(path: &Path) -> (Vec<serde_json::Value>, String) {
    let out = etcd_trace(&["wal", "--all", "--format", "json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (records, stderr(&out))
}

/// One member's records by where they are: (file name, offset).
fn by_place(records: &[serde_json::Value]) -> BTreeMap<(String, u64), &serde_json::Value> {
    records
        .iter()
        .map(|v| {
            let file = Path::new(v["file"].as_str().unwrap());
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            ((name, v["offset"].as_u64().unwrap()), v)
        })
        .collect()
}

/// `wal DATA_DIR` reads what etcd left on disk the way `wal CAPTURE` reads what the
/// recorder saw written: every record the capture has is on disk, the same.
#[test]
fn wal_of_the_data_dir_agrees_with_the_capture() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("wal-dir");
    let rec = rig.record(&[]);
    for i in 0..20 {
        rig.etcdctl(&["put", &format!("/dir/key-{i}"), &"y".repeat(i * 7)]);
    }
    rig.etcdctl(&["del", "--prefix", "/dir/key-1"]);
    rig.etcdctl(&["lease", "grant", "60"]);
    let txn =
        "value(\"/dir/key-2\") = \"yyyyyyyyyyyyyy\"\n\nput /dir/txn yes\n\nput /dir/txn no\n\n";
    let out = rig.etcdctl_with_input(&["txn"], txn);
    assert!(out.status.success(), "{}", stderr(&out));
    rig.etcdctl(&["compaction", "5"]);
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    let Rig {
        dir: _dir,
        etcd,
        capture,
        ..
    } = rig;
    let data_dir = etcd.data_dir.clone();
    drop(etcd); // stopped: what is on disk is final

    let (captured, _) = wal_records(&capture);
    let (on_disk, notes) = wal_records(&data_dir);
    assert!(notes.contains("CRC chain intact"), "{notes}");
    let entries = captured.iter().filter(|v| v["record"] == "entry").count();
    assert!(entries >= 24, "{entries} entries captured");
    let (captured, on_disk) = (by_place(&captured), by_place(&on_disk));
    for (at, seen) in &captured {
        let disk = on_disk
            .get(at)
            .unwrap_or_else(|| panic!("{at:?} from the capture is not on disk"));
        // term, index, type and request of entries; the HardStates too.
        assert_eq!(seen["record"], disk["record"], "{at:?}");
        assert_eq!(seen["detail"], disk["detail"], "{at:?}");
        assert_eq!(disk["crc_ok"], true, "{at:?}");
        assert!(disk["write_ts_ns"].is_null());
    }
    // On disk, every record names the member by its ID, as the metadata record gives
    // it (the capture, begun after the file's head, knows only the process).
    let member = on_disk.values().next().unwrap()["member"].clone();
    assert!(
        member.as_str().is_some_and(|m| !m.starts_with("pid:")),
        "{member}"
    );
    assert!(on_disk.values().all(|v| v["member"] == member));

    // A member dir, the member/wal dir and the segment file itself read the same.
    let whole = etcd_trace(&["wal", data_dir.to_str().unwrap()]);
    for path in [
        data_dir.join("member"),
        data_dir.join("member/wal"),
        data_dir.join("member/wal/0000000000000000-0000000000000000.wal"),
    ] {
        let out = etcd_trace(&["wal", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), stdout(&whole), "{}", path.display());
    }
}

/// Three members of one cluster on one host, recorded by one recorder: their WAL files
/// have the same relative paths. Each member's WAL comes out apart, once, each record
/// the same as in that member's data dir, and a write is linked to the WAL copy of the
/// member that served it.
#[test]
fn members_recorded_together_are_kept_apart() {
    if skip_without_root() {
        return;
    }
    let dir = ScratchDir::new("etcd-trace-test-wal-members").unwrap();
    let netns = Netns::create().unwrap();
    let cluster = EtcdCluster::start(&netns, &dir.0, 3, &EtcdOptions::default()).unwrap();
    let capture = dir.0.join("members.etr");
    let mut args = vec!["-o".to_string(), capture.display().to_string()];
    for m in &cluster.members {
        args.extend(["--pid".to_string(), m.pid().to_string()]);
        for port in [m.client_port, m.peer_port] {
            args.extend(["--port".to_string(), port.to_string()]);
        }
    }
    let rec = RecorderProcess::start(&bin(), &args).unwrap();
    // Each member serves some of the writes.
    let puts = 12;
    for i in 0..puts {
        let m = &cluster.members[i % 3];
        etcdctl_ok(m, &netns, &["put", &format!("/members/k{i}"), "v"]);
    }
    let log = stop_cleanly(rec);
    let pids: Vec<u32> = cluster.members.iter().map(|m| m.pid()).collect();
    let data_dirs: Vec<_> = cluster.members.iter().map(|m| m.data_dir.clone()).collect();
    let client_ports: Vec<u16> = cluster.members.iter().map(|m| m.client_port).collect();
    drop(cluster); // stopped: what is on disk is final

    let (captured, notes) = wal_records(&capture);
    // Recording began mid-file: the bytes before are a gap, but nothing written while
    // recording is left undecoded.
    assert!(!notes.contains("could not be decoded"), "{log}\n{notes}");
    for (pid, data_dir) in pids.iter().zip(&data_dirs) {
        let member = format!("pid:{pid}");
        let (on_disk, _) = wal_records(data_dir);
        let on_disk = by_place(&on_disk);
        let id = on_disk.values().next().unwrap()["member"].clone();
        let mine: Vec<serde_json::Value> = captured
            .iter()
            .filter(|v| v["member"] == member.as_str() || v["member"] == id)
            .cloned()
            .collect();
        let mut keys = Vec::new();
        let mut seen = 0;
        for ((file, offset), v) in by_place(&mine) {
            let disk = on_disk[&(file.clone(), offset)];
            assert_eq!(v["detail"], disk["detail"], "{member} {file} {offset}");
            if v["record"] == "entry" {
                let d = &v["detail"];
                keys.push((d["term"].as_u64(), d["index"].as_u64()));
                seen += usize::from(d["request"]["op"] == "put");
            }
        }
        // Every put once in each member's WAL, no entry twice.
        assert_eq!(seen, puts, "{member}: {keys:?}\n{notes}");
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{member}");
    }

    // Text names whose each record, link and disk phase is.
    let text = |args: &[&str]| {
        let out = etcd_trace(args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let capture_path = capture.to_str().unwrap();
    let wal = text(&["wal", capture_path]);
    assert!(wal.lines().next().unwrap().contains("member"), "{wal}");
    for pid in &pids {
        assert!(wal.contains(&format!(" pid:{pid} ")), "{wal}");
    }
    let correlate = text(&["correlate", capture_path]);
    assert!(correlate.contains(" of pid:"), "{correlate}");
    let timeline = text(&["timeline", capture_path]);
    assert!(timeline.contains(".wal of pid:"), "{timeline}");

    // Each put links to the WAL copy of the member whose client port served it.
    let calls = correlate_json(&capture);
    let mut linked = 0;
    for c in calls.iter().filter(|c| c["op"] == "put") {
        let port: u16 = c["server"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let served_by = pids[client_ports
            .iter()
            .position(|&p| p == port)
            .unwrap_or_else(|| panic!("no member serves port {port}: {c}"))];
        let member = c["wal"]["member"].as_str().unwrap_or_default();
        assert_eq!(member, format!("pid:{served_by}"), "{c}");
        linked += 1;
    }
    assert_eq!(linked, puts);
}

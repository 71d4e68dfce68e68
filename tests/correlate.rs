//! correlate on real captures: writes linked to their WAL entry and fsync; partial
//! captures give reasons, never wrong links.
#![cfg(feature = "record")]

mod common;

use std::collections::HashMap;

use common::*;

/// Several writers at once, each a stream of etcdctl puts and deletes; every third value
/// is 3 KB, so that one WAL batch is larger than 4 KiB.
fn concurrent_writes(rig: &Rig, writers: usize, each: usize) {
    std::thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || {
                for i in 0..each {
                    let key = format!("/c/{w}/{i}");
                    let value = if i % 3 == 0 {
                        "x".repeat(3000)
                    } else {
                        format!("v{i}")
                    };
                    rig.etcdctl(&["put", &key, &value]);
                    if i % 5 == 4 {
                        rig.etcdctl(&["del", &key]);
                    }
                }
            });
        }
    });
}

#[test]
fn acknowledged_writes_link_to_wal_entry_and_fsync() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("correlate");
    let rec = rig.record(&[]);
    concurrent_writes(&rig, 6, 15);
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    let calls = correlate_json(&rig.capture);
    let acked: Vec<_> = calls.iter().filter(|c| c["status"] == 0).collect();
    assert!(acked.len() >= 6 * 15, "{} acknowledged writes", acked.len());
    let mut linked = 0;
    let mut seen_index = HashMap::new();
    for c in &acked {
        let wal = &c["wal"];
        if wal.is_null() {
            continue;
        }
        let reply = c["reply_ts_ns"].as_u64().unwrap();
        let fsync = wal["fsync_ts_ns"].as_u64();
        if fsync.is_some_and(|f| f <= reply) {
            linked += 1;
        }
        // No two calls share an entry.
        let idx = wal["index"].as_u64().unwrap();
        assert!(
            seen_index.insert(idx, c["key"].clone()).is_none(),
            "entry {idx} linked twice"
        );
    }
    assert!(
        linked * 100 >= acked.len() * 99,
        "{linked} of {} acknowledged writes linked to a WAL entry and an fsync before the reply",
        acked.len()
    );

    // The links agree with the WAL itself: the entry at that index holds that key.
    let wal = etcd_trace(&["wal", "--format", "json", rig.capture.to_str().unwrap()]);
    let mut entry_keys = HashMap::new();
    for line in stdout(&wal).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        entry_keys.insert(
            v["detail"]["index"].as_u64().unwrap(),
            v["detail"]["request"]["key"].clone(),
        );
    }
    for (idx, key) in &seen_index {
        assert_eq!(entry_keys.get(idx), Some(key), "entry {idx}");
    }

    let text = etcd_trace(&["correlate", rig.capture.to_str().unwrap()]);
    assert!(
        stdout(&text).contains("linked to their WAL entry"),
        "{}",
        stdout(&text)
    );
}

/// With almost nothing of each WAL write kept, entries cannot be decoded: every write is
/// reported unlinked with the reason, none linked wrongly.
#[test]
fn a_capture_without_wal_data_gives_reasons_not_wrong_links() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("correlate-gaps");
    let rec = rig.record(&["--file-data", "8"]);
    concurrent_writes(&rig, 2, 5);
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    let calls = correlate_json(&rig.capture);
    let writes: Vec<_> = calls.iter().filter(|c| !c["op"].is_null()).collect();
    assert!(writes.len() >= 10);
    for c in writes {
        assert!(c["wal"].is_null(), "linked without WAL data: {c}");
        assert_eq!(c["unlinked"], "no_wal_entry", "{c}");
    }
    let out = etcd_trace(&["wal", rig.capture.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("not decoded") || stderr(&out).contains("never seen"),
        "{}",
        stderr(&out)
    );
}

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

/// Puts up to etcd's largest request are kept whole in the WAL writes that carry them
/// (one event per 64 KiB, joined by the recorder) and linked like any other.
#[test]
fn large_puts_link_to_their_whole_wal_entries() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("largeputs");
    let rec = rig.record(&[]);
    let sizes = [200_000usize, 700_000, 1_400_000];
    for (i, size) in sizes.iter().enumerate() {
        let value: String = (0..*size)
            .map(|j| (b'a' + (j % 26) as u8) as char)
            .collect();
        let out = rig.etcdctl_with_input(&["put", &format!("/big/{i}")], &value);
        assert!(out.status.success(), "{}", stderr(&out));
        rig.etcdctl(&["put", &format!("/small/{i}"), "v"]);
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("lost 0 events"), "{log}");
    assert!(
        log.contains("parts of WAL writes longer than one event") && !log.contains("could not be"),
        "{log}"
    );

    let calls = correlate_json(&rig.capture);
    let puts: Vec<_> = calls
        .iter()
        .filter(|c| c["method"].as_str().is_some_and(|m| m.ends_with("/Put")))
        .collect();
    assert_eq!(puts.len(), 2 * sizes.len(), "{puts:?}");
    let mut big_entries = Vec::new();
    for c in &puts {
        let wal = &c["wal"];
        assert!(!wal.is_null(), "not linked: {c}");
        assert!(
            wal["fsync_ts_ns"].as_u64() <= c["reply_ts_ns"].as_u64(),
            "no fsync before the reply: {c}"
        );
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(c["key"].as_str().unwrap())
            .unwrap();
        if key.starts_with(b"/big/") {
            big_entries.push(wal["index"].as_u64().unwrap());
        }
    }
    // The WAL holds each value whole.
    let wal = etcd_trace(&["wal", "--format", "json", rig.capture.to_str().unwrap()]);
    let mut lengths = Vec::new();
    for line in stdout(&wal).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if big_entries.contains(&v["detail"]["index"].as_u64().unwrap_or(0)) {
            lengths.push(v["detail"]["request"]["value_len"].as_u64().unwrap() as usize);
        }
    }
    lengths.sort_unstable();
    assert_eq!(lengths, sizes, "value lengths in the WAL entries");
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

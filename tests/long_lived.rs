//! One long-lived client connection carrying hundreds of calls, several in flight at
//! once: HPACK's dynamic table is exercised (grpc-go and tonic index repeated headers),
//! streams interleave, some values are larger than the snaplen and some keys are not
//! UTF-8. replay must decode every call with its method and key, and say which bodies
//! it could only partly see.
#![cfg(feature = "record")]

mod common;

use std::time::Duration;

use common::*;

const CALLS_PER_TASK: usize = 40;
const TASKS: usize = 8;

/// Record the workload (with extra recorder flags) and return replay's records of it and
/// how many calls the client completed.
fn record_and_replay(name: &str, flags: &[&str]) -> (Vec<serde_json::Value>, usize) {
    let rig = Rig::start(name);
    let rec = rig.record(flags);
    let done = in_netns(&rig, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = etcd_client::Client::connect(["127.0.0.1:2379"], None)
                .await
                .unwrap();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let mut c = client.clone();
                    tokio::spawn(async move {
                        let mut calls = 0;
                        for i in 0..CALLS_PER_TASK {
                            // Non-UTF-8 keys on one task; a value past the snaplen now and then.
                            let mut key = format!("/ll/{t}/{i}").into_bytes();
                            if t == 0 {
                                key.extend_from_slice(&[0xff, 0xfe]);
                            }
                            let value = if i % 10 == 9 {
                                vec![b'x'; 10_000]
                            } else {
                                vec![b'v'; 32]
                            };
                            c.put(key.clone(), value, None).await.unwrap();
                            c.get(key, None).await.unwrap();
                            calls += 2;
                        }
                        calls
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(done, TASKS * CALLS_PER_TASK * 2);

    let out = etcd_trace(&["replay", "--format", "json", rig.capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours = records
        .into_iter()
        .filter(|r| r["key"].as_str().is_some_and(|k| k.starts_with("/ll/")))
        .collect();
    (ours, done)
}

fn brief(r: &serde_json::Value) -> String {
    format!(
        "{} {} stream {} status {} gaps {}",
        r["method"], r["key"], r["stream"], r["status"], r["gaps"]
    )
}

#[test]
fn one_connection_hundreds_of_interleaved_calls() {
    if skip_without_root() {
        return;
    }
    let (ours, done) = record_and_replay("long-lived", &[]);
    // Every call, on one connection, with its method, key and status.
    assert_eq!(ours.len(), done, "calls decoded with their key");
    let clients: std::collections::BTreeSet<&str> =
        ours.iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(clients.len(), 1, "one connection: {clients:?}");
    for r in &ours {
        let m = r["method"].as_str().unwrap_or_default();
        assert!(
            m == "/etcdserverpb.KV/Put" || m == "/etcdserverpb.KV/Range",
            "{}",
            brief(r)
        );
        assert_eq!(r["inferred"], false, "{}", brief(r));
        assert_eq!(r["status"], 0, "{}", brief(r));
        assert_eq!(
            r["gaps"],
            false,
            "at the default snaplen nothing is cut: {}",
            brief(r)
        );
    }
    let puts = ours
        .iter()
        .filter(|r| r["method"] == "/etcdserverpb.KV/Put")
        .count();
    assert_eq!(puts, done / 2);
    // Non-UTF-8 keys are shown escaped, never lost.
    assert!(ours
        .iter()
        .any(|r| r["key"].as_str().unwrap().ends_with("\\xff\\xfe")));
    // Calls were in flight at once: some call starts before the one before it ended.
    let mut spans: Vec<(u64, u64)> = ours
        .iter()
        .map(|r| (r["ts_ns"].as_u64().unwrap(), r["end_ns"].as_u64().unwrap()))
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).any(|w| w[1].0 < w[0].1),
        "no concurrent calls seen"
    );
}

/// With a snaplen below the large values, what was cut is reported as such: the calls
/// keep their method and key, cut bodies are partial, and no status is invented.
#[test]
fn a_small_snaplen_gives_partial_results_not_wrong_ones() {
    if skip_without_root() {
        return;
    }
    let (ours, done) = record_and_replay("long-lived-cut", &["--snaplen", "4096"]);
    assert_eq!(ours.len(), done, "calls decoded with their key");
    for r in &ours {
        assert!(r["status"] == 0 || r["status"].is_null(), "{}", brief(r));
        if r["method"] == "/etcdserverpb.KV/Put" && r["request_bytes"].as_u64().unwrap() > 5000 {
            assert_eq!(r["gaps"], true, "{}", brief(r));
            assert!(
                r.get("request_partial").is_some() || r["request"].get("value").is_none(),
                "{}",
                brief(r)
            );
        }
    }
    assert!(ours.iter().any(|r| r["gaps"] == true));
}

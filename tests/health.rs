//! detect's health rules on a real etcd whose data dir is on a slow disk: an ext4 loop
//! device whose writes a blkio cgroup throttles to 15 per second for etcd's process.
//! The WAL fsyncs slow down past etcd's guidance and the puts past 100 ms: `detect`
//! says so, with the fsyncs and calls as evidence. The same etcd on the same device,
//! unthrottled, raises no health finding.
#![cfg(feature = "record")]

mod common;

use std::path::Path;

use common::slow_disk::{LoopDisk, Throttle};
use common::*;
use etcd_trace::sandbox::{skip_without_root, EtcdServer};

const HEALTH_RULES: [&str; 4] = [
    "disk-wal-fsync-slow",
    "disk-fsync-stall",
    "slow-request",
    "apply-behind-backend-commit",
];

/// Record `puts` puts to `etcd` into `capture`, and what `detect` found: (rule, summary).
fn record_puts(
    etcd: &EtcdServer,
    netns: &etcd_trace::sandbox::Netns,
    capture: &Path,
    name: &str,
    puts: usize,
) -> Vec<(String, String, serde_json::Value)> {
    let rec = RecorderProcess::start(
        &bin(),
        &[
            "-o".to_string(),
            capture.display().to_string(),
            "--pid".to_string(),
            etcd.pid().to_string(),
        ],
    )
    .unwrap();
    for i in 0..puts {
        etcdctl_ok(etcd, netns, &["put", &format!("/{name}/k{i}"), "v"]);
    }
    stop_cleanly(rec);
    let out = etcd_trace(&["detect", capture.to_str().unwrap(), "--format", "json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["summary"].as_str().unwrap_or_default().to_string(),
                f,
            )
        })
        .collect()
}

#[test]
fn a_throttled_disk_is_found_and_the_same_disk_unthrottled_is_not() {
    if skip_without_root() {
        return;
    }
    let (dir, netns, options) = sandbox("health", false);
    let disk = LoopDisk::new(&dir.0);
    let etcd = EtcdServer::start_with(&netns, &disk.mount, &options).unwrap();
    let throttle = Throttle::new("etcd-trace-test-health", disk.numbers());
    throttle.add(etcd.pid());

    // Unthrottled first: nothing about health.
    let calm = record_puts(&etcd, &netns, &dir.0.join("calm.etr"), "calm", 30);
    let health: Vec<_> = calm
        .iter()
        .filter(|(rule, _, _)| HEALTH_RULES.contains(&rule.as_str()))
        .collect();
    assert!(health.is_empty(), "{health:#?}");

    // 15 writes a second for etcd: each put's WAL fsync waits its turn.
    throttle.write_iops(15);
    let slow = record_puts(&etcd, &netns, &dir.0.join("slow.etr"), "slow", 30);
    throttle.write_iops(0);
    let rules: Vec<&str> = slow.iter().map(|(rule, _, _)| rule.as_str()).collect();
    let context = format!("{slow:#?}");
    assert!(rules.contains(&"disk-wal-fsync-slow"), "{context}");
    assert!(rules.contains(&"slow-request"), "{context}");
    let (_, summary, wal) = slow
        .iter()
        .find(|(rule, _, _)| rule == "disk-wal-fsync-slow")
        .unwrap();
    assert!(summary.contains("p99"), "{summary}");
    let evidence = wal["evidence"].as_array().unwrap();
    assert!(
        evidence.iter().all(|e| e["method"] == "fdatasync"),
        "{context}"
    );
    drop(etcd);
    drop(throttle);
}

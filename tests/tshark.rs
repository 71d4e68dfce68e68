//! An independent oracle: tshark decodes HTTP/2 from a pcap of the same traffic, taken at
//! the same time. The number of gRPC requests per `:path` must agree with replay.
#![cfg(feature = "record")]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn requests_per_path_agree_with_tshark() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("tshark");
    let pcap = rig.dir.0.join("same.pcap");
    let tshark = PacketCapture::start(&rig, "tshark", &pcap, &[], "Capture started");
    let rec = rig.record(&[]);
    let mut watch = rig
        .in_netns("etcdctl")
        .args(["--endpoints=127.0.0.1:2379", "watch", "--prefix", "/w/"])
        .env("ETCDCTL_API", "3")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..10 {
        rig.etcdctl(&["put", &format!("/w/{i}"), "v"]);
        rig.etcdctl(&["get", "/w/", "--prefix"]);
    }
    rig.etcdctl(&["del", "/w/0"]);
    let lease = stdout(&rig.etcdctl(&["lease", "grant", "60"]));
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    rig.etcdctl(&["lease", "keep-alive", "--once", &id]);
    rig.etcdctl(&["lease", "revoke", &id]);
    rig.etcdctl(&["member", "list"]);
    rig.etcdctl(&["endpoint", "status"]);
    rig.etcdctl(&["compaction", "5"]);
    std::thread::sleep(Duration::from_millis(300));
    etcd_trace::sandbox::signal(watch.id(), 9);
    let _ = watch.wait();
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    tshark.stop();

    let oracle = tshark_paths(&pcap);
    assert!(oracle.len() >= 8, "tshark saw {oracle:?}");

    // replay: one call per unary request, one stream per streaming call.
    let out = etcd_trace(&["replay", "--format", "json", rig.capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    let mut streams = std::collections::BTreeSet::new();
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let method = v["method"].as_str().unwrap_or("(unknown)").to_string();
        match v["record"].as_str().unwrap() {
            "call" => *ours.entry(method).or_default() += 1,
            _ => {
                if streams.insert((v["client"].to_string(), v["stream"].to_string())) {
                    *ours.entry(method).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(ours, oracle, "replay (left) and tshark (right) disagree");
}

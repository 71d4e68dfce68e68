//! pcap and pcapng files as input: dumpcap and `record` take the same traffic, and replay
//! of dumpcap's files finds the calls of the workload, as replay of the capture does.
#![cfg(feature = "record")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Calls per (method, key, status), from replay's JSON records (`before`: arguments
/// before the subcommand).
fn calls(path: &Path, before: &[&str]) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    let mut args = before.to_vec();
    args.extend(["replay", "--format", "json", path.to_str().unwrap()]);
    let run = etcd_trace(&args);
    assert!(run.status.success(), "{args:?}: {}", stderr(&run));
    for line in stdout(&run).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["record"].as_str() != Some("call") {
            continue;
        }
        let field = |k: &str| v[k].to_string();
        *out.entry((field("method"), field("key"), field("status")))
            .or_default() += 1;
    }
    out
}

#[test]
fn dumpcap_files_replay_like_the_recorded_capture() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("pcap");
    let ng = rig.dir.0.join("same.pcapng");
    let legacy = rig.dir.0.join("same.pcap");
    let ng_cap = PacketCapture::start(&rig, "dumpcap", &ng, &[], "Capturing on");
    let legacy_cap = PacketCapture::start(&rig, "dumpcap", &legacy, &["-P"], "Capturing on");
    // The recorder takes the design's config block as written (its data dir made the
    // rig's).
    let config = rig.dir.0.join("etcd-trace.yaml");
    std::fs::write(
        &config,
        format!(
            "collectors:\n  etcd:\n    enabled: true\n    mode: ebpf\n    ebpf:\n      \
             capture_payload: true\n      payload_size: 65535\n      trace_syscalls: true\n      \
             monitor_files: true\n    ports: [2379, 2380]\n    pids: []\n    data_dir: {}\n",
            rig.etcd.data_dir.display()
        ),
    )
    .unwrap();
    let rec = rig.record(&["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        rig.etcdctl(&["put", &format!("/p/{i}"), "v"]);
        rig.etcdctl(&["get", &format!("/p/{i}")]);
    }
    rig.etcdctl(&["get", "/p/", "--prefix"]);
    rig.etcdctl(&["del", "/p/0"]);
    rig.etcdctl_with_input(
        &["txn"],
        "value(\"/p/1\") = \"v\"\n\nput /p/1 w\n\nput /p/1 x\n\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    ng_cap.stop();
    legacy_cap.stop();

    let recorded = calls(&rig.capture, &[]);
    let total: u64 = recorded.values().sum();
    assert!(total >= 13, "the capture holds {recorded:?}");
    for file in [&ng, &legacy] {
        let out = etcd_trace(&["info", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("no WAL, fsync or process events"),
            "{}",
            stderr(&out)
        );
        let from_pcap = calls(file, &[]);
        assert_eq!(calls(file, &["--port", "2379"]), from_pcap, "--port 2379");
        let f = file.to_str().unwrap();
        for args in [
            vec!["dump", f],
            vec!["correlate", f],
            vec!["timeline", f],
            vec!["detect", f],
            vec!["raft", f],
            vec!["diff", f, f],
        ] {
            let out = etcd_trace(&args);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{args:?}: {}",
                stderr(&out)
            );
        }
        assert_eq!(
            from_pcap,
            recorded,
            "{} (left) and the recorded capture (right) disagree",
            file.display()
        );
        // export reads a packet file too: pcapng again, and Parquet, a row per record.
        let again = rig.dir.0.join("again.pcapng");
        let rows = rig.dir.0.join("again.parquet");
        let mut said = String::new();
        for (format, out) in [("pcapng", &again), ("parquet", &rows)] {
            let run = etcd_trace(&["export", f, "--format", format, "-o", out.to_str().unwrap()]);
            assert!(run.status.success(), "export {format}: {}", stderr(&run));
            said = stderr(&run);
        }
        assert_eq!(calls(&again, &[]), from_pcap, "exported again as pcapng");
        let records = stdout(&etcd_trace(&["replay", "--format", "json", f]))
            .lines()
            .count();
        assert!(
            said.contains(&format!("{records} rows written")),
            "{records} replay records; export said {said}"
        );
        for method in ["Put", "Range", "DeleteRange", "Txn"] {
            assert!(
                from_pcap.keys().any(|(m, _, _)| m.contains(method)),
                "no {method} from {}: {from_pcap:?}",
                file.display()
            );
        }
    }
}

//! detect on real captures: scripted attacks on a real etcd are each flagged by the right
//! rule, and a benign workload shaped like Kubernetes' raises nothing severe.
#![cfg(feature = "record")]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn rules_of(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["rule"].as_str().unwrap(),
                f["severity"].as_str().unwrap()
            )
        })
        .collect()
}

fn find<'a>(findings: &'a [Value], rule: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {:?}", rules_of(findings)))
}

/// Loads `n` keys under `prefix` with transactions of 100 puts each.
fn load_keys(rig: &Rig, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut input = String::from("\n");
        for i in chunk {
            input.push_str(&format!("put {prefix}{i:05} value-{i}\n"));
        }
        input.push_str("\n\n");
        let out = rig.etcdctl_with_input(&["txn"], &input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bulk_read_and_snapshot_are_flagged() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("detect-bulk");
    load_keys(&rig, "/data/k", 3000);
    // Whole segments kept, so that the large response is decoded in full.
    let rec = rig.record(&["--snaplen", "65535"]);
    rig.etcdctl(&["get", "", "--prefix"]);
    let snap = rig.dir.0.join("snap.db");
    rig.etcdctl(&["snapshot", "save", snap.to_str().unwrap()]);
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    let (findings, code, _) = detect(&rig.capture, &[]);
    assert_eq!(code, 1, "a high finding fails the default check");
    let range = find(&findings, "bulk-range-unbounded");
    assert_eq!(range["severity"], "high");
    assert_eq!(range["client"], "127.0.0.1");
    assert!(range["volume"]["keys"].as_u64().unwrap() >= 3000, "{range}");
    let large = find(&findings, "bulk-large-response");
    assert!(large["evidence"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("whole keyspace"));
    let snapshot = find(&findings, "bulk-snapshot");
    assert_eq!(snapshot["severity"], "high");
    assert!(
        snapshot["volume"]["bytes"].as_u64().unwrap() > 100_000,
        "{snapshot}"
    );
    for f in &findings {
        assert!(!f["summary"].as_str().unwrap().is_empty());
        assert!(f["start_ns"].as_u64().unwrap() <= f["end_ns"].as_u64().unwrap());
    }

    // The snapshot allowed for this client, the range rule off: nothing high remains.
    let rules = rig.dir.0.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  bulk-snapshot:\n    allowed_clients: [127.0.0.1]\n  bulk-range-unbounded:\n    enabled: false\n",
    )
    .unwrap();
    let (findings, code, _) = detect(&rig.capture, &["--rules", rules.to_str().unwrap()]);
    assert_eq!(code, 0, "{:?}", rules_of(&findings));
    assert!(findings.iter().all(|f| f["rule"] != "bulk-snapshot"));

    let text = etcd_trace(&["detect", rig.capture.to_str().unwrap()]);
    let text = stdout(&text);
    assert!(text.contains("== HIGH severity"), "{text}");
    assert!(
        text.contains("nothing was lost") || text.contains("not seen:"),
        "{text}"
    );
}

#[test]
fn enumeration_logins_and_peers_are_flagged() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("detect-access");
    let rec = rig.record(&[]);
    rig.etcdctl(&["member", "list"]);
    // Enumeration: 200 distinct single-key gets from four clients' processes at once.
    std::thread::scope(|s| {
        for t in 0..4 {
            let rig = &rig;
            s.spawn(move || {
                for i in 0..50 {
                    rig.etcdctl(&["get", &format!("/registry/secrets/ns-{t}/s-{i}")]);
                }
            });
        }
    });
    // A non-member on the peer port: curl from an address of its own (127.0.0.9).
    let peer = rig
        .in_netns("curl")
        .args([
            "-s",
            "-m",
            "2",
            "--interface",
            "127.0.0.9",
            "http://127.0.0.1:2380/members",
        ])
        .output()
        .unwrap();
    assert!(
        peer.status.success(),
        "{}",
        String::from_utf8_lossy(&peer.stderr)
    );
    // Attempts at an address where nothing listens on the peer port: reset.
    for _ in 0..4 {
        let _ = rig
            .in_netns("curl")
            .args(["-s", "-m", "2", "http://127.0.0.2:2380/"])
            .output()
            .unwrap();
    }
    // Brute force: auth on, then wrong passwords.
    rig.etcdctl(&["user", "add", "root:rootpw"]);
    let _ = rig.etcd.etcdctl(&rig.netns, &["role", "add", "root"]);
    let _ = rig
        .etcd
        .etcdctl(&rig.netns, &["user", "grant-role", "root", "root"]);
    rig.etcdctl(&["auth", "enable"]);
    for _ in 0..8 {
        let out = rig
            .etcd
            .etcdctl(&rig.netns, &["--user", "root:wrong", "get", "x"])
            .unwrap();
        assert!(!out.status.success());
    }
    rig.etcdctl(&["--user", "root:rootpw", "get", "x"]);
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    let (findings, code, summary) = detect(&rig.capture, &[]);
    assert_eq!(code, 1);
    let enumeration = find(&findings, "enum-single-key-gets");
    assert!(
        enumeration["events"].as_u64().unwrap() >= 190,
        "{enumeration}"
    );
    let logins = find(&findings, "auth-failed-login");
    assert_eq!(logins["severity"], "high");
    assert!(logins["events"].as_u64().unwrap() >= 8, "{logins}");
    let changes = find(&findings, "auth-user-role-change");
    let details: Vec<&str> = changes["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["method"].as_str().unwrap())
        .collect();
    assert!(
        details.contains(&"UserAdd") && details.contains(&"AuthEnable"),
        "{details:?}"
    );
    let peer = find(&findings, "peer-unknown-address");
    assert_eq!(peer["client"], "127.0.0.9");
    assert_eq!(
        peer["severity"], "high",
        "the member list was captured: {peer}"
    );
    find(&findings, "connection-reset");
    assert!(summary.contains("\"summary\""), "{summary}");
    // Passwords and tokens never appear in findings.
    let all = findings.iter().map(|f| f.to_string()).collect::<String>();
    assert!(!all.contains("rootpw") && !all.contains("wrong"), "{all}");
}

/// A workload shaped like the Kubernetes API server's: whole lists each followed by a
/// watch from their revision, paged lists, a lease kept alive, steady writes and
/// updates, prefix probes, one compaction. The false-alarm check: nothing above low.
#[test]
fn benign_kubernetes_like_workload_raises_nothing_above_low() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("detect-benign");
    load_keys(&rig, "/registry/pods/default/pod-", 120);
    load_keys(&rig, "/registry/secrets/default/secret-", 10);
    let rec = rig.record(&[]);
    let spawn = |args: &[&str]| -> std::process::Child {
        rig.in_netns("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints=127.0.0.1:2379")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The watch cache priming itself at start: each resource listed whole, without a
    // limit, then watched from the list's revision on.
    let mut background: Vec<std::process::Child> = Vec::new();
    for p in [
        "/registry/pods/",
        "/registry/secrets/",
        "/registry/configmaps/",
        "/registry/leases/",
        "/registry/events/",
    ] {
        let list = stdout(&rig.etcdctl(&["get", "--prefix", p, "-w", "json"]));
        let revision: u64 = serde_json::from_str::<Value>(&list).unwrap()["header"]["revision"]
            .as_u64()
            .unwrap();
        let from = (revision + 1).to_string();
        background.push(spawn(&["watch", "--prefix", p, "--rev", &from]));
    }
    let lease = stdout(&rig.etcdctl(&["lease", "grant", "15"]));
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    background.push(spawn(&["lease", "keep-alive", &id]));
    // The watch cache's initial lists, paged.
    for prefix in ["/registry/pods/", "/registry/secrets/"] {
        let end = format!("{}0", prefix.trim_end_matches('/'));
        let mut start = prefix.to_string();
        for _ in 0..10 {
            let out = rig.etcdctl(&["get", &start, &end, "--limit", "50", "--keys-only"]);
            let keys: Vec<String> = stdout(&out)
                .lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if keys.len() < 50 {
                break;
            }
            start = format!("{}!", keys.last().unwrap());
        }
    }
    // Steady writes: status updates, events with the lease, a few reads of one object.
    std::thread::scope(|s| {
        for w in 0..2 {
            let rig = &rig;
            let id = &id;
            s.spawn(move || {
                for i in 0..25 {
                    rig.etcdctl(&[
                        "put",
                        &format!("/registry/pods/default/pod-{:05}", w * 25 + i),
                        "updated",
                    ]);
                    rig.etcdctl(&[
                        "put",
                        &format!("/registry/events/default/ev-{w}-{i}"),
                        "e",
                        "--lease",
                        id,
                    ]);
                    if i % 5 == 0 {
                        rig.etcdctl(&["get", &format!("/registry/pods/default/pod-{:05}", i)]);
                    }
                }
            });
        }
    });
    for _ in 0..3 {
        let input = "mod(\"/registry/configmaps/kube-system/lock\") = \"0\"\n\nput /registry/configmaps/kube-system/lock holder\n\nget /registry/configmaps/kube-system/lock\n\n";
        rig.etcdctl_with_input(&["txn"], input);
        // etcdctl 3.4 has no --count-only: a one-key probe of the prefix instead.
        rig.etcdctl(&[
            "get",
            "/registry/pods/",
            "--prefix",
            "--keys-only",
            "--limit",
            "1",
        ]);
    }
    let status = stdout(&rig.etcdctl(&["endpoint", "status", "-w", "json"]));
    let rev: u64 = status
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    rig.etcdctl(&["compact", &(rev - 5).to_string()]);
    std::thread::sleep(Duration::from_millis(500));
    for mut c in background {
        etcd_trace::sandbox::signal(c.id(), 9);
        let _ = c.wait();
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    let (findings, code, summary) = detect(&rig.capture, &[]);
    let summary: Value = serde_json::from_str(summary.lines().last().unwrap()).unwrap();
    let calls = summary["summary"]["looked_at"]["calls"].as_u64().unwrap();
    assert!(calls >= 150, "the workload was seen: {summary}");
    let rules = rules_of(&findings);
    eprintln!(
        "benign workload: {} findings (false positives): {rules:?}",
        findings.len()
    );
    for f in &findings {
        eprintln!("  {}", f["summary"]);
    }
    // Nothing above low: an API server restart must not page anyone. The health rules
    // judge the machine, not the workload (a shared test machine's disk may well miss
    // etcd's guidance); tests/health.rs checks them on a disk made slow on purpose.
    let health = [
        "disk-wal-fsync-slow",
        "disk-fsync-stall",
        "slow-request",
        "apply-behind-backend-commit",
    ];
    assert!(
        findings
            .iter()
            .filter(|f| !health.contains(&f["rule"].as_str().unwrap_or_default()))
            .all(|f| f["severity"] == "low"),
        "{rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.starts_with("bulk-list-then-watch")),
        "{rules:?}"
    );
    let high = findings.iter().any(|f| f["severity"] == "high");
    assert_eq!(code, i32::from(high));
}

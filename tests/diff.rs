//! diff as a CI gate, on real captures and on the committed fixture.
#![cfg(feature = "record")]

mod common;

use std::path::Path;

use common::*;

fn diff(base: &Path, new: &Path, checks: &[&str]) -> std::process::Output {
    let mut args = vec!["diff", base.to_str().unwrap(), new.to_str().unwrap()];
    for c in checks {
        args.push("--fail-on");
        args.push(c);
    }
    etcd_trace(&args)
}

const GATE: &[&str] = &[
    "errors(*) > 0",
    "new-methods > 0",
    "gone-methods > 0",
    "new-clients > 0",
    "new-prefixes > 0",
    "req-size(Put) > +100%",
    "findings(high) > 0",
];

/// The demo's workload recorded again: no difference that the gate cares about, against
/// the fixture recorded by an earlier version.
#[test]
fn the_same_workload_passes_the_gate_against_the_committed_fixture() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("diff-same");
    let rec = rig.record(&[]);
    etcd_trace::sandbox::basic_workload(&rig.etcd, &rig.netns).unwrap();
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/basic-v1.etr");
    let out = diff(&fixture, &rig.capture, GATE);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("/etcdserverpb.KV/Put"));
}

/// A changed workload: an extra method, a new client, values ten times larger. Each
/// change is reported and fails its check.
#[test]
fn a_changed_workload_fails_the_matching_checks() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("diff-changed");
    let base = rig.dir.0.join("base.etr");
    let rec = rig.record(&[]);
    for i in 0..10 {
        rig.etcdctl(&["put", &format!("/app/k{i}"), &"v".repeat(50)]);
        rig.etcdctl(&["get", &format!("/app/k{i}")]);
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    std::fs::rename(&rig.capture, &base).unwrap();

    let rec = rig.record(&[]);
    for i in 0..10 {
        rig.etcdctl(&["put", &format!("/app/k{i}"), &"v".repeat(500)]);
        rig.etcdctl(&["get", &format!("/app/k{i}")]);
    }
    rig.etcdctl(&["lease", "grant", "30"]);
    // The whole database leaves the cluster: a new high finding.
    let snap = rig.dir.0.join("snap.db");
    rig.etcdctl(&["snapshot", "save", snap.to_str().unwrap()]);
    // A client from another address: curl bound to 127.0.0.2, to etcd's JSON gateway.
    let curl = rig
        .in_netns("curl")
        .args([
            "-s",
            "--interface",
            "127.0.0.2",
            "-d",
            r#"{"key":"Zm9v"}"#,
            "http://127.0.0.1:2379/v3/kv/range",
        ])
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    for (check, what) in [
        ("new-methods > 0", "LeaseGrant"),
        ("new-clients > 0", "127.0.0.2"),
        ("req-size(Put) > +100%", "/etcdserverpb.KV/Put"),
        ("findings(high) > 0", "bulk-snapshot"),
    ] {
        let out = diff(&base, &rig.capture, &[check]);
        assert_eq!(out.status.code(), Some(1), "{check}\n{}", stdout(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("FAIL {check}")), "{text}");
        assert!(text.contains(what), "{what} not reported:\n{text}");
    }
    // The checks that did not change still pass, and JSON carries the verdicts.
    let out = etcd_trace(&[
        "diff",
        base.to_str().unwrap(),
        rig.capture.to_str().unwrap(),
        "--format",
        "json",
        "--fail-on",
        "errors(*) > 0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let check = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "check")
        .unwrap();
    assert_eq!(check["holds"], false);
}

#[test]
fn a_bad_check_is_a_usage_error() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/basic-v1.etr");
    let out = diff(&fixture, &fixture, &["p99(Put) is slow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Forms:"), "{}", stderr(&out));
}

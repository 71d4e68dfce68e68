//! `record --mode api`: a recorder that is not root (it runs as nobody here) and loads
//! nothing into the kernel watches a private etcd through its API while etcdctl works
//! on it. The capture says mode api; timeline shows every write and what /metrics
//! counted; diff compares two such captures by /metrics' counts and WAL fsyncs (a
//! per-call latency check cannot be judged, so it fails); detect reports the NOSPACE
//! alarm of an etcd whose backend is full; the config file's `mode: api` records the
//! same way; an etcd restarted under the watch loses no write.

#![cfg(feature = "record")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// nobody's uid and gid.
const NOBODY: &str = "65534";

/// A directory nobody may write captures into.
fn shared_dir(rig: &Rig) -> PathBuf {
    let dir = rig.dir.0.join("api");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The scratch dir above it must be passable too.
    std::fs::set_permissions(&rig.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn url(rig: &Rig) -> String {
    format!("http://{}", rig.etcd.endpoint)
}

/// `etcd-trace record --mode api ARGS` as nobody, in the rig's namespace, once it says
/// it records.
fn record_as_nobody(rig: &Rig, args: &[&str]) -> RecorderProcess {
    let mut command = rig.in_netns("setpriv");
    command
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin())
        .arg("record")
        .args(args);
    RecorderProcess::start_command(command).unwrap()
}

fn record_api(rig: &Rig, out: &Path) -> RecorderProcess {
    record_as_nobody(
        rig,
        &[
            "--mode",
            "api",
            "--endpoints",
            &url(rig),
            "-o",
            out.to_str().unwrap(),
            "--interval",
            "500ms",
        ],
    )
}

/// `n` puts under /api/, a delete and a leased put.
fn workload(rig: &Rig, n: usize) {
    for i in 0..n {
        rig.etcdctl(&["put", &format!("/api/key-{i}"), &"v".repeat(100 + i)]);
    }
    rig.etcdctl(&["del", "/api/key-0"]);
    let grant = stdout(&rig.etcdctl(&["lease", "grant", "60"]));
    let id = grant.split_whitespace().nth(1).unwrap().to_string();
    rig.etcdctl(&["put", "/api/leased", "x", "--lease", &id]);
}

/// Stop cleanly, after the next poll has counted the workload.
fn stop_after_a_poll(rec: RecorderProcess) -> String {
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (status, printed) = rec.stop(libc::SIGINT).unwrap();
    assert!(status.success(), "{printed}");
    printed
}

fn run(args: &[&str]) -> (String, String, Option<i32>) {
    let out = etcd_trace(args);
    (stdout(&out), stderr(&out), out.status.code())
}

#[test]
fn a_live_workload_recorded_without_root_reads_in_timeline_and_diff() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("api-mode");
    let dir = shared_dir(&rig);
    let small = dir.join("small.etr");
    let rec = record_api(&rig, &small);
    workload(&rig, 10);
    let printed = stop_after_a_poll(rec);
    assert!(printed.contains("12 key changes"), "{printed}");
    let meta = std::fs::metadata(&small).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        65534,
        "written by nobody"
    );

    let (info, _, code) = run(&["info", small.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, Some(0));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["format_version"], 6, "{info}");

    // Every write of the workload, in order, and the leader.
    let (timeline, note, code) = run(&["timeline", small.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{note}");
    assert!(note.contains("no client identities"), "{note}");
    let writes: Vec<&str> = timeline.lines().filter(|l| l.contains(" write ")).collect();
    assert_eq!(writes.len(), 12, "{timeline}");
    assert!(
        writes[0].contains("put /api/key-0 100 B (new"),
        "{timeline}"
    );
    assert!(writes[10].contains("delete /api/key-0"), "{timeline}");
    assert!(writes[11].contains("/api/leased") && writes[11].contains("lease "));
    assert!(timeline.contains(" raft   leader "), "{timeline}");
    assert!(timeline.contains(" member members: m1 "), "{timeline}");
    // /metrics counted the puts (and the delete), and their WAL fsyncs.
    let counted = |text: &str, method: &str| -> u64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(method))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{method} in\n{text}"))
    };
    assert_eq!(counted(&timeline, "/etcdserverpb.KV/Put"), 11, "{timeline}");
    assert_eq!(counted(&timeline, "/etcdserverpb.KV/DeleteRange"), 1);
    let fsyncs = timeline
        .lines()
        .find(|l| l.trim_start().starts_with("WAL fsync"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(fsyncs >= 12, "{timeline}");

    // top: the same counts, the writes by prefix, the leader.
    let (top, _, code) = run(&["top", "--once", "--format", "json", small.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let top: serde_json::Value = serde_json::from_str(&top).unwrap();
    assert_eq!(top["api_mode"], true, "{top}");
    let put = top["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == "/etcdserverpb.KV/Put")
        .unwrap_or_else(|| panic!("{top}"));
    assert_eq!(put["requests"], 11, "{put}");
    let writes: u64 = top["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(writes, 12, "{top}");
    assert!(top["raft"]["leader"].is_string(), "{top}");

    // Three times the puts: diff sees the rate go up.
    let big = dir.join("big.etr");
    let rec = record_api(&rig, &big);
    workload(&rig, 30);
    stop_after_a_poll(rec);
    let (a, b) = (small.to_str().unwrap(), big.to_str().unwrap());
    // The puts /metrics counted: 31 in the new capture, 11 the other way round.
    let (text, note, code) = run(&["diff", a, b, "--fail-on", "count(Put) > 20"]);
    assert_eq!(code, Some(1), "31 puts: {text}\n{note}");
    assert!(note.contains("API-mode capture"), "{note}");
    let (text, _, code) = run(&[
        "diff",
        b,
        a,
        "--fail-on",
        "count(Put) > 20",
        "--fail-on",
        "p99(wal-fsync) > 10s",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("/api/"), "the prefixes written: {text}");
    // Per-call latency is not in such a capture: a gate on it cannot pass.
    let (text, _, code) = run(&["diff", a, b, "--fail-on", "p99(Put) > +20%"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no per-call latency"), "{text}");
}

/// A backend of 1 MiB filled by 270 kB puts: etcd raises NOSPACE; the Status polls
/// show it and detect reports it, high.
#[test]
fn detect_reports_the_nospace_alarm_a_full_backend_raises() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start_configured("api-nospace", false, |_, o| {
        o.extra_args = vec!["--quota-backend-bytes".into(), "1048576".into()];
    });
    let dir = shared_dir(&rig);
    let path = dir.join("full.etr");
    let rec = record_api(&rig, &path);
    let value = "x".repeat(270_000);
    let mut refused = 0;
    for i in 0..8 {
        let out = rig.etcdctl_with_input(&["put", &format!("/big/{i}")], &value);
        refused += usize::from(stderr(&out).contains("database space exceeded"));
    }
    assert!(refused > 0, "the backend never filled");
    stop_after_a_poll(rec);
    let (findings, code, note) = detect(&path, &[]);
    assert_eq!(code, 1, "{findings:#?}\n{note}");
    let alarm = findings
        .iter()
        .find(|f| f["rule"] == "cluster-alarm")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(alarm["severity"], "high");
    assert!(
        alarm["summary"].as_str().unwrap().contains("NOSPACE"),
        "{alarm}"
    );
}

/// The design's config block with `mode: api` and the endpoints records the same way.
#[test]
fn the_config_files_api_mode_records_through_the_api() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("api-config");
    let dir = shared_dir(&rig);
    let config = dir.join("etcd-trace.yaml");
    std::fs::write(
        &config,
        format!(
            "collectors:\n  etcd:\n    enabled: true\n    mode: api\n    endpoints: [\"{}\"]\n",
            url(&rig)
        ),
    )
    .unwrap();
    let path = dir.join("config.etr");
    let rec = record_as_nobody(
        &rig,
        &[
            "-o",
            path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    rig.etcdctl(&["put", "/from/config", "1"]);
    let printed = stop_after_a_poll(rec);
    assert!(printed.contains("1 key changes"), "{printed}");
    // eBPF flags are refused in API mode, with what to use instead.
    let out = Command::new(bin())
        .args(["record", "--mode", "api", "--endpoints", &url(&rig), "-o"])
        .arg(dir.join("x.etr"))
        .args(["--pid", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--pid belong to the eBPF recorder"),
        "{}",
        stderr(&out)
    );
}

/// etcd killed and started again while recorded: the polls and the watch fail, say so,
/// and come back; the watch resumes where it was, so no write is missed.
#[test]
fn a_restarted_etcd_is_watched_again_without_a_gap() {
    if skip_without_root() {
        return;
    }
    let mut rig = Rig::start("api-restart");
    let dir = shared_dir(&rig);
    let path = dir.join("restart.etr");
    let rec = record_api(&rig, &path);
    rig.etcdctl(&["put", "/before", "1"]);
    rig.kill_and_restart_etcd();
    rig.etcdctl(&["put", "/after", "2"]);
    // The watch waits a second before it is opened again.
    std::thread::sleep(std::time::Duration::from_secs(2));
    stop_after_a_poll(rec);
    let (timeline, note, code) = run(&["timeline", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{note}");
    let writes: Vec<&str> = timeline.lines().filter(|l| l.contains(" write ")).collect();
    assert_eq!(writes.len(), 2, "{timeline}");
    assert!(writes[0].contains("/before") && writes[1].contains("/after"));
    assert!(timeline.contains(" FAILED watch of "), "{timeline}");
}

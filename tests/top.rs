//! `etcd-trace top`: on a recorded workload of clients with addresses of their own,
//! `top --once --format json` gives the calls, bytes and latency quantiles that replay's
//! records of the same file add up to, also with --follow while it is recorded. The
//! dashboard runs in tmux at 80×24 and 200×50 on a fixture: it reads whole (no line
//! past the edge), shows the leader, plays back in real time, and q or Ctrl-C quits and
//! gives the terminal back. Without a terminal, it says to use --once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// `top --once --format json FILE`: the snapshot.
fn top_json(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["top", "--once", "--format", "json", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = etcd_trace(&args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("one JSON object")
}

/// What top counts, added up from replay's records: per method (requests, bytes, unary
/// latencies), per client address (requests, bytes) and per key prefix (requests).
#[derive(Default, Debug)]
struct FromReplay {
    methods: BTreeMap<String, (u64, u64, Vec<u64>)>,
    clients: BTreeMap<String, (u64, u64)>,
    prefixes: BTreeMap<String, u64>,
}

fn from_replay(records: &[Value], depth: usize) -> FromReplay {
    let mut r = FromReplay::default();
    for rec in records {
        let kind = rec["record"].as_str().unwrap();
        let request = kind == "call" || (kind == "message" && rec["direction"] == "request");
        let bytes = if kind == "stream_end" {
            0
        } else {
            rec["request_bytes"].as_u64().unwrap() + rec["response_bytes"].as_u64().unwrap()
        };
        let method = rec["method"].as_str().unwrap_or("?").to_string();
        let m = r.methods.entry(method).or_default();
        m.0 += u64::from(request);
        m.1 += bytes;
        if kind == "call" {
            if let Some(l) = rec["latency_ns"].as_u64() {
                m.2.push(l);
            }
        }
        let client = rec["client"].as_str().unwrap();
        let ip = client.rsplit_once(':').unwrap().0;
        let c = r.clients.entry(ip.to_string()).or_default();
        c.0 += u64::from(request);
        c.1 += bytes;
        if let (true, Some(key)) = (request, rec["key"].as_str()) {
            let prefix = etcd_trace::analyze::profile::key_prefix(&unescape(key), depth);
            *r.prefixes.entry(prefix).or_default() += 1;
        }
    }
    r
}

/// A key as replay shows it (`\\xNN` for a byte that is not printable) as bytes.
fn unescape(shown: &str) -> Vec<u8> {
    let b = shown.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            // `\\` stands for one backslash.
            out.push(b[i]);
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
    }
    out
}

/// The nearest-rank quantile of `values`.
fn quantile(values: &mut [u64], q: f64) -> u64 {
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).max(1);
    values[rank - 1]
}

/// top's quantiles come from a histogram of 1/32 precision: at or just below the exact.
fn close(top: &Value, exact: u64, what: &str) {
    let got = top.as_u64().unwrap_or_else(|| panic!("{what}: {top}"));
    assert!(
        got <= exact && exact - got <= exact / 32,
        "{what}: top says {got}, replay's records {exact}"
    );
}

/// Checks a snapshot against replay's records of the same file.
fn agrees_with_replay(snap: &Value, records: &[Value]) {
    let depth = snap["prefix_depth"].as_u64().unwrap() as usize;
    let want = from_replay(records, depth);
    assert!(snap["finished"].as_bool().unwrap());
    let methods = snap["methods"].as_array().unwrap();
    assert_eq!(methods.len(), want.methods.len(), "{methods:#?}\n{want:#?}");
    for (name, (requests, bytes, latencies)) in &want.methods {
        let m = methods
            .iter()
            .find(|m| m["method"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing from {methods:#?}"));
        assert_eq!(m["requests"], *requests, "{name}: {m}");
        assert_eq!(m["bytes"], *bytes, "{name}: {m}");
        assert_eq!(m["latency_count"], latencies.len() as u64, "{name}: {m}");
        let mut l = latencies.clone();
        if !l.is_empty() {
            close(&m["p50_ns"], quantile(&mut l, 0.50), &format!("{name} p50"));
            close(&m["p99_ns"], quantile(&mut l, 0.99), &format!("{name} p99"));
        }
    }
    for list in ["clients_by_requests", "clients_by_bytes"] {
        let rows = snap[list].as_array().unwrap();
        assert_eq!(rows.len(), want.clients.len().min(10), "{list}: {rows:#?}");
        for row in rows {
            let (requests, bytes) = want.clients[row["key"].as_str().unwrap()];
            assert_eq!(
                (row["requests"].clone(), row["bytes"].clone()),
                (requests.into(), bytes.into()),
                "{row}"
            );
        }
    }
    let by_requests: Vec<u64> = snap["clients_by_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .collect();
    assert!(
        by_requests.windows(2).all(|w| w[0] >= w[1]),
        "{by_requests:?}"
    );
    for row in snap["prefixes"].as_array().unwrap() {
        assert_eq!(
            row["requests"],
            want.prefixes[row["key"].as_str().unwrap()],
            "{row}"
        );
    }
}

#[test]
fn once_agrees_with_replay_on_a_fixture() {
    for name in ["basic-v2.etr", "cluster-v4.etr", "basic-v5.etr"] {
        let path = fixture(name);
        let snap = top_json(&path, &[]);
        agrees_with_replay(&snap, &replay_json(&path, &[]));
        assert!(snap["wal_fsync"]["count"].as_u64().unwrap() > 0, "{name}");
        // Format 5 keeps the kernel's histograms in the index: every sync counted.
        if name == "basic-v5.etr" {
            assert_eq!(
                snap["kernel_wal_sync"]["count"], snap["wal_fsync"]["count"],
                "{name}: {}",
                snap["kernel_wal_sync"]
            );
        } else {
            assert!(snap["kernel_wal_sync"].is_null(), "{name}");
        }
    }
    // The cluster's capture holds its peer traffic: a transfer made term 3's leader.
    let snap = top_json(&fixture("cluster-v4.etr"), &[]);
    assert_eq!(snap["raft"]["term"], 3, "{}", snap["raft"]);
    assert!(snap["raft"]["leader"].is_string());
}

#[test]
fn without_a_terminal_it_says_to_use_once() {
    let path = fixture("basic-v2.etr");
    let out = etcd_trace(&["top", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--once"), "{}", stderr(&out));
    for bad in [&["--speed", "-1"][..], &["--once", "--top", "0"]] {
        let mut args = vec!["top", path.to_str().unwrap()];
        args.extend_from_slice(bad);
        let out = etcd_trace(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let text = etcd_trace(&["top", "--once", path.to_str().unwrap()]);
    assert!(text.status.success());
    assert!(stdout(&text).contains("KV/Put"), "{}", stdout(&text));
}

/// A tmux server of this test's own (its own socket), killed at the end.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn screen(&self) -> String {
        stdout(&self.cmd(&["capture-pane", "-p", "-t", "top"]))
    }

    /// Waits until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_present() -> bool {
    let there = Command::new("tmux").arg("-V").output().is_ok();
    assert!(
        there || std::env::var_os("CI").is_none(),
        "tmux is missing (.ci/setup installs it)"
    );
    there
}

#[test]
fn the_dashboard_reads_whole_at_80x24_and_200x50() {
    if !tmux_present() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let path = fixture("cluster-v4.etr");
    // 80×24 plays the capture (about 3 s long) back in real time, 200×50 at max speed.
    for (w, h, speed) in [(80usize, 24usize, "1"), (200, 50, "0")] {
        let tmux = Tmux(format!("etcd-trace-top-{}-{w}", std::process::id()));
        // A shell first, so that after q the prompt shows the terminal given back.
        let size = [w.to_string(), h.to_string()];
        let started = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &size[0],
            "-y",
            &size[1],
            "sh",
        ]);
        assert!(started.status.success(), "{}", stderr(&started));
        let line = format!(
            "PS1='prompt$ '; {} top {} --speed {speed}",
            bin().display(),
            path.display()
        );
        let started = Instant::now();
        tmux.cmd(&["send-keys", "-t", "top", &line, "Enter"]);
        let screen = tmux.wait_for("end of capture");
        let took = started.elapsed();
        if speed == "1" {
            assert!(
                took >= Duration::from_millis(2500),
                "played 3 s in {took:?}"
            );
        } else {
            assert!(took < Duration::from_secs(10), "max speed took {took:?}");
        }
        for want in [
            "end of capture",
            "WAL fsync p99",
            "raft: leader",
            "term 3",
            "lost: none",
            "KV/Put",
            "Maintenance/MoveLeader",
            "Clients by requests",
            "Clients by bytes",
            "Key prefixes",
            "10.77.0.1",
            "/merge/",
        ] {
            assert!(screen.contains(want), "{w}x{h}: no {want:?} in\n{screen}");
        }
        // Nothing runs past the edge: every line ends before it, or ends in a whole word
        // or number at it.
        for l in screen.lines() {
            let chars = l.chars().count();
            assert!(chars <= w, "{w}x{h}: {l:?}");
        }
        let header = screen.lines().next().unwrap_or_default();
        assert!(
            header.trim_end().ends_with("q quits"),
            "{w}x{h}: {header:?}"
        );
        // q at one size, Ctrl-C at the other.
        let quit = if speed == "1" { "q" } else { "C-c" };
        tmux.cmd(&["send-keys", "-t", "top", quit]);
        let after = tmux.wait_for("prompt$");
        assert!(
            after.contains("prompt$") && !after.contains("Clients by requests"),
            "{w}x{h}: {quit} did not give the terminal back:\n{after}"
        );
    }
}

#[cfg(feature = "record")]
mod recorded {
    use super::*;

    /// Three clients, each from a loopback address of its own.
    const CLIENTS: [&str; 3] = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];

    fn rig() -> Rig {
        Rig::start_with_clients("top", &CLIENTS)
    }

    fn ctl(rig: &Rig, ip: &str, args: &[&str]) -> String {
        stdout(&rig.etcdctl_from(ip, args))
    }

    /// Client A writes first, many small puts; then B reads their prefix again and again
    /// (large replies) while C keeps a lease alive (a stream) and writes under it:
    /// unequal counts and bytes, unary calls and a stream.
    fn workload(rig: &Rig) {
        let [a, b, c] = CLIENTS;
        for i in 0..30 {
            ctl(
                rig,
                a,
                &["put", &format!("/top/a/key-{i}"), &"v".repeat(100)],
            );
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..8 {
                    ctl(rig, b, &["get", "/top/", "--prefix"]);
                    std::thread::sleep(Duration::from_millis(100));
                }
                ctl(rig, b, &["get", "/other/x"]);
            });
            s.spawn(|| {
                let grant = ctl(rig, c, &["lease", "grant", "60"]);
                let id = grant.split_whitespace().nth(1).unwrap().to_string();
                ctl(rig, c, &["lease", "keep-alive", "--once", &id]);
                ctl(rig, c, &["put", "/top/c/leased", "x", "--lease", &id]);
            });
        });
    }

    #[test]
    fn once_agrees_with_replay_on_a_recorded_workload() {
        if skip_without_root() {
            return;
        }
        let rig = rig();
        let path = rig.dir.0.join("top.etr");
        let rec = rig.record_to(&path, &[]);
        workload(&rig);
        stop_cleanly(rec);
        let records = replay_json(&path, &[]);
        let snap = top_json(&path, &[]);
        agrees_with_replay(&snap, &records);
        let ips: Vec<&str> = snap["clients_by_requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            ips.first(),
            Some(&CLIENTS[0]),
            "A made the most requests: {ips:?}"
        );
        let by_bytes = snap["clients_by_bytes"][0]["key"].as_str().unwrap();
        assert_eq!(by_bytes, CLIENTS[1], "B's prefix reads move the most bytes");
        let put = snap["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == "/etcdserverpb.KV/Put")
            .unwrap();
        assert_eq!(put["requests"], 31, "{put}");
        let keep_alive = snap["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == "/etcdserverpb.Lease/LeaseKeepAlive")
            .expect("the keep-alive stream");
        assert!(
            keep_alive["requests"].as_u64().unwrap() >= 1,
            "{keep_alive}"
        );
        assert_eq!(keep_alive["latency_count"], 0, "{keep_alive}");
        assert!(
            snap["wal_fsync"]["count"].as_u64().unwrap() >= 31,
            "{}",
            snap["wal_fsync"]
        );
        // The kernel counted every sync of the recording, events lost or not.
        let kernel = snap["kernel_wal_sync"]["count"].as_u64().unwrap();
        assert!(
            kernel >= snap["wal_fsync"]["count"].as_u64().unwrap(),
            "{}",
            snap["kernel_wal_sync"]
        );
        // Another prefix depth moves the counts between rows, not their sum.
        let deeper = top_json(&path, &["--prefix-depth", "3", "--top", "50"]);
        agrees_with_replay(&deeper, &records);
        let sum = |s: &Value| -> u64 {
            s["prefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["requests"].as_u64().unwrap())
                .sum()
        };
        assert_eq!(sum(&deeper), sum(&top_json(&path, &["--top", "50"])));
    }

    /// `top --follow --once` on a capture while it is recorded: its snapshot, given
    /// when the recorder finishes, is that of the finished file.
    #[test]
    fn follow_gives_the_finished_files_numbers() {
        if skip_without_root() {
            return;
        }
        follows_to_the_finished_files_numbers(&["--follow"]);
    }

    /// Without `--follow`, top sees that a recorder is writing the file and follows it.
    #[test]
    fn a_file_being_recorded_is_followed_without_the_flag() {
        if skip_without_root() {
            return;
        }
        let (_rig, _path, out) = top_while_recorded(&[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("a recorder is writing"),
            "{}",
            stderr(&out)
        );
        let live: Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
        assert!(live["finished"].as_bool().unwrap(), "{live}");
    }

    /// `top --once --format json FLAGS` started on a capture a recorder is writing, the
    /// workload run and the recorder stopped: the rig (it keeps the file), the capture
    /// and top's output.
    fn top_while_recorded(flags: &[&str]) -> (Rig, std::path::PathBuf, std::process::Output) {
        let rig = rig();
        let path = rig.dir.0.join("live.etr");
        let rec = rig.record_to(&path, &[]);
        let follower = Command::new(bin())
            .args(["top", "--once", "--format", "json"])
            .args(flags)
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        workload(&rig);
        stop_cleanly(rec);
        let out = follower.wait_with_output().unwrap();
        (rig, path, out)
    }

    fn follows_to_the_finished_files_numbers(flags: &[&str]) {
        let (_rig, path, out) = top_while_recorded(flags);
        assert!(out.status.success(), "{}", stderr(&out));
        let live: Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
        let whole = top_json(&path, &[]);
        // Followed to the recorder's end, not given up on the way.
        assert_eq!(live["events"], whole["events"], "{}", stderr(&out));
        agrees_with_replay(&live, &replay_json(&path, &[]));
        for field in [
            "methods",
            "clients_by_requests",
            "clients_by_bytes",
            "prefixes",
        ] {
            let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
                v[field]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r.get("method").or(r.get("key")).cloned().unwrap(),
                            r["requests"].clone(),
                            r["bytes"].clone(),
                        )
                    })
                    .collect()
            };
            assert_eq!(strip(&live), strip(&whole), "{field}");
        }
    }
}

//! Live captures: analyses that follow a capture while a real recorder writes it
//! (`--follow`), real-time alerts, and rotated recordings read as one capture.
#![cfg(feature = "record")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `etcd-trace ARGS` running in the background, its stdout lines timed as they come.
struct Live {
    child: Child,
    lines: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Live {
    fn start(args: &[&str]) -> Live {
        let mut child = Command::new(bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// When the first line that `pred` accepts came, waiting up to `within`.
    fn wait_for(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        if let Some((t, _)) = self.seen.iter().find(|(_, l)| pred(l)) {
            return Some(*t);
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((t, line)) => {
                    let hit = pred(&line);
                    self.seen.push((t, line));
                    if hit {
                        return Some(t);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    /// Wait up to 6 s for a line holding `needle`, or fail with what it printed.
    fn expect(&mut self, needle: &str, why: &str) {
        if self
            .wait_for(Duration::from_secs(6), |l| l.contains(needle))
            .is_none()
        {
            self.fail(why);
        }
    }

    /// Stop it and fail with what it printed.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        let out: Vec<&str> = self.seen.iter().map(|(_, l)| l.as_str()).collect();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        panic!("{why}\nstdout:\n{}\nstderr:\n{err}", out.join("\n"));
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait up to `within` for it to end by itself: its status, stdout and stderr.
    fn finish(mut self, within: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!("the follower did not end within {within:?}; stderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.seen.extend(self.lines.iter());
        let out: Vec<&str> = self.seen.iter().map(|(_, l)| l.as_str()).collect();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, out.join("\n") + "\n", err)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A recorded etcd, and `replay --follow` on its capture.
fn replay_followed(name: &str) -> (Rig, RecorderProcess, Live) {
    let rig = Rig::start(name);
    let rec = rig.record(&[]);
    let live = Live::start(&["replay", "--follow", path(&rig.capture)]);
    (rig, rec, live)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn detect_follow_alerts_on_a_whole_keyspace_read_within_two_seconds() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("follow-detect");
    let rec = rig.record(&[]);
    let mut live = Live::start(&["detect", "--follow", "--format", "json", path(&rig.capture)]);
    rig.etcdctl(&["put", "a", "1"]);
    std::thread::sleep(Duration::from_secs(2));
    rig.etcdctl(&["get", "", "--prefix"]);
    let returned = Instant::now();
    let is_alert = |l: &str| {
        let f: Value = serde_json::from_str(l).unwrap_or_default();
        f["rule"] == "bulk-range-unbounded" && f["severity"] == "high"
    };
    let Some(alerted) = live.wait_for(Duration::from_secs(10), is_alert) else {
        live.fail("no high bulk-range-unbounded finding while recording");
    };
    let after = alerted.saturating_duration_since(returned);
    assert!(
        after <= Duration::from_secs(2),
        "reported {after:?} after etcdctl returned"
    );
    assert!(live.running(), "the follower ended while recording went on");
    // Recording goes on: more calls, then the recorder stops and the follower with it.
    rig.etcdctl(&["put", "b", "2"]);
    std::thread::sleep(Duration::from_secs(1));
    let (status, log) = rec.stop(libc::SIGINT).unwrap();
    assert!(status.success(), "{log}");
    let (status, out, err) = live.finish(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(1),
        "a high finding fails the check\n{err}"
    );
    let alerts = out.lines().filter(|l| is_alert(l)).count();
    assert_eq!(alerts, 1, "the same finding twice:\n{out}");
    eprintln!("alert {after:?} after the reply");
}

/// replay, correlate and timeline, followed: calls print while recording goes on, and
/// each ends with what it prints for the finished file.
#[test]
fn followed_analyses_print_while_recording_and_end_as_whole() {
    if skip_without_root() {
        return;
    }
    let (rig, rec, mut live) = replay_followed("follow-replay");
    let mut correlate = Live::start(&["correlate", "--follow", path(&rig.capture)]);
    let mut timeline = Live::start(&["timeline", "--follow", path(&rig.capture)]);
    rig.etcdctl(&["put", "k0", "v"]);
    live.expect("Put k0", "no call printed while recording");
    correlate.expect("Put k0", "no write correlated while recording");
    timeline.expect("Put k0", "no call on the timeline while recording");
    assert!(live.running());
    for i in 1..5 {
        rig.etcdctl(&["put", &format!("k{i}"), "v"]);
        rig.etcdctl(&["get", &format!("k{i}")]);
    }
    live.expect("Range k4", "Range k4 not printed while recording");
    let (status, log) = rec.stop(libc::SIGINT).unwrap();
    assert!(status.success(), "{log}");
    for (command, follower) in [
        ("replay", live),
        ("correlate", correlate),
        ("timeline", timeline),
    ] {
        let (status, out, err) = follower.finish(Duration::from_secs(10));
        assert!(status.success(), "{command}: {err}");
        let whole = etcd_trace(&[command, path(&rig.capture)]);
        assert!(whole.status.success());
        assert_eq!(out, stdout(&whole), "followed and whole {command} differ");
    }
}

/// The (client, method, key, status) of each record of the workload's keys.
fn calls_of(args: &[&str]) -> Vec<String> {
    let mut all = vec!["replay", "--format", "json"];
    all.extend_from_slice(args);
    let out = etcd_trace(&all);
    assert!(out.status.success(), "{all:?}: {}", stderr(&out));
    let mut calls: Vec<String> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| {
            r["key"].as_str().is_some_and(|k| k.starts_with("rk"))
                || r["method"].as_str().is_some_and(|m| m.contains("Watch"))
        })
        .map(|r| {
            format!(
                "{} {} {} {} {} {}",
                r["client"], r["stream"], r["method"], r["key"], r["status"], r["inferred"]
            )
        })
        .collect();
    calls.sort();
    calls
}

#[test]
fn a_rotated_recording_reads_as_one_capture() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("follow-rotate");
    let set = rig.dir.0.join("set");
    std::fs::create_dir(&set).unwrap();
    let base = set.join("rot.etr");
    let whole = rig.dir.0.join("whole.etr");
    let rec_whole = rig.record_to(&whole, &[]);
    let rec_set = rig.record_to(&base, &["--rotate-time", "1s"]);
    let mut live = Live::start(&["replay", "--follow", path(&base)]);
    // One connection that spans the files: a watch open through the workload.
    let mut watch = rig
        .etcd
        .etcdctl_command(&rig.netns)
        .unwrap()
        .args(["watch", "rk", "--prefix"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..8 {
        rig.etcdctl(&["put", &format!("rk{i}"), "v"]);
        std::thread::sleep(Duration::from_millis(400));
    }
    live.expect("Put rk7", "--follow did not cross rotation");
    let _ = watch.kill();
    let _ = watch.wait();
    std::thread::sleep(Duration::from_millis(500));
    let (status, log) = rec_set.stop(libc::SIGINT).unwrap();
    assert!(status.success(), "{log}");
    let (status, log) = rec_whole.stop(libc::SIGINT).unwrap();
    assert!(status.success(), "{log}");
    let (status, followed, err) = live.finish(Duration::from_secs(10));
    assert!(status.success(), "{err}");

    let mut files: Vec<String> = std::fs::read_dir(&set)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let expected = calls_of(&[path(&whole)]);
    assert!(
        expected.iter().filter(|c| c.contains("KV/Put")).count() >= 8,
        "{expected:#?}"
    );
    let named: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(calls_of(&named), expected, "as files");
    let reversed: Vec<&str> = files.iter().rev().map(String::as_str).collect();
    assert_eq!(calls_of(&reversed), expected, "as files in reverse order");
    assert_eq!(calls_of(&[path(&set)]), expected, "as a directory");
    // The watch spans the files: one stream, every event decoded on it.
    let watch_records = expected.iter().filter(|c| c.contains("Watch")).count();
    assert!(watch_records >= 9, "{expected:#?}");
    // The follower read the same as the finished set.
    let dir_replay = etcd_trace(&["replay", path(&set)]);
    assert_eq!(
        followed,
        stdout(&dir_replay),
        "followed and finished differ"
    );
    // A file of another recording is refused, saying why.
    let mixed = etcd_trace(&["replay", &files[0], path(&whole)]);
    assert_eq!(mixed.status.code(), Some(2));
    assert!(
        stderr(&mixed).contains("not one recording"),
        "{}",
        stderr(&mixed)
    );
}

/// A follower stops on Ctrl-C with what was complete, and by itself, saying why, when
/// the recorder is SIGKILLed (no trailer will ever come).
#[test]
fn followers_end_on_ctrl_c_and_when_the_recorder_is_killed() {
    if skip_without_root() {
        return;
    }
    let (rig, rec, mut live) = replay_followed("follow-killed");
    let mut interrupted = Live::start(&["replay", "--follow", path(&rig.capture)]);
    rig.etcdctl(&["put", "x", "1"]);
    live.expect("Put x", "no call printed while recording");
    interrupted.expect("Put x", "no call printed while recording");
    etcd_trace::sandbox::signal(interrupted.child.id(), libc::SIGINT);
    let (status, out, err) = interrupted.finish(Duration::from_secs(5));
    assert!(status.success(), "{err}");
    assert!(
        out.contains(" RPC records: "),
        "the summary is printed:\n{out}"
    );
    assert!(err.contains("interrupted"), "{err}");
    let (_, _) = rec.stop(libc::SIGKILL).unwrap();
    let (status, out, err) = live.finish(Duration::from_secs(10));
    assert!(status.success(), "{err}");
    assert!(out.contains("Put x"), "{out}");
    assert!(
        err.contains("no recorder writes") && err.contains("killed"),
        "{err}"
    );
}

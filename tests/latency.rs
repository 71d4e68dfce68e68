//! The kernel's latency histograms against the events of the same recording: every WAL
//! sync is counted, whether its event is recorded or not, and each file of a rotated set
//! holds the whole recording's histograms.
#![cfg(feature = "record")]

mod common;

use std::time::Duration;

use common::*;
use etcd_trace::capture::latency::bucket_of;
use etcd_trace::capture::{Event, LatencyHistogram, LatencyKind, SyscallKind};

/// The one histogram of `kind` in a capture's index (one data dir was traced).
fn histogram(path: &std::path::Path, kind: LatencyKind) -> LatencyHistogram {
    let reader = etcd_trace::capture::CaptureReader::open(path).unwrap();
    let found: Vec<_> = reader
        .index()
        .latency
        .iter()
        .filter(|h| h.kind == kind)
        .cloned()
        .collect();
    assert_eq!(found.len(), 1, "{:?}", reader.index().latency);
    found.into_iter().next().unwrap()
}

/// Whether an event is a sync (`sync`) or a write of a file in the WAL dir (`dir`
/// "wal") or of the backend (`dir` "snap", file "db").
fn is_call(ev: &Event, sync: bool, dir: &str) -> Option<u64> {
    let Event::Syscall(s) = ev else { return None };
    let is_sync = matches!(s.call, SyscallKind::Fsync | SyscallKind::Fdatasync);
    let is_write = matches!(
        s.call,
        SyscallKind::Write | SyscallKind::Pwrite64 | SyscallKind::Writev
    );
    let mut parts = s.file.path.rsplit('/');
    let name = parts.next()?;
    let parent = parts.next()?;
    let file = parent == dir && (dir == "wal" || name == "db");
    (file && if sync { is_sync } else { is_write }).then(|| s.duration_ns())
}

/// The nearest-rank quantile of durations.
fn quantile(mut ns: Vec<u64>, q: f64) -> u64 {
    ns.sort_unstable();
    let rank = ((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len());
    ns[rank - 1]
}

#[test]
fn histograms_count_every_call_the_events_show() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("latency");
    let rec = rig.record(&[]);
    for i in 0..60 {
        rig.etcdctl(&["put", &format!("/latency/{i}"), &"v".repeat(i * 50)]);
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    let (_, events) = read_events(&rig.capture);
    let lost: u64 = events
        .iter()
        .map(|e| match e {
            Event::Loss(l) => l.count,
            _ => 0,
        })
        .sum();
    assert_eq!(lost, 0, "a lossless recording is needed to compare counts");
    for (kind, sync, dir, at_least) in [
        (LatencyKind::WalSync, true, "wal", 60),
        (LatencyKind::WalWrite, false, "wal", 60),
        (LatencyKind::DbSync, true, "snap", 0),
        (LatencyKind::DbWrite, false, "snap", 0),
    ] {
        let durations: Vec<u64> = events
            .iter()
            .filter_map(|e| is_call(e, sync, dir))
            .collect();
        let h = histogram(&rig.capture, kind);
        assert_eq!(h.buckets.len(), 36);
        assert_eq!(h.count(), durations.len() as u64, "{kind:?}");
        assert!(h.count() >= at_least, "{kind:?}: {} calls", h.count());
        assert_eq!(h.sum_ns, durations.iter().sum::<u64>(), "{kind:?}");
        // Bucket by bucket, the same calls.
        let mut buckets = vec![0u64; h.buckets.len()];
        for &d in &durations {
            buckets[bucket_of(d, h.buckets.len())] += 1;
        }
        assert_eq!(h.buckets, buckets, "{kind:?}");
        if let Some(p99) = h.p99() {
            let exact = quantile(durations.clone(), 0.99);
            assert!(
                p99.contains(exact),
                "{kind:?}: p99 {exact} ns not in {p99:?}"
            );
            let exact = quantile(durations, 0.5);
            assert!(h.p50().unwrap().contains(exact), "{kind:?}: p50 {exact} ns");
        }
    }

    // `info` shows them, in text and JSON.
    let path = rig.capture.to_str().unwrap();
    let out = etcd_trace(&["info", "--format", "json", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let wal_sync = info["latency"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "wal_sync")
        .unwrap();
    let h = histogram(&rig.capture, LatencyKind::WalSync);
    assert_eq!(wal_sync["count"], h.count());
    assert_eq!(wal_sync["p99"]["low_ns"], h.p99().unwrap().low_ns);
    let out = etcd_trace(&["info", path]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("WAL sync"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("{} calls", h.count())), "{line}");
    assert!(line.contains("p99 "), "{line}");
}

/// Without syscall events the kernel still counts the WAL's syncs.
#[test]
fn histograms_are_kept_without_syscall_events() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("latency-nosys");
    let rec = rig.record(&["--no-syscalls"]);
    for i in 0..20 {
        rig.etcdctl(&["put", &format!("/nosys/{i}"), "v"]);
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    let (_, events) = read_events(&rig.capture);
    assert!(!events.iter().any(|e| matches!(e, Event::Syscall(_))));
    assert!(events.iter().any(|e| matches!(e, Event::Packet(_))));
    let h = histogram(&rig.capture, LatencyKind::WalSync);
    assert!(h.count() >= 20, "{h:?}");
}

/// With rotation and --keep 1 only the last file is left, and its histograms still
/// count every WAL sync of the recording: more than its own events show.
#[test]
fn the_last_file_of_a_rotated_set_holds_the_whole_recording() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("latency-rot");
    let rec = rig.record(&["--rotate-time", "1s", "--keep", "1"]);
    let puts = 30;
    for i in 0..puts {
        rig.etcdctl(&["put", &format!("/rot/{i}"), "v"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    let files: Vec<_> = std::fs::read_dir(&rig.dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("latency-rot-"))
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}\n{log}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_ne!(name, "latency-rot-0001.etr", "the recording rotated: {log}");
    let (_, events) = read_events(&files[0]);
    let in_file = events
        .iter()
        .filter(|e| is_call(e, true, "wal").is_some())
        .count() as u64;
    let h = histogram(&files[0], LatencyKind::WalSync);
    assert!(
        h.count() >= puts,
        "{} syncs counted, {puts} puts",
        h.count()
    );
    assert!(
        h.count() > in_file,
        "{} syncs counted, {in_file} in the last file",
        h.count()
    );
}

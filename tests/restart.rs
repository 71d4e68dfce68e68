//! An etcd killed and restarted on its data dir while the recorder follows it (no --pid,
//! the etcd named by its data dir): the new process is traced from its exec, its writes
//! are linked to their WAL entries like the first one's, and every analysis tells the
//! kill and the start.
#![cfg(feature = "record")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use serde_json::Value;

/// Every write etcd acknowledged is linked to its WAL entry and to an fsync that ended
/// before the reply (99% at least); how many were acknowledged.
fn assert_writes_linked(capture: &std::path::Path) -> usize {
    let (linked, acked) = linked_writes(&correlate_json(capture));
    assert!(
        linked * 100 >= acked * 99,
        "{linked} of {acked} acknowledged writes linked to a WAL entry and an fsync"
    );
    acked
}

fn puts(rig: &Rig, prefix: &str, n: usize) {
    for i in 0..n {
        rig.etcdctl(&["put", &format!("{prefix}{i}"), &format!("value-{i}")]);
    }
}

/// Following the rig's etcd: `n` puts of `before`, etcd killed and restarted on its data
/// dir, `n` puts of `after`. What the recorder said, and the old and the new pid.
fn record_a_restart(rig: &mut Rig, before: &str, after: &str, n: usize) -> (String, (u32, u32)) {
    let rec = rig.record_following(&[]);
    puts(rig, before, n);
    let restart = rig.kill_and_restart_etcd();
    puts(rig, after, n);
    (stop_cleanly(rec), restart)
}

/// Ten puts, etcd killed and restarted on its data dir, ten more: every acknowledged
/// write is linked to its WAL entry and fsync, the new process's WAL reads at startup
/// are recorded, and the recorder, timeline and info tell the kill and the start.
#[test]
fn a_restarted_etcd_is_followed() {
    if skip_without_root() {
        return;
    }
    let mut rig = Rig::start("restart");
    let (log, (old, new)) = record_a_restart(&mut rig, "/before/", "/after/", 10);

    assert_eq!(
        assert_writes_linked(&rig.capture),
        20,
        "acknowledged writes"
    );
    let (_, events) = read_events(&rig.capture);
    let startup_wal_reads = events
        .iter()
        .filter(|e| {
            matches!(e, etcd_trace::capture::Event::Syscall(s)
                if s.pid == new
                    && s.call.is_read()
                    && s.file.kind == etcd_trace::capture::FileKind::Wal)
        })
        .count();
    assert!(
        startup_wal_reads > 0,
        "the new etcd's WAL reads at startup were not recorded"
    );
    // The data dir's one WAL sync histogram counts both processes' syncs, as the
    // events do.
    let wal_syncs = events
        .iter()
        .filter(|e| {
            matches!(e, etcd_trace::capture::Event::Syscall(s)
                if s.call.is_sync() && s.file.kind == etcd_trace::capture::FileKind::Wal)
        })
        .count() as u64;
    let reader = etcd_trace::capture::CaptureReader::open(&rig.capture).unwrap();
    let histograms: Vec<_> = reader
        .index()
        .latency
        .iter()
        .filter(|h| h.kind == etcd_trace::capture::LatencyKind::WalSync)
        .collect();
    assert_eq!(histograms.len(), 1, "{histograms:?}");
    assert!(wal_syncs >= 20);
    assert_eq!(histograms[0].count(), wal_syncs);
    assert_restarts_told(&rig, &log, &[(old, new)]);
}

/// Puts that go on while etcd is killed and restarted twice: every write etcd
/// acknowledged, before, between and after, is linked to its WAL entry and fsync.
#[test]
fn two_restarts_during_a_workload() {
    if skip_without_root() {
        return;
    }
    let mut rig = Rig::start("restart-twice");
    let rec = rig.record_following(&[]);
    let stop = AtomicBool::new(false);
    let acknowledged = AtomicUsize::new(0);
    let url = rig.etcd.url();
    let etcdctl = etcd_trace::sandbox::which("etcdctl").unwrap();
    let mut restarts = Vec::new();
    std::thread::scope(|s| {
        let (netns, stop, acknowledged) = (&rig.netns, &stop, &acknowledged);
        // The writer: one put at a time, on its own connection; those etcd could not
        // take while down are not acknowledged.
        s.spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let put = netns
                    .command(&etcdctl)
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={url}"))
                    .args(["--command-timeout=2s", "put", &format!("/load/{i}"), "v"])
                    .output()
                    .unwrap();
                if put.status.success() {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
        for _ in 0..2 {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            restarts.push(kill_and_restart(
                &mut rig.etcd,
                &rig.netns,
                &rig.dir.0,
                &rig.options,
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
    });
    let log = stop_cleanly(rec);

    let acked = assert_writes_linked(&rig.capture);
    let by_etcdctl = acknowledged.load(Ordering::Relaxed);
    assert!(by_etcdctl >= 20, "{by_etcdctl} puts acknowledged");
    assert!(
        acked >= by_etcdctl,
        "{acked} acknowledged writes recorded, etcdctl saw {by_etcdctl}"
    );
    assert_restarts_told(&rig, &log, &restarts);
}

/// A TLS etcd killed and restarted: the new process's TLS plaintext is probed again, so
/// its calls are decoded as the first one's were.
#[test]
fn a_restarted_tls_etcd_is_probed_again() {
    if skip_without_root() {
        return;
    }
    let mut rig = Rig::start_tls("restart-tls");
    let (log, (old, new)) = record_a_restart(&mut rig, "/tls-before/", "/tls-after/", 5);

    for pid in [old, new] {
        let probed = format!("TLS plaintext of etcd pid {pid}: probed");
        assert!(log.contains(&probed), "no {probed:?}:\n{log}");
    }
    let records = replay_json(&rig.capture, &[]);
    for key in (0..5).flat_map(|i| [format!("/tls-before/{i}"), format!("/tls-after/{i}")]) {
        let found: Vec<&Value> = of(&records, "/etcdserverpb.KV/Put")
            .into_iter()
            .filter(|r| r["key"] == key.as_str())
            .collect();
        assert!(
            matches!(found[..], [r] if r["status"] == 0 && r["tls"] == true && r["gaps"] == false),
            "the Put of {key} over TLS is not decoded whole: {found:?}"
        );
    }
    assert_eq!(
        assert_writes_linked(&rig.capture),
        10,
        "acknowledged writes"
    );
    assert_restarts_told(&rig, &log, &[(old, new)]);
}

//! detect's health rules on a real etcd whose data dir is on a slow disk: an ext4 loop
//! device whose writes a blkio cgroup throttles to 15 per second for etcd's process.
//! The WAL fsyncs slow down past etcd's guidance and the puts past 100 ms: `detect`
//! says so, with the fsyncs and calls as evidence. The same etcd on the same device,
//! unthrottled, raises no health finding.
#![cfg(feature = "record")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use etcd_trace::sandbox::{skip_without_root, EtcdServer};

const HEALTH_RULES: [&str; 4] = [
    "disk-wal-fsync-slow",
    "disk-fsync-stall",
    "slow-request",
    "apply-behind-backend-commit",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An ext4 file system on a loop device, mounted; unmounted and detached on drop.
struct LoopDisk {
    device: String,
    mount: PathBuf,
}

impl LoopDisk {
    fn new(dir: &Path) -> LoopDisk {
        let image = dir.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image));
        let disk = LoopDisk {
            device,
            mount: dir.join("disk"),
        };
        run(Command::new("mkfs.ext4").args(["-q", &disk.device]));
        std::fs::create_dir_all(&disk.mount).unwrap();
        run(Command::new("mount").arg(&disk.device).arg(&disk.mount));
        disk
    }

    /// `MAJOR:MINOR` of the device.
    fn numbers(&self) -> String {
        let name = self.device.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/dev"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A blkio cgroup (v1) of its own; processes are moved back out and it is removed on
/// drop.
struct Throttle {
    dir: PathBuf,
    device: String,
}

impl Throttle {
    fn new(name: &str, device: String) -> Throttle {
        let dir = Path::new("/sys/fs/cgroup/blkio").join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Throttle { dir, device }
    }

    fn write_iops(&self, iops: u32) {
        std::fs::write(
            self.dir.join("blkio.throttle.write_iops_device"),
            format!("{} {iops}", self.device),
        )
        .unwrap();
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write("/sys/fs/cgroup/blkio/cgroup.procs", pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

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

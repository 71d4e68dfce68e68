//! The integration tests' harness: the real binary, a private etcd in its own network
//! namespace, and helpers to read what a capture holds.
#![allow(dead_code)]

#[cfg(feature = "record")]
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etcd_trace::capture::{CaptureReader, Event, ReadItem};
#[cfg(feature = "record")]
pub use etcd_trace::testbed::{EtcdServer, Netns, RecorderProcess, ScratchDir};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcd-trace"))
}

/// Run the binary with arguments.
pub fn etcd_trace(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("running etcd-trace")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// These tests load eBPF and create namespaces: they need root. CI runs them as root;
/// elsewhere they fail with this message rather than pass without testing anything.
#[cfg(feature = "record")]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test records with eBPF and needs root: run the tests as root (see README)"
    );
}

#[cfg(feature = "record")]
/// A private etcd with a recorder attached, in one namespace.
pub struct Rig {
    pub dir: ScratchDir,
    pub netns: Netns,
    pub etcd: EtcdServer,
    pub capture: PathBuf,
}

#[cfg(feature = "record")]
impl Rig {
    pub fn start(name: &str) -> Rig {
        require_root();
        let dir = ScratchDir::new(&format!("etcd-trace-test-{name}")).unwrap();
        let netns = Netns::create().unwrap();
        let etcd = EtcdServer::start(&netns, &dir.0).unwrap();
        let capture = dir.0.join(format!("{name}.etr"));
        Rig {
            dir,
            netns,
            etcd,
            capture,
        }
    }

    pub fn record(&self, extra: &[&str]) -> RecorderProcess {
        let mut args = vec![
            "-o".to_string(),
            self.capture.display().to_string(),
            "--pid".to_string(),
            self.etcd.pid().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        RecorderProcess::start(&bin(), &args).unwrap()
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let out = self.etcd.etcdctl(&self.netns, args).unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A command inside this rig's namespace.
    pub fn in_netns(&self, program: &str) -> Command {
        self.netns.command(program)
    }

    /// etcdctl with `input` on its stdin (txn reads its operations there), whatever its
    /// exit status.
    pub fn etcdctl_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .in_netns("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints=127.0.0.1:2379")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// The records of `replay --format json` for one method path.
pub fn of<'a>(records: &'a [serde_json::Value], method: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["method"] == method).collect()
}

/// Run `f` on a thread that has entered the rig's network namespace, so the client's
/// sockets live there (setns affects only the calling thread).
#[cfg(feature = "record")]
pub fn in_netns<T: Send + 'static>(rig: &Rig, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(format!("/run/netns/{}", rig.netns.name)).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Every event of a capture (panics on damage: a clean capture has none).
pub fn read_events(path: &Path) -> (CaptureReader, Vec<Event>) {
    let reader = CaptureReader::open(path).expect("opening capture");
    let mut events = Vec::new();
    for item in reader.events() {
        match item {
            ReadItem::Event(e) => events.push(e),
            ReadItem::Damaged(d) => panic!("damage in a clean capture: {d:?}"),
        }
    }
    (reader, events)
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

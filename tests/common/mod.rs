//! The integration tests' harness: the real binary, a private etcd in its own network
//! namespace, and helpers to read what a capture holds.
#![allow(dead_code)]

#[cfg(feature = "record")]
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etcd_trace::capture::{CaptureReader, Event, FileKind, ReadItem};
#[cfg(feature = "record")]
pub use etcd_trace::sandbox::{
    EtcdOptions, EtcdServer, Netns, RecorderProcess, ScratchDir, TlsCerts,
};
// Not every test file has a test that needs root.
#[cfg(feature = "record")]
#[allow(unused_imports)]
pub use etcd_trace::sandbox::skip_without_root;

#[cfg(feature = "record")]
pub mod slow_disk;
#[cfg(feature = "record")]
pub mod small_disk;
#[cfg(feature = "record")]
pub mod uprobes;

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

/// These tests load eBPF and create namespaces: they need root. Each such test starts
/// with `if skip_without_root() { return; }`, so that without root it is skipped with a
/// line that says so (and fails under `ETCD_TRACE_REQUIRE_ROOT=1`, as in CI). A rig
/// started without root anyway is a missing skip: it fails with this message.
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
    /// How the etcd was started (and is started again by `kill_and_restart_etcd`).
    pub options: EtcdOptions,
}

#[cfg(feature = "record")]
impl Rig {
    pub fn start(name: &str) -> Rig {
        Rig::start_with(name, false)
    }

    /// etcd with client-certificate TLS on both ports; the certificates are made in the
    /// rig's directory (`certs/`).
    pub fn start_tls(name: &str) -> Rig {
        Rig::start_with(name, true)
    }

    fn start_with(name: &str, tls: bool) -> Rig {
        Rig::start_configured(name, tls, |_, _| {})
    }

    /// A rig whose namespace and etcd options `configure` sets up before etcd starts.
    pub fn start_configured(
        name: &str,
        tls: bool,
        configure: impl FnOnce(&Netns, &mut EtcdOptions),
    ) -> Rig {
        let (dir, netns, mut options) = sandbox(name, tls);
        configure(&netns, &mut options);
        let etcd = EtcdServer::start_with(&netns, &dir.0, &options).unwrap();
        let capture = dir.0.join(format!("{name}.etr"));
        Rig {
            dir,
            netns,
            etcd,
            capture,
            options,
        }
    }

    /// Record without --pid, following the etcd of the rig's data dir as it restarts (and
    /// no other: other tests' etcds start and end meanwhile), on the rig's `lo`.
    pub fn record_following(&self, extra: &[&str]) -> RecorderProcess {
        let mut args = vec![
            "-o".to_string(),
            self.capture.display().to_string(),
            "--data-dir".to_string(),
            self.etcd.data_dir.display().to_string(),
            "--iface".to_string(),
            "lo".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        RecorderProcess::start(&bin(), &args).unwrap()
    }

    /// SIGKILL the rig's etcd and start a new one on the same data dir, ports and
    /// certificates, once it answers; the old pid and the new.
    pub fn kill_and_restart_etcd(&mut self) -> (u32, u32) {
        kill_and_restart(&mut self.etcd, &self.netns, &self.dir.0, &self.options)
    }

    /// Record the rig's etcd into the rig's capture file.
    pub fn record(&self, extra: &[&str]) -> RecorderProcess {
        self.record_to(&self.capture, extra)
    }

    /// Record the rig's etcd (and what `extra` adds) into `capture`.
    pub fn record_to(&self, capture: &Path, extra: &[&str]) -> RecorderProcess {
        self.record_with(Command::new(bin()), capture, extra)
    }

    /// Record as [`Rig::record_to`] does, with `command` for the binary: one that execs
    /// it with the arguments added (`nsenter ... -- etcd-trace`).
    pub fn record_with(
        &self,
        mut command: Command,
        capture: &Path,
        extra: &[&str],
    ) -> RecorderProcess {
        command
            .args(["record", "-o"])
            .arg(capture)
            .args(["--pid", &self.etcd.pid().to_string()])
            .args(extra);
        RecorderProcess::start_command(command).unwrap()
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl_ok(&self.etcd, &self.netns, args)
    }

    /// etcd listening on every address of its namespace, where each of `clients` is a
    /// loopback address of its own: a client that connects to its own address is seen
    /// coming from it (see [`Rig::etcdctl_from`]).
    pub fn start_with_clients(name: &str, clients: &[&str]) -> Rig {
        Rig::start_configured(name, false, |netns, options| {
            options.address = std::net::Ipv4Addr::UNSPECIFIED.into();
            for ip in clients {
                let cidr = format!("{ip}/32");
                let mut add = netns.command("ip");
                add.args(["addr", "add", &cidr, "dev", "lo"]);
                assert!(add.status().unwrap().success(), "adding {ip}");
            }
        })
    }

    /// etcdctl from client address `ip` (of [`Rig::start_with_clients`]), which must
    /// succeed.
    pub fn etcdctl_from(&self, ip: &str, args: &[&str]) -> Output {
        let out = self
            .in_netns("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ip}:2379"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?} from {ip}: {}",
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
            .etcd
            .etcdctl_command(&self.netns)
            .unwrap()
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

/// `sh -c script` in a mount namespace of its own, with `$0` = `sh` (add the arguments
/// that follow). Private: what it mounts is never seen outside, and goes when the last
/// process in the namespace does.
#[cfg(feature = "record")]
pub fn sh_in_private_mount_ns(script: &str) -> Command {
    let mut command = Command::new("unshare");
    command.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]);
    command
}

/// SIGKILL `etcd` and start a new one in its place (`options`, data dir and log under
/// `dir`), once it answers; the old pid and the new. A rig's fields, for a test whose
/// other threads use the rig's namespace meanwhile.
#[cfg(feature = "record")]
pub fn kill_and_restart(
    etcd: &mut EtcdServer,
    netns: &Netns,
    dir: &Path,
    options: &EtcdOptions,
) -> (u32, u32) {
    use std::os::unix::process::ExitStatusExt;
    let old = etcd.pid();
    let status = etcd.kill(libc::SIGKILL).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    *etcd = EtcdServer::start_with(netns, dir, options).unwrap();
    (old, etcd.pid())
}

/// A recorder writing `capture` from every member of `cluster`: each one's pid, and its
/// client and peer ports.
#[cfg(feature = "record")]
pub fn record_members(
    cluster: &etcd_trace::sandbox::EtcdCluster,
    capture: &Path,
) -> RecorderProcess {
    let mut args = vec!["-o".to_string(), capture.display().to_string()];
    for pid in cluster.pids() {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    for port in cluster.ports() {
        args.extend(["--port".to_string(), port.to_string()]);
    }
    RecorderProcess::start(&bin(), &args).unwrap()
}

/// What test `name` runs etcd in (needs root): a scratch directory, a network namespace,
/// and etcd's options, with client-certificate TLS on both ports when `tls` (the
/// certificates made in the directory's `certs/`).
#[cfg(feature = "record")]
pub fn sandbox(name: &str, tls: bool) -> (ScratchDir, Netns, EtcdOptions) {
    require_root();
    let dir = ScratchDir::new(&format!("etcd-trace-test-{name}")).unwrap();
    let netns = Netns::create().unwrap();
    let options = EtcdOptions {
        tls: tls.then(|| TlsCerts::generate(&dir.0.join("certs")).unwrap()),
        ..EtcdOptions::default()
    };
    (dir, netns, options)
}

#[cfg(feature = "record")]
/// What the recorder said, `timeline` and `info` (text and JSON) tell of the kills
/// (`(old, new)` pids, in order): each old process killed by SIGKILL, each new one
/// started on the rig's data dir; `info` lists every process.
pub fn assert_restarts_told(rig: &Rig, log: &str, restarts: &[(u32, u32)]) {
    let dir = rig.etcd.data_dir.display().to_string();
    let capture = rig.capture.to_str().unwrap();
    let timeline = stdout(&etcd_trace(&["timeline", capture]));
    let info = stdout(&etcd_trace(&["info", capture]));
    for &(old, new) in restarts {
        for said in [
            format!("etcd pid {old} exited: killed by SIGKILL"),
            format!("etcd pid {new} started (data dir {dir}): tracing it"),
        ] {
            assert!(
                log.contains(&said),
                "the recorder did not say {said:?}:\n{log}"
            );
        }
        for told in [
            format!("proc   etcd pid {old} killed by SIGKILL"),
            format!("proc   etcd pid {new} started, data dir {dir}"),
        ] {
            assert!(
                timeline.contains(&told),
                "timeline lacks {told:?}:\n{timeline}"
            );
        }
        for pid in [old, new] {
            assert!(
                info.contains(&format!("etcd         pid {pid}  data dir {dir}")),
                "info does not list etcd pid {pid}:\n{info}"
            );
        }
    }
    assert_eq!(
        info.matches("killed by SIGKILL").count(),
        restarts.len(),
        "{info}"
    );
    let json = serde_json::from_str::<serde_json::Value>(&stdout(&etcd_trace(&[
        "info", capture, "--format", "json",
    ])))
    .unwrap();
    let processes = json["processes"].as_array().unwrap();
    assert_eq!(processes.len(), restarts.len() + 1, "{json}");
    assert_eq!(json["counts"]["process"], 2 * restarts.len(), "{json}");
    for (p, &(old, new)) in processes.iter().zip(restarts) {
        assert_eq!(p["pid"], old, "{p}");
        assert_eq!(p["signal"], libc::SIGKILL, "{p}");
        assert!(p["ended_ns"].is_u64(), "{p}");
        let next = processes.iter().find(|q| q["pid"] == new).unwrap();
        assert!(
            next["started_ns"].as_u64() >= p["ended_ns"].as_u64(),
            "{next}"
        );
        assert_eq!(next["data_dir"], dir.as_str(), "{next}");
    }
    let last = processes.last().unwrap();
    assert!(
        last["ended_ns"].is_null(),
        "the last etcd ran to the end: {last}"
    );
}

/// Stop a recorder with SIGINT, once what the last calls sent has had time to reach it,
/// and check that it ended well; what it printed.
#[cfg(feature = "record")]
pub fn stop_cleanly(rec: RecorderProcess) -> String {
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, log) = rec.stop(libc::SIGINT).unwrap();
    assert!(status.success(), "recorder failed: {log}");
    log
}

/// The redaction tests' calls, recorded twice: user root (`user` is `root:PASSWORD`) and
/// role root added, auth enabled, and a put and a get of k1 as root, recorded into the
/// rig's capture by default; then a put of k2 and auth disabled as root, recorded with
/// `--keep-secrets` into `kept.etr` in the rig's dir. The first recorder's summary and
/// the second capture.
#[cfg(feature = "record")]
pub fn record_auth_calls(rig: &Rig, user: &str) -> (String, PathBuf) {
    let rec = rig.record(&[]);
    rig.etcdctl(&["user", "add", user]);
    rig.etcdctl(&["role", "add", "root"]);
    rig.etcdctl(&["user", "grant-role", "root", "root"]);
    rig.etcdctl(&["auth", "enable"]);
    rig.etcdctl(&["--user", user, "put", "k1", "v1"]);
    rig.etcdctl(&["--user", user, "get", "k1"]);
    let log = stop_cleanly(rec);
    let kept = rig.dir.0.join("kept.etr");
    let rec = rig.record_to(&kept, &["--keep-secrets"]);
    rig.etcdctl(&["--user", user, "put", "k2", "v2"]);
    rig.etcdctl(&["--user", user, "auth", "disable"]);
    stop_cleanly(rec);
    (log, kept)
}

/// etcdctl against `etcd` (TLS or not) inside `netns`, which must succeed.
#[cfg(feature = "record")]
pub fn etcdctl_ok(etcd: &EtcdServer, netns: &Netns, args: &[&str]) -> Output {
    let out = etcd.etcdctl(netns, args).unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?} against {} failed: {}",
        etcd.url(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The records of `replay --format json` for one method path.
pub fn of<'a>(records: &'a [serde_json::Value], method: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["method"] == method).collect()
}

/// Run `f` on a thread that has entered the rig's network namespace, so the client's
/// sockets live there (setns affects only the calling thread).
#[cfg(feature = "record")]
pub fn in_netns<T: Send + 'static>(rig: &Rig, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_namespace(&rig.netns, f)
}

/// Run `f` on a thread that has entered `netns`; what it returns.
#[cfg(feature = "record")]
pub fn in_namespace<T: Send + 'static>(netns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_namespace(netns, f).join().unwrap()
}

/// Start `f` on a thread that has entered `netns`.
#[cfg(feature = "record")]
pub fn spawn_in_namespace<T: Send + 'static>(
    netns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = std::fs::File::open(format!("/run/netns/{}", netns.name)).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Run the future that `make` builds to its end, on a thread inside the rig's network
/// namespace with a runtime of its own.
#[cfg(feature = "record")]
pub fn block_on_in_netns<T, F>(rig: &Rig, make: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    block_on_in(&rig.netns, make)
}

/// Run the future that `make` builds to its end, on a thread inside `netns` with a
/// runtime of its own.
#[cfg(feature = "record")]
pub fn block_on_in<T, F>(netns: &Netns, make: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    in_namespace(netns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(make())
    })
}

/// A client that keeps ONE connection to `etcd` (in the rig's namespace; TLS with the
/// client certificate when the etcd has TLS) open for `n` puts of `{prefix}{i}` =
/// `value-{i}`, each followed by a get of it; returns the number of calls that completed
/// (2 × n when all did).
#[cfg(feature = "record")]
pub fn client_on_one_connection(rig: &Rig, etcd: &EtcdServer, prefix: &str, n: usize) -> usize {
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let options = etcd.tls.as_ref().map(|certs| {
        ConnectOptions::new().with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(&certs.ca)))
                .identity(Identity::from_pem(
                    read(&certs.client_cert),
                    read(&certs.client_key),
                )),
        )
    });
    let url = etcd.url();
    let prefix = prefix.to_string();
    block_on_in_netns(rig, move || async move {
        let mut client = Client::connect([url], options).await.unwrap();
        let mut calls = 0;
        for i in 0..n {
            let key = format!("{prefix}{i}");
            client
                .put(key.as_str(), format!("value-{i}"), None)
                .await
                .unwrap();
            calls += 1;
            let got = client.get(key.as_str(), None).await.unwrap();
            assert_eq!(got.kvs()[0].value(), format!("value-{i}").as_bytes());
            calls += 1;
        }
        calls
    })
}

/// `replay --format json` of a capture (with `extra` arguments): one record per line.
pub fn replay_json(path: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["replay", "--format", "json", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = etcd_trace(&args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// `detect --format json` over a capture (with `extra` arguments): the findings, the exit
/// code and what it said on stderr.
pub fn detect(path: &std::path::Path, extra: &[&str]) -> (Vec<serde_json::Value>, i32, String) {
    let mut args = vec!["detect", "--format", "json", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = etcd_trace(&args);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "detect failed: {}", stderr(&out));
    let findings = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (findings, code, stderr(&out))
}

/// `correlate --format json` of a capture: one record per write call.
pub fn correlate_json(path: &Path) -> Vec<serde_json::Value> {
    let out = etcd_trace(&["correlate", "--format", "json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Acknowledged writes in `correlate --format json`, and how many of them are linked to
/// their WAL entry and to an fsync that ended before the reply.
pub fn linked_writes(calls: &[serde_json::Value]) -> (usize, usize) {
    let acked: Vec<&serde_json::Value> = calls.iter().filter(|c| c["status"] == 0).collect();
    let linked = acked
        .iter()
        .filter(|c| {
            let reply = c["reply_ts_ns"].as_u64();
            let fsync = c["wal"]["fsync_ts_ns"].as_u64();
            matches!((fsync, reply), (Some(f), Some(r)) if f <= r)
        })
        .count();
    (linked, acked.len())
}

/// What a capture holds of the traffic, whatever the kind of event: every event but the
/// data-dir file I/O, each encoded on its own (bincode, as the capture's blocks hold
/// them once decompressed) and concatenated, so that every byte string is in one piece,
/// to search for what must not be there. The WAL writes are left out: they hold the raft
/// entries as etcd wrote them (on etcd 3.4 a UserAdd's password), which redaction leaves
/// alone.
pub fn traffic_bytes(path: &Path) -> Vec<u8> {
    let (_, events) = read_events(path);
    let mut all = Vec::new();
    for ev in &events {
        if matches!(ev, Event::Syscall(s) if s.file.kind != FileKind::Socket) {
            continue;
        }
        all.extend(bincode::encode_to_vec(ev, bincode::config::standard()).unwrap());
    }
    all
}

/// The checks of a redacted capture's `replay --show-secrets` records, after the
/// redaction tests' calls (see [`record_auth_calls`]): the password nowhere, and `*` of
/// its length in both Authenticates and the UserAdd, tokens all `*`. The records as text.
pub fn assert_auth_redacted(records: &[serde_json::Value], password: &str) -> String {
    let text = format!("{records:?}");
    assert!(!text.contains(password), "replay shows the password");
    let auths = of(records, "/etcdserverpb.Auth/Authenticate");
    assert_eq!(auths.len(), 2, "{text}");
    for a in &auths {
        assert_eq!(a["request"]["password"], "*".repeat(password.len()), "{a}");
        let token = a["response"]["token"].as_str().unwrap();
        assert!(!token.is_empty() && token.bytes().all(|b| b == b'*'), "{a}");
    }
    let user_add = of(records, "/etcdserverpb.Auth/UserAdd");
    assert_eq!(user_add.len(), 1, "{text}");
    assert_eq!(
        user_add[0]["request"]["password"],
        "*".repeat(password.len()),
        "{}",
        user_add[0]
    );
    text
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

/// The peer traffic of a capture, decoded on the peer ports among its recorded ports.
pub fn peer_records(path: &Path) -> Vec<etcd_trace::analyze::peers::PeerRecord> {
    let (reader, events) = read_events(path);
    let mut decoder =
        etcd_trace::analyze::peers::PeerDecoder::for_recorded_ports(&reader.header().config.ports);
    let mut records = Vec::new();
    for e in events {
        decoder.push_owned(e, &mut records);
    }
    decoder.finish(&mut records);
    records
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Requests per HTTP/2 `:path` that tshark decodes from a pcap or pcapng, port 2379 read
/// as HTTP/2 (every request HEADERS frame carries a `:path`).
pub fn tshark_paths(pcap: &Path) -> std::collections::BTreeMap<String, u64> {
    let out = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-d", "tcp.port==2379,http2"])
        .args([
            "-Y",
            "http2.headers.path",
            "-T",
            "fields",
            "-e",
            "http2.headers.path",
        ])
        .output()
        .expect("tshark (Debian package tshark) is needed for this test");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut paths = std::collections::BTreeMap::new();
    for line in stdout(&out).lines() {
        for path in line.split(',').filter(|p| !p.is_empty()) {
            *paths.entry(path.to_string()).or_default() += 1;
        }
    }
    paths
}

/// A packet capture program (tshark, dumpcap) on lo inside the rig's namespace, writing
/// `out` for traffic to port 2379, until stopped or dropped.
#[cfg(feature = "record")]
pub struct PacketCapture {
    child: std::process::Child,
}

#[cfg(feature = "record")]
impl PacketCapture {
    /// Start `program` and wait until its log says `ready`.
    pub fn start(rig: &Rig, program: &str, out: &Path, extra: &[&str], ready: &str) -> Self {
        use std::time::{Duration, Instant};
        let log = out.with_extension("log");
        let mut child = rig
            .in_netns(program)
            .args([
                "-i",
                "lo",
                "-f",
                "tcp port 2379",
                "-w",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (Debian package tshark) is needed: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(ready)
        {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{program} exited: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        PacketCapture { child }
    }

    pub fn stop(mut self) {
        etcd_trace::sandbox::signal(self.child.id(), 2);
        let _ = self.child.wait();
    }
}

#[cfg(feature = "record")]
impl Drop for PacketCapture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

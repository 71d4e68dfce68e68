//! A private etcd in a network namespace of its own, on 127.0.0.1:2379/2380 there. The
//! demo and the integration tests both use it: each gets its own namespace, so they can
//! run in parallel, attach to that namespace's `lo`, and never see each other's traffic.
//! Needs root, `ip` (iproute2), `etcd` and `etcdctl` on PATH.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// `etr-<pid>-<n>` with its loopback up.
    pub fn create() -> Result<Netns> {
        let name = format!(
            "etr-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run_checked(Command::new("ip").args(["netns", "add", &name]))
            .context("creating a network namespace (needs root and iproute2)")?;
        let ns = Netns { name };
        run_checked(ns.command("ip").args(["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn run_checked(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A temporary directory removed on drop (the binary has no tempfile dependency).
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<ScratchDir> {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A single-member etcd cluster inside `netns`, stopped on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub endpoint: String,
}

impl EtcdServer {
    /// Start etcd with its data dir under `dir`, and wait until it answers.
    pub fn start(netns: &Netns, dir: &Path) -> Result<EtcdServer> {
        let data_dir = dir.join("etcd-data");
        let log = dir.join("etcd.log");
        let log_file = std::fs::File::create(&log)?;
        let child = netns
            .command(which("etcd")?)
            .args([
                "--name",
                "m1",
                "--data-dir",
                data_dir.to_str().context("data dir path is not UTF-8")?,
                "--listen-client-urls",
                "http://127.0.0.1:2379",
                "--advertise-client-urls",
                "http://127.0.0.1:2379",
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "m1=http://127.0.0.1:2380",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting etcd")?;
        let mut server = EtcdServer {
            child,
            data_dir,
            log,
            endpoint: "127.0.0.1:2379".into(),
        };
        server.wait_ready(netns)?;
        Ok(server)
    }

    fn wait_ready(&mut self, netns: &Netns) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "etcd exited ({status}) before it was ready; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let ok = etcdctl_in(netns, &self.endpoint, &["endpoint", "health"])
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become healthy within 20 s; log in {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the etcd process itself (`ip netns exec` execs into it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run etcdctl (v3 API) inside the namespace against this server.
    pub fn etcdctl(&self, netns: &Netns, args: &[&str]) -> Result<Output> {
        etcdctl_in(netns, &self.endpoint, args)
    }
}

fn etcdctl_in(netns: &Netns, endpoint: &str, args: &[&str]) -> Result<Output> {
    netns
        .command(which("etcdctl")?)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running etcdctl")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send a signal to a process we started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, sig) };
}

/// `etcd-trace record` running as a child process.
pub struct RecorderProcess {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
    pub lines: Vec<String>,
}

impl RecorderProcess {
    /// Start `exe record ARGS` and wait until it says it is recording. It runs in our
    /// own namespaces and attaches in the traced etcd's network namespace by itself.
    pub fn start(exe: &Path, args: &[String]) -> Result<RecorderProcess> {
        let mut child = Command::new(exe)
            .arg("record")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting etcd-trace record")?;
        let pipe = child.stderr.take().context("recorder stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut rec = RecorderProcess {
            child,
            stderr: rx,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rec.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let ready = line.starts_with("recording ports");
                    rec.lines.push(line);
                    if ready {
                        return Ok(rec);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = rec.child.try_wait()? {
                        bail!(
                            "etcd-trace record exited ({status}) before recording:\n{}",
                            rec.lines.join("\n")
                        );
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "etcd-trace record did not start within 30 s:\n{}",
                            rec.lines.join("\n")
                        );
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = rec.child.wait()?;
                    bail!(
                        "etcd-trace record exited ({status}) before recording:\n{}",
                        rec.lines.join("\n")
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop with `sig` (SIGINT for a clean stop, SIGKILL for a crash) and wait; returns
    /// the exit status and everything it printed on stderr.
    pub fn stop(mut self, sig: i32) -> Result<(std::process::ExitStatus, String)> {
        signal(self.child.id(), sig);
        let status = self.child.wait()?;
        // Everything it printed, up to the end of its stderr: the reader thread ends the
        // channel at EOF. A busy machine may take a while to forward the last lines.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => break,
            }
        }
        Ok((status, self.lines.join("\n")))
    }
}

impl Drop for RecorderProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGINT);
            let _ = self.child.wait();
        }
    }
}

/// A small workload that exercises the common KV calls.
pub fn basic_workload(etcd: &EtcdServer, netns: &Netns) -> Result<()> {
    let steps: &[&[&str]] = &[
        &["put", "foo", "bar"],
        &["put", "/registry/pods/default/web-1", "running"],
        &["put", "/registry/secrets/default/token", "s3cr3t"],
        &["get", "foo"],
        &["get", "/registry/", "--prefix"],
        &["txn"],
        &["del", "foo"],
        &["get", "", "--prefix", "--keys-only"],
    ];
    for args in steps {
        let out = if args == &["txn"] {
            etcd_txn(netns, &etcd.endpoint)?
        } else {
            etcd.etcdctl(netns, args)?
        };
        if !out.status.success() {
            bail!(
                "etcdctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// `etcdctl txn` reads its compares and ops from stdin.
fn etcd_txn(netns: &Netns, endpoint: &str) -> Result<Output> {
    use std::io::Write;
    let mut child = netns
        .command(which("etcdctl")?)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("etcdctl stdin")?
        .write_all(b"value(\"foo\") = \"bar\"\n\nput foo baz\n\nput foo qux\n\n")?;
    Ok(child.wait_with_output()?)
}

/// Find a program on PATH, with a message naming the Debian package when it is missing.
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let package = match program {
        "etcd" => "etcd-server",
        "etcdctl" => "etcd-client",
        "ip" => "iproute2",
        other => other,
    };
    bail!("{program} is not on PATH: install it (Debian: apt-get install {package})")
}

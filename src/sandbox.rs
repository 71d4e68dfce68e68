//! A private etcd in a network namespace of its own, on 127.0.0.1:2379/2380 there (another
//! address or ports, client-certificate TLS, or a cluster of several members on request). The demo
//! and the integration tests both use it: each gets its own namespace, so they can run
//! in parallel, attach to that namespace's `lo`, and never see each other's traffic.
//! Also `etcd-trace record` as a child process ([`RecorderProcess`]). It is in the
//! binary for `demo`, which runs as root. Needs root, `ip` (iproute2), `etcd` and
//! `etcdctl` on PATH, and `openssl` for TLS.

use std::io::Write;
use std::net::IpAddr;
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

/// Hosts on one LAN: a network namespace each, with `eth0` at 10.77.0.N/24 (N from 1),
/// joined by veth pairs to a bridge in a namespace of its own. Deleting the namespaces
/// on drop deletes the veths and the bridge; nothing is made in the caller's namespace.
#[derive(Debug)]
pub struct Lan {
    pub hosts: Vec<Netns>,
    /// Each host's address on its `eth0`.
    pub addresses: Vec<IpAddr>,
    /// Holds the bridge `br0`; dropped after the hosts (field order).
    _switch: Netns,
}

impl Lan {
    pub fn create(n: usize) -> Result<Lan> {
        if n == 0 || n > 250 {
            bail!("a test LAN has 1 to 250 hosts, not {n}");
        }
        let switch = Netns::create()?;
        let ip_in = |ns: &Netns| {
            let mut c = Command::new("ip");
            c.args(["-n", &ns.name]);
            c
        };
        run_checked(ip_in(&switch).args(["link", "add", "br0", "type", "bridge"]))
            .context("creating a bridge")?;
        run_checked(ip_in(&switch).args(["link", "set", "br0", "up"]))?;
        let mut hosts = Vec::with_capacity(n);
        let mut addresses = Vec::with_capacity(n);
        for i in 1..=n {
            let host = Netns::create()?;
            let port = format!("p{i}");
            run_checked(
                ip_in(&switch)
                    .args(["link", "add", &port, "type", "veth"])
                    .args(["peer", "name", "eth0", "netns", &host.name]),
            )
            .context("creating a veth pair")?;
            run_checked(ip_in(&switch).args(["link", "set", &port, "master", "br0", "up"]))?;
            let address = IpAddr::from([10, 77, 0, i as u8]);
            run_checked(ip_in(&host).args([
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]))?;
            run_checked(ip_in(&host).args(["link", "set", "eth0", "up"]))?;
            hosts.push(host);
            addresses.push(address);
        }
        Ok(Lan {
            hosts,
            addresses,
            _switch: switch,
        })
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

/// A temporary directory, removed on drop. The demo runs as root in a shared /tmp, so
/// its name is random and it is made fresh (never an existing directory or a link
/// someone planted), readable by its owner only.
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// `<temp dir>/<prefix>-<random>`, mode 0700.
    pub fn new(prefix: &str) -> Result<ScratchDir> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .with_context(|| {
                format!(
                    "creating a directory {prefix}-* in {}",
                    std::env::temp_dir().display()
                )
            })?;
        Ok(ScratchDir(dir.keep()))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and the certificates it signed for a TLS etcd and its clients: PEM files with
/// EC P-256 keys, made by the `openssl` command line tool.
#[derive(Debug, Clone)]
pub struct TlsCerts {
    pub ca: PathBuf,
    /// etcd's, on its client port and on its peer port, where it both serves and connects
    /// with it: SAN IP:127.0.0.1 and DNS:localhost, for server and client authentication.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The clients' (etcdctl, the tests' own clients).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsCerts {
    /// Write a new CA, server and client certificate into `dir` (created if missing).
    pub fn generate(dir: &Path) -> Result<TlsCerts> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let openssl = which("openssl")?;
        let ca_key = dir.join("ca.key");
        let certs = TlsCerts {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        run_checked(
            Command::new(&openssl)
                .args(["req", "-x509", "-new", "-days", "7"])
                .args(NEW_EC_KEY)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&certs.ca)
                .args(["-subj", "/CN=etcd-trace test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )
        .context("making the test CA with openssl")?;
        let server_extensions = "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        let client_extensions = "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n";
        for (name, cert, key, serial, extensions) in [
            (
                "server",
                &certs.server_cert,
                &certs.server_key,
                "2",
                server_extensions,
            ),
            (
                "client",
                &certs.client_cert,
                &certs.client_key,
                "3",
                client_extensions,
            ),
        ] {
            let csr = dir.join(format!("{name}.csr"));
            let ext = dir.join(format!("{name}.ext"));
            std::fs::write(&ext, extensions)
                .with_context(|| format!("writing {}", ext.display()))?;
            run_checked(
                Command::new(&openssl)
                    .args(["req", "-new"])
                    .args(NEW_EC_KEY)
                    .arg("-keyout")
                    .arg(key)
                    .arg("-out")
                    .arg(&csr)
                    .args(["-subj", &format!("/CN=etcd-trace test {name}")]),
            )
            .with_context(|| format!("making the {name} key and request with openssl"))?;
            run_checked(
                Command::new(&openssl)
                    .args(["x509", "-req", "-days", "7", "-set_serial", serial])
                    .arg("-in")
                    .arg(&csr)
                    .arg("-CA")
                    .arg(&certs.ca)
                    .arg("-CAkey")
                    .arg(&ca_key)
                    .arg("-extfile")
                    .arg(&ext)
                    .arg("-out")
                    .arg(cert),
            )
            .with_context(|| format!("signing the {name} certificate with openssl"))?;
        }
        Ok(certs)
    }
}

/// openssl arguments for a new unencrypted EC P-256 key.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// How an etcd is started: its address and ports, whether both speak TLS with client
/// certificates required, and the cluster it is a member of.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Where it listens and what it advertises: 127.0.0.1 unless it is one host of a
    /// cluster across namespaces. (The test certificates name 127.0.0.1 only.)
    pub address: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
    pub tls: Option<TlsCerts>,
    /// None: a cluster of this one member, named `m1`.
    pub member: Option<Membership>,
    /// More of etcd's flags (`--quota-backend-bytes 1048576`).
    pub extra_args: Vec<String>,
}

/// A member's name and the members it starts with (`--initial-cluster`).
#[derive(Debug, Clone)]
pub struct Membership {
    pub name: String,
    pub initial_cluster: String,
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions {
            address: IpAddr::from([127, 0, 0, 1]),
            client_port: 2379,
            peer_port: 2380,
            tls: None,
            member: None,
            extra_args: Vec::new(),
        }
    }
}

impl EtcdOptions {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn peer_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.endpoint(self.peer_port))
    }

    /// `ADDRESS:PORT`.
    fn endpoint(&self, port: u16) -> String {
        std::net::SocketAddr::new(self.address, port).to_string()
    }
}

/// A single-member etcd cluster inside `netns`, stopped on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `ADDRESS:PORT` of the client port.
    pub endpoint: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The certificates of a TLS etcd; etcdctl from [`EtcdServer::etcdctl`] uses them.
    pub tls: Option<TlsCerts>,
}

impl EtcdServer {
    /// Start etcd with its data dir under `dir`, and wait until it answers.
    pub fn start(netns: &Netns, dir: &Path) -> Result<EtcdServer> {
        EtcdServer::start_with(netns, dir, &EtcdOptions::default())
    }

    /// Start etcd with client-certificate TLS on its client and peer ports.
    pub fn start_tls(netns: &Netns, dir: &Path, certs: &TlsCerts) -> Result<EtcdServer> {
        let options = EtcdOptions {
            tls: Some(certs.clone()),
            ..EtcdOptions::default()
        };
        EtcdServer::start_with(netns, dir, &options)
    }

    /// Start etcd as `options` say, with its data dir and log under `dir` (created if
    /// missing; give each etcd of a namespace its own), and wait until it answers.
    pub fn start_with(netns: &Netns, dir: &Path, options: &EtcdOptions) -> Result<EtcdServer> {
        let mut server = EtcdServer::spawn(netns, dir, options)?;
        server.wait_ready(netns)?;
        Ok(server)
    }

    /// Start etcd as `options` say, without waiting for it: a member of a larger
    /// cluster answers only once a quorum runs.
    fn spawn(netns: &Netns, dir: &Path, options: &EtcdOptions) -> Result<EtcdServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let data_dir = dir.join("etcd-data");
        let log = dir.join("etcd.log");
        let log_file = std::fs::File::create(&log)?;
        let client_url = format!(
            "{}://{}",
            options.scheme(),
            options.endpoint(options.client_port)
        );
        let peer_url = options.peer_url();
        let (name, initial_cluster) = match &options.member {
            Some(m) => (m.name.clone(), m.initial_cluster.clone()),
            None => ("m1".to_string(), format!("m1={peer_url}")),
        };
        let mut command = netns.command(which("etcd")?);
        command.args([
            "--name",
            &name,
            "--data-dir",
            data_dir.to_str().context("data dir path is not UTF-8")?,
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &initial_cluster,
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]);
        if let Some(certs) = &options.tls {
            for (client, peer, file) in [
                ("--cert-file", "--peer-cert-file", &certs.server_cert),
                ("--key-file", "--peer-key-file", &certs.server_key),
                ("--trusted-ca-file", "--peer-trusted-ca-file", &certs.ca),
            ] {
                command.arg(client).arg(file).arg(peer).arg(file);
            }
            command.args(["--client-cert-auth", "--peer-client-cert-auth"]);
        }
        command.args(&options.extra_args);
        let child = command
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting etcd")?;
        Ok(EtcdServer {
            child,
            data_dir,
            log,
            endpoint: options.endpoint(options.client_port),
            client_port: options.client_port,
            peer_port: options.peer_port,
            tls: options.tls.clone(),
        })
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
            let ok = self
                .etcdctl(netns, &["endpoint", "health"])
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

    /// `http://` or `https://` and the endpoint.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.endpoint)
    }

    /// Run etcdctl (v3 API) inside the namespace against this server.
    pub fn etcdctl(&self, netns: &Netns, args: &[&str]) -> Result<Output> {
        run_etcdctl(self.etcdctl_command(netns)?, args)
    }

    /// etcdctl inside the namespace, with this server's endpoint and, for TLS, the CA
    /// and the client certificate; the caller adds the command and its arguments.
    pub fn etcdctl_command(&self, netns: &Netns) -> Result<Command> {
        etcdctl_command(netns, &self.url(), self.tls.as_ref())
    }

    /// `etcdctl endpoint status` of this member.
    pub fn status(&self, netns: &Netns) -> Result<MemberStatus> {
        let out = self.etcdctl(netns, &["endpoint", "status", "-w", "json"])?;
        if !out.status.success() {
            bail!(
                "etcdctl endpoint status against {} failed: {}",
                self.url(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        MemberStatus::parse(&out.stdout)
            .with_context(|| format!("reading the endpoint status of {}", self.url()))
    }
}

/// etcdctl inside `netns` against `endpoints` (comma-separated URLs), with the CA and
/// the client certificate of a TLS etcd.
fn etcdctl_command(netns: &Netns, endpoints: &str, tls: Option<&TlsCerts>) -> Result<Command> {
    let mut command = netns.command(which("etcdctl")?);
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"));
    if let Some(certs) = tls {
        command
            .arg("--cacert")
            .arg(&certs.ca)
            .arg("--cert")
            .arg(&certs.client_cert)
            .arg("--key")
            .arg(&certs.client_key);
    }
    Ok(command)
}

/// Run an etcdctl `command` with `args`, whatever its exit status.
fn run_etcdctl(mut command: Command, args: &[&str]) -> Result<Output> {
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running etcdctl")
}

/// What `etcdctl endpoint status` says of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's id (etcd prints it in hex: `{:x}`).
    pub member_id: u64,
    /// The leader's id, as this member knows it (0: none).
    pub leader: u64,
    pub raft_term: u64,
}

impl MemberStatus {
    /// The first member of `endpoint status -w json`'s output.
    fn parse(json: &[u8]) -> Result<MemberStatus> {
        let value: serde_json::Value = serde_json::from_slice(json)?;
        let status = &value[0]["Status"];
        let number = |v: &serde_json::Value, what: &str| {
            v.as_u64()
                .with_context(|| format!("no {what} in the endpoint status: {value}"))
        };
        Ok(MemberStatus {
            member_id: number(&status["header"]["member_id"], "member id")?,
            leader: number(&status["leader"], "leader")?,
            raft_term: number(&status["raftTerm"], "raft term")?,
        })
    }
}

/// A cluster of etcd members inside one namespace, `m1`, `m2`, ... on 127.0.0.1, each
/// with its own ports and data dir; stopped on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<EtcdServer>,
    /// How each member was started, and where.
    started: Vec<(EtcdOptions, PathBuf)>,
}

/// Most members: the ports of member k (from 2) are those of the first plus 10000 × k.
const MAX_MEMBERS: usize = 6;

impl EtcdCluster {
    /// Start `n` members (at most 6) with their data dirs and logs under `dir/m1`,
    /// `dir/m2`, ...: the first on `options`' ports, member k (from 2) on those plus
    /// 10000 × k (2379/2380, 22379/22380, 32379/32380), all with `options`' TLS. Waits
    /// until every member answers.
    pub fn start(
        netns: &Netns,
        dir: &Path,
        n: usize,
        options: &EtcdOptions,
    ) -> Result<EtcdCluster> {
        if n == 0 || n > MAX_MEMBERS {
            bail!("a test cluster has 1 to {MAX_MEMBERS} members, not {n}");
        }
        let mut members: Vec<EtcdOptions> = Vec::with_capacity(n);
        for k in 1..=n {
            // n ≤ 6: the shift fits, and ports past 65535 are refused below.
            let shift = if k == 1 { 0 } else { 10_000 * k as u32 };
            let port = |p: u16| {
                u16::try_from(u32::from(p) + shift)
                    .with_context(|| format!("member m{k} would need port {p} + {shift}"))
            };
            members.push(EtcdOptions {
                address: options.address,
                client_port: port(options.client_port)?,
                peer_port: port(options.peer_port)?,
                member: None,
                ..options.clone()
            });
        }
        EtcdCluster::launch(members.into_iter().map(|m| (netns, m)).collect(), dir)
    }

    /// Start one member in each of `hosts`' namespaces, listening on its address with
    /// `options`' ports and TLS, data dirs and logs under `dir/m1`, `dir/m2`, ...: a
    /// cluster across hosts that reach each other (veth pairs). Waits until every
    /// member answers. (`restart` would start a member in the namespace it is given.)
    pub fn start_across(
        hosts: &[(&Netns, IpAddr)],
        dir: &Path,
        options: &EtcdOptions,
    ) -> Result<EtcdCluster> {
        if hosts.is_empty() || hosts.len() > MAX_MEMBERS {
            bail!(
                "a test cluster has 1 to {MAX_MEMBERS} members, not {}",
                hosts.len()
            );
        }
        let members = hosts
            .iter()
            .map(|&(netns, address)| {
                (
                    netns,
                    EtcdOptions {
                        address,
                        member: None,
                        ..options.clone()
                    },
                )
            })
            .collect();
        EtcdCluster::launch(members, dir)
    }

    /// Start each member (`m1`, `m2`, ... in order) in its namespace, then wait until
    /// every one answers: a member answers only once a quorum runs.
    fn launch(members: Vec<(&Netns, EtcdOptions)>, dir: &Path) -> Result<EtcdCluster> {
        let n = members.len();
        let initial_cluster = members
            .iter()
            .enumerate()
            .map(|(i, (_, m))| format!("m{}={}", i + 1, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members: Vec::with_capacity(n),
            started: Vec::with_capacity(n),
        };
        for (i, (netns, mut member)) in members.iter().cloned().enumerate() {
            let name = format!("m{}", i + 1);
            member.member = Some(Membership {
                name: name.clone(),
                initial_cluster: initial_cluster.clone(),
            });
            let member_dir = dir.join(&name);
            cluster
                .members
                .push(EtcdServer::spawn(netns, &member_dir, &member)?);
            cluster.started.push((member, member_dir));
        }
        for (member, (netns, _)) in cluster.members.iter_mut().zip(&members) {
            member.wait_ready(netns)?;
        }
        Ok(cluster)
    }

    /// Stop member `i` and start it again (a new process) on its ports and data dir,
    /// waiting until it answers: its peers dial it anew, and it dials them.
    pub fn restart(&mut self, netns: &Netns, i: usize) -> Result<()> {
        let (options, dir) = self
            .started
            .get(i)
            .cloned()
            .with_context(|| format!("no member {i}"))?;
        // Stopped first: the ports must be free.
        drop(self.members.remove(i));
        let mut member = EtcdServer::spawn(netns, &dir, &options)?;
        member.wait_ready(netns)?;
        self.members.insert(i, member);
        Ok(())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(EtcdServer::pid).collect()
    }

    /// Every member's client and peer ports.
    pub fn ports(&self) -> Vec<u16> {
        self.members
            .iter()
            .flat_map(|m| [m.client_port, m.peer_port])
            .collect()
    }

    /// Every member's client URL, comma-separated.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(EtcdServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcdctl against every member; the caller adds the command and its arguments.
    pub fn etcdctl_command(&self, netns: &Netns) -> Result<Command> {
        let tls = self.members.first().and_then(|m| m.tls.as_ref());
        etcdctl_command(netns, &self.urls(), tls)
    }

    /// Run etcdctl against every member.
    pub fn etcdctl(&self, netns: &Netns, args: &[&str]) -> Result<Output> {
        run_etcdctl(self.etcdctl_command(netns)?, args)
    }

    /// Every member's status, in member order.
    pub fn status(&self, netns: &Netns) -> Result<Vec<MemberStatus>> {
        self.members.iter().map(|m| m.status(netns)).collect()
    }

    /// The members' statuses once they all name the same leader, which is one of them
    /// (waiting up to 20 s for an election to settle).
    pub fn settled_status(&self, netns: &Netns) -> Result<Vec<MemberStatus>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status(netns)?;
            let leader = status[0].leader;
            let agreed = leader != 0
                && status.iter().all(|s| s.leader == leader)
                && status.iter().any(|s| s.member_id == leader);
            if agreed {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the members did not agree on a leader within 20 s: {status:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl EtcdServer {
    /// Send `sig` (SIGKILL for a crash) and wait for etcd to end; how it ended.
    pub fn kill(&mut self, sig: i32) -> Result<std::process::ExitStatus> {
        signal(self.child.id(), sig);
        Ok(self.child.wait()?)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // One that ended already (killed) is not signalled: its pid may be another's.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
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

/// Whether a test that needs root (eBPF, network namespaces, a private etcd) is to be
/// skipped: true when not root, after saying so on stderr. With
/// `ETCD_TRACE_REQUIRE_ROOT=1` (CI, which runs as root and must never skip) such a test
/// fails instead.
pub fn skip_without_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return false;
    }
    // The test harness names each test's thread after the test.
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("this test");
    assert!(
        std::env::var_os("ETCD_TRACE_REQUIRE_ROOT").is_none_or(|v| v != "1"),
        "{name} needs root (eBPF, network namespaces), and ETCD_TRACE_REQUIRE_ROOT=1 says \
         not to skip it: run the tests as root"
    );
    // Written to the stream itself, which the harness does not capture, so it shows.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {name} needs root (eBPF, network namespaces)"
    );
    true
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
        let mut command = Command::new(exe);
        command.arg("record").args(args);
        RecorderProcess::start_command(command)
    }

    /// Start `command`, which runs `etcd-trace record` as this very process (through
    /// programs that exec it, such as `nsenter`), and wait until it says it is recording.
    pub fn start_command(mut command: Command) -> Result<RecorderProcess> {
        let mut child = command
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
                    let ready = line.starts_with("recording ports")
                        || line.starts_with("recording through etcd's API");
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
        Ok((status, self.printed()))
    }

    /// Wait up to `within` for it to end by itself; the exit status and everything it
    /// printed on stderr. One still running then is stopped on drop.
    pub fn wait_for_exit(mut self, within: Duration) -> Result<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                self.lines.extend(self.stderr.try_iter());
                bail!(
                    "etcd-trace record still runs after {within:?}:\n{}",
                    self.lines.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok((status, self.printed()))
    }

    /// Everything it printed on stderr, once it has ended.
    fn printed(&mut self) -> String {
        // Up to the end of its stderr: the reader thread ends the channel at EOF. A busy
        // machine may take a while to forward the last lines.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => break,
            }
        }
        self.lines.join("\n")
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
            etcd_txn(netns, etcd)?
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
fn etcd_txn(netns: &Netns, etcd: &EtcdServer) -> Result<Output> {
    use std::io::Write;
    let mut child = etcd
        .etcdctl_command(netns)?
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn scratch_dirs_are_fresh_private_and_unguessable() {
        let prefix = "etcd-trace-scratch-test";
        // The names the directories once had, planted beforehand: a directory holding a
        // file and a link to elsewhere.
        let planted = tempfile::tempdir().unwrap();
        let mut guessable = Vec::new();
        for n in 0..8 {
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            if n % 2 == 0 {
                std::fs::create_dir(&path).unwrap();
                std::fs::write(path.join("planted"), b"").unwrap();
            } else {
                std::os::unix::fs::symlink(planted.path(), &path).unwrap();
            }
            guessable.push(path);
        }
        let a = ScratchDir::new(prefix).unwrap();
        let b = ScratchDir::new(prefix).unwrap();
        let paths = [a.0.clone(), b.0.clone()];
        assert_ne!(paths[0], paths[1]);
        for path in &paths {
            assert!(!guessable.contains(path), "{} was planted", path.display());
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with(&format!("{prefix}-")), "{name}");
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "{name}");
            assert_eq!(std::fs::read_dir(path).unwrap().count(), 0, "{name}");
        }
        drop((a, b));
        for path in &paths {
            assert!(!path.exists(), "{} left behind", path.display());
        }
        assert_eq!(std::fs::read_dir(planted.path()).unwrap().count(), 0);
        for path in &guessable {
            if path.is_symlink() {
                std::fs::remove_file(path).unwrap();
            } else {
                std::fs::remove_dir_all(path).unwrap();
            }
        }
    }
}

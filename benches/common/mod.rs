//! What the benchmarks share: the etcd load generator (this same bench binary started
//! again with `ETCD_TRACE_BENCH_ROLE=load`, so it can run inside etcd's network
//! namespace; over TLS with the client certificate when the etcd has TLS), child-process
//! handling, and counting what a capture holds. Included by
//! benches/record.rs and benches/analyze.rs with `mod common;`; each uses a subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_trace::capture::{CaptureReader, Event, ReadItem};
use etcd_trace::sandbox::{EtcdServer, Netns};
use serde::{Deserialize, Serialize};

pub const ROLE_ENV: &str = "ETCD_TRACE_BENCH_ROLE";
/// Calls per second of all the load generator's clients together; unset or 0 = unpaced.
const RATE_ENV: &str = "ETCD_TRACE_BENCH_LOAD_RATE";
/// Upper bound that keeps every client's loop finite whatever the clock does.
const MAX_OPS_PER_CLIENT: u64 = 20_000_000;

/// A numeric knob from the environment, or its default when unset.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number")),
        Err(_) => Ok(default),
    }
}

/// The knobs both benchmarks share: round length, timed repeats, load clients.
pub struct Rounds {
    pub secs: f64,
    pub repeats: usize,
    pub clients: usize,
}

impl Rounds {
    /// From `ETCD_TRACE_BENCH_SECS` (at most `max_secs`), `_REPEATS` and `_CLIENTS`.
    pub fn from_env(max_secs: f64) -> Result<Rounds> {
        let r = Rounds {
            secs: env_number("ETCD_TRACE_BENCH_SECS", 5.0)?,
            repeats: env_number("ETCD_TRACE_BENCH_REPEATS", 3)?,
            clients: env_number("ETCD_TRACE_BENCH_CLIENTS", 16)?,
        };
        if !(r.secs > 0.0 && r.secs <= max_secs) {
            bail!("ETCD_TRACE_BENCH_SECS must be in (0, {max_secs}]");
        }
        if r.repeats == 0 || r.repeats > 100 || r.clients == 0 || r.clients > 1024 {
            bail!("ETCD_TRACE_BENCH_REPEATS must be 1..=100 and ETCD_TRACE_BENCH_CLIENTS 1..=1024");
        }
        Ok(r)
    }
}

/// A benchmark's exit status, its error printed with the causes.
pub fn exit_code(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------ load generator role

#[derive(Debug, Serialize, Deserialize)]
pub struct LoadResult {
    /// Calls that succeeded in the measured window.
    pub puts: u64,
    pub gets: u64,
    pub errors: u64,
    /// The first Range of each client, made before the clock starts.
    #[serde(default)]
    pub warmups: u64,
    pub secs: f64,
    /// Latency the clients saw, in µs: the median and the 99th percentile of the calls
    /// that succeeded in the measured window.
    #[serde(default)]
    pub p50_us: f64,
    #[serde(default)]
    pub p99_us: f64,
}

impl LoadResult {
    pub fn ops_per_sec(&self) -> f64 {
        (self.puts + self.gets) as f64 / self.secs.max(1e-9)
    }

    /// Every call that succeeded, the warm-up calls included: what a capture of the
    /// whole run should hold.
    pub fn completed_calls(&self) -> u64 {
        self.puts + self.gets + self.warmups
    }
}

/// `ETCD_TRACE_BENCH_ROLE=load BENCH SECS CLIENTS ENDPOINT [CA CERT KEY]`: run inside
/// etcd's namespace (over TLS with the client certificate CERT and KEY when they are
/// given), print the result as one JSON line.
pub fn load_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args
        .first()
        .context("load: missing SECS")?
        .parse()
        .context("load: SECS")?;
    let clients: usize = args
        .get(1)
        .context("load: missing CLIENTS")?
        .parse()
        .context("load: CLIENTS")?;
    let endpoint = args.get(2).context("load: missing ENDPOINT")?.clone();
    let tls = match &args[3.min(args.len())..] {
        [] => None,
        [ca, cert, key] => Some(tls_options(ca, cert, key)?),
        _ => bail!("load: give all of CA CERT KEY or none"),
    };
    let rate: f64 = env_number(RATE_ENV, 0.0)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(load(
        Duration::from_secs_f64(secs),
        clients,
        rate,
        endpoint,
        tls,
    ))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// The CA to trust and the client certificate to show, from PEM files.
fn tls_options(ca: &str, cert: &str, key: &str) -> Result<etcd_client::TlsOptions> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |p: &str| std::fs::read(p).with_context(|| format!("load: reading {p}"));
    Ok(TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(ca)?))
        .identity(Identity::from_pem(read(cert)?, read(key)?)))
}

/// The value at `q` (0..=1) of sorted `values`, 0 when empty.
fn quantile(sorted: &[u32], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => f64::from(sorted[((n - 1) as f64 * q).round() as usize]),
    }
}

/// `clients` connections calling as fast as etcd answers, or, with `rate` > 0, each on a
/// fixed schedule of `rate / clients` calls per second (a late call is sent at once and
/// the schedule does not catch up in a burst).
async fn load(
    duration: Duration,
    clients: usize,
    rate: f64,
    endpoint: String,
    tls: Option<etcd_client::TlsOptions>,
) -> Result<LoadResult> {
    use etcd_client::{Client, ConnectOptions};
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    // One client each, so one HTTP/2 connection each; the first request opens it
    // before the clock starts.
    let mut conns = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = Client::connect([endpoint.as_str()], Some(options.clone()))
            .await
            .with_context(|| format!("client {c}: connecting"))?;
        client
            .get(format!("bench/{c:03}/warmup"), None)
            .await
            .with_context(|| format!("client {c}: first request"))?;
        conns.push(client);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            tokio::spawn(async move {
                let (mut puts, mut gets, mut errors) = (0u64, 0u64, 0u64);
                let mut latencies_us: Vec<u32> = Vec::new();
                let value = vec![b'v'; 64];
                let mut schedule = (rate > 0.0).then(|| {
                    let mut t =
                        tokio::time::interval(Duration::from_secs_f64(clients as f64 / rate));
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                for i in 0..MAX_OPS_PER_CLIENT {
                    if let Some(t) = schedule.as_mut() {
                        t.tick().await;
                    }
                    if Instant::now() >= deadline || errors > 1000 {
                        break;
                    }
                    let key = format!("bench/{c:03}/{:04}", i % 1024);
                    let sent = Instant::now();
                    // One Range for every three Puts.
                    let ok = if i % 4 == 3 {
                        client.get(key, None).await.is_ok()
                    } else {
                        client.put(key, value.clone(), None).await.is_ok()
                    };
                    if ok {
                        latencies_us
                            .push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    match (ok, i % 4 == 3) {
                        (true, true) => gets += 1,
                        (true, false) => puts += 1,
                        (false, _) => errors += 1,
                    }
                }
                (puts, gets, errors, latencies_us)
            })
        })
        .collect();
    let mut total = LoadResult {
        puts: 0,
        gets: 0,
        errors: 0,
        warmups: clients as u64,
        secs: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
    };
    let mut latencies_us = Vec::new();
    for t in tasks {
        let (p, g, e, l) = t.await?;
        total.puts += p;
        total.gets += g;
        total.errors += e;
        latencies_us.extend(l);
    }
    total.secs = start.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    total.p50_us = quantile(&latencies_us, 0.5);
    total.p99_us = quantile(&latencies_us, 0.99);
    Ok(total)
}

// ------------------------------------------------------------------ child processes

/// A child we started, killed (by its pid) if still running when dropped.
pub struct ChildGuard {
    pub child: Child,
    lines: Receiver<String>,
}

impl ChildGuard {
    pub fn spawn(mut cmd: std::process::Command) -> Result<ChildGuard> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let out = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildGuard { child, lines: rx })
    }

    pub fn next_line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => bail!("no output within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait()?;
                bail!("child exited ({status}) without the expected output")
            }
        }
    }

    /// Wait for exit and return its last stdout line (the JSON result).
    pub fn finish(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("child did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut last = None;
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            last = Some(line);
        }
        if !status.success() {
            bail!("child failed ({status})");
        }
        last.context("child printed no result")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `clients` clients on `etcd` for `secs`, from inside `netns`, as fast as etcd answers.
pub fn load_in(netns: &Netns, etcd: &EtcdServer, secs: f64, clients: usize) -> Result<LoadResult> {
    paced_load_in(netns, etcd, secs, clients, 0.0)
}

/// As `load_in`, at `rate` calls per second in all (0: unpaced).
pub fn paced_load_in(
    netns: &Netns,
    etcd: &EtcdServer,
    secs: f64,
    clients: usize,
    rate: f64,
) -> Result<LoadResult> {
    let mut cmd = netns.command(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "load")
        .env(RATE_ENV, rate.to_string())
        .arg(secs.to_string())
        .arg(clients.to_string())
        .arg(&etcd.endpoint)
        .stdin(Stdio::null());
    if let Some(certs) = &etcd.tls {
        cmd.arg(&certs.ca)
            .arg(&certs.client_cert)
            .arg(&certs.client_key);
    }
    let mut child = ChildGuard::spawn(cmd)?;
    let line = child
        .finish(Duration::from_secs_f64(secs + 60.0))
        .context("load generator")?;
    let result: LoadResult =
        serde_json::from_str(&line).with_context(|| format!("load result {line:?}"))?;
    if result.errors > 0 {
        println!("    (load generator: {} failed requests)", result.errors);
    }
    Ok(result)
}

// ------------------------------------------------------------------ capture contents

/// What a capture file holds, counted by reading it through.
#[derive(Debug, Default)]
pub struct CaptureCounts {
    pub events: u64,
    pub packets: u64,
    pub syscalls: u64,
    /// Chunks of TLS plaintext.
    pub tls: u64,
    /// Events the recorder reported lost (the sum of the loss records' counts).
    pub lost: u64,
    pub damaged: u64,
    /// Syscall events per file kind.
    pub by_kind: std::collections::BTreeMap<&'static str, u64>,
}

impl CaptureCounts {
    pub fn read(capture: &Path) -> Result<CaptureCounts> {
        let reader = CaptureReader::open(capture)
            .with_context(|| format!("opening {}", capture.display()))?;
        let mut c = CaptureCounts::default();
        for item in reader.events() {
            match item {
                ReadItem::Event(ev) => {
                    c.events += 1;
                    match ev {
                        Event::Packet(_) => c.packets += 1,
                        Event::Syscall(s) => {
                            c.syscalls += 1;
                            *c.by_kind.entry(s.file.kind.name()).or_default() += 1;
                        }
                        Event::Loss(l) => c.lost += l.count,
                        Event::Tls(_) => c.tls += 1,
                        Event::Process(_) | Event::Api(_) => {}
                    }
                }
                ReadItem::Damaged(_) => c.damaged += 1,
            }
        }
        Ok(c)
    }

    /// The syscalls per file kind (`wal 1234, socket 5678`).
    pub fn by_kind_text(&self) -> String {
        self.by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

//! How much the recorder costs and how much it can take, measured on a real etcd and a
//! synthetic writer with real eBPF (needs root). `cargo bench --bench record` prints one
//! line per measurement and a summary with the targets:
//!
//! 1. etcd throughput with and without the recorder attached (16 clients, alternating
//!    rounds: each round with the recorder against the mean of the rounds around it, so
//!    a drift in etcd's own throughput cancels out), and the median ratio, with the
//!    writer thread's CPU per event (the measure of writer changes that the host's
//!    drift moves least); etcd's CPU per op (utime + stime over the round / ops) in every
//!    round, and the recorder's, each setting's against the rounds around it without.
//!    The load is not paced: every client sends its next call as soon as the last
//!    returns, so etcd runs saturated;
//!    Then the figures users ask about, at half of that saturated throughput (paced
//!    clients, rounds with the recorder bracketed by rounds without): the cost per op,
//!    (etcd's CPU + the recorder's - etcd's without) / etcd's without, and the clients'
//!    p50 and p99 latency with over without;
//! 2. the recorder's capacity: a process writing 64-byte chunks to a file in a data dir
//!    at a fixed rate, then as fast as it can; events received, lost, recorder CPU;
//! 3. the eBPF programs' own cost per run (`record --stats`);
//! 4. bytes per event in the capture file;
//! 5. the recorder's userspace stages (redaction, encoding and compression at a few zstd
//!    levels) timed offline on the etcd capture, in ns per event; its packets alone (a
//!    `--no-syscalls` capture) against the same packets as pcapng compressed with zstd
//!    -1 (target ≤ 0.5× the size); its WAL writes alone, the long ones counted.
//!
//! The load generator (benches/common) and the writer are this same binary started again
//! with `ETCD_TRACE_BENCH_ROLE` set, so they can run inside a network namespace.
//! Knobs: `ETCD_TRACE_BENCH_SECS` (round length, default 5), `ETCD_TRACE_BENCH_REPEATS`
//! (default 3), `ETCD_TRACE_BENCH_CLIENTS` (default 16), `ETCD_TRACE_BENCH_RATE`
//! (writes/s of the paced writer, default 200000), `ETCD_TRACE_BENCH_RECORD_ARGS` (extra
//! `record` arguments for every recorder round, e.g. `--buffer perf`),
//! `ETCD_TRACE_BENCH_COMPARE` (arguments of a further recorder round in each repeat, to
//! compare settings under the same conditions, e.g. `--priority normal`; several
//! settings separated by `;`),
//! `ETCD_TRACE_BENCH_COMPARE_EXE` (the second round runs this `etcd-trace` binary: an
//! older build against this one),
//! `ETCD_TRACE_BENCH_TLS=1` (etcd with client-certificate TLS on both ports, made in the
//! scratch dir, and the load over TLS: with `ETCD_TRACE_BENCH_COMPARE="--no-tls"` the
//! summary says what capturing the plaintext adds to etcd's CPU per op),
//! `ETCD_TRACE_BENCH_STAGES=FILE` (only stage 5, on a capture of your own).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{
    env_number, exit_code, load_in, load_main, paced_load_in, CaptureCounts, ChildGuard,
    LoadResult, Rounds, ROLE_ENV,
};
use etcd_trace::capture::{
    CaptureReader, CaptureWriter, Event, EventKind, FileKind, ReadItem, WriterOptions,
};
use etcd_trace::redact::SecretScrubber;
use etcd_trace::sandbox::{EtcdOptions, EtcdServer, Netns, RecorderProcess, ScratchDir, TlsCerts};
use serde::{Deserialize, Serialize};

/// The writer's file, relative to its data dir.
const GEN_FILE: &str = "member/wal/gen.wal";
const CHUNK: usize = 64;
/// The writer rewinds after this many writes so the file stays small (lseek is not traced).
const GEN_REWIND_EVERY: u64 = 1 << 16;
/// Upper bound that keeps the writer's loop finite whatever the clock does.
const MAX_WRITES: u64 = 200_000_000;
const TARGET_RATIO: f64 = 0.97;
const TARGET_NS_PACKET: f64 = 50.0;
const TARGET_NS_SYSCALL: f64 = 100.0;
/// What capturing TLS plaintext may add to etcd's CPU per op, in % of it without the
/// recorder.
const TARGET_TLS_CPU: f64 = 5.0;
/// At half load: etcd's CPU plus the recorder's, per op, above etcd's without, as a share
/// of it.
const TARGET_COST_PER_OP: f64 = 0.02;
/// At half load: the clients' p50 and p99 latency with the recorder over without.
const TARGET_LATENCY_RATIO: f64 = 1.02;

fn main() -> ExitCode {
    exit_code(match std::env::var(ROLE_ENV).as_deref() {
        Ok("load") => load_main(),
        Ok("gen") => gen_main(),
        _ if std::env::var_os("ETCD_TRACE_BENCH_STAGES").is_some() => bench_stages(Path::new(
            &std::env::var_os("ETCD_TRACE_BENCH_STAGES").unwrap_or_default(),
        )),
        _ => bench_main(),
    })
}

// ------------------------------------------------------------------ configuration

struct Config {
    secs: f64,
    repeats: usize,
    clients: usize,
    rate: u64,
    /// etcd with client-certificate TLS, the load over TLS.
    tls: bool,
}

impl Config {
    fn from_env() -> Result<Config> {
        let Rounds {
            secs,
            repeats,
            clients,
        } = Rounds::from_env(600.0)?;
        let cfg = Config {
            secs,
            repeats,
            clients,
            rate: env_number("ETCD_TRACE_BENCH_RATE", 200_000)?,
            tls: env_number("ETCD_TRACE_BENCH_TLS", 0u8)? != 0,
        };
        Ok(cfg)
    }
}

// ------------------------------------------------------------------ writer role

#[derive(Debug, Serialize, Deserialize)]
struct GenResult {
    /// write(2) calls made, and how many of them failed.
    writes: u64,
    failed: u64,
    secs: f64,
}

/// `ETCD_TRACE_BENCH_ROLE=gen BENCH FILE RATE SECS`: open FILE, print `ready PID`, wait
/// for a line on stdin, then write 64-byte chunks for SECS at RATE writes/s (in 1 ms
/// batches; 0 = as fast as possible) and print the result as one JSON line.
fn gen_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = PathBuf::from(args.first().context("gen: missing FILE")?);
    let rate: u64 = args
        .get(1)
        .context("gen: missing RATE")?
        .parse()
        .context("gen: RATE")?;
    let secs: f64 = args
        .get(2)
        .context("gen: missing SECS")?
        .parse()
        .context("gen: SECS")?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("gen: opening {}", path.display()))?;
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let chunk = [b'w'; CHUNK];

    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {}", std::process::id())?;
    stdout.flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;

    let duration = Duration::from_secs_f64(secs);
    let mut w = ChunkWriter {
        fd,
        chunk,
        writes: 0,
        failed: 0,
    };
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration || w.writes >= MAX_WRITES {
            break;
        }
        if rate == 0 {
            for _ in 0..256 {
                w.write_one();
            }
            continue;
        }
        // Everything due by the end of the current millisecond, then sleep to its end.
        let ms = elapsed.as_millis() as u64 + 1;
        let due = (rate.saturating_mul(ms) / 1000).min(MAX_WRITES);
        while w.writes < due {
            w.write_one();
        }
        let next = start + Duration::from_millis(ms);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    println!(
        "{}",
        serde_json::to_string(&GenResult {
            writes: w.writes,
            failed: w.failed,
            secs
        })?
    );
    Ok(())
}

/// One write(2) of a fixed chunk per call, counted.
struct ChunkWriter {
    fd: i32,
    chunk: [u8; CHUNK],
    writes: u64,
    failed: u64,
}

impl ChunkWriter {
    fn write_one(&mut self) {
        // SAFETY: fd stays open while the writer lives and chunk is CHUNK bytes.
        let n = unsafe { libc::write(self.fd, self.chunk.as_ptr().cast(), CHUNK) };
        if n != CHUNK as isize {
            self.failed += 1;
        }
        self.writes += 1;
        if self.writes.is_multiple_of(GEN_REWIND_EVERY) {
            // SAFETY: plain syscall on our own fd.
            unsafe { libc::lseek(self.fd, 0, libc::SEEK_SET) };
        }
    }
}

// ------------------------------------------------------------------ recorder helpers

/// What the recorder printed when it stopped, and what its capture holds.
#[derive(Debug, Default)]
struct RecorderReport {
    stderr: String,
    /// From `lost N events (kernel handed over K, received R)`.
    lost_reported: u64,
    /// `program runs ns/run` rows.
    stats: Vec<(String, u64, f64)>,
    capture_bytes: u64,
    capture_events: u64,
    loss_records: u64,
    lost_in_capture: u64,
    damaged: u64,
    /// Recorder CPU (user+system) over the measured window, in percent of one core.
    cpu_percent: f64,
}

impl RecorderReport {
    fn bytes_per_event(&self) -> f64 {
        self.capture_bytes as f64 / self.capture_events.max(1) as f64
    }

    fn stat(&self, name: &str) -> Option<(u64, f64)> {
        self.stats
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, runs, ns)| (runs, ns))
    }

    /// ns/run of the syscall programs' entry plus exit: one syscall, averaged over every
    /// syscall on the machine (the programs see them all and return early on most).
    fn syscall_ns(&self) -> f64 {
        SYSCALL_PROGRAMS
            .iter()
            .map(|p| self.stat(p).map_or(0.0, |s| s.1))
            .sum()
    }

    /// Total time in the syscall programs divided by the syscall events recorded: the
    /// kernel cost per traced syscall, including the runs on untraced calls.
    fn syscall_ns_per_event(&self, events: u64) -> f64 {
        let total: f64 = self
            .stats
            .iter()
            .filter(|(n, _, _)| SYSCALL_PROGRAMS.contains(&n.as_str()))
            .map(|&(_, runs, ns)| runs as f64 * ns)
            .sum();
        total / events.max(1) as f64
    }
}

impl RecorderReport {
    /// Runs of the TLS uprobe programs.
    fn uprobe_runs(&self) -> u64 {
        self.uprobe_stats().map(|(_, runs, _)| runs).sum()
    }

    /// `tls_write_enter 850 (12345 hits), ...`: each uprobe program's ns per hit.
    fn uprobe_text(&self) -> String {
        self.uprobe_stats()
            .map(|(name, runs, ns)| format!("{name} {ns:.0} ({runs} hits)"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn uprobe_stats(&self) -> impl Iterator<Item = (&str, u64, f64)> {
        self.stats
            .iter()
            .filter(|(n, _, _)| n.starts_with("tls_"))
            .map(|(n, runs, ns)| (n.as_str(), *runs, *ns))
    }
}

/// The programs on the raw syscall tracepoints, as `--stats` names them.
const SYSCALL_PROGRAMS: [&str; 2] = ["sys_enter", "sys_exit"];

/// utime + stime of a whole process, all its threads.
fn process_cpu_ticks(pid: u32) -> Result<u64> {
    cpu_ticks_in(&format!("/proc/{pid}/stat"))
}

/// CPU ticks of the recorder's writer thread (`capture-writer`), 0 when it has none.
fn writer_cpu_ticks(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "capture-writer")
        })
        .and_then(|task| cpu_ticks_in(&task.path().join("stat").to_string_lossy()).ok())
        .unwrap_or(0)
}

/// utime + stime of a /proc stat file (a process's or a thread's).
fn cpu_ticks_in(stat_path: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(stat_path)?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed /proc/pid/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU used by `pid` (and by its writer thread) between two samples.
struct CpuSample {
    ticks: u64,
    writer_ticks: u64,
    at: Instant,
}

impl CpuSample {
    fn take(pid: u32) -> Result<CpuSample> {
        Ok(CpuSample {
            ticks: process_cpu_ticks(pid)?,
            writer_ticks: writer_cpu_ticks(pid),
            at: Instant::now(),
        })
    }

    /// The whole recorder's CPU since `earlier`, in percent of one core.
    fn percent_since(&self, earlier: &CpuSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        100.0 * self.seconds_since(earlier, |s| s.ticks) / wall
    }

    /// CPU seconds of the writer thread since `earlier`: the work per event that the
    /// host's drift moves least, so the measure to compare writer changes by.
    fn writer_seconds_since(&self, earlier: &CpuSample) -> f64 {
        self.seconds_since(earlier, |s| s.writer_ticks)
    }

    fn seconds_since(&self, earlier: &CpuSample, ticks: impl Fn(&CpuSample) -> u64) -> f64 {
        ticks(self).saturating_sub(ticks(earlier)) as f64 / clock_ticks()
    }
}

/// Extra `record` arguments for every recorder round, to compare settings
/// (`ETCD_TRACE_BENCH_RECORD_ARGS="--buffer perf"`).
fn extra_record_args() -> Vec<String> {
    words_of("ETCD_TRACE_BENCH_RECORD_ARGS")
}

/// `record` arguments of more recorder rounds in each repeat of the overhead measurement,
/// one round per `;`-separated setting (`ETCD_TRACE_BENCH_COMPARE="--priority normal"`,
/// `"--keep-secrets;--no-syscalls"`).
fn compare_variants() -> Vec<Vec<String>> {
    std::env::var("ETCD_TRACE_BENCH_COMPARE")
        .unwrap_or_default()
        .split(';')
        .map(words)
        .filter(|w| !w.is_empty())
        .collect()
}

fn words_of(var: &str) -> Vec<String> {
    words(&std::env::var(var).unwrap_or_default())
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn start_recorder(exe: &Path, args: &[String]) -> Result<RecorderProcess> {
    let mut args = args.to_vec();
    args.extend(extra_record_args());
    RecorderProcess::start(exe, &args).context("starting the recorder")
}

fn stop_recorder(
    rec: RecorderProcess,
    capture: &Path,
    cpu_percent: f64,
    count_file: Option<&str>,
) -> Result<(RecorderReport, u64)> {
    let (status, stderr) = rec.stop(libc::SIGINT)?;
    if !status.success() {
        bail!("the recorder failed ({status}):\n{stderr}");
    }
    let mut report = RecorderReport {
        cpu_percent,
        capture_bytes: std::fs::metadata(capture)?.len(),
        ..RecorderReport::default()
    };
    let mut in_table = false;
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("lost ") {
            report.lost_reported = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.as_slice() == ["program", "runs", "ns/run"] {
            in_table = true;
        } else if in_table && cols.len() == 3 {
            if let (Ok(runs), Ok(ns)) = (cols[1].parse(), cols[2].parse()) {
                report.stats.push((cols[0].to_string(), runs, ns));
            }
        }
    }
    report.stderr = stderr;
    // Count what the capture holds; `count_file` selects the syscall events to count.
    let reader =
        CaptureReader::open(capture).with_context(|| format!("opening {}", capture.display()))?;
    let mut counted = 0u64;
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => {
                report.capture_events += 1;
                match &ev {
                    Event::Loss(l) => {
                        report.loss_records += 1;
                        report.lost_in_capture += l.count;
                    }
                    Event::Syscall(s) if Some(s.file.path.as_str()) == count_file => {
                        counted += 1;
                    }
                    _ => {}
                }
            }
            ReadItem::Damaged(_) => report.damaged += 1,
        }
    }
    if report.damaged > 0 {
        println!(
            "    WARNING: {} damaged stretches in {}",
            report.damaged,
            capture.display()
        );
    }
    Ok((report, counted))
}

fn print_stats_table(tag: &str, report: &RecorderReport) {
    println!("{tag} {:<20} {:>12} {:>10}", "program", "runs", "ns/run");
    for (name, runs, ns) in &report.stats {
        println!("{tag} {name:<20} {runs:>12} {ns:>10.0}");
    }
}

fn recorder_lines(report: &RecorderReport) -> String {
    report
        .stderr
        .lines()
        .filter(|l| {
            [
                "recorded ",
                "wrote ",
                "lost ",
                "the capture writer ",
                "warning",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| format!("      recorder: {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A 95% interval for the median of `values` (bootstrap: the median of 2000 resamples
/// with replacement, their 2.5th and 97.5th percentiles). On this kind of machine a
/// median of 20 rounds moves by several points from run to run; the interval says how
/// far to trust one.
fn median_interval(values: &[f64]) -> (f64, f64) {
    bootstrap_interval(values, median)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// A 95% bootstrap interval for `stat` of `values` (see [`median_interval`]).
fn bootstrap_interval(values: &[f64], stat: fn(&[f64]) -> f64) -> (f64, f64) {
    if values.len() < 2 {
        let m = stat(values);
        return (m, m);
    }
    // xorshift64, fixed seed: the same rounds give the same interval.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut stats: Vec<f64> = (0..2000)
        .map(|_| {
            let sample: Vec<f64> = (0..values.len())
                .map(|_| values[next(values.len())])
                .collect();
            stat(&sample)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    (stats[50], stats[1949])
}

// ------------------------------------------------------------------ the benchmark

/// How the overhead lines name recorder setting `v` (0: the default of this build; then
/// B, C, ... for the compared settings, the first run by the other build if one is given).
fn variant_name(v: usize, args: &[String], other_build: bool) -> String {
    if v == 0 {
        return "the recorder".to_string();
    }
    let letter = char::from(b'A' + (v % 26) as u8);
    let build = if v == 1 && other_build {
        " (ETCD_TRACE_BENCH_COMPARE_EXE)"
    } else {
        ""
    };
    let args = if args.is_empty() {
        " at default settings".to_string()
    } else {
        format!(" {}", args.join(" "))
    };
    format!("the recorder [{letter}]{build}{args}")
}

/// A round with the recorder over the mean of the rounds without it just before and after.
fn bracketed_ratio(with: f64, before: f64, after: f64) -> f64 {
    with / ((before + after) / 2.0).max(1e-9)
}

struct Overhead {
    /// Each round with the recorder against the rounds around it without.
    ratios: Vec<f64>,
    stats: RecorderReport,
    stats_ops: f64,
    stats_packets: u64,
    stats_syscalls: u64,
    /// etcd's CPU per op without the recorder: median and its 95% interval, in µs.
    without_cpu_us: f64,
    without_cpu_interval: (f64, f64),
    /// Each recorder setting's CPU per op (the default first).
    cpu_per_op: Vec<CpuPerOp>,
    /// Each compared setting's `record` arguments, and etcd's CPU per op at the default
    /// setting above it, repeat by repeat, as a share of etcd's CPU per op without.
    cpu_above: Vec<(Vec<String>, Paired)>,
    /// Runs of the TLS uprobes per completed call in the --stats round.
    uprobe_hits_per_op: f64,
    half: HalfLoad,
}

/// The figures users ask about, at about half of etcd's saturated throughput: what
/// recording costs per op, and what the clients' latency becomes. Each round with the
/// recorder against the mean of the rounds just before and after it without.
struct HalfLoad {
    rate: f64,
    /// (etcd's CPU with + the recorder's - etcd's without) / etcd's without, per op.
    cost: Vec<f64>,
    p50_ratio: Vec<f64>,
    p99_ratio: Vec<f64>,
    p50_without_us: f64,
    p99_without_us: f64,
}

impl HalfLoad {
    fn line(name: &str, values: &[f64], target: &str, ok: bool) -> String {
        let (lo, hi) = median_interval(values);
        format!(
            "{name} {:.3} (median of {}, 95% interval {lo:.3}-{hi:.3})  [target {target}: {}]",
            median(values),
            values.len(),
            if ok { "ok" } else { "MISSED" }
        )
    }
}

/// Rounds at `rate` calls/s, without and with the recorder at default settings in turn.
fn half_load_rounds(
    cfg: &Config,
    exe: &Path,
    dir: &Path,
    netns: &Netns,
    etcd: &EtcdServer,
    rate: f64,
) -> Result<HalfLoad> {
    println!("[1b] at half load: {rate:.0} calls/s, paced, each client on its own schedule");
    let round = |tag: &str| -> Result<EtcdRound> {
        let e = etcd_round(cfg, netns, etcd, rate)?;
        println!(
            "[1b] {tag}: {:.0} ops/s; etcd CPU {:.1} µs/op; latency p50 {:.0} µs, p99 {:.0} µs",
            e.load.ops_per_sec(),
            e.cpu_us_per_op,
            e.load.p50_us,
            e.load.p99_us
        );
        Ok(e)
    };
    let mut without = vec![round("round 0 without recorder")?];
    let mut h = HalfLoad {
        rate,
        cost: Vec::new(),
        p50_ratio: Vec::new(),
        p99_ratio: Vec::new(),
        p50_without_us: 0.0,
        p99_without_us: 0.0,
    };
    for r in 1..=cfg.repeats {
        let capture = dir.join(format!("half-{r}.etr"));
        let args: Vec<String> = vec![
            "-o".into(),
            capture.display().to_string(),
            "--pid".into(),
            etcd.pid().to_string(),
        ];
        let rec = start_recorder(exe, &args)?;
        let pid = rec.pid();
        let before = CpuSample::take(pid)?;
        let with = round(&format!("round {r} with the recorder"))?;
        let after = CpuSample::take(pid)?;
        let rec_us = with.per_op_us(after.seconds_since(&before, |s| s.ticks));
        stop_recorder(rec, &capture, after.percent_since(&before), None)?;
        let _ = std::fs::remove_file(&capture);
        let after_round = round(&format!("round {r} without recorder"))?;
        let prev = without.last().context("a round without comes first")?;
        let around = |f: fn(&EtcdRound) -> f64| (f(prev) + f(&after_round)) / 2.0;
        let etcd_without = around(|e| e.cpu_us_per_op).max(1e-9);
        h.cost
            .push((with.cpu_us_per_op + rec_us - etcd_without) / etcd_without);
        h.p50_ratio
            .push(with.load.p50_us / around(|e| e.load.p50_us).max(1e-9));
        h.p99_ratio
            .push(with.load.p99_us / around(|e| e.load.p99_us).max(1e-9));
        println!(
            "[1b] round {r}: recorder {rec_us:.2} µs/op; cost per op {:+.1}%; p50 {:.3}, p99 {:.3} of without",
            100.0 * h.cost[r - 1],
            h.p50_ratio[r - 1],
            h.p99_ratio[r - 1]
        );
        without.push(after_round);
    }
    let p = |f: fn(&EtcdRound) -> f64| median(&without.iter().map(f).collect::<Vec<_>>());
    h.p50_without_us = p(|e| e.load.p50_us);
    h.p99_without_us = p(|e| e.load.p99_us);
    Ok(h)
}

/// One load round on the etcd under test, and etcd's CPU (user + system, all its
/// threads) over it.
struct EtcdRound {
    load: LoadResult,
    cpu_us_per_op: f64,
}

impl EtcdRound {
    /// `cpu_s` seconds of CPU over this round's ops, in µs per op.
    fn per_op_us(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / (self.load.puts + self.load.gets).max(1) as f64
    }
}

/// A load round (at `rate` calls/s; 0: unpaced) with etcd's CPU sampled around it (the
/// load generator's start and its connections included, the same in every round).
fn etcd_round(cfg: &Config, netns: &Netns, etcd: &EtcdServer, rate: f64) -> Result<EtcdRound> {
    let before = process_cpu_ticks(etcd.pid())?;
    let load = paced_load_in(netns, etcd, cfg.secs, cfg.clients, rate)?;
    let ticks = process_cpu_ticks(etcd.pid())?.saturating_sub(before);
    let mut round = EtcdRound {
        load,
        cpu_us_per_op: 0.0,
    };
    round.cpu_us_per_op = round.per_op_us(ticks as f64 / clock_ticks());
    Ok(round)
}

/// etcd's and the recorder's CPU per op with one recorder setting (medians over its
/// rounds, with 95% intervals).
struct CpuPerOp {
    name: String,
    etcd_us: f64,
    etcd_us_interval: (f64, f64),
    /// etcd's CPU per op against the mean of the rounds around it without the recorder.
    ratio: f64,
    ratio_interval: (f64, f64),
    recorder_us: f64,
    recorder_us_interval: (f64, f64),
}

/// Two settings measured in the same repeats: the mean of their differences, its 95%
/// bootstrap interval, and in how many repeats the first was higher.
struct Paired {
    mean: f64,
    interval: (f64, f64),
    higher: usize,
    repeats: usize,
}

impl Paired {
    fn of(first: &[f64], second: &[f64]) -> Paired {
        let diffs: Vec<f64> = first.iter().zip(second).map(|(a, b)| a - b).collect();
        Paired {
            mean: mean(&diffs),
            interval: bootstrap_interval(&diffs, mean),
            higher: diffs.iter().filter(|d| **d > 0.0).count(),
            repeats: diffs.len(),
        }
    }

    /// The differences of etcd's CPU per op, in % of it without the recorder.
    fn share_text(&self) -> String {
        format!(
            "{:+.1}% of etcd's CPU per op without the recorder (95% interval {:+.1}% to {:+.1}%), higher in {} of {} repeats",
            100.0 * self.mean,
            100.0 * self.interval.0,
            100.0 * self.interval.1,
            self.higher,
            self.repeats
        )
    }
}

struct Capacity {
    paced_rate: u64,
    paced: GenRound,
    /// writes/s of the unpaced writer with no recorder attached.
    blast_alone: f64,
    blast: GenRound,
}

struct GenRound {
    result: GenResult,
    received: u64,
    report: RecorderReport,
}

impl GenRound {
    fn lost(&self) -> u64 {
        self.report.lost_in_capture
    }

    fn difference(&self) -> i128 {
        (i128::from(self.received) + i128::from(self.lost())) - i128::from(self.result.writes)
    }

    fn rate(&self) -> f64 {
        self.result.writes as f64 / self.result.secs.max(1e-9)
    }
}

fn bench_main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this benchmark loads eBPF programs and creates network namespaces: run it as root");
    }
    let cfg = Config::from_env()?;
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_etcd-trace"));
    let started = Instant::now();
    println!(
        "etcd-trace recorder benchmark: {} s rounds, {} repeats, {} clients{}, paced writer at {} writes/s",
        cfg.secs,
        cfg.repeats,
        cfg.clients,
        if cfg.tls { " over TLS" } else { "" },
        cfg.rate
    );
    let extra = extra_record_args();
    if !extra.is_empty() {
        println!("extra record arguments: {}", extra.join(" "));
    }
    let overhead = bench_overhead(&cfg, &exe)?;
    let capacity = bench_capacity(&cfg, &exe)?;
    summary(&cfg, &overhead, &capacity);
    println!("(benchmark took {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

fn bench_overhead(cfg: &Config, exe: &Path) -> Result<Overhead> {
    let dir = ScratchDir::new("etcd-trace-bench-etcd")?;
    let netns = Netns::create()?;
    let options = EtcdOptions {
        tls: cfg
            .tls
            .then(|| TlsCerts::generate(&dir.0.join("certs")))
            .transpose()?,
        ..EtcdOptions::default()
    };
    let etcd = EtcdServer::start_with(&netns, &dir.0, &options)?;
    println!(
        "[1] overhead on etcd throughput ({} clients, 3 puts : 1 range, one connection each{})",
        cfg.clients,
        if cfg.tls {
            ", TLS with client certificates"
        } else {
            ""
        }
    );
    let warm = load_in(&netns, &etcd, cfg.secs.min(2.0), cfg.clients)?;
    println!("[1] warm-up: {:.0} ops/s", warm.ops_per_sec());
    let load_round = || etcd_round(cfg, &netns, &etcd, 0.0);

    let record_args = |capture: &Path, extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "-o".to_string(),
            capture.display().to_string(),
            "--pid".to_string(),
            etcd.pid().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // without, with, without, with, ..., without: each round with the recorder is
    // compared with the mean of the rounds just before and after it, so a slow drift of
    // etcd's throughput (its WAL, backend and GC warming up) cancels out of the ratio.
    let without_round = |round: usize| -> Result<EtcdRound> {
        let e = load_round()?;
        println!(
            "[1] round {round} without recorder: {:>8.0} ops/s ({} puts, {} ranges in {:.2} s); etcd CPU {:.1} µs/op",
            e.load.ops_per_sec(),
            e.load.puts,
            e.load.gets,
            e.load.secs,
            e.cpu_us_per_op
        );
        Ok(e)
    };
    // With ETCD_TRACE_BENCH_COMPARE, each repeat has one more round with the recorder
    // per setting: the settings under the same conditions. With only
    // ETCD_TRACE_BENCH_COMPARE_EXE, the second round runs that build at default settings.
    let compare_exe = std::env::var_os("ETCD_TRACE_BENCH_COMPARE_EXE").map(PathBuf::from);
    let mut variants: Vec<Vec<String>> = vec![Vec::new()];
    variants.extend(compare_variants());
    if variants.len() == 1 && compare_exe.is_some() {
        variants.push(Vec::new());
    }
    let mut without = vec![without_round(0)?];
    let n = variants.len();
    let mut with: Vec<Vec<EtcdRound>> = (0..n).map(|_| Vec::new()).collect();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
    // etcd's CPU per op in each round with the recorder against the same rounds around it.
    let mut cpu_ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut recorder_us_per_op: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut writer_ns_per_event: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 1..=cfg.repeats {
        // The settings take turns going first: in six runs of 40 repeats comparing two
        // builds, whichever went second measured ~1 point better.
        for v in (0..n).map(|i| (i + round) % n) {
            let variant = &variants[v];
            let capture = dir.0.join(format!("etcd-{round}-{v}.etr"));
            let extra: Vec<&str> = variant.iter().map(String::as_str).collect();
            let rec_exe = match (v, &compare_exe) {
                (1, Some(other)) => other.as_path(),
                _ => exe,
            };
            let rec = start_recorder(rec_exe, &record_args(&capture, &extra))?;
            let pid = rec.pid();
            let before = CpuSample::take(pid)?;
            let e = load_round()?;
            let after = CpuSample::take(pid)?;
            let cpu = after.percent_since(&before);
            let writer_s = after.writer_seconds_since(&before);
            let rec_us = e.per_op_us(after.seconds_since(&before, |s| s.ticks));
            let (report, _) = stop_recorder(rec, &capture, cpu, None)?;
            let writer_ns = writer_s * 1e9 / report.capture_events.max(1) as f64;
            writer_ns_per_event[v].push(writer_ns);
            recorder_us_per_op[v].push(rec_us);
            let r = &e.load;
            println!(
                "[1] round {round} with {}: {:>8.0} ops/s ({} puts, {} ranges in {:.2} s); etcd CPU {:.1} µs/op; recorder CPU {:.1}% ({rec_us:.2} µs/op, writer {writer_ns:.0} ns/event), {} events, {} lost, {:.1} bytes/event",
                variant_name(v, variant, compare_exe.is_some()),
                r.ops_per_sec(),
                r.puts,
                r.gets,
                r.secs,
                e.cpu_us_per_op,
                report.cpu_percent,
                report.capture_events,
                report.lost_in_capture,
                report.bytes_per_event()
            );
            if let Some(line) = report
                .stderr
                .lines()
                .find(|l| l.starts_with("the capture writer "))
            {
                println!("      recorder: {line}");
            }
            let before = without.last().context("a round without comes first")?;
            let after = without_round(round)?;
            ratios[v].push(bracketed_ratio(
                e.load.ops_per_sec(),
                before.load.ops_per_sec(),
                after.load.ops_per_sec(),
            ));
            cpu_ratios[v].push(bracketed_ratio(
                e.cpu_us_per_op,
                before.cpu_us_per_op,
                after.cpu_us_per_op,
            ));
            without.push(after);
            with[v].push(e);
        }
    }
    let ops = |rounds: &[EtcdRound]| -> Vec<f64> {
        rounds.iter().map(|e| e.load.ops_per_sec()).collect()
    };
    let cpu =
        |rounds: &[EtcdRound]| -> Vec<f64> { rounds.iter().map(|e| e.cpu_us_per_op).collect() };
    let without_cpu = cpu(&without);
    let (wlo, whi) = median_interval(&without_cpu);
    println!(
        "[1] etcd CPU per op without the recorder: median {:.1} µs (95% interval {wlo:.1}-{whi:.1}) over {} rounds",
        median(&without_cpu),
        without_cpu.len()
    );
    let mut cpu_per_op = Vec::new();
    for (v, variant) in variants.iter().enumerate() {
        let name = variant_name(v, variant, compare_exe.is_some());
        println!(
            "[1] each round with {name} against the mean of its neighbours without: {}",
            ratios[v]
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (lo, hi) = median_interval(&ratios[v]);
        println!(
            "[1] {name}: median ratio {:.3}, 95% interval {lo:.3}-{hi:.3} (target >= {TARGET_RATIO}); medians without {:.0} ops/s, with {:.0} ops/s; writer {:.0} ns/event",
            median(&ratios[v]),
            median(&ops(&without)),
            median(&ops(&with[v])),
            median(&writer_ns_per_event[v])
        );
        let s = CpuPerOp {
            name,
            etcd_us: median(&cpu(&with[v])),
            etcd_us_interval: median_interval(&cpu(&with[v])),
            ratio: median(&cpu_ratios[v]),
            ratio_interval: median_interval(&cpu_ratios[v]),
            recorder_us: median(&recorder_us_per_op[v]),
            recorder_us_interval: median_interval(&recorder_us_per_op[v]),
        };
        println!(
            "[1] {}: etcd CPU per op median {:.1} µs (95% interval {:.1}-{:.1}), {:.3} of its neighbours' without (95% interval {:.3}-{:.3}); recorder CPU per op median {:.2} µs (95% interval {:.2}-{:.2})",
            s.name,
            s.etcd_us,
            s.etcd_us_interval.0,
            s.etcd_us_interval.1,
            s.ratio,
            s.ratio_interval.0,
            s.ratio_interval.1,
            s.recorder_us,
            s.recorder_us_interval.0,
            s.recorder_us_interval.1
        );
        cpu_per_op.push(s);
    }
    // Each repeat runs every setting next to the same rounds without: the difference
    // within a repeat leaves out the host's drift between repeats, so it tells settings
    // apart that the medians cannot.
    let mut cpu_above = Vec::new();
    for (v, variant) in variants.iter().enumerate().skip(1) {
        let name = variant_name(v, variant, compare_exe.is_some());
        let d = Paired::of(&ratios[v], &ratios[0]);
        println!(
            "[1] {name} against the recorder, repeat by repeat: mean difference in ratio {:+.3} (95% interval {:+.3} to {:+.3}), higher in {} of {} repeats",
            d.mean, d.interval.0, d.interval.1, d.higher, d.repeats
        );
        // In etcd's CPU per op without the recorder: what the default setting costs
        // beyond this one (with `--no-tls`, what capturing TLS plaintext costs).
        let d = Paired::of(&cpu_ratios[0], &cpu_ratios[v]);
        println!(
            "[1] etcd CPU per op with the recorder above {name}, repeat by repeat: mean {}",
            d.share_text()
        );
        cpu_above.push((variant.clone(), d));
    }
    let ratios = ratios.swap_remove(0);
    let half_rate = 0.5 * median(&ops(&without));
    let half = half_load_rounds(cfg, exe, &dir.0, &netns, &etcd, half_rate)?;

    // One more round with --stats, for the programs' own cost and the capture size.
    let capture = dir.0.join("etcd-stats.etr");
    let rec = start_recorder(exe, &record_args(&capture, &["--stats"]))?;
    let pid = rec.pid();
    let before = CpuSample::take(pid)?;
    let irq_before = irq_work_interrupts();
    let r = load_in(&netns, &etcd, cfg.secs, cfg.clients)?;
    let cpu = CpuSample::take(pid)?.percent_since(&before);
    let irq_work = irq_work_interrupts().saturating_sub(irq_before);
    let (stats, _) = stop_recorder(rec, &capture, cpu, None)?;
    let counts = CaptureCounts::read(&capture)?;
    let (packets, syscalls, by_kind) = (counts.packets, counts.syscalls, counts.by_kind_text());
    println!(
        "[3] etcd round with --stats: {:.0} ops/s, {} packets, {} syscalls ({}), {} TLS plaintext chunks, {} lost, recorder CPU {:.1}%",
        r.ops_per_sec(),
        packets,
        syscalls,
        by_kind,
        counts.tls,
        stats.lost_in_capture,
        stats.cpu_percent
    );
    println!("{}", recorder_lines(&stats));
    println!(
        "      irq_work interrupts during the round (system-wide, ring buffer wakeups among them): {irq_work}"
    );
    print_stats_table("[3] etcd:", &stats);
    let tc = stats.stat("tc_egress").map_or(0.0, |s| s.1);
    println!(
        "[3] etcd: tc_egress {tc:.0} ns/packet (target ~{TARGET_NS_PACKET}); enter+exit {:.0} ns per syscall on the machine; all syscall programs' time / traced syscalls {:.0} ns (target ~{TARGET_NS_SYSCALL})",
        stats.syscall_ns(),
        stats.syscall_ns_per_event(syscalls)
    );
    // Every call the recorder saw, the clients' first ones included.
    let uprobe_hits_per_op = stats.uprobe_runs() as f64 / r.completed_calls().max(1) as f64;
    if stats.uprobe_runs() > 0 {
        println!(
            "[3] etcd: TLS uprobes {} ns per hit (run_time_ns / run_cnt: the program alone, not the trap into the kernel), {uprobe_hits_per_op:.1} hits per op",
            stats.uprobe_text()
        );
    }
    println!(
        "[4] etcd capture: {} bytes for {} events = {:.1} bytes/event",
        stats.capture_bytes,
        stats.capture_events,
        stats.bytes_per_event()
    );
    drop(etcd);
    bench_stages(&capture)?;
    Ok(Overhead {
        ratios,
        stats,
        stats_ops: r.ops_per_sec(),
        stats_packets: packets,
        stats_syscalls: syscalls,
        without_cpu_us: median(&without_cpu),
        without_cpu_interval: (wlo, whi),
        cpu_per_op,
        cpu_above,
        uprobe_hits_per_op,
        half,
    })
}

/// The recorder's userspace stages, timed offline on a real capture: what each costs per
/// event, to see where the recorder's CPU goes (`ETCD_TRACE_BENCH_STAGES=FILE` runs only
/// this, on FILE).
fn bench_stages(capture: &Path) -> Result<()> {
    let reader = CaptureReader::open(capture)?;
    let header = reader.header().clone();
    let ports = header.config.ports.clone();
    let events: Vec<Event> = reader
        .events()
        .filter_map(|item| match item {
            ReadItem::Event(ev) => Some(ev),
            ReadItem::Damaged(_) => None,
        })
        .collect();
    drop(reader);
    let n = events.len().max(1) as f64;

    let (scrubbed, scrub_ns) = time_scrub(&ports, events.clone());
    println!(
        "[5] recorder stages offline on {scrubbed} events: scrub {:.0} ns/event",
        scrub_ns / n
    );
    // Each kind the scrubber follows, alone: what one packet and one TLS chunk cost it.
    for kind in [EventKind::Packet, EventKind::Tls] {
        let alone: Vec<Event> = events
            .iter()
            .filter(|e| e.kind() == kind)
            .cloned()
            .collect();
        if !alone.is_empty() {
            let (count, ns) = time_scrub(&ports, alone);
            println!(
                "[5] scrub of the {count} {} events alone: {:.0} ns/event",
                kind.name(),
                ns / count as f64
            );
        }
    }

    let dir = ScratchDir::new("etcd-trace-bench-stages")?;
    for level in [1, -1, -3, -5] {
        let path = dir.0.join(format!("level{level}.etr"));
        let (bytes, ns) = write_as_recorded(&path, &header, &events, level)?;
        println!(
            "[5] encode+compress at zstd level {level:>2}: {ns:.0} ns/event, {:.1} bytes/event",
            bytes as f64 / n
        );
    }
    packets_against_pcapng(&dir.0, &header, &events)?;
    wal_writes(&dir.0, &header, &events)?;
    Ok(())
}

/// `events` written as the recorder writes them (a block flushed at least once a second
/// of capture time, default block limits, zstd at `level`): the file's bytes, and the
/// writer's ns per event.
fn write_as_recorded(
    path: &Path,
    header: &etcd_trace::capture::Header,
    events: &[Event],
    level: i32,
) -> Result<(u64, f64)> {
    let options = WriterOptions {
        zstd_level: level,
        ..WriterOptions::default()
    };
    let started = Instant::now();
    let mut writer = CaptureWriter::create_with(path, header, options)?;
    let mut next_flush = events.first().map_or(0, Event::ts_ns) + 1_000_000_000;
    for ev in events {
        if ev.ts_ns() >= next_flush {
            writer.flush_block()?;
            next_flush = ev.ts_ns() + 1_000_000_000;
        }
        writer.push(ev)?;
    }
    let bytes = writer.finish()?.bytes_written;
    let ns = started.elapsed().as_secs_f64() * 1e9 / events.len().max(1) as f64;
    Ok((bytes, ns))
}

/// The goal for a packets-only capture against the same packets as pcapng, zstd -1.
const TARGET_PCAPNG_ZSTD_RATIO: f64 = 0.5;

/// The capture's packets alone (what `--no-syscalls` records) against the same packets
/// as pcapng (`export --format pcapng`) compressed with zstd -1, and what each costs per
/// packet.
fn packets_against_pcapng(
    dir: &Path,
    header: &etcd_trace::capture::Header,
    events: &[Event],
) -> Result<()> {
    let packets: Vec<Event> = events
        .iter()
        .filter(|e| e.kind() == EventKind::Packet)
        .cloned()
        .collect();
    if packets.is_empty() {
        return Ok(());
    }
    let n = packets.len() as f64;
    let etr = dir.join("packets.etr");
    let (etr_bytes, etr_ns) = write_as_recorded(
        &etr,
        header,
        &packets,
        etcd_trace::capture::block::DEFAULT_ZSTD_LEVEL,
    )?;
    let pcapng = dir.join("packets.pcapng");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-trace"))
        .args(["export", "--format", "pcapng", "-o"])
        .arg(&pcapng)
        .arg(&etr)
        .output()?;
    if !out.status.success() {
        bail!("export: {}", String::from_utf8_lossy(&out.stderr));
    }
    let raw = std::fs::read(&pcapng)?;
    let started = Instant::now();
    let zst = zstd::encode_all(raw.as_slice(), 1)?;
    let zstd_ns = started.elapsed().as_secs_f64() * 1e9 / n;
    let ratio = etr_bytes as f64 / zst.len().max(1) as f64;
    println!(
        "[5] packets only ({} packets): capture {} bytes ({:.1}/packet, {etr_ns:.0} ns/packet to encode and compress), pcapng {} bytes, pcapng + zstd -1 {} bytes ({:.1}/packet, {zstd_ns:.0} ns/packet to compress): capture / pcapng.zst = {ratio:.2} (target ≤ {TARGET_PCAPNG_ZSTD_RATIO}) {}",
        packets.len(),
        etr_bytes,
        etr_bytes as f64 / n,
        raw.len(),
        zst.len(),
        zst.len() as f64 / n,
        if ratio <= TARGET_PCAPNG_ZSTD_RATIO {
            "ok"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

/// WAL writes alone: what they take in the capture, the long ones (kept whole in
/// 64 KiB parts, joined again) apart.
fn wal_writes(dir: &Path, header: &etcd_trace::capture::Header, events: &[Event]) -> Result<()> {
    let is_write = |e: &&Event| matches!(e, Event::Syscall(s) if s.file.kind == FileKind::Wal && s.call.is_write());
    let writes: Vec<Event> = events.iter().filter(is_write).cloned().collect();
    if writes.is_empty() {
        return Ok(());
    }
    let long = writes
        .iter()
        .filter(|e| matches!(e, Event::Syscall(s) if s.data.len() > 65_536))
        .count();
    let data: usize = writes
        .iter()
        .map(|e| match e {
            Event::Syscall(s) => s.data.len(),
            _ => 0,
        })
        .sum();
    let (bytes, ns) = write_as_recorded(
        &dir.join("wal.etr"),
        header,
        &writes,
        etcd_trace::capture::block::DEFAULT_ZSTD_LEVEL,
    )?;
    println!(
        "[5] WAL writes: {} events ({long} longer than 64 KiB), {:.0} bytes of data each, {:.1} bytes/event in the capture, {ns:.0} ns/event to encode and compress",
        writes.len(),
        data as f64 / writes.len() as f64,
        bytes as f64 / writes.len() as f64
    );
    Ok(())
}

/// Events through a scrubber as the recorder's writer passes them: how many came out,
/// and the ns it took.
fn time_scrub(ports: &[u16], events: Vec<Event>) -> (usize, f64) {
    let started = Instant::now();
    let mut scrubber = SecretScrubber::new(ports.to_vec());
    // Counted and dropped as they come out, as the recorder hands them on: collecting
    // them would time the page faults of a vector as large as the capture.
    let mut scrubbed = 0usize;
    for ev in events {
        scrubber.push(ev, |e| {
            scrubbed += 1;
            drop(e);
        });
    }
    scrubbed += scrubber.finish().count();
    (scrubbed, started.elapsed().as_secs_f64() * 1e9)
}

fn bench_capacity(cfg: &Config, exe: &Path) -> Result<Capacity> {
    let netns = Netns::create()?;
    let dir = ScratchDir::new("etcd-trace-bench-gen")?;
    let data_dir = dir.0.join("data");
    std::fs::create_dir_all(data_dir.join("member/wal"))?;
    println!("[2] recorder capacity: one process writing {CHUNK}-byte chunks to {GEN_FILE} in a data dir");
    let paced = gen_round(cfg, exe, &netns, &dir.0, &data_dir, cfg.rate, true)?;
    let blast_alone = blast_baseline(cfg, &netns, &data_dir)?;
    let blast = gen_round(cfg, exe, &netns, &dir.0, &data_dir, 0, false)?;
    Ok(Capacity {
        paced_rate: cfg.rate,
        paced,
        blast_alone,
        blast,
    })
}

/// Start the writer in `netns`; it opens its file and waits. Returns it and its pid.
fn spawn_writer(
    cfg: &Config,
    netns: &Netns,
    data_dir: &Path,
    rate: u64,
) -> Result<(ChildGuard, u32)> {
    let mut cmd = netns.command(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "gen")
        .arg(data_dir.join(GEN_FILE))
        .arg(rate.to_string())
        .arg(cfg.secs.to_string())
        .stdin(Stdio::piped());
    let mut child = ChildGuard::spawn(cmd)?;
    let ready = child
        .next_line(Duration::from_secs(10))
        .context("waiting for the writer")?;
    let pid: u32 = ready
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("writer said {ready:?}"))?;
    Ok((child, pid))
}

/// Tell the writer to go and wait for its result.
fn run_writer(child: &mut ChildGuard, cfg: &Config) -> Result<GenResult> {
    {
        let stdin = child.child.stdin.as_mut().context("writer stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
    }
    let line = child
        .finish(Duration::from_secs_f64(cfg.secs + 60.0))
        .context("writer")?;
    serde_json::from_str(&line).with_context(|| format!("writer result {line:?}"))
}

/// The writer flat out with no recorder: what the tracing costs the traced process.
fn blast_baseline(cfg: &Config, netns: &Netns, data_dir: &Path) -> Result<f64> {
    let (mut child, _) = spawn_writer(cfg, netns, data_dir, 0)?;
    let result = run_writer(&mut child, cfg)?;
    let rate = result.writes as f64 / result.secs.max(1e-9);
    println!(
        "[2] blast without recorder: {} writes in {:.2} s = {rate:.0} writes/s",
        result.writes, result.secs
    );
    Ok(rate)
}

/// IRQ-work interrupts so far, all CPUs (the BPF ring buffer wakes its reader this way).
fn irq_work_interrupts() -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("IWI:"))
        .map(|rest| {
            rest.split_whitespace()
                .map_while(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

fn gen_round(
    cfg: &Config,
    exe: &Path,
    netns: &Netns,
    dir: &Path,
    data_dir: &Path,
    rate: u64,
    stats: bool,
) -> Result<GenRound> {
    let label = if rate == 0 {
        "blast".to_string()
    } else {
        format!("{rate}/s")
    };
    let (mut child, gen_pid) = spawn_writer(cfg, netns, data_dir, rate)?;
    let capture = dir.join(format!(
        "gen-{}.etr",
        if rate == 0 { "blast" } else { "paced" }
    ));
    let mut args: Vec<String> = vec![
        "-o".into(),
        capture.display().to_string(),
        "--pid".into(),
        gen_pid.to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--port".into(),
        "1".into(),
        "--iface".into(),
        "lo".into(),
    ];
    if stats {
        args.push("--stats".into());
    }
    let rec = start_recorder(exe, &args)?;
    let rec_pid = rec.pid();
    let before = CpuSample::take(rec_pid)?;
    let irq_before = irq_work_interrupts();
    let result = run_writer(&mut child, cfg)?;
    // Give the recorder a moment to drain what is still buffered, inside the window.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = CpuSample::take(rec_pid)?.percent_since(&before);
    let irq_work = irq_work_interrupts().saturating_sub(irq_before);
    let (report, received) = stop_recorder(rec, &capture, cpu, Some(GEN_FILE))?;
    let round = GenRound {
        result,
        received,
        report,
    };
    println!(
        "[2] {label}: {} writes in {:.2} s = {:.0} writes/s ({} failed); received {}, lost {}, received+lost-writes = {:+}; recorder CPU {:.1}%",
        round.result.writes,
        round.result.secs,
        round.rate(),
        round.result.failed,
        round.received,
        round.lost(),
        round.difference(),
        round.report.cpu_percent
    );
    println!("{}", recorder_lines(&round.report));
    println!(
        "      irq_work interrupts during the round (system-wide, ring buffer wakeups among them): {irq_work}"
    );
    if stats {
        let tag = format!("[3] writer {label}:");
        print_stats_table(&tag, &round.report);
        println!(
            "{tag} enter+exit {:.0} ns per syscall (nearly all the writer's writes); all syscall programs' time / received events {:.0} ns (target ~{TARGET_NS_SYSCALL})",
            round.report.syscall_ns(),
            round.report.syscall_ns_per_event(round.received)
        );
    }
    println!(
        "[4] writer {label} capture: {} bytes for {} events = {:.1} bytes/event",
        round.report.capture_bytes,
        round.report.capture_events,
        round.report.bytes_per_event()
    );
    Ok(round)
}

fn summary(cfg: &Config, o: &Overhead, c: &Capacity) {
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    let ratios = &o.ratios;
    let ratio = median(ratios);
    let (lo, hi) = median_interval(ratios);
    let spread = ratios.iter().copied().fold(f64::INFINITY, f64::min)
        ..=ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tc = o.stats.stat("tc_egress").map_or(0.0, |s| s.1);
    let etcd_sys = o.stats.syscall_ns_per_event(o.stats_syscalls);
    let gen_write = c.paced.report.syscall_ns();
    println!();
    println!("==================== summary ====================");
    let h = &o.half;
    println!(
        "{}",
        HalfLoad::line(
            &format!(
                "cost per op at half load ({:.0} calls/s): etcd's CPU + the recorder's over etcd's without, minus 1:",
                h.rate
            ),
            &h.cost,
            &format!("<= {TARGET_COST_PER_OP}"),
            median(&h.cost) <= TARGET_COST_PER_OP
        )
    );
    for (name, values, without) in [
        ("p50", &h.p50_ratio, h.p50_without_us),
        ("p99", &h.p99_ratio, h.p99_without_us),
    ] {
        println!(
            "{}",
            HalfLoad::line(
                &format!("client {name} latency at half load, with/without the recorder ({without:.0} µs without):"),
                values,
                &format!("<= {TARGET_LATENCY_RATIO}"),
                median(values) <= TARGET_LATENCY_RATIO
            )
        );
    }
    println!(
        "etcd throughput ({} clients): with/without the recorder {:.3}, median of {} bracketed rounds (95% interval {lo:.3}-{hi:.3}, range {:.3}-{:.3})  [target >= {TARGET_RATIO}: {}]",
        cfg.clients,
        ratio,
        ratios.len(),
        spread.start(),
        spread.end(),
        mark(ratio >= TARGET_RATIO)
    );
    println!(
        "paced writer {}/s: achieved {:.0}/s, received {}, lost {}  [target 0: {}], recorder CPU {:.1}%",
        c.paced_rate,
        c.paced.rate(),
        c.paced.received,
        c.paced.lost(),
        mark(c.paced.lost() == 0),
        c.paced.report.cpu_percent
    );
    println!(
        "blast writer: achieved {:.0} writes/s ({:.0} without recorder), received {}, lost {}, received+lost == writes: {} (difference {:+}), recorder CPU {:.1}%",
        c.blast.rate(),
        c.blast_alone,
        c.blast.received,
        c.blast.lost(),
        c.blast.difference() == 0,
        c.blast.difference(),
        c.blast.report.cpu_percent
    );
    println!(
        "kernel cost: tc_egress {tc:.0} ns/packet [target ~{TARGET_NS_PACKET}: {}]; write enter+exit {gen_write:.0} ns (writer) [target ~{TARGET_NS_SYSCALL}: {}]; etcd syscall programs {etcd_sys:.0} ns per traced syscall",
        mark(tc <= TARGET_NS_PACKET * 1.5),
        mark(gen_write <= TARGET_NS_SYSCALL * 1.5),
    );
    let (wlo, whi) = o.without_cpu_interval;
    println!(
        "etcd CPU per op (user + system, medians): without the recorder {:.1} µs (95% interval {wlo:.1}-{whi:.1}); {}",
        o.without_cpu_us,
        o.cpu_per_op
            .iter()
            .map(|s| format!(
                "with {} {:.1} µs, {:.3} of without (95% interval {:.3}-{:.3}), recorder {:.2} µs/op",
                s.name, s.etcd_us, s.ratio, s.ratio_interval.0, s.ratio_interval.1, s.recorder_us
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    for (args, d) in &o.cpu_above {
        let share = d.share_text();
        if cfg.tls && args.as_slice() == ["--no-tls"] {
            // What etcd pays per probe hit, trap included: the difference per op spread
            // over the hits per op of the --stats round.
            let per_hit = d.mean * o.without_cpu_us * 1e3 / o.uprobe_hits_per_op.max(1e-9);
            println!(
                "TLS plaintext capture (default against --no-tls) adds {share} [target <= {TARGET_TLS_CPU}%: {}]; uprobes {} ns per hit, {:.1} hits per op, so ~{per_hit:.0} ns of etcd CPU per hit",
                mark(100.0 * d.mean <= TARGET_TLS_CPU),
                o.stats.uprobe_text(),
                o.uprobe_hits_per_op
            );
        } else {
            println!(
                "etcd CPU per op, the recorder above the recorder with {}: {share}",
                args.join(" ")
            );
        }
    }
    println!(
        "capture size: etcd {:.1} bytes/event ({} packets + {} syscalls at {:.0} ops/s), writer {:.1} bytes/event",
        o.stats.bytes_per_event(),
        o.stats_packets,
        o.stats_syscalls,
        o.stats_ops,
        c.paced.report.bytes_per_event()
    );
    println!("==================================================");
}

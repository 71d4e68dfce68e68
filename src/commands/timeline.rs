//! `etcd-trace timeline FILE`: what happened when, per operation and per phase, as text
//! or as a Perfetto trace.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::live::{Input, LIVE_FLUSH};
use crate::analyze::api::{ApiFact, ApiState, Buckets, MISSING};
use crate::analyze::correlate::{CorrelatedCall, Correlator};
use crate::analyze::disk::DiskPhase;
use crate::analyze::histogram::Histogram;
use crate::analyze::order::TimeOrder;
use crate::analyze::phases::{phases_of, slowest, Phase, PHASES};
use crate::analyze::raft::{RaftAnalyzer, RaftEvent, RaftOptions, RaftReport, TermStart};
use crate::analyze::rpc::RecordKind;
use crate::capture::{Event, FileKind, FollowItem, ReadItem};
use crate::cli::{TimelineArgs, TimelineFormat};
use crate::decode::etcdpb::describe_range;
use crate::output::perfetto::TraceWriter;
use crate::output::{human_bytes, human_duration_ns, offset};

/// One line of the chronological view.
enum Item {
    Call(Box<CorrelatedCall>),
    Disk(DiskPhase),
    Conn {
        ts: u64,
        text: String,
    },
    Loss {
        ts: u64,
        count: u64,
    },
    /// An etcd process started or ended.
    Process {
        ts: u64,
        text: String,
        pid: u32,
    },
    /// Consensus: a leader, an election's outcome, a conflict, a heartbeat gap.
    Raft {
        ts: u64,
        text: String,
    },
    /// What an API-mode capture shows (`analyze::api`).
    Api(ApiFact),
}

impl Item {
    fn ts(&self) -> u64 {
        match self {
            Item::Call(c) => c.call.ts_ns,
            Item::Disk(d) => d.start_ns(),
            Item::Conn { ts, .. }
            | Item::Loss { ts, .. }
            | Item::Process { ts, .. }
            | Item::Raft { ts, .. } => *ts,
            Item::Api(f) => f.ts_ns(),
        }
    }
}

/// Items are printed in time order once the capture is this far past them (calls are
/// settled up to a few hundred ms after their reply), and at most this many wait.
const ORDER_HORIZON_NS: u64 = 2_000_000_000;
const MAX_HELD_ITEMS: usize = 1 << 20;

/// Where items go: counted for the summary, then into the trace, or held for time order
/// and printed.
struct View<W: Write> {
    stats: Stats,
    trace: Option<TraceWriter<BufWriter<std::fs::File>>>,
    order: TimeOrder<Item>,
    out: W,
    start: u64,
    slow_ns: Option<u64>,
    /// The capture traced several members: disk phases say whose.
    several: bool,
    ready: Vec<Item>,
}

impl<W: Write> View<W> {
    fn add(&mut self, item: Item) -> Result<()> {
        account(&item, &mut self.stats, self.slow_ns);
        match self.trace.as_mut() {
            Some(t) => to_trace(t, &item, self.slow_ns, self.several)?,
            None => self.order.push(item.ts(), item),
        }
        Ok(())
    }

    fn add_all(
        &mut self,
        calls: &mut Vec<CorrelatedCall>,
        phases: &mut Vec<DiskPhase>,
    ) -> Result<()> {
        for c in calls.drain(..) {
            self.add(Item::Call(Box::new(c)))?;
        }
        for p in phases.drain(..) {
            self.add(Item::Disk(p))?;
        }
        Ok(())
    }

    /// Consensus events, each at the time it settled (an election at its end).
    fn add_raft(&mut self, events: &mut Vec<RaftEvent>) -> Result<()> {
        for e in events.drain(..) {
            let ts = match &e {
                RaftEvent::Election(el) => el.end_ns.unwrap_or(el.start_ns),
                // A term that began by election or transfer is told by its election.
                RaftEvent::Leader {
                    began: TermStart::Election | TermStart::PreVote | TermStart::Transfer,
                    ..
                } => continue,
                RaftEvent::Member { .. } | RaftEvent::Process { .. } => continue,
                other => other.ts_ns(),
            };
            let text = e.describe(RaftOptions::default().election_timeout_ns);
            self.add(Item::Raft { ts, text })?;
        }
        Ok(())
    }

    /// Print what is old enough (everything at the end: `None`).
    fn release(&mut self, now_ns: Option<u64>) -> Result<()> {
        match now_ns {
            Some(now) => self.order.release(now, &mut self.ready),
            None => self.order.drain(&mut self.ready),
        }
        for item in self.ready.drain(..) {
            print_item(&mut self.out, &item, self.start, self.slow_ns, self.several)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Stats {
    per_method: BTreeMap<String, Histogram>,
    per_phase: BTreeMap<&'static str, Histogram>,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    slow: u64,
    /// An API-mode capture's: what /metrics counted (calls and errors per method,
    /// fsync buckets) and the writes its watch saw.
    api: Option<ApiStats>,
}

#[derive(Default)]
struct ApiStats {
    calls: BTreeMap<String, (u64, u64)>,
    wal_fsync: Buckets,
    backend_commit: Buckets,
    writes: u64,
    deletes: u64,
    written_bytes: u64,
    leader_changes: u64,
    failures: u64,
}

pub fn run(args: TimelineArgs) -> Result<ExitCode> {
    let slow_ns = args
        .slow
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s)
                .map(|d| d.as_nanos() as u64)
                .with_context(|| format!("--slow {s:?}: give a duration such as 10ms or 1.5s"))
        })
        .transpose()?;
    let mut input = Input::open(&args.files, args.follow)?;
    let live = input.is_live();
    let start = input.start();
    let several = input.header().processes.len() > 1;
    let ports = input.header().config.ports.clone();
    let mut raft = RaftAnalyzer::new(&ports, RaftOptions::default());
    let mut raft_events = Vec::new();
    let mut correlator = Correlator::new(ports);
    let progress = input.progress("building timeline");
    let api_mode = input.header().mode.is_api();
    if api_mode {
        eprintln!("note: {MISSING}");
    }
    let mut api = ApiState::default();
    let mut facts = Vec::new();

    let trace = match args.format {
        TimelineFormat::Perfetto => {
            let Some(path) = &args.output else {
                bail!("--format perfetto writes a file: give it with -o trace.json");
            };
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            Some(TraceWriter::new(BufWriter::new(file), "etcd (etcd-trace)")?)
        }
        TimelineFormat::Text => None,
    };
    let mut view = View {
        stats: Stats {
            api: api_mode.then(ApiStats::default),
            ..Stats::default()
        },
        trace,
        order: TimeOrder::new(ORDER_HORIZON_NS, MAX_HELD_ITEMS),
        out: BufWriter::new(std::io::stdout().lock()),
        start,
        slow_ns,
        several,
        ready: Vec::new(),
    };
    let (mut calls, mut phases) = (Vec::new(), Vec::new());
    let mut flushed = Instant::now();
    for item in input.items(true) {
        progress.tick_events(1);
        let ev = match item {
            FollowItem::Read(ReadItem::Event(ev)) => ev,
            FollowItem::Read(ReadItem::Damaged(_)) => continue,
            FollowItem::Quiet { now_ns } => {
                // Followed: time passes without events; what is complete goes out.
                correlator.advance(now_ns, &mut calls);
                view.add_all(&mut calls, &mut phases)?;
                let known = raft
                    .known_until()
                    .map_or(now_ns, |k| k.saturating_add(ORDER_HORIZON_NS));
                view.release(Some(now_ns.min(known)))?;
                view.out.flush()?;
                flushed = Instant::now();
                continue;
            }
        };
        match &ev {
            Event::Packet(p) if p.flags.syn() && !p.flags.ack() => {
                let text = format!("{} -> {} connecting", p.src, p.dst);
                view.add(Item::Conn { ts: p.ts_ns, text })?;
            }
            Event::Packet(p) if p.flags.rst() || p.flags.fin() => {
                let how = if p.flags.rst() {
                    "reset"
                } else {
                    "closing (FIN)"
                };
                let text = format!("{} -> {} {how}", p.src, p.dst);
                view.add(Item::Conn { ts: p.ts_ns, text })?;
            }
            Event::Loss(l) => view.add(Item::Loss {
                ts: l.ts_ns,
                count: l.count,
            })?,
            Event::Process(p) => view.add(Item::Process {
                ts: p.ts_ns,
                text: p.describe(),
                pid: p.pid,
            })?,
            Event::Api(a) => {
                api.push(a, &mut facts);
                for f in facts.drain(..) {
                    view.add(Item::Api(f))?;
                }
            }
            _ => {}
        }
        let now = ev.ts_ns();
        raft.push(&ev);
        correlator.push(ev, &mut calls, &mut phases);
        view.add_all(&mut calls, &mut phases)?;
        if view.trace.is_none() {
            raft.take_new(&mut raft_events);
            view.add_raft(&mut raft_events)?;
        }
        // Consensus is known some time after the fact: lines wait for it.
        let known = raft
            .known_until()
            .map_or(now, |k| k.saturating_add(ORDER_HORIZON_NS));
        view.release(Some(now.min(known)))?;
        if live && flushed.elapsed() >= LIVE_FLUSH {
            view.out.flush()?;
            flushed = Instant::now();
        }
    }
    raft.learn_processes(correlator.members());
    let rpc_stats = correlator.finish(&mut calls, &mut phases);
    view.add_all(&mut calls, &mut phases)?;
    raft.end();
    match view.trace.as_mut() {
        Some(t) => raft_tracks(t, &raft.finish())?,
        None => {
            raft.take_new(&mut raft_events);
            view.add_raft(&mut raft_events)?;
        }
    }
    view.release(None)?;
    let View {
        stats,
        trace,
        mut out,
        ..
    } = view;
    progress.finish();
    if let Some(t) = trace {
        t.finish()?;
        eprintln!(
            "wrote {}: open it at https://ui.perfetto.dev or chrome://tracing",
            args.output
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    } else if let Some(a) = &stats.api {
        print_api_summary(&mut out, a)?;
    } else {
        print_summary(&mut out, &stats, slow_ns)?;
        super::replay::write_tls_summary(&mut out, &rpc_stats)?;
    }
    out.flush()?;
    input.end_note();
    Ok(ExitCode::SUCCESS)
}

fn is_call(c: &CorrelatedCall) -> bool {
    matches!(c.call.kind, RecordKind::Call)
}

fn account(item: &Item, stats: &mut Stats, slow_ns: Option<u64>) {
    match item {
        Item::Call(c) if is_call(c) => {
            if let Some(lat) = c.call.latency_ns {
                stats
                    .per_method
                    .entry(c.call.method_name().to_string())
                    .or_default()
                    .record(lat);
                if slow_ns.is_some_and(|s| lat >= s) {
                    stats.slow += 1;
                }
            }
            for p in phases_of(c) {
                stats
                    .per_phase
                    .entry(p.name)
                    .or_default()
                    .record(p.duration_ns());
            }
        }
        Item::Disk(DiskPhase::Sync {
            kind: FileKind::Wal,
            start_ns,
            end_ns,
            ..
        }) => stats.wal_fsync.record(end_ns.saturating_sub(*start_ns)),
        Item::Disk(DiskPhase::BackendCommit {
            start_ns, end_ns, ..
        }) => stats
            .backend_commit
            .record(end_ns.saturating_sub(*start_ns)),
        Item::Api(f) => {
            if let Some(a) = &mut stats.api {
                account_api(f, a);
            }
        }
        _ => {}
    }
}

fn account_api(f: &ApiFact, a: &mut ApiStats) {
    match f {
        ApiFact::Interval {
            calls,
            wal_fsync,
            backend_commit,
            ..
        } => {
            for (m, codes) in calls {
                let t = a.calls.entry(m.clone()).or_default();
                for (code, n) in codes {
                    t.0 += n;
                    if *code != 0 {
                        t.1 += n;
                    }
                }
            }
            a.wal_fsync.add(wal_fsync);
            a.backend_commit.add(backend_commit);
        }
        ApiFact::Write { change, .. } => {
            if change.delete {
                a.deletes += 1;
            } else {
                a.writes += 1;
                a.written_bytes += u64::from(change.value_bytes);
            }
        }
        ApiFact::Leader {
            previous: Some(_), ..
        } => a.leader_changes += 1,
        ApiFact::Failed { .. } => a.failures += 1,
        _ => {}
    }
}

/// An API-mode capture's summary: what /metrics counted and the watch saw.
fn print_api_summary(out: &mut impl Write, a: &ApiStats) -> Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "calls per method (counted by /metrics: no latency)      calls     errors"
    )?;
    writeln!(
        out,
        "  (the recorder's own Status and MemberList polls and its Watch are among them)"
    )?;
    for (m, (n, e)) in &a.calls {
        writeln!(out, "  {m:<50} {n:>9} {e:>10}")?;
    }
    writeln!(
        out,
        "writes seen by the watch: {} puts ({}), {} deletes",
        a.writes,
        human_bytes(a.written_bytes),
        a.deletes
    )?;
    writeln!(
        out,
        "disk (from /metrics buckets: at most)   count        p50        p90        p99"
    )?;
    for (name, b) in [
        ("WAL fsync", &a.wal_fsync),
        ("backend commit", &a.backend_commit),
    ] {
        let q = |q: f64| match (b.count(), b.quantile_ns(q)) {
            (0, _) => "-".to_string(),
            (_, Some(v)) => human_duration_ns(v),
            (_, None) => "longer".to_string(),
        };
        writeln!(
            out,
            "  {name:<36} {:>7} {:>10} {:>10} {:>10}",
            b.count(),
            q(0.5),
            q(0.9),
            q(0.99)
        )?;
    }
    writeln!(
        out,
        "leader changes: {}; failed polls or watches: {}",
        a.leader_changes, a.failures
    )?;
    Ok(())
}

fn call_label(c: &CorrelatedCall) -> String {
    let key = c.call.key.clone().unwrap_or_default();
    let range = describe_range(&key, c.call.range_end.as_deref().unwrap_or_default());
    format!("{} {}", c.call.method_name(), range)
        .trim_end()
        .to_string()
}

/// "  [raft + WAL append 1.2 ms | fsync 0.8 ms | ...]" after a call's line; empty when
/// its phases are unknown.
fn phase_suffix(phases: &[Phase]) -> String {
    if phases.is_empty() {
        return String::new();
    }
    let text = phases
        .iter()
        .map(|p| format!("{} {}", p.name, human_duration_ns(p.duration_ns())))
        .collect::<Vec<_>>()
        .join(" | ");
    format!("  [{text}]")
}

fn print_item(
    out: &mut impl Write,
    item: &Item,
    start: u64,
    slow_ns: Option<u64>,
    several: bool,
) -> Result<()> {
    if let Some(threshold) = slow_ns {
        // Only slow operations, each with the phase that took the time.
        let Item::Call(c) = item else { return Ok(()) };
        let Some(lat) = c.call.latency_ns.filter(|l| *l >= threshold) else {
            return Ok(());
        };
        if !is_call(c) {
            return Ok(());
        }
        let phases = phases_of(c);
        let verdict = match slowest(&phases) {
            Some(p) => format!(
                "{} {} of {}",
                p.name,
                human_duration_ns(p.duration_ns()),
                human_duration_ns(lat)
            ),
            None => format!(
                "{} (no WAL phases: {})",
                human_duration_ns(lat),
                c.unlinked.map_or("not a write", |u| u.describe())
            ),
        };
        writeln!(
            out,
            "{} {} {:<50} {verdict}{}",
            offset(c.call.ts_ns, start, 6),
            c.call.client,
            call_label(c),
            phase_suffix(&phases)
        )?;
        return Ok(());
    }
    let t = offset(item.ts(), start, 6);
    match item {
        Item::Call(c) => {
            let lat = c.call.latency_ns.map_or("-".into(), human_duration_ns);
            let status = match c.call.status {
                Some(0) => String::new(),
                Some(s) => format!(" status {s}"),
                None => String::new(),
            };
            let phases = phases_of(c);
            writeln!(
                out,
                "{t} rpc    {} {:<50} {lat}{status}{}",
                c.call.client,
                call_label(c),
                phase_suffix(&phases)
            )?;
        }
        Item::Disk(d) => {
            let whose = if several {
                format!(" of {}", d.member())
            } else {
                String::new()
            };
            print_disk(out, &t, d, &whose)?
        }
        Item::Conn { text, .. } => writeln!(out, "{t} conn   {text}")?,
        Item::Process { text, .. } => writeln!(out, "{t} proc   {text}")?,
        Item::Raft { text, .. } => writeln!(out, "{t} raft   {text}")?,
        Item::Api(f) => {
            let (label, text) = f.describe();
            writeln!(out, "{t} {label:<6} {text}")?
        }
        Item::Loss { count, .. } => writeln!(
            out,
            "{t} LOSS   {count} events the kernel could not hand over"
        )?,
    }
    Ok(())
}

/// A disk phase's line; `whose` names the member (or is empty).
fn print_disk(out: &mut impl Write, t: &str, d: &DiskPhase, whose: &str) -> Result<()> {
    match d {
        DiskPhase::WalWrite {
            file,
            bytes,
            start_ns,
            end_ns,
            ..
        } => writeln!(
            out,
            "{t} wal    write {} to {file}{whose} ({})",
            human_bytes(*bytes),
            human_duration_ns(end_ns - start_ns)
        )?,
        DiskPhase::Sync {
            file,
            call,
            start_ns,
            end_ns,
            ..
        } => writeln!(
            out,
            "{t} sync   {call} {file}{whose} {}",
            human_duration_ns(end_ns - start_ns)
        )?,
        DiskPhase::BackendCommit {
            writes,
            bytes,
            sync_ns,
            start_ns,
            end_ns,
            ..
        } => writeln!(
            out,
            "{t} commit backend{whose}: {writes} page writes, {}, fdatasync {} (commit {})",
            human_bytes(*bytes),
            human_duration_ns(*sync_ns),
            human_duration_ns(end_ns - start_ns)
        )?,
        DiskPhase::SnapshotWrite { file, bytes, .. } => writeln!(
            out,
            "{t} snap   write {} to {file}{whose}",
            human_bytes(*bytes)
        )?,
    }
    Ok(())
}

fn print_summary(out: &mut impl Write, stats: &Stats, slow_ns: Option<u64>) -> Result<()> {
    let d = |v: Option<u64>| v.map_or("-".into(), human_duration_ns);
    let row = |out: &mut dyn Write, name: &str, h: &Histogram| -> std::io::Result<()> {
        let s = h.summary();
        writeln!(
            out,
            "  {name:<28} {:>8} {:>10} {:>10} {:>10} {:>10}",
            s.count,
            d(s.p50_ns),
            d(s.p90_ns),
            d(s.p99_ns),
            d(s.max_ns)
        )
    };
    writeln!(out)?;
    if let Some(t) = slow_ns {
        writeln!(
            out,
            "{} operations at or above {}",
            stats.slow,
            human_duration_ns(t)
        )?;
    }
    writeln!(
        out,
        "latency per method             count        p50        p90        p99        max"
    )?;
    for (m, h) in &stats.per_method {
        row(out, m, h)?;
    }
    writeln!(out, "phases of linked writes")?;
    for (_, name) in PHASES {
        if let Some(h) = stats.per_phase.get(name) {
            row(out, name, h)?;
        }
    }
    writeln!(out, "disk")?;
    row(out, "WAL fsync", &stats.wal_fsync)?;
    row(out, "backend commit", &stats.backend_commit)?;
    if stats.wal_fsync.count() > 0 {
        writeln!(out, "WAL fsync latency")?;
        let octaves = stats.wal_fsync.octaves();
        let most = octaves.iter().map(|o| o.2).max().unwrap_or(1);
        for (low, high, n) in octaves {
            let bar = "#".repeat(((n * 40).div_ceil(most)) as usize);
            writeln!(
                out,
                "  {:>10} .. {:<10} {bar} {n}",
                human_duration_ns(low),
                human_duration_ns(high)
            )?;
        }
    }
    Ok(())
}

fn to_trace(
    t: &mut TraceWriter<BufWriter<std::fs::File>>,
    item: &Item,
    slow_ns: Option<u64>,
    several: bool,
) -> Result<()> {
    match item {
        Item::Call(c) => {
            let call = &c.call;
            if slow_ns.is_some_and(|s| call.latency_ns.is_none_or(|l| l < s)) {
                return Ok(());
            }
            let end = call.end_ns.max(call.ts_ns);
            let group = format!("client {}", call.client);
            let tid = t.lane(&group, 10, call.ts_ns, end)?;
            let args = json!({
                "method": call.method,
                "stream": call.stream_id,
                "status": call.status,
                "wal": c.wal.as_ref().map(|w| json!({"term": w.term, "index": w.index, "fsync_ns": w.fsync_ns, "confidence": w.confidence})),
                "unlinked": c.unlinked,
            });
            t.slice(tid, &call_label(c), call.ts_ns, end - call.ts_ns, args)?;
            for p in phases_of(c) {
                t.slice(tid, p.name, p.start_ns, p.duration_ns(), json!({}))?;
            }
        }
        Item::Disk(d) => {
            let (track, order, name) = match d {
                DiskPhase::WalWrite { bytes, .. } => {
                    ("WAL appends", 1, format!("write {}", human_bytes(*bytes)))
                }
                DiskPhase::Sync { call, file, .. } => ("fsync", 2, format!("{call} {file}")),
                DiskPhase::BackendCommit { writes, .. } => {
                    ("backend commits", 3, format!("commit {writes} writes"))
                }
                DiskPhase::SnapshotWrite { file, .. } => ("snapshots", 4, format!("write {file}")),
            };
            // Several members: a track per process (its member ID is in the args).
            let track = match d.member().pid.filter(|_| several) {
                Some(pid) => format!("{track} (pid {pid})"),
                None => track.to_string(),
            };
            let tid = t.lane(&track, order, d.start_ns(), d.end_ns())?;
            t.slice(
                tid,
                &name,
                d.start_ns(),
                d.end_ns().saturating_sub(d.start_ns()),
                serde_json::to_value(d)?,
            )?;
        }
        Item::Conn { ts, text } => {
            let tid = t.track("connections", 5)?;
            t.instant(tid, text, *ts, json!({}))?;
        }
        Item::Raft { ts, text } => {
            let tid = t.track("raft", 7)?;
            t.instant(tid, text, *ts, json!({}))?;
        }
        Item::Api(f) => {
            let (label, text) = f.describe();
            let tid = t.track(&format!("api {label}"), 8)?;
            t.instant(tid, &text, f.ts_ns(), serde_json::to_value(f)?)?;
        }
        Item::Process { ts, text, pid } => {
            let tid = t.track("etcd processes", 6)?;
            t.instant(tid, text, *ts, json!({ "pid": pid }))?;
        }
        Item::Loss { ts, count } => {
            let tid = t.track("losses", 0)?;
            t.instant(
                tid,
                &format!("{count} events lost"),
                *ts,
                json!({"count": count}),
            )?;
        }
    }
    Ok(())
}

/// Consensus in the trace: a track per member, with a slice for each term it led (to
/// the next term's leader, or the capture's end), its campaigns, and instants for
/// conflicts, stale leadership and heartbeat gaps.
fn raft_tracks(t: &mut TraceWriter<BufWriter<std::fs::File>>, r: &RaftReport) -> Result<()> {
    const ORDER: i64 = 7;
    let end_of_capture = r.events.iter().map(RaftEvent::ts_ns).max().unwrap_or(0);
    let leaders: Vec<(u64, u64, String)> = r
        .events
        .iter()
        .filter_map(|e| match e {
            RaftEvent::Leader {
                ts_ns,
                term,
                member,
                ..
            } => Some((*ts_ns, *term, member.to_string())),
            _ => None,
        })
        .collect();
    let timeout = RaftOptions::default().election_timeout_ns;
    // Every member has its track, whether it led or not.
    for e in &r.events {
        if let RaftEvent::Member { member, .. } = e {
            t.track(&format!("raft member {member}"), ORDER)?;
        }
    }
    for (i, (ts, term, member)) in leaders.iter().enumerate() {
        let until = leaders.get(i + 1).map_or(end_of_capture, |l| l.0).max(*ts);
        let tid = t.track(&format!("raft member {member}"), ORDER)?;
        t.slice(
            tid,
            &format!("leader, term {term}"),
            *ts,
            until - ts,
            json!({ "term": term }),
        )?;
    }
    for e in &r.events {
        let (member, name) = match e {
            RaftEvent::Election(el) => {
                let track = el
                    .winner
                    .or_else(|| el.candidates.first().copied())
                    .map_or("unknown".to_string(), |m| m.to_string());
                let tid = t.track(&format!("raft member {track}"), ORDER)?;
                let end = el.end_ns.unwrap_or(el.start_ns).max(el.start_ns);
                t.slice(
                    tid,
                    &format!("election, term {}", el.term),
                    el.start_ns,
                    end - el.start_ns,
                    serde_json::to_value(el)?,
                )?;
                continue;
            }
            RaftEvent::TwoLeaders { members, .. } => (members[1].to_string(), "two leaders"),
            RaftEvent::StaleLeader { member, .. } => (member.to_string(), "stale leader"),
            RaftEvent::HeartbeatGap { leader, .. } => (leader.to_string(), "heartbeat gap"),
            RaftEvent::AppendRejected { follower, .. } => (follower.to_string(), "append refused"),
            RaftEvent::Snapshot { to, .. } => (to.to_string(), "snapshot received"),
            _ => continue,
        };
        let tid = t.track(&format!("raft member {member}"), ORDER)?;
        t.instant(tid, name, e.ts_ns(), json!({ "what": e.describe(timeout) }))?;
    }
    Ok(())
}

//! `etcd-trace raft FILE`: consensus as an incident timeline (`analyze::raft`), in text
//! that reads top to bottom, or JSON lines with `kind`.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::open_capture;
use crate::analyze::histogram::LatencySummary;
use crate::analyze::raft::{
    CommitSummary, Election, FollowerSummary, RaftAnalyzer, RaftEvent, RaftOptions, RaftReport,
};
use crate::analyze::wal_log::{WalLog, WalLogOutput};
use crate::capture::ReadItem;
use crate::cli::{Format, RaftArgs};
use crate::output::{human_bytes, human_duration_ns, offset, Progress};

pub fn run(args: RaftArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.files)?;
    super::note_api_mode(reader.header(), "raft");
    let start = reader.index().time_range().map_or(0, |(first, _)| first);
    let options = RaftOptions {
        election_timeout_ns: u64::try_from(args.election_timeout.as_nanos()).unwrap_or(u64::MAX),
    };
    let mut analyzer = RaftAnalyzer::new(&reader.header().config.ports, options);
    // The WAL's metadata records name each process's member.
    let (mut wal, mut wal_out) = (WalLog::new(), WalLogOutput::default());
    let progress = Progress::for_blocks(reader.blocks().len() as u64, "following consensus");
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => {
                wal.push(&ev, &mut wal_out);
                wal_out.records.clear();
                wal_out.problems.clear();
                analyzer.push(&ev);
            }
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
        progress.tick_events(1);
    }
    analyzer.learn_processes(wal.members());
    let report = analyzer.finish();
    progress.finish();
    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => write_json(&mut out, &report)?,
        Format::Text => write_text(&mut out, &report, start, options)?,
    }
    out.flush()?;
    if report.messages == 0 {
        eprintln!(
            "note: no raft messages in {} ({} peer connections): record the members' peer \
             ports (--port 2380) to see consensus",
            super::shown(&args.files),
            report.connections
        );
    }
    if report.events_dropped > 0 {
        eprintln!(
            "note: {} events past the first {} were counted, not shown",
            report.events_dropped,
            crate::analyze::raft::MAX_EVENTS
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Summary<'a> {
    Follower(&'a FollowerSummary),
    Commits(&'a CommitSummary),
}

fn write_json(out: &mut impl Write, r: &RaftReport) -> Result<()> {
    for e in &r.events {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    }
    for f in &r.followers {
        writeln!(out, "{}", serde_json::to_string(&Summary::Follower(f))?)?;
    }
    for c in &r.commits {
        writeln!(out, "{}", serde_json::to_string(&Summary::Commits(c))?)?;
    }
    Ok(())
}

fn latency(l: &LatencySummary) -> String {
    match (l.p50_ns, l.p99_ns, l.max_ns) {
        (Some(p50), Some(p99), Some(max)) => format!(
            "p50 {} p99 {} max {}",
            human_duration_ns(p50),
            human_duration_ns(p99),
            human_duration_ns(max)
        ),
        _ => "none".into(),
    }
}

fn write_text(
    out: &mut impl Write,
    r: &RaftReport,
    start: u64,
    options: RaftOptions,
) -> Result<()> {
    let leaders = r.leaders();
    let elections = r
        .events
        .iter()
        .filter(|e| matches!(e, RaftEvent::Election(_)))
        .count();
    let alarms = r
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RaftEvent::TwoLeaders { .. } | RaftEvent::StaleLeader { .. }
            )
        })
        .count();
    writeln!(
        out,
        "{} raft messages on {} peer connections; {} terms led, {elections} elections, \
         {alarms} stale or double leaders (election timeout {})",
        r.messages,
        r.connections,
        leaders.len(),
        human_duration_ns(options.election_timeout_ns)
    )?;
    for e in &r.events {
        match e {
            RaftEvent::Election(el) => write_election(out, el, start)?,
            _ => writeln!(
                out,
                "{}  {}",
                offset(e.ts_ns(), start, 6),
                e.describe(options.election_timeout_ns)
            )?,
        }
    }
    if !r.followers.is_empty() {
        writeln!(out, "\nper follower")?;
        for f in &r.followers {
            writeln!(
                out,
                "  {} -> {}: {} heartbeats, interval {}; {} appends ({} entries), ack {}; \
                 behind at most {} entries; {} refused; {} snapshots ({})",
                f.leader,
                f.follower,
                f.heartbeats,
                latency(&f.heartbeat_interval),
                f.appends,
                f.entries,
                latency(&f.ack),
                f.max_lag_entries,
                f.rejected,
                f.snapshots,
                human_bytes(f.snapshot_bytes)
            )?;
        }
    }
    if !r.commits.is_empty() {
        writeln!(out, "\ncommits")?;
        for c in &r.commits {
            writeln!(
                out,
                "  {}: commit index {} -> {}, {} entries timed from first MsgApp to commit: {}",
                c.leader,
                c.first_commit,
                c.last_commit,
                c.committed,
                latency(&c.commit_latency)
            )?;
        }
    }
    Ok(())
}

fn write_election(out: &mut impl Write, e: &Election, start: u64) -> Result<()> {
    writeln!(out, "{}  {}", offset(e.start_ns, start, 6), e.opening())?;
    for v in &e.votes {
        write!(
            out,
            "{}    {}vote {} -> {}: {}",
            offset(v.ts_ns, start, 6),
            if v.pre_vote { "pre-" } else { "" },
            v.voter,
            v.candidate,
            if v.granted { "granted" } else { "refused" }
        )?;
        match &v.reason {
            Some(why) => writeln!(out, ", {why}")?,
            None => writeln!(out)?,
        }
    }
    if !e.unanswered.is_empty() {
        let who: Vec<String> = e.unanswered.iter().map(|m| m.to_string()).collect();
        writeln!(out, "              no answer from {}", who.join(", "))?;
    }
    for d in &e.disks {
        writeln!(
            out,
            "              disk {}: {} WAL syncs, {} in all, slowest {} at {}",
            d.member,
            d.wal_fsyncs,
            human_duration_ns(d.total_fsync_ns),
            human_duration_ns(d.slowest_fsync_ns),
            offset(d.slowest_start_ns, start, 6)
        )?;
    }
    let end = e
        .end_ns
        .map_or("          ".to_string(), |t| offset(t, start, 6));
    writeln!(out, "{end}    {}", e.outcome())?;
    Ok(())
}

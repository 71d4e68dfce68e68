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
    TermStart,
};
use crate::capture::ReadItem;
use crate::cli::{Format, RaftArgs};
use crate::output::{human_bytes, human_duration_ns, offset, Progress};

pub fn run(args: RaftArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.file)?;
    let start = reader.index().time_range().map_or(0, |(first, _)| first);
    let options = RaftOptions {
        election_timeout_ns: u64::try_from(args.election_timeout.as_nanos()).unwrap_or(u64::MAX),
    };
    let mut analyzer = RaftAnalyzer::new(&reader.header().config.ports, options);
    let progress = Progress::for_blocks(reader.blocks().len() as u64, "following consensus");
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => analyzer.push(&ev),
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
        progress.tick_events(1);
    }
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
            args.file.display(),
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
         {alarms} leadership conflicts (election timeout {})",
        r.messages,
        r.connections,
        leaders.len(),
        human_duration_ns(options.election_timeout_ns)
    )?;
    for e in &r.events {
        let at = offset(e.ts_ns(), start, 6);
        match e {
            RaftEvent::Member {
                member, peer, pid, ..
            } => {
                write!(out, "{at}  member {member}")?;
                if let Some(peer) = peer {
                    write!(out, ", peer {peer}")?;
                }
                match pid {
                    Some(pid) => writeln!(out, ", etcd pid {pid}")?,
                    None => writeln!(out, ", process not seen")?,
                }
            }
            RaftEvent::Leader {
                term,
                member,
                began,
                ..
            } => writeln!(
                out,
                "{at}  term {term}: {member} leads, {}",
                began.describe()
            )?,
            RaftEvent::Election(el) => write_election(out, el, start)?,
            RaftEvent::TwoLeaders { term, members, .. } => writeln!(
                out,
                "{at}  CONFLICT: {} and {} both lead term {term} (raft forbids it: a bug, \
                 or a decode error)",
                members[0], members[1]
            )?,
            RaftEvent::StaleLeader {
                member,
                term,
                newer_term,
                newer_leader,
                ..
            } => writeln!(
                out,
                "{at}  stale leader: {member} still leads term {term} after {newer_leader} \
                 took term {newer_term}"
            )?,
            RaftEvent::HeartbeatGap {
                term,
                leader,
                follower,
                gap_ns,
                ..
            } => writeln!(
                out,
                "{at}  heartbeats {leader} -> {follower} paused {} in term {term} ({:.0}% of \
                 the election timeout)",
                human_duration_ns(*gap_ns),
                *gap_ns as f64 * 100.0 / options.election_timeout_ns.max(1) as f64
            )?,
            RaftEvent::AppendRejected {
                term,
                leader,
                follower,
                index,
                hint,
                ..
            } => writeln!(
                out,
                "{at}  {follower} refused {leader}'s append at index {index} in term {term} \
                 (its log ends near {hint})"
            )?,
            RaftEvent::Snapshot {
                from,
                to,
                index,
                bytes,
                duration_ns,
                whole,
                ..
            } => writeln!(
                out,
                "{at}  snapshot {from} -> {to} at index {index}: {} in {}{}",
                human_bytes(*bytes),
                human_duration_ns(*duration_ns),
                if *whole { "" } else { ", cut short" }
            )?,
            RaftEvent::PeerRefused {
                status,
                request,
                client,
                server,
                from,
                ..
            } => {
                let who = from.map_or_else(|| client.clone(), |f| f.to_string());
                let why = match status {
                    404 => "unknown member",
                    410 => "member removed",
                    412 => "cluster id or version mismatch",
                    _ => "refused",
                };
                writeln!(
                    out,
                    "{at}  peer {server} answered {status} ({why}) to {who}'s {request} request"
                )?
            }
            RaftEvent::Process { what, member, .. } => match member {
                Some(m) => writeln!(out, "{at}  {what} (member {m})")?,
                None => writeln!(out, "{at}  {what}")?,
            },
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
    let at = offset(e.start_ns, start, 6);
    let candidates: Vec<String> = e.candidates.iter().map(|c| c.to_string()).collect();
    let candidates = if candidates.is_empty() {
        "a member not seen".to_string()
    } else {
        candidates.join(" and ")
    };
    let how = match e.began {
        TermStart::Transfer => "leadership handed to",
        TermStart::PreVote => "pre-vote, then campaign by",
        _ => "campaign by",
    };
    write!(out, "{at}  term {}: {how} {candidates}", e.term)?;
    if let (Some(prev), Some(term)) = (e.previous_leader, e.previous_term) {
        write!(out, ", after {prev} led term {term}")?;
    }
    writeln!(out)?;
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
    match (e.winner, e.duration_ns, e.end_ns) {
        (Some(w), Some(d), Some(end)) => {
            write!(
                out,
                "{}    won by {w} after {}",
                offset(end, start, 6),
                human_duration_ns(d)
            )?;
            match e.leaderless_ns {
                Some(l) => writeln!(out, "; no leader for {}", human_duration_ns(l))?,
                None => writeln!(out)?,
            }
        }
        (None, Some(d), Some(end)) => writeln!(
            out,
            "{}    nobody won after {} (a newer campaign or leader followed)",
            offset(end, start, 6),
            human_duration_ns(d)
        )?,
        _ => writeln!(out, "              no leader seen before the capture ended")?,
    }
    Ok(())
}

//! `etcd-trace wal FILE`: the WAL records etcd wrote during the capture, decoded from
//! the captured writes, as etcd's own etcd-dump-logs shows entries.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;

use super::open_capture;
use crate::analyze::wal_log::{WalDetail, WalLog, WalLogOutput, WalLogRecord};
use crate::capture::ReadItem;
use crate::cli::{Format, WalArgs};
use crate::decode::etcdpb::describe_range;
use crate::output::offset;

pub fn run(args: WalArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.file)?;
    let start = reader.index().time_range().map_or(0, |(first, _)| first);
    // Members traced together are told apart in text (JSON always says whose).
    let several = reader.header().processes.len() > 1;
    let mut log = WalLog::new();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut buf = WalLogOutput::default();
    let (mut entries, mut states, mut problems) = (0u64, 0u64, 0u64);
    let mut emit = |buf: &mut WalLogOutput, out: &mut BufWriter<_>| -> Result<()> {
        for r in buf.records.drain(..) {
            match r.detail {
                WalDetail::Entry { .. } => entries += 1,
                WalDetail::HardState { .. } => states += 1,
                _ => {}
            }
            if !args.all && !matches!(r.detail, WalDetail::Entry { .. }) {
                continue;
            }
            match args.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&r)?)?,
                Format::Text => writeln!(out, "{}", text_line(&r, start, several))?,
            }
        }
        for p in buf.problems.drain(..) {
            problems += 1;
            if several {
                eprintln!("note: {} {}: {}", p.member, p.file, p.what);
            } else {
                eprintln!("note: {}: {}", p.file, p.what);
            }
        }
        Ok(())
    };
    if args.format == Format::Text {
        writeln!(out, "{}", header_line(several))?;
    }
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => {
                log.push(&ev, &mut buf);
                emit(&mut buf, &mut out)?;
            }
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
    }
    log.finish(&mut buf);
    emit(&mut buf, &mut out)?;
    out.flush()?;
    eprintln!("{entries} entries, {states} hard states, {problems} stretches not decoded");
    Ok(ExitCode::SUCCESS)
}

fn header_line(several: bool) -> String {
    let member = if several {
        format!(" {:<16}", "member")
    } else {
        String::new()
    };
    format!(
        "{:>13}{member} {:>6} {:>8}  {:<6} data",
        "time", "term", "index", "type"
    )
}

/// One record as a line under [`header_line`]: the time of its write (`-` for a WAL
/// read from disk), whose it is when `several`, then as etcd-dump-logs shows it.
fn text_line(r: &WalLogRecord, start: u64, several: bool) -> String {
    let time = r
        .write_ts_ns
        .map_or_else(|| "-".to_string(), |ts| offset(ts, start, 6));
    let mut time = format!("{time:>13}");
    if several {
        time.push_str(&format!(" {:<16}", r.member.to_string()));
    }
    match &r.detail {
        WalDetail::Entry {
            term,
            index,
            entry_type,
            request,
        } => {
            let data = match request {
                Some(q) => {
                    let mut s = format!("{} {}", q.op, describe_range(&q.key, &q.range_end));
                    if let Some(v) = q.value_len {
                        s.push_str(&format!(" value {v} B"));
                    }
                    if let Some(l) = q.lease.filter(|l| *l != 0) {
                        s.push_str(&format!(" lease {l:x}"));
                    }
                    if q.id != 0 {
                        s.push_str(&format!(" (request {:x})", q.id));
                    }
                    s
                }
                None if *entry_type == "normal" => "(empty: a new leader's first entry)".into(),
                None => String::new(),
            };
            let short = match *entry_type {
                "normal" => "norm",
                "conf_change" => "conf",
                "conf_change_v2" => "confv2",
                other => other,
            };
            format!("{time} {term:>6} {index:>8}  {short:<6} {data}")
        }
        WalDetail::HardState { term, vote, commit } => {
            format!(
                "{time} {term:>6} {:>8}  state  vote {vote:x} commit {commit}",
                ""
            )
        }
        WalDetail::Snapshot { term, index } => {
            format!("{time} {term:>6} {index:>8}  snap")
        }
        WalDetail::Other => format!("{time} {:>6} {:>8}  {}", "", "", r.record),
        WalDetail::Undecodable { reason } => {
            format!(
                "{time} {:>6} {:>8}  {} (undecodable: {reason})",
                "", "", r.record
            )
        }
    }
}

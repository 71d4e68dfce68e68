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
                Format::Text => writeln!(out, "{}", text_line(&r, start))?,
            }
        }
        for p in buf.problems.drain(..) {
            problems += 1;
            eprintln!("note: {}: {}", p.file, p.what);
        }
        Ok(())
    };
    if args.format == Format::Text {
        writeln!(
            out,
            "{:>13} {:>6} {:>8}  {:<6} data",
            "time", "term", "index", "type"
        )?;
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

fn text_line(r: &WalLogRecord, start: u64) -> String {
    let time = offset(r.write_ts_ns, start, 6);
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
            format!("{time:>13} {term:>6} {index:>8}  {short:<6} {data}")
        }
        WalDetail::HardState { term, vote, commit } => {
            format!(
                "{time:>13} {term:>6} {:>8}  state  vote {vote:x} commit {commit}",
                ""
            )
        }
        WalDetail::Snapshot { term, index } => {
            format!("{time:>13} {term:>6} {index:>8}  snap")
        }
        WalDetail::Other => format!("{time:>13} {:>6} {:>8}  {}", "", "", r.record),
        WalDetail::Undecodable { reason } => {
            format!(
                "{time:>13} {:>6} {:>8}  {} (undecodable: {reason})",
                "", "", r.record
            )
        }
    }
}

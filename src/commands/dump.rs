//! `etcd-trace dump FILE`: the raw events, one per line.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;

use super::open_capture;
use super::timespec::resolve;
use crate::capture::api::ApiObservation;
use crate::capture::{Direction, Event, ProcessChange, ReadItem};
use crate::cli::{DumpArgs, Format};
use crate::output::{hex_prefix, human_duration_ns, offset};

pub fn run(args: DumpArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.files)?;
    let header = reader.header().clone();
    let start = reader.index().time_range().map_or(0, |(first, _)| first);
    let since = args
        .since
        .as_deref()
        .map(|s| resolve(s, &header, start))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| resolve(s, &header, start))
        .transpose()?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for item in reader.events_between(since, until) {
        match item {
            ReadItem::Event(ev) => match args.format {
                Format::Json => {
                    let mut v = serde_json::to_value(&ev)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("ts_ns".into(), ev.ts_ns().into());
                        obj.insert("wall_ns".into(), header.wall_ns(ev.ts_ns()).into());
                    }
                    writeln!(out, "{v}")?;
                }
                Format::Text => {
                    write!(out, "{} ", offset(ev.ts_ns(), start, 9))?;
                    write_text(&mut out, &header, &ev, args.max_bytes)?;
                }
            },
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_text(
    out: &mut impl Write,
    header: &crate::capture::Header,
    ev: &Event,
    max_bytes: usize,
) -> std::io::Result<()> {
    match ev {
        Event::Packet(p) => {
            writeln!(
                out,
                "packet  {} {:?} {} > {} [{}] seq {} ack {} win {} len {}{}{}",
                header.interface_name(p.ifindex).unwrap_or("?"),
                p.direction,
                p.src,
                p.dst,
                p.flags.describe(),
                p.seq,
                p.ack,
                p.window,
                p.payload_len,
                captured_note(p.truncated(), p.payload.len()),
                hex_prefix(&p.payload, max_bytes)
            )
        }
        Event::Syscall(s) => {
            let target = if s.file.kind == crate::capture::FileKind::Socket {
                format!("socket :{} <-> :{}", s.file.local_port, s.file.peer_port)
            } else {
                format!("{} {}", s.file.kind.name(), s.file.path)
            };
            writeln!(
                out,
                "syscall pid {}/{} {} fd {} {}{} req {} ret {} dur {}{}{}",
                s.pid,
                s.tid,
                s.call.name(),
                s.fd,
                target,
                s.offset.map_or(String::new(), |o| format!(" off {o}")),
                s.requested,
                s.ret,
                human_duration_ns(s.duration_ns()),
                captured_note(
                    (s.data.len() as u64) < s.transferred() && !s.call.is_sync(),
                    s.data.len()
                ),
                hex_prefix(&s.data, max_bytes)
            )
        }
        Event::Loss(l) => writeln!(out, "loss    {:?} {} events", l.source, l.count),
        Event::Tls(t) => {
            // Like a packet's, the addresses in the direction the bytes went.
            let ends = match (t.endpoints, t.direction) {
                (None, _) => "socket not yet known".to_string(),
                (Some(e), Direction::Egress) => format!("{} > {}", e.local, e.remote),
                (Some(e), Direction::Ingress) => format!("{} > {}", e.remote, e.local),
            };
            writeln!(
                out,
                "tls     pid {}/{} conn {} {:?} {} off {} len {}{}{}",
                t.pid,
                t.tid,
                t.conn_id,
                t.direction,
                ends,
                t.offset,
                t.len,
                captured_note(t.truncated(), t.data.len()),
                hex_prefix(&t.data, max_bytes)
            )
        }
        Event::Process(p) => match &p.change {
            ProcessChange::Start { cmdline, .. } => {
                writeln!(out, "process {}: {}", p.describe(), cmdline.join(" "))
            }
            ProcessChange::Exit { .. } => writeln!(out, "process {}", p.describe()),
        },
        Event::Api(a) => writeln!(out, "api     {} {}", a.endpoint, describe_api(&a.observed)),
    }
}

/// One line for people: "put /a/b 120 bytes (was 100) at revision 42",
/// "status of 8e9e05c52164694d: leader 8e9e05c52164694d, term 2, …".
fn describe_api(observed: &ApiObservation) -> String {
    match observed {
        ApiObservation::Change(c) => crate::analyze::api::describe_change(c),
        ApiObservation::Status(s) => {
            let errors = if s.errors.is_empty() {
                String::new()
            } else {
                format!(", errors: {}", s.errors.join("; "))
            };
            format!(
                "status of {:x}: leader {:x}, term {}, index {} (applied {}), revision {}, \
                 db {} bytes ({} in use), took {} µs{errors}",
                s.member_id,
                s.leader,
                s.raft_term,
                s.raft_index,
                s.raft_applied_index,
                s.revision,
                s.db_size,
                s.db_size_in_use,
                s.took_ns / 1000
            )
        }
        ApiObservation::Members(m) => {
            let names: Vec<String> = m
                .members
                .iter()
                .map(|m| {
                    let learner = if m.is_learner { " (learner)" } else { "" };
                    format!("{} {:x}{learner}", m.name, m.id)
                })
                .collect();
            format!("members of {:x}: {}", m.cluster_id, names.join(", "))
        }
        ApiObservation::Metrics(m) => format!(
            "metrics: {} samples kept, {} left out",
            m.samples.len(),
            m.left_out
        ),
        ApiObservation::Failed { what, error } => format!("{what} failed: {error}"),
    }
}

/// ` (captured N)` after a length whose bytes were not all captured.
fn captured_note(truncated: bool, captured: usize) -> String {
    if truncated {
        format!(" (captured {captured})")
    } else {
        String::new()
    }
}

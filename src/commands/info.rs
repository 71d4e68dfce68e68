//! `etcd-trace info FILE`: what a capture holds.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::open_capture;
use super::timespec::wall_string;
use crate::analyze::summary::SummaryBuilder;
use crate::capture::{
    BucketRange, CaptureFormat, CaptureMode, CaptureReader, EventKind, HostInfo, IndexState,
    LatencyHistogram, ReadItem,
};
use crate::cli::{Format, InfoArgs};
use crate::output::{human_bytes, human_duration_ns, human_signed_duration_ns, Progress};

pub fn run(args: InfoArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.files)?;
    let header = reader.header().clone();
    let kinds = reader.format().kinds();
    let tls = reader.format().holds(EventKind::Tls);
    let processes = reader.format().holds(EventKind::Process);
    let mut builder = SummaryBuilder::new(&header, kinds);
    let progress = Progress::for_blocks(reader.blocks().len() as u64, "reading capture");
    let mut damage = Vec::new();
    let mut last_block_ts = None;
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => {
                let ts = ev.ts_ns();
                if last_block_ts.is_none_or(|t| ts > t) {
                    last_block_ts = Some(ts);
                }
                builder.push(&ev);
            }
            ReadItem::Damaged(d) => damage.push(d),
        }
        progress.tick_events(1);
    }
    progress.finish();
    let summary = builder.finish();
    let index = match reader.index_state() {
        IndexState::Present => "present",
        IndexState::Recovered { .. } => "recovered",
    };
    let events_lost_to_damage: u64 = damage.iter().filter_map(|d| d.events_lost).sum();
    let mut out = std::io::stdout().lock();

    if args.format == Format::Json {
        let mut obj = json!({
            "file": super::shown(&args.files).to_string(),
            "format_version": reader.format_version(),
            "header": header,
            "index": index,
            "index_reason": match reader.index_state() {
                IndexState::Recovered { reason } => Some(reason.clone()),
                IndexState::Present => None,
            },
            "blocks": reader.blocks().len(),
            "events": summary.events,
            "counts": summary.counts,
            "lost": summary.lost,
            "lost_by_source": summary.lost_by_source,
            "start_ns": summary.start_ns,
            "end_ns": summary.end_ns,
            "start": summary.start_ns.map(|t| wall_string(&header, t)),
            "end": summary.end_ns.map(|t| wall_string(&header, t)),
            "connections": summary.connections,
            "files": summary.files,
            "socket_syscalls": summary.socket_syscalls,
            "damage": damage,
            "events_lost_to_damage": events_lost_to_damage,
            "redaction": reader.index().redaction,
        });
        if let (true, Some(fields)) = (tls, obj.as_object_mut()) {
            fields.insert(
                "tls_connections".into(),
                serde_json::to_value(&summary.tls_connections)?,
            );
        }
        if let (true, Some(fields)) = (processes, obj.as_object_mut()) {
            fields.insert(
                "processes".into(),
                serde_json::to_value(&summary.processes)?,
            );
        }
        if let (true, Some(fields)) = (header.mode.is_api(), obj.as_object_mut()) {
            fields.insert("mode".into(), "api".into());
            fields.insert("not_in_capture".into(), header.mode.not_in_it().into());
        }
        if let (true, Some(fields)) = (has_latency(&reader), obj.as_object_mut()) {
            let latency: Vec<_> = reader.index().latency.iter().map(latency_json).collect();
            fields.insert("latency".into(), latency.into());
        }
        writeln!(out, "{obj}")?;
        return Ok(ExitCode::SUCCESS);
    }

    let cfg = &header.config;
    if let Some(packets) = reader.packet_file() {
        writeln!(
            out,
            "capture      {} ({} file: packets only, no WAL, fsync or process events)",
            super::shown(&args.files),
            packets.kind
        )?;
    } else {
        writeln!(
            out,
            "capture      {} (format {}, recorded by etcd-trace {})",
            super::shown(&args.files),
            reader.format_version(),
            header.recorder_version
        )?;
    }
    writeln!(
        out,
        "host         {}, kernel {}",
        header.hostname, header.kernel_release
    )?;
    write_hosts(&mut out, &header.hosts)?;
    if let CaptureMode::Api { endpoints } = &header.mode {
        // Only API mode has the line: eBPF captures print as they always did.
        writeln!(
            out,
            "mode         api (endpoints {}); no packets or syscalls: {} are not in it",
            endpoints.join(", "),
            and_list(header.mode.not_in_it())
        )?;
    }
    match (summary.start_ns, summary.end_ns) {
        (Some(s), Some(e)) => {
            writeln!(out, "start        {}", wall_string(&header, s))?;
            writeln!(out, "end          {}", wall_string(&header, e))?;
            writeln!(
                out,
                "duration     {}",
                human_duration_ns(e.saturating_sub(s))
            )?;
        }
        _ => writeln!(out, "time range   (no events)")?,
    }
    writeln!(
        out,
        "config       ports {}  interfaces {}  snaplen {}  file data {}  buffer {}{}",
        join(&cfg.ports),
        if cfg.interfaces.is_empty() {
            "-".into()
        } else {
            cfg.interfaces.join(",")
        },
        cfg.snaplen,
        cfg.file_data_limit,
        cfg.buffer,
        if cfg.socket_payload {
            "  socket payload"
        } else {
            ""
        }
    )?;
    // Every etcd process seen: the header's, then each that started while recording;
    // a format that cannot tell when they started and ended lists the header's only.
    for p in &summary.processes {
        writeln!(
            out,
            "etcd         pid {}  data dir {}  ({})",
            p.pid,
            p.data_dir.as_deref().unwrap_or("unknown"),
            truncate(&p.cmdline.join(" "), 100)
        )?;
        if processes {
            let start = match p.started_ns {
                Some(t) => format!("started {}", wall_string(&header, t)),
                None => "running at the start".to_string(),
            };
            let end = match (p.ended_ns, p.end_reason()) {
                (Some(t), Some(reason)) => format!("{reason} {}", wall_string(&header, t)),
                _ => "running at the end".to_string(),
            };
            writeln!(out, "               {start}; {end}")?;
        }
    }
    writeln!(out, "redaction    {}", redaction_line(&reader))?;
    match reader.index_state() {
        IndexState::Present => writeln!(
            out,
            "index        present, {} blocks",
            reader.blocks().len()
        )?,
        IndexState::Recovered { reason } => writeln!(
            out,
            "index        recovered ({reason}), {} blocks found by scanning",
            reader.blocks().len()
        )?,
    }
    writeln!(
        out,
        "events       {} ({})",
        summary.events,
        kinds
            .iter()
            .map(|k| format!(
                "{} {}",
                k.name(),
                summary.counts.get(k.name()).unwrap_or(&0)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "lost         {}{}",
        summary.lost,
        if summary.lost > 0 {
            " events the kernel could not hand over"
        } else {
            ""
        }
    )?;
    if !damage.is_empty() {
        writeln!(
            out,
            "damage       {} unreadable region(s), {} events lost",
            damage.len(),
            events_lost_to_damage
        )?;
        for d in &damage {
            writeln!(out, "  offset {}: {}", d.offset, d.reason)?;
        }
    }
    writeln!(out, "connections  {}", summary.connections.len())?;
    for (addrs, c) in &summary.connections {
        let mut flags = Vec::new();
        if c.syn_seen {
            flags.push("SYN");
        }
        if c.fin_seen {
            flags.push("FIN");
        }
        if c.rst_seen {
            flags.push("RST");
        }
        let tls = match (c.tls, c.tls_plaintext_bytes) {
            (_, Some(n)) => format!("  TLS, plaintext {}", human_bytes(n)),
            (true, None) => "  TLS, no plaintext".to_string(),
            (false, None) => String::new(),
        };
        writeln!(
            out,
            "  {addrs:<46} {:>7} segments {:>10}{}{tls}",
            c.segments,
            human_bytes(c.payload_bytes),
            if flags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", flags.join(" "))
            }
        )?;
    }
    writeln!(out, "files        {}", summary.files.len())?;
    for (path, f) in &summary.files {
        let mut parts = vec![];
        if f.writes > 0 {
            parts.push(format!(
                "{} writes {}",
                f.writes,
                human_bytes(f.bytes_written)
            ));
        }
        if f.reads > 0 {
            parts.push(format!("{} reads {}", f.reads, human_bytes(f.bytes_read)));
        }
        if f.syncs > 0 {
            parts.push(format!(
                "{} syncs (avg {}, max {})",
                f.syncs,
                human_duration_ns(f.sync_ns_total / f.syncs),
                human_duration_ns(f.sync_ns_max)
            ));
        }
        writeln!(
            out,
            "  {path:<50} {:<5} {}",
            f.kind.map_or("?", |k| k.name()),
            parts.join(", ")
        )?;
    }
    if summary.socket_syscalls > 0 {
        writeln!(out, "socket syscalls {}", summary.socket_syscalls)?;
    }
    if has_latency(&reader) {
        write_latency(&mut out, &reader.index().latency)?;
    }
    if tls {
        writeln!(
            out,
            "tls          {} connections",
            summary.tls_connections.len()
        )?;
    }
    for (id, c) in &summary.tls_connections {
        let ends = match (c.local, c.remote) {
            (Some(local), Some(remote)) => format!("{local} <-> {remote}"),
            _ => "socket not known".into(),
        };
        let total = c.bytes_written + c.bytes_read;
        writeln!(
            out,
            "  #{id:<5} {ends:<46} {:>7} events {:>10} written {:>10} read{}",
            c.events,
            human_bytes(c.bytes_written),
            human_bytes(c.bytes_read),
            if c.captured_bytes < total {
                format!("  (captured {})", human_bytes(c.captured_bytes))
            } else {
                String::new()
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the file's format keeps the kernel's latency histograms.
fn has_latency(reader: &CaptureReader) -> bool {
    reader.packet_file().is_none() && reader.format().version() >= CaptureFormat::V5.version()
}

/// A histogram for JSON: its buckets, and the buckets of its quantiles with their bounds.
fn latency_json(h: &LatencyHistogram) -> serde_json::Value {
    json!({
        "data_dir": h.data_dir,
        "kind": h.kind,
        "count": h.count(),
        "sum_ns": h.sum_ns,
        "mean_ns": h.mean_ns(),
        "p50": h.p50(),
        "p99": h.p99(),
        "buckets": h.buckets,
    })
}

/// A bucket as a range of durations: `262.1 µs – 524.3 µs`, or `≥ 34.360 s` for the last.
pub(crate) fn bucket_text(b: BucketRange) -> String {
    match b.high_ns {
        Some(high) => format!(
            "{} – {}",
            human_duration_ns(b.low_ns),
            human_duration_ns(high)
        ),
        None => format!("≥ {}", human_duration_ns(b.low_ns)),
    }
}

/// The kernel's histograms, one line each: calls, and the buckets p50 and p99 fall in.
fn write_latency(out: &mut impl Write, histograms: &[LatencyHistogram]) -> std::io::Result<()> {
    if histograms.is_empty() {
        return writeln!(
            out,
            "latency      no kernel histograms (the index was recovered, or no data dir)"
        );
    }
    writeln!(
        out,
        "latency      kernel histograms since the recording started (log2 buckets: p50 and \
         p99 are the buckets they fall in)"
    )?;
    for h in histograms {
        let quantiles = match (h.p50(), h.p99(), h.mean_ns()) {
            (Some(p50), Some(p99), Some(mean)) => format!(
                "  p50 {}  p99 {}  mean {}",
                bucket_text(p50),
                bucket_text(p99),
                human_duration_ns(mean)
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {:<30} {:<9} {:>8} calls{quantiles}",
            h.data_dir,
            h.kind.name(),
            h.count()
        )?;
    }
    Ok(())
}

/// The hosts of a merged capture: where each came from, its clock against the
/// reference's, and what was added to its ids.
fn write_hosts(out: &mut impl Write, hosts: &[HostInfo]) -> std::io::Result<()> {
    if hosts.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "hosts        {} merged, times on {}'s clock",
        hosts.len(),
        hosts[0].name
    )?;
    for h in hosts {
        let clock = match h.measured_against {
            None => "reference clock".to_string(),
            Some(via) => format!(
                "clock {} ± {} (against {}, {} segments)",
                human_signed_duration_ns(h.offset_ns),
                human_duration_ns(h.uncertainty_ns),
                hosts.get(via as usize).map_or("?", |v| v.name.as_str()),
                h.matched_segments
            ),
        };
        let lost = match h.events_lost {
            0 => String::new(),
            n => format!("; {n} events lost"),
        };
        writeln!(
            out,
            "  {:<12} {:<20} {clock}; pids and ifindexes +{}{lost}",
            h.name, h.source, h.id_base
        )?;
    }
    Ok(())
}

/// Whether the capture's passwords and tokens were redacted, and how completely.
fn redaction_line(reader: &CaptureReader) -> String {
    if !reader.header().config.redact_secrets {
        return "off: passwords and tokens were not redacted at record time".into();
    }
    let index = reader.index();
    match &index.redaction {
        Some(report) if report.tls.is_none() && index.count(EventKind::Tls) > 0 => format!(
            "{report}; TLS plaintext NOT scrubbed (recorded before it was redacted): secrets \
             may remain"
        ),
        Some(report) if report.incomplete() => format!("{report}: secrets may remain"),
        Some(report) => format!("{report}"),
        None if reader.format() == CaptureFormat::V1 => {
            "on; what it did is not recorded in format 1 files".into()
        }
        None => "on; what it did is not known (the index was recovered by scanning)".into(),
    }
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

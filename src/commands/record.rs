//! `etcd-trace record`: the command-line face of the recorder.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::capture::EventKind;
use crate::cli::{BufferArg, PriorityArg, RecordArgs};
use crate::output::human_bytes;
use crate::record::priority::WriterPriority;
use crate::record::sink::SinkFailure;
use crate::record::{self, BufferKind, RecordOptions, RecordSummary};

pub fn options_from(args: &RecordArgs) -> Result<RecordOptions> {
    let mut opts = RecordOptions::new(args.output.clone());
    if let Some(path) = &args.config {
        opts.apply_config_file(path)?;
    }
    if !args.pids.is_empty() {
        opts.pids = args.pids.clone();
    }
    if !args.ports.is_empty() {
        opts.ports = args.ports.clone();
    }
    if !args.interfaces.is_empty() {
        opts.interfaces = args.interfaces.clone();
    }
    if let Some(n) = args.snaplen {
        opts.snaplen = n;
    }
    if let Some(n) = args.file_data {
        opts.file_data_limit = n;
    }
    opts.socket_payload |= args.socket_payload;
    if args.keep_secrets {
        opts.redact_secrets = false;
    }
    opts.socket_syscalls |= args.socket_syscalls;
    if args.no_tls {
        opts.tls_plaintext = false;
    }
    if let Some(d) = &args.data_dir {
        opts.data_dir = Some(d.clone());
    }
    opts.duration = args.duration;
    opts.buffer = match args.buffer {
        BufferArg::Ring => BufferKind::Ring,
        BufferArg::Perf => BufferKind::Perf,
    };
    opts.buffer_mb = args.buffer_mb;
    if args.no_syscalls {
        opts.trace_syscalls = false;
    }
    opts.rotate_size_mb = args.rotate_size;
    opts.rotate_time = args.rotate_time;
    opts.keep = args.keep;
    opts.stats = args.stats;
    opts.writer_priority = match args.priority {
        PriorityArg::Idle => WriterPriority::Idle,
        PriorityArg::Normal => WriterPriority::Normal,
    };
    Ok(opts)
}

pub fn run(args: RecordArgs) -> Result<ExitCode> {
    let opts = options_from(&args)?;
    // The config file's `mode: api`, unless --mode ebpf says otherwise.
    if let Some(endpoints) = opts.api_endpoints.clone() {
        if args.mode.is_none() {
            return super::record_api::run(&args, Some(endpoints));
        }
    }
    super::record_api::refuse_api_flags(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let summary = record::run(opts, stop)?;
    let s = &summary.sink;
    if let Some(failure) = &s.failure {
        report_failure(failure, &summary);
    }
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "recorded {} events in {:.1} s ({:.0}/s): packet {}, syscall {}, tls {}, process {}, \
         loss records {}",
        s.events,
        secs,
        s.events as f64 / secs,
        s.counts[EventKind::Packet.slot()],
        s.counts[EventKind::Syscall.slot()],
        s.counts[EventKind::Tls.slot()],
        s.counts[EventKind::Process.slot()],
        s.counts[EventKind::Loss.slot()]
    );
    eprintln!(
        "wrote {} to {}{}",
        human_bytes(s.bytes),
        s.files
            .iter()
            .filter(|f| !s.removed.contains(f))
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        match (s.removed.len() - s.removed_for_room, s.removed_for_room) {
            (0, 0) => String::new(),
            (keep, 0) => format!(" ({keep} older files removed by --keep)"),
            (0, room) => format!(" ({room} older files removed to make room on a full disk)"),
            (keep, room) => format!(
                " ({keep} older files removed by --keep, {room} to make room on a full disk)"
            ),
        }
    );
    eprintln!(
        "lost {} events (kernel handed over {}, received {})",
        summary.lost, summary.kernel_sent, summary.received
    );
    if s.joined_parts + s.unjoined_parts > 0 {
        eprintln!(
            "{} of the events received were parts of WAL writes longer than one event, \
             joined to their writes{}",
            s.joined_parts + s.unjoined_parts,
            match s.unjoined_parts {
                0 => String::new(),
                n => format!(
                    "; {n} could not be (a part before them was lost): those writes' data \
                     ends short"
                ),
            }
        );
    }
    match &s.redaction {
        Some(report) if report.incomplete() => eprintln!("warning: {report}"),
        Some(report) => eprintln!("{report}"),
        None => eprintln!("secrets kept (--keep-secrets): the capture holds passwords and tokens"),
    }
    if summary.writer_raises > 0 {
        eprintln!(
            "the capture writer fell behind {} times and ran at normal priority until it caught up",
            summary.writer_raises
        );
    }
    if !summary.program_stats.is_empty() {
        eprintln!(
            "{} reads by etcd found nothing (EAGAIN) and were counted, not recorded",
            summary.empty_reads
        );
        eprintln!("{:<20} {:>12} {:>12}", "program", "runs", "ns/run");
        for p in &summary.program_stats {
            eprintln!(
                "{:<20} {:>12} {:>12.0}",
                p.name,
                p.run_cnt,
                p.run_time_ns as f64 / p.run_cnt.max(1) as f64
            );
        }
    }
    Ok(if s.failure.is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Why the recording stopped before it was asked to, and what the open file keeps; the
/// usual summary follows.
fn report_failure(failure: &SinkFailure, summary: &RecordSummary) {
    eprintln!("error: {}", failure.error);
    eprintln!("the recording stopped there and the eBPF programs are detached");
    if let Some(closed) = &failure.closed {
        let holds = format!(
            "{} whole blocks, {} events",
            closed.holds.blocks_written, closed.holds.events_written
        );
        match &closed.index_error {
            None => eprintln!(
                "{} is closed with its index ({holds})",
                closed.path.display()
            ),
            Some(e) => eprintln!(
                "error: the index of {} could not be written either: {e}; the file opens by \
                 scanning ({holds})",
                closed.path.display()
            ),
        }
    }
    let s = &summary.sink;
    let from_kernel = s.events - s.counts[EventKind::Loss.slot()];
    let missing = summary.kernel_sent.saturating_sub(from_kernel);
    if missing > 0 {
        eprintln!("{missing} events the kernel handed over were not written");
    }
}

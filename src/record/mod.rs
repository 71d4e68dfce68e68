//! The recorder (Linux, `record` feature): opens the eBPF skeleton, configures it, loads
//! and attaches it, drains the event buffer into the capture writer, and on stop detaches
//! everything, drains what is left, writes the index and reports. A capture writer that
//! fails (a full disk) ends the recording too: everything is detached, and the summary
//! says why.

pub mod attach;
pub mod go_binary;
pub mod layout;
pub mod options;
mod order;
pub mod priority;
mod rings;
pub mod sink;
pub mod skel;
pub mod system;

// The steps of `run`, one module each.
mod buffer;
mod drain;
mod follow;
mod latency;
mod links;
mod load;
mod stats;
mod status;
mod targets;
mod uprobes;

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use buffer::{DrainState, EventBuffer};
use drain::{drain, Pipeline};
use links::Attached;
use load::{capture_header, load};
pub use options::{BufferKind, RecordOptions};
use priority::WriterPriority;
use rings::CpuRings;
use sink::SinkSummary;
pub use stats::ProgramStats;
use stats::{enable_stats, program_stats, read_counter};
use stats::{COUNTER_EMPTY_READS, COUNTER_LOST, COUNTER_SENT};
use targets::Targets;

/// What one recording did, for the closing summary.
#[derive(Debug)]
pub struct RecordSummary {
    pub sink: SinkSummary,
    pub elapsed: Duration,
    /// Events the kernel handed over (its own count) and the events we received.
    pub kernel_sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Reads by the traced processes that returned EAGAIN: counted in the kernel, not
    /// recorded.
    pub empty_reads: u64,
    pub malformed: u64,
    pub program_stats: Vec<ProgramStats>,
    pub attachments: Vec<String>,
    /// Times the idle-priority capture writer fell behind and was raised to normal.
    pub writer_raises: u64,
}

/// Record until `stop` is set, `opts.duration` passes, or an error: find what to trace,
/// load the programs, open the capture, attach, drain until told to stop, report.
pub fn run(mut opts: RecordOptions, stop: Arc<AtomicBool>) -> Result<RecordSummary> {
    opts.validate()?;
    system::check_privileges()?;
    // Held until the end, so that detaching happens in etcd's network namespace too.
    let (targets, _netns) = Targets::find(&opts)?;
    let stats_fd = if opts.stats {
        Some(enable_stats()?)
    } else {
        None
    };
    // Per-CPU rings, staging areas and perf buffer slots: one per possible CPU.
    let ncpus = libbpf_rs::num_possible_cpus()
        .context("counting CPUs")?
        .max(1) as u32;
    let rings = match opts.buffer {
        BufferKind::Ring => Some(CpuRings::create(opts.buffer_mb, ncpus)?),
        BufferKind::Perf => None,
    };
    let mut object = MaybeUninit::uninit();
    let skel = load(&opts, &targets, ncpus, rings.as_ref(), &mut object)?;

    // The capture file, before attaching, so a bad path fails early.
    let progress = Arc::new(sink::SinkProgress::default());
    let priority = match opts.writer_priority {
        WriterPriority::Idle if !priority::idle_is_reversible() => {
            eprintln!(
                "note: the capture writer runs at normal priority: this process could not \
                 raise it back from idle priority when it falls behind (needs CAP_SYS_NICE)"
            );
            WriterPriority::Normal
        }
        p => p,
    };
    let (tx, writer) = sink::spawn(
        opts.output.clone(),
        capture_header(&opts, &targets),
        sink::Rotation {
            size_bytes: opts.rotate_size_mb.map(|mb| mb << 20),
            interval: opts.rotate_time,
            keep: opts.keep,
        },
        opts.redact_secrets
            .then(|| crate::redact::SecretScrubber::new(opts.ports.clone())),
        priority,
        progress.clone(),
    )?;

    // The event buffer before attaching: a perf buffer's per-CPU slots are empty until it
    // exists, and outputs into them would fail (counted as lost).
    let state = Rc::new(RefCell::new(DrainState::default()));
    let buffer = EventBuffer::build(&skel, rings.as_ref(), ncpus, opts.buffer_mb, &state)?;
    let mut attached = Attached::attach(&skel, &opts, &targets)?;
    for outcome in &attached.tls_outcomes {
        outcome.report();
    }
    let mut follower = follow::Follower::new(&opts, &targets);
    if opts.follows() {
        // An etcd that started since the processes were looked for: its exec was missed.
        let caught = follower.catch_up(&skel, &mut attached);
        if !caught.events.is_empty() {
            tx.send(sink::SinkMessage::Events(caught.events))?;
        }
    }
    eprintln!(
        "recording ports {} on {} into {}",
        opts.ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        attached.names.join(", "),
        opts.output.display()
    );

    if opts.follows() {
        eprintln!(
            "following etcd: a process that starts etcd{} is traced from its start",
            opts.data_dir
                .as_ref()
                .map_or(String::new(), |d| format!(" on data dir {}", d.display()))
        );
    }
    let started = Instant::now();
    let pipeline = Pipeline {
        skel: &skel,
        buffer: &buffer,
        state: &state,
        tx: &tx,
        progress: &progress,
    };
    let drained = drain(&opts, &stop, &pipeline, &mut attached, &mut follower);
    attached.detach();
    tx.finishing();
    let writer_raises = tx.writer_raises();
    drop(tx);
    let sink = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the capture writer thread panicked"))?;
    // A writer that failed ends the drain loop too; its summary says why.
    match drained {
        Err(e) if sink.failure.is_some() && e.downcast_ref::<sink::WriterStopped>().is_some() => {}
        drained => drained?,
    }

    let kernel_sent = read_counter(&skel, COUNTER_SENT)?;
    let lost = read_counter(&skel, COUNTER_LOST)?;
    let st = state.borrow();
    if opts.buffer == BufferKind::Perf && st.perf_lost != lost {
        eprintln!(
            "note: the perf buffer reported {} lost samples, the programs counted {lost} failed outputs",
            st.perf_lost
        );
    }
    let malformed = sink.malformed;
    if let Some(e) = &sink.first_malformed {
        eprintln!(
            "warning: {} raw events could not be parsed (first: {e})",
            sink.malformed
        );
    }
    let program_stats = if stats_fd.is_some() {
        program_stats(&skel)
    } else {
        Vec::new()
    };
    drop(stats_fd);
    Ok(RecordSummary {
        sink,
        elapsed: started.elapsed(),
        kernel_sent,
        received: st.received,
        lost,
        empty_reads: read_counter(&skel, COUNTER_EMPTY_READS)?,
        malformed,
        program_stats,
        attachments: attached.names,
        writer_raises,
    })
}

//! `etcd-trace merge A.etr B.etr … -o cluster.etr`: one capture per host into one. A
//! first pass samples each capture's packets to estimate the clock offsets
//! (`analyze::clock_offsets`); a second merges the events (`analyze::merge`), streaming
//! every input at once into the writer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::open_capture;
use crate::analyze::clock_offsets::{
    chain, measure_all, ClockError, HostClock, HostSegments, Link, SegmentKey,
};
use crate::analyze::merge::{
    merged_header, merged_latency, unique_names, HostPlan, HostStats, MergedItem, Merger, MAX_HOSTS,
};
use crate::capture::{CaptureReader, CaptureWriter, Event, HostInfo, ReadItem};
use crate::cli::MergeArgs;
use crate::output::{human_duration_ns, human_signed_duration_ns, Progress};

/// Copies of one segment pair up this far apart at least, whatever the clocks'
/// uncertainty: a slow network's delay.
const MIN_PAIRING_WINDOW_NS: u64 = 1_000_000_000;
/// And at most this far (a poor estimate must not hold minutes of events).
const MAX_PAIRING_WINDOW_NS: u64 = 30_000_000_000;

pub fn run(args: MergeArgs) -> Result<ExitCode> {
    check_paths(&args)?;
    let readers = args
        .inputs
        .iter()
        .map(|p| open_capture(std::slice::from_ref(p)))
        .collect::<Result<Vec<_>>>()?;
    check_inputs(&readers)?;
    let names = unique_names(
        &readers
            .iter()
            .map(|r| r.header().hostname.as_str())
            .collect::<Vec<_>>(),
    );

    let Estimate {
        clocks,
        links,
        lost,
    } = estimate(&readers, &names)?;
    report_links(&links, &names);

    // Each host's clock offset, less its estimated offset from the reference, on one
    // base: the least of them, so that every shift is forward.
    let corrected: Vec<i128> = readers
        .iter()
        .zip(&clocks)
        .map(|(r, c)| i128::from(r.header().clock_offset_ns) - i128::from(c.offset_ns))
        .collect();
    let base = corrected.iter().copied().min().unwrap_or(0);
    let base_ns = clamp_i64(base);
    let mut plans = Vec::with_capacity(readers.len());
    let mut hosts = Vec::with_capacity(readers.len());
    for (h, reader) in readers.iter().enumerate() {
        let shift_ns = clamp_i64(corrected[h] - i128::from(base_ns));
        let plan = HostPlan::new(h, shift_ns)?;
        plans.push(plan);
        let header = reader.header();
        let clock = clocks[h];
        hosts.push(HostInfo {
            name: names[h].clone(),
            source: file_name(reader.path()),
            kernel_release: header.kernel_release.clone(),
            recorder_version: header.recorder_version.clone(),
            format_version: reader.format_version(),
            clock_offset_ns: header.clock_offset_ns,
            offset_ns: clock.offset_ns,
            uncertainty_ns: clock.uncertainty_ns,
            measured_against: clock.via.and_then(|v| u32::try_from(v).ok()),
            matched_segments: clock.matches,
            shift_ns,
            id_base: plan.id_base,
            conn_id_base: plan.conn_id_base,
            events_lost: lost[h],
        });
    }
    report_clocks(&hosts);
    let headers: Vec<_> = readers.iter().map(CaptureReader::header).collect();
    let header = merged_header(&headers, hosts, base_ns)?;

    let widest = clocks.iter().map(|c| c.uncertainty_ns).max().unwrap_or(0);
    let window_ns = widest
        .saturating_mul(2)
        .saturating_add(MIN_PAIRING_WINDOW_NS)
        .min(MAX_PAIRING_WINDOW_NS);
    let mut writer = CaptureWriter::create(&args.output, &header)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let output = PartialOutput(Some(args.output.clone()));
    let streams = readers.iter().map(CaptureReader::events).collect();
    let mut merger = Merger::new(streams, &plans, window_ns);
    let blocks: usize = readers.iter().map(|r| r.blocks().len()).sum();
    let progress = Progress::for_blocks(blocks as u64, "merging");
    for item in merger.by_ref() {
        match item.context("merging")? {
            MergedItem::Event(e) => writer
                .push(&e)
                .with_context(|| format!("writing {}", args.output.display()))?,
            MergedItem::Damaged { host, damage } => {
                eprintln!("warning: {}: {damage}", readers[host].path().display())
            }
        }
        progress.tick_events(1);
    }
    progress.finish();
    // What redaction did, when every host's recorder says.
    let reports: Option<Vec<_>> = readers
        .iter()
        .map(|r| r.index().redaction.clone())
        .collect();
    writer.set_redaction(reports.and_then(|r| r.into_iter().reduce(|a, b| a.plus(&b))));
    let latency: Vec<_> = readers
        .iter()
        .map(|r| r.index().latency.as_slice())
        .collect();
    writer.set_latency(merged_latency(&latency, &names));
    let summary = writer
        .finish()
        .with_context(|| format!("writing {}", args.output.display()))?;
    output.keep();
    report_merge(&args.output, &names, merger.stats(), merger.overflowed);
    eprintln!(
        "wrote {}: {} events in {} blocks",
        args.output.display(),
        summary.events_written,
        summary.blocks_written
    );
    Ok(ExitCode::SUCCESS)
}

/// Two or more inputs, each once; an output that is none of them and, without
/// --force, does not exist.
fn check_paths(args: &MergeArgs) -> Result<()> {
    if args.inputs.len() < 2 {
        bail!("merge needs the captures of two hosts or more");
    }
    if args.inputs.len() > MAX_HOSTS {
        bail!(
            "{} captures: a merged capture holds at most {MAX_HOSTS} hosts",
            args.inputs.len()
        );
    }
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    for input in &args.inputs {
        let real = std::fs::canonicalize(input)
            .with_context(|| format!("cannot read {}", input.display()))?;
        if let Some((_, first)) = seen.iter().find(|(r, _)| *r == real) {
            bail!(
                "{} and {} are the same file: give each host's capture once",
                first.display(),
                input.display()
            );
        }
        seen.push((real, input));
    }
    if let Ok(real) = std::fs::canonicalize(&args.output) {
        if seen.iter().any(|(r, _)| *r == real) {
            bail!(
                "{} is one of the inputs: write the merged capture to a new file",
                args.output.display()
            );
        }
        if !args.force {
            bail!(
                "{} exists: choose another name, or give --force to overwrite it",
                args.output.display()
            );
        }
    }
    Ok(())
}

/// Captures of different recordings, none of them merged already.
fn check_inputs(readers: &[CaptureReader]) -> Result<()> {
    for (i, r) in readers.iter().enumerate() {
        if !r.header().hosts.is_empty() {
            bail!(
                "{} is a merged capture already: merge the hosts' own captures",
                r.path().display()
            );
        }
        if let Some(same) = readers[..i].iter().find(|o| o.header() == r.header()) {
            bail!(
                "{} and {} are the same recording (same host {:?}, start and \
                 configuration): give each host's capture once",
                same.path().display(),
                r.path().display(),
                r.header().hostname
            );
        }
    }
    Ok(())
}

/// The first pass: a sample of every capture's packets, then each host's clock.
/// What the first pass found: each host's clock, the pairs measured, and the events
/// each host's capture lost.
struct Estimate {
    clocks: Vec<HostClock>,
    links: Vec<Link>,
    lost: Vec<u64>,
}

/// The first pass: a sample of every capture's packets, then each host's clock; and
/// each capture's losses (its recorder's, and its damaged blocks').
fn estimate(readers: &[CaptureReader], names: &[String]) -> Result<Estimate> {
    let blocks: usize = readers.iter().map(|r| r.blocks().len()).sum();
    let progress = Progress::for_blocks(blocks as u64, "matching segments between hosts");
    let mut samples = Vec::with_capacity(readers.len());
    let mut lost = Vec::with_capacity(readers.len());
    for reader in readers {
        let header = reader.header();
        let mut sample = HostSegments::new();
        let mut host_lost = 0u64;
        for item in reader.events().without_syscall_contents() {
            match item {
                ReadItem::Event(Event::Packet(p)) => {
                    let wall = i64::try_from(header.wall_ns(p.ts_ns)).unwrap_or(i64::MAX);
                    sample.push(SegmentKey::of(&p), p.direction, wall);
                }
                ReadItem::Event(Event::Loss(l)) => host_lost = host_lost.saturating_add(l.count),
                // Said once, by the second pass.
                ReadItem::Damaged(d) => {
                    host_lost = host_lost.saturating_add(d.events_lost.unwrap_or(0))
                }
                ReadItem::Event(_) => {}
            }
            progress.tick_events(1);
        }
        samples.push(sample);
        lost.push(host_lost);
    }
    progress.finish();
    let source = |h: usize| format!("{} ({})", names[h], readers[h].path().display());
    let links = measure_all(&samples).map_err(|e| match e {
        ClockError::SameHost {
            a,
            b,
            shared,
            sampled,
        } => anyhow::anyhow!(
            "{} and {} saw the same {shared} of {sampled} sampled TCP segments leave: they \
             were recorded on one host (or network namespace); merge one capture per host",
            source(a),
            source(b)
        ),
        other => other.into(),
    })?;
    let clocks = chain(readers.len(), &links).map_err(|e| match e {
        ClockError::Unreached(hosts) => {
            let which: Vec<String> = hosts.iter().map(|&h| source(h)).collect();
            anyhow::anyhow!(
                "cannot estimate the clock of {}: no other host's capture shares TCP \
                 segments with it both ways (one that left one host and entered the other, \
                 and one back), and its offset is never assumed. Merge captures of hosts \
                 that talk to each other, recorded at the same time, with the peer port \
                 among the recorded ports",
                which.join(", ")
            )
        }
        other => other.into(),
    })?;
    Ok(Estimate {
        clocks,
        links,
        lost,
    })
}

/// What each pair of hosts' segments said.
fn report_links(links: &[Link], names: &[String]) {
    for link in links.iter().filter(|l| l.total_matches() > 0) {
        let way = |n: u64, least: Option<i64>| match least {
            Some(d) => format!("{n} segments, least delay {}", human_signed_duration_ns(d)),
            None => "no segment".to_string(),
        };
        eprintln!(
            "segments {} -> {}: {}; {} -> {}: {}",
            names[link.a],
            names[link.b],
            way(link.matches.0, link.least.0),
            names[link.b],
            names[link.a],
            way(link.matches.1, link.least.1),
        );
        if link.offset().is_some_and(|o| o.round_trip_ns < 0) {
            eprintln!(
                "warning: segments between {} and {} arrived before they left, both ways: \
                 the clocks ran at different rates during the recordings; the offset is \
                 an average",
                names[link.a], names[link.b]
            );
        }
    }
}

fn report_clocks(hosts: &[HostInfo]) {
    for h in hosts {
        if h.events_lost > 0 {
            eprintln!(
                "warning: {}'s capture lost {} events (its recorder could not take them, \
                 or its file is damaged): the merged capture lacks them too",
                h.name, h.events_lost
            );
        }
        match h.measured_against {
            None => eprintln!("clock {}: the reference ({})", h.name, h.source),
            Some(via) => eprintln!(
                "clock {}: {} ± {} from the reference, measured against {} over {} \
                 segments ({})",
                h.name,
                human_signed_duration_ns(h.offset_ns),
                human_duration_ns(h.uncertainty_ns),
                hosts.get(via as usize).map_or("?", |v| v.name.as_str()),
                h.matched_segments,
                h.source
            ),
        }
    }
}

fn report_merge(output: &Path, names: &[String], stats: &[HostStats], overflowed: u64) {
    let dropped: u64 = stats.iter().map(|s| s.duplicates_dropped).sum();
    for (name, s) in names.iter().zip(stats) {
        eprintln!(
            "host {name}: {} events read, {} written; {} segments it received are there \
             as their sender saw them",
            s.events_read, s.events_written, s.duplicates_dropped
        );
    }
    eprintln!(
        "{} segments seen on both ends are in {} once",
        dropped,
        output.display()
    );
    if overflowed > 0 {
        eprintln!(
            "warning: {overflowed} events left the merge window early (too many at once): \
             segments among them seen on both ends may be there twice"
        );
    }
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The output file, removed on drop unless kept: a merge that fails leaves nothing.
struct PartialOutput(Option<PathBuf>);

impl PartialOutput {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for PartialOutput {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

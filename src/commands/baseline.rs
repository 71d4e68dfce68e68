//! `etcd-trace baseline learn FILE... -o base.json`: what each client normally does,
//! learned from captures of normal operation, for `detect --baseline`; then a summary of
//! what was learned.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::open_capture;
use crate::analyze::baseline::{
    short_name, Baseline, LearnLimits, Learner, MAX_CLIENTS, MAX_FILE_BYTES, MAX_PREFIX_DEPTH,
    MAX_PREFIX_ENTRIES,
};
use crate::analyze::detect::plural;
use crate::cli::{BaselineArgs, BaselineCommand, BaselineLearnArgs};
use crate::output::{human_bytes, human_duration_ns, Progress};

pub fn run(args: BaselineArgs) -> Result<ExitCode> {
    match args.command {
        BaselineCommand::Learn(args) => learn(args),
    }
}

fn learn(args: BaselineLearnArgs) -> Result<ExitCode> {
    if !(1..=MAX_PREFIX_DEPTH).contains(&args.prefix_depth) {
        bail!("--prefix-depth must be between 1 and {MAX_PREFIX_DEPTH}");
    }
    if !(1..=MAX_CLIENTS).contains(&args.max_clients) {
        bail!("--max-clients must be between 1 and {MAX_CLIENTS}");
    }
    if !(1..=MAX_PREFIX_ENTRIES).contains(&args.max_prefixes) {
        bail!("--max-prefixes must be between 1 and {MAX_PREFIX_ENTRIES}");
    }
    let mut learner = Learner::new(LearnLimits {
        prefix_depth: args.prefix_depth,
        max_clients: args.max_clients,
        max_prefixes: args.max_prefixes,
    });
    for file in &args.files {
        let reader = open_capture(std::slice::from_ref(file))?;
        let name = file.display().to_string();
        let progress = Progress::for_blocks(reader.blocks().len() as u64, "learning");
        let learned = learner
            .learn(&reader, &name, || progress.tick_events(1))
            .cloned();
        progress.finish();
        let Some(c) = learned else {
            bail!("{name} holds no events: there is nothing to learn from it");
        };
        if c.calls == 0 {
            eprintln!("note: {name} holds no client calls with a known method");
        }
        if c.events_lost > 0 || c.damaged_blocks > 0 {
            eprintln!(
                "note: {name}: {} events lost while recording, {} damaged blocks: what they \
                 held is not in the baseline, whose rates may be low",
                c.events_lost, c.damaged_blocks
            );
        }
    }
    if learner.calls() == 0 {
        bail!(
            "the captures hold no client calls to learn from (recorded on etcd's client \
             port, while clients were busy?)"
        );
    }
    let base = learner.finish();
    let json = base.to_json();
    if json.len() as u64 > MAX_FILE_BYTES {
        bail!(
            "the baseline would be {} (more than `detect` reads): lower --max-clients or \
             --max-prefixes",
            human_bytes(json.len() as u64)
        );
    }
    std::fs::write(&args.output, json + "\n")
        .with_context(|| format!("writing {}", args.output.display()))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    summary(&mut out, &base, &args)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn rate(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// What was learned: per client its rates, then per method its share, latency, sizes
/// and busiest prefixes.
fn summary(out: &mut impl Write, base: &Baseline, args: &BaselineLearnArgs) -> Result<()> {
    let calls: u64 = base.clients.iter().map(|c| c.calls).sum();
    writeln!(
        out,
        "learned {} of {} from {} ({} in all), key prefixes at depth {}: {}",
        plural(calls, "call"),
        plural(base.clients.len() as u64, "client"),
        plural(base.captures.len() as u64, "capture"),
        human_duration_ns((base.duration_s * 1e9) as u64),
        base.prefix_depth,
        args.output.display()
    )?;
    for c in &base.clients {
        writeln!(out)?;
        writeln!(
            out,
            "{}  {} calls, {}/s; reads {} keys/s, {}/s (busiest 10 s: {} keys/s, {}/s)",
            c.client,
            c.calls,
            rate(c.calls as f64 / base.duration_s),
            rate(c.reads.keys_per_s),
            human_bytes(c.reads.bytes_per_s as u64),
            rate(c.reads.peak_keys_per_s),
            human_bytes(c.reads.peak_bytes_per_s as u64),
        )?;
        for m in &c.methods {
            let prefixes: Vec<String> = m
                .prefixes
                .iter()
                .take(3)
                .map(|p| format!("{} {}/s", p.prefix, rate(p.per_s)))
                .collect();
            writeln!(
                out,
                "  {:<14} {:>4.0}% {:>7}/s  latency p50 {} p99 {}  response p50 {}{}",
                short_name(&m.method),
                m.share * 100.0,
                rate(m.per_s),
                human_duration_ns(m.latency_ns.p50),
                human_duration_ns(m.latency_ns.p99),
                human_bytes(m.response_bytes.p50),
                if prefixes.is_empty() {
                    String::new()
                } else {
                    format!("  on {}", prefixes.join(", "))
                }
            )?;
        }
    }
    writeln!(out)?;
    let read: Vec<&str> = base
        .read_prefixes
        .iter()
        .map(|p| p.prefix.as_str())
        .collect();
    writeln!(out, "key prefixes read: {}", read.join(", "))?;
    let d = &base.dropped;
    if d.any() {
        writeln!(
            out,
            "left out: {} clients beyond --max-clients ({} calls), {} calls on prefixes beyond \
             --max-prefixes, {} reads of prefixes beyond {}",
            d.clients,
            d.client_calls,
            d.prefix_calls,
            d.read_prefix_reads,
            crate::analyze::baseline::MAX_READ_PREFIXES
        )?;
    }
    Ok(())
}

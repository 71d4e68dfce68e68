//! `etcd-trace detect FILE`: the findings of the detection rules over a capture, grouped
//! by severity in text or one JSON object per finding, with an exit code for checks.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::live::Input;
use crate::analyze::baseline::Baseline;
use crate::analyze::detect::{DetectStats, Detector, Finding, Rules, Severity, DEFAULT_RULES_YAML};
use crate::capture::{FollowItem, ReadItem};
use crate::cli::{DetectArgs, FailLevel, Format};
use crate::output::{human_bytes, human_duration_ns, offset};

pub fn run(args: DetectArgs) -> Result<ExitCode> {
    if args.print_default_rules {
        print!("{DEFAULT_RULES_YAML}");
        return Ok(ExitCode::SUCCESS);
    }
    let rules = load_rules(args.rules.as_deref())?;
    if args.files.is_empty() {
        anyhow::bail!("a capture file is needed");
    }
    let baseline = match &args.baseline {
        Some(path) => Some((
            path,
            Baseline::load(path).with_context(|| format!("baseline {}", path.display()))?,
        )),
        None => None,
    };
    let mut input = Input::open(&args.files, args.follow)?;
    let live = input.is_live();
    if live {
        // Alerts: a read's call waits for the correlator's settling only, not for the
        // full lag of late events.
        input = input.with_lag(LIVE_LAG);
    }
    let start = input.start();
    if input.header().mode.is_api() {
        eprintln!(
            "note: {}; the rules about clients, reads and calls cannot fire on it",
            crate::analyze::api::MISSING
        );
    }
    let mut detector = Detector::new(rules, input.header().config.ports.clone());
    if live {
        detector = detector.live();
    }
    let mut against = None;
    if let Some((path, base)) = baseline {
        against = Some(format!(
            "judged against the baseline {} ({} clients, learned over {})",
            path.display(),
            base.clients.len(),
            human_duration_ns((base.duration_s * 1e9) as u64)
        ));
        detector = detector
            .with_baseline(base)
            .with_context(|| format!("baseline {}", path.display()))?;
    }
    let mut correlator = detector.correlator();
    let progress = input.progress("detecting");
    let mut findings = Vec::new();
    let mut printed = 0;
    let (mut calls, mut phases) = (Vec::new(), Vec::new());
    let mut damaged = 0u64;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for item in input.items(true) {
        match item {
            FollowItem::Read(ReadItem::Event(ev)) => {
                detector.push_with(&mut correlator, ev, &mut calls, &mut phases, &mut findings);
            }
            FollowItem::Read(ReadItem::Damaged(_)) => damaged += 1,
            FollowItem::Quiet { now_ns } => {
                detector.advance(&mut correlator, now_ns, &mut calls, &mut findings)
            }
        }
        calls.clear();
        phases.clear();
        if live {
            printed = print_live(&mut out, &findings, printed, &args, start)?;
        }
        progress.tick_events(1);
    }
    detector.finish_with(correlator, &mut calls, &mut phases, &mut findings);
    progress.finish();
    if live {
        print_live(&mut out, &findings, printed, &args, start)?;
        input.end_note();
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.start_ns.cmp(&b.start_ns))
            .then(a.rule.cmp(b.rule))
    });
    let stats = detector.stats().clone();
    match args.format {
        Format::Json => {
            if !live {
                for f in &findings {
                    writeln!(out, "{}", serde_json::to_string(f)?)?;
                }
            }
            out.flush()?;
            let summary = json!({
                "summary": {
                    "findings": findings.len(),
                    "by_severity": {
                        "critical": count(&findings, Severity::Critical),
                        "high": count(&findings, Severity::High),
                        "medium": count(&findings, Severity::Medium),
                        "low": count(&findings, Severity::Low),
                    },
                    "looked_at": &stats,
                    "damaged_blocks": damaged,
                }
            });
            eprintln!("{summary}");
        }
        Format::Text => {
            if !live {
                print_text(&mut out, &findings, start, args.evidence)?;
            }
            footer(&mut out, &findings, &stats, damaged)?;
            if let Some(line) = &against {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
    }
    let floor = match args.fail_level {
        FailLevel::Low => Severity::Low,
        FailLevel::Medium => Severity::Medium,
        FailLevel::High => Severity::High,
        FailLevel::Critical => Severity::Critical,
    };
    Ok(if findings.iter().any(|f| f.severity >= floor) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// How far behind the capture's clock `detect --follow` still waits for late events.
const LIVE_LAG: Duration = Duration::from_millis(500);

/// Print the findings after the first `printed`, each flushed at once; the number
/// printed now.
fn print_live(
    out: &mut impl Write,
    findings: &[Finding],
    printed: usize,
    args: &DetectArgs,
    start: u64,
) -> Result<usize> {
    for f in findings.iter().skip(printed) {
        match args.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(f)?)?,
            Format::Text => {
                write!(out, "{} ", f.severity.name().to_uppercase())?;
                print_finding(out, f, start, args.evidence)?;
            }
        }
        out.flush()?;
    }
    Ok(findings.len())
}

fn count(findings: &[Finding], s: Severity) -> usize {
    findings.iter().filter(|f| f.severity == s).count()
}

fn print_text(
    out: &mut impl Write,
    findings: &[Finding],
    start: u64,
    max_evidence: usize,
) -> Result<()> {
    for sev in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ] {
        let group: Vec<&Finding> = findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        writeln!(
            out,
            "== {} severity: {} ==",
            sev.name().to_uppercase(),
            group.len()
        )?;
        for f in group {
            writeln!(out)?;
            print_finding(out, f, start, max_evidence)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// One finding: its rule and sentence, window and volume, and evidence.
fn print_finding(out: &mut impl Write, f: &Finding, start: u64, max_evidence: usize) -> Result<()> {
    writeln!(out, "[{}] {}", f.rule, f.summary)?;
    let mut window = format!(
        "  window {} .. {} ({})",
        offset(f.start_ns, start, 6),
        offset(f.end_ns, start, 6),
        human_duration_ns(f.end_ns.saturating_sub(f.start_ns))
    );
    if let Some(v) = f.volume {
        window.push_str(&format!(
            "; volume {} RPCs, {}, {} keys",
            v.rpcs,
            human_bytes(v.bytes),
            v.keys
        ));
    }
    writeln!(out, "{window}")?;
    for e in f.evidence.iter().take(max_evidence) {
        writeln!(
            out,
            "    {} {} {} {}",
            offset(e.ts_ns, start, 6),
            e.stream,
            e.method,
            e.detail
        )?;
    }
    let more =
        (f.evidence.len().saturating_sub(max_evidence) as u64).saturating_add(f.evidence_omitted);
    if more > 0 {
        writeln!(out, "    ... and {more} more")?;
    }
    Ok(())
}

fn footer(
    out: &mut impl Write,
    findings: &[Finding],
    stats: &DetectStats,
    damaged: u64,
) -> Result<()> {
    writeln!(
        out,
        "{} findings ({}{} high, {} medium, {} low) over {} of capture: {} events, {} RPC records ({} not fully decoded)",
        findings.len(),
        match count(findings, Severity::Critical) {
            0 => String::new(),
            n => format!("{n} critical, "),
        },
        count(findings, Severity::High),
        count(findings, Severity::Medium),
        count(findings, Severity::Low),
        human_duration_ns(
            stats
                .last_ns
                .unwrap_or(0)
                .saturating_sub(stats.first_ns.unwrap_or(0))
        ),
        stats.events,
        stats.calls,
        stats.calls_partial,
    )?;
    if stats.events_lost > 0 || stats.gap_bytes > 0 || damaged > 0 {
        writeln!(
            out,
            "not seen: {} events lost by the recorder, {} of TCP stream gaps, {} damaged blocks: activity in them cannot be judged",
            stats.events_lost,
            human_bytes(stats.gap_bytes),
            damaged
        )?;
    } else {
        writeln!(out, "nothing was lost while recording")?;
    }
    if stats.midstream_connections > 0 {
        writeln!(
            out,
            "{} connections were open before recording began: their earlier calls are not seen",
            stats.midstream_connections
        )?;
    }
    if stats.tls_without_plaintext > 0 {
        writeln!(
            out,
            "{} TLS connections have no plaintext in the capture (recorded with --no-tls, or no \
             traced etcd there could be probed): their calls cannot be judged",
            stats.tls_without_plaintext
        )?;
    }
    Ok(())
}

/// The built-in rules, with a user's rules file laid over them.
pub(crate) fn load_rules(path: Option<&std::path::Path>) -> Result<Rules> {
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading rules file {}", path.display()))?;
            Rules::from_yaml(Some(&text))
                .with_context(|| format!("rules file {}", path.display()))?
        }
        None => Rules::builtin(),
    })
}

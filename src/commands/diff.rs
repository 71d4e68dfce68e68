//! `etcd-trace diff BASE NEW`: two captures side by side, and `--fail-on` checks that
//! make it a CI gate (exit 1 when one holds).

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::open_capture;
use crate::analyze::diff::{evaluate, Check, CheckResult};
use crate::analyze::phases::PHASES;
use crate::analyze::profile::Profile;
use crate::cli::{DiffArgs, Format};
use crate::output::{human_bytes, human_duration_ns};

pub fn run(args: DiffArgs) -> Result<ExitCode> {
    let checks = args
        .fail_on
        .iter()
        .map(|e| Check::parse(e))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = super::detect::load_rules(args.rules.as_deref())?;
    let base = Profile::of(
        &open_capture(std::slice::from_ref(&args.base))?,
        args.prefix_depth,
        rules.clone(),
    );
    let new = Profile::of(
        &open_capture(std::slice::from_ref(&args.new))?,
        args.prefix_depth,
        rules,
    );
    if base.api_mode || new.api_mode {
        eprintln!(
            "note: {}; method counts come from /metrics",
            crate::analyze::api::MISSING
        );
    }
    let results: Vec<CheckResult> = checks.iter().map(|c| evaluate(c, &base, &new)).collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => json_out(&mut out, &base, &new, &results)?,
        Format::Text => text_out(&mut out, &args, &base, &new, &results)?,
    }
    out.flush()?;
    Ok(if results.iter().any(|r| r.holds) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn pct(base: f64, new: f64) -> String {
    if base == 0.0 {
        if new == 0.0 {
            "=".into()
        } else {
            "new".into()
        }
    } else {
        format!("{:+.0}%", (new - base) / base * 100.0)
    }
}

fn lat(v: Option<u64>) -> String {
    v.map_or("-".into(), human_duration_ns)
}

fn text_out(
    out: &mut impl Write,
    args: &crate::cli::DiffArgs,
    base: &Profile,
    new: &Profile,
    results: &[CheckResult],
) -> Result<()> {
    writeln!(
        out,
        "base {} ({:.1} s)   new {} ({:.1} s)",
        args.base.display(),
        base.duration_s(),
        args.new.display(),
        new.duration_s()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<42} {:>9} {:>9} {:>6}  {:>9} {:>9} {:>6}  {:>7} {:>7}  {:>9} {:>9}",
        "method",
        "base /s",
        "new /s",
        "",
        "base p99",
        "new p99",
        "",
        "errors",
        "",
        "base req",
        "new req"
    )?;
    let methods: BTreeSet<&String> = base.methods.keys().chain(new.methods.keys()).collect();
    for m in methods {
        let b = base.method_row(m);
        let n = new.method_row(m);
        let rate = |r: &Option<crate::analyze::profile::MethodRow>| {
            r.as_ref().map_or(0.0, |r| r.rate_per_s)
        };
        let p99 =
            |r: &Option<crate::analyze::profile::MethodRow>| r.as_ref().and_then(|r| r.p99_ns);
        let errors =
            |r: &Option<crate::analyze::profile::MethodRow>| r.as_ref().map_or(0, |r| r.errors);
        let req = |r: &Option<crate::analyze::profile::MethodRow>| {
            r.as_ref().map_or(0.0, |r| r.mean_request_bytes)
        };
        let tag = match (&b, &n) {
            (None, Some(_)) => " (new)",
            (Some(_), None) => " (gone)",
            _ => "",
        };
        writeln!(
            out,
            "{:<42} {:>9.1} {:>9.1} {:>6}  {:>9} {:>9} {:>6}  {:>7} {:>7}  {:>9} {:>9}",
            format!("{m}{tag}"),
            rate(&b),
            rate(&n),
            pct(rate(&b), rate(&n)),
            lat(p99(&b)),
            lat(p99(&n)),
            match (p99(&b), p99(&n)) {
                (Some(x), Some(y)) => pct(x as f64, y as f64),
                _ => String::new(),
            },
            errors(&b),
            errors(&n),
            human_bytes(req(&b) as u64),
            human_bytes(req(&n) as u64),
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<42} {:>9} {:>9} {:>6}  {:>9} {:>9}",
        "phase", "base p50", "new p50", "", "base p99", "new p99"
    )?;
    for (_, name) in PHASES {
        let (b, n) = (base.phase_summary(name), new.phase_summary(name));
        phase_row(out, name, b, n)?;
    }
    phase_row(
        out,
        "WAL fsync (all)",
        base.wal_fsync.summary(),
        new.wal_fsync.summary(),
    )?;
    writeln!(out)?;
    let (bc, nc) = (base.clients(), new.clients());
    let new_clients: Vec<String> = nc.difference(&bc).map(|c| c.to_string()).collect();
    let gone_clients: Vec<String> = bc.difference(&nc).map(|c| c.to_string()).collect();
    writeln!(
        out,
        "clients: {} in base, {} in new; new: {}; gone: {}",
        bc.len(),
        nc.len(),
        list(&new_clients),
        list(&gone_clients)
    )?;
    for c in bc.union(&nc) {
        let b = base.client_bytes.get(c).copied().unwrap_or(0) as f64 / base.duration_s();
        let n = new.client_bytes.get(c).copied().unwrap_or(0) as f64 / new.duration_s();
        writeln!(
            out,
            "  {c:<40} {:>12}/s {:>12}/s {:>6}",
            human_bytes(b as u64),
            human_bytes(n as u64),
            pct(b, n)
        )?;
    }
    let new_prefixes: Vec<&String> = new
        .prefixes
        .keys()
        .filter(|p| !base.prefixes.contains_key(*p))
        .collect();
    let gone_prefixes: Vec<&String> = base
        .prefixes
        .keys()
        .filter(|p| !new.prefixes.contains_key(*p))
        .collect();
    writeln!(
        out,
        "key prefixes (depth {}): new: {}; gone: {}",
        args.prefix_depth,
        list(&new_prefixes),
        list(&gone_prefixes)
    )?;
    let new_findings: Vec<String> = new
        .findings
        .iter()
        .filter(|(k, _)| !base.findings.contains_key(*k))
        .map(|((rule, client), sev)| format!("{rule} ({}) from {client}", sev.name()))
        .collect();
    writeln!(
        out,
        "findings of detect: {} in base, {} in new; new: {}",
        base.findings.len(),
        new.findings.len(),
        list(&new_findings)
    )?;
    if base.lost + new.lost > 0 {
        writeln!(
            out,
            "events lost while recording: base {}, new {}",
            base.lost, new.lost
        )?;
    }
    if !results.is_empty() {
        writeln!(out)?;
        for r in results {
            let v = |x: Option<f64>| match (x, r.unit) {
                (None, _) => "-".to_string(),
                (Some(v), "ns") => human_duration_ns(v as u64),
                (Some(v), "bytes") => format!("{v:.0} B"),
                (Some(v), "calls/s") => format!("{v:.2}/s"),
                (Some(v), _) => format!("{v:.0}"),
            };
            writeln!(
                out,
                "{} {}   (base {}, new {}{}{})",
                if r.holds { "FAIL" } else { "ok  " },
                r.check,
                v(r.base),
                v(r.new),
                r.change_pct
                    .map_or(String::new(), |c| format!(", change {c:+.1}%")),
                r.note.as_ref().map_or(String::new(), |n| format!("; {n}"))
            )?;
        }
    }
    Ok(())
}

fn phase_row(
    out: &mut impl Write,
    label: &str,
    b: crate::analyze::histogram::LatencySummary,
    n: crate::analyze::histogram::LatencySummary,
) -> std::io::Result<()> {
    let change = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => pct(x as f64, y as f64),
        _ => String::new(),
    };
    writeln!(
        out,
        "{label:<42} {:>9} {:>9} {:>6}  {:>9} {:>9} {:>6}",
        lat(b.p50_ns),
        lat(n.p50_ns),
        change(b.p50_ns, n.p50_ns),
        lat(b.p99_ns),
        lat(n.p99_ns),
        change(b.p99_ns, n.p99_ns)
    )
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn json_out(
    out: &mut impl Write,
    base: &Profile,
    new: &Profile,
    results: &[CheckResult],
) -> Result<()> {
    let methods: BTreeSet<&String> = base.methods.keys().chain(new.methods.keys()).collect();
    for m in methods {
        writeln!(
            out,
            "{}",
            json!({"kind": "method", "method": m, "base": base.method_row(m), "new": new.method_row(m)})
        )?;
    }
    for (label, name) in PHASES {
        let (b, n) = (base.phase_summary(name), new.phase_summary(name));
        writeln!(
            out,
            "{}",
            json!({"kind": "phase", "phase": label, "base": b, "new": n})
        )?;
    }
    writeln!(
        out,
        "{}",
        json!({"kind": "phase", "phase": "wal-fsync", "base": base.wal_fsync.summary(), "new": new.wal_fsync.summary()})
    )?;
    let (bc, nc) = (base.clients(), new.clients());
    writeln!(
        out,
        "{}",
        json!({
            "kind": "clients",
            "new": nc.difference(&bc).map(|c| c.to_string()).collect::<Vec<_>>(),
            "gone": bc.difference(&nc).map(|c| c.to_string()).collect::<Vec<_>>(),
            "base_bytes_per_s": bc.iter().map(|c| (c.to_string(), *base.client_bytes.get(c).unwrap_or(&0) as f64 / base.duration_s())).collect::<std::collections::BTreeMap<_, _>>(),
            "new_bytes_per_s": nc.iter().map(|c| (c.to_string(), *new.client_bytes.get(c).unwrap_or(&0) as f64 / new.duration_s())).collect::<std::collections::BTreeMap<_, _>>(),
        })
    )?;
    writeln!(
        out,
        "{}",
        json!({
            "kind": "prefixes",
            "new": new.prefixes.keys().filter(|p| !base.prefixes.contains_key(*p)).collect::<Vec<_>>(),
            "gone": base.prefixes.keys().filter(|p| !new.prefixes.contains_key(*p)).collect::<Vec<_>>(),
        })
    )?;
    writeln!(
        out,
        "{}",
        json!({
            "kind": "findings",
            "new": new.findings.iter().filter(|(k, _)| !base.findings.contains_key(*k))
                .map(|((rule, client), sev)| json!({"rule": rule, "client": client, "severity": sev}))
                .collect::<Vec<_>>(),
        })
    )?;
    for r in results {
        let mut v = serde_json::to_value(r)?;
        v["kind"] = "check".into();
        writeln!(out, "{v}")?;
    }
    Ok(())
}

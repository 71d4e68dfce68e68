//! `etcd-trace reproduce FILE --endpoints URL`: the capture's client calls sent again to
//! another cluster, then a per-method report of what came back.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::open_capture;
use super::replay::unescape_key;
use crate::cli::{ClientArgs, Format, ReproduceArgs};
use crate::decode::etcdpb::{describe_range, display_key, EtcdMessage};
use crate::output::{human_duration_ns, offset};
use crate::reproduce::client::{parse_endpoint, tls_config, Target};
use crate::reproduce::plan::{self, Plan, Selection};
use crate::reproduce::report::{per_method, MethodReport};
use crate::reproduce::{self as engine, Options, Outcome};

pub fn run(args: ReproduceArgs) -> Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a number above 0 (2 = twice as fast); --max-speed for no waits");
    }
    let reader = open_capture(&args.files)?;
    let capture_name = args
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let selection = Selection {
        method: args.method.clone(),
        key_prefix: args.key_prefix.as_deref().map(unescape_key),
        only_reads: args.only_reads,
        only_writes: args.only_writes,
        include_admin: args.include_admin,
    };
    let plan = plan::build(&reader, &selection)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    note_tokens(&plan, args.client.user.is_some());
    if args.dry_run {
        write_dry_run(&mut out, &plan, args.format)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = options(&args)?;
    if plan.cluster_ids.is_empty() && !args.allow_unknown_cluster {
        bail!(
            "{} holds no etcd response header, so its cluster cannot be told apart from the \
             target's; if the target is surely another cluster, pass --allow-unknown-cluster",
            capture_name
        );
    }
    let target = engine::identify(&options)?;
    if plan.cluster_ids.contains(&target.cluster_id) {
        bail!(
            "refusing: {} is cluster {:x}, the cluster {} was recorded from; reproduce \
             against another cluster",
            target.endpoint,
            target.cluster_id,
            capture_name
        );
    }
    let withheld = plan.withheld.clone();
    let first_ns = plan.first_ns;
    let outcomes = engine::run(plan, &options, &target)?;
    write_report(&mut out, &outcomes, &withheld, first_ns, args.format)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Captured auth tokens are redacted (and would not be valid on the target anyway).
fn note_tokens(plan: &Plan, user: bool) {
    let tokens = plan
        .connections
        .iter()
        .flat_map(|c| &c.calls)
        .filter(|c| c.had_token)
        .count();
    if tokens > 0 && !user {
        eprintln!(
            "note: {tokens} captured calls carried an auth token, which is never re-sent; \
             they go without one (--user NAME:PASS for a target with auth enabled)"
        );
    }
}

fn options(args: &ReproduceArgs) -> Result<Options> {
    Ok(Options {
        target: client_target(&args.endpoints, &args.client)?,
        speed: (!args.max_speed).then_some(args.speed),
        user: credentials(&args.client)?,
    })
}

/// Where `--endpoints` (and `--cacert/--cert/--key`) say to connect: TLS when a URL is
/// https or a CA is given.
pub(crate) fn client_target(urls: &[String], client: &ClientArgs) -> Result<Target> {
    let (cacert, cert, key) = (
        client.cacert.as_deref(),
        client.cert.as_deref(),
        client.key.as_deref(),
    );
    let mut endpoints = Vec::new();
    let mut tls = false;
    for url in urls {
        let (address, is_tls) = parse_endpoint(url)?;
        tls |= is_tls;
        endpoints.push(address);
    }
    let tls = if tls || cacert.is_some() {
        Some(tls_config(cacert, cert, key)?)
    } else {
        None
    };
    Ok(Target { endpoints, tls })
}

/// `--user NAME[:PASS]`, the password from ETCD_TRACE_PASSWORD when not given.
pub(crate) fn credentials(client: &ClientArgs) -> Result<Option<(String, String)>> {
    let Some(spec) = client.user.as_deref() else {
        return Ok(None);
    };
    Ok(Some(match spec.split_once(':') {
        Some((name, password)) => (name.to_string(), password.to_string()),
        None => match std::env::var("ETCD_TRACE_PASSWORD") {
            Ok(password) => (spec.to_string(), password),
            Err(_) => {
                bail!("--user {spec}: give NAME:PASS, or the password in ETCD_TRACE_PASSWORD")
            }
        },
    }))
}

/// What a request addresses, for the dry-run listing.
fn subject(m: &EtcdMessage) -> String {
    match m {
        EtcdMessage::RangeRequest(r) => describe_range(&r.key, &r.range_end),
        EtcdMessage::PutRequest(r) if r.lease != 0 => {
            format!("{} (lease {:x})", display_key(&r.key), r.lease)
        }
        EtcdMessage::PutRequest(r) => display_key(&r.key),
        EtcdMessage::DeleteRangeRequest(r) => describe_range(&r.key, &r.range_end),
        EtcdMessage::TxnRequest(t) => t
            .first_key_range()
            .map(|(k, e)| describe_range(k, e))
            .unwrap_or_default(),
        EtcdMessage::LeaseRevokeRequest(r) => format!("lease {:x}", r.id),
        EtcdMessage::LeaseKeepAliveRequest(r) => format!("lease {:x}", r.id),
        EtcdMessage::LeaseTimeToLiveRequest(r) => format!("lease {:x}", r.id),
        EtcdMessage::LeaseGrantRequest(r) => format!("TTL {}s", r.ttl),
        _ => String::new(),
    }
}

fn write_dry_run(out: &mut dyn Write, plan: &Plan, format: Format) -> Result<()> {
    for (i, conn) in plan.connections.iter().enumerate() {
        for call in &conn.calls {
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({
                        "record": "call",
                        "connection": i,
                        "client": conn.client.to_string(),
                        "offset_ns": call.start_ns.saturating_sub(plan.first_ns),
                        "method": call.path,
                        "streaming": call.streaming,
                        "requests": call.requests.iter().map(|(_, m)| m.to_json()).collect::<Vec<_>>(),
                    })
                )?,
                Format::Text => {
                    let what = call
                        .requests
                        .first()
                        .map(|(_, m)| subject(m))
                        .unwrap_or_default();
                    let messages = if call.streaming {
                        format!(" [{} messages]", call.requests.len())
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "{} conn {i:<3} {:<16} {what}{messages}",
                        offset(call.start_ns, plan.first_ns, 6),
                        call.method_name()
                    )?;
                }
            }
        }
    }
    write_withheld(out, &plan.withheld, plan.first_ns, format)?;
    if format == Format::Text {
        writeln!(
            out,
            "\nwould send {} calls on {} connections; {} not sent",
            plan.calls(),
            plan.connections.len(),
            plan.withheld.len()
        )?;
    }
    Ok(())
}

fn write_withheld(
    out: &mut dyn Write,
    withheld: &[plan::Withheld],
    first_ns: u64,
    format: Format,
) -> Result<()> {
    for w in withheld {
        match format {
            Format::Json => writeln!(
                out,
                "{}",
                json!({"record": "not_sent", "method": w.method, "client": w.client,
                       "offset_ns": w.start_ns.saturating_sub(first_ns), "reason": w.reason})
            )?,
            Format::Text => writeln!(
                out,
                "{} not sent: {} from {}: {}",
                offset(w.start_ns, first_ns, 6),
                w.method,
                w.client,
                w.reason
            )?,
        }
    }
    Ok(())
}

fn write_report(
    out: &mut dyn Write,
    outcomes: &[Outcome],
    withheld: &[plan::Withheld],
    first_ns: u64,
    format: Format,
) -> Result<()> {
    // Calls not sent for want of a mapping, and calls that failed.
    let problems: Vec<(&str, &Outcome, &str)> = outcomes
        .iter()
        .filter_map(|o| match (&o.unmapped, &o.error) {
            (Some(why), _) => Some(("unmapped", o, why.as_str())),
            (None, Some(error)) => Some(("failed", o, error.as_str())),
            _ => None,
        })
        .collect();
    let methods = per_method(outcomes);
    match format {
        Format::Json => {
            for m in &methods {
                let mut v = serde_json::to_value(m)?;
                v["record"] = json!("method");
                writeln!(out, "{v}")?;
            }
            write_withheld(out, withheld, first_ns, format)?;
            for (kind, o, why) in &problems {
                writeln!(
                    out,
                    "{}",
                    json!({"record": kind, "method": o.method,
                           "offset_ns": o.start_ns.saturating_sub(first_ns), "reason": why})
                )?;
            }
            let sum = |f: fn(&MethodReport) -> u64| methods.iter().map(f).sum::<u64>();
            writeln!(
                out,
                "{}",
                json!({"record": "summary", "sent": sum(|m| m.sent), "ok": sum(|m| m.ok),
                       "errors": sum(|m| m.errors), "unmapped": sum(|m| m.unmapped),
                       "not_sent": withheld.len()})
            )?;
        }
        Format::Text => {
            writeln!(
                out,
                "{:<16} {:>6} {:>6} {:>6} {:>8} {:>10} {:>10} {:>7} {:>7}",
                "METHOD", "SENT", "OK", "ERRORS", "UNMAPPED", "P50", "P99", "P50 ×", "P99 ×"
            )?;
            let dur = |v: Option<u64>| v.map_or("-".to_string(), human_duration_ns);
            let x = |v: Option<f64>| v.map_or("-".to_string(), |r| format!("{r:.2}"));
            for m in &methods {
                writeln!(
                    out,
                    "{:<16} {:>6} {:>6} {:>6} {:>8} {:>10} {:>10} {:>7} {:>7}",
                    m.method,
                    m.sent,
                    m.ok,
                    m.errors,
                    m.unmapped,
                    dur(m.p50_ns),
                    dur(m.p99_ns),
                    x(m.p50_ratio),
                    x(m.p99_ratio)
                )?;
                if let Some(events) = m.watch_events {
                    writeln!(
                        out,
                        "{:<16} watch events: {events} (captured: {})",
                        "",
                        m.original_watch_events.unwrap_or(0)
                    )?;
                }
            }
            writeln!(out, "(× is the target's latency over the captured one)")?;
            for (kind, o, why) in &problems {
                writeln!(
                    out,
                    "{} {kind}: {}: {why}",
                    offset(o.start_ns, first_ns, 6),
                    o.method
                )?;
            }
            write_withheld(out, withheld, first_ns, format)?;
        }
    }
    Ok(())
}

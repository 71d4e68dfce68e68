//! `etcd-trace correlate FILE`: each write RPC joined with its WAL entry, the fsync that
//! made it durable, and the reply.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use base64::Engine;
use serde_json::json;

use super::live::Input;
use super::replay::write_tls_summary;
use super::threads;
use crate::analyze::correlate::{CorrelatedCall, Correlator, Unlinked};
use crate::analyze::rpc::{decode_rpcs, RpcCall, RpcStats};
use crate::analyze::sharded::Step;
use crate::cli::{CorrelateArgs, Format};
use crate::decode::etcdpb::describe_range;
use crate::output::{human_duration_ns, offset};

pub fn run(args: CorrelateArgs) -> Result<ExitCode> {
    let mut input = Input::open(&args.files, args.follow)?;
    super::note_api_mode(input.header(), "correlate");
    let live = input.is_live();
    let start = input.start();
    let header = input.header();
    // Members traced together: a link says whose WAL copy it is.
    let several = header.processes.len() > 1;
    let mut correlator = Correlator::new(header.config.ports.clone());
    let progress = input.progress("correlating");
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut calls = Vec::new();
    let mut phases = Vec::new();
    let mut tally = Tally::default();
    let ports = header.config.ports.clone();
    let mut step = |step: Step<RpcCall>| -> Result<()> {
        let counted = matches!(step, Step::Event { .. } | Step::Damaged(_));
        let record = matches!(step, Step::Record(_));
        correlator.push_step(step, &mut calls, &mut phases);
        if record {
            return Ok(());
        }
        phases.clear();
        let printed = !calls.is_empty();
        for c in calls.drain(..) {
            tally.count(&c);
            emit(&mut out, &c, &args, start, several)?;
        }
        if live && printed {
            out.flush()?;
        }
        if counted {
            progress.tick_events(1);
        }
        Ok(())
    };
    // The traffic is decoded on every core; the correlator takes the calls in order.
    let stats = decode_rpcs(input.items(true), ports, threads(), || |c| c, &mut step)?;
    let rpc_stats = correlator.finish_decoded(stats, &mut calls, &mut phases);
    for c in calls.drain(..) {
        tally.count(&c);
        emit(&mut out, &c, &args, start, several)?;
    }
    progress.finish();
    if args.format == Format::Text {
        tally.print(&mut out, &rpc_stats)?;
    }
    out.flush()?;
    input.end_note();
    Ok(ExitCode::SUCCESS)
}

fn emit(
    out: &mut impl Write,
    c: &CorrelatedCall,
    args: &CorrelateArgs,
    start: u64,
    several: bool,
) -> Result<()> {
    if !args.all && c.op.is_none() {
        return Ok(());
    }
    let call = &c.call;
    let key = call.key.clone().unwrap_or_default();
    match args.format {
        Format::Json => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let wal = c.wal.as_ref().map(|w| {
                json!({
                    "term": w.term,
                    "index": w.index,
                    "member": w.member,
                    "file": w.file,
                    "write_ts_ns": w.write_ts_ns,
                    "write_end_ns": w.write_end_ns,
                    "fsync_start_ns": w.fsync_start_ns,
                    "fsync_ts_ns": w.fsync_ts_ns,
                    "fsync_ns": w.fsync_ns,
                    "how": w.how,
                    "confidence": w.confidence,
                })
            });
            let v = json!({
                "ts_ns": call.ts_ns,
                "method": call.method,
                "key": b64.encode(&key),
                "range_end": call.range_end.as_ref().map(|r| b64.encode(r)),
                "stream": call.stream_id,
                "client": call.client.to_string(),
                "server": call.server.to_string(),
                "status": call.status,
                "op": c.op,
                "wal": wal,
                "reply_ts_ns": c.reply_ts_ns(),
                "unlinked": c.unlinked,
            });
            writeln!(out, "{v}")?;
        }
        Format::Text => {
            let after = |t: u64| human_duration_ns(t.saturating_sub(call.ts_ns));
            let what = format!(
                "{} {} {}",
                call.client,
                call.method_name(),
                describe_range(&key, call.range_end.as_deref().unwrap_or_default())
            );
            let link = match (&c.wal, c.unlinked) {
                (Some(w), _) => {
                    let mut s = format!("WAL {}/{}", w.term, w.index);
                    if several {
                        s.push_str(&format!(" of {}", w.member));
                    }
                    s.push_str(&format!(" written +{}", after(w.write_end_ns)));
                    match (w.fsync_ts_ns, w.fsync_ns) {
                        (Some(done), Some(d)) => s.push_str(&format!(
                            ", fsync {} durable +{}",
                            human_duration_ns(d),
                            after(done)
                        )),
                        _ => s.push_str(", no fsync seen before the reply"),
                    }
                    if let Some(r) = c.reply_ts_ns() {
                        s.push_str(&format!(", replied +{}", after(r)));
                    }
                    if w.confidence != "high" {
                        s.push_str(&format!(" [{}]", w.confidence));
                    }
                    s
                }
                (None, Some(why)) => format!("not linked: {}", why.describe()),
                (None, None) => "not linked".into(),
            };
            writeln!(out, "{} {what:<60} {link}", offset(call.ts_ns, start, 6))?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    writes: u64,
    acknowledged: u64,
    linked: u64,
    linked_with_fsync: u64,
    unlinked: BTreeMap<Unlinked, u64>,
    others: u64,
}

impl Tally {
    fn count(&mut self, c: &CorrelatedCall) {
        if c.op.is_none() {
            self.others += 1;
            return;
        }
        self.writes += 1;
        if c.unlinked != Some(Unlinked::NotAcknowledged) {
            self.acknowledged += 1;
        }
        match (&c.wal, c.unlinked) {
            (Some(w), _) => {
                self.linked += 1;
                if w.fsync_ts_ns.is_some() {
                    self.linked_with_fsync += 1;
                }
            }
            (None, Some(why)) => *self.unlinked.entry(why).or_default() += 1,
            (None, None) => {}
        }
    }

    fn print(&self, out: &mut impl Write, stats: &RpcStats) -> std::io::Result<()> {
        let pct = |n: u64, of: u64| n as f64 * 100.0 / of as f64;
        writeln!(out)?;
        if self.acknowledged == 0 {
            // No percentage of nothing: say there was nothing to link.
            writeln!(
                out,
                "{} write RPCs, none acknowledged: there is no write to link to the WAL",
                self.writes
            )?;
        } else {
            writeln!(
                out,
                "{} write RPCs, {} acknowledged: {} linked to their WAL entry ({:.1}%), {} of them to an fsync that finished before the reply ({:.1}%)",
                self.writes,
                self.acknowledged,
                self.linked,
                pct(self.linked, self.acknowledged),
                self.linked_with_fsync,
                pct(self.linked_with_fsync, self.acknowledged),
            )?;
        }
        for (why, n) in &self.unlinked {
            writeln!(out, "  {n} not linked: {}", why.describe())?;
        }
        writeln!(
            out,
            "{} other RPC records (reads, watches, ...) need no WAL entry; --all lists them",
            self.others
        )?;
        let lost = stats.events_lost;
        if lost > 0 {
            writeln!(
                out,
                "{lost} events were lost while recording: some links may be missing"
            )?;
        }
        write_tls_summary(out, stats)
    }
}

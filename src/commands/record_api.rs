//! `etcd-trace record --mode api`: the command-line face of the API-mode recorder
//! (`api_recorder`), which needs neither root nor the eBPF build.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::reproduce::{client_target, credentials};
use crate::api_recorder::{self, ApiRecordOptions};
use crate::cli::RecordArgs;
use crate::output::human_bytes;

/// Records through etcd's API; `config_endpoints` are the config file's, when it said
/// `mode: api` (the command line's --endpoints win).
pub fn run(args: &RecordArgs, config_endpoints: Option<Vec<String>>) -> Result<ExitCode> {
    refuse_ebpf_flags(args)?;
    let urls = if args.endpoints.is_empty() {
        config_endpoints.unwrap_or_default()
    } else {
        args.endpoints.clone()
    };
    if urls.is_empty() {
        bail!(
            "--mode api needs --endpoints URL[,URL...]: etcd's client URLs, e.g. \
             --endpoints http://10.0.0.5:2379"
        );
    }
    if args.interval.is_zero() {
        bail!("--interval must be more than 0");
    }
    let target = client_target(&urls, &args.client)?;
    let opts = ApiRecordOptions {
        output: args.output.clone(),
        urls,
        target,
        user: credentials(&args.client)?,
        duration: args.duration,
        interval: args.interval,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let s = api_recorder::run(opts, stop)?;
    eprintln!(
        "recorded through the API in {:.1} s: {} key changes, {} status polls, {} member \
         lists, {} metrics polls, {} failures; {} written to {}",
        s.elapsed.as_secs_f64(),
        s.changes,
        s.statuses,
        s.member_lists,
        s.metrics,
        s.failures,
        human_bytes(s.bytes),
        args.output.display()
    );
    if s.failures > 0 {
        eprintln!(
            "note: {} polls or watches failed; `etcd-trace dump {} | grep failed` shows them",
            s.failures,
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// API mode's flags mean nothing to the eBPF recorder: say so rather than ignore them.
#[cfg(all(feature = "record", target_os = "linux"))]
pub fn refuse_api_flags(args: &RecordArgs) -> Result<()> {
    let c = &args.client;
    let given: Vec<&str> = [
        (!args.endpoints.is_empty(), "--endpoints"),
        (c.cacert.is_some(), "--cacert"),
        (c.cert.is_some(), "--cert"),
        (c.key.is_some(), "--key"),
        (c.user.is_some(), "--user"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    if !given.is_empty() {
        bail!(
            "{} go with --mode api (recording through etcd's API); the eBPF recorder finds \
             etcd by itself",
            given.join(", ")
        );
    }
    Ok(())
}

/// The eBPF recorder's flags mean nothing here: say so rather than ignore them.
fn refuse_ebpf_flags(args: &RecordArgs) -> Result<()> {
    let given: Vec<&str> = [
        (!args.pids.is_empty(), "--pid"),
        (!args.ports.is_empty(), "--port"),
        (!args.interfaces.is_empty(), "--iface"),
        (args.snaplen.is_some(), "--snaplen"),
        (args.file_data.is_some(), "--file-data"),
        (args.socket_payload, "--socket-payload"),
        (args.keep_secrets, "--keep-secrets"),
        (args.socket_syscalls, "--socket-syscalls"),
        (args.no_tls, "--no-tls"),
        (args.data_dir.is_some(), "--data-dir"),
        (args.no_syscalls, "--no-syscalls"),
        (args.rotate_size.is_some(), "--rotate-size"),
        (args.rotate_time.is_some(), "--rotate-time"),
        (args.keep.is_some(), "--keep"),
        (args.stats, "--stats"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    if !given.is_empty() {
        bail!(
            "{} belong to the eBPF recorder; --mode api watches etcd through its API and \
             takes --endpoints, --interval, --duration, --cacert/--cert/--key and --user",
            given.join(", ")
        );
    }
    Ok(())
}

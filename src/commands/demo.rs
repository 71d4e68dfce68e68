//! `etcd-trace demo`: a private etcd on loopback, a short recorded workload, and what
//! etcd-trace makes of it. The quickest way to see the tool work.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::DemoArgs;

#[cfg(all(feature = "record", target_os = "linux"))]
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    use anyhow::Context;
    use clap::Parser;

    use crate::sandbox::{basic_workload, EtcdServer, Netns, RecorderProcess, ScratchDir};

    crate::record::system::check_privileges()
        .context("the demo starts etcd in a network namespace and records it")?;
    let scratch = ScratchDir::new("etcd-trace-demo")?;
    let netns = Netns::create()?;
    eprintln!(
        "starting a private etcd on 127.0.0.1:2379 in network namespace {}",
        netns.name
    );
    let etcd = EtcdServer::start(&netns, &scratch.0)?;
    let capture = args
        .output
        .clone()
        .unwrap_or_else(|| scratch.0.join("demo.etr"));
    let exe = std::env::current_exe().context("locating this etcd-trace binary")?;
    let recorder = RecorderProcess::start(
        &exe,
        &[
            "-o".into(),
            capture.display().to_string(),
            "--pid".into(),
            etcd.pid().to_string(),
        ],
    )?;
    eprintln!("recording; running a workload with etcdctl (put, get, txn, del)");
    basic_workload(&etcd, &netns)?;
    let (status, log) = recorder.stop(libc::SIGINT)?;
    eprintln!("{log}");
    if !status.success() {
        anyhow::bail!("the recorder failed ({status})");
    }
    let show = |title: &str| {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!("\n==> {title}\n");
    };
    let path = capture.display().to_string();
    for (title, args) in [
        ("what the capture holds", vec!["info", &path]),
        ("the RPCs the clients made", vec!["replay", &path]),
        (
            "each write, its WAL entry, fsync and reply",
            vec!["correlate", &path],
        ),
        (
            "anything suspicious? (the workload lists the whole keyspace)",
            vec!["detect", &path],
        ),
    ] {
        show(&format!("etcd-trace {}: {title}", args[0]));
        let cli = crate::cli::Cli::try_parse_from(std::iter::once("etcd-trace").chain(args))?;
        super::dispatch(cli.command)?;
    }
    if args.output.is_some() {
        eprintln!(
            "\nThe capture is in {}. Try: etcd-trace dump {}",
            capture.display(),
            capture.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(all(feature = "record", target_os = "linux")))]
pub fn run(_args: DemoArgs) -> Result<ExitCode> {
    anyhow::bail!("the demo records etcd, and this build has no recorder (built without the `record` feature)")
}

//! One module per subcommand: each composes the library's stages and formats what comes
//! out. Errors surface here with context; the exit codes are 2 for usage and input
//! errors, 1 for "found something" in checks (diff, detect), 0 otherwise.

mod baseline;
mod completions;
mod correlate;
mod demo;
mod detect;
mod diff;
mod dump;
mod export;
mod info;
mod live;
mod merge;
mod raft;
#[cfg(all(feature = "record", target_os = "linux"))]
mod record;
mod record_api;
mod replay;
mod reproduce;
mod timeline;
pub mod timespec;
mod top;
mod wal;

use std::process::ExitCode;

use clap::Parser;

use crate::analyze::sharded::default_threads;
use crate::cli::{Cli, Command};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = SERVER_PORTS.set(cli.ports);
    let _ = THREADS.set(cli.threads.map_or_else(default_threads, usize::from));
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`| head`) is not an error worth a message.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run one subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Record(args) if args.mode == Some(crate::cli::ModeArg::Api) => {
            record_api::run(&args, None)
        }
        Command::Record(args) => record_command(args),
        Command::Info(args) => info::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Wal(args) => wal::run(args),
        Command::Correlate(args) => correlate::run(args),
        Command::Raft(args) => raft::run(args),
        Command::Timeline(args) => timeline::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Top(args) => top::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Export(args) => export::run(args),
        Command::Baseline(args) => baseline::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Completions(args) => completions::run(args),
    }
}

#[cfg(all(feature = "record", target_os = "linux"))]
fn record_command(args: crate::cli::RecordArgs) -> anyhow::Result<ExitCode> {
    record::run(args)
}

#[cfg(not(all(feature = "record", target_os = "linux")))]
fn record_command(_args: crate::cli::RecordArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this etcd-trace was built without the recorder (analysis only). Recording needs \
         Linux and a build with the default `record` feature: cargo install etcd-trace"
    )
}

/// Says on stderr that a capture recorded through etcd's API (`record --mode api`)
/// holds nothing for a command that reads packets or syscalls, and which ones read it.
pub(crate) fn note_api_mode(header: &crate::capture::Header, command: &str) {
    if header.mode.is_api() {
        eprintln!(
            "note: this capture was recorded through etcd's API (--mode api): it has no \
             packets or syscalls for `{command}`; timeline, diff and detect read it"
        );
    }
}

/// `--port`: the server ports of a pcap or pcapng file, when given.
static SERVER_PORTS: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();

/// `--threads`: how many threads decode traffic.
static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

pub(crate) fn threads() -> usize {
    THREADS.get().copied().unwrap_or_else(default_threads)
}

/// Open a capture for reading, with a message that says what to do when it fails.
/// Several files, or a directory, open as one rotated recording.
pub(crate) fn open_capture(
    paths: &[std::path::PathBuf],
) -> anyhow::Result<crate::capture::CaptureReader> {
    let mut reader = crate::capture::open_set(paths)?;
    let path = reader.path().to_path_buf();
    if let Some(ports) = SERVER_PORTS.get().filter(|p| !p.is_empty()) {
        reader.set_server_ports(ports);
    }
    if let Some(packets) = reader.packet_file() {
        eprintln!(
            "note: {} is a packet capture ({}): no WAL, fsync or process events; etcd \
             server ports {}",
            path.display(),
            packets.kind,
            if packets.server_ports.is_empty() {
                "none found (no SYN or request seen): name them with \
                 `etcd-trace --port PORT <command>`"
                    .to_string()
            } else {
                format!("{:?}", packets.server_ports)
            }
        );
    }
    if let crate::capture::IndexState::Recovered { reason } = reader.index_state() {
        eprintln!(
            "note: {} has no usable index ({reason}); its blocks were found by scanning \
             (the recorder did not stop cleanly)",
            path.display()
        );
    }
    Ok(reader)
}

/// The capture files named on the command line, for messages.
pub(crate) fn shown(paths: &[std::path::PathBuf]) -> String {
    let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(" ")
}

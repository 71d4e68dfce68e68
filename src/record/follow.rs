//! Etcd processes that start and end while recording. Without --pid the programs trace
//! each process that execs etcd from its exec on (bpf/etcd_trace.bpf.c, `process_exec`),
//! so that nothing of a restart is missed (its WAL reads at startup, its first writes),
//! and report its start; they report the end of every traced process. The drain loop
//! hands those reports here as they come. A new process is looked at in /proc as
//! discovery looks at one (its command line and data dir). When --data-dir names another
//! data dir it is let go: the programs stop tracing it and the writer drops what they
//! recorded of it meanwhile. Else its data dir is added to the programs' when it is new
//! (a restart on the same data dir needs nothing) and its TLS is probed. A process that
//! ends loses its probes. Each start and end becomes an `Event::Process` for the capture,
//! and a line on stderr. This runs in the drain loop, which otherwise only copies: etcd
//! processes start rarely, and their TLS must be probed before they serve.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libbpf_rs::ProgramInput;

use super::layout::{KernelChange, KernelProcess, LayoutError};
use super::links::Attached;
use super::load::{trace_data_dir, DirKey};
use super::options::{RecordOptions, MAX_TRACED_PIDS};
use super::skel::EtcdTraceSkel;
use super::system::{self, EtcdProcess};
use super::targets::{data_dir_text, Targets};
use crate::capture::{Event, ProcessChange, ProcessEvent};

/// How long the data dir of a new etcd that did not exist yet (a new member creates
/// its own) is looked for before it is given up.
const DATA_DIR_WAIT: Duration = Duration::from_secs(60);

/// What the recorder knows of the etcd processes while it follows them.
pub(super) struct Follower {
    /// --data-dir: a new process is traced only when its data dir is this one.
    only_data_dir: Option<PathBuf>,
    /// The data dirs the programs know.
    known_dirs: HashSet<DirKey>,
    /// Every data dir given to the programs, at its latency histogram slot.
    slots: Vec<PathBuf>,
    /// Data dirs of traced processes that did not exist yet, and since when.
    pending_dirs: Vec<(PathBuf, Instant)>,
    /// The processes traced: an end is reported for these only.
    traced: HashSet<u32>,
    /// Whether TLS plaintext is captured (each new process is probed).
    tls: bool,
}

/// What the follower made of a round's reports.
#[derive(Debug, Default)]
pub(super) struct Followed {
    /// For the capture, in the order they happened.
    pub(super) events: Vec<Event>,
    /// Processes let go: what the programs recorded of them is not written.
    pub(super) untraced: Vec<u32>,
}

impl Follower {
    pub(super) fn new(opts: &RecordOptions, targets: &Targets) -> Follower {
        Follower {
            only_data_dir: if opts.follows() {
                opts.data_dir.clone()
            } else {
                None
            },
            known_dirs: targets
                .data_dirs
                .iter()
                .filter_map(|d| DirKey::of(d).ok())
                .collect(),
            slots: targets.data_dirs.clone(),
            pending_dirs: Vec::new(),
            traced: targets.processes.iter().map(|p| p.pid).collect(),
            tls: super::load::captures_tls(opts),
        }
    }

    /// The latency histogram slot of `dir`: its own, or the next free one.
    fn slot_of(&self, dir: &Path) -> usize {
        self.slots
            .iter()
            .position(|d| d == dir)
            .unwrap_or(self.slots.len())
    }

    /// The data dirs by latency histogram slot.
    pub(super) fn data_dir_slots(&self) -> &[PathBuf] {
        &self.slots
    }

    /// Act on the programs' process reports (none, most rounds). When `stopping`,
    /// nothing new is attached.
    pub(super) fn handle(
        &mut self,
        skel: &EtcdTraceSkel<'_>,
        attached: &mut Attached,
        reports: Vec<Result<KernelProcess, LayoutError>>,
        stopping: bool,
    ) -> Followed {
        let mut out = Followed::default();
        if !self.pending_dirs.is_empty() {
            self.look_for_pending_dirs(skel);
        }
        for report in reports {
            match report {
                Ok(p) => match p.change {
                    KernelChange::Start => self.started(skel, attached, p, stopping, &mut out),
                    KernelChange::Exit { status } => self.ended(attached, p, status, &mut out),
                    KernelChange::Untraced => say_no_room(p.pid),
                },
                Err(e) => eprintln!("warning: a process event could not be parsed: {e}"),
            }
        }
        out
    }

    /// Etcd processes that started after the processes were looked for, before the
    /// programs watched execs: the programs trace them from now on. Each is told as a
    /// start, at this time.
    pub(super) fn catch_up(
        &mut self,
        skel: &EtcdTraceSkel<'_>,
        attached: &mut Attached,
    ) -> Followed {
        let mut out = Followed::default();
        let found = system::find_etcd_processes().unwrap_or_default();
        for p in found {
            let wanted = self
                .only_data_dir
                .as_ref()
                .is_none_or(|dir| p.has_data_dir(dir));
            if self.traced.contains(&p.pid) || !wanted {
                continue;
            }
            // 0: the programs saw its exec after all (its report is on its way).
            match run_with_pid(&skel.progs.trace_pid, p.pid) {
                Ok(1) => {
                    let report = KernelProcess {
                        pid: p.pid,
                        ts_ns: system::monotonic_ns(),
                        change: KernelChange::Start,
                    };
                    self.started(skel, attached, report, false, &mut out);
                }
                Ok(2) => say_no_room(p.pid),
                Ok(_) => {}
                Err(e) => eprintln!("warning: etcd pid {} could not be traced: {e}", p.pid),
            }
        }
        out
    }

    fn started(
        &mut self,
        skel: &EtcdTraceSkel<'_>,
        attached: &mut Attached,
        report: KernelProcess,
        stopping: bool,
        out: &mut Followed,
    ) {
        let pid = report.pid;
        // A process that ended already has nothing left to look at.
        let process = EtcdProcess::inspect(pid).unwrap_or(EtcdProcess {
            pid,
            cmdline: Vec::new(),
            data_dir: None,
        });
        if let Some(dir) = &self.only_data_dir {
            if !process.has_data_dir(dir) {
                untrace(skel, pid);
                eprintln!(
                    "etcd pid {pid} started (data dir {}): not traced, its data dir is not {}",
                    data_dir_text(&process),
                    dir.display()
                );
                out.untraced.push(pid);
                return;
            }
        } else if let Some(dir) = &process.data_dir {
            self.add_data_dir(skel, dir);
        }
        self.traced.insert(pid);
        eprintln!(
            "etcd pid {pid} started (data dir {}): tracing it",
            data_dir_text(&process)
        );
        if self.tls && !stopping {
            attached.tls.attach(skel, &process).report();
        }
        out.events.push(Event::Process(ProcessEvent {
            ts_ns: report.ts_ns,
            pid,
            change: ProcessChange::Start {
                data_dir: process.data_dir.map(|d| d.display().to_string()),
                cmdline: process.cmdline,
            },
        }));
    }

    fn ended(
        &mut self,
        attached: &mut Attached,
        report: KernelProcess,
        status: i32,
        out: &mut Followed,
    ) {
        // A process let go may end before the programs heard of it.
        if !self.traced.remove(&report.pid) {
            return;
        }
        attached.tls.detach(report.pid);
        let change = ProcessChange::exit_of_status(status);
        eprintln!(
            "etcd pid {} exited: {}",
            report.pid,
            change.exit_reason().unwrap_or_default()
        );
        out.events.push(Event::Process(ProcessEvent {
            ts_ns: report.ts_ns,
            pid: report.pid,
            change,
        }));
    }

    /// Have the programs trace files below `dir` unless they do already; a dir that does
    /// not exist yet is looked for again.
    fn add_data_dir(&mut self, skel: &EtcdTraceSkel<'_>, dir: &Path) {
        match DirKey::of(dir) {
            Ok(key) if self.known_dirs.contains(&key) => {}
            // A dir named at the start that did not exist yet keeps its slot.
            Ok(_) => match trace_data_dir(skel, dir, self.slot_of(dir)) {
                Ok(key) => {
                    self.known_dirs.insert(key);
                    if !self.slots.iter().any(|d| d == dir) {
                        self.slots.push(dir.to_path_buf());
                    }
                    eprintln!("tracing data dir {} too", dir.display());
                }
                Err(e) => eprintln!(
                    "warning: data dir {} could not be traced ({e:#}): its WAL and backend \
                     writes will not be recorded",
                    dir.display()
                ),
            },
            Err(_) => self.pending_dirs.push((dir.to_path_buf(), Instant::now())),
        }
    }

    fn look_for_pending_dirs(&mut self, skel: &EtcdTraceSkel<'_>) {
        let pending = std::mem::take(&mut self.pending_dirs);
        for (dir, since) in pending {
            if DirKey::of(&dir).is_ok() {
                self.add_data_dir(skel, &dir);
            } else if since.elapsed() < DATA_DIR_WAIT {
                self.pending_dirs.push((dir, since));
            } else {
                eprintln!(
                    "warning: data dir {} did not appear within {} s: its WAL and backend \
                     writes are not recorded",
                    dir.display(),
                    DATA_DIR_WAIT.as_secs()
                );
            }
        }
    }
}

/// An etcd that started when the programs had no place left for it.
fn say_no_room(pid: u32) {
    eprintln!(
        "warning: etcd pid {pid} started, but {MAX_TRACED_PIDS} etcd processes are traced \
         already: it is not traced"
    );
}

/// Have the programs stop tracing `pid` (`untrace_pid`).
fn untrace(skel: &EtcdTraceSkel<'_>, pid: u32) {
    if let Err(e) = run_with_pid(&skel.progs.untrace_pid, pid) {
        eprintln!("warning: etcd pid {pid} could not be let go ({e}): it is still traced");
    }
}

/// Run one of the programs that change the traced pid list, once, with `pid` as its
/// argument; what it returned.
fn run_with_pid(program: &libbpf_rs::ProgramMut<'_>, pid: u32) -> libbpf_rs::Result<u32> {
    let mut args = u64::from(pid).to_ne_bytes();
    let input = ProgramInput {
        context_in: Some(&mut args),
        ..ProgramInput::default()
    };
    program.test_run(input).map(|out| out.return_value)
}

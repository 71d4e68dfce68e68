//! What one recording traces at its start: the etcd processes (found or named), their
//! data dirs and the network interfaces, looked up once before anything is loaded (etcd
//! processes that start later are follow.rs's).

use anyhow::{bail, Context, Result};

use super::options::RecordOptions;
use super::system;

/// What one recorder traces: etcd processes, their data dirs, the interfaces.
pub(super) struct Targets {
    pub(super) processes: Vec<system::EtcdProcess>,
    pub(super) data_dirs: Vec<std::path::PathBuf>,
    pub(super) ifaces: Vec<system::Interface>,
}

impl Targets {
    /// Find them, and enter the network namespace of the first process: packets are
    /// taken where etcd lives, which may be a container's.
    pub(super) fn find(opts: &RecordOptions) -> Result<(Targets, Option<system::NetnsGuard>)> {
        let processes = if opts.pids.is_empty() {
            let all = system::find_etcd_processes()?;
            // With --data-dir, only the etcd of that data dir.
            let found: Vec<system::EtcdProcess> = match &opts.data_dir {
                Some(dir) => all
                    .iter()
                    .filter(|p| p.has_data_dir(dir))
                    .cloned()
                    .collect(),
                None => all.clone(),
            };
            if found.is_empty() && opts.trace_syscalls {
                let others = match (&opts.data_dir, all.is_empty()) {
                    (Some(dir), false) => format!(
                        " with data dir {} (found: {})",
                        dir.display(),
                        all.iter()
                            .map(|p| format!("pid {} data dir {}", p.pid, data_dir_text(p)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => String::new(),
                };
                bail!(
                    "no running etcd process found{others}. Start etcd, or name it with --pid \
                     PID (several --pid for several members), or record packets only with \
                     --no-syscalls"
                );
            }
            found
        } else {
            opts.pids
                .iter()
                .map(|&pid| system::EtcdProcess::inspect(pid))
                .collect::<Result<Vec<_>>>()?
        };
        let mut data_dirs: Vec<std::path::PathBuf> = match &opts.data_dir {
            Some(d) => vec![d.clone()],
            None => processes
                .iter()
                .filter_map(|p| p.data_dir.clone())
                .collect(),
        };
        data_dirs.sort();
        data_dirs.dedup();
        let netns = match processes.first() {
            Some(p) => system::enter_netns_of(p.pid)?,
            None => None,
        };
        if netns.is_some() {
            eprintln!(
                "attaching in the network namespace of etcd pid {}",
                processes[0].pid
            );
        }
        let all_ifaces = system::interfaces()?;
        let ifaces: Vec<system::Interface> = if opts.interfaces.is_empty() {
            all_ifaces.into_iter().filter(|i| i.up).collect()
        } else {
            opts.interfaces
                .iter()
                .map(|name| {
                    all_ifaces
                        .iter()
                        .find(|i| &i.name == name)
                        .cloned()
                        .with_context(|| {
                            format!(
                                "no interface named {name:?} here (have: {})",
                                all_ifaces
                                    .iter()
                                    .map(|i| i.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                })
                .collect::<Result<_>>()?
        };
        for p in &processes {
            eprintln!("tracing etcd pid {} (data dir {})", p.pid, data_dir_text(p));
        }
        Ok((
            Targets {
                processes,
                data_dirs,
                ifaces,
            },
            netns,
        ))
    }
}

/// A process's data dir for messages: its path, or "unknown".
pub(super) fn data_dir_text(p: &system::EtcdProcess) -> String {
    p.data_dir
        .as_ref()
        .map_or("unknown".into(), |d| d.display().to_string())
}

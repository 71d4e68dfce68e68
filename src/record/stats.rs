//! What the programs counted: the per-CPU counters (sent, lost, empty reads) and, with
//! `--stats`, the kernel's run count and run time of each program.

use std::os::fd::AsFd;

use anyhow::{bail, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags};

use super::skel::EtcdTraceSkel;

pub(super) const COUNTER_LOST: u32 = 0;
pub(super) const COUNTER_SENT: u32 = 1;
pub(super) const COUNTER_EMPTY_READS: u32 = 2;

#[derive(Debug, Clone)]
pub struct ProgramStats {
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

pub(super) fn read_counter(skel: &EtcdTraceSkel<'_>, key: u32) -> Result<u64> {
    let per_cpu = skel
        .maps
        .counters
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
        .sum())
}

/// BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel counts run time while the fd lives.
pub(super) fn enable_stats() -> Result<std::os::fd::OwnedFd> {
    // SAFETY: a plain syscall wrapper; the fd it returns is ours.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        bail!(
            "enabling BPF run-time statistics failed: {}",
            std::io::Error::from_raw_os_error(-fd)
        );
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

pub(super) fn program_stats(skel: &EtcdTraceSkel<'_>) -> Vec<ProgramStats> {
    skel.object()
        .progs()
        .filter_map(|prog| {
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
            use std::os::fd::AsRawFd;
            // SAFETY: info is a correctly sized, owned struct.
            let rc = unsafe {
                libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len)
            };
            (rc == 0 && info.run_cnt > 0).then(|| ProgramStats {
                name: prog.name().to_string_lossy().into_owned(),
                run_cnt: info.run_cnt,
                run_time_ns: info.run_time_ns,
            })
        })
        .collect()
}

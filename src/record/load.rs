//! Turning the eBPF object into loaded programs for one recording: open the skeleton,
//! configure its read-only data and map sizes for the targets, load it, fill its maps;
//! and the capture header that records the same configuration.

use std::mem::MaybeUninit;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, ProgramAttachType};

use super::latency;
use super::options::{self, BufferKind, RecordOptions};
use super::rings::CpuRings;
use super::skel::{EtcdTraceSkel, EtcdTraceSkelBuilder};
use super::system;
use super::targets::Targets;
use super::uprobes;
use crate::capture::{CaptureMode, Header, InterfaceInfo, ProcessInfo, RecordConfig};

/// The link-layer header length the programs assume unless told otherwise.
const ETH_HLEN: u32 = 14;

/// Open the skeleton, configure it for `targets`, load it and fill its maps.
pub(super) fn load<'obj>(
    opts: &RecordOptions,
    targets: &Targets,
    ncpus: u32,
    rings: Option<&CpuRings>,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> Result<EtcdTraceSkel<'obj>> {
    let Targets {
        processes,
        data_dirs,
        ifaces,
    } = targets;
    let mut open = EtcdTraceSkelBuilder::default()
        .open(object)
        .context("opening the eBPF object")?;
    let fd_slots_per_process = {
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("the eBPF object has no read-only data")?;
        rodata.use_ringbuf = u32::from(opts.buffer == BufferKind::Ring);
        rodata.snaplen = opts.snaplen;
        rodata.file_data_limit = opts.file_data_limit;
        rodata.other_file_data_limit = opts.file_data_limit.min(options::OTHER_FILE_DATA_LIMIT);
        rodata.socket_data_limit = if opts.socket_payload { opts.snaplen } else { 0 };
        rodata.every_socket_syscall = u32::from(opts.socket_syscalls || opts.socket_payload);
        rodata.emit_syscalls = u32::from(opts.trace_syscalls);
        rodata.trace_tls = u32::from(captures_tls(opts));
        rodata.follow_exec = u32::from(opts.follows());
        rodata.traced_port_count = opts.ports.len() as u32;
        for (slot, port) in rodata.traced_port_list.iter_mut().zip(&opts.ports) {
            *slot = u32::from(*port);
        }
        rodata.l2_exceptions = u32::from(ifaces.iter().any(|i| i.l2_len != ETH_HLEN));
        rodata.fd_slots_per_process
    };
    if processes.len() > options::MAX_TRACED_PIDS {
        bail!(
            "found {} etcd processes; one recorder traces at most {}: choose with --pid",
            processes.len(),
            options::MAX_TRACED_PIDS
        );
    }
    {
        // The first places of the traced pid list; only the programs change it later.
        let bss = open
            .maps
            .bss_data
            .as_deref_mut()
            .context("the eBPF object has no zero-initialised data")?;
        bss.traced_pid_count = processes.len() as u64;
        for (place, p) in bss.traced_pid_list.iter_mut().zip(processes) {
            *place = u64::from(p.pid);
        }
    }
    // Following, a process that starts may take any place.
    let places = if opts.follows() {
        options::MAX_TRACED_PIDS
    } else {
        processes.len().max(1)
    };
    open.maps.stages.set_max_entries(2 * ncpus)?;
    open.maps
        .fd_slots
        .set_max_entries(fd_slots_per_process * places as u32)?;
    match rings {
        Some(rings) => rings.prepare(&mut open.maps.rings)?,
        None => open.maps.rings.set_autocreate(false)?,
    }
    open.progs
        .tc_ingress
        .set_attach_type(ProgramAttachType::TcxIngress);
    open.progs
        .tc_egress
        .set_attach_type(ProgramAttachType::TcxEgress);
    let tls = captures_tls(opts);
    for mut prog in open.open_object_mut().progs_mut() {
        let section = prog.section();
        // The syscall programs load even without syscall events: they keep the
        // latency histograms.
        if !tls && uprobes::is_tls_program(section)
            || !opts.follows() && section.to_string_lossy() == "tp_btf/sched_process_exec"
        {
            prog.set_autoload(false);
        }
    }
    let skel = open.load().map_err(load_error)?;
    if let Some(rings) = rings {
        rings.install(&skel.maps.rings)?;
    }

    // Tell the programs what to trace; each data dir's slot is its place in the list.
    for (slot, dir) in data_dirs.iter().enumerate() {
        if let Err(e) = trace_data_dir(&skel, dir, slot) {
            eprintln!(
                "warning: data dir {} is not readable ({e:#}): WAL and backend writes will \
                 not be traced",
                dir.display()
            );
        }
    }
    for i in ifaces.iter().filter(|i| i.l2_len != ETH_HLEN) {
        skel.maps.l2_len.update(
            &i.ifindex.to_ne_bytes(),
            &i.l2_len.to_ne_bytes(),
            MapFlags::ANY,
        )?;
    }
    Ok(skel)
}

/// A data dir as the programs know it (struct dir_key): the kernel's device number and
/// the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct DirKey {
    ino: u64,
    dev: u32,
}

impl DirKey {
    pub(super) fn of(dir: &Path) -> std::io::Result<DirKey> {
        let meta = std::fs::metadata(dir)?;
        Ok(DirKey {
            ino: meta.ino(),
            dev: system::kernel_dev(meta.dev()),
        })
    }

    fn bytes(self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.ino.to_ne_bytes());
        key[8..12].copy_from_slice(&self.dev.to_ne_bytes());
        key
    }
}

/// Have the programs trace the files below `dir` (the data_dirs map), counting its
/// latencies in histogram slot `slot`.
pub(super) fn trace_data_dir(skel: &EtcdTraceSkel<'_>, dir: &Path, slot: usize) -> Result<DirKey> {
    let slot = u8::try_from(slot)
        .ok()
        .filter(|&s| usize::from(s) < latency::DIR_SLOTS)
        .with_context(|| format!("a recorder traces at most {} data dirs", latency::DIR_SLOTS))?;
    let key = DirKey::of(dir)?;
    skel.maps
        .data_dirs
        .update(&key.bytes(), &[slot], MapFlags::ANY)?;
    Ok(key)
}

/// The capture file's header: this machine, the configuration, the traced processes.
pub(super) fn capture_header(opts: &RecordOptions, targets: &Targets) -> Header {
    let Targets {
        processes,
        data_dirs,
        ifaces,
    } = targets;
    let (offset, wall) = system::clock_offset_ns();
    Header {
        mode: CaptureMode::Ebpf,
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: system::hostname(),
        kernel_release: system::kernel_release(),
        clock_offset_ns: offset,
        started_wall_ns: wall,
        config: RecordConfig {
            ports: opts.ports.clone(),
            interfaces: ifaces.iter().map(|i| i.name.clone()).collect(),
            pids: processes.iter().map(|p| p.pid).collect(),
            snaplen: opts.snaplen,
            file_data_limit: opts.file_data_limit,
            data_dir: data_dirs.first().map(|d| d.display().to_string()),
            socket_payload: opts.socket_payload,
            buffer: opts.buffer.name().to_string(),
            redact_secrets: opts.redact_secrets,
        },
        processes: processes
            .iter()
            .map(|p| ProcessInfo {
                pid: p.pid,
                cmdline: p.cmdline.clone(),
                data_dir: p.data_dir.as_ref().map(|d| d.display().to_string()),
            })
            .collect(),
        interfaces: ifaces
            .iter()
            .map(|i| InterfaceInfo {
                ifindex: i.ifindex,
                name: i.name.clone(),
            })
            .collect(),
        hosts: Vec::new(),
    }
}

/// TLS plaintext is captured when asked for and the syscall programs run: they learn
/// each TLS connection's socket.
pub(super) fn captures_tls(opts: &RecordOptions) -> bool {
    opts.tls_plaintext && opts.trace_syscalls
}

/// The syscall programs: on the raw syscall tracepoints, BTF-typed.
pub(super) fn is_syscall_program(section: &std::ffi::OsStr) -> bool {
    section.to_string_lossy().starts_with("tp_btf/sys_")
}

/// The programs that see etcd processes start and end.
pub(super) fn is_process_program(section: &std::ffi::OsStr) -> bool {
    section
        .to_string_lossy()
        .starts_with("tp_btf/sched_process_")
}

fn load_error(e: libbpf_rs::Error) -> anyhow::Error {
    let msg = e.to_string();
    if msg.contains("Operation not permitted") || msg.contains("EPERM") {
        anyhow::anyhow!(
            "the kernel refused to load the eBPF programs ({msg}). Run as root, or check \
             that the kernel allows BPF (kernel.unprivileged_bpf_disabled, lockdown)"
        )
    } else {
        anyhow::Error::new(e).context("loading the eBPF programs")
    }
}

//! The recorder (Linux, `record` feature): opens the eBPF skeleton, configures it, loads
//! and attaches it, drains the event buffer into the capture writer, and on stop detaches
//! everything, drains what is left, writes the index and reports.

pub mod attach;
pub mod go_binary;
pub mod layout;
pub mod options;
mod order;
pub mod priority;
mod rings;
pub mod sink;
pub mod skel;
pub mod system;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, ProgramAttachType};

use crate::capture::{Event, Header, InterfaceInfo, Loss, LossSource, ProcessInfo, RecordConfig};
use attach::{Hook, TcAttachment};
pub use options::{BufferKind, RecordOptions};
use priority::WriterPriority;
use rings::CpuRings;
use sink::{RawBatch, SinkMessage, SinkSender, SinkSummary};
use skel::{EtcdTraceSkel, EtcdTraceSkelBuilder};

const COUNTER_LOST: u32 = 0;
const COUNTER_SENT: u32 = 1;
const COUNTER_EMPTY_READS: u32 = 2;
/// The link-layer header length the programs assume unless told otherwise.
const ETH_HLEN: u32 = 14;
/// Bytes of raw events per batch sent to the writer thread (sent sooner every 250 ms).
const BATCH_BYTES: usize = 256 << 10;

/// What one recording did, for the closing summary.
#[derive(Debug)]
pub struct RecordSummary {
    pub sink: SinkSummary,
    pub elapsed: Duration,
    /// Events the kernel handed over (its own count) and the events we received.
    pub kernel_sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Reads by the traced processes that returned EAGAIN: counted in the kernel, not
    /// recorded.
    pub empty_reads: u64,
    pub malformed: u64,
    pub program_stats: Vec<ProgramStats>,
    pub attachments: Vec<String>,
    /// Times the idle-priority capture writer fell behind and was raised to normal.
    pub writer_raises: u64,
}

#[derive(Debug, Clone)]
pub struct ProgramStats {
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// Shared between the buffer callbacks and the loop. The callbacks only copy: parsing
/// is the writer thread's, which runs on CPU time etcd does not want (see `priority`).
#[derive(Default)]
struct DrainState {
    /// What goes to the writer next.
    batch: RawBatch,
    received: u64,
    perf_lost: u64,
}

impl DrainState {
    fn on_raw(&mut self, raw: &[u8]) {
        self.received += layout::event_count(raw);
        self.batch.push(raw);
    }
}

/// Record until `stop` is set, `opts.duration` passes, or an error: find what to trace,
/// load the programs, open the capture, attach, drain until told to stop, report.
pub fn run(mut opts: RecordOptions, stop: Arc<AtomicBool>) -> Result<RecordSummary> {
    opts.validate()?;
    system::check_privileges()?;
    // Held until the end, so that detaching happens in etcd's network namespace too.
    let (targets, _netns) = Targets::find(&opts)?;
    let stats_fd = if opts.stats {
        Some(enable_stats()?)
    } else {
        None
    };
    // Per-CPU rings, staging areas and perf buffer slots: one per possible CPU.
    let ncpus = libbpf_rs::num_possible_cpus()
        .context("counting CPUs")?
        .max(1) as u32;
    let rings = match opts.buffer {
        BufferKind::Ring => Some(CpuRings::create(opts.buffer_mb, ncpus)?),
        BufferKind::Perf => None,
    };
    let mut object = MaybeUninit::uninit();
    let skel = load(&opts, &targets, ncpus, rings.as_ref(), &mut object)?;

    // The capture file, before attaching, so a bad path fails early.
    let progress = Arc::new(sink::SinkProgress::default());
    let priority = match opts.writer_priority {
        WriterPriority::Idle if !priority::idle_is_reversible() => {
            eprintln!(
                "note: the capture writer runs at normal priority: this process could not \
                 raise it back from idle priority when it falls behind (needs CAP_SYS_NICE)"
            );
            WriterPriority::Normal
        }
        p => p,
    };
    let (tx, writer) = sink::spawn(
        opts.output.clone(),
        capture_header(&opts, &targets),
        sink::Rotation {
            size_bytes: opts.rotate_size_mb.map(|mb| mb << 20),
            interval: opts.rotate_time,
            keep: opts.keep,
        },
        opts.redact_secrets
            .then(|| crate::redact::SecretScrubber::new(opts.ports.clone())),
        priority,
        progress.clone(),
    )?;

    // The event buffer before attaching: a perf buffer's per-CPU slots are empty until it
    // exists, and outputs into them would fail (counted as lost).
    let state = Rc::new(RefCell::new(DrainState::default()));
    let buffer = EventBuffer::build(&skel, rings.as_ref(), ncpus, opts.buffer_mb, &state)?;
    let mut attached = Attached::attach(&skel, &opts, &targets)?;
    eprintln!(
        "recording ports {} on {} into {}",
        opts.ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        attached.names.join(", "),
        opts.output.display()
    );

    let started = Instant::now();
    let pipeline = Pipeline {
        skel: &skel,
        buffer: &buffer,
        state: &state,
        tx: &tx,
        progress: &progress,
    };
    let drained = drain(&opts, &stop, &pipeline, &mut attached);
    attached.detach();
    tx.finishing();
    let writer_raises = tx.writer_raises();
    drop(tx);
    let sink_result = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the capture writer thread panicked"))?;
    drained?;
    let sink = sink_result?;

    let kernel_sent = read_counter(&skel, COUNTER_SENT)?;
    let lost = read_counter(&skel, COUNTER_LOST)?;
    let st = state.borrow();
    if opts.buffer == BufferKind::Perf && st.perf_lost != lost {
        eprintln!(
            "note: the perf buffer reported {} lost samples, the programs counted {lost} failed outputs",
            st.perf_lost
        );
    }
    let malformed = sink.malformed;
    if let Some(e) = &sink.first_malformed {
        eprintln!(
            "warning: {} raw events could not be parsed (first: {e})",
            sink.malformed
        );
    }
    let program_stats = if stats_fd.is_some() {
        program_stats(&skel)
    } else {
        Vec::new()
    };
    drop(stats_fd);
    Ok(RecordSummary {
        sink,
        elapsed: started.elapsed(),
        kernel_sent,
        received: st.received,
        lost,
        empty_reads: read_counter(&skel, COUNTER_EMPTY_READS)?,
        malformed,
        program_stats,
        attachments: attached.names,
        writer_raises,
    })
}

/// What one recorder traces: etcd processes, their data dirs, the interfaces.
struct Targets {
    processes: Vec<system::EtcdProcess>,
    data_dirs: Vec<std::path::PathBuf>,
    ifaces: Vec<system::Interface>,
}

impl Targets {
    /// Find them, and enter the network namespace of the first process: packets are
    /// taken where etcd lives, which may be a container's.
    fn find(opts: &RecordOptions) -> Result<(Targets, Option<system::NetnsGuard>)> {
        let processes = if opts.pids.is_empty() {
            let found = system::find_etcd_processes()?;
            if found.is_empty() && opts.trace_syscalls {
                bail!(
                    "no running etcd process found. Start etcd, or name it with --pid PID \
                     (several --pid for several members), or record packets only with \
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
            eprintln!(
                "tracing etcd pid {} (data dir {})",
                p.pid,
                p.data_dir
                    .as_ref()
                    .map_or("unknown".into(), |d| d.display().to_string())
            );
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

/// Open the skeleton, configure it for `targets`, load it and fill its maps.
fn load<'obj>(
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
        rodata.trace_socket_syscalls = u32::from(opts.socket_syscalls);
        if processes.len() > options::MAX_TRACED_PIDS {
            bail!(
                "found {} etcd processes; one recorder traces at most {}: choose with --pid",
                processes.len(),
                options::MAX_TRACED_PIDS
            );
        }
        rodata.traced_pid_count = processes.len() as u32;
        for (slot, p) in rodata.traced_pid_list.iter_mut().zip(processes) {
            *slot = p.pid;
        }
        rodata.traced_port_count = opts.ports.len() as u32;
        for (slot, port) in rodata.traced_port_list.iter_mut().zip(&opts.ports) {
            *slot = u32::from(*port);
        }
        rodata.l2_exceptions = u32::from(ifaces.iter().any(|i| i.l2_len != ETH_HLEN));
        rodata.fd_slots_per_process
    };
    open.maps.stages.set_max_entries(2 * ncpus)?;
    open.maps
        .fd_slots
        .set_max_entries(fd_slots_per_process * processes.len().max(1) as u32)?;
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
    if !opts.trace_syscalls {
        for mut prog in open.open_object_mut().progs_mut() {
            if is_syscall_program(prog.section()) {
                prog.set_autoload(false);
            }
        }
    }
    let skel = open.load().map_err(load_error)?;
    if let Some(rings) = rings {
        rings.install(&skel.maps.rings)?;
    }

    // Tell the programs what to trace.
    for dir in data_dirs {
        match std::fs::metadata(dir) {
            Ok(meta) => {
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&meta.ino().to_ne_bytes());
                key[8..12].copy_from_slice(&system::kernel_dev(meta.dev()).to_ne_bytes());
                skel.maps.data_dirs.update(&key, &[1], MapFlags::ANY)?;
            }
            Err(e) => eprintln!(
                "warning: data dir {} is not readable ({e}): WAL and backend writes will not be traced",
                dir.display()
            ),
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

/// The capture file's header: this machine, the configuration, the traced processes.
fn capture_header(opts: &RecordOptions, targets: &Targets) -> Header {
    let Targets {
        processes,
        data_dirs,
        ifaces,
    } = targets;
    let (offset, wall) = system::clock_offset_ns();
    Header {
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
    }
}

/// The programs attached: tracepoint links and TC attachments, detached when dropped.
struct Attached {
    links: Vec<Link>,
    tc: Vec<TcAttachment>,
    /// "lo Egress (tcx)" and the like, for the summary.
    names: Vec<String>,
}

impl Attached {
    fn attach(
        skel: &EtcdTraceSkel<'_>,
        opts: &RecordOptions,
        targets: &Targets,
    ) -> Result<Attached> {
        let mut links: Vec<Link> = Vec::new();
        if opts.trace_syscalls {
            for prog in skel.object().progs_mut() {
                if is_syscall_program(prog.section()) {
                    links.push(prog.attach().with_context(|| {
                        format!("attaching tracepoint program {:?}", prog.name())
                    })?);
                }
            }
        }
        let mut tc: Vec<TcAttachment> = Vec::new();
        for i in &targets.ifaces {
            if !i.loopback {
                tc.push(attach::attach(&skel.progs.tc_ingress, i, Hook::Ingress)?);
            }
            // On lo every segment passes egress then ingress: egress alone sees each once.
            tc.push(attach::attach(&skel.progs.tc_egress, i, Hook::Egress)?);
        }
        let names: Vec<String> = tc
            .iter()
            .map(|a| format!("{} {:?} ({})", a.interface, a.hook, a.mechanism_name()))
            .collect();
        Ok(Attached { links, tc, names })
    }

    /// Detach everything (idempotent): nothing new arrives after this.
    fn detach(&mut self) {
        self.links.clear();
        self.tc.clear();
    }
}

/// The way from the kernel to the capture writer: the programs (for their counters),
/// the event buffer, what its callbacks parsed, the writer's channel and progress.
struct Pipeline<'a, 'obj> {
    skel: &'a EtcdTraceSkel<'obj>,
    buffer: &'a EventBuffer<'obj>,
    state: &'a Rc<RefCell<DrainState>>,
    tx: &'a SinkSender,
    progress: &'a sink::SinkProgress,
}

/// Move events from the kernel's buffer to the writer until told to stop; loss records
/// and a flush once a second, a status line twice a second.
fn drain(
    opts: &RecordOptions,
    stop: &AtomicBool,
    pipeline: &Pipeline<'_, '_>,
    attached: &mut Attached,
) -> Result<()> {
    let Pipeline {
        skel,
        buffer,
        state,
        tx,
        progress,
    } = *pipeline;
    let started = Instant::now();
    let status = StatusLine::new(opts.status_line);
    let mut last_lost = 0u64;
    let mut last_flush = Instant::now();
    let mut last_send = Instant::now();
    let mut last_status = Instant::now();
    let mut last_received = 0u64;
    let result = (|| -> Result<()> {
        loop {
            let stopping = stop.load(Ordering::Relaxed)
                || opts.duration.is_some_and(|d| started.elapsed() >= d);
            if stopping {
                // Detach first so nothing new arrives, then take what is still buffered.
                attached.detach();
                tx.finishing();
                buffer.consume_all()?;
                send_batch(state, tx)?;
                let lost = read_counter(skel, COUNTER_LOST)?;
                push_loss(tx, lost.saturating_sub(last_lost))?;
                return Ok(());
            }
            // The ring buffer programs never wake us (a wakeup costs etcd an interrupt):
            // every 50 ms take what is there.
            buffer.poll(Duration::from_millis(50))?;
            let flush_due = last_flush.elapsed() >= Duration::from_secs(1);
            let send_due = flush_due
                || state.borrow().batch.len_bytes() >= BATCH_BYTES
                || last_send.elapsed() >= Duration::from_millis(250);
            if !send_due {
                buffer.consume()?;
                tx.check_writer();
                continue;
            }
            // Before a batch goes to the writer, the CPUs hand over what they staged too
            // (an interrupt on each CPU, so not every 50 ms): then everything handed over
            // before this drain is in the batch, and the writer may put it in order.
            let drained_at = system::monotonic_ns();
            buffer.consume_all()?;
            state.borrow_mut().batch.drained_at(drained_at);
            tx.check_writer();
            if flush_due {
                let lost = read_counter(skel, COUNTER_LOST)?;
                push_loss(tx, lost.saturating_sub(last_lost))?;
                last_lost = lost;
            }
            send_batch(state, tx)?;
            last_send = Instant::now();
            if flush_due {
                // After everything drained so far, so the writer can put in order and
                // write what came before this drain, quiet spells included.
                tx.send(SinkMessage::Flush {
                    drained_ns: drained_at,
                })?;
                last_flush = Instant::now();
            }
            if last_status.elapsed() >= Duration::from_millis(500) {
                let received = state.borrow().received;
                let secs = last_status.elapsed().as_secs_f64();
                status.update(
                    (received - last_received) as f64 / secs,
                    progress.bytes.load(Ordering::Relaxed),
                    last_lost,
                );
                last_received = received;
                last_status = Instant::now();
            }
        }
    })();
    status.finish();
    result
}

/// The syscall programs: on the raw syscall tracepoints, BTF-typed.
fn is_syscall_program(section: &std::ffi::OsStr) -> bool {
    section.to_string_lossy().starts_with("tp_btf/")
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

fn send_batch(state: &Rc<RefCell<DrainState>>, tx: &SinkSender) -> Result<()> {
    // The next batch gets room for as much as this one held.
    let mut state = state.borrow_mut();
    let room = state.batch.len_bytes() + state.batch.len_bytes() / 8;
    let batch = std::mem::replace(&mut state.batch, RawBatch::with_capacity(room));
    drop(state);
    if !batch.is_empty() {
        tx.send(SinkMessage::Raw(batch))?;
    }
    Ok(())
}

fn push_loss(tx: &SinkSender, count: u64) -> Result<()> {
    if count > 0 {
        let ev = Event::Loss(Loss {
            ts_ns: system::monotonic_ns(),
            source: LossSource::Kernel,
            count,
        });
        tx.send(SinkMessage::Events(vec![ev]))?;
    }
    Ok(())
}

fn read_counter(skel: &EtcdTraceSkel<'_>, key: u32) -> Result<u64> {
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

/// The kernel→user channel, ring or perf, behind one poll/consume interface.
enum EventBuffer<'a> {
    Ring {
        rings: libbpf_rs::RingBuffer<'a>,
        stages: StageFlush<'a>,
    },
    Perf(libbpf_rs::PerfBuffer<'a>),
}

impl<'a> EventBuffer<'a> {
    /// Ring buffers when there are `rings`, else the perf buffer.
    fn build(
        skel: &'a EtcdTraceSkel<'_>,
        rings: Option<&'a CpuRings>,
        ncpus: u32,
        buffer_mb: u32,
        state: &Rc<RefCell<DrainState>>,
    ) -> Result<EventBuffer<'a>> {
        match rings {
            Some(rings) => {
                let mut b = libbpf_rs::RingBufferBuilder::new();
                for map in rings.maps() {
                    let st = state.clone();
                    b.add(map, move |raw: &[u8]| {
                        st.borrow_mut().on_raw(raw);
                        0
                    })?;
                }
                Ok(EventBuffer::Ring {
                    rings: b.build()?,
                    stages: StageFlush {
                        program: &skel.progs.flush_stages,
                        cpus: ncpus,
                    },
                })
            }
            None => {
                let st = state.clone();
                let st_lost = state.clone();
                let pb = libbpf_rs::PerfBufferBuilder::new(&skel.maps.perf_events)
                    .pages(perf_pages(buffer_mb, ncpus))
                    .sample_cb(move |_cpu: i32, raw: &[u8]| st.borrow_mut().on_raw(raw))
                    // The same events are counted by the programs (their output failed),
                    // so this count is only a cross-check, never added to the losses.
                    .lost_cb(move |_cpu: i32, n: u64| st_lost.borrow_mut().perf_lost += n)
                    .build()?;
                Ok(EventBuffer::Perf(pb))
            }
        }
    }

    /// Wait up to `timeout` for events. A signal (Ctrl-C) interrupting the wait is the
    /// normal way to stop, not an error.
    fn poll(&self, timeout: Duration) -> Result<()> {
        let result = match self {
            EventBuffer::Ring { rings, .. } => rings.poll(timeout),
            EventBuffer::Perf(p) => p.poll(timeout),
        };
        match result {
            Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => Ok(()),
            other => Ok(other?),
        }
    }

    /// Take what the programs have handed over.
    fn consume(&self) -> Result<()> {
        match self {
            EventBuffer::Ring { rings, .. } => rings.consume()?,
            EventBuffer::Perf(p) => p.consume()?,
        }
        Ok(())
    }

    /// Take everything until now: with the ring buffers, the CPUs first hand over what
    /// they staged.
    fn consume_all(&self) -> Result<()> {
        if let EventBuffer::Ring { stages, .. } = self {
            stages.flush()?;
        }
        self.consume()
    }
}

/// Hands over the events each CPU's programs have staged but not yet sent in a batch
/// (bpf/etcd_trace.bpf.c, `flush_stages`): the program runs on each CPU in turn.
struct StageFlush<'a> {
    program: &'a libbpf_rs::Program<'a>,
    cpus: u32,
}

impl StageFlush<'_> {
    /// How often a CPU is asked again while the program it interrupted is adding an
    /// event (which takes about a microsecond).
    const TRIES: u32 = 1000;

    fn flush(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.program.as_fd().as_raw_fd();
        for cpu in 0..self.cpus {
            for _ in 0..Self::TRIES {
                let mut opts = libbpf_sys::bpf_test_run_opts {
                    sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
                    cpu,
                    flags: libbpf_sys::BPF_F_TEST_RUN_ON_CPU,
                    ..Default::default()
                };
                // SAFETY: a plain syscall wrapper; opts lives across the call and names
                // no buffers.
                let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
                match rc {
                    0 if opts.retval == 1 => continue,
                    0 => break,
                    // An offline CPU runs no programs, so it stages nothing new.
                    rc if rc == -libc::ENXIO => break,
                    rc => bail!(
                        "handing over the events staged on CPU {cpu}: {}",
                        std::io::Error::from_raw_os_error(-rc)
                    ),
                }
            }
        }
        Ok(())
    }
}

/// Pages per CPU for the perf buffer: `--buffer-mb` shared out over the CPUs, a power
/// of two as perf requires (at least 64 pages, so a few 64 KiB events fit).
fn perf_pages(buffer_mb: u32, ncpus: u32) -> usize {
    let pages = ((buffer_mb as usize) << 20) / 4096 / ncpus.max(1) as usize;
    pages.max(64).next_power_of_two()
}

/// BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel counts run time while the fd lives.
fn enable_stats() -> Result<std::os::fd::OwnedFd> {
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

fn program_stats(skel: &EtcdTraceSkel<'_>) -> Vec<ProgramStats> {
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

/// The live status line on a terminal (events/s, MB written, lost so far).
struct StatusLine(Option<indicatif::ProgressBar>);

impl StatusLine {
    fn new(wanted: bool) -> StatusLine {
        if wanted && std::io::stderr().is_terminal() {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(200));
            StatusLine(Some(pb))
        } else {
            StatusLine(None)
        }
    }

    fn update(&self, rate: f64, bytes: u64, lost: u64) {
        if let Some(pb) = &self.0 {
            pb.set_message(format!(
                "{rate:.0} events/s, {:.1} MB written, {lost} lost  (Ctrl-C to stop)",
                bytes as f64 / 1e6
            ));
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

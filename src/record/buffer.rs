//! The kernel→user event channel (per-CPU ring buffers, or the perf buffer) behind one
//! poll/consume interface, and what its callbacks collect for the drain loop.

use std::cell::RefCell;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Result};

use super::layout;
use super::rings::CpuRings;
use super::sink::RawBatch;
use super::skel::EtcdTraceSkel;

/// Shared between the buffer callbacks and the loop. The callbacks only copy: parsing
/// is the writer thread's, which runs on CPU time etcd does not want (see `priority`).
#[derive(Default)]
pub(super) struct DrainState {
    /// What goes to the writer next.
    pub(super) batch: RawBatch,
    /// Process events, picked out for the drain loop to act on (follow.rs).
    pub(super) processes: Vec<Result<layout::KernelProcess, layout::LayoutError>>,
    pub(super) received: u64,
    pub(super) perf_lost: u64,
}

impl DrainState {
    fn on_raw(&mut self, raw: &[u8]) {
        self.received += layout::event_count(raw);
        match layout::process_event(raw) {
            Some(process) => self.processes.push(process),
            None => self.batch.push(raw),
        }
    }
}

/// The kernel→user channel, ring or perf, behind one poll/consume interface.
pub(super) enum EventBuffer<'a> {
    Ring {
        rings: libbpf_rs::RingBuffer<'a>,
        stages: StageFlush<'a>,
    },
    Perf(libbpf_rs::PerfBuffer<'a>),
}

impl<'a> EventBuffer<'a> {
    /// Ring buffers when there are `rings`, else the perf buffer.
    pub(super) fn build(
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
    pub(super) fn poll(&self, timeout: Duration) -> Result<()> {
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
    pub(super) fn consume(&self) -> Result<()> {
        match self {
            EventBuffer::Ring { rings, .. } => rings.consume()?,
            EventBuffer::Perf(p) => p.consume()?,
        }
        Ok(())
    }

    /// Take everything until now: with the ring buffers, the CPUs first hand over what
    /// they staged.
    pub(super) fn consume_all(&self) -> Result<()> {
        if let EventBuffer::Ring { stages, .. } = self {
            stages.flush()?;
        }
        self.consume()
    }
}

/// Hands over the events each CPU's programs have staged but not yet sent in a batch
/// (bpf/etcd_trace.bpf.c, `flush_stages`): the program runs on each CPU in turn.
pub(super) struct StageFlush<'a> {
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

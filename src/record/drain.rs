//! The loop that runs while recording: move events from the kernel's buffer to the
//! capture writer in batches, with loss records, latency histograms, flushes and the
//! status line on a clock,
//! and act on etcd processes that start and end (follow.rs) as their reports come.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::buffer::{DrainState, EventBuffer};
use super::follow::Follower;
use super::latency;
use super::links::Attached;
use super::options::RecordOptions;
use super::sink::{self, RawBatch, SinkMessage, SinkSender};
use super::skel::EtcdTraceSkel;
use super::stats::{read_counter, COUNTER_LOST};
use super::status::StatusLine;
use super::system;
use crate::capture::{Event, Loss, LossSource};

/// Bytes of raw events per batch sent to the writer thread (sent sooner every 250 ms).
const BATCH_BYTES: usize = 256 << 10;

/// The way from the kernel to the capture writer: the programs (for their counters),
/// the event buffer, what its callbacks parsed, the writer's channel and progress.
pub(super) struct Pipeline<'a, 'obj> {
    pub(super) skel: &'a EtcdTraceSkel<'obj>,
    pub(super) buffer: &'a EventBuffer<'obj>,
    pub(super) state: &'a Rc<RefCell<DrainState>>,
    pub(super) tx: &'a SinkSender,
    pub(super) progress: &'a sink::SinkProgress,
}

/// Move events from the kernel's buffer to the writer until told to stop; loss records
/// and a flush once a second, a status line twice a second.
pub(super) fn drain(
    opts: &RecordOptions,
    stop: &AtomicBool,
    pipeline: &Pipeline<'_, '_>,
    attached: &mut Attached,
    follower: &mut Follower,
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
                follow(pipeline, attached, follower, true)?;
                send_batch(state, tx)?;
                let lost = read_counter(skel, COUNTER_LOST)?;
                push_loss(tx, lost.saturating_sub(last_lost))?;
                // After the detach: the histograms are final.
                send_latency(skel, follower, tx)?;
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
                follow(pipeline, attached, follower, false)?;
                tx.check_writer();
                continue;
            }
            // Before a batch goes to the writer, the CPUs hand over what they staged too
            // (an interrupt on each CPU, so not every 50 ms): then everything handed over
            // before this drain is in the batch, and the writer may put it in order.
            let drained_at = system::monotonic_ns();
            buffer.consume_all()?;
            state.borrow_mut().batch.drained_at(drained_at);
            // Before the batch: the writer learns of a process before its events.
            follow(pipeline, attached, follower, false)?;
            tx.check_writer();
            if flush_due {
                let lost = read_counter(skel, COUNTER_LOST)?;
                push_loss(tx, lost.saturating_sub(last_lost))?;
                last_lost = lost;
                send_latency(skel, follower, tx)?;
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

/// Act on the process reports taken so far, and tell the writer.
fn follow(
    pipeline: &Pipeline<'_, '_>,
    attached: &mut Attached,
    follower: &mut Follower,
    stopping: bool,
) -> Result<()> {
    let reports = std::mem::take(&mut pipeline.state.borrow_mut().processes);
    let followed = follower.handle(pipeline.skel, attached, reports, stopping);
    if !followed.untraced.is_empty() {
        pipeline.tx.send(SinkMessage::Untraced(followed.untraced))?;
    }
    if !followed.events.is_empty() {
        pipeline.tx.send(SinkMessage::Events(followed.events))?;
    }
    Ok(())
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

/// The kernel's latency histograms as they stand, for the next index the writer writes.
fn send_latency(skel: &EtcdTraceSkel<'_>, follower: &Follower, tx: &SinkSender) -> Result<()> {
    let histograms = latency::read(skel, follower.data_dir_slots())?;
    tx.send(SinkMessage::Latency(histograms))
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

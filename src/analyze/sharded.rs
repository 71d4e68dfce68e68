//! Decoding on every core. After reassembly a capture's connections are independent, and
//! most of an analysis's time goes into each connection's HTTP/2, HPACK and protobuf
//! decoding. So this thread reads the capture, puts segments in order and reassembles
//! them (`StreamDemux`), and worker threads own the connections' decoders, sharded by
//! connection. A worker also runs the caller's finisher on each record (replay formats
//! its lines there).
//!
//! The output is the same, in the same order, as one thread makes it: every call on a
//! connection's decoder gets a sequence number here, the workers' records are merged
//! back by it, and the points between events (where an analysis moves its own time
//! windows on) are put back between them. In the demux a [`Proxy`] stands in for each
//! decoder: it answers what the demux asks of a decoder (`is_tls`) and turns every call
//! into a command for the real one. With one thread the demux drives the real decoders
//! directly, with no proxy, which is what the tests compare against.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use foldhash::{HashMap, HashMapExt};

use crate::analyze::streams::{DemuxConfig, StreamDecoder, StreamDemux, StreamEnd, StreamStats};
use crate::capture::{Damage, Event, FollowItem, ReadItem};
use crate::decode::tcp::{ConnectionKey, FlowDirection};

/// What the decoding hands its caller, in the order one thread makes it.
#[derive(Debug)]
pub enum Step<O> {
    /// A record, through the caller's finisher.
    Record(O),
    /// An event has been taken in whole: the capture is at `ts_ns`. `event` is the event
    /// itself when it carries no stream bytes (a syscall, a loss, a process event).
    Event { ts_ns: u64, event: Option<Event> },
    /// A followed capture's quiet spell: capture time has reached `now_ns` without
    /// events, and what was complete by then has been handed on.
    Quiet { now_ns: u64 },
    /// A damaged stretch of the capture.
    Damaged(Damage),
}

/// Threads to decode on by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Commands sent to the workers at least this often...
const FLUSH_COMMANDS: usize = if cfg!(test) { 5 } else { 16384 };
/// ...or after this many events, so that records do not wait long on a quiet capture.
const FLUSH_EVENTS: usize = if cfg!(test) { 7 } else { 32768 };
/// Flushes in flight before this thread waits for the oldest one's records.
const FLUSHES_IN_FLIGHT: usize = 4;

/// Decode `items` (a capture's, or a followed capture's with its quiet spells) with one
/// `D` per connection on `threads` threads, and hand every
/// record (through a finisher made by `make_finisher`, one per thread) and every point
/// between events to `step`, in order. Returns the demux's counters, or the first error
/// `step` returned.
pub fn decode<D, O, F, E>(
    items: impl Iterator<Item = FollowItem>,
    config: &DemuxConfig,
    threads: usize,
    make_finisher: impl Fn() -> F,
    step: &mut dyn FnMut(Step<O>) -> Result<(), E>,
) -> Result<StreamStats, E>
where
    D: StreamDecoder + Send,
    O: Send,
    F: FnMut(D::Record) -> O + Send,
{
    if threads <= 1 {
        return decode_here::<D, O, F, E>(items, config, make_finisher(), step);
    }
    std::thread::scope(|scope| {
        let mut pipeline = Pipeline::<O>::new(config);
        for _ in 1..threads {
            let (to_worker, commands) = sync_channel(FLUSHES_IN_FLIGHT + 2);
            let (results, from_worker) = sync_channel(FLUSHES_IN_FLIGHT + 2);
            let finisher = make_finisher();
            scope.spawn(move || worker::<D, O, F>(commands, results, finisher));
            pipeline.workers.push(WorkerLink {
                to: to_worker,
                from: from_worker,
                batch: Vec::new(),
            });
        }
        for item in items {
            let quiet = matches!(item, FollowItem::Quiet { .. });
            pipeline.take(item);
            if quiet {
                // Followed: what is complete is wanted now.
                pipeline.flush(step)?;
                pipeline.collect_all(step)?;
            } else if pipeline.due() {
                pipeline.flush(step)?;
            }
        }
        pipeline.finish(step)
    })
}

/// The reference: the real decoders in the demux, on this thread.
fn decode_here<D, O, F, E>(
    items: impl Iterator<Item = FollowItem>,
    config: &DemuxConfig,
    mut finisher: F,
    step: &mut dyn FnMut(Step<O>) -> Result<(), E>,
) -> Result<StreamStats, E>
where
    D: StreamDecoder,
    F: FnMut(D::Record) -> O,
{
    let mut demux: StreamDemux<D> = config.build();
    let mut records = Vec::new();
    for item in items {
        match item {
            FollowItem::Read(ReadItem::Event(ev)) => {
                let ts_ns = ev.ts_ns();
                let event = demux.push_owned(ev, &mut records);
                for r in records.drain(..) {
                    step(Step::Record(finisher(r)))?;
                }
                step(Step::Event { ts_ns, event })?;
            }
            FollowItem::Read(ReadItem::Damaged(d)) => step(Step::Damaged(d))?,
            FollowItem::Quiet { now_ns } => {
                demux.advance(now_ns, &mut records);
                for r in records.drain(..) {
                    step(Step::Record(finisher(r)))?;
                }
                step(Step::Quiet { now_ns })?;
            }
        }
    }
    demux.finish(&mut records);
    for r in records.drain(..) {
        step(Step::Record(finisher(r)))?;
    }
    Ok(demux.stats().clone())
}

/// One call on a connection's decoder.
#[derive(Debug)]
enum Command {
    New {
        handshake_seen: bool,
    },
    SetTls,
    Data {
        dir: FlowDirection,
        offset: u64,
        bytes: Vec<u8>,
        ts_ns: u64,
    },
    Gap {
        dir: FlowDirection,
        offset: u64,
        len: u64,
        ts_ns: u64,
    },
    Finish(StreamEnd),
}

/// A command for the decoder of `key`, which lives on worker `shard % workers`.
#[derive(Debug)]
pub struct Routed {
    key: ConnectionKey,
    shard: u64,
    command: Command,
}

/// Stands in for a connection's decoder in the demux. The real decoder is made on the
/// worker at the proxy's first call, so a proxy the demux drops unused costs nothing
/// there (as a decoder dropped unused makes no records).
#[derive(Debug)]
pub struct Proxy {
    key: ConnectionKey,
    shard: u64,
    handshake_seen: bool,
    tls: bool,
    /// The worker has made this proxy's decoder.
    made: bool,
    /// The worker's decoder knows it carries TLS.
    tls_sent: bool,
}

impl Proxy {
    fn send(&mut self, command: Command, out: &mut Vec<Routed>) {
        let routed = |command| Routed {
            key: self.key,
            shard: self.shard,
            command,
        };
        if !self.made {
            self.made = true;
            out.push(routed(Command::New {
                handshake_seen: self.handshake_seen,
            }));
        }
        if self.tls && !self.tls_sent {
            self.tls_sent = true;
            out.push(routed(Command::SetTls));
        }
        out.push(routed(command));
    }
}

impl StreamDecoder for Proxy {
    type Record = Routed;

    fn new(key: ConnectionKey, handshake_seen: bool) -> Proxy {
        Proxy {
            key,
            // Fixed seeds: the same connection goes to the same worker in every run.
            shard: foldhash::fast::FixedState::with_seed(0).hash_one(key),
            handshake_seen,
            tls: false,
            made: false,
            tls_sent: false,
        }
    }

    fn set_tls(&mut self) {
        self.tls = true;
    }

    fn is_tls(&self) -> bool {
        self.tls
    }

    fn push_data(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<Routed>,
    ) {
        self.push_data_owned(dir, offset, bytes.to_vec(), ts_ns, out);
    }

    fn push_data_owned(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: Vec<u8>,
        ts_ns: u64,
        out: &mut Vec<Routed>,
    ) {
        let command = Command::Data {
            dir,
            offset,
            bytes,
            ts_ns,
        };
        self.send(command, out);
    }

    fn push_gap(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<Routed>,
    ) {
        let command = Command::Gap {
            dir,
            offset,
            len,
            ts_ns,
        };
        self.send(command, out);
    }

    fn finish(&mut self, end: StreamEnd, out: &mut Vec<Routed>) {
        self.send(Command::Finish(end), out);
    }
}

/// A worker: the real decoders of its share of the connections. Each batch of commands
/// gets one reply, its records with their sequence numbers, even when it has none.
fn worker<D, O, F>(
    commands: Receiver<Vec<(u64, Routed)>>,
    results: SyncSender<Vec<(u64, O)>>,
    mut finisher: F,
) where
    D: StreamDecoder,
    F: FnMut(D::Record) -> O,
{
    let mut conns: HashMap<ConnectionKey, D> = HashMap::new();
    let mut records = Vec::new();
    for batch in commands {
        let mut reply = Vec::new();
        for (seq, Routed { key, command, .. }) in batch {
            match command {
                // A decoder still under the key was dropped unused by the demux.
                Command::New { handshake_seen } => {
                    conns.insert(key, D::new(key, handshake_seen));
                }
                Command::SetTls => conn(&mut conns, key).set_tls(),
                Command::Data {
                    dir,
                    offset,
                    bytes,
                    ts_ns,
                } => conn(&mut conns, key).push_data(dir, offset, &bytes, ts_ns, &mut records),
                Command::Gap {
                    dir,
                    offset,
                    len,
                    ts_ns,
                } => conn(&mut conns, key).push_gap(dir, offset, len, ts_ns, &mut records),
                Command::Finish(end) => {
                    if let Some(mut d) = conns.remove(&key) {
                        d.finish(end, &mut records);
                    }
                }
            }
            reply.extend(records.drain(..).map(|r| (seq, finisher(r))));
        }
        if results.send(reply).is_err() {
            return;
        }
    }
}

fn conn<D: StreamDecoder>(conns: &mut HashMap<ConnectionKey, D>, key: ConnectionKey) -> &mut D {
    conns.entry(key).or_insert_with(|| D::new(key, false))
}

struct WorkerLink<O> {
    to: SyncSender<Vec<(u64, Routed)>>,
    from: Receiver<Vec<(u64, O)>>,
    /// Commands not sent yet.
    batch: Vec<(u64, Routed)>,
}

/// What waits, in order, for the records before it: an event taken, a quiet spell, or
/// damage.
enum Mark {
    Event { ts_ns: u64, event: Option<Event> },
    Quiet { now_ns: u64 },
    Damaged(Damage),
}

/// This thread's side: the demux of proxies, the sequence numbers, the marks.
struct Pipeline<O> {
    demux: StreamDemux<Proxy>,
    workers: Vec<WorkerLink<O>>,
    routed: Vec<Routed>,
    /// The next command's sequence number.
    seq: u64,
    /// Commands and events since the last flush.
    commands: usize,
    events: usize,
    /// Each flush in flight: the sequence number it ends before.
    in_flight: VecDeque<u64>,
    /// Marks, each with the sequence number of the first command after it.
    marks: VecDeque<(u64, Mark)>,
}

impl<O> Pipeline<O> {
    fn new(config: &DemuxConfig) -> Pipeline<O> {
        Pipeline {
            demux: config.build(),
            workers: Vec::new(),
            routed: Vec::new(),
            seq: 0,
            commands: 0,
            events: 0,
            in_flight: VecDeque::new(),
            marks: VecDeque::new(),
        }
    }

    fn take(&mut self, item: FollowItem) {
        match item {
            FollowItem::Read(ReadItem::Event(ev)) => {
                let ts_ns = ev.ts_ns();
                let event = self.demux.push_owned(ev, &mut self.routed);
                self.route();
                self.marks
                    .push_back((self.seq, Mark::Event { ts_ns, event }));
                self.events += 1;
            }
            FollowItem::Read(ReadItem::Damaged(d)) => {
                self.marks.push_back((self.seq, Mark::Damaged(d)))
            }
            FollowItem::Quiet { now_ns } => {
                self.demux.advance(now_ns, &mut self.routed);
                self.route();
                self.marks.push_back((self.seq, Mark::Quiet { now_ns }));
            }
        }
    }

    fn route(&mut self) {
        let n = self.workers.len() as u64;
        for r in self.routed.drain(..) {
            let w = (r.shard % n) as usize;
            if let Some(link) = self.workers.get_mut(w) {
                link.batch.push((self.seq, r));
            }
            self.seq += 1;
            self.commands += 1;
        }
    }

    fn due(&self) -> bool {
        self.commands >= FLUSH_COMMANDS || self.events >= FLUSH_EVENTS
    }

    /// Send every worker its batch, and hand on the oldest flush's records when enough
    /// are in flight.
    fn flush<E>(&mut self, step: &mut dyn FnMut(Step<O>) -> Result<(), E>) -> Result<(), E> {
        for link in &mut self.workers {
            // A worker that is gone has panicked: the scope reports it.
            let _ = link.to.send(std::mem::take(&mut link.batch));
        }
        self.in_flight.push_back(self.seq);
        self.commands = 0;
        self.events = 0;
        while self.in_flight.len() > FLUSHES_IN_FLIGHT {
            self.collect(step)?;
        }
        Ok(())
    }

    /// The oldest flush's records, merged by sequence number, with the marks between.
    fn collect<E>(&mut self, step: &mut dyn FnMut(Step<O>) -> Result<(), E>) -> Result<(), E> {
        let Some(end) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let mut records = Vec::new();
        for link in &self.workers {
            if let Ok(reply) = link.from.recv() {
                records.extend(reply);
            }
        }
        // Stable: one connection's records keep their order (one sequence number is
        // one worker's).
        records.sort_by_key(|(seq, _)| *seq);
        for (seq, record) in records {
            self.marks_before(seq, step)?;
            step(Step::Record(record))?;
        }
        self.marks_before(end, step)
    }

    /// Hand on the marks that come before command `seq`.
    fn marks_before<E>(
        &mut self,
        seq: u64,
        step: &mut dyn FnMut(Step<O>) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.marks.front().is_some_and(|(at, _)| *at <= seq) {
            if let Some((_, mark)) = self.marks.pop_front() {
                step(match mark {
                    Mark::Event { ts_ns, event } => Step::Event { ts_ns, event },
                    Mark::Quiet { now_ns } => Step::Quiet { now_ns },
                    Mark::Damaged(d) => Step::Damaged(d),
                })?;
            }
        }
        Ok(())
    }

    fn collect_all<E>(&mut self, step: &mut dyn FnMut(Step<O>) -> Result<(), E>) -> Result<(), E> {
        while !self.in_flight.is_empty() {
            self.collect(step)?;
        }
        Ok(())
    }

    fn finish<E>(
        mut self,
        step: &mut dyn FnMut(Step<O>) -> Result<(), E>,
    ) -> Result<StreamStats, E> {
        self.demux.finish(&mut self.routed);
        self.route();
        self.flush(step)?;
        self.collect_all(step)?;
        Ok(self.demux.stats().clone())
    }
}

#[cfg(test)]
mod tests;

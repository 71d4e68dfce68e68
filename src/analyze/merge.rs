//! Captures of several hosts merged into one, which every analysis reads as it reads any
//! capture. Each host's events are put on the reference clock (the first host's, by the
//! offsets [`super::clock_offsets`] estimates) and their ids are moved apart, then the
//! hosts' streams are merged in time order, one event of each stream in memory at a
//! time and a window of merged events behind them.
//!
//! **Hosts kept apart.** Pids, thread ids and interface indexes of host *h* get
//! `h × HOST_ID_STRIDE` added (Linux pids stay below 2^22), TLS connection numbers
//! `h × 2^48`; the merged header lists the hosts with those bases
//! ([`crate::capture::HostInfo`]). Host 0 keeps its ids as they were.
//!
//! **Segments seen on both ends are kept once: the sender's egress copy.** Its time is
//! the sender's, on the same clock as the sender's own syscalls. A receiver's ingress
//! copy that matches ([`SegmentKey`]) an egress copy of another host within the window is
//! dropped, whichever came first; one without a match (the sender was not recorded,
//! or lost it) is kept. Each egress copy pairs with one ingress copy, so a
//! retransmission seen on both ends stays two segments. Segments that TSO/GRO cut
//! differently on the two ends do not match and stay twice; TCP reassembly drops the
//! repeated bytes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;

use super::clock_offsets::SegmentKey;
use crate::capture::latency::{MAX_DATA_DIR_LEN, MAX_HISTOGRAMS};
use crate::capture::{
    CaptureMode, Damage, Direction, Event, Header, HostInfo, InterfaceInfo, LatencyHistogram,
    ProcessInfo, ReadItem, RecordConfig, HOST_CONN_ID_STRIDE, HOST_ID_STRIDE,
};

/// Hosts a merged capture can hold: the ids' room (2^32 / 2^22).
pub const MAX_HOSTS: usize = (u32::MAX / HOST_ID_STRIDE) as usize + 1;

/// Merged events held for pairing and ordering, at most: by count and by bytes. Past
/// either, the oldest go out early (their pairs, if any come later, are kept twice).
const MAX_HELD_EVENTS: usize = 1 << 20;
const MAX_HELD_BYTES: usize = 256 << 20;
/// Copies of one segment tracked at once; more (a crafted capture) are not paired.
const MAX_COPIES_PER_SEGMENT: usize = 64;

/// An id a host's capture holds that cannot be moved into its room.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RemapError {
    #[error("{what} {value} is beyond what Linux gives ({limit}): not a recorded capture")]
    OutOfRange {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{0} hosts: a merged capture holds at most {MAX_HOSTS}")]
    TooManyHosts(usize),
}

/// How one host's events are put into the merged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPlan {
    /// Added to each event time (saturating).
    pub shift_ns: i64,
    pub id_base: u32,
    pub conn_id_base: u64,
}

impl HostPlan {
    /// Host `index` (0 for the reference), its times shifted by `shift_ns`.
    pub fn new(index: usize, shift_ns: i64) -> Result<HostPlan, RemapError> {
        let id_base = u32::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(HOST_ID_STRIDE))
            .ok_or(RemapError::TooManyHosts(index + 1))?;
        Ok(HostPlan {
            shift_ns,
            id_base,
            conn_id_base: u64::from(id_base / HOST_ID_STRIDE) * HOST_CONN_ID_STRIDE,
        })
    }

    pub fn time(&self, ts_ns: u64) -> u64 {
        let t = i128::from(ts_ns) + i128::from(self.shift_ns);
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }

    /// A pid, thread id or interface index of this host, in the merged file.
    pub fn id(&self, what: &'static str, value: u32) -> Result<u32, RemapError> {
        if value >= HOST_ID_STRIDE {
            return Err(RemapError::OutOfRange {
                what,
                value: value.into(),
                limit: HOST_ID_STRIDE.into(),
            });
        }
        Ok(self.id_base + value)
    }

    fn conn_id(&self, value: u64) -> Result<u64, RemapError> {
        if value >= HOST_CONN_ID_STRIDE {
            return Err(RemapError::OutOfRange {
                what: "TLS connection number",
                value,
                limit: HOST_CONN_ID_STRIDE,
            });
        }
        Ok(self.conn_id_base + value)
    }

    /// The event as the merged file holds it: times shifted, ids moved.
    pub fn event(&self, mut event: Event) -> Result<Event, RemapError> {
        match &mut event {
            Event::Packet(p) => {
                p.ts_ns = self.time(p.ts_ns);
                p.ifindex = self.id("interface index", p.ifindex)?;
            }
            Event::Syscall(s) => {
                s.enter_ns = self.time(s.enter_ns);
                s.exit_ns = self.time(s.exit_ns);
                s.pid = self.id("pid", s.pid)?;
                s.tid = self.id("thread id", s.tid)?;
            }
            Event::Loss(l) => l.ts_ns = self.time(l.ts_ns),
            Event::Tls(t) => {
                t.ts_ns = self.time(t.ts_ns);
                t.pid = self.id("pid", t.pid)?;
                t.tid = self.id("thread id", t.tid)?;
                t.conn_id = self.conn_id(t.conn_id)?;
            }
            Event::Process(p) => {
                p.ts_ns = self.time(p.ts_ns);
                p.pid = self.id("pid", p.pid)?;
            }
            Event::Api(a) => a.ts_ns = self.time(a.ts_ns),
        }
        Ok(event)
    }
}

/// The hosts' names, unique: each header's host name (`host<N>` when it has none), with
/// `#2`, `#3`… on a name that came before.
pub fn unique_names(hostnames: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(hostnames.len());
    for (i, name) in hostnames.iter().enumerate() {
        let base = if name.is_empty() {
            format!("host{}", i + 1)
        } else {
            name.to_string()
        };
        let mut candidate = base.clone();
        let mut n = 1;
        while names.contains(&candidate) {
            n += 1;
            candidate = format!("{base}#{n}");
        }
        names.push(candidate);
    }
    names
}

/// The merged file's header: the hosts' headers (in host order, with their `hosts`
/// entries) put together, ids moved as their plans say, times on the reference clock
/// (the merged clock offset is `clock_offset_ns`).
/// The latency histograms of every host's capture, each data dir named `host:dir`, so
/// that no host's are mixed with another's; at most as many, with names as long, as a
/// reader accepts (more only come from crafted inputs).
pub fn merged_latency(per_host: &[&[LatencyHistogram]], names: &[String]) -> Vec<LatencyHistogram> {
    per_host
        .iter()
        .zip(names)
        .flat_map(|(histograms, name)| {
            histograms.iter().map(move |h| LatencyHistogram {
                data_dir: format!("{name}:{}", h.data_dir),
                ..h.clone()
            })
        })
        // A name made too long by its host would make the index unreadable.
        .filter(|h| h.data_dir.len() <= MAX_DATA_DIR_LEN)
        .take(MAX_HISTOGRAMS)
        .collect()
}

pub fn merged_header(
    headers: &[&Header],
    hosts: Vec<HostInfo>,
    clock_offset_ns: i64,
) -> Result<Header, RemapError> {
    let mut config = RecordConfig {
        redact_secrets: true,
        ..RecordConfig::default()
    };
    let mut processes = Vec::new();
    let mut interfaces = Vec::new();
    let mut buffers: Vec<&str> = Vec::new();
    let mut kernels: Vec<&str> = Vec::new();
    let mut data_dirs = Vec::new();
    let mut started_wall_ns = u64::MAX;
    for (header, host) in headers.iter().zip(&hosts) {
        let plan = HostPlan {
            shift_ns: 0,
            id_base: host.id_base,
            conn_id_base: host.conn_id_base,
        };
        let c = &header.config;
        config.ports.extend(&c.ports);
        for name in &c.interfaces {
            config.interfaces.push(format!("{name}@{}", host.name));
        }
        for pid in &c.pids {
            config.pids.push(plan.id("pid", *pid)?);
        }
        config.snaplen = config.snaplen.max(c.snaplen);
        config.file_data_limit = config.file_data_limit.max(c.file_data_limit);
        config.socket_payload |= c.socket_payload;
        config.redact_secrets &= c.redact_secrets;
        data_dirs.push(c.data_dir.clone());
        if !buffers.contains(&c.buffer.as_str()) {
            buffers.push(&c.buffer);
        }
        if !kernels.contains(&header.kernel_release.as_str()) {
            kernels.push(&header.kernel_release);
        }
        for p in &header.processes {
            processes.push(ProcessInfo {
                pid: plan.id("pid", p.pid)?,
                ..p.clone()
            });
        }
        for i in &header.interfaces {
            interfaces.push(InterfaceInfo {
                ifindex: plan.id("interface index", i.ifindex)?,
                name: format!("{}@{}", i.name, host.name),
            });
        }
        let started = i128::from(header.started_wall_ns) - i128::from(host.offset_ns);
        started_wall_ns = started_wall_ns.min(u64::try_from(started.max(0)).unwrap_or(u64::MAX));
    }
    config.ports.sort_unstable();
    config.ports.dedup();
    config.buffer = buffers.join(",");
    // One data dir only when every host used the same.
    config.data_dir = match data_dirs.split_first() {
        Some((first, rest)) if rest.iter().all(|d| d == first) => first.clone(),
        _ => None,
    };
    Ok(Header {
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        kernel_release: kernels.join(","),
        clock_offset_ns,
        started_wall_ns: if started_wall_ns == u64::MAX {
            0
        } else {
            started_wall_ns
        },
        config,
        processes,
        interfaces,
        hosts,
        // API mode's when every host's was: the endpoints of all of them.
        mode: if headers.iter().all(|h| h.mode.is_api()) {
            CaptureMode::Api {
                endpoints: headers
                    .iter()
                    .flat_map(|h| match &h.mode {
                        CaptureMode::Api { endpoints } => endpoints.clone(),
                        CaptureMode::Ebpf => Vec::new(),
                    })
                    .collect(),
            }
        } else {
            CaptureMode::Ebpf
        },
    })
}

/// What the merge did with one host's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    pub events_read: u64,
    pub events_written: u64,
    /// Its ingress copies of segments another host's egress copy stands for.
    pub duplicates_dropped: u64,
}

/// What comes out of a [`Merger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergedItem {
    Event(Event),
    /// A stretch of host `host`'s capture that could not be read.
    Damaged {
        host: usize,
        damage: Damage,
    },
}

/// One host's stream, with its next event already moved to the merged file's terms.
struct Input<I> {
    events: I,
    plan: HostPlan,
    head: Option<Event>,
    done: bool,
}

/// A merged event waiting in the window.
struct Held {
    event: Event,
    host: usize,
    /// A packet's key, to forget its copy when it leaves.
    key: Option<SegmentKey>,
}

/// A copy of a segment in the window.
#[derive(Debug, Clone, Copy)]
struct Copy {
    at: (u64, u64),
    host: usize,
    direction: Direction,
    /// An egress copy that an ingress copy was dropped for.
    paired: bool,
}

/// The hosts' event streams merged in time order, ingress copies of segments another
/// host sent dropped. An iterator of [`MergedItem`]s, or the first id that cannot be
/// moved.
pub struct Merger<I> {
    inputs: Vec<Input<I>>,
    window_ns: u64,
    /// Keyed by merged time, then arrival, so equal times keep their order.
    window: BTreeMap<(u64, u64), Held>,
    copies: HashMap<SegmentKey, Vec<Copy>>,
    held_bytes: usize,
    arrivals: u64,
    ready: VecDeque<MergedItem>,
    stats: Vec<HostStats>,
    /// Events that left the window early, because it was full.
    pub overflowed: u64,
}

impl<I: Iterator<Item = ReadItem>> Merger<I> {
    /// `streams[h]` is host h's events in file order, `plans[h]` how they are moved.
    /// Copies of one segment pair up when they are at most `window_ns` apart once
    /// merged: the delay between the hosts plus the clocks' uncertainty.
    pub fn new(streams: Vec<I>, plans: &[HostPlan], window_ns: u64) -> Merger<I> {
        let stats = vec![HostStats::default(); streams.len()];
        Merger {
            inputs: streams
                .into_iter()
                .zip(plans)
                .map(|(events, plan)| Input {
                    events,
                    plan: *plan,
                    head: None,
                    done: false,
                })
                .collect(),
            window_ns,
            window: BTreeMap::new(),
            copies: HashMap::new(),
            held_bytes: 0,
            arrivals: 0,
            ready: VecDeque::new(),
            stats,
            overflowed: 0,
        }
    }

    pub fn stats(&self) -> &[HostStats] {
        &self.stats
    }

    /// Read host `h` up to its next event (damage goes out as it comes).
    fn fill(&mut self, h: usize) -> Result<(), RemapError> {
        let input = &mut self.inputs[h];
        while input.head.is_none() && !input.done {
            match input.events.next() {
                None => input.done = true,
                Some(ReadItem::Damaged(damage)) => self
                    .ready
                    .push_back(MergedItem::Damaged { host: h, damage }),
                Some(ReadItem::Event(e)) => {
                    self.stats[h].events_read += 1;
                    input.head = Some(input.plan.event(e)?);
                }
            }
        }
        Ok(())
    }

    /// Take the earliest head into the window; false when every stream has ended.
    fn advance(&mut self) -> Result<bool, RemapError> {
        for h in 0..self.inputs.len() {
            self.fill(h)?;
        }
        let earliest = (0..self.inputs.len())
            .filter_map(|h| self.inputs[h].head.as_ref().map(|e| (e.ts_ns(), h)))
            .min();
        let Some((_, h)) = earliest else {
            return Ok(false);
        };
        if let Some(event) = self.inputs[h].head.take() {
            self.hold(h, event);
        }
        self.fill(h)?;
        Ok(true)
    }

    fn hold(&mut self, host: usize, event: Event) {
        let at = (event.ts_ns(), self.arrivals);
        self.arrivals += 1;
        let mut key = None;
        if let Event::Packet(p) = &event {
            let k = SegmentKey::of(p);
            let copies = self.copies.entry(k).or_default();
            let mut paired = false;
            match p.direction {
                Direction::Ingress => {
                    let sent = copies
                        .iter_mut()
                        .find(|c| c.direction == Direction::Egress && c.host != host && !c.paired);
                    if let Some(sent) = sent {
                        sent.paired = true;
                        self.stats[host].duplicates_dropped += 1;
                        return;
                    }
                }
                Direction::Egress => {
                    let received = copies.iter().position(|c| {
                        c.direction == Direction::Ingress && c.host != host && !c.paired
                    });
                    if let Some(i) = received {
                        let dropped = copies.swap_remove(i);
                        if let Some(held) = self.window.remove(&dropped.at) {
                            self.held_bytes = self.held_bytes.saturating_sub(size_of(&held.event));
                        }
                        self.stats[dropped.host].duplicates_dropped += 1;
                        paired = true;
                    }
                }
            }
            if copies.len() < MAX_COPIES_PER_SEGMENT {
                copies.push(Copy {
                    at,
                    host,
                    direction: p.direction,
                    paired,
                });
                key = Some(k);
            }
        }
        self.held_bytes += size_of(&event);
        self.window.insert(at, Held { event, host, key });
    }

    /// Let out what is older than the window behind every stream's next event (all,
    /// once every stream has ended), and the oldest beyond the bounds.
    fn release(&mut self, all: bool) {
        let horizon = self
            .inputs
            .iter()
            .filter_map(|i| i.head.as_ref().map(Event::ts_ns))
            .min()
            .map(|t| t.saturating_sub(self.window_ns));
        loop {
            let over = self.window.len() > MAX_HELD_EVENTS || self.held_bytes > MAX_HELD_BYTES;
            let Some(entry) = self.window.first_entry() else {
                break;
            };
            let due = all || horizon.is_none_or(|h| entry.key().0 < h);
            if !due && !over {
                break;
            }
            if over && !due {
                self.overflowed += 1;
            }
            let (at, held) = entry.remove_entry();
            self.held_bytes = self.held_bytes.saturating_sub(size_of(&held.event));
            if let Some(key) = held.key {
                if let Some(copies) = self.copies.get_mut(&key) {
                    copies.retain(|c| c.at != at);
                    if copies.is_empty() {
                        self.copies.remove(&key);
                    }
                }
            }
            self.stats[held.host].events_written += 1;
            self.ready.push_back(MergedItem::Event(held.event));
        }
    }
}

/// About what an event costs held in memory.
fn size_of(event: &Event) -> usize {
    let bytes = match event {
        Event::Packet(p) => p.payload.len(),
        Event::Syscall(s) => s.data.len() + s.file.path.len(),
        Event::Tls(t) => t.data.len(),
        Event::Api(a) => match &a.observed {
            crate::capture::api::ApiObservation::Change(c) => c.key.len(),
            _ => 1024,
        },
        Event::Loss(_) | Event::Process(_) => 0,
    };
    bytes + 160
}

impl<I: Iterator<Item = ReadItem>> Iterator for Merger<I> {
    type Item = Result<MergedItem, RemapError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            match self.advance() {
                Err(e) => {
                    // Nothing more after an error.
                    for input in &mut self.inputs {
                        input.done = true;
                        input.head = None;
                    }
                    self.window.clear();
                    return Some(Err(e));
                }
                Ok(more) => self.release(!more),
            }
            if self.ready.is_empty()
                && self.window.is_empty()
                && self.inputs.iter().all(|i| i.done && i.head.is_none())
            {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Packet, ProcessChange, ProcessEvent, TcpFlags};
    use std::net::SocketAddr;

    /// Each host keeps its own histograms, named by host.
    #[test]
    fn latency_is_kept_per_host() {
        let h = |dir: &str, n| LatencyHistogram {
            data_dir: dir.into(),
            kind: crate::capture::LatencyKind::WalSync,
            buckets: vec![n; 3],
            sum_ns: n,
        };
        let a = [h("/var/lib/etcd", 1)];
        let b = [h("/var/lib/etcd", 2), h("/data", 3)];
        let merged = merged_latency(&[&a, &b], &["a".into(), "b".into()]);
        let names: Vec<_> = merged.iter().map(|h| h.data_dir.as_str()).collect();
        assert_eq!(names, ["a:/var/lib/etcd", "b:/var/lib/etcd", "b:/data"]);
        assert_eq!(merged[1].buckets, [2, 2, 2]);
    }

    fn packet(ts_ns: u64, direction: Direction, from: u8, to: u8, seq: u32) -> Event {
        Event::Packet(Packet {
            ts_ns,
            ifindex: 2,
            direction,
            src: SocketAddr::from(([10, 0, 0, from], 2380)),
            dst: SocketAddr::from(([10, 0, 0, to], 2380)),
            seq,
            ack: 1,
            flags: TcpFlags(TcpFlags::ACK),
            window: 100,
            payload_len: 3,
            payload: b"abc"[..].into(),
        })
    }

    fn process(ts_ns: u64, pid: u32) -> Event {
        Event::Process(ProcessEvent {
            ts_ns,
            pid,
            change: ProcessChange::Exit {
                code: Some(0),
                signal: None,
            },
        })
    }

    fn merge(
        hosts: Vec<Vec<Event>>,
        shifts: &[i64],
        window_ns: u64,
    ) -> (Vec<Event>, Vec<HostStats>) {
        let plans: Vec<HostPlan> = shifts
            .iter()
            .enumerate()
            .map(|(h, s)| HostPlan::new(h, *s).unwrap())
            .collect();
        let streams: Vec<_> = hosts
            .into_iter()
            .map(|events| events.into_iter().map(ReadItem::Event))
            .collect();
        let mut merger = Merger::new(streams, &plans, window_ns);
        let mut out = Vec::new();
        for item in merger.by_ref() {
            match item.unwrap() {
                MergedItem::Event(e) => out.push(e),
                MergedItem::Damaged { .. } => panic!("no damage here"),
            }
        }
        (out, merger.stats().to_vec())
    }

    #[test]
    fn the_senders_copy_is_kept_whichever_comes_first() {
        // Host 1's clock is 1 s behind: shifted +1 s. Segment 1 goes 0→1 (egress on 0
        // first), segment 2 goes 1→0, its ingress copy merged before the egress copy
        // (the clocks' uncertainty larger than the delay).
        const T: u64 = 5_000_000_000;
        let a = vec![
            packet(T + 100, Direction::Egress, 1, 2, 1),
            packet(T + 290, Direction::Ingress, 2, 1, 2),
            process(T + 400, 7),
        ];
        let b = vec![
            packet(T + 150 - 1_000_000_000, Direction::Ingress, 1, 2, 1),
            packet(T + 300 - 1_000_000_000, Direction::Egress, 2, 1, 2),
        ];
        let (out, stats) = merge(vec![a, b], &[0, 1_000_000_000], 1_000);
        let kept: Vec<(u64, Direction, u32)> = out
            .iter()
            .filter_map(|e| match e {
                Event::Packet(p) => Some((p.ts_ns, p.direction, p.ifindex)),
                _ => None,
            })
            .collect();
        assert_eq!(
            kept,
            vec![
                (T + 100, Direction::Egress, 2),
                (T + 300, Direction::Egress, 2 + HOST_ID_STRIDE)
            ]
        );
        assert_eq!(stats[0].duplicates_dropped, 1);
        assert_eq!(stats[1].duplicates_dropped, 1);
        assert_eq!(stats[0].events_written + stats[1].events_written, 3);
        // The process event of host 0 keeps its pid, in time order.
        assert_eq!(out.last(), Some(&process(T + 400, 7)));
    }

    #[test]
    fn a_retransmission_stays_and_unmatched_copies_stay() {
        let a = vec![
            packet(100, Direction::Egress, 1, 2, 1),
            packet(5_000, Direction::Egress, 1, 2, 1), // retransmitted
        ];
        let b = vec![
            packet(120, Direction::Ingress, 1, 2, 1),
            packet(5_020, Direction::Ingress, 1, 2, 1),
            packet(6_000, Direction::Ingress, 3, 2, 9), // from an unrecorded host
        ];
        let (out, stats) = merge(vec![a, b], &[0, 0], 1_000);
        let times: Vec<u64> = out.iter().map(Event::ts_ns).collect();
        assert_eq!(times, vec![100, 5_000, 6_000]);
        assert_eq!(stats[1].duplicates_dropped, 2);
        assert_eq!(stats[1].events_written, 1);
    }

    #[test]
    fn copies_further_apart_than_the_window_both_stay() {
        let a = vec![packet(100, Direction::Egress, 1, 2, 1)];
        let b = vec![packet(100 + 2_000, Direction::Ingress, 1, 2, 1)];
        let (out, stats) = merge(vec![a, b], &[0, 0], 1_000);
        assert_eq!(out.len(), 2);
        assert_eq!(stats[1].duplicates_dropped, 0);
    }

    #[test]
    fn one_hosts_own_copies_never_pair() {
        // A host that sees its own segment leave and arrive (a bridge on one host).
        let a = vec![
            packet(100, Direction::Egress, 1, 2, 1),
            packet(110, Direction::Ingress, 1, 2, 1),
        ];
        let (out, _) = merge(vec![a, vec![]], &[0, 0], 1_000);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn ids_move_apart_and_times_shift() {
        let plan = HostPlan::new(2, -50).unwrap();
        assert_eq!(plan.id_base, 2 * HOST_ID_STRIDE);
        assert_eq!(plan.conn_id_base, 2 * HOST_CONN_ID_STRIDE);
        assert_eq!(plan.time(40), 0);
        assert_eq!(plan.time(100), 50);
        assert_eq!(HostPlan::new(0, i64::MAX).unwrap().time(u64::MAX), u64::MAX);
        assert_eq!(
            plan.event(process(100, 42)).unwrap(),
            process(50, 2 * HOST_ID_STRIDE + 42)
        );
        assert!(matches!(
            plan.event(process(1, HOST_ID_STRIDE)),
            Err(RemapError::OutOfRange { what: "pid", .. })
        ));
        assert!(HostPlan::new(MAX_HOSTS - 1, 0).is_ok());
        assert_eq!(
            HostPlan::new(MAX_HOSTS, 0),
            Err(RemapError::TooManyHosts(MAX_HOSTS + 1))
        );
    }

    #[test]
    fn names_are_made_unique() {
        assert_eq!(
            unique_names(&["a", "b", "a", "", "a"]),
            vec!["a", "b", "a#2", "host4", "a#3"]
        );
    }

    /// Events far out of order, and more than the window holds, all come out once.
    #[test]
    fn every_event_comes_out_once_in_rough_order() {
        let mut rng = crate::test_rng::XorShift(77);
        let hosts: Vec<Vec<Event>> = (0..3)
            .map(|h| {
                (0..2_000u32)
                    .map(|i| process(u64::from(i) * 10 + rng.below(500), h * 10_000 + i))
                    .collect()
            })
            .collect();
        let (out, stats) = merge(hosts, &[0, 5, -5], 1_000);
        assert_eq!(out.len(), 6_000);
        assert!(stats
            .iter()
            .all(|s| s.events_read == 2_000 && s.events_written == 2_000));
        let mut pids: Vec<u32> = out
            .iter()
            .map(|e| match e {
                Event::Process(p) => p.pid,
                _ => unreachable!(),
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 6_000);
        // Within the window plus the inputs' own disorder.
        for w in out.windows(2) {
            assert!(w[1].ts_ns() + 2_000 >= w[0].ts_ns(), "{w:?}");
        }
    }
}

//! Consensus as an incident timeline: from the raft messages between members
//! (`analyze::peers`), who led each term and how the term began (an election, a pre-vote,
//! a transfer), every vote and why it was refused where that can be known, how long the
//! cluster had no leader, heartbeat gaps that approach the election timeout, replication
//! to each follower (append → ack latency, lag, rejections, snapshots), commit progress,
//! and what the members' WAL syncs did around each election.
//!
//! Raft's own invariants are checked, not assumed: two members leading one term, or a
//! leader of an old term still sending after a newer one took over, are reported as
//! such. Members are named by their ids, mapped to their peer addresses (from the stream
//! requests' `X-Raft-To`) and processes (the socket calls behind each connection, and
//! the member ids the caller learned from the metadata records heading WAL files).
//!
//! Peer records come out in time order per connection only (a stream joined mid-way
//! holds its first messages back), so everything is put in time order first, over a
//! bounded window (`analyze::order`). State is per member and per leader/follower pair;
//! what is reported is bounded by [`MAX_EVENTS`].

mod describe;
mod follower;
#[cfg(test)]
mod tests;
mod timeline;

use std::collections::HashMap;

use serde::Serialize;

use crate::analyze::member::{Member, Members};
use crate::analyze::order::TimeOrder;
use crate::analyze::peers::{PeerDecoder, PeerRecord, RequestKind};
use crate::capture::{Event, FileKind, ProcessEvent};
use crate::decode::rafthttp::PeerEvent;
use crate::decode::raftpb::MessageType;

pub use follower::{CommitSummary, FollowerSummary};
use timeline::Consensus;

/// etcd's default election timeout (`--election-timeout`, 1000 ms).
pub const DEFAULT_ELECTION_TIMEOUT_NS: u64 = 1_000_000_000;
/// Events reported at most; beyond it they are counted, not kept.
pub const MAX_EVENTS: usize = 100_000;
/// How far behind the newest record one may come out (a mid-stream start holds up to
/// eight ~1.7 s link heartbeats' worth back).
const ORDER_WINDOW_NS: u64 = 30_000_000_000;
const ORDER_MAX_HELD: usize = 1_000_000;

/// What the analysis is told about the cluster.
#[derive(Debug, Clone, Copy)]
pub struct RaftOptions {
    /// The members' election timeout: heartbeat gaps from half of it are reported.
    pub election_timeout_ns: u64,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            election_timeout_ns: DEFAULT_ELECTION_TIMEOUT_NS,
        }
    }
}

/// How a term's leadership began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TermStart {
    /// A candidate's election timeout ran out and it asked for votes.
    Election,
    /// As an election, after a pre-vote round (`--pre-vote`).
    PreVote,
    /// The old leader handed over (MsgTimeoutNow): `move-leader`, or a leader stepping
    /// down on shutdown.
    Transfer,
    /// The leader was already leading when the capture began.
    BeforeRecording,
    /// The campaign that began it was not seen.
    NotSeen,
}

impl TermStart {
    pub fn describe(self) -> &'static str {
        match self {
            TermStart::Election => "after an election",
            TermStart::PreVote => "after a pre-vote and an election",
            TermStart::Transfer => "after a leadership transfer",
            TermStart::BeforeRecording => "already leading when recording began",
            TermStart::NotSeen => "its campaign was not seen",
        }
    }
}

/// One answer to a (pre-)vote request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    pub ts_ns: u64,
    pub pre_vote: bool,
    pub candidate: Member,
    pub voter: Member,
    pub granted: bool,
    /// Why it was refused, where the wire shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one member's WAL syncs did in the time around an election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskAround {
    pub member: Member,
    pub wal_fsyncs: u64,
    pub total_fsync_ns: u64,
    pub slowest_fsync_ns: u64,
    /// When the slowest sync started.
    pub slowest_start_ns: u64,
}

/// One election: from the first sign of a campaign for `term` to its leader's first
/// message (or to the next term's campaign, when nobody won).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Election {
    pub term: u64,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub duration_ns: Option<u64>,
    pub began: TermStart,
    pub candidates: Vec<Member>,
    pub winner: Option<Member>,
    /// The last leader before it, its term, and how long from its last message to the
    /// new leader's first: the time the cluster went without a leader, as seen.
    pub previous_leader: Option<Member>,
    pub previous_term: Option<u64>,
    pub leaderless_ns: Option<u64>,
    pub votes: Vec<Vote>,
    /// Members asked for a vote that did not answer (down, paused, or ignoring the
    /// request while they still hear from a leader).
    pub unanswered: Vec<Member>,
    /// WAL syncs from two election timeouts before the start to the end.
    pub disks: Vec<DiskAround>,
}

/// One thing of the consensus timeline, as JSON: `kind` says which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RaftEvent {
    /// A member id, first seen, and what it maps to.
    Member {
        ts_ns: u64,
        member: Member,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// A term's leader, from its first leader message (MsgApp, MsgHeartbeat, MsgSnap,
    /// MsgTimeoutNow) of that term.
    Leader {
        ts_ns: u64,
        term: u64,
        member: Member,
        began: TermStart,
    },
    Election(Election),
    /// Two members sent leader messages in one term: raft forbids it, so a bug or a
    /// decode error.
    TwoLeaders {
        ts_ns: u64,
        term: u64,
        members: [Member; 2],
    },
    /// A leader of an old term still sending after a newer leader's first message.
    StaleLeader {
        ts_ns: u64,
        member: Member,
        term: u64,
        newer_term: u64,
        newer_leader: Member,
    },
    /// A leader's heartbeats to a follower paused for `gap_ns`, ending at `ts_ns`.
    HeartbeatGap {
        ts_ns: u64,
        term: u64,
        leader: Member,
        follower: Member,
        gap_ns: u64,
    },
    /// A follower refused an append: its log did not match at `index`.
    AppendRejected {
        ts_ns: u64,
        term: u64,
        leader: Member,
        follower: Member,
        index: u64,
        hint: u64,
    },
    /// A snapshot sent to a member that fell too far behind.
    Snapshot {
        ts_ns: u64,
        end_ns: u64,
        duration_ns: u64,
        from: Member,
        to: Member,
        term: u64,
        index: u64,
        bytes: u64,
        whole: bool,
    },
    /// A peer request refused: 404 (unknown member), 410 (removed), 412 (cluster id or
    /// version mismatch), or any other error status.
    PeerRefused {
        ts_ns: u64,
        status: u16,
        request: &'static str,
        client: String,
        server: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<Member>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Member>,
    },
    /// An etcd process started or ended.
    Process {
        ts_ns: u64,
        pid: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        member: Option<Member>,
        what: String,
    },
}

impl RaftEvent {
    pub fn ts_ns(&self) -> u64 {
        match self {
            RaftEvent::Election(e) => e.start_ns,
            RaftEvent::Member { ts_ns, .. }
            | RaftEvent::Leader { ts_ns, .. }
            | RaftEvent::TwoLeaders { ts_ns, .. }
            | RaftEvent::StaleLeader { ts_ns, .. }
            | RaftEvent::HeartbeatGap { ts_ns, .. }
            | RaftEvent::AppendRejected { ts_ns, .. }
            | RaftEvent::Snapshot { ts_ns, .. }
            | RaftEvent::PeerRefused { ts_ns, .. }
            | RaftEvent::Process { ts_ns, .. } => *ts_ns,
        }
    }
}

/// Everything the analysis found.
#[derive(Debug, Default)]
pub struct RaftReport {
    /// In time order.
    pub events: Vec<RaftEvent>,
    /// Events past [`MAX_EVENTS`], counted only.
    pub events_dropped: u64,
    pub followers: Vec<FollowerSummary>,
    pub commits: Vec<CommitSummary>,
    /// Raft messages seen (link heartbeats excluded).
    pub messages: u64,
    /// Peer connections, and notes of what their decoder could not decode (whole or
    /// in part).
    pub connections: u64,
    pub notes: u64,
}

impl RaftReport {
    /// Each term's leader, in term order.
    pub fn leaders(&self) -> Vec<(u64, Member)> {
        let mut out: Vec<(u64, Member)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                RaftEvent::Leader { term, member, .. } => Some((*term, *member)),
                _ => None,
            })
            .collect();
        out.sort_by_key(|(term, _)| *term);
        out
    }
}

/// A raft message, compactly: what the timeline and the per-follower statistics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Msg {
    ts_ns: u64,
    kind: Option<MessageType>,
    from: u64,
    to: u64,
    term: u64,
    log_term: u64,
    index: u64,
    commit: u64,
    reject: bool,
    reject_hint: u64,
    entries: u64,
    last_index: Option<u64>,
    /// The term of the last entry carried.
    last_term: u64,
    /// Snapshot metadata index, for MsgSnap.
    snapshot_index: u64,
    /// Which connection carried it (for snapshots: the data that follows).
    conn: (std::net::SocketAddr, std::net::SocketAddr),
    /// The sender's socket: (its local port, its peer's port), to find its process.
    sender_socket: Option<(u16, u16)>,
}

/// What the analysis consumes, in time order.
#[derive(Debug, Clone)]
enum Item {
    Msg(Msg),
    /// A stream or pipeline request naming members, on a connection.
    Request {
        ts_ns: u64,
        kind: RequestKind,
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
        from: Option<u64>,
        to: Option<u64>,
    },
    /// A response with an error status.
    Refused {
        ts_ns: u64,
        status: u16,
        request: Option<RequestKind>,
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
    },
    SnapshotData {
        ts_ns: u64,
        conn: (std::net::SocketAddr, std::net::SocketAddr),
        bytes: u64,
        whole: bool,
    },
    WalSync {
        pid: u32,
        start_ns: u64,
        end_ns: u64,
    },
    Process(ProcessEvent),
}

impl Item {
    fn ts_ns(&self) -> u64 {
        match self {
            Item::Msg(m) => m.ts_ns,
            Item::Request { ts_ns, .. }
            | Item::Refused { ts_ns, .. }
            | Item::SnapshotData { ts_ns, .. } => *ts_ns,
            Item::WalSync { start_ns, .. } => *start_ns,
            Item::Process(p) => p.ts_ns,
        }
    }

    fn of_record(r: &PeerRecord) -> Option<Item> {
        Some(match &r.event {
            PeerEvent::Message {
                ts_ns, message: m, ..
            } => {
                if m.is_link_heartbeat() {
                    return None;
                }
                Item::Msg(Msg {
                    ts_ns: *ts_ns,
                    kind: m.kind(),
                    from: m.from,
                    to: m.to,
                    term: m.term,
                    log_term: m.log_term,
                    index: m.index,
                    commit: m.commit,
                    reject: m.reject,
                    reject_hint: m.reject_hint,
                    entries: m.entries.len() as u64,
                    last_index: m.last_index(),
                    last_term: m.entries.last().map_or(0, |e| e.term),
                    snapshot_index: m
                        .snapshot
                        .as_ref()
                        .and_then(|s| s.metadata.as_ref())
                        .map_or(0, |md| md.index),
                    conn: (r.client, r.server),
                    sender_socket: r.sender().map(|from| {
                        let to = if from == r.client { r.server } else { r.client };
                        (from.port(), to.port())
                    }),
                })
            }
            PeerEvent::Request { ts_ns, request } => Item::Request {
                ts_ns: *ts_ns,
                kind: request.kind,
                client: r.client,
                server: r.server,
                from: request.from.or(request.path_id),
                to: request.to,
            },
            PeerEvent::Response { ts_ns, response } if response.status >= 400 => Item::Refused {
                ts_ns: *ts_ns,
                status: response.status,
                request: response.request,
                client: r.client,
                server: r.server,
            },
            PeerEvent::SnapshotData {
                ts_ns,
                bytes,
                whole,
                ..
            } => Item::SnapshotData {
                ts_ns: *ts_ns,
                conn: (r.client, r.server),
                bytes: *bytes,
                whole: *whole,
            },
            _ => return None,
        })
    }
}

/// Capture events in, the consensus timeline out. Feed every event in file order, then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct RaftAnalyzer {
    peers: PeerDecoder,
    records: Vec<PeerRecord>,
    order: TimeOrder<Item>,
    ready: Vec<Item>,
    /// The process behind each socket: (local port, peer port) → pid.
    sockets: HashMap<(u16, u16), u32>,
    consensus: Consensus,
    notes: u64,
    now_ns: u64,
    /// Peer records seen (0: nothing holds the timeline back).
    peer_records: u64,
    /// How many of the consensus events [`take_new`](Self::take_new) handed out.
    handed_out: usize,
    ended: bool,
}

impl RaftAnalyzer {
    /// For a capture that recorded `ports` (its header's `config.ports`).
    pub fn new(recorded_ports: &[u16], options: RaftOptions) -> RaftAnalyzer {
        RaftAnalyzer {
            peers: PeerDecoder::for_recorded_ports(recorded_ports),
            records: Vec::new(),
            order: TimeOrder::new(ORDER_WINDOW_NS, ORDER_MAX_HELD),
            ready: Vec::new(),
            sockets: HashMap::new(),
            consensus: Consensus::new(options),
            notes: 0,
            now_ns: 0,
            peer_records: 0,
            handed_out: 0,
            ended: false,
        }
    }

    pub fn push(&mut self, event: &Event) {
        self.now_ns = self.now_ns.max(event.ts_ns());
        match event {
            Event::Syscall(s) => {
                if s.file.kind == FileKind::Socket {
                    self.sockets
                        .insert((s.file.local_port, s.file.peer_port), s.pid);
                } else if s.file.kind == FileKind::Wal && s.call.is_sync() {
                    self.order.push(
                        s.enter_ns,
                        Item::WalSync {
                            pid: s.pid,
                            start_ns: s.enter_ns,
                            end_ns: s.exit_ns,
                        },
                    );
                }
            }
            Event::Process(p) => self.order.push(p.ts_ns, Item::Process(p.clone())),
            _ => {}
        }
        self.peers.push(event, &mut self.records);
        self.take_records();
        self.order.release(self.now_ns, &mut self.ready);
        self.run_ready();
    }

    fn take_records(&mut self) {
        for r in self.records.drain(..) {
            self.peer_records += 1;
            self.notes += u64::from(matches!(r.event, PeerEvent::Note { .. }));
            if let Some(item) = Item::of_record(&r) {
                self.order.push(item.ts_ns(), item);
            }
        }
    }

    fn run_ready(&mut self) {
        for item in self.ready.drain(..) {
            self.consensus.push(item, &self.sockets);
        }
    }

    /// The events that became known since the last call, as they did (an election when
    /// it ended), for a view that shows them as they come. Process and member events
    /// are only in the final report.
    pub fn take_new(&mut self, out: &mut Vec<RaftEvent>) {
        let events = self.consensus.events();
        out.extend(events[self.handed_out.min(events.len())..].iter().cloned());
        self.handed_out = events.len();
    }

    /// Capture time up to which everything is known: no event [`take_new`] hands out
    /// later is older. None while no peer traffic was seen (nothing to wait for).
    pub fn known_until(&self) -> Option<u64> {
        (self.peer_records > 0).then(|| self.now_ns.saturating_sub(ORDER_WINDOW_NS))
    }

    /// The capture ended: what is still held is settled, so that [`take_new`] hands out
    /// the last events. [`finish`](Self::finish) does it too.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.peers.finish(&mut self.records);
        self.take_records();
        self.order.drain(&mut self.ready);
        self.run_ready();
        self.consensus.close_open();
    }

    /// Processes whose member id the caller's WAL decoding learned (from the metadata
    /// record at the head of each WAL file), so that the WAL is decoded once.
    pub fn learn_processes(&mut self, members: &Members) {
        self.consensus.learn_processes(members.known());
    }

    /// Peer connections seen so far.
    pub fn connections(&self) -> u64 {
        self.peers.stats().connections
    }

    pub fn finish(mut self) -> RaftReport {
        self.end();
        let mut report = self.consensus.finish();
        report.connections = self.peers.stats().connections;
        report.notes = self.notes;
        report
    }
}

//! The consensus state machine over time-ordered items: terms and their leaders,
//! campaigns and votes, transfers, stale and conflicting leaders, snapshots, refusals
//! on the peer port, and which process each member id is.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

use super::follower::Links;
use super::{
    DiskAround, Election, Item, Msg, RaftEvent, RaftOptions, RaftReport, TermStart, Vote,
    MAX_EVENTS,
};
use crate::analyze::member::Member;
use crate::analyze::peers::RequestKind;
use crate::capture::ProcessEvent;
use crate::decode::raftpb::MessageType;

/// WAL syncs kept for the disks around elections, at most.
const MAX_SYNCS: usize = 200_000;

type Conn = (SocketAddr, SocketAddr);

#[derive(Debug, Clone, Copy)]
struct TermLeader {
    member: u64,
    first_ns: u64,
    last_ns: u64,
}

#[derive(Debug)]
struct OpenElection {
    term: u64,
    start_ns: u64,
    began: TermStart,
    candidates: Vec<u64>,
    /// (candidate, voter, pre-vote) asked.
    asked: BTreeSet<(u64, u64, bool)>,
    votes: Vec<Vote>,
    /// Only pre-votes seen so far.
    pre_vote_only: bool,
}

#[derive(Debug, Default)]
struct MemberInfo {
    first_ns: u64,
    peer: Option<SocketAddr>,
    /// Each process seen being this member, with when first.
    pids: Vec<(u32, u64)>,
}

#[derive(Debug)]
pub(super) struct Consensus {
    options: RaftOptions,
    events: Vec<RaftEvent>,
    dropped: u64,
    messages: u64,
    leaders: BTreeMap<u64, TermLeader>,
    /// Terms whose conflict or staleness was already reported, per member.
    reported: BTreeSet<(u64, u64)>,
    open: BTreeMap<u64, OpenElection>,
    /// Elections closed so far.
    closed: u64,
    /// A MsgTimeoutNow to a member: the term it will campaign in, and when.
    transfers: HashMap<u64, (u64, u64)>,
    /// A candidate's latest campaign: term, and its log position (term, index) as it
    /// asked.
    campaigns: HashMap<(u64, bool), (u64, u64, u64)>,
    /// Votes granted: (voter, term) → candidate.
    granted: BTreeMap<(u64, u64), u64>,
    /// Each member's last log position (term, index), as its acks and its leading show.
    last_log: HashMap<u64, (u64, u64)>,
    members: BTreeMap<u64, MemberInfo>,
    conns: HashMap<Conn, (Option<u64>, Option<u64>)>,
    /// MsgSnap waiting for its database on a connection.
    snapshots: HashMap<Conn, Msg>,
    syncs: VecDeque<(u32, u64, u64)>,
    processes: Vec<ProcessEvent>,
    links: Links,
}

impl Consensus {
    pub(super) fn new(options: RaftOptions) -> Consensus {
        Consensus {
            options,
            events: Vec::new(),
            dropped: 0,
            messages: 0,
            leaders: BTreeMap::new(),
            reported: BTreeSet::new(),
            open: BTreeMap::new(),
            closed: 0,
            transfers: HashMap::new(),
            campaigns: HashMap::new(),
            granted: BTreeMap::new(),
            last_log: HashMap::new(),
            members: BTreeMap::new(),
            conns: HashMap::new(),
            snapshots: HashMap::new(),
            syncs: VecDeque::new(),
            processes: Vec::new(),
            links: Links::new(options.election_timeout_ns / 2),
        }
    }

    fn emit(&mut self, e: RaftEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(e);
        } else {
            self.dropped += 1;
        }
    }

    fn seen(&mut self, id: u64, ts_ns: u64) {
        if id != 0 {
            self.members.entry(id).or_insert_with(|| MemberInfo {
                first_ns: ts_ns,
                ..MemberInfo::default()
            });
        }
    }

    fn learn_pid(&mut self, id: u64, pid: Option<u32>, ts_ns: u64) {
        let (Some(pid), true) = (pid, id != 0) else {
            return;
        };
        self.seen(id, ts_ns);
        let info = self.members.entry(id).or_default();
        if !info.pids.iter().any(|(p, _)| *p == pid) {
            info.pids.push((pid, ts_ns));
        }
    }

    pub(super) fn push(&mut self, item: Item, sockets: &HashMap<(u16, u16), u32>) {
        match item {
            Item::Msg(m) => {
                let pid = m.sender_socket.and_then(|s| sockets.get(&s).copied());
                self.learn_pid(m.from, pid, m.ts_ns);
                self.message(m)
            }
            Item::Request {
                ts_ns,
                kind,
                client,
                server,
                from,
                to,
            } => {
                self.conns.insert((client, server), (from, to));
                if let Some(from) = from {
                    let pid = sockets.get(&(client.port(), server.port())).copied();
                    self.learn_pid(from, pid, ts_ns);
                }
                if let Some(to) = to {
                    let pid = sockets.get(&(server.port(), client.port())).copied();
                    self.learn_pid(to, pid, ts_ns);
                    if matches!(kind, RequestKind::StreamMessage | RequestKind::StreamMsgApp) {
                        self.seen(to, ts_ns);
                        if let Some(info) = self.members.get_mut(&to) {
                            info.peer.get_or_insert(server);
                        }
                    }
                }
            }
            Item::Refused {
                ts_ns,
                status,
                request,
                client,
                server,
            } => {
                let (from, to) = self
                    .conns
                    .get(&(client, server))
                    .copied()
                    .unwrap_or_default();
                self.emit(RaftEvent::PeerRefused {
                    ts_ns,
                    status,
                    request: request.map_or("request not seen", RequestKind::name),
                    client: client.to_string(),
                    server: server.to_string(),
                    from: from.map(Member::with_id),
                    to: to.map(Member::with_id),
                });
            }
            Item::SnapshotData {
                ts_ns,
                conn,
                bytes,
                whole,
            } => {
                if let Some(m) = self.snapshots.remove(&conn) {
                    self.links.snapshot(m.from, m.to, bytes);
                    self.emit(RaftEvent::Snapshot {
                        ts_ns: m.ts_ns,
                        end_ns: ts_ns,
                        duration_ns: ts_ns.saturating_sub(m.ts_ns),
                        from: Member::with_id(m.from),
                        to: Member::with_id(m.to),
                        term: m.term,
                        index: m.snapshot_index,
                        bytes,
                        whole,
                    });
                }
            }
            Item::WalSync {
                pid,
                start_ns,
                end_ns,
            } => {
                if self.syncs.len() >= MAX_SYNCS {
                    self.syncs.pop_front();
                }
                self.syncs.push_back((pid, start_ns, end_ns));
                // Only what an election could still look back at is kept.
                let keep_from = self
                    .open
                    .values()
                    .map(|e| e.start_ns)
                    .min()
                    .unwrap_or(start_ns)
                    .saturating_sub(2 * self.options.election_timeout_ns);
                while self.syncs.front().is_some_and(|s| s.2 < keep_from) {
                    self.syncs.pop_front();
                }
            }
            Item::Process(p) => {
                if self.processes.len() < MAX_EVENTS {
                    self.processes.push(p);
                }
            }
        }
    }

    fn message(&mut self, m: Msg) {
        self.messages += 1;
        self.seen(m.from, m.ts_ns);
        self.seen(m.to, m.ts_ns);
        let Some(kind) = m.kind else { return };
        match kind {
            MessageType::MsgApp => {
                self.leader_message(&m);
                self.links.append(&m, m.last_term);
                if let Some(last) = m.last_index {
                    let own = self.last_log.entry(m.from).or_default();
                    *own = (*own).max((m.last_term, last));
                }
            }
            MessageType::MsgHeartbeat => {
                self.leader_message(&m);
                let mut out = Vec::new();
                self.links.heartbeat(&m, &mut out);
                for e in out {
                    self.emit(e);
                }
            }
            MessageType::MsgSnap => {
                self.leader_message(&m);
                self.snapshots.insert(m.conn, m);
            }
            MessageType::MsgTimeoutNow => {
                self.leader_message(&m);
                self.transfers.insert(m.to, (m.term + 1, m.ts_ns));
            }
            MessageType::MsgAppResp => {
                let mut out = Vec::new();
                if let Some(position) = self.links.append_response(&m, &mut out) {
                    let own = self.last_log.entry(m.from).or_default();
                    *own = (*own).max(position);
                }
                for e in out {
                    self.emit(e);
                }
            }
            MessageType::MsgVote | MessageType::MsgPreVote => {
                self.campaign(&m, kind == MessageType::MsgPreVote);
            }
            MessageType::MsgVoteResp | MessageType::MsgPreVoteResp => {
                self.vote(&m, kind == MessageType::MsgPreVoteResp);
            }
            _ => {}
        }
    }

    /// Only a leader sends MsgApp, MsgHeartbeat, MsgSnap and MsgTimeoutNow.
    fn leader_message(&mut self, m: &Msg) {
        let (term, id, ts) = (m.term, m.from, m.ts_ns);
        if let Some(l) = self.leaders.get_mut(&term) {
            if l.member == id {
                l.last_ns = ts;
            } else if self.reported.insert((term, id)) {
                let other = l.member;
                self.emit(RaftEvent::TwoLeaders {
                    ts_ns: ts,
                    term,
                    members: [Member::with_id(other), Member::with_id(id)],
                });
            }
        } else {
            self.new_leader(term, id, ts);
        }
        // A newer term's leader already spoke: this one is stale.
        let newer = self
            .leaders
            .range(term + 1..)
            .find(|(_, l)| l.first_ns < ts)
            .map(|(t, l)| (*t, l.member));
        if let Some((newer_term, newer_leader)) = newer {
            if self.reported.insert((term, id)) {
                self.emit(RaftEvent::StaleLeader {
                    ts_ns: ts,
                    member: Member::with_id(id),
                    term,
                    newer_term,
                    newer_leader: Member::with_id(newer_leader),
                });
            }
        }
        // A pre-vote that won nothing while this leader kept leading.
        let failed: Vec<u64> = self
            .open
            .values()
            .filter(|e| {
                e.term > term
                    && e.pre_vote_only
                    && ts > e.start_ns + self.options.election_timeout_ns
                    && self.leaders.range(..e.term).next_back().map(|(t, _)| *t) == Some(term)
            })
            .map(|e| e.term)
            .collect();
        for t in failed {
            self.close(t, Some(ts), None);
        }
    }

    fn new_leader(&mut self, term: u64, id: u64, ts: u64) {
        let previous = self
            .leaders
            .range(..term)
            .next_back()
            .map(|(t, l)| (*t, *l));
        let began = match self.open.get(&term) {
            Some(e) => e.began,
            None if previous.is_none() && self.open.is_empty() && self.closed == 0 => {
                TermStart::BeforeRecording
            }
            None => TermStart::NotSeen,
        };
        self.leaders.insert(
            term,
            TermLeader {
                member: id,
                first_ns: ts,
                last_ns: ts,
            },
        );
        self.emit(RaftEvent::Leader {
            ts_ns: ts,
            term,
            member: Member::with_id(id),
            began,
        });
        // Campaigns of earlier terms are over: nobody won them.
        let lost: Vec<u64> = self.open.range(..term).map(|(t, _)| *t).collect();
        for t in lost {
            self.close(t, Some(ts), None);
        }
        if self.open.contains_key(&term) {
            self.close(term, Some(ts), Some(id));
        }
    }

    fn open_election(&mut self, term: u64, ts: u64, began: TermStart) -> &mut OpenElection {
        // A newer campaign ends the older ones that no leader ended.
        let older: Vec<u64> = self.open.range(..term).map(|(t, _)| *t).collect();
        for t in older {
            self.close(t, Some(ts), None);
        }
        self.open.entry(term).or_insert_with(|| OpenElection {
            term,
            start_ns: ts,
            began,
            candidates: Vec::new(),
            asked: BTreeSet::new(),
            votes: Vec::new(),
            pre_vote_only: began == TermStart::PreVote,
        })
    }

    fn campaign(&mut self, m: &Msg, pre_vote: bool) {
        let term = m.term;
        if self.leaders.contains_key(&term) {
            return;
        }
        let transfer = self
            .transfers
            .get(&m.from)
            .filter(|(t, _)| *t == term)
            .copied();
        let (began, start) = match (transfer, pre_vote) {
            (Some((_, at)), _) => (TermStart::Transfer, at),
            (None, true) => (TermStart::PreVote, m.ts_ns),
            (None, false) => (TermStart::Election, m.ts_ns),
        };
        let e = self.open_election(term, start, began);
        if !pre_vote {
            e.pre_vote_only = false;
        }
        if !e.candidates.contains(&m.from) {
            e.candidates.push(m.from);
        }
        e.asked.insert((m.from, m.to, pre_vote));
        self.campaigns
            .insert((m.from, pre_vote), (term, m.log_term, m.index));
    }

    fn vote(&mut self, m: &Msg, pre_vote: bool) {
        let (voter, candidate) = (m.from, m.to);
        let Some(&(term, log_term, index)) = self.campaigns.get(&(candidate, pre_vote)) else {
            return;
        };
        let granted = !m.reject;
        let reason = if granted {
            None
        } else if let Some(other) = self
            .granted
            .get(&(voter, term))
            .filter(|&&c| c != candidate && !pre_vote)
        {
            Some(format!("it had already voted for {other:x} in term {term}"))
        } else if let Some(&(vt, vi)) = self
            .last_log
            .get(&voter)
            .filter(|&&own| own > (log_term, index))
        {
            Some(format!(
                "the candidate's log (term {log_term}, index {index}) is behind the voter's (term {vt}, index {vi})"
            ))
        } else if m.term > term {
            Some(format!("the voter is at a newer term ({})", m.term))
        } else {
            None
        };
        if granted && !pre_vote {
            self.granted.insert((voter, term), candidate);
        }
        if let Some(e) = self.open.get_mut(&term) {
            e.votes.push(Vote {
                ts_ns: m.ts_ns,
                pre_vote,
                candidate: Member::with_id(candidate),
                voter: Member::with_id(voter),
                granted,
                reason,
            });
        }
    }

    /// `end`: when it was seen to end (None: the capture ended first).
    fn close(&mut self, term: u64, end: Option<u64>, winner: Option<u64>) {
        let Some(e) = self.open.remove(&term) else {
            return;
        };
        let previous = self
            .leaders
            .range(..term)
            .next_back()
            .map(|(t, l)| (*t, *l));
        let answered: BTreeSet<(u64, u64, bool)> = e
            .votes
            .iter()
            .filter_map(|v| Some((v.candidate.id?, v.voter.id?, v.pre_vote)))
            .collect();
        let mut unanswered: Vec<u64> = e
            .asked
            .iter()
            .filter(|a| !answered.contains(a))
            .map(|(_, voter, _)| *voter)
            .collect();
        unanswered.sort_unstable();
        unanswered.dedup();
        let from = e
            .start_ns
            .saturating_sub(2 * self.options.election_timeout_ns);
        let by_pid = self.ids_by_pid();
        let mut disks: BTreeMap<u32, DiskAround> = BTreeMap::new();
        for &(pid, start, stop) in self
            .syncs
            .iter()
            .filter(|(_, start, _)| *start >= from && end.is_none_or(|end| *start <= end))
        {
            let d = disks.entry(pid).or_insert(DiskAround {
                member: Member {
                    pid: Some(pid),
                    id: by_pid.get(&pid).copied(),
                },
                wal_fsyncs: 0,
                total_fsync_ns: 0,
                slowest_fsync_ns: 0,
                slowest_start_ns: start,
            });
            let took = stop.saturating_sub(start);
            d.wal_fsyncs += 1;
            d.total_fsync_ns += took;
            if took > d.slowest_fsync_ns {
                d.slowest_fsync_ns = took;
                d.slowest_start_ns = start;
            }
        }
        let election = Election {
            term,
            start_ns: e.start_ns,
            end_ns: end,
            duration_ns: end.map(|end| end.saturating_sub(e.start_ns)),
            began: e.began,
            candidates: e.candidates.iter().map(|&c| Member::with_id(c)).collect(),
            winner: winner.map(Member::with_id),
            previous_leader: previous.map(|(_, l)| Member::with_id(l.member)),
            previous_term: previous.map(|(t, _)| t),
            leaderless_ns: match (winner, previous, end) {
                (Some(_), Some((_, l)), Some(end)) => Some(end.saturating_sub(l.last_ns)),
                _ => None,
            },
            votes: e.votes,
            unanswered: unanswered.into_iter().map(Member::with_id).collect(),
            disks: disks.into_values().collect(),
        };
        self.closed += 1;
        self.emit(RaftEvent::Election(election));
    }

    /// Each process seen being a member, → its id.
    fn ids_by_pid(&self) -> HashMap<u32, u64> {
        let mut by_pid = HashMap::new();
        for (&id, info) in &self.members {
            for &(pid, _) in &info.pids {
                by_pid.insert(pid, id);
            }
        }
        by_pid
    }

    /// Events so far, in the order they became known.
    pub(super) fn events(&self) -> &[RaftEvent] {
        &self.events
    }

    /// Processes whose member id is known from elsewhere (their WAL's metadata).
    pub(super) fn learn_processes(&mut self, known: impl Iterator<Item = (u32, u64)>) {
        for (pid, id) in known {
            let first = self.members.get(&id).map_or(0, |m| m.first_ns);
            self.learn_pid(id, Some(pid), first);
        }
    }

    /// The capture ended: campaigns still open had no leader seen.
    pub(super) fn close_open(&mut self) {
        let open: Vec<u64> = self.open.keys().copied().collect();
        for term in open {
            self.close(term, None, None);
        }
    }

    pub(super) fn finish(mut self) -> RaftReport {
        self.close_open();
        let by_pid = self.ids_by_pid();
        let mut events = std::mem::take(&mut self.events);
        // Disks whose process was named after the election closed.
        for e in &mut events {
            if let RaftEvent::Election(el) = e {
                for d in &mut el.disks {
                    if let Some(pid) = d.member.pid {
                        d.member.id = d.member.id.or(by_pid.get(&pid).copied());
                    }
                }
            }
        }
        for info in self.members.values_mut() {
            info.pids.sort_by_key(|&(_, ts)| ts);
        }
        for (&id, info) in &self.members {
            let first_pid = info.pids.first();
            events.push(RaftEvent::Member {
                ts_ns: info.first_ns.min(first_pid.map_or(u64::MAX, |p| p.1)),
                member: Member::with_id(id),
                peer: info.peer.map(|a| a.to_string()),
                pid: first_pid.map(|p| p.0),
            });
            // A restarted member is another process.
            for &(pid, ts_ns) in info.pids.iter().skip(1) {
                events.push(RaftEvent::Member {
                    ts_ns,
                    member: Member::with_id(id),
                    peer: info.peer.map(|a| a.to_string()),
                    pid: Some(pid),
                });
            }
        }
        for p in self.processes.drain(..) {
            events.push(RaftEvent::Process {
                ts_ns: p.ts_ns,
                pid: p.pid,
                member: by_pid.get(&p.pid).map(|&id| Member::with_id(id)),
                what: p.describe(),
            });
        }
        events.sort_by_key(RaftEvent::ts_ns);
        let (followers, commits) = self.links.summaries();
        RaftReport {
            events,
            events_dropped: self.dropped,
            followers,
            commits,
            messages: self.messages,
            connections: 0,
            notes: 0,
        }
    }
}

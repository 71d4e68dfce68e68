//! Consensus events in words, one line each, without their time: what `raft` and
//! `timeline` print.

use super::{Election, RaftEvent, TermStart};
use crate::units::{human_bytes, human_duration_ns};

impl RaftEvent {
    /// One line for people. An election is summed up as of its end (the `raft` command
    /// also lists its votes and disks).
    pub fn describe(&self, election_timeout_ns: u64) -> String {
        match self {
            RaftEvent::Member {
                member, peer, pid, ..
            } => {
                let peer = peer
                    .as_ref()
                    .map_or(String::new(), |p| format!(", peer {p}"));
                match pid {
                    Some(pid) => format!("member {member}{peer}, etcd pid {pid}"),
                    None => format!("member {member}{peer}, process not seen"),
                }
            }
            RaftEvent::Leader {
                term,
                member,
                began,
                ..
            } => format!("term {term}: {member} leads, {}", began.describe()),
            RaftEvent::Election(e) => e.outcome(),
            RaftEvent::TwoLeaders { term, members, .. } => format!(
                "CONFLICT: {} and {} both lead term {term} (raft forbids it: a bug, or a \
                 decode error)",
                members[0], members[1]
            ),
            RaftEvent::StaleLeader {
                member,
                term,
                newer_term,
                newer_leader,
                ..
            } => format!(
                "stale leader: {member} still leads term {term} after {newer_leader} took \
                 term {newer_term}"
            ),
            RaftEvent::HeartbeatGap {
                term,
                leader,
                follower,
                gap_ns,
                ..
            } => format!(
                "heartbeats {leader} -> {follower} paused {} in term {term} ({:.0}% of the \
                 election timeout)",
                human_duration_ns(*gap_ns),
                *gap_ns as f64 * 100.0 / election_timeout_ns.max(1) as f64
            ),
            RaftEvent::AppendRejected {
                term,
                leader,
                follower,
                index,
                hint,
                ..
            } => format!(
                "{follower} refused {leader}'s append at index {index} in term {term} (its \
                 log ends near {hint})"
            ),
            RaftEvent::Snapshot {
                from,
                to,
                index,
                bytes,
                duration_ns,
                whole,
                ..
            } => format!(
                "snapshot {from} -> {to} at index {index}: {} in {}{}",
                human_bytes(*bytes),
                human_duration_ns(*duration_ns),
                if *whole { "" } else { ", cut short" }
            ),
            RaftEvent::PeerRefused {
                status,
                request,
                client,
                server,
                from,
                ..
            } => {
                let who = from.map_or_else(|| client.clone(), |f| f.to_string());
                let why = match status {
                    404 => "unknown member",
                    410 => "member removed",
                    412 => "cluster id or version mismatch",
                    _ => "refused",
                };
                format!("peer {server} answered {status} ({why}) to {who}'s {request} request")
            }
            RaftEvent::Process { what, member, .. } => match member {
                Some(m) => format!("{what} (member {m})"),
                None => what.clone(),
            },
        }
    }
}

impl Election {
    /// Who campaigned, and how it began: `campaign by a and b, after c led term 3`.
    pub fn opening(&self) -> String {
        let candidates: Vec<String> = self.candidates.iter().map(|c| c.to_string()).collect();
        let candidates = if candidates.is_empty() {
            "a member not seen".to_string()
        } else {
            candidates.join(" and ")
        };
        let how = match self.began {
            TermStart::Transfer => "leadership handed to",
            TermStart::PreVote => "pre-vote, then campaign by",
            _ => "campaign by",
        };
        let mut s = format!("term {}: {how} {candidates}", self.term);
        if let (Some(prev), Some(term)) = (self.previous_leader, self.previous_term) {
            s.push_str(&format!(", after {prev} led term {term}"));
        }
        s
    }

    /// How it ended: `term 4: won by a after 811.1 µs (2 of 2 votes); no leader for
    /// 1.073 s`.
    pub fn outcome(&self) -> String {
        let granted = self
            .votes
            .iter()
            .filter(|v| v.granted && !v.pre_vote)
            .count();
        let asked = self.votes.iter().filter(|v| !v.pre_vote).count() + self.unanswered.len();
        match (self.winner, self.duration_ns) {
            (Some(w), Some(d)) => {
                let mut s = format!(
                    "term {}: won by {w} after {} ({}, {granted} of {asked} votes granted)",
                    self.term,
                    human_duration_ns(d),
                    match self.began {
                        TermStart::Transfer => "a transfer",
                        TermStart::PreVote => "a pre-vote and an election",
                        _ => "an election",
                    }
                );
                if let Some(l) = self.leaderless_ns {
                    s.push_str(&format!("; no leader for {}", human_duration_ns(l)));
                }
                s
            }
            (None, Some(d)) => format!(
                "term {}: nobody won after {} ({granted} of {asked} votes granted; a newer \
                 campaign or leader followed)",
                self.term,
                human_duration_ns(d)
            ),
            _ => format!(
                "term {}: no leader seen before the capture ended",
                self.term
            ),
        }
    }
}

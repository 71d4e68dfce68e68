use std::collections::HashMap;

use super::timeline::Consensus;
use super::*;

const A: u64 = 0xa1;
const B: u64 = 0xb2;
const C: u64 = 0xc3;
const MS: u64 = 1_000_000;

fn msg(ts_ns: u64, kind: MessageType, from: u64, to: u64, term: u64) -> Msg {
    Msg {
        ts_ns,
        kind: Some(kind),
        from,
        to,
        term,
        log_term: 0,
        index: 0,
        commit: 0,
        reject: false,
        reject_hint: 0,
        entries: 0,
        last_index: None,
        last_term: 0,
        snapshot_index: 0,
        conn: (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2380".parse().unwrap(),
        ),
        sender_socket: None,
    }
}

fn run(msgs: Vec<Msg>) -> RaftReport {
    let mut c = Consensus::new(RaftOptions::default());
    let sockets = HashMap::new();
    for m in msgs {
        c.push(Item::Msg(m), &sockets);
    }
    c.finish()
}

fn elections(r: &RaftReport) -> Vec<&Election> {
    r.events
        .iter()
        .filter_map(|e| match e {
            RaftEvent::Election(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Leader A of term 2 heartbeats B and C every 100 ms until `until`.
fn heartbeats(from_ms: u64, until_ms: u64, leader: u64, term: u64) -> Vec<Msg> {
    let mut out = Vec::new();
    for t in (from_ms..until_ms).step_by(100) {
        for f in [A, B, C].into_iter().filter(|&f| f != leader) {
            out.push(msg(t * MS, MessageType::MsgHeartbeat, leader, f, term));
        }
    }
    out
}

#[test]
fn a_transfer_names_the_new_leader_and_how_long_there_was_none() {
    let mut msgs = heartbeats(0, 300, A, 2);
    msgs.push(msg(250 * MS, MessageType::MsgTimeoutNow, A, B, 2));
    let mut vote = msg(251 * MS, MessageType::MsgVote, B, A, 3);
    vote.log_term = 2;
    vote.index = 10;
    msgs.push(vote);
    msgs.push(Msg { to: C, ..vote });
    msgs.push(msg(252 * MS, MessageType::MsgVoteResp, C, B, 3));
    msgs.push(msg(253 * MS, MessageType::MsgApp, B, C, 3));
    msgs.sort_by_key(|m| m.ts_ns);
    // A's MsgTimeoutNow at 250 ms was its last before B took over at 253 ms.
    let msgs: Vec<Msg> = msgs
        .into_iter()
        .filter(|m| !(m.from == A && m.ts_ns > 250 * MS))
        .collect();
    let r = run(msgs);
    assert_eq!(
        r.leaders(),
        vec![(2, Member::with_id(A)), (3, Member::with_id(B))]
    );
    let began: Vec<TermStart> = r
        .events
        .iter()
        .filter_map(|e| match e {
            RaftEvent::Leader { began, .. } => Some(*began),
            _ => None,
        })
        .collect();
    assert_eq!(began, [TermStart::BeforeRecording, TermStart::Transfer]);
    let e = elections(&r);
    assert_eq!(e.len(), 1);
    let e = e[0];
    assert_eq!(
        (e.term, e.start_ns, e.end_ns),
        (3, 250 * MS, Some(253 * MS))
    );
    assert_eq!(e.winner, Some(Member::with_id(B)));
    assert_eq!(e.previous_leader, Some(Member::with_id(A)));
    assert_eq!(e.leaderless_ns, Some(3 * MS));
    assert_eq!(e.votes.len(), 1);
    assert!(e.votes[0].granted);
    // A never answered (it had handed over and stepped down).
    assert_eq!(e.unanswered, vec![Member::with_id(A)]);
}

#[test]
fn a_second_leader_in_one_term_and_a_stale_leader_are_reported() {
    let mut msgs = heartbeats(0, 200, A, 2);
    msgs.push(msg(150 * MS, MessageType::MsgHeartbeat, B, C, 2));
    msgs.push(msg(300 * MS, MessageType::MsgVote, C, B, 3));
    msgs.push(msg(301 * MS, MessageType::MsgVoteResp, B, C, 3));
    msgs.push(msg(302 * MS, MessageType::MsgApp, C, B, 3));
    // A was paused, and resumes still leading term 2.
    msgs.push(msg(900 * MS, MessageType::MsgHeartbeat, A, C, 2));
    msgs.sort_by_key(|m| m.ts_ns);
    let r = run(msgs);
    let two: Vec<_> = r
        .events
        .iter()
        .filter(|e| matches!(e, RaftEvent::TwoLeaders { term: 2, .. }))
        .collect();
    assert_eq!(two.len(), 1, "{:?}", r.events);
    assert!(r.events.iter().any(|e| matches!(
        e,
        RaftEvent::StaleLeader { member, term: 2, newer_term: 3, .. } if *member == Member::with_id(A)
    )));
    assert_eq!(elections(&r)[0].began, TermStart::Election);
    // A's heartbeats paused from 100 ms to 900 ms: past half the election timeout.
    assert!(r.events.iter().any(|e| matches!(
        e,
        RaftEvent::HeartbeatGap { gap_ns, .. } if *gap_ns == 800 * MS
    )));
}

#[test]
fn a_refused_vote_says_why_when_the_wire_shows_it() {
    let mut msgs = Vec::new();
    let mut app = msg(0, MessageType::MsgApp, A, B, 2);
    app.entries = 3;
    app.last_index = Some(12);
    app.last_term = 2;
    msgs.push(app);
    msgs.push(Msg {
        index: 12,
        ..msg(MS, MessageType::MsgAppResp, B, A, 2)
    });
    // C campaigns with an older log, then B (granted by A) in the same term.
    let mut c_vote = msg(2000 * MS, MessageType::MsgVote, C, B, 3);
    c_vote.log_term = 2;
    c_vote.index = 9;
    msgs.push(c_vote);
    msgs.push(Msg {
        reject: true,
        ..msg(2001 * MS, MessageType::MsgVoteResp, B, C, 3)
    });
    msgs.push(msg(2002 * MS, MessageType::MsgVote, B, A, 3));
    msgs.push(msg(2003 * MS, MessageType::MsgVoteResp, A, B, 3));
    msgs.push(msg(2004 * MS, MessageType::MsgVote, C, A, 3));
    msgs.push(Msg {
        reject: true,
        ..msg(2005 * MS, MessageType::MsgVoteResp, A, C, 3)
    });
    msgs.push(msg(2006 * MS, MessageType::MsgHeartbeat, B, A, 3));
    let r = run(msgs);
    let e = elections(&r);
    assert_eq!(e.len(), 1);
    let reasons: Vec<(bool, Option<&str>)> = e[0]
        .votes
        .iter()
        .map(|v| (v.granted, v.reason.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                false,
                Some("the candidate's log (term 2, index 9) is behind the voter's (term 2, index 12)")
            ),
            (true, None),
            (false, Some("it had already voted for b2 in term 3")),
        ]
    );
    assert_eq!(e[0].candidates.len(), 2);
    assert_eq!(e[0].winner, Some(Member::with_id(B)));
}

#[test]
fn acks_lag_and_commits_are_timed_per_follower() {
    let mut msgs = Vec::new();
    for i in 0..10u64 {
        let t = i * 10 * MS;
        let mut app = msg(t, MessageType::MsgApp, A, B, 2);
        app.entries = 1;
        app.last_index = Some(100 + i);
        app.last_term = 2;
        app.commit = 99 + i;
        msgs.push(app);
        msgs.push(Msg {
            index: 100 + i,
            ..msg(t + 2 * MS, MessageType::MsgAppResp, B, A, 2)
        });
    }
    let r = run(msgs);
    let f = &r.followers[0];
    assert_eq!((f.appends, f.entries, f.ack.count), (10, 10, 10));
    let p50 = f.ack.p50_ns.unwrap();
    assert!((2 * MS - MS / 16..=2 * MS).contains(&p50), "{p50}");
    // Behind by one entry while each append was in flight (the first: match unknown).
    assert_eq!(f.max_lag_entries, 1);
    let c = &r.commits[0];
    // Entries 100..=108 were announced committed by the next append, 10 ms later.
    assert_eq!((c.first_commit, c.last_commit, c.committed), (99, 108, 9));
    assert!(c.commit_latency.max_ns.unwrap() <= 10 * MS);
}

#[test]
fn a_campaign_nobody_won_ends_at_the_next_one() {
    let mut msgs = heartbeats(0, 100, A, 2);
    msgs.push(msg(2000 * MS, MessageType::MsgVote, B, C, 3));
    msgs.push(msg(2000 * MS, MessageType::MsgVote, C, B, 3));
    msgs.push(Msg {
        reject: true,
        ..msg(2001 * MS, MessageType::MsgVoteResp, B, C, 3)
    });
    msgs.push(msg(3500 * MS, MessageType::MsgVote, C, B, 4));
    msgs.push(msg(3501 * MS, MessageType::MsgVoteResp, B, C, 4));
    msgs.push(msg(3502 * MS, MessageType::MsgApp, C, B, 4));
    let r = run(msgs);
    let e = elections(&r);
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].term, e[0].winner, e[0].end_ns),
        (3, None, Some(3500 * MS))
    );
    assert_eq!(e[1].winner, Some(Member::with_id(C)));
    assert_eq!(e[1].leaderless_ns, Some(3502 * MS));
}

#[test]
fn a_member_s_process_is_learned_from_its_wal_metadata_too() {
    let mut c = Consensus::new(RaftOptions::default());
    c.push(
        Item::Msg(msg(5, MessageType::MsgHeartbeat, A, B, 2)),
        &HashMap::new(),
    );
    c.learn_processes([(7, A)].into_iter());
    let r = c.finish();
    let pid_of = |id: u64| {
        r.events.iter().find_map(|e| match e {
            RaftEvent::Member { member, pid, .. } if member.id == Some(id) => Some(*pid),
            _ => None,
        })
    };
    assert_eq!(pid_of(A), Some(Some(7)));
    assert_eq!(pid_of(B), Some(None));
}

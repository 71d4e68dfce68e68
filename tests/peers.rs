//! A three-member etcd cluster recorded by one recorder (every member's pid, all six
//! ports): the peer traffic decoded from the capture must hold the raft messages the
//! members exchanged, between the right member ids (as `etcdctl endpoint status` names
//! them), with the stream requests' headers, for cleartext and TLS peers alike.
//!
//! The members' streams are open before recording begins, so they are decoded from
//! their middle; one member is restarted while recording, so that its streams (both
//! ways) are dialed anew and decoded from their start; then leadership moves.
#![cfg(feature = "record")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use etcd_trace::analyze::peers::{NoteKind, PeerRecord, RequestKind};
use etcd_trace::decode::rafthttp::PeerEvent;
use etcd_trace::decode::raftpb::MessageType;
use etcd_trace::sandbox::EtcdCluster;

struct Recorded {
    records: Vec<PeerRecord>,
    /// Member ids in member order, and each one's peer port.
    ids: Vec<u64>,
    peer_ports: BTreeMap<u64, u16>,
    restarted: u64,
    old_leader: u64,
    new_leader: u64,
}

fn cluster_ok(cluster: &EtcdCluster, netns: &Netns, args: &[&str]) {
    let out = cluster.etcdctl(netns, args).unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start a cluster, record it through puts, a member's restart and a leader move, and
/// decode its peer traffic.
fn record_cluster(name: &str, tls: bool) -> Recorded {
    let (dir, netns, options) = sandbox(name, tls);
    let mut cluster = EtcdCluster::start(&netns, &dir.0.join("cluster"), 3, &options).unwrap();
    let before = cluster.settled_status(&netns).unwrap();
    let ids: Vec<u64> = before.iter().map(|s| s.member_id).collect();
    let peer_ports = ids
        .iter()
        .zip(&cluster.members)
        .map(|(id, m)| (*id, m.peer_port))
        .collect();

    let capture = dir.0.join(format!("{name}.etr"));
    let rec = record_members(&cluster, &capture);
    for i in 0..5 {
        cluster_ok(&cluster, &netns, &["put", &format!("before-{i}"), "v"]);
    }
    // A follower restarts: streams to and from it are dialed while recording.
    let leader = before[0].leader;
    let restarted = ids.iter().position(|&id| id != leader).unwrap();
    cluster.restart(&netns, restarted).unwrap();
    let settled = cluster.settled_status(&netns).unwrap();
    let old_leader = settled[0].leader;
    let new_leader = if ids[restarted] != old_leader {
        ids[restarted]
    } else {
        *ids.iter().find(|&&id| id != old_leader).unwrap()
    };
    cluster_ok(
        &cluster,
        &netns,
        &["move-leader", &format!("{new_leader:x}")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.settled_status(&netns).unwrap()[0].leader != new_leader {
        assert!(Instant::now() < deadline, "the leader did not move");
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..5 {
        cluster_ok(&cluster, &netns, &["put", &format!("after-{i}"), "v"]);
    }
    // Long enough for a link heartbeat on every idle stream (every ~1.7 s).
    std::thread::sleep(Duration::from_secs(2));
    stop_cleanly(rec);

    Recorded {
        records: peer_records(&capture),
        ids,
        peer_ports,
        restarted: before[restarted].member_id,
        old_leader,
        new_leader,
    }
}

/// What the records hold, briefly: counts of each kind of message and every note.
fn summary(r: &Recorded) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut text = String::new();
    for rec in &r.records {
        let key = match &rec.event {
            PeerEvent::Message { message, via, .. } => {
                format!("{} via {}", message.type_name(), via.name())
            }
            PeerEvent::Note { .. } | PeerEvent::Request { .. } | PeerEvent::Response { .. } => {
                writeln!(text, "{rec}").unwrap();
                continue;
            }
            PeerEvent::LinkHeartbeat { via, .. } => format!("link heartbeat via {}", via.name()),
            PeerEvent::Body { via, .. } => format!("body of {via:?}"),
            PeerEvent::SnapshotData { .. } => "snapshot".to_string(),
            PeerEvent::Closed { .. } => "closed".to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    format!(
        "members {:x?}, restarted {:x}, leader {:x} -> {:x}\n{counts:#?}\n{text}",
        r.ids, r.restarted, r.old_leader, r.new_leader
    )
}

/// Every (from, to) of the messages of type `t`.
fn pairs(r: &Recorded, t: MessageType) -> BTreeSet<(u64, u64)> {
    r.records
        .iter()
        .filter_map(|rec| match &rec.event {
            PeerEvent::Message { message, .. } if message.kind() == Some(t) => {
                Some((message.from, message.to))
            }
            _ => None,
        })
        .collect()
}

fn check(r: &Recorded) {
    let why = summary(r);
    let members: BTreeSet<u64> = r.ids.iter().copied().collect();
    let is_member = |id: &u64| members.contains(id);

    // Every message names two different members.
    for rec in &r.records {
        if let PeerEvent::Message { message: m, .. } = &rec.event {
            assert!(
                is_member(&m.from) && is_member(&m.to) && m.from != m.to,
                "{rec}\n{why}"
            );
        }
    }
    // Both followers answered the leader's appends and heartbeats (on message
    // streams, whether seen from their start or not), and the leader sent heartbeats.
    let followers: Vec<u64> = r
        .ids
        .iter()
        .copied()
        .filter(|&id| id != r.old_leader)
        .collect();
    for f in &followers {
        for (t, pair) in [
            (MessageType::MsgAppResp, (*f, r.old_leader)),
            (MessageType::MsgHeartbeat, (r.old_leader, *f)),
            (MessageType::MsgHeartbeatResp, (*f, r.old_leader)),
        ] {
            assert!(
                pairs(r, t).contains(&pair),
                "no {t:?} {:x} -> {:x}\n{why}",
                pair.0,
                pair.1
            );
        }
    }
    assert!(
        pairs(r, MessageType::MsgTimeoutNow).contains(&(r.old_leader, r.new_leader)),
        "no MsgTimeoutNow from the old leader to the new one\n{why}"
    );

    // Streams dialed while recording: by the restarted member to each other one, and
    // by each other one to it, both kinds; their headers name the right members.
    let mut dialed = BTreeSet::new();
    let mut conns: BTreeMap<(SocketAddr, SocketAddr), (u64, u64)> = BTreeMap::new();
    for rec in &r.records {
        if let PeerEvent::Request { request: q, .. } = &rec.event {
            if matches!(
                q.kind,
                RequestKind::StreamMessage | RequestKind::StreamMsgApp
            ) {
                let (Some(from), Some(to)) = (q.from, q.to) else {
                    panic!("a stream request without ids: {rec}\n{why}");
                };
                assert!(is_member(&from) && is_member(&to), "{rec}\n{why}");
                assert_eq!(q.path_id, Some(from), "{rec}");
                assert_eq!(rec.server.port(), r.peer_ports[&to], "{rec}");
                dialed.insert((q.kind, from, to));
                conns.insert((rec.client, rec.server), (from, to));
            }
        }
    }
    for other in r.ids.iter().filter(|&&id| id != r.restarted) {
        for kind in [RequestKind::StreamMessage, RequestKind::StreamMsgApp] {
            for (from, to) in [(r.restarted, *other), (*other, r.restarted)] {
                assert!(
                    dialed.contains(&(kind, from, to)),
                    "no {kind:?} stream {from:x} -> {to:x}\n{why}"
                );
            }
        }
    }
    // A msgapp stream seen from its start names each MsgApp whole: each leader's to
    // the members that dialed it while recording. (One seen from its middle waits for
    // a MsgApp frame, which a leader sends only when replication skips.)
    for leader in [r.old_leader, r.new_leader] {
        for &(kind, dialer, dialed_member) in &dialed {
            if kind == RequestKind::StreamMsgApp && dialed_member == leader {
                assert!(
                    pairs(r, MessageType::MsgApp).contains(&(leader, dialer)),
                    "no MsgApp {leader:x} -> {dialer:x} on the stream it dialed\n{why}"
                );
            }
        }
    }
    // On those streams, the dialed member sends to the dialer, from its peer port.
    let mut on_new_streams = 0;
    for rec in &r.records {
        if let (PeerEvent::Message { message: m, .. }, Some(&(from, to))) =
            (&rec.event, conns.get(&(rec.client, rec.server)))
        {
            assert_eq!((m.from, m.to), (to, from), "{rec}\n{why}");
            assert_eq!(rec.sender(), Some(rec.server), "{rec}");
            on_new_streams += 1;
        }
    }
    assert!(on_new_streams > 0, "{why}");
    // Streams open before recording were decoded too, from their middle.
    assert!(
        r.records
            .iter()
            .any(|rec| rec.midstream && matches!(rec.event, PeerEvent::Message { .. })),
        "no message decoded on a connection open before recording\n{why}"
    );
    assert!(
        r.records
            .iter()
            .any(|rec| matches!(rec.event, PeerEvent::LinkHeartbeat { .. })),
        "no link heartbeat\n{why}"
    );
    // Nothing undecodable on the connections opened while recording.
    let notes: Vec<String> = r
        .records
        .iter()
        .filter(|rec| !rec.midstream)
        .filter(|rec| matches!(rec.event, PeerEvent::Note { kind, .. } if kind != NoteKind::Http2))
        .map(|rec| rec.to_string())
        .collect();
    assert!(notes.is_empty(), "notes: {notes:#?}\n{why}");
}

#[test]
fn a_cluster_s_peer_traffic_is_decoded() {
    let recorded = record_cluster("peers", false);
    assert!(recorded.records.iter().all(|r| !r.tls));
    check(&recorded);
}

#[test]
fn a_tls_cluster_s_peer_traffic_is_decoded_from_plaintext() {
    let recorded = record_cluster("peers-tls", true);
    // Everything but the end of connections refused while a member restarted (they
    // carry no bytes, TLS or not).
    let cleartext: Vec<String> = recorded
        .records
        .iter()
        .filter(|r| !r.tls && !matches!(r.event, PeerEvent::Closed { .. }))
        .map(|r| r.to_string())
        .collect();
    assert!(
        cleartext.is_empty(),
        "records not from TLS plaintext: {cleartext:#?}\n{}",
        summary(&recorded)
    );
    check(&recorded);
}

//! `etcd-trace raft` on a real three-member cluster recorded by one recorder, through
//! what makes leaders change: a transfer (`etcdctl move-leader`), a leader SIGSTOPped
//! past the election timeout and resumed, and a leader SIGKILLed and restarted. Each
//! time the members settle, `etcdctl endpoint status` says who leads which term; `raft`
//! must name the same leader for every such term, report an election for every term
//! after the first, never two leaders in one term, and time replication per follower.
//! Cleartext peers, and TLS peers decoded from plaintext.
#![cfg(feature = "record")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use etcd_trace::sandbox::{signal, skip_without_root, EtcdCluster, MemberStatus};

fn settled(cluster: &EtcdCluster, netns: &etcd_trace::sandbox::Netns) -> MemberStatus {
    let status = cluster.settled_status(netns).unwrap();
    status.into_iter().max_by_key(|s| s.raft_term).unwrap()
}

fn put(cluster: &EtcdCluster, netns: &etcd_trace::sandbox::Netns, key: &str) {
    let out = cluster.etcdctl(netns, &["put", key, "v"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn index_of(cluster: &EtcdCluster, netns: &etcd_trace::sandbox::Netns, id: u64) -> usize {
    let status = cluster.status(netns).unwrap();
    status.iter().position(|s| s.member_id == id).unwrap()
}

fn leaders_change(tls: bool) {
    let name = if tls { "raft-tls" } else { "raft" };
    let (dir, netns, options) = sandbox(name, tls);
    let mut cluster = EtcdCluster::start(&netns, &dir.0.join("cluster"), 3, &options).unwrap();
    let first = settled(&cluster, &netns);
    let capture = dir.0.join(format!("{name}.etr"));
    let rec = record_members(&cluster, &capture);
    // term → leader, as etcdctl saw it once all members agreed.
    let mut seen = BTreeMap::new();
    seen.insert(first.raft_term, first.leader);
    for i in 0..5 {
        put(&cluster, &netns, &format!("a{i}"));
    }

    // 1. A transfer to another member.
    let target = cluster
        .status(&netns)
        .unwrap()
        .iter()
        .map(|s| s.member_id)
        .find(|&id| id != first.leader)
        .unwrap();
    let out = cluster
        .etcdctl(&netns, &["move-leader", &format!("{target:x}")])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = settled(&cluster, &netns);
    assert_eq!(moved.leader, target);
    seen.insert(moved.raft_term, moved.leader);
    put(&cluster, &netns, "b");

    // 2. The leader paused past the election timeout (1 s), then resumed.
    let paused = index_of(&cluster, &netns, moved.leader);
    let paused_pid = cluster.members[paused].pid();
    signal(paused_pid, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(4));
    signal(paused_pid, libc::SIGCONT);
    let after_pause = settled(&cluster, &netns);
    assert!(after_pause.raft_term > moved.raft_term, "{after_pause:?}");
    seen.insert(after_pause.raft_term, after_pause.leader);
    put(&cluster, &netns, "c");

    // 3. The leader killed; the others elect; it comes back as a new process.
    let killed = index_of(&cluster, &netns, after_pause.leader);
    cluster.members[killed].kill(libc::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart(&netns, killed).unwrap();
    let after_kill = settled(&cluster, &netns);
    assert!(after_kill.raft_term > after_pause.raft_term);
    seen.insert(after_kill.raft_term, after_kill.leader);
    for i in 0..5 {
        put(&cluster, &netns, &format!("d{i}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    let log = stop_cleanly(rec);
    drop(cluster);

    let out = etcd_trace(&["raft", capture.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["kind"] == kind).collect()
    };
    let text = etcd_trace(&["raft", capture.to_str().unwrap()]);
    let text = stdout(&text);
    let context = format!("{log}\n{text}");

    // Every term etcdctl saw led, led by the same member; one leader per term.
    let mut leaders: BTreeMap<u64, String> = BTreeMap::new();
    for l in of("leader") {
        let term = l["term"].as_u64().unwrap();
        let member = l["member"].as_str().unwrap().to_string();
        assert!(
            leaders.insert(term, member).is_none(),
            "term {term} led twice\n{context}"
        );
    }
    for (term, leader) in &seen {
        assert_eq!(
            leaders.get(term),
            Some(&format!("{leader:x}")),
            "term {term}\n{context}"
        );
    }
    assert!(of("two_leaders").is_empty(), "{context}");
    // Only the paused leader may have led a term stale.
    for s in of("stale_leader") {
        assert_eq!(s["term"], moved.raft_term, "{context}");
    }

    // An election for every term after the first, won by its leader; each began as
    // it did: a transfer, then elections after a timeout.
    let elections = of("election");
    for (term, member) in leaders.iter().skip(1) {
        let won: Vec<_> = elections
            .iter()
            .filter(|e| e["term"] == *term && e["winner"] == member.as_str())
            .collect();
        assert_eq!(won.len(), 1, "term {term}\n{context}");
        let began = won[0]["began"].as_str().unwrap();
        let expected = if *term == moved.raft_term {
            "transfer"
        } else {
            "election"
        };
        assert_eq!(began, expected, "term {term}\n{context}");
        assert!(won[0]["duration_ns"].as_u64().is_some(), "{context}");
        let granted = won[0]["votes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["granted"] == true)
            .count();
        // A quorum of three is the candidate and one more.
        assert!(granted >= 1, "term {term}\n{context}");
    }
    let first_leader = &of("leader")[0];
    assert_eq!(first_leader["began"], "before_recording", "{context}");
    // The elections after a pause or a kill waited out the election timeout (less up to
    // one 100 ms tick: raft counts ticks from the last heartbeat, not time).
    for term in [after_pause.raft_term, after_kill.raft_term] {
        let e = elections
            .iter()
            .find(|e| e["term"] == term && !e["winner"].is_null())
            .unwrap();
        let leaderless = e["leaderless_ns"].as_u64().unwrap();
        assert!(leaderless >= 900_000_000, "term {term}: {e}\n{context}");
    }

    // Three members, each mapped to its peer address; the heartbeats of the last leader
    // to both followers timed, and its appends acknowledged.
    let members = of("member");
    let ids: std::collections::BTreeSet<&str> = members
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{context}");
    assert!(members.iter().all(|m| m["peer"].is_string()), "{context}");
    let last = format!("{:x}", after_kill.leader);
    let followers: Vec<_> = of("follower")
        .into_iter()
        .filter(|f| f["leader"] == last.as_str())
        .collect();
    assert_eq!(followers.len(), 2, "{context}");
    // Under TLS only traced processes give plaintext, and the restarted member's new
    // process is not traced (--pid names the first ones): its acks may be unseen.
    let restarted = format!("{:x}", after_pause.leader);
    for f in &followers {
        assert!(f["heartbeats"].as_u64().unwrap() > 5, "{context}");
        if !(tls && f["follower"] == restarted.as_str()) {
            assert!(f["ack"]["count"].as_u64().unwrap() >= 5, "{context}");
        }
    }
    assert!(
        of("commits").iter().any(|c| c["leader"] == last.as_str()),
        "{context}"
    );
    // detect judges the same timeline: three leader changes in minutes are frequent;
    // the paused leader, if it spoke after its successor, was stale; nothing is critical.
    let out = etcd_trace(&["detect", capture.to_str().unwrap(), "--format", "json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    let findings: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rules: Vec<&str> = findings.iter().filter_map(|f| f["rule"].as_str()).collect();
    assert!(
        rules.contains(&"raft-frequent-elections"),
        "{rules:?}\n{context}"
    );
    assert!(!rules.contains(&"raft-two-leaders"), "{rules:?}\n{context}");
    assert_eq!(
        rules.contains(&"raft-stale-leader"),
        !of("stale_leader").is_empty(),
        "{rules:?}\n{context}"
    );
    // Each change of leader with its cause: the transfer, the pause, the kill.
    let cause = |term: u64| -> String {
        findings
            .iter()
            .find(|f| {
                f["rule"] == "raft-leader-change"
                    && f["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains(&format!(" in term {term},")))
            })
            .map(|f| f["summary"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no leader change for term {term}: {findings:#?}"))
    };
    assert!(cause(moved.raft_term).contains("handed over"), "{context}");
    let paused_cause = cause(after_pause.raft_term);
    assert!(
        paused_cause.contains("went silent"),
        "{paused_cause}\n{context}"
    );
    let killed_cause = cause(after_kill.raft_term);
    assert!(
        killed_cause.contains("process ended (etcd pid") && killed_cause.contains("SIGKILL"),
        "{killed_cause}\n{context}"
    );
    // timeline tells each election as it ended, in time order with everything else;
    // Perfetto has a track per member with the terms it led.
    let timeline = etcd_trace(&["timeline", capture.to_str().unwrap()]);
    assert!(timeline.status.success(), "{}", stderr(&timeline));
    let timeline = stdout(&timeline);
    let won: Vec<&str> = timeline
        .lines()
        .filter(|l| l.contains(" raft   term ") && l.contains(": won by "))
        .collect();
    assert_eq!(won.len(), leaders.len() - 1, "{timeline}");
    let times: Vec<f64> = timeline
        .lines()
        .take_while(|l| l.starts_with('+'))
        .map(|l| l[1..].split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{timeline}");
    let trace_path = dir.0.join("raft-trace.json");
    let out = etcd_trace(&[
        "timeline",
        capture.to_str().unwrap(),
        "--format",
        "perfetto",
        "-o",
        trace_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace_path).unwrap()).unwrap();
    let trace_events = trace["traceEvents"].as_array().unwrap();
    let tracks: std::collections::BTreeSet<&str> = trace_events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .filter(|n| n.starts_with("raft member "))
        .collect();
    assert_eq!(tracks.len(), 3, "{tracks:?}");
    for term in leaders.keys() {
        let name = format!("leader, term {term}");
        assert!(
            trace_events.iter().any(|e| e["name"] == name.as_str()),
            "{name}"
        );
    }
    // The kill and the restart are on the timeline.
    assert!(text.contains("killed by SIGKILL"), "{context}");
    assert!(
        text.contains("term ") && text.contains("after a leadership transfer"),
        "{context}"
    );
}

#[test]
fn raft_names_every_term_s_leader_through_transfer_pause_and_kill() {
    if skip_without_root() {
        return;
    }
    leaders_change(false);
}

#[test]
fn raft_follows_a_tls_cluster_from_plaintext() {
    if skip_without_root() {
        return;
    }
    leaders_change(true);
}

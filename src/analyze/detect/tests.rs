//! Rule logic on hand-built RPC records and packets, the rules file, and a run of random
//! records that must not panic.

use super::bulk::{covers, whole_keyspace};
use super::*;
use crate::analyze::correlate::{CorrelatedCall, WalLink};
use crate::analyze::rpc::{MessageDirection, RecordKind, RpcBody};
use crate::capture::{Direction, Packet, TcpFlags};
use crate::decode::etcdpb::kv::request_op::Request as TxnOp;
use crate::decode::etcdpb::{
    watch_request, AuthenticateRequest, DefragmentRequest, EtcdMessage, KeyValue,
    LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};

const S: u64 = 1_000_000_000;

pub(crate) use crate::analyze::test_wire::rpc_call as call;

pub(crate) fn range(key: &[u8], end: &[u8], limit: i64) -> Option<EtcdMessage> {
    Some(EtcdMessage::RangeRequest(RangeRequest {
        key: key.to_vec(),
        range_end: end.to_vec(),
        limit,
        ..Default::default()
    }))
}

pub(crate) fn plain(c: RpcCall) -> CorrelatedCall {
    CorrelatedCall {
        call: c,
        op: None,
        wal: None,
        unlinked: None,
    }
}

fn run(rules: Rules, calls: Vec<CorrelatedCall>) -> Vec<Finding> {
    let mut d = Detector::new(rules, vec![2379, 2380]);
    let mut out = Vec::new();
    for c in &calls {
        d.push_call(c, &mut out);
    }
    d.finish(&Default::default(), &mut out);
    out
}

fn rules(overlay: &str) -> Rules {
    Rules::from_yaml(Some(overlay)).unwrap()
}

/// (rule, client, severity) of each finding, sorted.
fn triples(f: &[Finding]) -> Vec<(&'static str, &str, Severity)> {
    let mut got: Vec<_> = f
        .iter()
        .map(|f| (f.rule, f.client.as_str(), f.severity))
        .collect();
    got.sort();
    got
}

fn ids(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.rule).collect()
}

#[test]
fn builtin_rules_parse_and_overlay_field_by_field() {
    let r = Rules::builtin();
    assert_eq!(r.rules.auth_failed_login.threshold, 5);
    assert_eq!(r.rules.auth_failed_login.window, 60 * S);
    assert_eq!(r.peer_port, 2380);
    let r = rules("rules:\n  auth-failed-login:\n    threshold: 2\n");
    assert_eq!(r.rules.auth_failed_login.threshold, 2);
    assert_eq!(
        r.rules.auth_failed_login.window,
        60 * S,
        "kept from the default"
    );
    assert!(Rules::from_yaml(Some("rules:\n  no-such-rule: {}\n")).is_err());
    assert!(Rules::from_yaml(Some("rules:\n  auth-disable:\n    thresold: 1\n")).is_err());
    assert!(Rules::from_yaml(Some("rules:\n  watch-storm:\n    window: soon\n")).is_err());
    assert!(Rules::from_yaml(Some("rules:\n  watch-storm:\n    threshold: 0\n")).is_err());
    assert!(Rules::from_yaml(Some("[1, 2]")).is_err());
    assert!(Rules::from_yaml(Some("")).is_ok());
    let r = rules("rules:\n  client-outside-networks:\n    networks: [10.0.0.0/8]\n");
    assert_eq!(r.rules.client_outside_networks.networks.len(), 1);
}

#[test]
fn range_coverage() {
    assert!(whole_keyspace(b"\0", b"\0"));
    assert!(whole_keyspace(b"", b"\0"));
    assert!(!whole_keyspace(b"a", b"\0"));
    let p = b"/registry/";
    assert!(covers(b"/registry/", b"/registry0", p));
    assert!(covers(b"/", b"0", p));
    assert!(covers(b"\0", b"\0", p));
    assert!(covers(b"/registry/", b"\0", p));
    assert!(!covers(b"/registry/pods/", b"/registry/pods0", p));
    assert!(!covers(b"/registry/", b"", p));
    assert!(!covers(b"/registry/a", b"/registry0", p));
}

#[test]
fn unbounded_prefix_read_is_high_and_limited_read_is_not() {
    let calls = vec![
        plain(call(
            "10.0.0.5:1000",
            S,
            "KV/Range",
            range(b"/registry/", b"/registry0", 0),
        )),
        plain(call(
            "10.0.0.6:1000",
            S,
            "KV/Range",
            range(b"/registry/", b"/registry0", 500),
        )),
        plain(call(
            "10.0.0.6:1001",
            S,
            "KV/Range",
            range(b"/registry/pods/", b"/registry/pods0", 0),
        )),
    ];
    let f = run(Rules::builtin(), calls);
    assert_eq!(ids(&f), ["bulk-range-unbounded"]);
    assert_eq!(f[0].client, "10.0.0.5");
    assert_eq!(f[0].severity, Severity::High);
}

#[test]
fn large_response_counts_keys() {
    let mut c = call("10.0.0.5:1000", S, "KV/Range", range(b"/a/", b"/a0", 5000));
    c.response = Some(RpcBody::Message(EtcdMessage::RangeResponse(
        RangeResponse {
            kvs: (0..2500)
                .map(|i| KeyValue {
                    key: format!("/a/{i}").into_bytes(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    )));
    let f = run(Rules::builtin(), vec![plain(c)]);
    assert_eq!(ids(&f), ["bulk-large-response"]);
    assert_eq!(f[0].volume.unwrap().keys, 2500);
}

#[test]
fn failed_logins_fire_at_the_threshold_within_the_window() {
    let login = |ts| {
        let mut c = call(
            "10.0.0.7:4000",
            ts,
            "Auth/Authenticate",
            Some(EtcdMessage::AuthenticateRequest(AuthenticateRequest {
                name: "root".into(),
                password: "guess".into(),
            })),
        );
        c.status = Some(3);
        plain(c)
    };
    // Four in a minute, then one much later: below the threshold.
    let slow: Vec<_> = (0..4)
        .map(|i| login(i * S))
        .chain([login(300 * S)])
        .collect();
    assert!(run(Rules::builtin(), slow).is_empty());
    let burst: Vec<_> = (0..12).map(|i| login(i * S)).collect();
    let f = run(Rules::builtin(), burst);
    assert_eq!(ids(&f), ["auth-failed-login"]);
    assert_eq!(f[0].events, 12, "later failures join the finding");
    assert_eq!(f[0].evidence.len(), 10, "evidence capped");
    assert_eq!(f[0].evidence_omitted, 2);
    assert!(f[0].evidence.iter().all(|e| !e.detail.contains("guess")));
    assert_eq!(f[0].start_ns, 0);
    assert_eq!(f[0].end_ns, 11 * S + 1_000_000);
}

#[test]
fn permission_denied_and_auth_disable() {
    let mut calls: Vec<_> = (0..3)
        .map(|i| {
            let mut c = call(
                "10.0.0.8:1",
                i * S,
                "KV/Put",
                Some(EtcdMessage::PutRequest(PutRequest::default())),
            );
            c.status = Some(7);
            plain(c)
        })
        .collect();
    calls.push(plain(call("10.0.0.8:1", 5 * S, "Auth/AuthDisable", None)));
    let f = run(Rules::builtin(), calls);
    let mut got = ids(&f);
    got.sort();
    assert_eq!(got, ["auth-denied", "auth-disable"]);
}

#[test]
fn a_token_used_from_two_addresses_is_flagged_without_printing_it() {
    let with_token = |client: &str, ts, token: &str| {
        let mut c = call(client, ts, "KV/Range", range(b"k", b"", 0));
        c.token = Some(token.into());
        plain(c)
    };
    let calls = vec![
        with_token("10.0.0.1:1", S, "tok-secret-1"),
        with_token("10.0.0.1:2", 2 * S, "tok-secret-1"),
        with_token("10.0.0.2:1", 3 * S, "tok-secret-2"),
        with_token("10.0.0.9:1", 4 * S, "tok-secret-1"),
        with_token("10.0.0.3:1", 5 * S, crate::analyze::rpc::REDACTED),
        with_token("10.0.0.4:1", 6 * S, crate::analyze::rpc::REDACTED),
    ];
    let f = run(Rules::builtin(), calls);
    assert_eq!(ids(&f), ["auth-token-reuse"]);
    assert_eq!(f[0].client, "10.0.0.9");
    let text = serde_json::to_string(&f[0]).unwrap();
    assert!(!text.contains("tok-secret"), "{text}");
    assert!(text.contains("10.0.0.1"), "{text}");
}

#[test]
fn single_key_enumeration() {
    let gets: Vec<_> = (0..150)
        .map(|i| {
            let key = format!("/registry/secrets/ns/s-{i}");
            plain(call(
                "10.0.0.5:1",
                i * 10_000_000,
                "KV/Range",
                range(key.as_bytes(), b"", 0),
            ))
        })
        .collect();
    let f = run(Rules::builtin(), gets);
    assert_eq!(ids(&f), ["enum-single-key-gets"]);
    assert!(f[0].events >= 150, "{}", f[0].events);
    // The same key read over and over is not enumeration.
    let same: Vec<_> = (0..300)
        .map(|i| {
            plain(call(
                "10.0.0.5:1",
                i * 10_000_000,
                "KV/Range",
                range(b"/x", b"", 0),
            ))
        })
        .collect();
    assert!(run(Rules::builtin(), same).is_empty());
}

#[test]
fn paging_through_secrets() {
    let pages: Vec<_> = (0..4)
        .map(|i| {
            let key = if i == 0 {
                b"/registry/secrets/".to_vec()
            } else {
                format!("/registry/secrets/ns/s-{i}\0").into_bytes()
            };
            plain(call(
                "10.0.0.5:1",
                i * S,
                "KV/Range",
                range(&key, b"/registry/secrets0", 2),
            ))
        })
        .collect();
    assert_eq!(
        ids(&run(Rules::builtin(), pages)),
        ["enum-sensitive-pagination"]
    );
}

#[test]
fn snapshot_and_keyspace_watch_respect_allowed_clients() {
    let mut snap = call("10.0.0.5:1", S, "Maintenance/Snapshot", None);
    snap.response = Some(RpcBody::SnapshotChunks {
        chunks: 30,
        blob_bytes: 3_000_000,
        remaining_bytes: 0,
    });
    let mut watch = call(
        "10.0.0.6:1",
        S,
        "Watch/Watch",
        Some(EtcdMessage::WatchRequest(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                },
            )),
        })),
    );
    watch.kind = RecordKind::Message {
        direction: MessageDirection::Request,
        index: 0,
    };
    let both = vec![plain(snap.clone()), plain(watch.clone())];
    let f = run(Rules::builtin(), both.clone());
    let mut got = ids(&f);
    got.sort();
    assert_eq!(got, ["bulk-snapshot", "bulk-watch-keyspace"]);
    assert_eq!(
        f.iter()
            .find(|f| f.rule == "bulk-snapshot")
            .unwrap()
            .volume
            .unwrap()
            .bytes,
        3_000_000
    );
    let allowed = rules(
        "rules:\n  bulk-snapshot: {allowed_clients: [10.0.0.5]}\n  bulk-watch-keyspace: {allowed_clients: [10.0.0.6]}\n",
    );
    assert!(run(allowed, both).is_empty());
}

#[test]
fn one_client_reading_far_more_than_the_others() {
    let read = |client: &str, ts, bytes| {
        let mut c = call(client, ts, "KV/Range", range(b"/a/", b"/a0", 100));
        c.response_bytes = bytes;
        plain(c)
    };
    let mut calls = Vec::new();
    for i in 0..20 {
        calls.push(read("10.0.0.5:1", i * S, 5_000_000));
        calls.push(read("10.0.0.6:1", i * S, 100_000));
    }
    let f = run(Rules::builtin(), calls);
    assert_eq!(ids(&f), ["bulk-client-volume"]);
    assert_eq!(f[0].client, "10.0.0.5");
    assert_eq!(f[0].volume.unwrap().bytes, 100_000_000);
}

#[test]
fn performance_rules() {
    let put = || RequestOp {
        request: Some(TxnOp::RequestPut(PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })),
    };
    let huge = EtcdMessage::TxnRequest(TxnRequest {
        compare: Vec::new(),
        success: (0..120).map(|_| put()).collect(),
        failure: Vec::new(),
    });
    let mut calls = vec![plain(call("10.0.0.5:1", S, "KV/Txn", Some(huge)))];
    calls.push(plain(call(
        "10.0.0.5:1",
        S,
        "Maintenance/Defragment",
        Some(EtcdMessage::DefragmentRequest(DefragmentRequest {})),
    )));
    for i in 0..600 {
        calls.push(plain(call(
            "10.0.0.6:1",
            S + i * 1_000_000,
            "Lease/LeaseGrant",
            Some(EtcdMessage::LeaseGrantRequest(LeaseGrantRequest {
                ttl: 10,
                id: 0,
            })),
        )));
    }
    for i in 0..40 {
        calls.push(plain(call(
            "10.0.0.7:1",
            S + i * 100_000_000,
            "KV/Range",
            range(b"/a/", b"/a0", 0),
        )));
    }
    let f = run(Rules::builtin(), calls);
    let mut got = ids(&f);
    got.sort();
    assert_eq!(
        got,
        [
            "lease-storm",
            "maintenance-defragment",
            "perf-huge-txn",
            "perf-unbounded-range"
        ]
    );
}

/// An acknowledged Put linked to WAL entry 2/7 of pid 1, durable `fsync` after `ts`.
fn linked_put(client: &str, ts: u64, fsync: u64) -> CorrelatedCall {
    CorrelatedCall {
        call: call(
            client,
            ts,
            "KV/Put",
            Some(EtcdMessage::PutRequest(PutRequest::default())),
        ),
        op: Some("put"),
        wal: Some(WalLink {
            term: 2,
            index: 7,
            member: crate::analyze::member::Member::process(1),
            file: "member/wal/0.wal".into(),
            write_ts_ns: ts,
            write_end_ns: ts,
            fsync_start_ns: Some(ts),
            fsync_ts_ns: Some(ts + fsync),
            fsync_ns: Some(fsync),
            backend_commit: None,
            how: "test",
            confidence: "high",
        }),
        unlinked: None,
    }
}

#[test]
fn fsync_dominance_needs_two_writers() {
    let write = linked_put;
    let mut calls = Vec::new();
    for i in 0..200 {
        calls.push(write("10.0.0.5:1", i * 100_000_000, 5_000_000));
        if i % 20 == 0 {
            calls.push(write("10.0.0.6:1", i * 100_000_000, 1_000_000));
        }
    }
    let f = run(Rules::builtin(), calls.clone());
    assert_eq!(ids(&f), ["fsync-dominance"]);
    assert_eq!(f[0].client, "10.0.0.5");
    // The only writer is not "dominating" anyone.
    calls.retain(|c| c.call.client.ip().to_string() == "10.0.0.5");
    assert!(run(Rules::builtin(), calls).is_empty());
}

fn packet(ts: u64, src: &str, dst: &str, flags: u8) -> Event {
    Event::Packet(Packet {
        ts_ns: ts,
        ifindex: 1,
        direction: Direction::Egress,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        seq: 0,
        ack: 0,
        flags: TcpFlags(flags),
        window: 0,
        payload_len: 0,
        payload: Default::default(),
    })
}

#[test]
fn peers_resets_and_networks_from_packets() {
    let r = rules(
        "rules:\n  peer-unknown-address: {members: [10.0.0.2]}\n  client-outside-networks: {networks: [10.0.0.0/24]}\n",
    );
    let mut d = Detector::new(r, vec![2379, 2380]);
    let mut out = Vec::new();
    let (syn, synack, rst) = (
        TcpFlags::SYN,
        TcpFlags::SYN | TcpFlags::ACK,
        TcpFlags::RST | TcpFlags::ACK,
    );
    let events = [
        // A member, and a stranger, on the peer port.
        packet(S, "10.0.0.2:40000", "10.0.0.1:2380", syn),
        packet(S, "10.0.0.1:2380", "10.0.0.2:40000", synack),
        packet(2 * S, "192.168.9.9:40001", "10.0.0.1:2380", syn),
        packet(2 * S, "10.0.0.1:2380", "192.168.9.9:40001", synack),
        // Refused attempts.
        packet(3 * S, "10.0.0.3:1", "10.0.0.4:2379", syn),
        packet(3 * S, "10.0.0.4:2379", "10.0.0.3:1", rst),
        packet(3 * S, "10.0.0.3:2", "10.0.0.4:2379", syn),
        packet(3 * S, "10.0.0.4:2379", "10.0.0.3:2", rst),
        packet(3 * S, "10.0.0.3:3", "10.0.0.4:2379", syn),
        packet(3 * S, "10.0.0.4:2379", "10.0.0.3:3", rst),
        // A client from outside 10.0.0.0/24.
        packet(4 * S, "172.16.0.1:5", "10.0.0.1:2379", syn),
    ];
    for e in &events {
        d.push(e, &mut out);
    }
    d.finish(&Default::default(), &mut out);
    assert_eq!(
        triples(&out),
        [
            ("client-outside-networks", "172.16.0.1", Severity::Medium),
            ("connection-reset", "10.0.0.3", Severity::Medium),
            ("peer-unknown-address", "192.168.9.9", Severity::High),
        ]
    );
}

#[test]
fn peers_without_a_member_list_are_low() {
    let mut d = Detector::new(Rules::builtin(), vec![2379, 2380]);
    let mut out = Vec::new();
    d.push(
        &packet(S, "192.168.9.9:40001", "10.0.0.1:2380", TcpFlags::SYN),
        &mut out,
    );
    d.push(
        &packet(
            S,
            "10.0.0.1:2380",
            "192.168.9.9:40001",
            TcpFlags::SYN | TcpFlags::ACK,
        ),
        &mut out,
    );
    d.finish(&Default::default(), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].severity, Severity::Low);
}

/// Random records through every rule: no panic, and findings stay well-formed.
#[test]
fn random_records_do_not_panic() {
    let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next();
    let methods = [
        "KV/Range",
        "KV/Txn",
        "Auth/Authenticate",
        "Auth/UserAdd",
        "Watch/Watch",
        "Lease/LeaseGrant",
        "KV/Compact",
        "Maintenance/Snapshot",
        "Maintenance/Defragment",
    ];
    let mut d = Detector::new(rules("evidence_limit: 3\n"), vec![2379, 2380]);
    let mut out = Vec::new();
    let mut ts = 0u64;
    for _ in 0..20_000 {
        ts = ts.saturating_add(next() % 50_000_000);
        let m = methods[(next() % methods.len() as u64) as usize];
        let key: Vec<u8> = (0..next() % 4).map(|_| (next() % 4) as u8).collect();
        let end: Vec<u8> = (0..next() % 3).map(|_| (next() % 3) as u8).collect();
        let client = format!("10.0.{}.{}:{}", next() % 3, next() % 5, next() % 65535);
        let mut c = call(&client, ts, m, range(&key, &end, (next() % 3) as i64));
        c.status = Some((next() % 17) as u32);
        if next() % 4 == 0 {
            c.token = Some(format!("t{}", next() % 5));
        }
        if next() % 3 == 0 {
            c.request = None;
        }
        c.response_bytes = next() % 10_000_000;
        d.push_call(&plain(c), &mut out);
        if next() % 50 == 0 {
            let p = packet(ts, &client, "10.0.0.1:2380", (next() % 32) as u8);
            d.push(&p, &mut out);
        }
    }
    d.finish(&Default::default(), &mut out);
    for f in &out {
        assert!(f.start_ns <= f.end_ns, "{f:?}");
        assert!(f.evidence.len() <= 3);
        assert!(!f.summary.is_empty());
    }
}

/// A consensus timeline with one of everything the raft rules judge.
fn troubled_cluster() -> crate::analyze::raft::RaftReport {
    use crate::analyze::member::Member;
    use crate::analyze::raft::{DiskAround, Election, RaftEvent, RaftReport, TermStart};
    let (a, b) = (Member::with_id(0xa), Member::with_id(0xb));
    let s = 1_000_000_000u64;
    let election = |term: u64, at: u64, winner: Member, previous: Member, slowest: u64| {
        RaftEvent::Election(Election {
            term,
            start_ns: at,
            end_ns: Some(at + s),
            duration_ns: Some(s),
            began: TermStart::Election,
            candidates: vec![winner],
            winner: Some(winner),
            previous_leader: Some(previous),
            previous_term: Some(term - 1),
            leaderless_ns: Some(s),
            votes: Vec::new(),
            unanswered: Vec::new(),
            disks: vec![DiskAround {
                member: Member {
                    pid: Some(7),
                    id: previous.id,
                },
                wal_fsyncs: 3,
                total_fsync_ns: slowest + 2_000_000,
                slowest_fsync_ns: slowest,
                slowest_start_ns: at - s / 2,
            }],
        })
    };
    RaftReport {
        events: vec![
            election(3, 10 * s, b, a, 800_000_000),
            election(4, 20 * s, a, b, 1_000_000),
            election(5, 30 * s, b, a, 2_000_000),
            RaftEvent::TwoLeaders {
                ts_ns: 31 * s,
                term: 5,
                members: [b, a],
            },
            RaftEvent::PeerRefused {
                ts_ns: 32 * s,
                status: 412,
                request: "stream message",
                client: "10.0.0.9:40000".into(),
                server: "10.0.0.1:2380".into(),
                from: Some(Member::with_id(0xc)),
                to: Some(a),
            },
        ],
        ..RaftReport::default()
    }
}

#[test]
fn raft_rules_judge_a_consensus_timeline() {
    let judged = |rules: Rules| {
        let mut episodes = Episodes::new(rules.evidence_limit);
        let mut out = Vec::new();
        let mut ctx = Ctx {
            rules: &rules,
            episodes: &mut episodes,
            out: &mut out,
        };
        raft::judge(&troubled_cluster(), &mut ctx);
        out
    };
    let out = judged(Rules::builtin());
    let mut found = ids(&out);
    found.sort_unstable();
    found.dedup();
    assert_eq!(
        found,
        [
            "raft-disk-stall",
            "raft-frequent-elections",
            "raft-leader-change",
            "raft-peer-refused",
            "raft-two-leaders"
        ]
    );
    // Each change of leader says why: a's loss of term 3 followed its 800 ms sync.
    let changes: Vec<&str> = out
        .iter()
        .filter(|f| f.rule == "raft-leader-change")
        .map(|f| f.summary.as_str())
        .collect();
    assert_eq!(changes.len(), 3);
    assert!(
        changes[0].contains("WAL sync took 800.00 ms"),
        "{}",
        changes[0]
    );
    assert!(changes[1].contains("not visible"), "{}", changes[1]);
    let two = out.iter().find(|f| f.rule == "raft-two-leaders").unwrap();
    assert_eq!(two.severity, Severity::Critical);
    // Only a's loss of term 3 came after a slow sync (800 ms; b's 1 ms is fine).
    let stall = out.iter().find(|f| f.rule == "raft-disk-stall").unwrap();
    assert_eq!(stall.client, "a");
    assert!(stall.summary.contains("800.00 ms"), "{}", stall.summary);
    let refused = out.iter().find(|f| f.rule == "raft-peer-refused").unwrap();
    assert!(refused.summary.contains("412") && refused.client == "c");

    // Thresholds come from the rules file.
    let out = judged(rules(
        "rules:\n  raft-frequent-elections:\n    threshold: 4\n  raft-disk-stall:\n    min_fsync: 1s\n  raft-two-leaders:\n    enabled: false\n  raft-leader-change:\n    enabled: false\n",
    ));
    assert_eq!(ids(&out), ["raft-peer-refused"]);
}

fn wal_sync(pid: u32, start_ns: u64, took: u64) -> crate::analyze::disk::DiskPhase {
    crate::analyze::disk::DiskPhase::Sync {
        start_ns,
        end_ns: start_ns + took,
        member: crate::analyze::member::Member::process(pid),
        file: "member/wal/0.wal".into(),
        kind: crate::capture::FileKind::Wal,
        fd: 9,
        call: "fdatasync",
    }
}

/// Phases and calls straight into a detector.
fn run_health(
    rules: Rules,
    phases: &[crate::analyze::disk::DiskPhase],
    calls: &[CorrelatedCall],
) -> Vec<Finding> {
    let mut d = Detector::new(rules, vec![2379, 2380]);
    let mut out = Vec::new();
    d.push_phases(phases, &mut out);
    for c in calls {
        d.push_call(c, &mut out);
    }
    d.finish(&Default::default(), &mut out);
    out
}

#[test]
fn a_slow_wal_disk_is_found_and_a_fast_one_is_not() {
    let ms = 1_000_000u64;
    // 100 syncs in a minute: pid 1 at 2 ms with two at 40 ms (p99 40 ms); pid 2 at 2 ms
    // with one of 1.5 s.
    let mut phases = Vec::new();
    for i in 0..100u64 {
        let took = if i % 50 == 7 { 40 * ms } else { 2 * ms };
        phases.push(wal_sync(1, i * 500 * ms, took));
        let took = if i == 30 { 1_500 * ms } else { 2 * ms };
        phases.push(wal_sync(2, i * 500 * ms + 1, took));
    }
    phases.sort_by_key(|p| p.start_ns());
    let out = run_health(Rules::builtin(), &phases, &[]);
    let mut found: Vec<(&str, &str)> = out.iter().map(|f| (f.rule, f.client.as_str())).collect();
    found.sort_unstable();
    // pid 2's p99 is 2 ms: its one stall is its own rule.
    assert_eq!(
        found,
        [
            ("disk-fsync-stall", "pid:2"),
            ("disk-wal-fsync-slow", "pid:1")
        ],
        "{out:#?}"
    );
    let slow = out
        .iter()
        .find(|f| f.rule == "disk-wal-fsync-slow")
        .unwrap();
    assert!(slow.summary.contains("p99 40.00 ms"), "{}", slow.summary);
    assert!(slow.evidence[0].detail.contains("40.00 ms"));
    // Raised, nothing is slow.
    let out = run_health(
        rules("rules:\n  disk-wal-fsync-slow:\n    p99: 50ms\n  disk-fsync-stall:\n    min: 2s\n"),
        &phases,
        &[],
    );
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn slow_requests_and_applies_behind_backend_commits() {
    use crate::analyze::correlate::BackendCommitWait;
    let ms = 1_000_000u64;
    let mut calls = Vec::new();
    for i in 0..6u64 {
        let mut c = linked_put("10.0.0.7:5000", i * 1_000 * ms, 2 * ms);
        // 150 ms to the reply, of which 120 ms behind a backend commit.
        c.call.end_ns = c.call.ts_ns + 150 * ms;
        c.call.latency_ns = Some(150 * ms);
        c.call.response = Some(RpcBody::Message(EtcdMessage::PutResponse(
            Default::default(),
        )));
        let durable = c.wal.as_ref().unwrap().fsync_ts_ns.unwrap();
        c.wal.as_mut().unwrap().backend_commit = Some(BackendCommitWait {
            start_ns: durable - ms,
            end_ns: durable + 120 * ms,
            writes: 40,
            sync_ns: 110 * ms,
        });
        calls.push(c);
    }
    let out = run_health(Rules::builtin(), &[], &calls);
    let mut found: Vec<&str> = out.iter().map(|f| f.rule).collect();
    found.sort_unstable();
    assert_eq!(
        found,
        ["apply-behind-backend-commit", "slow-request"],
        "{out:#?}"
    );
    let held = out
        .iter()
        .find(|f| f.rule == "apply-behind-backend-commit")
        .unwrap();
    assert!(held.evidence[0]
        .detail
        .contains("behind a backend commit of 40 writes"));
    // Five of six are not enough at a threshold of seven.
    let out = run_health(
        rules("rules:\n  slow-request:\n    threshold: 7\n  apply-behind-backend-commit:\n    threshold: 7\n"),
        &[],
        &calls,
    );
    assert!(out.is_empty(), "{out:#?}");
}

/// A list of `prefix` without a limit answered at revision 41, by `client` at `ts`.
fn list_at_41(client: &str, ts: u64, prefix: &[u8]) -> CorrelatedCall {
    let end = crate::decode::etcdpb::prefix_range_end(prefix);
    let mut c = call(client, ts, "KV/Range", range(prefix, &end, 0));
    c.response = Some(RpcBody::Message(EtcdMessage::RangeResponse(
        crate::decode::etcdpb::kv::RangeResponse {
            header: Some(crate::decode::etcdpb::kv::ResponseHeader {
                revision: 41,
                ..Default::default()
            }),
            ..Default::default()
        },
    )));
    plain(c)
}

/// A watch of `prefix` from `revision`, by `client` at `ts`.
fn watch_from(client: &str, ts: u64, prefix: &[u8], revision: i64) -> CorrelatedCall {
    use crate::decode::etcdpb::watch_request::RequestUnion;
    let create = crate::decode::etcdpb::WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: crate::decode::etcdpb::prefix_range_end(prefix),
        start_revision: revision,
        ..Default::default()
    };
    let mut c = call(
        client,
        ts,
        "Watch/Watch",
        Some(EtcdMessage::WatchRequest(
            crate::decode::etcdpb::WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            },
        )),
    );
    c.kind = RecordKind::Message {
        direction: MessageDirection::Request,
        index: 0,
    };
    plain(c)
}

#[test]
fn a_list_then_a_watch_from_its_revision_is_a_cache_not_a_bulk_read() {
    let secrets = b"/registry/secrets/".as_slice();
    // The API server: a list, then a watch from the next revision.
    let calls = vec![
        list_at_41("10.0.0.5:1000", S, secrets),
        watch_from("10.0.0.5:1001", S + 50_000_000, secrets, 42),
        // Another client lists the same and never watches: a bulk read.
        list_at_41("10.0.0.9:1000", S + 60_000_000, secrets),
        // A third watches, but from elsewhere in history: not its list's revision.
        list_at_41("10.0.0.7:1000", S + 70_000_000, secrets),
        watch_from("10.0.0.7:1001", S + 80_000_000, secrets, 3),
    ];
    let f = run(Rules::builtin(), calls);
    assert_eq!(
        triples(&f),
        [
            ("bulk-list-then-watch", "10.0.0.5", Severity::Low),
            ("bulk-range-unbounded", "10.0.0.7", Severity::High),
            ("bulk-range-unbounded", "10.0.0.9", Severity::High),
        ],
        "{f:#?}"
    );
    let cache = f.iter().find(|f| f.rule == "bulk-list-then-watch").unwrap();
    assert!(cache.summary.contains("cache priming itself"));
    assert!(cache.evidence[0]
        .detail
        .contains("watched from revision 42"));
}

#[test]
fn a_trusted_client_s_findings_are_rated_low_and_say_so() {
    let secrets = b"/registry/secrets/".as_slice();
    let calls = || {
        vec![
            list_at_41("10.0.0.9:1000", S, secrets),
            list_at_41("10.1.2.3:1000", S, secrets),
        ]
    };
    let trusted = rules("trusted_clients: [\"10.1.0.0/16\"]\n");
    let f = run(trusted, calls());
    let mut got: Vec<(&str, Severity)> =
        f.iter().map(|f| (f.client.as_str(), f.severity)).collect();
    got.sort();
    assert_eq!(
        got,
        [("10.0.0.9", Severity::High), ("10.1.2.3", Severity::Low)]
    );
    let low = f.iter().find(|f| f.client == "10.1.2.3").unwrap();
    assert!(low
        .summary
        .ends_with("(a trusted client in the rules: rated low)"));
    assert!(Rules::from_yaml(Some("trusted_clients: [\"not-an-address\"]\n")).is_err());
}

use super::*;
use crate::capture::api::{MemberList, MemberStatus, MetricsSample};

fn at(ts_ns: u64, endpoint: &str, observed: ApiObservation) -> ApiEvent {
    ApiEvent {
        ts_ns,
        endpoint: endpoint.into(),
        observed,
    }
}

fn status(leader: u64, term: u64, errors: &[&str]) -> ApiObservation {
    ApiObservation::Status(MemberStatus {
        leader,
        raft_term: term,
        errors: errors.iter().map(|e| e.to_string()).collect(),
        db_size: 2 << 20,
        ..MemberStatus::default()
    })
}

/// /metrics with a WAL fsync histogram of cumulative `counts` at 1, 2, 4 ms and +Inf,
/// and `puts` Put calls (one of them failed).
fn metrics(counts: [u64; 4], puts: u64, leader_changes: u64) -> ApiObservation {
    let mut samples: Vec<Metric> = ["0.001", "0.002", "0.004", "+Inf"]
        .iter()
        .zip(counts)
        .map(|(le, n)| Metric::new(WAL_FSYNC, &[("le", le)], n as f64))
        .collect();
    let put = |code| {
        [
            ("grpc_code", code),
            ("grpc_method", "Put"),
            ("grpc_service", "etcdserverpb.KV"),
            ("grpc_type", "unary"),
        ]
    };
    samples.push(Metric::new(
        HANDLED,
        &put("OK"),
        puts.saturating_sub(1) as f64,
    ));
    samples.push(Metric::new(HANDLED, &put("Unavailable"), 1.0));
    samples.push(Metric::new(
        "etcd_server_leader_changes_seen_total",
        &[],
        leader_changes as f64,
    ));
    samples.push(Metric::new(QUOTA, &[], 4.0 * 1048576.0));
    ApiObservation::Metrics(MetricsSample {
        samples,
        left_out: 0,
    })
}

fn facts(events: &[ApiEvent]) -> Vec<ApiFact> {
    let mut state = ApiState::default();
    let mut out = Vec::new();
    for e in events {
        state.push(e, &mut out);
    }
    out
}

#[test]
fn leaders_are_told_once_per_term_and_stale_views_ignored() {
    let out = facts(&[
        at(1, "a", status(7, 2, &[])),
        at(2, "b", status(7, 2, &[])),
        at(3, "a", status(9, 3, &[])),
        // b still on the old term: not a change back.
        at(4, "b", status(7, 2, &[])),
        at(5, "a", status(0, 4, &[])),
        at(6, "a", status(0, 4, &[])),
    ]);
    let leaders: Vec<(u64, u64, Option<u64>)> = out
        .iter()
        .filter_map(|f| match f {
            ApiFact::Leader {
                leader,
                term,
                previous,
                ..
            } => Some((*leader, *term, *previous)),
            _ => None,
        })
        .collect();
    assert_eq!(leaders, [(7, 2, None), (9, 3, Some(7))]);
    let none = out
        .iter()
        .filter(|f| matches!(f, ApiFact::NoLeader { .. }))
        .count();
    assert_eq!(none, 1, "told when it starts, not at every poll");
}

#[test]
fn alarms_are_told_when_they_change() {
    let out = facts(&[
        at(1, "a", status(7, 2, &[])),
        at(2, "a", status(7, 2, &["NOSPACE"])),
        at(3, "a", status(7, 2, &["NOSPACE"])),
        at(4, "a", status(7, 2, &[])),
    ]);
    let alarms: Vec<Vec<String>> = out
        .iter()
        .filter_map(|f| match f {
            ApiFact::Alarm { errors, .. } => Some(errors.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(alarms, [vec!["NOSPACE".to_string()], vec![]]);
}

#[test]
fn intervals_are_the_differences_of_two_polls() {
    let out = facts(&[
        at(1_000, "a", metrics([10, 12, 12, 12], 5, 1)),
        at(2_000, "a", status(7, 2, &[])),
        // 30 more fsyncs: 20 under 1 ms, 5 under 2 ms, 3 under 4 ms, 2 above.
        at(3_000, "a", metrics([30, 37, 40, 42], 15, 2)),
    ]);
    let (wal, calls, changes) = out
        .iter()
        .find_map(|f| match f {
            ApiFact::Interval {
                wal_fsync,
                calls,
                leader_changes,
                since_ns,
                ..
            } => {
                assert_eq!(*since_ns, 1_000);
                Some((wal_fsync.clone(), calls.clone(), *leader_changes))
            }
            _ => None,
        })
        .expect("an interval");
    let counts: Vec<u64> = wal.bounds.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [20, 5, 3, 2]);
    assert_eq!(wal.count(), 30);
    assert_eq!(wal.quantile_ns(0.5), Some(1_000_000));
    assert_eq!(wal.quantile_ns(0.9), Some(4_000_000));
    assert_eq!(wal.quantile_ns(0.99), None, "above the largest bound");
    assert_eq!(wal.at_least(0.002), 5);
    assert_eq!(calls["/etcdserverpb.KV/Put"], BTreeMap::from([(0, 10)]));
    assert_eq!(changes, 1);
    // The quota came with the first poll: the Status after it compares the size.
    assert!(out.iter().any(|f| matches!(
        f,
        ApiFact::DbSize {
            size: 2097152,
            quota: 4194304,
            ..
        }
    )));
}

#[test]
fn a_restarted_member_counts_from_zero() {
    let out = facts(&[
        at(1, "a", metrics([100, 100, 100, 100], 50, 3)),
        at(2, "a", metrics([4, 5, 5, 5], 2, 0)),
    ]);
    let ApiFact::Interval {
        wal_fsync, calls, ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(wal_fsync.count(), 5);
    // One failed call (UNAVAILABLE) after the restart, one OK.
    assert_eq!(
        calls["/etcdserverpb.KV/Put"],
        BTreeMap::from([(0, 1), (14, 1)])
    );
}

#[test]
fn membership_changes_are_told() {
    let member = |id: u64, learner: bool| ApiMember {
        id,
        name: format!("m{id}"),
        is_learner: learner,
        ..ApiMember::default()
    };
    let list = |m: Vec<ApiMember>| {
        ApiObservation::Members(MemberList {
            cluster_id: 1,
            members: m,
        })
    };
    let out = facts(&[
        at(1, "a", list(vec![member(1, false), member(2, false)])),
        at(2, "a", list(vec![member(1, false), member(2, false)])),
        at(3, "a", list(vec![member(1, false), member(3, true)])),
    ]);
    assert_eq!(out.len(), 2, "{out:#?}");
    let ApiFact::Members { added, first, .. } = &out[0] else {
        panic!()
    };
    assert!(*first);
    assert_eq!(added.len(), 2);
    let ApiFact::Members { added, removed, .. } = &out[1] else {
        panic!()
    };
    assert_eq!((added[0].id, removed[0].id), (3, 2));
}

use super::*;
use crate::analyze::test_wire::rpc_call;
use crate::capture::{Loss, LossSource, ReadItem};
use crate::decode::etcdpb::{EtcdMessage, PutRequest, RangeRequest};

const S: u64 = 1_000_000_000;

fn put(key: &str) -> Option<EtcdMessage> {
    Some(EtcdMessage::PutRequest(PutRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }))
}

fn get(key: &str) -> Option<EtcdMessage> {
    Some(EtcdMessage::RangeRequest(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }))
}

/// A state that has seen calls only (as the RPC decoder would hand them over), its
/// clock moved to each call's start.
fn state_of(calls: &[RpcCall], options: TopOptions) -> TopState {
    let mut state = TopState::new(&[2379, 2380], options);
    for c in calls {
        state.start_ns = Some(state.start_ns.map_or(c.ts_ns, |s| s.min(c.ts_ns)));
        state.now_ns = state.now_ns.max(c.ts_ns);
        state.count(c);
    }
    state
}

#[test]
fn rates_are_over_the_last_window_of_capture_time() {
    // 100 s of one Put a second, then 10 s of ten Ranges a second.
    let mut calls = Vec::new();
    for s in 0..100 {
        calls.push(rpc_call(
            "10.0.0.2:1000",
            1000 * S + s * S,
            "KV/Put",
            put("/a/b"),
        ));
    }
    for s in 100..110 {
        for i in 0..10 {
            let ts = 1000 * S + s * S + i * (S / 10);
            calls.push(rpc_call("10.0.0.3:1000", ts, "KV/Range", get("/a/b")));
        }
    }
    let snap = state_of(&calls, TopOptions::default()).snapshot();
    let put = snap
        .methods
        .iter()
        .find(|m| m.method.ends_with("/Put"))
        .unwrap();
    let range = snap
        .methods
        .iter()
        .find(|m| m.method.ends_with("/Range"))
        .unwrap();
    assert_eq!((put.requests, range.requests), (100, 100));
    // The window is the last 10 s (seconds 100..=109): no Put there, ten Ranges a second.
    assert_eq!(put.rate_per_s, 0.0);
    assert!(
        (range.rate_per_s - 10.0).abs() < 1e-9,
        "{}",
        range.rate_per_s
    );
    assert_eq!(
        snap.methods[0].method, "/etcdserverpb.KV/Range",
        "busiest first"
    );

    // Quiet capture time moves the window on: the Ranges fall out of it.
    let mut later = state_of(&calls, TopOptions::default());
    later.advance(1114 * S);
    let range = later
        .snapshot()
        .methods
        .into_iter()
        .find(|m| m.method.ends_with("/Range"));
    assert!(
        (range.unwrap().rate_per_s - 5.0).abs() < 1e-9,
        "5 of the last 10 s"
    );
    later.advance(1000 * S);
    assert_eq!(later.now_ns(), 1114 * S, "the clock never goes back");

    // A capture shorter than the window: the rate is over what it covers.
    let short = state_of(&calls[..3], TopOptions::default()).snapshot();
    assert!((short.methods[0].rate_per_s - 1.0).abs() < 1e-9);
}

#[test]
fn top_lists_are_ordered_and_cut() {
    let mut calls = Vec::new();
    // Client .2: 5 small calls; .3: 3 calls with large responses; .4: 1 call.
    for i in 0..5 {
        calls.push(rpc_call("10.0.0.2:1000", S + i, "KV/Put", put("/a/x")));
    }
    for i in 0..3 {
        let mut c = rpc_call("10.0.0.3:1000", S + 10 + i, "KV/Range", get("/b/y"));
        c.response_bytes = 1_000_000;
        calls.push(c);
    }
    calls.push(rpc_call("10.0.0.4:7", S + 20, "KV/Range", get("/c/z")));
    let snap = state_of(
        &calls,
        TopOptions {
            top: 2,
            prefix_depth: 1,
        },
    )
    .snapshot();
    let keys = |rows: &[KeyRow]| rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&snap.clients_by_requests), ["10.0.0.2", "10.0.0.3"]);
    assert_eq!(keys(&snap.clients_by_bytes), ["10.0.0.3", "10.0.0.2"]);
    assert_eq!(snap.clients_by_bytes[0].bytes, 3 * (1_000_000 + 10));
    assert_eq!(snap.clients_by_requests[0].requests, 5);
    assert_eq!(keys(&snap.prefixes), ["/a/", "/b/"]);
    // Every method is listed, whatever --top says.
    assert_eq!(snap.methods.len(), 2);
}

#[test]
fn prefixes_follow_the_depth() {
    let calls = [
        rpc_call("10.0.0.2:1", S, "KV/Put", put("/registry/pods/default/a")),
        rpc_call("10.0.0.2:1", S + 1, "KV/Put", put("/registry/pods/kube/b")),
        rpc_call("10.0.0.2:1", S + 2, "KV/Put", put("/registry/leases/c")),
        rpc_call("10.0.0.2:1", S + 3, "KV/Range", get("\0")),
        rpc_call("10.0.0.2:1", S + 4, "KV/Put", put("flat")),
    ];
    let prefixes = |depth| {
        let mut rows: Vec<(String, u64)> = state_of(
            &calls,
            TopOptions {
                top: 10,
                prefix_depth: depth,
            },
        )
        .snapshot()
        .prefixes
        .into_iter()
        .map(|r| (r.key, r.requests))
        .collect();
        rows.sort();
        rows
    };
    let owned = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        prefixes(1),
        owned(&[
            ("(flat keys)", 1),
            ("(whole keyspace)", 1),
            ("/registry/", 3)
        ])
    );
    assert_eq!(
        prefixes(2),
        owned(&[
            ("(flat keys)", 1),
            ("(whole keyspace)", 1),
            ("/registry/leases/", 1),
            ("/registry/pods/", 2),
        ])
    );
    assert_eq!(
        prefixes(3)[3..],
        owned(&[("/registry/pods/default/", 1), ("/registry/pods/kube/", 1),])
    );
}

#[test]
fn streams_count_requests_and_message_bytes_once() {
    let mut open = rpc_call("10.0.0.2:1", S, "Lease/LeaseKeepAlive", None);
    open.kind = RecordKind::Message {
        direction: MessageDirection::Request,
        index: 0,
    };
    open.request_bytes = 20;
    open.response_bytes = 0;
    let mut reply = open.clone();
    reply.kind = RecordKind::Message {
        direction: MessageDirection::Response,
        index: 0,
    };
    reply.request_bytes = 0;
    reply.response_bytes = 30;
    let mut end = open.clone();
    end.kind = RecordKind::StreamEnd {
        requests: 1,
        responses: 1,
    };
    end.request_bytes = 20;
    end.response_bytes = 30;
    end.latency_ns = Some(60 * S);
    let snap = state_of(&[open, reply, end], TopOptions::default()).snapshot();
    let m = &snap.methods[0];
    assert_eq!((m.requests, m.bytes), (1, 50));
    assert_eq!(m.latency_count, 0, "a stream's length is no call latency");
}

#[test]
fn latency_quantiles_and_errors() {
    let mut calls = Vec::new();
    for i in 1..=100u64 {
        let mut c = rpc_call("10.0.0.2:1", S + i, "KV/Put", put("/a"));
        c.latency_ns = Some(i * 1_000_000);
        if i % 10 == 0 {
            c.status = Some(14);
        }
        calls.push(c);
    }
    let m = &state_of(&calls, TopOptions::default()).snapshot().methods[0];
    let near = |got: Option<u64>, want: u64| {
        let got = got.unwrap();
        got <= want && want - got <= want / 32
    };
    assert!(near(m.p50_ns, 50_000_000), "{:?}", m.p50_ns);
    assert!(near(m.p99_ns, 99_000_000), "{:?}", m.p99_ns);
    assert_eq!((m.errors, m.latency_count), (10, 100));
}

#[test]
fn losses_are_counted() {
    let mut state = TopState::new(&[2379], TopOptions::default());
    state.push(ReadItem::Event(Event::Loss(Loss {
        ts_ns: 5 * S,
        source: LossSource::Kernel,
        count: 7,
    })));
    state.push(ReadItem::Damaged(Damage {
        offset: 100,
        reason: "bad CRC".into(),
        events_lost: Some(40),
        ts_range: None,
    }));
    state.finish();
    let snap = state.snapshot();
    assert_eq!(snap.losses.kernel_lost, 7);
    assert_eq!(
        (snap.losses.damaged_regions, snap.losses.damaged_events),
        (1, 40)
    );
    assert!(snap.losses.any());
    assert!(snap.finished);
    assert_eq!((snap.start_ns, snap.now_ns, snap.events), (5 * S, 5 * S, 1));
}

#[test]
fn clients_beyond_the_bound_become_others() {
    let mut state = TopState::new(&[2379], TopOptions::default());
    for i in 0..(MAX_KEYS as u32 + 5) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let c = rpc_call(&format!("{ip}:1"), S, "KV/Put", None);
        state.count(&c);
    }
    let snap = state.snapshot();
    assert_eq!(state.clients.map.len(), MAX_KEYS);
    assert_eq!(state.clients.others.requests, 5);
    assert_eq!(snap.clients_by_requests.len(), 10);
}

#[test]
fn kernel_wal_syncs_of_every_data_dir_add_up() {
    use crate::capture::latency::{LatencyHistogram, LatencyKind};
    let h = |dir: &str, kind, buckets: Vec<u64>| LatencyHistogram {
        data_dir: dir.into(),
        kind,
        buckets,
        sum_ns: 0,
    };
    let mut state = TopState::new(&[2379], TopOptions::default());
    assert!(
        state.snapshot().kernel_wal_sync.is_none(),
        "none without an index"
    );
    let mut two_ms = vec![0; 36];
    two_ms[21] = 3;
    let mut a = vec![0; 36];
    a[10] = 97;
    state.set_kernel_histograms(&[
        h("/a", LatencyKind::WalSync, a),
        h("/a", LatencyKind::DbSync, vec![5; 36]),
        h("/b", LatencyKind::WalSync, two_ms),
        h("/c", LatencyKind::WalSync, vec![1; 8]),
    ]);
    let k = state.snapshot().kernel_wal_sync.unwrap();
    assert_eq!(
        k.count, 100,
        "WAL syncs of /a and /b; /c's shape cannot be added"
    );
    assert_eq!(k.p50.unwrap().index, 10);
    assert_eq!(k.p99.unwrap().index, 21);
}

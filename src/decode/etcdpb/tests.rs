//! Tests of the etcd message registry, decoding, JSON mapping and helpers.

use super::*;
use serde_json::json;

fn header() -> ResponseHeader {
    ResponseHeader {
        cluster_id: 14841639068965178418,
        member_id: 10276657743932975437,
        revision: 6,
        raft_term: 2,
    }
}

#[test]
fn protocols_example_bytes_are_put_foo_bar() {
    let bytes = [0x0a, 0x03, 0x66, 0x6f, 0x6f, 0x12, 0x03, 0x62, 0x61, 0x72];
    let msg = decode_request("/etcdserverpb.KV/Put", &bytes).unwrap();
    let EtcdMessage::PutRequest(put) = &msg else {
        panic!("not a PutRequest: {msg:?}");
    };
    assert_eq!(put.key, b"foo");
    assert_eq!(put.value, b"bar");
    assert_eq!(msg.key(), Some(&b"foo"[..]));
    assert_eq!(msg.type_name(), "etcdserverpb.PutRequest");
    assert_eq!(msg.to_json(), json!({"key": "Zm9v", "value": "YmFy"}));
}

#[test]
fn registry_lists_every_service() {
    for m in METHODS {
        assert_eq!(m.path, format!("/{}/{}", m.service, m.method));
        assert_eq!(method(m.path), Some(m));
        // Every method decodes an empty body (all fields default) both ways.
        assert_eq!(
            decode_request(m.path, &[]).unwrap().type_name(),
            m.request_type
        );
        assert_eq!(
            decode_response(m.path, &[]).unwrap().type_name(),
            m.response_type
        );
    }
    let services: std::collections::BTreeSet<_> = METHODS.iter().map(|m| m.service).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        [
            "etcdserverpb.Auth",
            "etcdserverpb.Cluster",
            "etcdserverpb.KV",
            "etcdserverpb.Lease",
            "etcdserverpb.Maintenance",
            "etcdserverpb.Watch",
            "grpc.health.v1.Health",
            "v3electionpb.Election",
            "v3lockpb.Lock",
        ]
    );
    assert_eq!(
        method("/etcdserverpb.Watch/Watch").unwrap().kind,
        StreamKind::Bidi
    );
    assert_eq!(
        method("/etcdserverpb.Maintenance/Snapshot").unwrap().kind,
        StreamKind::ServerStream
    );
    assert!(method("/etcdserverpb.KV/Put").unwrap().mutating);
    assert!(!method("/etcdserverpb.KV/Range").unwrap().mutating);
    assert_eq!(METHODS.len(), 51);
    let observe = method("/v3electionpb.Election/Observe").unwrap();
    assert_eq!(observe.request_type, "v3electionpb.LeaderRequest");
    assert_eq!(observe.response_type, "v3electionpb.LeaderResponse");
    let hash_kv = method("/etcdserverpb.Maintenance/HashKV").unwrap();
    assert_eq!(hash_kv.response_type, "etcdserverpb.HashKVResponse");
}

#[test]
fn unknown_method_and_malformed_body_are_told_apart() {
    let err = decode_request("/foo.Bar/Baz", &[]).unwrap_err();
    assert!(matches!(err, EtcdDecodeError::UnknownMethod { ref path } if path == "/foo.Bar/Baz"));
    // Field 1 (key) claims 5 bytes but only 1 follows.
    let err = decode_request("/etcdserverpb.KV/Put", &[0x0a, 0x05, 0x66]).unwrap_err();
    match err {
        EtcdDecodeError::Malformed { path, message, .. } => {
            assert_eq!(path, "/etcdserverpb.KV/Put");
            assert_eq!(message, "request PutRequest");
        }
        other => panic!("unexpected {other:?}"),
    }
    let long = "/".repeat(10_000);
    let EtcdDecodeError::UnknownMethod { path } = decode_request(&long, &[]).unwrap_err() else {
        panic!("expected UnknownMethod");
    };
    assert_eq!(path.len(), 256);
}

#[test]
fn range_response_round_trip_and_json() {
    let resp = RangeResponse {
        header: Some(header()),
        kvs: vec![KeyValue {
            key: b"foo".to_vec(),
            create_revision: 6,
            mod_revision: 6,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    let msg = decode_response("/etcdserverpb.KV/Range", &resp.encode_to_vec()).unwrap();
    assert_eq!(msg, EtcdMessage::RangeResponse(resp));
    assert_eq!(msg.kv_count(), Some(1));
    assert_eq!(msg.response_header().unwrap().revision, 6);
    assert_eq!(
        msg.to_json(),
        json!({
            "header": {
                "clusterId": "14841639068965178418",
                "memberId": "10276657743932975437",
                "revision": "6",
                "raftTerm": "2"
            },
            "kvs": [{
                "key": "Zm9v",
                "createRevision": "6",
                "modRevision": "6",
                "version": "1",
                "value": "YmFy"
            }],
            "count": "1"
        })
    );
}

#[test]
fn range_request_json_uses_enum_names_and_omits_defaults() {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        limit: 10,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Mod as i32,
        keys_only: true,
        ..Default::default()
    };
    let msg = decode_request("/etcdserverpb.KV/Range", &req.encode_to_vec()).unwrap();
    assert_eq!(
        msg.to_json(),
        json!({
            "key": "AA==",
            "rangeEnd": "AA==",
            "limit": "10",
            "sortOrder": "DESCEND",
            "sortTarget": "MOD",
            "keysOnly": true
        })
    );
    assert_eq!(msg.key(), Some(&[0u8][..]));
    assert_eq!(msg.range_end(), Some(&[0u8][..]));
    // An enum value this schema does not know prints as its number.
    let odd = RangeRequest {
        sort_order: 7,
        ..Default::default()
    };
    assert_eq!(serde_json::to_value(&odd).unwrap(), json!({"sortOrder": 7}));
}

#[test]
fn txn_json_flattens_oneofs_and_keeps_set_defaults() {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: b"k".to_vec(),
            target_union: Some(compare::TargetUnion::Version(0)),
            range_end: vec![],
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                lease: 7587869390329463046,
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        }],
    };
    let msg = decode_request("/etcdserverpb.KV/Txn", &txn.encode_to_vec()).unwrap();
    assert_eq!(msg.key(), Some(&b"k"[..]));
    assert_eq!(msg.range_end(), Some(&b""[..]));
    assert_eq!(
        msg.to_json(),
        json!({
            "compare": [{"key": "aw==", "version": "0"}],
            "success": [{"requestPut": {"key": "aw==", "value": "dg==", "lease": "7587869390329463046"}}],
            "failure": [{"requestRange": {"key": "aw=="}}]
        })
    );

    let resp = TxnResponse {
        header: Some(header()),
        succeeded: true,
        responses: vec![
            ResponseOp {
                response: Some(response_op::Response::ResponsePut(PutResponse {
                    header: Some(header()),
                    prev_kv: None,
                })),
            },
            ResponseOp {
                response: Some(response_op::Response::ResponseRange(RangeResponse {
                    kvs: vec![KeyValue::default(), KeyValue::default()],
                    ..Default::default()
                })),
            },
        ],
    };
    let msg = decode_response("/etcdserverpb.KV/Txn", &resp.encode_to_vec()).unwrap();
    assert_eq!(msg.kv_count(), Some(2));
    let json = msg.to_json();
    assert_eq!(json["succeeded"], json!(true));
    assert_eq!(
        json["responses"][0]["responsePut"]["header"]["revision"],
        json!("6")
    );
    assert_eq!(
        json["responses"][1]["responseRange"]["kvs"],
        json!([{}, {}])
    );
}

#[test]
fn watch_messages() {
    let req = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"/a".to_vec(),
                range_end: b"/b".to_vec(),
                start_revision: 3,
                filters: vec![FilterType::Nodelete as i32],
                prev_kv: true,
                ..Default::default()
            },
        )),
    };
    let msg = decode_request("/etcdserverpb.Watch/Watch", &req.encode_to_vec()).unwrap();
    assert_eq!(msg.key(), Some(&b"/a"[..]));
    assert_eq!(msg.range_end(), Some(&b"/b"[..]));
    assert_eq!(
        msg.to_json(),
        json!({"createRequest": {
            "key": "L2E=", "rangeEnd": "L2I=", "startRevision": "3",
            "filters": ["NODELETE"], "prevKv": true
        }})
    );
    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 0 },
        )),
    };
    assert_eq!(
        decode_request("/etcdserverpb.Watch/Watch", &cancel.encode_to_vec())
            .unwrap()
            .to_json(),
        json!({"cancelRequest": {}})
    );

    let resp = WatchResponse {
        header: Some(ResponseHeader {
            revision: 9,
            ..Default::default()
        }),
        watch_id: 1,
        events: vec![
            Event {
                r#type: EventType::Put as i32,
                kv: Some(KeyValue {
                    key: b"/a".to_vec(),
                    mod_revision: 9,
                    ..Default::default()
                }),
                prev_kv: None,
            },
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: b"/a".to_vec(),
                    ..Default::default()
                }),
                prev_kv: None,
            },
        ],
        ..Default::default()
    };
    let msg = decode_response("/etcdserverpb.Watch/Watch", &resp.encode_to_vec()).unwrap();
    assert_eq!(msg.kv_count(), Some(2));
    assert_eq!(
        msg.to_json(),
        json!({
            "header": {"revision": "9"},
            "watchId": "1",
            "events": [
                {"kv": {"key": "L2E=", "modRevision": "9"}},
                {"type": "DELETE", "kv": {"key": "L2E="}}
            ]
        })
    );
}

#[test]
fn lease_cluster_maintenance_json_names() {
    let grant = LeaseGrantRequest { ttl: 60, id: 0 };
    assert_eq!(
        decode_request("/etcdserverpb.Lease/LeaseGrant", &grant.encode_to_vec())
            .unwrap()
            .to_json(),
        json!({"TTL": "60"})
    );
    let ttl = LeaseTimeToLiveResponse {
        header: None,
        id: 5,
        ttl: 10,
        granted_ttl: 60,
        keys: vec![b"a".to_vec()],
    };
    assert_eq!(
        serde_json::to_value(&ttl).unwrap(),
        json!({"ID": "5", "TTL": "10", "grantedTTL": "60", "keys": ["YQ=="]})
    );
    let members = MemberListResponse {
        header: Some(header()),
        members: vec![Member {
            id: 10276657743932975437,
            name: "default".into(),
            peer_urls: vec!["http://localhost:2380".into()],
            client_urls: vec!["http://localhost:2379".into()],
            is_learner: false,
        }],
    };
    let msg =
        decode_response("/etcdserverpb.Cluster/MemberList", &members.encode_to_vec()).unwrap();
    assert_eq!(
        msg.to_json()["members"],
        json!([{
            "ID": "10276657743932975437",
            "name": "default",
            "peerURLs": ["http://localhost:2380"],
            "clientURLs": ["http://localhost:2379"]
        }])
    );
    let alarms = AlarmResponse {
        header: None,
        alarms: vec![AlarmMember {
            member_id: 1,
            alarm: AlarmType::Nospace as i32,
        }],
    };
    assert_eq!(
        serde_json::to_value(&alarms).unwrap(),
        json!({"alarms": [{"memberID": "1", "alarm": "NOSPACE"}]})
    );
    let status = StatusResponse {
        version: "3.4.23".into(),
        db_size: 20480,
        leader: 3,
        raft_index: 7,
        raft_term: 2,
        raft_applied_index: 7,
        db_size_in_use: 16384,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({
            "version": "3.4.23", "dbSize": "20480", "leader": "3", "raftIndex": "7",
            "raftTerm": "2", "raftAppliedIndex": "7", "dbSizeInUse": "16384"
        })
    );
    let hash = HashKVResponse {
        hash: 4_000_000_000,
        compact_revision: 2,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&hash).unwrap(),
        json!({"hash": 4_000_000_000u32, "compactRevision": "2"})
    );
    let perm = AuthRoleGetResponse {
        header: None,
        perm: vec![Permission {
            perm_type: PermissionType::Readwrite as i32,
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
        }],
    };
    assert_eq!(
        serde_json::to_value(&perm).unwrap(),
        json!({"perm": [{"permType": "READWRITE", "key": "YQ==", "rangeEnd": "Yg=="}]})
    );
    let health = HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    };
    let msg = decode_response("/grpc.health.v1.Health/Check", &health.encode_to_vec()).unwrap();
    assert_eq!(msg.to_json(), json!({"status": "SERVING"}));
    assert_eq!(msg.response_header(), None);
}

#[test]
fn redaction_replaces_secrets_only_when_set() {
    let req = AuthenticateRequest {
        name: "root".into(),
        password: "hunter2".into(),
    };
    let mut msg = decode_request("/etcdserverpb.Auth/Authenticate", &req.encode_to_vec()).unwrap();
    msg.redact();
    assert_eq!(
        msg.to_json(),
        json!({"name": "root", "password": "<redacted>"})
    );

    let resp = AuthenticateResponse {
        header: None,
        token: "abc.def".into(),
    };
    let mut msg =
        decode_response("/etcdserverpb.Auth/Authenticate", &resp.encode_to_vec()).unwrap();
    msg.redact();
    assert_eq!(msg.to_json(), json!({"token": "<redacted>"}));

    let add = AuthUserAddRequest {
        name: "u".into(),
        password: "p".into(),
        options: Some(UserAddOptions { no_password: false }),
        hashed_password: String::new(),
    };
    let mut msg = decode_request("/etcdserverpb.Auth/UserAdd", &add.encode_to_vec()).unwrap();
    msg.redact();
    assert_eq!(
        msg.to_json(),
        json!({"name": "u", "password": "<redacted>", "options": {}})
    );

    let change = AuthUserChangePasswordRequest {
        name: "u".into(),
        password: String::new(),
        hashed_password: "$2a$10$abc".into(),
    };
    let mut msg = decode_request(
        "/etcdserverpb.Auth/UserChangePassword",
        &change.encode_to_vec(),
    )
    .unwrap();
    msg.redact();
    assert_eq!(
        msg.to_json(),
        json!({"name": "u", "hashedPassword": "<redacted>"})
    );

    // Redaction leaves other messages alone.
    let mut put = decode_request("/etcdserverpb.KV/Put", &[0x0a, 0x01, 0x61]).unwrap();
    let before = put.clone();
    put.redact();
    assert_eq!(put, before);
}

#[test]
fn describe_range_cases() {
    assert_eq!(describe_range(b"foo", b""), "foo");
    assert_eq!(describe_range(&[0], &[0]), "(whole keyspace)");
    assert_eq!(describe_range(b"foo", &[0]), ">= foo");
    assert_eq!(
        describe_range(b"/registry/", b"/registry0"),
        "prefix /registry/*"
    );
    assert_eq!(describe_range(b"a\xff", b"b"), "prefix a\\xff*");
    assert_eq!(describe_range(b"a", b"c"), "[a, c)");
    assert_eq!(describe_range(b"\x01k", b""), "\\x01k");
    assert_eq!(describe_range("ключ".as_bytes(), b""), "ключ");
    assert_eq!(describe_range(b"a\\b\xfe", b""), "a\\\\b\\xfe");
    assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
}

fn snapshot_bytes(blob_len: usize) -> Vec<u8> {
    SnapshotResponse {
        header: Some(header()),
        remaining_bytes: 1_000_000,
        blob: vec![0xab; blob_len],
        version: String::new(),
    }
    .encode_to_vec()
}

#[test]
fn snapshot_chunk_summary_full_and_cut() {
    let full = snapshot_bytes(32 * 1024);
    let chunk = snapshot_chunk_summary(&full).unwrap();
    assert_eq!(chunk.header, Some(header()));
    assert_eq!(chunk.remaining_bytes, 1_000_000);
    assert_eq!(chunk.blob_len, 32 * 1024);
    assert_eq!(chunk.blob_present, 32 * 1024);
    assert!(!chunk.truncated);

    // Only the first 100 bytes kept: the header and the blob's length prefix survive.
    let cut = snapshot_chunk_summary(&full[..100]).unwrap();
    assert_eq!(cut.header, Some(header()));
    assert_eq!(cut.remaining_bytes, 1_000_000);
    assert_eq!(cut.blob_len, 32 * 1024);
    assert!(cut.blob_present < 100);
    assert!(cut.truncated);

    // Every prefix summarises without error and never claims more than it saw.
    for n in 0..=full.len().min(200) {
        let c = snapshot_chunk_summary(&full[..n]).unwrap();
        assert!(c.blob_present <= c.blob_len);
        // A cut exactly between two fields cannot be told from the end of the message.
        assert!(!c.truncated || n < full.len());
    }

    // A group wire type is malformed, not truncated.
    assert!(snapshot_chunk_summary(&[0x0b]).is_err());
}

use crate::test_rng::XorShift;

/// Up to `max_len` random bytes.
fn random_bytes(rng: &mut XorShift, max_len: usize) -> Vec<u8> {
    let len = rng.index(max_len + 1);
    rng.bytes(len)
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let seeds: Vec<Vec<u8>> = vec![
        snapshot_bytes(64),
        RangeResponse {
            header: Some(header()),
            kvs: vec![KeyValue::default()],
            ..Default::default()
        }
        .encode_to_vec(),
        TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest::default())),
            }],
            ..Default::default()
        }
        .encode_to_vec(),
    ];
    for m in METHODS {
        for i in 0..300 {
            let bytes = if i % 2 == 0 {
                random_bytes(&mut rng, 64)
            } else {
                let mut b = seeds[i % seeds.len()].clone();
                let flips = rng.next() % 4 + 1;
                for _ in 0..flips {
                    if b.is_empty() {
                        break;
                    }
                    let at = usize::try_from(rng.next() % b.len() as u64).unwrap();
                    b[at] = rng.next() as u8;
                }
                b
            };
            for msg in [
                decode_request(m.path, &bytes),
                decode_response(m.path, &bytes),
            ]
            .into_iter()
            .flatten()
            {
                let _ = msg.to_json();
                let _ = msg.key();
                let _ = msg.range_end();
                let _ = msg.kv_count();
                let _ = msg.response_header();
                let mut msg = msg;
                msg.redact();
                if let (Some(k), Some(e)) = (msg.key(), msg.range_end()) {
                    let _ = describe_range(k, e);
                }
            }
            let _ = snapshot_chunk_summary(&bytes);
        }
    }
}

#[test]
fn raft_internal_request_summary_and_v2_fallback() {
    use super::raft_internal::*;
    let req = InternalRaftRequest {
        header: Some(RequestHeader {
            id: 0x1234,
            ..Default::default()
        }),
        put: Some(PutRequest {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            lease: 9,
            ..Default::default()
        }),
        ..Default::default()
    };
    let EntryRequest::Internal(decoded) = decode_entry_data(&req.encode_to_vec()).unwrap() else {
        panic!("expected an InternalRaftRequest");
    };
    let s = decoded.summary();
    assert_eq!(s.id, 0x1234);
    assert_eq!(s.op, "put");
    assert_eq!(s.key, Some(&b"foo"[..]));
    assert_eq!(s.value_len, Some(3));
    assert_eq!(s.lease, Some(9));
    assert_eq!(
        serde_json::to_value(&decoded).unwrap(),
        json!({"header": {"ID": "4660"}, "put": {"key": "Zm9v", "value": "YmFy", "lease": "9"}})
    );

    // etcd 3.4 publishes member attributes as a bare v2 request.
    let v2 = V2Request {
        id: 77,
        method: "PUT".into(),
        path: "/0/members/8e9e05c52164694d/attributes".into(),
        val: "{\"name\":\"default\"}".into(),
        ..Default::default()
    };
    match decode_entry_data(&v2.encode_to_vec()).unwrap() {
        EntryRequest::V2(got) => assert_eq!(got, v2),
        other => panic!("expected v2, got {other:?}"),
    }

    let mut auth = InternalRaftRequest {
        authenticate: Some(InternalAuthenticateRequest {
            name: "root".into(),
            password: "pw".into(),
            simple_token: "tok".into(),
        }),
        ..Default::default()
    };
    assert_eq!(auth.op_name(), "authenticate");
    auth.redact();
    let a = auth.authenticate.as_ref().unwrap();
    assert_eq!(
        (a.password.as_str(), a.simple_token.as_str()),
        ("<redacted>", "<redacted>")
    );
    assert_eq!(InternalRaftRequest::default().op_name(), "empty");
}

#[test]
fn deeply_nested_txn_is_refused_not_overflowed() {
    // Build the bytes by hand, inside out, so the test itself does not recurse.
    let mut inner = PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    // RequestOp{request_put} once, then alternate TxnRequest{success} / RequestOp{request_txn}.
    let wrap = |tag: u32, body: &[u8]| {
        let mut out = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    };
    inner = wrap(2, &inner); // RequestOp.request_put
    for _ in 0..200 {
        inner = wrap(2, &inner); // TxnRequest.success
        inner = wrap(4, &inner); // RequestOp.request_txn
    }
    let txn = wrap(2, &inner); // the outer TxnRequest.success
    assert!(matches!(
        decode_request("/etcdserverpb.KV/Txn", &txn),
        Err(EtcdDecodeError::Malformed { .. })
    ));
}

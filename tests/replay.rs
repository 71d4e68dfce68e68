//! `etcd-trace replay`: the fixture capture decodes to exactly the RPCs its workload made
//! (its golden output is checked by tests/fixtures.rs), and a capture of a real etcd running a known
//! workload decodes to every expected method, key and status.
#![cfg(feature = "record")]

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::Value;

fn replay(args: &[&str]) -> (String, Vec<Value>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text_args = vec!["replay"];
    text_args.extend_from_slice(args);
    let text = std::process::Command::new(bin())
        .args(&text_args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(text.status.success(), "{text_args:?}: {}", stderr(&text));
    text_args.extend(["--format", "json"]);
    let json = std::process::Command::new(bin())
        .args(&text_args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(json.status.success(), "{text_args:?}: {}", stderr(&json));
    let records = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (stdout(&text), records)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The fixture's workload, RPC by RPC: method, request key, range end.
#[test]
fn basic_v1_replays_its_workload() {
    let (text, records) = replay(&["fixtures/basic-v1.etr"]);
    let expected: &[(&str, &[u8], &[u8])] = &[
        ("/etcdserverpb.KV/Put", b"foo", b""),
        ("/etcdserverpb.KV/Put", b"/registry/pods/default/web-1", b""),
        (
            "/etcdserverpb.KV/Put",
            b"/registry/secrets/default/token",
            b"",
        ),
        ("/etcdserverpb.KV/Range", b"foo", b""),
        ("/etcdserverpb.KV/Range", b"/registry/", b"/registry0"),
        ("/etcdserverpb.KV/Txn", b"foo", b""),
        ("/etcdserverpb.KV/DeleteRange", b"foo", b""),
        ("/etcdserverpb.KV/Range", b"\0", b"\0"),
    ];
    assert_eq!(records.len(), expected.len(), "{text}");
    for (r, (method, key, range_end)) in records.iter().zip(expected) {
        assert_eq!(r["method"], *method, "{r}");
        assert_eq!(r["status"], 0, "{r}");
        assert_eq!(r["inferred"], false, "{r}");
        assert_eq!(r["gaps"], false, "{r}");
        assert_eq!(r["record"], "call");
        assert!(r["latency_ns"].as_u64().is_some_and(|l| l > 0), "{r}");
        assert_eq!(r["server"], "127.0.0.1:2379");
        assert!(r["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        let req = &r["request"];
        if *method == "/etcdserverpb.KV/Txn" {
            assert_eq!(req["compare"][0]["key"], b64(key), "{r}");
            assert_eq!(req["success"][0]["requestPut"]["value"], b64(b"baz"), "{r}");
            assert_eq!(req["failure"][0]["requestPut"]["value"], b64(b"qux"), "{r}");
            assert_eq!(r["response"]["succeeded"], true, "{r}");
        } else {
            assert_eq!(req["key"], b64(key), "{r}");
            if !range_end.is_empty() {
                assert_eq!(req["rangeEnd"], b64(range_end), "{r}");
            }
        }
    }
    assert_eq!(records[4]["response"]["kvs"].as_array().unwrap().len(), 2);
    assert!(text.contains("8 RPC records: 8 decoded fully"), "{text}");
}

#[test]
fn filters_select_rpcs() {
    let (_, puts) = replay(&["fixtures/basic-v1.etr", "--method", "Put"]);
    assert_eq!(puts.len(), 3);
    let (_, kv) = replay(&["fixtures/basic-v1.etr", "--method", "/etcdserverpb.KV/*"]);
    assert_eq!(kv.len(), 8);
    let (_, reg) = replay(&["fixtures/basic-v1.etr", "--key-prefix", "/registry/"]);
    assert_eq!(reg.len(), 3);
    let (_, none) = replay(&["fixtures/basic-v1.etr", "--client", "10.9.9.9"]);
    assert!(none.is_empty());
    let (_, late) = replay(&["fixtures/basic-v1.etr", "--since", "0.05s"]);
    assert_eq!(late.len(), 3);
}

/// The method's records in a replay.
#[test]
fn replays_a_real_etcd_workload() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("replay");
    // A snaplen below the 10 KB value, to see cut bodies reported as partial.
    let rec = rig.record(&["--snaplen", "4096"]);
    let endpoint = format!("--endpoints={}", rig.etcd.endpoint);
    let etcdctl_os = |args: Vec<OsString>| {
        rig.in_netns("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(&endpoint)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let binary_key = vec![0xff, 0xfe, b'k'];
    let out = etcdctl_os(vec![
        "put".into(),
        OsString::from_vec(binary_key.clone()),
        "v".into(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let big = "x".repeat(10_000);
    rig.etcdctl(&["put", "big", &big]);
    rig.etcdctl(&["get", "big"]);
    let grant = rig.etcdctl(&["lease", "grant", "60"]);
    let id = stdout(&grant)
        .split_whitespace()
        .nth(1)
        .expect("lease <id> granted")
        .to_string();
    rig.etcdctl(&["lease", "keep-alive", "--once", &id]);
    rig.etcdctl(&["lease", "revoke", &id]);
    rig.etcdctl(&["member", "list"]);
    rig.etcdctl(&["endpoint", "status"]);
    let missing = rig
        .etcd
        .etcdctl(&rig.netns, &["lease", "revoke", "123"])
        .unwrap();
    assert!(
        !missing.status.success(),
        "revoking a lease that does not exist fails"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "recorder failed: {log}");

    let capture = rig.capture.display().to_string();
    let (text, records) = replay(&[&capture, "--show-secrets"]);
    eprintln!("{text}");

    let puts = of(&records, "/etcdserverpb.KV/Put");
    let binary = puts
        .iter()
        .find(|r| r["request"]["key"] == b64(&binary_key))
        .unwrap_or_else(|| panic!("no Put of the binary key: {text}"));
    assert_eq!(binary["status"], 0);
    assert_eq!(binary["key"], "\\xff\\xfek");
    assert_eq!(binary["request"]["value"], b64(b"v"));
    let (_, by_prefix) = replay(&[&capture, "--key-prefix", "\\xff\\xfe"]);
    assert_eq!(by_prefix.len(), 1, "{by_prefix:?}");
    assert_eq!(by_prefix[0]["request"]["key"], b64(&binary_key));

    // The 10 KB value is larger than the snaplen: the key decodes, the cut value is
    // reported as partial, never as a wrong (shorter) value.
    let big_put = puts
        .iter()
        .find(|r| r["key"] == "big")
        .unwrap_or_else(|| panic!("no Put of big: {text}"));
    assert_eq!(big_put["status"], 0);
    assert_eq!(big_put["gaps"], true, "{big_put}");
    assert!(big_put["request_partial"].is_object(), "{big_put}");
    assert!(big_put["request"].get("value").is_none(), "{big_put}");
    let big_get = of(&records, "/etcdserverpb.KV/Range")
        .into_iter()
        .find(|r| r["key"] == "big")
        .unwrap_or_else(|| panic!("no Range of big: {text}"));
    // The trailers may share the cut segment: then the status is unknown, never wrong.
    assert!(
        big_get["status"] == 0 || big_get["status"].is_null(),
        "{big_get}"
    );
    assert_eq!(big_get["gaps"], true, "{big_get}");
    if let Some(kvs) = big_get["response"]["kvs"].as_array() {
        for kv in kvs {
            assert_ne!(kv["value"].as_str().map(str::len), Some(0), "{big_get}");
            let value = base64::engine::general_purpose::STANDARD
                .decode(kv["value"].as_str().unwrap_or_default())
                .unwrap();
            assert_eq!(value.len(), 10_000, "a cut value is never shown as whole");
        }
    }

    let grants = of(&records, "/etcdserverpb.Lease/LeaseGrant");
    assert_eq!(grants.len(), 1, "{text}");
    assert_eq!(grants[0]["status"], 0);
    let lease_id = grants[0]["response"]["ID"].as_str().unwrap().to_string();
    assert_eq!(
        format!("{:x}", lease_id.parse::<i64>().unwrap()),
        id,
        "the granted lease's ID"
    );
    let keepalive = of(&records, "/etcdserverpb.Lease/LeaseKeepAlive");
    assert!(
        keepalive
            .iter()
            .any(|r| r["direction"] == "request" && r["request"]["ID"] == lease_id.as_str()),
        "{text}"
    );
    assert!(
        keepalive
            .iter()
            .any(|r| r["direction"] == "response" && r["response"]["ID"] == lease_id.as_str()),
        "{text}"
    );
    let revokes = of(&records, "/etcdserverpb.Lease/LeaseRevoke");
    assert_eq!(revokes.len(), 2, "{text}");
    assert_eq!(revokes[0]["status"], 0);
    assert_eq!(revokes[0]["request"]["ID"], lease_id.as_str());
    assert_eq!(revokes[1]["status"], 5, "NotFound: {}", revokes[1]);
    // etcdctl reads lease IDs as hex.
    assert_eq!(revokes[1]["request"]["ID"], "291");
    assert!(revokes[1]["grpc_message"]
        .as_str()
        .is_some_and(|m| m.contains("not found")));

    let members = of(&records, "/etcdserverpb.Cluster/MemberList");
    assert_eq!(members.len(), 1, "{text}");
    assert_eq!(members[0]["status"], 0);
    assert_eq!(
        members[0]["response"]["members"].as_array().unwrap().len(),
        1
    );
    let status = of(&records, "/etcdserverpb.Maintenance/Status");
    assert!(!status.is_empty(), "{text}");
    assert!(status.iter().all(|r| r["status"] == 0));
    assert!(status[0]["response"]["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));

    // Coverage on this capture: every record has a method, every call a status.
    let with_method = records.iter().filter(|r| !r["method"].is_null()).count();
    eprintln!("{with_method} of {} records with a method", records.len());
    assert_eq!(with_method, records.len(), "{text}");
    assert!(records.iter().all(|r| r["inferred"] == false));
}

/// A watch opened before recording began: its connection's HPACK table and its stream's
/// HEADERS were never seen, yet its messages decode and the method is inferred from them.
#[test]
fn a_watch_open_before_recording_is_inferred() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("replay-midstream");
    let mut watch = rig
        .in_netns("etcdctl")
        .args([
            &format!("--endpoints={}", rig.etcd.endpoint),
            "watch",
            "--prefix",
            "/held/",
        ])
        .env("ETCDCTL_API", "3")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rec = rig.record(&[]);
    for i in 0..5 {
        rig.etcdctl(&["put", &format!("/held/key-{i}"), &format!("value-{i}")]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    etcd_trace::sandbox::signal(watch.id(), 9);
    let _ = watch.wait();
    assert!(status.success(), "recorder failed: {log}");

    let capture = rig.capture.display().to_string();
    let (text, records) = replay(&[&capture]);
    eprintln!("{text}");
    assert!(text.contains("open before recording began"), "{text}");
    let puts = of(&records, "/etcdserverpb.KV/Put");
    assert_eq!(puts.len(), 5, "{text}");
    let watched: Vec<&Value> = records
        .iter()
        .filter(|r| r["response"]["events"].is_array())
        .collect();
    assert!(!watched.is_empty(), "watch events decoded: {text}");
    for r in &watched {
        assert_eq!(r["method"], "/etcdserverpb.Watch/Watch", "{r}");
        assert_eq!(r["inferred"], true, "{r}");
    }
    let keys: Vec<String> = watched
        .iter()
        .flat_map(|r| r["response"]["events"].as_array().unwrap().iter())
        .filter_map(|e| e["kv"]["key"].as_str().map(str::to_string))
        .collect();
    for i in 0..5 {
        assert!(
            keys.contains(&b64(format!("/held/key-{i}").as_bytes())),
            "event for /held/key-{i}: {text}"
        );
    }
}

/// A watch id as canonical proto3 JSON writes it: a string, left out when 0.
fn watch_id(v: &Value) -> i64 {
    v["watchId"].as_str().map_or(0, |s| s.parse().unwrap())
}

/// Two watches on one Watch stream, each cancelled in turn (etcdctl never sends a cancel;
/// etcd-client does): replay shows which watch each create, event and cancel belongs to,
/// and no event reaches a watch after its cancel.
#[test]
fn watches_cancelled_on_a_shared_stream() {
    if skip_without_root() {
        return;
    }
    use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};

    let rig = Rig::start("replay-watch-cancel");
    let rec = rig.record(&[]);
    let endpoint = rig.etcd.endpoint.clone();
    let (a, b) = in_netns(&rig, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            async fn next(w: &mut WatchStream) -> WatchResponse {
                tokio::time::timeout(Duration::from_secs(5), w.message())
                    .await
                    .expect("a watch response within 5 s")
                    .unwrap()
                    .expect("the watch stream still open")
            }
            fn events(r: &WatchResponse) -> Vec<(i64, Vec<u8>)> {
                r.events()
                    .iter()
                    .map(|e| (r.watch_id(), e.kv().unwrap().key().to_vec()))
                    .collect()
            }
            let prefix = || Some(WatchOptions::new().with_prefix());
            let mut client = Client::connect([endpoint], None).await.unwrap();
            let mut w = client.watch("/a/", prefix()).await.unwrap();
            let created = next(&mut w).await;
            assert!(created.created());
            let a = created.watch_id();
            w.watch("/b/", prefix()).await.unwrap();
            let created = next(&mut w).await;
            assert!(created.created());
            let b = created.watch_id();
            assert_ne!(a, b);

            client.put("/a/1", "v", None).await.unwrap();
            client.put("/b/1", "v", None).await.unwrap();
            let mut seen = events(&next(&mut w).await);
            seen.extend(events(&next(&mut w).await));
            seen.sort();
            let mut want = vec![(a, b"/a/1".to_vec()), (b, b"/b/1".to_vec())];
            want.sort();
            assert_eq!(seen, want);

            w.cancel(b).await.unwrap();
            let canceled = next(&mut w).await;
            assert!(canceled.canceled() && canceled.watch_id() == b);
            // Were /b/ still watched, its event would come before /a/2's.
            client.put("/b/2", "v", None).await.unwrap();
            client.put("/a/2", "v", None).await.unwrap();
            assert_eq!(events(&next(&mut w).await), [(a, b"/a/2".to_vec())]);
            w.cancel(a).await.unwrap();
            let canceled = next(&mut w).await;
            assert!(canceled.canceled() && canceled.watch_id() == a);
            (a, b)
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "recorder failed: {log}");

    let (text, records) = replay(&[rig.capture.to_str().unwrap()]);
    eprintln!("{text}");
    let clients: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["client"].as_str().unwrap())
        .collect();
    assert_eq!(clients.len(), 1, "one connection: {text}");
    let watch = of(&records, "/etcdserverpb.Watch/Watch");
    assert!(watch
        .iter()
        .all(|r| r["inferred"] == false && r["gaps"] == false));
    let message = |dir: &str| -> Vec<&Value> {
        watch
            .iter()
            .filter(|r| r["record"] == "message" && r["direction"] == dir)
            .copied()
            .collect()
    };

    // The requests, in order: two creates with their keys, then the two cancels.
    let requests = message("request");
    assert_eq!(requests.len(), 4, "{text}");
    let (ka, kb) = ("/a/", "/b/");
    for (r, (key, end)) in requests.iter().zip([(ka, "/a0"), (kb, "/b0")]) {
        let create = &r["request"]["createRequest"];
        assert_eq!(create["key"], b64(key.as_bytes()), "{r}");
        assert_eq!(create["rangeEnd"], b64(end.as_bytes()), "{r}");
        assert_eq!(r["key"], key, "{r}");
        assert_eq!(r["range_end"], end, "{r}");
    }
    for (r, (id, key)) in requests[2..].iter().zip([(b, kb), (a, ka)]) {
        let cancel = &r["request"]["cancelRequest"];
        assert!(cancel.is_object(), "a cancel request: {r}");
        assert_eq!(watch_id(cancel), id, "{r}");
        assert_eq!(r["key"], key, "the cancelled watch's key: {r}");
    }

    // The responses, in order: both created, events to their own watch, each cancel
    // acknowledged, and nothing for a watch once it is cancelled.
    let responses: Vec<&Value> = message("response");
    let acks = |flag: &str| -> Vec<i64> {
        responses
            .iter()
            .filter(|r| r["response"][flag] == true)
            .map(|r| watch_id(&r["response"]))
            .collect()
    };
    assert_eq!(acks("created"), [a, b], "{text}");
    assert_eq!(acks("canceled"), [b, a], "{text}");
    let mut delivered: Vec<(i64, String)> = Vec::new();
    let mut live = std::collections::BTreeSet::from([a, b]);
    for r in &responses {
        let resp = &r["response"];
        let id = watch_id(resp);
        let key = if id == a { ka } else { kb };
        assert_eq!(r["key"], key, "the key of the watch it is for: {r}");
        assert!(
            live.contains(&id),
            "a response after watch {id}'s cancel: {r}"
        );
        if resp["canceled"] == true {
            live.remove(&id);
        }
        for e in resp["events"].as_array().into_iter().flatten() {
            let k = base64::engine::general_purpose::STANDARD
                .decode(e["kv"]["key"].as_str().unwrap())
                .unwrap();
            delivered.push((id, String::from_utf8(k).unwrap()));
        }
    }
    // /a/1 and /b/1 in either order, then /a/2; /b/2 (put after /b/'s cancel) reached
    // no watch.
    assert_eq!(delivered.len(), 3, "{text}");
    let (first, last) = delivered.split_at(2);
    let mut first = first.to_vec();
    first.sort();
    let mut want = vec![(a, "/a/1".to_string()), (b, "/b/1".to_string())];
    want.sort();
    assert_eq!(first, want, "{text}");
    assert_eq!(last, [(a, "/a/2".to_string())], "{text}");
    assert!(of(&records, "/etcdserverpb.KV/Put")
        .iter()
        .any(|r| r["key"] == "/b/2"));
    let end: Vec<&&Value> = watch
        .iter()
        .filter(|r| r["record"] == "stream_end")
        .collect();
    assert_eq!(end.len(), 1, "{text}");
    assert_eq!(
        (&end[0]["requests"], &end[0]["responses"]),
        (&4.into(), &7.into())
    );
    assert!(text.contains(&format!("cancel watch {b}")), "{text}");
    assert!(text.contains(&format!("watch {b} canceled")), "{text}");

    // --key-prefix finds one watch's whole life, and the puts of its keys.
    let (_, of_b) = replay(&[rig.capture.to_str().unwrap(), "--key-prefix", kb]);
    let mut kinds: Vec<(&str, &str)> = of_b
        .iter()
        .map(|r| {
            let method = r["method"].as_str().unwrap();
            (method, r["direction"].as_str().unwrap_or("-"))
        })
        .collect();
    kinds.sort();
    let (put, w) = ("/etcdserverpb.KV/Put", "/etcdserverpb.Watch/Watch");
    assert_eq!(
        kinds,
        [
            (put, "-"),
            (put, "-"),
            (w, "request"),
            (w, "request"),
            (w, "response"),
            (w, "response"),
            (w, "response"),
        ],
        "{of_b:#?}"
    );
}

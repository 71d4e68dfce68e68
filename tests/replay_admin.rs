//! replay on the rest of etcd's API as etcdctl uses it: auth with a successful and a
//! failed Authenticate (secrets redacted), Txn compares on version and mod revision,
//! a watch created and cancelled, compaction and defragmentation.
#![cfg(feature = "record")]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn admin_auth_txn_watch_and_maintenance() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("replay-admin");
    // Secrets kept at record time: this test is about the analyses hiding them.
    let rec = rig.record(&["--keep-secrets"]);
    rig.etcdctl(&["put", "k", "v1"]);
    rig.etcdctl(&["put", "k", "v2"]);
    // Compares on version and mod revision; the success branch puts and reads.
    let txn = rig.etcdctl_with_input(
        &["txn"],
        "version(\"k\") = \"2\"\nmod(\"k\") > \"1\"\n\nput k v3\nget k\n\nput k never\n\n",
    );
    assert!(
        txn.status.success(),
        "{}",
        String::from_utf8_lossy(&txn.stderr)
    );
    // A watch created, then cancelled from the interactive prompt.
    let watch = rig.etcdctl_with_input(&["watch", "-i"], "watch w\n");
    let _ = watch;
    rig.etcdctl(&["compaction", "2"]);
    rig.etcdctl(&["defrag"]);
    // Auth: a user and a role, auth on, one good and one bad login.
    rig.etcdctl(&["user", "add", "root:rootpw"]);
    rig.etcdctl(&["role", "add", "root"]);
    rig.etcdctl(&["user", "grant-role", "root", "root"]);
    rig.etcdctl(&["auth", "enable"]);
    rig.etcdctl(&["--user", "root:rootpw", "get", "k"]);
    let bad = rig
        .etcd
        .etcdctl(&rig.netns, &["--user", "root:wrongpw", "get", "k"])
        .unwrap();
    assert!(!bad.status.success());
    rig.etcdctl(&["--user", "root:rootpw", "auth", "disable"]);
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");

    let out = etcd_trace(&["replay", "--format", "json", rig.capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let txns = of(&records, "/etcdserverpb.KV/Txn");
    assert_eq!(txns.len(), 1, "{text}");
    let t = txns[0];
    let compares = t["request"]["compare"].as_array().unwrap();
    // proto3 JSON leaves out default values: target VERSION and result EQUAL are 0.
    assert!(compares[0].get("target").is_none(), "{t}");
    assert_eq!(compares[0]["version"], "2", "{t}");
    assert_eq!(compares[1]["target"], "MOD", "{t}");
    assert_eq!(compares[1]["result"], "GREATER", "{t}");
    assert_eq!(t["response"]["succeeded"], true, "{t}");
    assert!(
        t["response"]["responses"][1]["responseRange"]["kvs"].is_array(),
        "{t}"
    );

    assert_eq!(of(&records, "/etcdserverpb.KV/Compact").len(), 1, "{text}");
    assert_eq!(
        of(&records, "/etcdserverpb.Maintenance/Defragment").len(),
        1,
        "{text}"
    );
    let watch_msgs = of(&records, "/etcdserverpb.Watch/Watch");
    assert!(
        watch_msgs
            .iter()
            .any(|r| r["request"]["createRequest"]["key"] == "dw=="),
        "a watch create for key w: {text}"
    );

    for (method, n) in [
        ("/etcdserverpb.Auth/UserAdd", 1),
        ("/etcdserverpb.Auth/RoleAdd", 1),
        ("/etcdserverpb.Auth/UserGrantRole", 1),
        ("/etcdserverpb.Auth/AuthEnable", 1),
        ("/etcdserverpb.Auth/AuthDisable", 1),
    ] {
        assert_eq!(of(&records, method).len(), n, "{method}: {text}");
    }
    let auths = of(&records, "/etcdserverpb.Auth/Authenticate");
    // The good login, the bad one, and the login before `auth disable`.
    assert_eq!(auths.len(), 3, "{text}");
    assert_eq!(auths.iter().filter(|r| r["status"] == 0).count(), 2);
    let ok = auths
        .iter()
        .find(|r| r["status"] == 0)
        .expect("a successful login");
    let failed = auths
        .iter()
        .find(|r| r["status"] != 0)
        .expect("a failed login");
    assert_eq!(
        failed["status"], 3,
        "InvalidArgument for a wrong password: {failed}"
    );
    // Secrets never show: not the passwords, not the token.
    assert!(
        !text.contains("rootpw") && !text.contains("wrongpw"),
        "a password leaked"
    );
    assert_eq!(ok["request"]["password"], "<redacted>", "{ok}");
    assert_eq!(ok["response"]["token"], "<redacted>", "{ok}");
    let user_add = of(&records, "/etcdserverpb.Auth/UserAdd")[0];
    assert_eq!(user_add["request"]["password"], "<redacted>", "{user_add}");
    // With --show-secrets they do.
    let shown = etcd_trace(&[
        "replay",
        "--format",
        "json",
        "--show-secrets",
        rig.capture.to_str().unwrap(),
    ]);
    assert!(stdout(&shown).contains("cm9vdHB3") || stdout(&shown).contains("rootpw"));
    // The calls made with the token carry it as metadata, redacted.
    let with_token: Vec<&Value> = records.iter().filter(|r| !r["token"].is_null()).collect();
    assert!(!with_token.is_empty(), "calls with a token header: {text}");
    assert!(with_token.iter().all(|r| r["token"] == "<redacted>"));
}

//! etcd with client-certificate TLS on its client and peer ports, as kubeadm and k3s run
//! it, recorded with the real binary: what the recorder captures of the plaintext (at
//! Go's crypto/tls in the etcd binary) must serve `replay`, `correlate` and `info` as the
//! cleartext traffic does, keep redacting secrets, and leave no uprobe behind.
#![cfg(feature = "record")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use common::uprobes::{bpf_ids_of, loaded_bpf_ids, uprobes_on, BpfIds, Uprobe};
use common::*;
use serde_json::Value;

/// The tests that compare machine-wide uprobes before and after a recorder hold this
/// exclusively, so that no other recorder of this binary attaches meanwhile; the others
/// share it.
static MACHINE_WIDE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE_WIDE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MACHINE_WIDE.write().unwrap_or_else(|e| e.into_inner())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not base64: {v}")))
        .unwrap()
}

fn brief(r: &Value) -> String {
    format!(
        "{} {} {} -> {} status {} gaps {} tls {}",
        r["method"], r["key"], r["client"], r["server"], r["status"], r["gaps"], r["tls"]
    )
}

/// The one record of `method` for `key`, decoded whole, with status OK, marked as TLS.
fn the_call<'a>(records: &'a [Value], method: &str, key: &str) -> &'a Value {
    let found = of(records, method)
        .into_iter()
        .filter(|r| r["key"] == key)
        .collect::<Vec<_>>();
    let [r] = found[..] else {
        panic!(
            "{} records of {method} {key}: {:#?}",
            found.len(),
            records.iter().map(brief).collect::<Vec<_>>()
        );
    };
    assert_eq!(r["status"], 0, "{}", brief(r));
    assert_eq!(r["inferred"], false, "{}", brief(r));
    assert_eq!(r["gaps"], false, "{}", brief(r));
    assert_eq!(r["tls"], true, "{}", brief(r));
    r
}

/// What `info` says of a TLS capture, checked loosely, here only, as long as its wording
/// is not settled: every connection opened while recording (its SYN seen) to one of
/// `tls_ports` is said to be TLS, in JSON and in text, and the capture holds plaintext
/// events (an event kind named for TLS or plaintext, with a count).
fn assert_info_says_tls(capture: &Path, tls_ports: &[u16]) {
    let out = etcd_trace(&["info", "--format", "json", capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let to_tls = |addrs: &str| {
        tls_ports
            .iter()
            .any(|p| addrs.ends_with(&format!("127.0.0.1:{p}")))
    };
    let opened: Vec<(&String, &Value)> = info["connections"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(addrs, c)| to_tls(addrs) && c["syn_seen"] == true)
        .collect();
    assert!(!opened.is_empty(), "no TLS connection opened: {info}");
    for (addrs, c) in &opened {
        assert!(
            says_tls(c),
            "info --format json does not say that {addrs} is TLS: {c}"
        );
    }
    let plaintext: Vec<(&String, &Value)> = info["counts"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(kind, n)| {
            (kind.contains("tls") || kind.contains("plaintext")) && n.as_u64() > Some(0)
        })
        .collect();
    assert!(
        !plaintext.is_empty(),
        "info --format json counts no TLS plaintext events: {}",
        info["counts"]
    );
    let text = stdout(&etcd_trace(&["info", capture.to_str().unwrap()]));
    for (addrs, _) in &opened {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(addrs.as_str()))
            .unwrap_or_else(|| panic!("info has no line for {addrs}:\n{text}"));
        assert!(
            line.to_lowercase().contains("tls"),
            "info does not say that {addrs} is TLS: {line}"
        );
    }
}

/// A JSON value that says TLS: a key naming TLS with a value that is not false, 0,
/// empty or null, or a string naming TLS, at any depth.
fn says_tls(v: &Value) -> bool {
    let set = |v: &Value| match v {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) => true,
    };
    match v {
        Value::String(s) => s.to_lowercase().contains("tls"),
        Value::Array(a) => a.iter().any(says_tls),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| (k.to_lowercase().contains("tls") && set(v)) || says_tls(v)),
        _ => false,
    }
}

const PUTS: usize = 20;
const LONG_LIVED: usize = 50;

/// 20 etcdctl puts (a connection each), gets, a txn, a delete, and one client doing 50
/// puts and 50 gets on one connection: replay decodes every call with its method, key
/// and status and marks it TLS, correlate links the writes, info says it was TLS.
#[test]
fn every_call_over_tls_is_decoded_and_correlated() {
    if skip_without_root() {
        return;
    }
    let _shared = shared();
    let rig = Rig::start_tls("tls");
    let rec = rig.record(&[]);
    for i in 0..PUTS {
        rig.etcdctl(&["put", &format!("/tls/put/{i}"), &format!("value-{i}")]);
    }
    rig.etcdctl(&["get", "/tls/put/3"]);
    rig.etcdctl(&["get", "/tls/put/", "--prefix"]);
    let txn = rig.etcdctl_with_input(
        &["txn"],
        "value(\"/tls/put/0\") = \"value-0\"\n\nput /tls/txn yes\n\nput /tls/txn no\n\n",
    );
    assert!(txn.status.success(), "etcdctl txn: {}", stderr(&txn));
    rig.etcdctl(&["del", "/tls/put/19"]);
    let done = client_on_one_connection(&rig, &rig.etcd, "/tls/ll/", LONG_LIVED);
    assert_eq!(done, 2 * LONG_LIVED);
    stop_cleanly(rec);

    let records = replay_json(&rig.capture, &[]);
    assert!(!records.is_empty(), "replay found no call");
    for r in &records {
        assert!(r["method"].is_string(), "{}", brief(r));
        assert_eq!(r["tls"], true, "every call was over TLS: {}", brief(r));
    }
    for i in 0..PUTS {
        let put = the_call(&records, "/etcdserverpb.KV/Put", &format!("/tls/put/{i}"));
        assert_eq!(
            put["request"]["value"],
            b64(format!("value-{i}").as_bytes())
        );
    }
    let get = the_call(&records, "/etcdserverpb.KV/Range", "/tls/put/3");
    assert_eq!(get["response"]["kvs"][0]["value"], b64(b"value-3"), "{get}");
    let range = the_call(&records, "/etcdserverpb.KV/Range", "/tls/put/");
    assert_eq!(range["range_end"], "/tls/put0", "{range}");
    assert_eq!(
        range["response"]["kvs"].as_array().map(Vec::len),
        Some(PUTS),
        "{range}"
    );
    let txn = the_call(&records, "/etcdserverpb.KV/Txn", "/tls/txn");
    assert_eq!(txn["response"]["succeeded"], true, "{txn}");
    assert_eq!(
        txn["request"]["compare"][0]["key"],
        b64(b"/tls/put/0"),
        "{txn}"
    );
    assert_eq!(
        txn["request"]["success"][0]["requestPut"]["value"],
        b64(b"yes"),
        "{txn}"
    );
    let del = the_call(&records, "/etcdserverpb.KV/DeleteRange", "/tls/put/19");
    assert_eq!(del["response"]["deleted"], "1", "{del}");
    // The long-lived client: every call, all on one connection.
    let mut clients = std::collections::BTreeSet::new();
    for i in 0..LONG_LIVED {
        let key = format!("/tls/ll/{i}");
        let put = the_call(&records, "/etcdserverpb.KV/Put", &key);
        assert_eq!(
            put["request"]["value"],
            b64(format!("value-{i}").as_bytes())
        );
        let get = the_call(&records, "/etcdserverpb.KV/Range", &key);
        assert_eq!(
            get["response"]["kvs"][0]["value"],
            b64(format!("value-{i}").as_bytes())
        );
        clients.extend([put["client"].to_string(), get["client"].to_string()]);
    }
    assert_eq!(clients.len(), 1, "one connection: {clients:?}");

    let calls = correlate_json(&rig.capture);
    let (linked, acked) = linked_writes(&calls);
    // The puts, the txn, the delete and the long-lived client's puts.
    assert!(
        acked > PUTS + 1 + LONG_LIVED,
        "{acked} acknowledged writes in correlate"
    );
    assert!(
        linked * 100 >= acked * 99,
        "{linked} of {acked} acknowledged writes linked to a WAL entry and an fsync before the reply"
    );

    assert_info_says_tls(&rig.capture, &[2379, 2380]);
}

/// A 200 kB value, sent and read back over TLS (many TLS records, many HTTP/2 frames):
/// replay shows it whole, byte for byte, in the Put and in the Range's response.
#[test]
fn a_200_kb_value_over_tls_is_decoded_whole() {
    if skip_without_root() {
        return;
    }
    let _shared = shared();
    let rig = Rig::start_tls("tls-big");
    // Each 10 bytes say where they are: a chunk out of place cannot go unnoticed.
    let value: String = (0..20_000).map(|i| format!("{:09} ", i * 10)).collect();
    assert_eq!(value.len(), 200_000);
    let rec = rig.record(&[]);
    // An argument of 200 kB is over Linux's limit for one: etcdctl reads it from stdin.
    let put = rig.etcdctl_with_input(&["put", "/tls/big"], &value);
    assert!(put.status.success(), "etcdctl put: {}", stderr(&put));
    let got = rig.etcdctl(&["get", "/tls/big", "--print-value-only"]);
    assert!(
        stdout(&got) == format!("{value}\n"),
        "etcdctl get gave back another value"
    );
    stop_cleanly(rec);

    let records = replay_json(&rig.capture, &[]);
    let put = the_call(&records, "/etcdserverpb.KV/Put", "/tls/big");
    let sent = unb64(&put["request"]["value"]);
    assert_eq!(sent.len(), value.len(), "the Put's value length");
    assert!(sent == value.as_bytes(), "the Put's value differs");
    let get = the_call(&records, "/etcdserverpb.KV/Range", "/tls/big");
    let read = unb64(&get["response"]["kvs"][0]["value"]);
    assert_eq!(read.len(), value.len(), "the Range's value length");
    assert!(read == value.as_bytes(), "the Range's value differs");
}

const PASSWORD: &str = "Tls-Redact-Me-4177";

/// An Authenticate over TLS: a default recording holds the password nowhere in what it
/// captured of the traffic (its events but the WAL writes, which redaction leaves alone)
/// and replay shows it as `*`; a `--keep-secrets` recording of the same calls holds it
/// (so that the first check can fail).
#[test]
fn authenticate_over_tls_is_redacted() {
    if skip_without_root() {
        return;
    }
    let _shared = shared();
    let rig = Rig::start_tls("tls-redact");
    let (log, kept) = record_auth_calls(&rig, &format!("root:{PASSWORD}"));

    // Unredacted, the password is in the traffic and replay shows it.
    assert!(
        contains(&traffic_bytes(&kept), PASSWORD.as_bytes()),
        "a --keep-secrets capture holds the password sent over TLS"
    );
    let kept_records = replay_json(&kept, &["--show-secrets"]);
    let auth = of(&kept_records, "/etcdserverpb.Auth/Authenticate");
    assert!(
        auth.iter()
            .any(|a| a["request"]["password"] == PASSWORD && a["tls"] == true),
        "{kept_records:?}"
    );

    // Redacted: nowhere in the traffic, and `*` in replay.
    assert!(
        log.contains("redacted"),
        "the summary says what was redacted: {log}"
    );
    assert!(
        !contains(&traffic_bytes(&rig.capture), PASSWORD.as_bytes()),
        "the password leaked into the capture"
    );
    let records = replay_json(&rig.capture, &["--show-secrets"]);
    assert_auth_redacted(&records, PASSWORD);
    for method in [
        "/etcdserverpb.Auth/Authenticate",
        "/etcdserverpb.Auth/UserAdd",
    ] {
        for r in of(&records, method) {
            assert_eq!(r["tls"], true, "{}", brief(r));
        }
    }
    // The calls after the Authenticates decode whole.
    the_call(&records, "/etcdserverpb.KV/Put", "k1");
}

/// One recorder, two etcds in one namespace: TLS on 2379/2380, cleartext on
/// 22379/22380. Both etcds' puts are decoded, and only the TLS ones are marked so.
#[test]
fn a_cleartext_and_a_tls_etcd_recorded_together() {
    if skip_without_root() {
        return;
    }
    let _shared = shared();
    let rig = Rig::start_tls("tls-mixed");
    let clear_options = EtcdOptions {
        client_port: 22379,
        peer_port: 22380,
        ..EtcdOptions::default()
    };
    let clear =
        EtcdServer::start_with(&rig.netns, &rig.dir.0.join("cleartext"), &clear_options).unwrap();
    let mut args = vec!["--pid".to_string(), clear.pid().to_string()];
    for port in ["2379", "2380", "22379", "22380"] {
        args.extend(["--port".to_string(), port.to_string()]);
    }
    let rec = rig.record(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for i in 0..10 {
        rig.etcdctl(&["put", &format!("/mixed/tls/{i}"), "over-tls"]);
        etcdctl_ok(
            &clear,
            &rig.netns,
            &["put", &format!("/mixed/clear/{i}"), "clear"],
        );
    }
    stop_cleanly(rec);

    let records = replay_json(&rig.capture, &[]);
    let puts = of(&records, "/etcdserverpb.KV/Put");
    for i in 0..10 {
        let clear_put = puts
            .iter()
            .find(|r| r["key"] == format!("/mixed/clear/{i}"))
            .unwrap_or_else(|| panic!("no Put of /mixed/clear/{i}: {records:?}"));
        assert_eq!(clear_put["status"], 0, "{}", brief(clear_put));
        assert_eq!(
            clear_put["server"],
            "127.0.0.1:22379",
            "{}",
            brief(clear_put)
        );
        assert_ne!(clear_put["tls"], true, "{}", brief(clear_put));
        let tls_put = the_call(&records, "/etcdserverpb.KV/Put", &format!("/mixed/tls/{i}"));
        assert_eq!(tls_put["server"], "127.0.0.1:2379", "{}", brief(tls_put));
        assert_eq!(tls_put["request"]["value"], b64(b"over-tls"));
    }
    assert_info_says_tls(&rig.capture, &[2379, 2380]);
}

/// Machine-wide uprobes on the etcd binary and the eBPF objects the recorder held,
/// before, during and after a recording that ends with `signal`.
fn nothing_stays_attached_after(signal: i32) {
    let _exclusive = exclusive();
    let rig = Rig::start_tls(&format!("tls-detach-{signal}"));
    let binary: PathBuf = std::fs::read_link(format!("/proc/{}/exe", rig.etcd.pid())).unwrap();
    let before = uprobes_on(&binary);
    let rec = rig.record(&[]);
    let recorder = rec.pid();
    for i in 0..5 {
        rig.etcdctl(&["put", &format!("/detach/{i}"), "v"]);
    }
    let during = uprobes_on(&binary);
    let held = bpf_ids_of(recorder);
    let (status, log) = rec.stop(signal).unwrap();
    if signal == libc::SIGINT {
        assert!(status.success(), "recorder failed: {log}");
    }

    // The kernel lets go of what a dead process held soon, not at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (after, left) = loop {
        let after = uprobes_on(&binary);
        let loaded = loaded_bpf_ids();
        let left = BpfIds {
            progs: held.progs.intersection(&loaded.progs).copied().collect(),
            links: held.links.intersection(&loaded.links).copied().collect(),
        };
        if (after == before && left == BpfIds::default()) || Instant::now() > deadline {
            break (after, left);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let of_recorder = |list: &[Uprobe]| -> Vec<Uprobe> {
        list.iter()
            .filter(|u| u.pid == Some(recorder))
            .cloned()
            .collect()
    };
    assert_eq!(
        of_recorder(&after),
        [],
        "uprobes of the recorder (pid {recorder}) stayed on {}",
        binary.display()
    );
    assert_eq!(
        after,
        before,
        "the uprobes on {} differ from before the recording",
        binary.display()
    );
    assert!(
        !held.progs.is_empty(),
        "the recorder held eBPF programs: {held:?}"
    );
    assert_eq!(
        left,
        BpfIds::default(),
        "eBPF programs and links of the recorder still loaded"
    );
    // Otherwise the checks above prove nothing about uprobes. (Not all of them say
    // their process: what came while recording, alone in this binary, is the recorder's.)
    let new: Vec<&Uprobe> = during.iter().filter(|u| !before.contains(u)).collect();
    assert!(
        !new.is_empty(),
        "no uprobe on {} came while recording (recorder pid {recorder}); machine-wide: {during:?}",
        binary.display()
    );
}

#[test]
fn no_uprobe_stays_after_sigint() {
    if skip_without_root() {
        return;
    }
    nothing_stays_attached_after(libc::SIGINT);
}

#[test]
fn no_uprobe_stays_after_sigkill() {
    if skip_without_root() {
        return;
    }
    nothing_stays_attached_after(libc::SIGKILL);
}

/// What replay, correlate and detect say of a capture, without times, ports and byte
/// counts that differ from run to run: each call's method, key, status and whether it
/// decoded whole; the linked writes; the findings' rules and severities.
fn answers(capture: &Path) -> (Vec<String>, (usize, usize), Vec<String>) {
    let calls = replay_json(capture, &[])
        .iter()
        .map(|r| {
            format!(
                "{} {} status {} gaps {} inferred {}",
                r["method"], r["key"], r["status"], r["gaps"], r["inferred"]
            )
        })
        .collect();
    let linked = linked_writes(&correlate_json(capture));
    let out = etcd_trace(&["detect", "--format", "json", capture.to_str().unwrap()]);
    let mut findings: Vec<String> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|f| f["rule"].is_string())
        .map(|f| format!("{} {}", f["rule"], f["severity"]))
        .collect();
    findings.sort();
    (calls, linked, findings)
}

/// The demo's workload (puts, gets, a txn, a delete, a read of the whole keyspace) on a
/// cleartext etcd and on a TLS etcd: replay, correlate and detect say the same of both.
#[test]
fn the_same_workload_gives_the_same_answers_over_tls_and_cleartext() {
    if skip_without_root() {
        return;
    }
    let _shared = shared();
    let mut results = Vec::new();
    for tls in [false, true] {
        let rig = if tls {
            Rig::start_tls("tls-same")
        } else {
            Rig::start("tls-same-clear")
        };
        let rec = rig.record(&[]);
        etcd_trace::sandbox::basic_workload(&rig.etcd, &rig.netns).unwrap();
        stop_cleanly(rec);
        results.push(answers(&rig.capture));
    }
    let (clear, tls) = (&results[0], &results[1]);
    assert_eq!(clear.0.len(), 8, "{:#?}", clear.0);
    assert_eq!(tls, clear, "TLS (left) and cleartext (right) differ");
    assert_eq!(clear.1 .0, clear.1 .1, "every write linked: {:?}", clear.1);
    assert!(
        clear.2.iter().any(|f| f.contains("bulk-range-unbounded")),
        "{:?}",
        clear.2
    );
}

/// With --no-tls the TLS connections are still recorded (ciphertext), and every
/// analysis names them as connections whose calls it cannot see.
#[test]
fn tls_connections_without_plaintext_are_named() {
    if skip_without_root() {
        return;
    }
    let _shared = shared();
    let rig = Rig::start_tls("tls-none");
    let rec = rig.record(&["--no-tls"]);
    for i in 0..3 {
        rig.etcdctl(&["put", &format!("/none/{i}"), "v"]);
    }
    stop_cleanly(rec);
    let path = rig.capture.to_str().unwrap();
    assert!(replay_json(&rig.capture, &[]).is_empty());
    for (command, says) in [
        ("replay", "without plaintext"),
        ("correlate", "without plaintext"),
        ("timeline", "without plaintext"),
        ("detect", "have no plaintext"),
    ] {
        let out = etcd_trace(&[command, path]);
        let text = stdout(&out);
        assert!(
            text.contains(says) && text.contains("--no-tls"),
            "{command} does not name the TLS connections without plaintext:\n{text}"
        );
    }
    let out = etcd_trace(&["correlate", path]);
    assert!(
        stdout(&out).contains("none acknowledged"),
        "{}",
        stdout(&out)
    );
    let out = etcd_trace(&["info", path]);
    assert!(
        stdout(&out).contains("TLS, no plaintext"),
        "{}",
        stdout(&out)
    );
}

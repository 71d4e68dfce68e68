//! Chaos on a recorded etcd: the network, the process and the recorder at their worst.
//! Each test checks the analyses against what the other side knows for sure.
//!
//! 1. A lossy client path (this kernel has no netem): a client in one network namespace
//!    and etcd in another, joined by a veth pair. nftables drops a random share of the
//!    segments both ways, and a TC program of the test's own (tests/chaos/netem.bpf.c)
//!    duplicates some and holds some back. `replay` then shows every call the client
//!    completed once, with the key, value, revision and status the client saw, and
//!    nothing the client did not do. Redaction held the reordered segments until their
//!    holes filled: the auth calls made over the path have their password redacted, and
//!    no packet passed unscrubbed unless the capture shows a hole that outlasted what
//!    the scrubber may hold.
//! 2. etcd SIGKILLed and restarted twice while writers put: every put that a writer saw
//!    acknowledged is linked by `correlate` to its WAL entry, and `timeline` tells both
//!    kills and both starts.
//! 3. A member of a three-member cluster SIGSTOPped and resumed: the capture still
//!    decodes (`replay`, `wal`, the peer streams), the stopped member sent nothing while
//!    stopped, and its streams carry its messages again once it runs.
//! 4. Ring-buffer overflow: with a traced writer whose writes are counted, the writes
//!    received plus the kernel's loss count equal the writes made, exactly, `info`
//!    reports the loss, and the kernel's latency histogram counts every write made.
#![cfg(feature = "record")]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use etcd_trace::analyze::peers::NoteKind;
use etcd_trace::capture::{Event, FileKind, ReadItem, SyscallKind};
use etcd_trace::decode::rafthttp::PeerEvent;
use etcd_trace::redact;
use etcd_trace::sandbox::{signal, EtcdCluster};
use serde_json::Value;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// CLOCK_MONOTONIC, the clock of the capture's timestamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Record process `pid` into `capture`, with `extra` arguments.
fn record_pid(capture: &Path, pid: u32, extra: &[&str]) -> RecorderProcess {
    let mut args = vec![
        "-o".to_string(),
        capture.display().to_string(),
        "--pid".to_string(),
        pid.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    RecorderProcess::start(&bin(), &args).unwrap()
}

/// Compile `source` (under tests/chaos) with clang into `out`; `args` says for what.
fn clang(source: &str, out: &Path, args: &[&str]) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/chaos")
        .join(source);
    run_ok(
        Command::new("clang")
            .args(["-O2", "-Wall"])
            .args(args)
            .arg(&source)
            .arg("-o")
            .arg(out),
    );
}

// ------------------------------------------------------------------ 1. lossy client path

const CLIENT_ADDR: &str = "10.99.0.1";
const SERVER_ADDR: &str = "10.99.0.2";
/// Segments dropped by nftables, per mille, each way.
const DROP_PER_MILLE: u32 = 60;
/// Segments with payload duplicated, and held back, per mille, each way.
const DUP_PER_MILLE: u32 = 50;
const HOLD_PER_MILLE: u32 = 50;
/// The UDP port of the filler that keeps the hold class busy (no one listens there).
const FILLER_PORT: u16 = 9;

/// A client namespace and etcd's namespace joined by a veth pair (`cli` and `srv`, on
/// 10.99.0.1 and .2), with the faults on both ends. Everything lives in the two
/// namespaces (qdiscs, filters, nftables), so it all goes with them on drop.
struct LossyPath {
    client: Netns,
    server: Netns,
}

impl LossyPath {
    fn create(dir: &Path, port: u16) -> LossyPath {
        let path = LossyPath {
            client: Netns::create().unwrap(),
            server: Netns::create().unwrap(),
        };
        let (client, server) = (&path.client.name, &path.server.name);
        let ip = |args: &[&str]| run_ok(Command::new("ip").args(args));
        ip(&[
            "-n", server, "link", "add", "srv", "type", "veth", "peer", "name", "cli", "netns",
            client,
        ]);
        ip(&[
            "-n",
            client,
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            "cli",
        ]);
        ip(&[
            "-n",
            server,
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            "srv",
        ]);
        // One segment per packet, as on a wire: a veth would otherwise pass a whole
        // request as one GSO packet, and drop, copy or hold it whole.
        for (netns, dev) in [(client, "cli"), (server, "srv")] {
            ip(&["-n", netns, "link", "set", dev, "gso_max_segs", "1", "up"]);
        }

        let object = dir.join("netem.bpf.o");
        let multiarch = run_ok(Command::new("clang").arg("-print-multiarch"));
        clang(
            "netem.bpf.c",
            &object,
            &[
                "-g",
                "-target",
                "bpf",
                "-c",
                &format!("-I/usr/include/{}", multiarch.trim()),
                &format!("-DPORT={port}"),
                &format!("-DFILLER_PORT={FILLER_PORT}"),
                &format!("-DDUP_PER_MILLE={DUP_PER_MILLE}"),
                &format!("-DHOLD_PER_MILLE={HOLD_PER_MILLE}"),
                "-DHOLD_CLASS=0x20",
            ],
        );
        let object = object.to_str().unwrap();
        for (netns, dev) in [(&path.client, "cli"), (&path.server, "srv")] {
            let tc = |args: &[&str]| run_ok(netns.command("tc").args(args));
            tc(&["qdisc", "add", "dev", dev, "clsact"]);
            tc(&[
                "filter",
                "add",
                "dev",
                dev,
                "egress",
                "bpf",
                "direct-action",
                "obj",
                object,
                "sec",
                "tc/duplicate",
            ]);
            // Class 1:20 is slow and kept busy by the filler: a segment put there waits
            // behind it while the segments after it pass through 1:10.
            tc(&[
                "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
            ]);
            tc(&[
                "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate",
                "10gbit",
            ]);
            tc(&[
                "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate",
                "480kbit", "burst", "1600", "cburst", "1600",
            ]);
            // The program sets the minor of the class (a 16-bit field); the major
            // comes from the filter's classid.
            tc(&[
                "filter",
                "add",
                "dev",
                dev,
                "parent",
                "1:",
                "bpf",
                "direct-action",
                "obj",
                object,
                "sec",
                "tc/hold",
                "classid",
                "1:10",
            ]);
        }
        // Dropped on the client's side both ways: a request segment before the capture
        // on etcd's side sees it (it sees the retransmission, after later segments), a
        // reply segment after it (it sees the segment and its retransmission).
        let rules = format!(
            "table inet chaos {{
               chain out {{
                 type filter hook output priority 0; policy accept;
                 tcp dport {port} numgen random mod 1000 < {DROP_PER_MILLE} counter drop
               }}
               chain in {{
                 type filter hook input priority 0; policy accept;
                 tcp sport {port} numgen random mod 1000 < {DROP_PER_MILLE} counter drop
               }}
             }}"
        );
        let mut nft = path
            .client
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success(), "nft refused {rules}");
        path
    }

    /// Packets each nftables chain dropped, `out` and `in`.
    fn dropped(&self) -> (u64, u64) {
        let listing = run_ok(
            self.client
                .command("nft")
                .args(["list", "table", "inet", "chaos"]),
        );
        let counts: Vec<u64> = listing
            .split("counter packets ")
            .skip(1)
            .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 2, "{listing}");
        (counts[0], counts[1])
    }
}

/// Datagrams to the far end's filler port every 10 ms from each end of the path, so
/// that the hold class always has a little queue for a held segment to wait in; they
/// stop on drop.
struct Fillers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Fillers {
    fn start(path: &LossyPath) -> Fillers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [(&path.client, SERVER_ADDR), (&path.server, CLIENT_ADDR)]
            .into_iter()
            .map(|(netns, to)| {
                let stop = stop.clone();
                spawn_in_namespace(netns, move || {
                    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                    let datagram = [0u8; 500];
                    while !stop.load(Ordering::Relaxed) {
                        // Refused (no one listens) or not: it has passed the hold class.
                        let _ = socket.send_to(&datagram, (to, FILLER_PORT));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        Fillers { stop, threads }
    }
}

impl Drop for Fillers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the client saw of one key: the value it put, the revision of the put's reply,
/// and whether it read the key back (the value it read is checked as it goes).
#[derive(Debug, Clone)]
struct Seen {
    value: Vec<u8>,
    revision: i64,
    got: bool,
}

impl Seen {
    /// A put the client saw acknowledged, not read back (yet).
    fn put(value: Vec<u8>, revision: i64) -> Seen {
        Seen {
            value,
            revision,
            got: false,
        }
    }
}

/// A value of `len` bytes that names its key, so that a mixed-up value shows.
fn value_of(key: &str, len: usize) -> Vec<u8> {
    key.bytes()
        .chain(b"=".iter().copied())
        .cycle()
        .take(len)
        .collect()
}

/// On one long-lived connection: `rounds` rounds of `width` puts in parallel (several
/// streams in flight, so segments of one request overtake another's), then the gets of
/// the same keys in parallel. What the client saw, by key.
fn client_workload(
    netns: &Netns,
    url: String,
    rounds: usize,
    width: usize,
) -> BTreeMap<String, Seen> {
    block_on_in(netns, move || async move {
        let client = etcd_client::Client::connect([url], None).await.unwrap();
        let mut seen = BTreeMap::new();
        for round in 0..rounds {
            let mut puts = tokio::task::JoinSet::new();
            for j in 0..width {
                let key = format!("/chaos/lossy/{round}/{j}");
                let value = value_of(&key, 3000 + 1500 * j);
                let mut kv = client.kv_client();
                puts.spawn(async move {
                    let reply = kv.put(key.as_str(), value.clone(), None).await.unwrap();
                    let revision = reply.header().unwrap().revision();
                    (key, value, revision)
                });
            }
            while let Some(done) = puts.join_next().await {
                let (key, value, revision) = done.unwrap();
                seen.insert(key, Seen::put(value, revision));
            }
            let mut gets = tokio::task::JoinSet::new();
            for j in 0..width {
                let key = format!("/chaos/lossy/{round}/{j}");
                let mut kv = client.kv_client();
                gets.spawn(async move {
                    let reply = kv.get(key.as_str(), None).await.unwrap();
                    (key, reply.kvs()[0].value().to_vec())
                });
            }
            while let Some(done) = gets.join_next().await {
                let (key, value) = done.unwrap();
                let s = seen.get_mut(&key).unwrap();
                assert_eq!(
                    s.value, value,
                    "the client read back another value of {key}"
                );
                s.got = true;
            }
        }
        seen
    })
}

/// etcdctl puts from the client namespace, each on a new connection (handshakes lost
/// too): what etcdctl saw, by key.
fn etcdctl_puts(netns: &Netns, url: &str, n: usize) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let key = format!("/chaos/etcdctl/{i}");
        let value = value_of(&key, 100);
        let out = run_ok(
            netns
                .command("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={url}"))
                // A lost SYN costs a second, two cost three: etcdctl's default 2 s dial
                // timeout would give up on a call the path lets through in the end.
                .args([
                    "--dial-timeout=60s",
                    "--command-timeout=120s",
                    "-w",
                    "json",
                    "put",
                ])
                .arg(&key)
                .arg(std::str::from_utf8(&value).unwrap()),
        );
        let reply: Value = serde_json::from_str(&out).unwrap();
        let revision = reply["header"]["revision"].as_i64().unwrap();
        seen.insert(key, Seen::put(value, revision));
    }
    seen
}

/// The password of the lossy path's root user.
const PASSWORD: &str = "Lossy-Path-Secret-5302";

/// The redaction tests' auth calls (see `record_auth_calls`) from the client namespace:
/// user root with [`PASSWORD`] and role root added and auth enabled on one connection,
/// then a put as root on a second and a get of it on a third, each opened with an
/// Authenticate. What the client saw of the key, by key.
fn auth_calls(netns: &Netns, url: String) -> BTreeMap<String, Seen> {
    use etcd_client::{Client, ConnectOptions};
    block_on_in(netns, move || async move {
        let mut admin = Client::connect([&url], None).await.unwrap();
        admin.user_add("root", PASSWORD, None).await.unwrap();
        admin.role_add("root").await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.auth_enable().await.unwrap();
        let as_root = || Some(ConnectOptions::new().with_user("root", PASSWORD));
        let key = "/chaos/auth/0";
        let value = value_of(key, 100);
        let mut client = Client::connect([&url], as_root()).await.unwrap();
        let reply = client.put(key, value.clone(), None).await.unwrap();
        let mut seen = Seen::put(value, reply.header().unwrap().revision());
        let mut client = Client::connect([&url], as_root()).await.unwrap();
        let reply = client.get(key, None).await.unwrap();
        assert_eq!(reply.kvs()[0].value(), seen.value);
        seen.got = true;
        BTreeMap::from([(key.to_string(), seen)])
    })
}

/// Data segments of the capture from `from`: those seen again (same sequence number and
/// length) and those that came after a later byte of their connection had been seen.
fn disorder(capture: &Path, from: std::net::IpAddr) -> (usize, usize) {
    let (_, events) = read_events(capture);
    let mut seen = BTreeSet::new();
    // Per connection: the first sequence number seen, and the end of the highest byte.
    let mut flows: HashMap<(std::net::SocketAddr, std::net::SocketAddr), (u32, u64)> =
        HashMap::new();
    let (mut again, mut reordered) = (0, 0);
    for e in events {
        let Event::Packet(p) = e else { continue };
        if p.src.ip() != from || p.payload_len == 0 {
            continue;
        }
        if !seen.insert((p.src, p.dst, p.seq, p.payload_len)) {
            again += 1;
            continue;
        }
        let (first, high) = flows.entry((p.src, p.dst)).or_insert((p.seq, 0));
        let start = u64::from(p.seq.wrapping_sub(*first));
        if start < *high {
            reordered += 1;
        }
        *high = (*high).max(start + u64::from(p.payload_len));
    }
    (again, reordered)
}

/// Directions of the capture's connections (sender, receiver) with a hole in their bytes
/// that the redaction scrubber could not hold out: one still open longer than it holds
/// bytes ([`redact::MAX_HOLD_NS`], counted from the last bytes before the hole), one
/// open when the recorder reported lost events, or one never filled. And the longest
/// time a hole was open, in ns.
fn holes_past_the_hold(capture: &Path) -> (BTreeSet<(SocketAddr, SocketAddr)>, u64) {
    /// One direction from its SYN: the end of its bytes in order and when they last
    /// grew; the bytes seen past a hole, and since when the scrubber holds them.
    struct Flow {
        base: u32,
        next: u64,
        grew_ns: u64,
        ahead: Vec<(u64, u64)>,
        open_since: Option<u64>,
    }
    let (_, events) = read_events(capture);
    let mut flows: HashMap<(SocketAddr, SocketAddr), Flow> = HashMap::new();
    let mut late = BTreeSet::new();
    let mut longest = 0;
    for e in events {
        let p = match e {
            Event::Packet(p) => p,
            Event::Loss(_) => {
                // The scrubber gives these up, and follows them no further.
                flows.retain(|k, f| f.ahead.is_empty() || !late.insert(*k));
                continue;
            }
            _ => continue,
        };
        let key = (p.src, p.dst);
        if p.flags.syn() {
            let flow = Flow {
                base: p.seq.wrapping_add(1),
                next: 0,
                grew_ns: p.ts_ns,
                ahead: Vec::new(),
                open_since: None,
            };
            flows.insert(key, flow);
            continue;
        }
        let Some(f) = flows.get_mut(&key).filter(|_| p.payload_len > 0) else {
            continue;
        };
        let start = u64::from(p.seq.wrapping_sub(f.base));
        let end = start + u64::from(p.payload_len);
        if start > f.next {
            f.open_since.get_or_insert(f.grew_ns);
            f.ahead.push((start, end));
            continue;
        }
        if end > f.next {
            f.next = end;
            f.grew_ns = p.ts_ns;
            while let Some(i) = f.ahead.iter().position(|&(s, _)| s <= f.next) {
                f.next = f.next.max(f.ahead.swap_remove(i).1);
            }
        }
        if let (true, Some(since)) = (f.ahead.is_empty(), f.open_since) {
            f.open_since = None;
            let open = p.ts_ns - since;
            longest = longest.max(open);
            if open > redact::MAX_HOLD_NS {
                late.insert(key);
            }
        }
    }
    late.extend(
        flows
            .into_iter()
            .filter(|(_, f)| !f.ahead.is_empty())
            .map(|(k, _)| k),
    );
    (late, longest)
}

/// Every call a client completed over a path that drops, duplicates and holds back
/// segments both ways is in `replay` once, as the client saw it; nothing else from the
/// client is. The capture does hold duplicated and reordered segments. Redaction held
/// the reordered segments until the bytes before them came: the password of the auth
/// calls made over the path is redacted, and nothing passed unscrubbed (but where a hole
/// in the capture outlasted what the scrubber may hold, which the report counts).
#[test]
fn a_lossy_client_path_replays_what_the_client_saw() {
    if skip_without_root() {
        return;
    }
    let dir = ScratchDir::new("etcd-trace-test-chaos-lossy").unwrap();
    let options = EtcdOptions {
        address: SERVER_ADDR.parse().unwrap(),
        ..EtcdOptions::default()
    };
    let path = LossyPath::create(&dir.0, options.client_port);
    let etcd = EtcdServer::start_with(&path.server, &dir.0, &options).unwrap();
    let capture = dir.0.join("lossy.etr");
    let rec = record_pid(&capture, etcd.pid(), &["--iface", "srv"]);

    let fillers = Fillers::start(&path);
    let mut seen = client_workload(&path.client, etcd.url(), 6, 6);
    seen.extend(etcdctl_puts(&path.client, &etcd.url(), 6));
    seen.extend(auth_calls(&path.client, etcd.url()));
    drop(fillers);
    let log = stop_cleanly(rec);
    let (dropped_out, dropped_in) = path.dropped();

    let records: Vec<Value> = replay_json(&capture, &["--show-secrets"])
        .into_iter()
        .filter(|r| {
            r["client"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{CLIENT_ADDR}:"))
        })
        .collect();
    let why = format!(
        "{} records from the client; dropped {dropped_out} out, {dropped_in} in; recorder:\n{log}",
        records.len()
    );
    let mut unexpected = Vec::new();
    let (mut puts, mut gets) = (0, 0);
    let mut auth_clients = BTreeSet::new();
    for r in &records {
        let key = r["key"].as_str().unwrap_or_default();
        let s = seen.get(key);
        let method = r["method"].as_str().unwrap_or_default();
        if method.starts_with("/etcdserverpb.Auth/") {
            // Checked with the scrubber's report below.
            assert_eq!(r["status"], 0, "{r}");
            auth_clients.insert(r["client"].as_str().unwrap().to_string());
            continue;
        }
        match (r["method"].as_str(), s) {
            (Some("/etcdserverpb.KV/Put"), Some(s)) => {
                puts += 1;
                assert_eq!(r["request"]["value"], b64(&s.value), "{r}");
                assert_eq!(
                    r["response"]["header"]["revision"],
                    s.revision.to_string(),
                    "{r}"
                );
            }
            (Some("/etcdserverpb.KV/Range"), Some(s)) if s.got => {
                gets += 1;
                assert_eq!(r["response"]["kvs"][0]["value"], b64(&s.value), "{r}");
                assert_eq!(r["response"]["kvs"].as_array().unwrap().len(), 1, "{r}");
            }
            _ => {
                unexpected.push(r);
                continue;
            }
        }
        assert_eq!(r["record"], "call", "{r}");
        assert_eq!(r["status"], 0, "{r}");
        assert_eq!(r["gaps"], false, "{r}");
        assert_eq!(r["inferred"], false, "{r}");
    }
    assert!(
        unexpected.is_empty(),
        "records the client did not make: {unexpected:#?}\n{why}"
    );
    // With every record matched to a call above, the counts say each appears once.
    assert_eq!(puts, seen.len(), "{why}");
    assert_eq!(gets, seen.values().filter(|s| s.got).count(), "{why}");

    // The faults happened, and the capture holds what they did: requests reordered (by
    // holds, and by drops before the capture) and seen twice (by copies); replies seen
    // twice (by copies and by retransmissions of what was dropped after the capture).
    // Replies leave in order: the capture sees them before they are held.
    let requests = disorder(&capture, CLIENT_ADDR.parse().unwrap());
    let replies = disorder(&capture, SERVER_ADDR.parse().unwrap());
    assert!(dropped_out > 0 && dropped_in > 0, "{why}");
    assert!(
        requests.0 > 0 && requests.1 > 0 && replies.0 > 0,
        "(seen again, out of order): requests {requests:?}, replies {replies:?}\n{why}"
    );

    // Redaction: nothing unscrubbed but what the capture shows could not be held out.
    let (reader, _) = read_events(&capture);
    let report = reader.index().redaction.clone().unwrap();
    let (late, longest) = holes_past_the_hold(&capture);
    let said = format!(
        "{report}; longest hole open {} ms; holes not held out: {late:?}",
        longest / 1_000_000
    );
    let why = format!("{said}\n{why}");
    if late.is_empty() {
        assert_eq!(report.unscrubbed_packets, 0, "{why}");
        assert_eq!(report.directions_given_up, 0, "{why}");
        assert!(!log.contains("NOT scrubbed"), "{why}");
    } else {
        // Each gives its direction up, and a client's gives its server's up too.
        assert!(
            report.incomplete() && report.directions_given_up <= 2 * late.len() as u64,
            "{why}"
        );
    }
    let auth_late = late
        .iter()
        .any(|(a, b)| [a, b].iter().any(|e| auth_clients.contains(&e.to_string())));
    if auth_late {
        eprintln!("the auth calls had a hole not held out: not checked\n{why}");
    } else {
        assert_auth_redacted(&records, PASSWORD);
        assert!(
            !contains(&traffic_bytes(&capture), PASSWORD.as_bytes()),
            "the password is in the capture: {why}"
        );
    }
    eprintln!("{said}");
}

// ------------------------------------------------------------------ 2. restarts

/// `wal` decodes every WAL write of the capture: no record is undecodable, and the only
/// stretches not decoded are the starts of the files of the `members` that wrote them,
/// written before recording began (an etcd restarted on the same data dir goes on
/// where its predecessor was seen).
fn assert_wal_decodes(capture: &Path, members: usize) {
    let wal = etcd_trace(&["wal", capture.to_str().unwrap(), "--format", "json"]);
    let said = stderr(&wal);
    assert!(wal.status.success(), "{said}");
    let notes: Vec<&str> = said.lines().filter(|l| l.starts_with("note:")).collect();
    assert!(
        notes.len() <= members
            && notes
                .iter()
                .all(|n| n.contains(": bytes 0..") && n.contains("never seen written")),
        "{said}"
    );
    let undecodable: Vec<String> = stdout(&wal)
        .lines()
        .filter(|l| l.contains("\"kind\":\"undecodable\""))
        .map(str::to_string)
        .collect();
    assert!(undecodable.is_empty(), "{undecodable:#?}");
}

/// Three writers put keys of their own, each put on its own connection, while etcd is
/// SIGKILLed and restarted twice: every put a writer saw acknowledged (before, between
/// and after the kills) is one acknowledged write in `correlate`, linked to its WAL
/// entry and to an fsync that ended before the reply; `timeline` and `info` tell each
/// kill and each start, and the WAL writes of all three processes decode.
#[test]
fn every_acknowledged_put_survives_two_kills() {
    if skip_without_root() {
        return;
    }
    let mut rig = Rig::start("chaos-restarts");
    let rec = rig.record_following(&[]);
    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Vec::new());
    let url = rig.etcd.url();
    let mut restarts = Vec::new();
    std::thread::scope(|s| {
        for writer in 0..3 {
            let (netns, stop, acknowledged, url) = (&rig.netns, &stop, &acknowledged, &url);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("/chaos/restart/{writer}/{i}");
                    let put = netns
                        .command("etcdctl")
                        .env("ETCDCTL_API", "3")
                        .arg(format!("--endpoints={url}"))
                        .args(["--command-timeout=5s", "put", &key, "v"])
                        .output()
                        .unwrap();
                    // Those etcd could not take while down are not acknowledged.
                    if put.status.success() {
                        acknowledged.lock().unwrap().push(key);
                    }
                    i += 1;
                }
            });
        }
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(2000));
            restarts.push(kill_and_restart(
                &mut rig.etcd,
                &rig.netns,
                &rig.dir.0,
                &rig.options,
            ));
        }
        std::thread::sleep(Duration::from_millis(2000));
        stop.store(true, Ordering::Relaxed);
    });
    let log = stop_cleanly(rec);
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(
        acknowledged.len() >= 20,
        "{} puts acknowledged",
        acknowledged.len()
    );

    let calls = correlate_json(&rig.capture);
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for c in calls.iter().filter(|c| c["status"] == 0) {
        by_key
            .entry(c["key"].as_str().unwrap().to_string())
            .or_default()
            .push(c);
    }
    for key in &acknowledged {
        let found = by_key
            .get(&b64(key.as_bytes()))
            .map_or(&[][..], Vec::as_slice);
        let [c] = found else {
            panic!(
                "{key}: {} acknowledged writes in correlate: {found:?}",
                found.len()
            );
        };
        let (Some(fsync), Some(reply)) =
            (c["wal"]["fsync_ts_ns"].as_u64(), c["reply_ts_ns"].as_u64())
        else {
            panic!("{key} is not linked to a WAL entry and its fsync: {c}");
        };
        assert!(c["wal"]["index"].as_u64().is_some(), "{c}");
        assert!(fsync <= reply, "{key}: fsync after the reply: {c}");
    }
    // No acknowledged write the writers did not make.
    assert_eq!(
        by_key
            .keys()
            .filter(|k| {
                let key = base64::engine::general_purpose::STANDARD.decode(k).unwrap();
                key.starts_with(b"/chaos/restart/")
            })
            .count(),
        acknowledged.len()
    );
    // Each process's WAL is followed on its own, from its first write: what the one
    // before it wrote is not part of its stream.
    assert_wal_decodes(&rig.capture, 1);
    assert_restarts_told(&rig, &log, &restarts);
}

// ------------------------------------------------------------------ 3. SIGSTOP

/// A process SIGSTOPped, resumed (SIGCONT) on drop: a failing test leaves no stopped
/// etcd behind for the cluster's drop to wait on.
struct Paused(u32);

impl Paused {
    fn stop(pid: u32) -> Paused {
        signal(pid, libc::SIGSTOP);
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn cluster_put(member: &EtcdServer, netns: &Netns, key: &str) {
    etcdctl_ok(member, netns, &["--command-timeout=30s", "put", key, "v"]);
}

/// A follower SIGSTOPped for a few seconds while the leader takes puts, then resumed:
/// `replay` and `wal` decode the capture whole, the peer traffic has no undecodable or
/// missing stretch, the stopped member sent no raft message while stopped and sends
/// again (on the streams, to the leader) once resumed.
#[test]
fn a_stopped_member_leaves_a_decodable_capture() {
    if skip_without_root() {
        return;
    }
    let (dir, netns, options) = sandbox("chaos-sigstop", false);
    let cluster = EtcdCluster::start(&netns, &dir.0.join("cluster"), 3, &options).unwrap();
    let status = cluster.settled_status(&netns).unwrap();
    let leader_id = status[0].leader;
    let leader = status
        .iter()
        .position(|s| s.member_id == leader_id)
        .unwrap();
    let stopped = (leader + 1) % 3;
    let stopped_id = status[stopped].member_id;
    let capture = dir.0.join("sigstop.etr");
    let rec = record_members(&cluster, &capture);

    let mut keys = Vec::new();
    let mut put = |phase: &str, n: std::ops::Range<usize>| {
        for i in n {
            let key = format!("/chaos/{phase}/{i}");
            cluster_put(&cluster.members[leader], &netns, &key);
            keys.push(key);
        }
    };
    put("before", 0..5);
    let paused = Paused::stop(cluster.members[stopped].pid());
    let stopped_at = monotonic_ns();
    // Longer than an election timeout (1 s): the member would have been heard from.
    let until = Instant::now() + Duration::from_secs(3);
    let mut during = 0;
    while Instant::now() < until {
        put("during", during..during + 1);
        during += 1;
    }
    let resumed_at = monotonic_ns();
    drop(paused);
    put("after", 0..5);
    // The resumed member has caught up when it serves the last put from its own store.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.members[stopped]
            .etcdctl(&netns, &["get", "--consistency=s", "/chaos/after/4"])
            .unwrap();
        if out.status.success() && stdout(&out).contains("/chaos/after/4") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed member did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Long enough for a link heartbeat on every idle stream (every ~1.7 s).
    std::thread::sleep(Duration::from_secs(2));
    stop_cleanly(rec);
    assert!(during > 0);

    let records = replay_json(&capture, &[]);
    for key in &keys {
        let found: Vec<&Value> = of(&records, "/etcdserverpb.KV/Put")
            .into_iter()
            .filter(|r| r["key"] == key.as_str())
            .collect();
        assert!(
            matches!(found[..], [r] if r["status"] == 0 && r["gaps"] == false),
            "{} Puts of {key}: {:?}",
            found.len(),
            found.first()
        );
    }
    assert_wal_decodes(&capture, 3);

    let peers = peer_records(&capture);
    let bad: Vec<String> = peers
        .iter()
        .filter(|r| {
            matches!(r.event, PeerEvent::Note { kind, .. }
                if matches!(kind, NoteKind::Undecodable | NoteKind::Gap | NoteKind::TooLarge))
        })
        .map(|r| r.to_string())
        .collect();
    assert!(bad.is_empty(), "peer traffic not decoded: {bad:#?}");
    let from_stopped = |from: u64, to: u64| {
        peers
            .iter()
            .filter_map(move |r| match &r.event {
                PeerEvent::Message { message, .. } if message.from == stopped_id => {
                    Some((r.ts_ns(), message))
                }
                _ => None,
            })
            .filter(move |(ts, _)| (from..to).contains(ts))
            .count()
    };
    // What it had handed to the kernel before the stop may still leave just after.
    let quiet = from_stopped(stopped_at + 200_000_000, resumed_at);
    assert_eq!(
        quiet, 0,
        "the stopped member sent {quiet} messages while stopped"
    );
    assert!(
        from_stopped(0, stopped_at) > 0 && from_stopped(resumed_at, u64::MAX) > 0,
        "no message from the member before its stop, or after it resumed"
    );
    let to_leader_after = peers.iter().filter(|r| r.ts_ns() >= resumed_at).any(|r| {
        matches!(&r.event, PeerEvent::Message { message, .. }
            if message.from == stopped_id && message.to == leader_id)
    });
    assert!(
        to_leader_after,
        "the resumed member's stream to the leader carries nothing"
    );
}

// ------------------------------------------------------------------ 4. losses

/// A writer traced by pid makes 64 KiB WAL writes as fast as it can, far more than
/// the smallest rings hold between two drains: some are lost, and the writes in the
/// capture plus the kernel's loss count (the capture's loss records, `info`, and what
/// the recorder said) are every write made, exactly.
#[test]
fn the_loss_count_is_exactly_what_is_missing() {
    if skip_without_root() {
        return;
    }
    const SIZE: usize = 65536;
    const COUNT: u64 = 10_000;
    let (dir, netns, _) = sandbox("chaos-loss", false);
    let writer = dir.0.join("writer");
    clang("writer.c", &writer, &[]);
    let data_dir = dir.0.join("data");
    let wal_dir = data_dir.join("member/wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    let file = wal_dir.join("0000000000000000-0000000000000000.wal");
    let mut child = netns
        .command(&writer)
        .arg(&file)
        .arg(SIZE.to_string())
        .arg(COUNT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // `ip netns exec` execs the writer: its pid is the child's.
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let capture = dir.0.join("loss.etr");
    let rec = record_pid(
        &capture,
        pid,
        &[
            "--data-dir",
            data_dir.to_str().unwrap(),
            // No traffic: only the writer's writes are events.
            "--port",
            "1",
            "--iface",
            "lo",
            // The smallest rings (4 MiB a CPU) hold a few dozen 64 KiB events.
            "--buffer-mb",
            "8",
        ],
    );
    writeln!(stdin, "go").unwrap();
    let whole: u64 = lines.next().unwrap().unwrap().parse().unwrap();
    assert_eq!(
        whole, COUNT,
        "the writer's writes did not all write {SIZE} bytes"
    );
    let log = stop_cleanly(rec);
    // Its end comes after the recording, so it is no event (which could be lost too).
    drop(stdin);
    assert!(child.wait().unwrap().success());

    let reader = etcd_trace::capture::CaptureReader::open(&capture).unwrap();
    let (mut received, mut lost, mut other) = (0u64, 0u64, Vec::new());
    for item in reader.events() {
        match item {
            ReadItem::Event(Event::Syscall(s))
                if s.pid == pid
                    && s.call == SyscallKind::Pwrite64
                    && s.file.kind == FileKind::Wal =>
            {
                received += 1
            }
            ReadItem::Event(Event::Loss(l)) => lost += l.count,
            ReadItem::Event(e) => {
                other.push(format!("{e:?}").chars().take(200).collect::<String>())
            }
            ReadItem::Damaged(d) => panic!("damage in the capture: {d:?}"),
        }
    }
    assert!(other.is_empty(), "events other than the writes: {other:#?}");
    assert!(
        lost > 0,
        "nothing was lost: {received} received; the test proves nothing\n{log}"
    );
    assert!(received > 0, "nothing was received\n{log}");
    assert_eq!(
        received + lost,
        COUNT,
        "received {received} + lost {lost}\n{log}"
    );
    assert!(log.contains(&format!("lost {lost} events")), "{log}");
    // The kernel's histogram counted every write, the lost ones too.
    let wal_writes: Vec<u64> = reader
        .index()
        .latency
        .iter()
        .filter(|h| h.kind == etcd_trace::capture::LatencyKind::WalWrite)
        .map(|h| h.count())
        .collect();
    assert_eq!(wal_writes, [COUNT], "{:?}", reader.index().latency);

    let info = etcd_trace(&["info", capture.to_str().unwrap(), "--format", "json"]);
    assert!(info.status.success(), "{}", stderr(&info));
    let info: Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(info["lost"], lost, "{info}");
    let text = stdout(&etcd_trace(&["info", capture.to_str().unwrap()]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("lost") && l.contains(&lost.to_string())),
        "{text}"
    );
}

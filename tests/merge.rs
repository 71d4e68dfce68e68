//! `etcd-trace merge`: captures of several hosts into one.
//!
//! With root: three hosts of a cluster, each a network namespace with one etcd member
//! and its own recorder, joined by veth pairs to a bridge. Their captures merged into
//! one must read like one capture of the whole cluster. The namespaces share the
//! machine's clock, so the estimated offsets must be 0 within 1 ms; each client call
//! must replay once, whichever hosts saw it; each member's WAL must stay its own; and no
//! segment may be in the merged file more often than in the capture that saw it most.
//!
//! Without root, the same checks on the hosts' captures of such a run (fixtures/), and
//! bad or crafted inputs: clear errors, never a panic.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use common::*;
use etcd_trace::capture::{CaptureReader, CaptureWriter, Event, Header, ReadItem, HOST_ID_STRIDE};

/// The host names the recorders were given, in host order.
const HOSTS: [&str; 3] = ["etcd-a", "etcd-b", "etcd-c"];

/// The hosts' captures of a run of the cluster test, and their merge.
const FIXTURE_HOSTS: [&str; 3] = [
    "fixtures/cluster-v4-etcd-a.etr",
    "fixtures/cluster-v4-etcd-b.etr",
    "fixtures/cluster-v4-etcd-c.etr",
];
const FIXTURE_MERGED: &str = "fixtures/cluster-v4.etr";

/// The keys the cluster test puts, in order.
fn workload_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..3 {
        keys.push(format!("/merge/local-{i}"));
        keys.push(format!("/merge/remote-{i}"));
    }
    keys.extend((0..3).map(|i| format!("/merge/after-{i}")));
    keys
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `etcd-trace ARGS` in the repository's root (fixture paths are relative to it).
fn run(args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `etcd-trace merge INPUTS -o OUTPUT EXTRA`.
fn merge(inputs: &[&Path], output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["merge".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), output.display().to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

/// What identifies a segment on both ends, with its payload.
type SegmentId = (String, String, u32, u32, u8, u32, Vec<u8>);

fn segments(path: &Path) -> HashMap<SegmentId, usize> {
    let (_, events) = read_events(path);
    let mut counts = HashMap::new();
    for e in events {
        if let Event::Packet(p) = e {
            let id = (
                p.src.to_string(),
                p.dst.to_string(),
                p.seq,
                p.ack,
                p.flags.0,
                p.payload_len,
                p.payload.to_vec(),
            );
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// The checks of a merge of the cluster test's captures `inputs` into `merged`.
/// `ids` are the members' ids in host order, when known: a member is named by its id,
/// or by its pid in the merged file while no WAL metadata record gave the id.
fn check_merged(merged: &Path, inputs: &[PathBuf], ids: Option<&[u64]>) {
    let m = merged.to_str().unwrap();

    // The hosts, their clocks within 1 ms of each other, with an uncertainty.
    let info = json_lines(&["info", "--format", "json", m]).remove(0);
    assert_eq!(info["format_version"], etcd_trace::capture::FORMAT_VERSION);
    let hosts = info["header"]["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, HOSTS);
    for (i, h) in hosts.iter().enumerate() {
        let offset = h["offset_ns"].as_i64().unwrap();
        let uncertainty = h["uncertainty_ns"].as_u64().unwrap();
        let matched = h["matched_segments"].as_u64().unwrap();
        eprintln!(
            "{}: offset {offset} ns ± {uncertainty} ns, {matched} segments",
            names[i]
        );
        assert!(offset.abs() < 1_000_000, "{h}");
        if i > 0 {
            assert!(uncertainty > 0 && uncertainty < 1_000_000_000, "{h}");
            assert!(matched > 0, "{h}");
            assert!(h["measured_against"].is_u64(), "{h}");
        }
        assert_eq!(h["id_base"], i as u64 * u64::from(HOST_ID_STRIDE));
    }
    let text = stdout(&run(&["info", m]));
    for h in HOSTS {
        assert!(text.contains(&format!("  {h} ")), "{text}");
    }

    // Each host's latency histograms, named by host (none from format 4 hosts).
    let mut expected = Vec::new();
    for (host, input) in HOSTS.iter().zip(inputs) {
        for h in &CaptureReader::open(input).unwrap().index().latency {
            let mut named = h.clone();
            named.data_dir = format!("{host}:{}", h.data_dir);
            expected.push(named);
        }
    }
    assert_eq!(
        CaptureReader::open(merged).unwrap().index().latency,
        expected
    );

    // Each client call once.
    let replay = replay_json(merged, &[]);
    let mut puts: BTreeMap<String, usize> = BTreeMap::new();
    for r in of(&replay, "/etcdserverpb.KV/Put") {
        *puts
            .entry(r["key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = workload_keys().into_iter().map(|k| (k, 1)).collect();
    assert_eq!(puts, expected);
    assert_eq!(of(&replay, "/etcdserverpb.Maintenance/MoveLeader").len(), 1);

    // Host i's pids moved by i × the stride, in the header and in every syscall.
    let (reader, events) = read_events(merged);
    let pids: Vec<u32> = reader.header().processes.iter().map(|p| p.pid).collect();
    let own: Vec<u32> = inputs
        .iter()
        .flat_map(|c| read_events(c).0.header().processes.clone())
        .map(|p| p.pid)
        .collect();
    let moved: Vec<u32> = own
        .iter()
        .enumerate()
        .map(|(i, pid)| pid + i as u32 * HOST_ID_STRIDE)
        .collect();
    assert_eq!(pids, moved);
    let syscall_pids: BTreeSet<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Syscall(s) => Some(s.pid),
            _ => None,
        })
        .collect();
    assert_eq!(syscall_pids, moved.iter().copied().collect());

    // Each member's WAL holds every put, once, and says whose it is.
    let member_names: Vec<Vec<String>> = moved
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let mut names = vec![format!("pid:{pid}")];
            names.extend(ids.map(|ids| format!("{:x}", ids[i])));
            names
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut writers: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for v in &json_lines(&["wal", "--format", "json", m]) {
        let Some(key) = v["detail"]["request"]["key"].as_str() else {
            continue;
        };
        let member = v["member"].as_str().unwrap();
        let whose = member_names
            .iter()
            .position(|names| names.iter().any(|n| n == member))
            .unwrap_or_else(|| panic!("{member} is none of {member_names:?}"));
        writers
            .entry(b64.decode(key).unwrap())
            .or_default()
            .push(whose);
    }
    for key in workload_keys() {
        let mut whose = writers.get(key.as_bytes()).cloned().unwrap_or_default();
        whose.sort_unstable();
        assert_eq!(whose, vec![0, 1, 2], "{key}: {writers:?}");
    }

    // No segment more often than the capture that saw it most; some seen by two.
    let seen: Vec<HashMap<SegmentId, usize>> = inputs.iter().map(|c| segments(c)).collect();
    let out = segments(merged);
    let all: BTreeSet<&SegmentId> = seen.iter().flat_map(|i| i.keys()).collect();
    assert_eq!(out.len(), all.len());
    let mut both_ends = 0;
    for id in all {
        let most = seen.iter().map(|i| i.get(id).copied().unwrap_or(0)).max();
        both_ends += usize::from(seen.iter().filter(|i| i.contains_key(id)).count() > 1);
        assert_eq!(out.get(id).copied(), most, "{id:?}");
    }
    assert!(both_ends > 100, "{both_ends} segments seen by two hosts");

    // Every other analysis reads it.
    for cmd in ["dump", "correlate", "timeline"] {
        let out = run(&[cmd, m]);
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
    }
    let detect = run(&["detect", m]);
    assert!(
        matches!(detect.status.code(), Some(0 | 1)),
        "{}",
        stderr(&detect)
    );
}

/// The hosts' captures in fixtures/ merge into a capture that passes the cluster test's
/// checks, and whose calls are the merged fixture's.
#[test]
fn the_fixture_hosts_merge_into_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("cluster.etr");
    let inputs: Vec<PathBuf> = FIXTURE_HOSTS.iter().map(|p| root().join(p)).collect();
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let out = merge(&refs, &merged, &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    for h in &HOSTS[1..] {
        assert!(
            log.contains(&format!("clock {h}: +")) || log.contains(&format!("clock {h}: -")),
            "{log}"
        );
    }
    assert!(log.contains("segments seen on both ends are in"), "{log}");
    check_merged(&merged, &inputs, None);
    let replay = |p: &Path| stdout(&run(&["replay", "--format", "json", p.to_str().unwrap()]));
    assert_eq!(replay(&merged), replay(&root().join(FIXTURE_MERGED)));
}

/// A copy of `from`'s capture at `to`, its header changed by `header` and each event
/// by `event`.
fn rewrite(from: &Path, to: &Path, header: impl Fn(&mut Header), event: impl Fn(&mut Event)) {
    let reader = CaptureReader::open(from).unwrap();
    let mut h = reader.header().clone();
    header(&mut h);
    let mut writer = CaptureWriter::create(to, &h).unwrap();
    for item in reader.events() {
        let ReadItem::Event(mut e) = item else {
            panic!("damage in a fixture")
        };
        event(&mut e);
        writer.push(&e).unwrap();
    }
    writer.finish().unwrap();
}

/// A scratch directory, and the first two fixture hosts' captures.
fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let a = root().join(FIXTURE_HOSTS[0]);
    let b = root().join(FIXTURE_HOSTS[1]);
    (tempfile::tempdir().unwrap(), a, b)
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (dir, a, b) = scratch();
    let at = |name: &str| dir.path().join(name);
    let out = at("out.etr");
    let refused = |inputs: &[&Path], output: &Path, says: &str| {
        let o = merge(inputs, output, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "wanted {says:?}: {}", stderr(&o));
    };

    let notes = at("notes.txt");
    std::fs::write(&notes, "not a capture\n").unwrap();
    refused(&[&a, &notes], &out, "is not an etcd-trace capture file");
    refused(&[&a, &a], &out, "are the same file");
    let copy = at("copy.etr");
    std::fs::copy(&a, &copy).unwrap();
    refused(&[&a, &copy], &out, "are the same recording");
    // One host recorded twice (under another name): the same segments left both.
    let renamed = at("renamed.etr");
    rewrite(&a, &renamed, |h| h.hostname = "elsewhere".into(), |_| {});
    refused(&[&a, &renamed], &out, "recorded on one host");
    // Two recordings that share no segment: an offset is never assumed.
    let v1 = root().join("fixtures/basic-v1.etr");
    let v2 = root().join("fixtures/basic-v2.etr");
    refused(&[&v1, &v2], &out, "cannot estimate the clock of");
    refused(&[&a, &b, &v1], &out, "cannot estimate the clock of");
    refused(
        &[&root().join(FIXTURE_MERGED), &a],
        &out,
        "merged capture already",
    );
    // A pid no Linux gives cannot be moved into its host's room.
    let odd = at("odd.etr");
    rewrite(
        &b,
        &odd,
        |_| {},
        |e| {
            if let Event::Syscall(s) = e {
                s.pid = HOST_ID_STRIDE + 1;
            }
        },
    );
    refused(&[&a, &odd], &out, "beyond what Linux gives");
    assert!(!out.exists(), "a failed merge leaves no file");
    // The output is never an input, nor overwritten without --force.
    refused(&[&a, &b], &a, "is one of the inputs");
    let o = merge(&[&a, &b], &a, &["--force"]);
    assert!(
        stderr(&o).contains("is one of the inputs"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&out, "old").unwrap();
    refused(&[&a, &b], &out, "exists");
    let o = merge(&[&a, &b], &out, &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = merge(&[&a], &out, &["--force"]);
    assert_eq!(o.status.code(), Some(2), "one input is not a merge");
}

/// Crafted captures (clocks at the ends of their range, events at the end of time,
/// bytes changed anywhere) make merge succeed or fail with an error, never panic.
#[test]
fn crafted_inputs_never_panic() {
    let (dir, a, b) = scratch();
    let at = |name: &str| dir.path().join(name);
    let clean_exit = |inputs: &[&Path]| {
        let o = merge(inputs, &at("out.etr"), &[]);
        let _ = std::fs::remove_file(at("out.etr"));
        assert!(
            matches!(o.status.code(), Some(0 | 2)),
            "{:?}: {}",
            o.status,
            stderr(&o)
        );
    };
    for (name, offset) in [("max.etr", i64::MAX), ("min.etr", i64::MIN)] {
        rewrite(&b, &at(name), |h| h.clock_offset_ns = offset, |_| {});
        clean_exit(&[&a, &at(name)]);
        clean_exit(&[&at(name), &a]);
    }
    rewrite(
        &b,
        &at("late.etr"),
        |_| {},
        |e| {
            if let Event::Packet(p) = e {
                p.ts_ns = u64::MAX - (p.seq % 3) as u64;
            }
        },
    );
    clean_exit(&[&a, &at("late.etr")]);
    let bytes = std::fs::read(&b).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..24 {
        let mut mutated = bytes.clone();
        for _ in 0..=round % 4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % mutated.len() as u64) as usize;
            mutated[i] ^= (state >> 32) as u8 | 1;
        }
        let path = at("mutated.etr");
        std::fs::write(&path, &mutated).unwrap();
        clean_exit(&[&a, &path]);
    }
}

#[cfg(feature = "record")]
mod cluster {
    use std::net::IpAddr;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use etcd_trace::sandbox::{EtcdCluster, Lan};

    use super::common::*;
    use super::{check_merged, merge, workload_keys, HOSTS};

    /// A recorder of `pid`'s etcd into `capture`, in a UTS namespace of its own named
    /// `hostname` (the name its capture's header gives).
    fn record(hostname: &str, pid: u32, capture: &Path) -> RecorderProcess {
        let mut command = Command::new("unshare");
        command
            .args(["--uts", "sh", "-c"])
            .arg(r#"echo "$0" > /proc/sys/kernel/hostname && exec "$@""#)
            .arg(hostname)
            .arg(bin())
            .args(["record", "-o"])
            .arg(capture)
            .args(["--pid", &pid.to_string()]);
        RecorderProcess::start_command(command).unwrap()
    }

    #[test]
    fn three_hosts_merged_read_as_one_cluster() {
        if skip_without_root() {
            return;
        }
        let dir = ScratchDir::new("etcd-trace-test-merge").unwrap();
        let lan = Lan::create(3).unwrap();
        let hosts: Vec<(&Netns, IpAddr)> = lan.hosts.iter().zip(lan.addresses.clone()).collect();
        let cluster =
            EtcdCluster::start_across(&hosts, &dir.0.join("cluster"), &EtcdOptions::default())
                .unwrap();
        let a = &lan.hosts[0];
        let ids: Vec<u64> = cluster
            .settled_status(a)
            .unwrap()
            .iter()
            .map(|s| s.member_id)
            .collect();

        let captures: Vec<PathBuf> = HOSTS
            .iter()
            .map(|h| dir.0.join(format!("{h}.etr")))
            .collect();
        let recorders: Vec<RecorderProcess> = HOSTS
            .iter()
            .zip(&captures)
            .zip(cluster.pids())
            .map(|((h, c), pid)| record(h, pid, c))
            .collect();

        // Puts through each member from its own host (loopback inside the host), through
        // the next member from each host (across the bridge), a leader move, and more
        // through a member of another host: the keys of `workload_keys`, in order.
        let keys = workload_keys();
        let put = |from: usize, member: usize, key: &str| {
            etcdctl_ok(
                &cluster.members[member],
                &lan.hosts[from],
                &["put", key, "v"],
            );
        };
        for i in 0..3 {
            put(i, i, &keys[2 * i]);
            put(i, (i + 1) % 3, &keys[2 * i + 1]);
        }
        let leader = cluster.settled_status(a).unwrap()[0].leader;
        let at = ids.iter().position(|&id| id == leader).unwrap();
        let new_leader = ids[(at + 1) % 3];
        let to = format!("{new_leader:x}");
        etcdctl_ok(&cluster.members[at], a, &["move-leader", &to]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.settled_status(a).unwrap()[0].leader != new_leader {
            assert!(Instant::now() < deadline, "the leader did not move");
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in 0..3 {
            put((i + 2) % 3, i, &keys[6 + i]);
        }
        for rec in recorders {
            stop_cleanly(rec);
        }

        let merged = dir.0.join("cluster.etr");
        let inputs: Vec<&Path> = captures.iter().map(PathBuf::as_path).collect();
        let out = merge(&inputs, &merged, &[]);
        let log = stderr(&out);
        assert!(out.status.success(), "{log}");
        eprintln!("{log}");
        // The hosts' captures, for a new fixture (fixtures/README.md).
        if let Some(keep) = std::env::var_os("ETCD_TRACE_KEEP_CAPTURES") {
            for c in &captures {
                std::fs::copy(c, Path::new(&keep).join(c.file_name().unwrap())).unwrap();
            }
        }
        // Merging again over it is refused, and leaves it as it was.
        let size = std::fs::metadata(&merged).unwrap().len();
        let again = merge(&inputs, &merged, &[]);
        assert_eq!(again.status.code(), Some(2));
        assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
        assert_eq!(std::fs::metadata(&merged).unwrap().len(), size);

        let pids: Vec<u32> = captures
            .iter()
            .flat_map(|c| read_events(c).0.header().processes.clone())
            .map(|p| p.pid)
            .collect();
        assert_eq!(pids, cluster.pids());
        check_merged(&merged, &captures, Some(&ids));
        // Each member synced its WAL for each of the 9 puts, and its host's histogram
        // in the merged file says so.
        let reader = etcd_trace::capture::CaptureReader::open(&merged).unwrap();
        for h in HOSTS {
            let wal_sync = reader.index().latency.iter().find(|l| {
                l.kind == etcd_trace::capture::LatencyKind::WalSync
                    && l.data_dir.starts_with(&format!("{h}:"))
            });
            let count = wal_sync.map_or(0, |l| l.count());
            assert!(count >= 9, "{h}: {count} WAL syncs");
        }

        // raft on the merged file: the term etcdctl saw after the move is led by the
        // member it was moved to, after a transfer, and no term has two leaders.
        let settled = cluster.settled_status(a).unwrap();
        let term = settled.iter().map(|s| s.raft_term).max().unwrap();
        let raft = super::json_lines(&["raft", merged.to_str().unwrap(), "--format", "json"]);
        let leader = raft
            .iter()
            .find(|r| r["kind"] == "leader" && r["term"] == term)
            .unwrap_or_else(|| panic!("no leader of term {term}: {raft:#?}"));
        assert_eq!(leader["member"], to.as_str(), "{raft:#?}");
        assert_eq!(leader["began"], "transfer", "{raft:#?}");
        assert!(raft.iter().all(|r| r["kind"] != "two_leaders"), "{raft:#?}");
    }
}

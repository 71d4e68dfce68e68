//! Captures recorded by earlier versions keep decoding the same way. Each fixture in
//! fixtures/ has the expected output of each command in `commands` beside it;
//! `UPDATE_FIXTURES=1 cargo test --test fixtures` rewrites them after a deliberate change.

mod common;

use std::path::Path;

use common::*;

/// The commands whose output fixtures/ keeps for a capture, by file suffix.
fn commands(capture: &str) -> Vec<(&'static str, Vec<&str>)> {
    vec![
        ("dump.txt", vec!["dump", capture]),
        ("dump.jsonl", vec!["dump", capture, "--format", "json"]),
        ("info.json", vec!["info", capture, "--format", "json"]),
        (
            "wal.jsonl",
            vec!["wal", capture, "--all", "--format", "json"],
        ),
        ("replay.txt", vec!["replay", capture]),
        ("replay.jsonl", vec!["replay", capture, "--format", "json"]),
        (
            "correlate.jsonl",
            vec!["correlate", capture, "--all", "--format", "json"],
        ),
        ("timeline.txt", vec!["timeline", capture]),
    ]
}

fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The fixture's outputs are what they were, and the file still opens as the format
/// `version` it was recorded in, with its index.
fn check(fixture: &str, version: u32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let capture = format!("fixtures/{fixture}.etr");
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    for (suffix, args) in commands(&capture) {
        let out = run(&args);
        let expected_path = root.join(format!("fixtures/{fixture}.{suffix}"));
        if update {
            std::fs::write(&expected_path, &out).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        assert_eq!(
            out,
            expected,
            "`etcd-trace {}` changed; if that is intended, run UPDATE_FIXTURES=1 cargo test --test fixtures",
            args.join(" ")
        );
    }
    let reader = etcd_trace::capture::CaptureReader::open(root.join(&capture)).unwrap();
    assert_eq!(reader.format_version(), version);
    assert_eq!(
        *reader.index_state(),
        etcd_trace::capture::IndexState::Present
    );
}

#[test]
fn basic_v1_still_reads_the_same() {
    check("basic-v1", 1);
}

#[test]
fn basic_v2_still_reads_the_same() {
    check("basic-v2", 2);
}

/// A three-host cluster's captures merged (format 4: the hosts in the header).
#[test]
fn cluster_v4_still_reads_the_same() {
    check("cluster-v4", 4);
}

/// The demo's workload in format 5: the kernel's latency histograms in the index.
#[test]
fn basic_v5_still_reads_the_same() {
    check("basic-v5", 5);
}

/// A workload recorded through etcd's API (format 6: API events, the header's mode).
#[test]
fn api_v6_still_reads_the_same() {
    check("api-v6", 6);
}

/// basic-v5's histograms count the syncs of its WAL and backend that its events show,
/// with the same total time.
#[test]
fn basic_v5_histograms_agree_with_its_events() {
    use etcd_trace::capture::{Event, LatencyKind, ReadItem};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reader =
        etcd_trace::capture::CaptureReader::open(root.join("fixtures/basic-v5.etr")).unwrap();
    let latency = reader.index().latency.clone();
    assert_eq!(latency.len(), LatencyKind::ALL.len(), "{latency:?}");
    for (kind, dir) in [
        (LatencyKind::WalSync, "member/wal/"),
        (LatencyKind::DbSync, "member/snap/db"),
    ] {
        let syncs: Vec<u64> = reader
            .events()
            .filter_map(|item| match item {
                ReadItem::Event(Event::Syscall(s))
                    if s.call.is_sync() && s.file.path.starts_with(dir) =>
                {
                    Some(s.duration_ns())
                }
                _ => None,
            })
            .collect();
        let h = latency.iter().find(|h| h.kind == kind).unwrap();
        assert!(!syncs.is_empty());
        assert_eq!(h.count(), syncs.len() as u64, "{kind:?}");
        assert_eq!(h.sum_ns, syncs.iter().sum::<u64>(), "{kind:?}");
    }
}

/// basic-v1's events written again by this version (in the current format) to `copy`,
/// with a TLS event after each socket read or write when `tls` says so (what etcd
/// would have read or written in plaintext on a TLS connection; the first of each
/// connection before its socket is known).
fn rewrite_basic_v1(copy: &Path, tls: bool) -> usize {
    use etcd_trace::capture::{
        CaptureReader, CaptureWriter, Direction, Event, FileKind, ReadItem, TlsData, TlsEndpoints,
    };
    use std::collections::HashMap;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reader = CaptureReader::open(root.join("fixtures/basic-v1.etr")).unwrap();
    let mut writer = CaptureWriter::create(copy, reader.header()).unwrap();
    let mut offsets: HashMap<(u16, u16, bool), u64> = HashMap::new();
    let mut added = 0;
    for item in reader.events() {
        let e = match item {
            ReadItem::Event(e) => e,
            ReadItem::Damaged(d) => panic!("{d:?}"),
        };
        writer.push(&e).unwrap();
        let Event::Syscall(s) = e else { continue };
        if !tls || s.file.kind != FileKind::Socket || s.transferred() == 0 {
            continue;
        }
        let (local, peer) = (s.file.local_port, s.file.peer_port);
        let egress = s.call.is_write();
        let offset = offsets.entry((local, peer, egress)).or_default();
        let len = s.transferred() as u32;
        writer
            .push(&Event::Tls(TlsData {
                ts_ns: s.enter_ns,
                pid: s.pid,
                tid: s.tid,
                conn_id: u64::from(peer),
                direction: if egress {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                endpoints: (*offset > 0).then(|| TlsEndpoints {
                    local: ([127, 0, 0, 1], local).into(),
                    remote: ([127, 0, 0, 1], peer).into(),
                }),
                offset: *offset,
                len,
                data: b"plaintext"[..9.min(len as usize)].to_vec().into(),
            }))
            .unwrap();
        *offset += u64::from(len);
        added += 1;
    }
    writer.finish().unwrap();
    added
}

/// A fixture's expected output of `suffix`, for the same events in a file at `path` of
/// the current format.
fn expected_for(fixture: &str, suffix: &str, path: &str) -> String {
    use etcd_trace::capture::FORMAT_VERSION;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(format!("fixtures/{fixture}.{suffix}")))
        .unwrap()
        .replace(&format!("fixtures/{fixture}.etr"), path)
        .replace(
            "\"format_version\":1,",
            &format!("\"format_version\":{FORMAT_VERSION},"),
        )
}

/// The fixture's events, written again by this version (in the current format), read
/// back exactly as the original does: every command's output is the same but for the
/// file's name and format version, and `info`'s counts and lists of the TLS and process
/// events that format 1 cannot hold (none) and its latency histograms (none). And the
/// file is smaller.
#[test]
fn basic_v1_rewritten_in_the_current_format_reads_the_same() {
    use etcd_trace::capture::{CaptureReader, FORMAT_VERSION};

    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        return; // the outputs it compares with are being rewritten
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let original = root.join("fixtures/basic-v1.etr");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("basic-current.etr");
    rewrite_basic_v1(&copy, false);
    assert_eq!(
        CaptureReader::open(&copy).unwrap().format_version(),
        FORMAT_VERSION
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&copy) < size(&original), "{} bytes", size(&copy));

    let copy_name = copy.to_str().unwrap();
    for (suffix, args) in commands(copy_name) {
        let expected = expected_for("basic-v1", suffix, copy_name);
        let out = run(&args);
        if suffix == "info.json" {
            let mut expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
            expected["counts"]["tls"] = 0.into();
            expected["counts"]["process"] = 0.into();
            // Format 6 counts API mode's events too: there are none.
            expected["counts"]["api"] = 0.into();
            // Every process is the header's, running from start to end.
            let header_processes = expected["header"]["processes"].as_array().unwrap();
            let processes: Vec<serde_json::Value> = header_processes
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "pid": p["pid"], "data_dir": p["data_dir"], "cmdline": p["cmdline"],
                        "started_ns": null, "ended_ns": null, "exit_code": null,
                        "signal": null,
                    })
                })
                .collect();
            expected["processes"] = processes.into();
            expected["tls_connections"] = serde_json::json!({});
            // Format 5's index has room for latency histograms: none were recorded.
            expected["latency"] = serde_json::json!([]);
            let out: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(out, expected, "{}", args.join(" "));
        } else {
            assert_eq!(out, expected, "{}", args.join(" "));
        }
    }
}

/// TLS events among the fixture's (made up, on the same connections as its packets):
/// `dump` and `info` show them, and every analysis still reads the file.
#[test]
fn tls_events_are_dumped_and_counted() {
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        return; // the outputs it compares with are being rewritten
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("basic-tls.etr");
    let added = rewrite_basic_v1(&copy, true);
    assert!(added > 20, "{added}");
    let copy_name = copy.to_str().unwrap();
    for (suffix, args) in commands(copy_name) {
        let expected = expected_for("basic-v1", suffix, copy_name);
        let out = run(&args);
        match suffix {
            "dump.txt" => {
                let (tls, rest): (Vec<&str>, Vec<&str>) =
                    out.lines().partition(|l| l.contains(" tls     pid "));
                assert_eq!(tls.len(), added);
                assert_eq!(rest, expected.lines().collect::<Vec<_>>());
                assert!(
                    tls[0].contains("socket not yet known off 0 len "),
                    "{}",
                    tls[0]
                );
                assert!(
                    tls.iter().any(|l| l.contains(" Ingress 127.0.0.1:")
                        && l.contains(" > 127.0.0.1:2379 off ")
                        && l.contains(" (captured 9) | 70 6c 61 69")),
                    "{tls:#?}"
                );
            }
            "dump.jsonl" => {
                let (tls, rest): (Vec<&str>, Vec<&str>) =
                    out.lines().partition(|l| l.contains("\"kind\":\"tls\""));
                assert_eq!(tls.len(), added);
                assert_eq!(rest, expected.lines().collect::<Vec<_>>());
                let first: serde_json::Value = serde_json::from_str(tls[0]).unwrap();
                assert_eq!(first["endpoints"], serde_json::Value::Null);
                assert_eq!(first["offset"], 0);
            }
            "info.json" => {
                let out: serde_json::Value = serde_json::from_str(&out).unwrap();
                let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
                assert_eq!(out["counts"]["tls"], added);
                // The plaintext is named on the connection it travels on.
                let mut conns = out["connections"].clone();
                for c in conns.as_object_mut().unwrap().values_mut() {
                    let c = c.as_object_mut().unwrap();
                    assert_eq!(c.remove("tls"), Some(true.into()), "{c:?}");
                    assert!(c.remove("tls_plaintext_bytes").is_some(), "{c:?}");
                }
                assert_eq!(conns, expected["connections"]);
                let conns = out["tls_connections"].as_object().unwrap();
                assert_eq!(
                    conns.len(),
                    expected["connections"].as_object().unwrap().len()
                );
                for c in conns.values() {
                    assert_eq!(c["local"].as_str().unwrap(), "127.0.0.1:2379");
                    assert!(c["bytes_written"].as_u64().unwrap() > 0, "{c}");
                    assert!(c["captured_bytes"].as_u64() < c["bytes_read"].as_u64());
                }
            }
            // The analyses take the made-up plaintext for the connections' own: their
            // output is not the fixture's, but they read the file (`run` checks).
            _ => {}
        }
    }
    let info = run(&["info", copy_name]);
    assert!(info.contains(&format!("tls {added}")), "{info}");
    assert!(info.contains("tls          8 connections"), "{info}");
}

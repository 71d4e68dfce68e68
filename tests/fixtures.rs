//! Captures recorded by earlier versions keep decoding the same way. Each fixture in
//! fixtures/ has its expected `dump` and `info --format json` output beside it;
//! `UPDATE_FIXTURES=1 cargo test --test fixtures` rewrites them after a deliberate change.

mod common;

use std::path::Path;

use common::*;

fn check(fixture: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let capture = format!("fixtures/{fixture}.etr");
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    for (suffix, args) in [
        ("dump.txt", vec!["dump", capture.as_str()]),
        (
            "dump.jsonl",
            vec!["dump", capture.as_str(), "--format", "json"],
        ),
        (
            "info.json",
            vec!["info", capture.as_str(), "--format", "json"],
        ),
        (
            "wal.jsonl",
            vec!["wal", capture.as_str(), "--all", "--format", "json"],
        ),
        ("replay.txt", vec!["replay", capture.as_str()]),
        (
            "replay.jsonl",
            vec!["replay", capture.as_str(), "--format", "json"],
        ),
        (
            "correlate.jsonl",
            vec!["correlate", capture.as_str(), "--all", "--format", "json"],
        ),
        ("timeline.txt", vec!["timeline", capture.as_str()]),
    ] {
        let out = std::process::Command::new(bin())
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let expected_path = root.join(format!("fixtures/{fixture}.{suffix}"));
        if update {
            std::fs::write(&expected_path, &out.stdout).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        assert_eq!(
            stdout(&out),
            expected,
            "`etcd-trace {}` changed; if that is intended, run UPDATE_FIXTURES=1 cargo test --test fixtures",
            args.join(" ")
        );
    }
}

#[test]
fn basic_v1_still_reads_the_same() {
    check("basic-v1");
    let reader = etcd_trace::capture::CaptureReader::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/basic-v1.etr"),
    )
    .unwrap();
    assert_eq!(reader.format_version(), 1);
    assert_eq!(
        *reader.index_state(),
        etcd_trace::capture::IndexState::Present
    );
}

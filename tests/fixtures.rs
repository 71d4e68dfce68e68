//! Captures recorded by earlier versions keep decoding the same way. Each fixture in
//! fixtures/ has its expected `dump` and `info --format json` output beside it;
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

/// The fixture's events, written again by this version (in the current format), read
/// back exactly as the original does: every command's output is the same but for the
/// file's name and format version. And the file is smaller.
#[test]
fn basic_v1_rewritten_in_the_current_format_reads_the_same() {
    use etcd_trace::capture::{CaptureReader, CaptureWriter, ReadItem, FORMAT_VERSION};

    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        return; // the outputs it compares with are being rewritten
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let original = root.join("fixtures/basic-v1.etr");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("basic-current.etr");
    let reader = CaptureReader::open(&original).unwrap();
    let mut writer = CaptureWriter::create(&copy, reader.header()).unwrap();
    for item in reader.events() {
        match item {
            ReadItem::Event(e) => writer.push(&e).unwrap(),
            ReadItem::Damaged(d) => panic!("{d:?}"),
        }
    }
    writer.finish().unwrap();
    assert_eq!(
        CaptureReader::open(&copy).unwrap().format_version(),
        FORMAT_VERSION
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&copy) < size(&original), "{} bytes", size(&copy));

    let copy_name = copy.to_str().unwrap();
    for (suffix, args) in commands(copy_name) {
        let expected = std::fs::read_to_string(root.join(format!("fixtures/basic-v1.{suffix}")))
            .unwrap()
            .replace("fixtures/basic-v1.etr", copy_name)
            .replace(
                "\"format_version\":1,",
                &format!("\"format_version\":{FORMAT_VERSION},"),
            );
        assert_eq!(run(&args), expected, "{}", args.join(" "));
    }
}

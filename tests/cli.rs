//! The command line as a user meets it: help with examples, man pages in sync, shell
//! completions, and clear errors with exit code 2 for bad input.

mod common;

use clap::CommandFactory;
use common::*;
use etcd_trace::cli::Cli;

fn man_pages() -> Vec<(String, Vec<u8>)> {
    let root = Cli::command();
    let mut pages = Vec::new();
    let mut render = |name: String, cmd: clap::Command| {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.name(name.clone().leak() as &str))
            .render(&mut buf)
            .unwrap();
        pages.push((format!("{name}.1"), buf));
    };
    render("etcd-trace".into(), root.clone());
    for sub in root.get_subcommands() {
        render(format!("etcd-trace-{}", sub.get_name()), sub.clone());
    }
    pages
}

/// man/ is generated from the clap definitions; `UPDATE_MAN=1 cargo test --test cli`
/// rewrites it.
#[test]
fn man_pages_are_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for (name, page) in man_pages() {
        let path = dir.join(&name);
        if update {
            std::fs::write(&path, &page).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(page.as_slice()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date: {stale:?}; run `UPDATE_MAN=1 cargo test --test cli`"
    );
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in Cli::command().get_subcommands() {
        let name = sub.get_name().to_string();
        let out = etcd_trace(&[&name, "--help"]);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(
            text.contains("Example"),
            "`{name} --help` has no example:\n{text}"
        );
    }
}

/// Every rule of the built-in rules file is listed where users look: `detect --help`
/// (and so its man page) and the README.
#[test]
fn every_detect_rule_is_listed_in_help_and_readme() {
    let help = stdout(&etcd_trace(&["detect", "--help"]));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rules: Vec<&str> = etcd_trace::analyze::detect::DEFAULT_RULES_YAML
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|id| !id.starts_with([' ', '#']) && id.contains('-'))
        .collect();
    assert!(rules.len() > 30, "{rules:?}");
    for id in rules {
        assert!(help.contains(id), "`detect --help` does not list {id}");
        assert!(readme.contains(id), "the README does not list {id}");
    }
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = etcd_trace(&["completions", shell]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("dump"), "{shell}");
    }
}

#[test]
fn a_file_that_is_not_a_capture_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are not the events you are looking for\n").unwrap();
    for cmd in ["info", "dump"] {
        let out = etcd_trace(&[cmd, path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("is not an etcd-trace capture file"),
            "{}",
            stderr(&out)
        );
    }
    let missing = etcd_trace(&["info", "/nonexistent/capture.etr"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("No such file"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = etcd_trace(&["dump"]);
    assert_eq!(out.status.code(), Some(2));
    let out = etcd_trace(&["info", "--format", "yaml", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_capture_of_a_newer_format_says_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.etr");
    let mut bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/basic-v1.etr"),
    )
    .unwrap();
    // The format version follows the 10-byte magic.
    bytes[10..14].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let out = etcd_trace(&["info", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("version 99") && err.contains("upgrade"),
        "{err}"
    );
}

/// A member's WAL directory made of segment files as etcd writes them, `per_file`
/// entries each, the last one preallocated; the files' paths.
fn write_wal_dir(dir: &std::path::Path, files: u64, per_file: u64) -> Vec<std::path::PathBuf> {
    use etcd_trace::decode::raftpb::{Entry, HardState};
    use etcd_trace::decode::wal::{SegmentName, WalEncoder, WalMetadata, WalRecordKind};
    use prost::Message;

    let wal = dir.join("member/wal");
    std::fs::create_dir_all(&wal).unwrap();
    let mut enc = WalEncoder::new(0);
    let mut paths = Vec::new();
    for seq in 0..files {
        let first = seq * per_file + 1;
        let mut bytes = enc.crc_record();
        let meta = WalMetadata {
            node_id: 0xf4a4_5700_8d14_41f2,
            cluster_id: 9,
        };
        bytes.extend(enc.record(WalRecordKind::Metadata, &meta.encode_to_vec()));
        for index in first..first + per_file {
            let entry = Entry {
                term: 2,
                index,
                r#type: 0,
                data: vec![b'd'; 300],
            };
            bytes.extend(enc.record(WalRecordKind::Entry, &entry.encode_to_vec()));
            let state = HardState {
                term: 2,
                vote: 1,
                commit: index,
            };
            bytes.extend(enc.record(WalRecordKind::State, &state.encode_to_vec()));
        }
        if seq + 1 == files {
            bytes.resize(bytes.len() + 16384, 0);
        }
        let name = SegmentName {
            seq,
            index: if seq == 0 { 0 } else { first },
        };
        let path = wal.join(name.to_string());
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    std::fs::write(wal.join("0.tmp"), [0u8; 64]).unwrap();
    paths
}

/// `wal DIR` checks the CRC chain across the segment files and says where it breaks;
/// a torn write at the end of the last file is not a broken chain.
#[test]
fn wal_of_a_directory_says_where_the_chain_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_wal_dir(dir.path(), 3, 20);
    let data_dir = dir.path().to_str().unwrap();
    let run = || {
        let out = etcd_trace(&["wal", data_dir]);
        (out.status.code(), stdout(&out), stderr(&out))
    };

    let (code, out, err) = run();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 61, "{out}");
    assert!(err.contains("not segment files, ignored: 0.tmp"), "{err}");
    assert!(
        err.contains(
            "3 segment files (sequence 0 to 2), 60 entries, 60 hard states, \
             member f4a457008d1441f2: CRC chain intact"
        ),
        "{err}"
    );

    // A record cut short by a crash at the end of the last file.
    let last = paths.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let tail = end.next_multiple_of(8);
    bytes[tail..tail + 8].copy_from_slice(&2000u64.to_le_bytes());
    bytes[tail + 8..tail + 200].fill(0x11);
    std::fs::write(last, &bytes).unwrap();
    let (code, _, err) = run();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "torn write at the end of the last file: 200 bytes after the last good record \
             (offset {tail})"
        )),
        "{err}"
    );
    assert!(
        err.contains("CRC chain intact up to a torn write at the end"),
        "{err}"
    );

    // A byte flipped in the middle of the first file: the records after it are valid.
    let mut bytes = std::fs::read(&paths[0]).unwrap();
    let at = bytes.len() / 2;
    let flipped = (at..).find(|i| bytes[*i] == b'd').unwrap();
    bytes[flipped] = b'e';
    std::fs::write(&paths[0], &bytes).unwrap();
    let (code, _, err) = run();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("entry record's CRC is"), "{err}");
    assert!(err.contains("valid records resume at offset"), "{err}");
    assert!(err.contains("CRC chain broken in 1 place"), "{err}");

    // The middle file missing.
    std::fs::remove_file(&paths[1]).unwrap();
    let (code, _, err) = run();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("segments missing after sequence number 0"),
        "{err}"
    );
    assert!(err.contains("CRC chain broken in 2 places"), "{err}");
}

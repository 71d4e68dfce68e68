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

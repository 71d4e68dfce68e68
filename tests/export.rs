//! `export`: tshark reads the pcapng export, and the HTTP/2 `:path`s it decodes equal
//! replay's methods (as tests/tshark.rs counts them), on the committed fixtures (no root)
//! and on a real etcd recorded in cleartext and over TLS (the plaintext connections).
//! The Parquet export, read back with arrow-rs's reader and DuckDB (required in CI),
//! holds replay's records per method and wal's records, one capture or a fleet's.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;

/// DuckDB's command line (`.ci/setup` installs it; `pip install duckdb-cli` elsewhere).
/// Required in CI, where a missing reader must not pass as agreement.
fn have_duckdb() -> bool {
    let found = Command::new("duckdb").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("ETCD_TRACE_REQUIRE_ROOT").is_none(),
            "duckdb is not installed: run .ci/setup"
        );
        println!("duckdb is not installed: the Parquet file was read with arrow-rs only");
    }
    found
}

/// A query's rows, as DuckDB prints them in CSV without a header.
fn duckdb_rows(query: &str) -> Vec<Vec<String>> {
    let out = Command::new("duckdb")
        .args(["-csv", "-noheader", "-c", query])
        .output()
        .unwrap();
    assert!(out.status.success(), "duckdb {query}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn or_unknown(method: &str) -> String {
    if method.is_empty() {
        "(unknown)".into()
    } else {
        method.to_string()
    }
}

fn have_tshark() -> bool {
    let found = Command::new("tshark").arg("--version").output().is_ok();
    if !found {
        println!("skipped: tshark (Debian package tshark) is not installed");
    }
    found
}

/// replay's requests per method: one per unary call, one per stream.
fn replay_methods(capture: &Path, extra: &[&str]) -> BTreeMap<String, u64> {
    let mut methods = BTreeMap::new();
    let mut streams = BTreeSet::new();
    for v in replay_json(capture, extra) {
        let method = v["method"].as_str().unwrap_or("(unknown)").to_string();
        if v["record"] == "call"
            || streams.insert((v["client"].to_string(), v["stream"].to_string()))
        {
            *methods.entry(method).or_default() += 1;
        }
    }
    methods
}

/// `export` in `format` (pcapng or parquet); what it said on stderr.
fn export(capture: &Path, format: &str, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["export", capture.to_str().unwrap(), "--format", format];
    args.extend_from_slice(&["-o", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let run = etcd_trace(&args);
    assert!(run.status.success(), "{args:?}: {}", stderr(&run));
    stderr(&run)
}

#[test]
fn fixtures_export_the_calls_replay_finds() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["basic-v1", "basic-v2", "cluster-v4"] {
        let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.etr"));
        let out = dir.path().join(format!("{name}.pcapng"));
        export(&capture, "pcapng", &out, &[]);
        let ours = replay_methods(&capture, &[]);
        assert!(!ours.is_empty(), "{name}: replay found nothing");
        assert_eq!(
            ours,
            tshark_paths(&out),
            "{name}: replay (left), tshark (right)"
        );
    }
    // A filter keeps whole connections: those with a Put, all their calls.
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cluster-v4.etr");
    let out = dir.path().join("puts.pcapng");
    export(&capture, "pcapng", &out, &["--method", "Put"]);
    let paths = tshark_paths(&out);
    assert_eq!(paths.get("/etcdserverpb.KV/Put"), Some(&9), "{paths:?}");
    assert!(
        !paths.contains_key("/etcdserverpb.Maintenance/Status"),
        "{paths:?}"
    );
    let capture = capture.to_str().unwrap();
    let wrong = etcd_trace(&[
        "export", capture, "--format", "pcapng", "--table", "wal", "-o", "x",
    ]);
    assert_eq!(wrong.status.code(), Some(2), "--table is for Parquet");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "an export holds what the capture holds"
        );
    }
}

/// Column `name` of every row group of a Parquet file, each value as text (null: None).
fn parquet_column(path: &Path, name: &str) -> Vec<Option<String>> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    parquet_columns(path, name, |column| {
        let strings = column.as_string::<i32>();
        (0..strings.len())
            .map(|i| strings.is_valid(i).then(|| strings.value(i).to_string()))
            .collect()
    })
}

/// Rows of a Parquet file whose column `name` is not null.
fn parquet_set(path: &Path, name: &str) -> usize {
    parquet_columns(path, name, |column| {
        vec![column.len() - column.null_count()]
    })
    .into_iter()
    .sum()
}

fn parquet_columns<T>(
    path: &Path,
    name: &str,
    take: impl Fn(&dyn arrow_array::Array) -> Vec<T>,
) -> Vec<T> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        values.extend(take(column.as_ref()));
    }
    values
}

/// The rpc table has replay's records, method by method; the wal table has wal's records.
fn assert_parquet_agrees(capture: &Path, dir: &Path) {
    let rpcs = dir.join("rpcs.parquet");
    export(capture, "parquet", &rpcs, &[]);
    let count = |methods: Vec<Option<String>>| {
        let mut per = BTreeMap::<String, u64>::new();
        for m in methods {
            *per.entry(m.unwrap_or_else(|| "(unknown)".into()))
                .or_default() += 1;
        }
        per
    };
    let replayed = count(
        replay_json(capture, &[])
            .iter()
            .map(|v| v["method"].as_str().map(str::to_string))
            .collect(),
    );
    assert!(!replayed.is_empty());
    assert_eq!(
        count(parquet_column(&rpcs, "method")),
        replayed,
        "parquet (left), replay (right)"
    );
    let linked = correlate_json(capture)
        .iter()
        .filter(|c| !c["wal"].is_null())
        .count();
    assert_eq!(
        parquet_set(&rpcs, "wal_index"),
        linked,
        "WAL links: parquet, correlate"
    );
    if have_duckdb() {
        let query = format!(
            "select method, count(*) from '{}' group by method order by method",
            rpcs.display()
        );
        let duck: BTreeMap<String, u64> = duckdb_rows(&query)
            .into_iter()
            .map(|row| match &row[..] {
                [method, n] => (or_unknown(method), n.parse().unwrap()),
                _ => panic!("duckdb row {row:?}"),
            })
            .collect();
        assert_eq!(duck, replayed, "duckdb (left), replay (right)");
    }

    let wal = dir.join("wal.parquet");
    export(capture, "parquet", &wal, &["--table", "wal"]);
    let out = etcd_trace(&[
        "wal",
        "--all",
        "--format",
        "json",
        capture.to_str().unwrap(),
    ]);
    let records: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let ours: Vec<String> = parquet_column(&wal, "record")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(ours, records, "parquet (left), wal (right)");
}

#[test]
fn fixtures_export_to_parquet_as_replay_and_wal_read_them() {
    for name in ["basic-v1", "basic-v2", "cluster-v4"] {
        let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.etr"));
        let dir = tempfile::tempdir().unwrap();
        assert_parquet_agrees(&capture, dir.path());
    }
}

/// The README's fleet case: captures exported into a directory partitioned by host and
/// date, one query across them all, per host as replay counts each capture.
#[test]
fn a_fleet_of_exports_is_one_duckdb_query() {
    if !have_duckdb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    for name in ["basic-v2", "cluster-v4"] {
        let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.etr"));
        let part = dir
            .path()
            .join(format!("fleet/host={name}/date=2026-12-03"));
        std::fs::create_dir_all(&part).unwrap();
        export(&capture, "parquet", &part.join("rpcs.parquet"), &[]);
        for call in replay_json(&capture, &[]) {
            let method = or_unknown(call["method"].as_str().unwrap_or(""));
            *expected.entry((name.to_string(), method)).or_insert(0u64) += 1;
        }
    }
    // The `host` column is each capture's own host name; the partition names which
    // capture a row came from, as the README's directory layout intends.
    let query = format!(
        "select regexp_extract(filename, 'host=([^/]+)', 1), method, count(*) \
         from read_parquet('{}/fleet/*/date=2026-12-*/*.parquet', filename = true, \
         hive_partitioning = false) group by all",
        dir.path().display()
    );
    let duck: BTreeMap<(String, String), u64> = duckdb_rows(&query)
        .into_iter()
        .map(|row| match &row[..] {
            [host, method, n] => ((host.clone(), or_unknown(method)), n.parse().unwrap()),
            _ => panic!("duckdb row {row:?}"),
        })
        .collect();
    assert_eq!(duck, expected, "duckdb (left), replay (right)");
}

#[cfg(feature = "record")]
fn workload(rig: &Rig) {
    for i in 0..10 {
        rig.etcdctl(&["put", &format!("/x/{i}"), "v"]);
        rig.etcdctl(&["get", "/x/", "--prefix"]);
    }
    rig.etcdctl(&["del", "/x/0"]);
    let lease = stdout(&rig.etcdctl(&["lease", "grant", "60"]));
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    rig.etcdctl(&["lease", "revoke", &id]);
    rig.etcdctl(&["member", "list"]);
    rig.etcdctl(&["endpoint", "status"]);
}

#[cfg(feature = "record")]
fn recorded_and_exported(rig: &Rig) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, String) {
    let rec = rig.record(&[]);
    workload(rig);
    stop_cleanly(rec);
    let out = rig.dir.0.join("export.pcapng");
    let said = export(&rig.capture, "pcapng", &out, &[]);
    (replay_methods(&rig.capture, &[]), tshark_paths(&out), said)
}

#[cfg(feature = "record")]
#[test]
fn cleartext_export_decodes_in_tshark() {
    if skip_without_root() || !have_tshark() {
        return;
    }
    let rig = Rig::start("export");
    let (ours, oracle, _) = recorded_and_exported(&rig);
    assert!(ours.len() >= 6, "{ours:?}");
    assert_eq!(ours, oracle, "replay (left) and tshark (right) disagree");
    assert_parquet_agrees(&rig.capture, &rig.dir.0);
}

#[cfg(feature = "record")]
#[test]
fn tls_plaintext_exports_as_cleartext_connections() {
    if skip_without_root() || !have_tshark() {
        return;
    }
    let rig = Rig::start_tls("export-tls");
    let (ours, oracle, said) = recorded_and_exported(&rig);
    assert!(ours.len() >= 6, "{ours:?}");
    assert!(!said.contains(" 0 of them TLS"), "{said}");
    assert_eq!(ours, oracle, "replay (left) and tshark (right) disagree");
}

//! Learned baselines on real captures: a baseline learned from a recorded workload of
//! a few clients, each from an address of its own; a run of the same shape with a client
//! reading far more, a prefix never read, a new client and a new method is flagged for
//! each, with evidence and what the baseline said; another normal run raises nothing.
//! Without root: the errors of a missing, damaged, newer or other-depth baseline.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The fixture capture, for the tests that need no etcd.
fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/basic-v2.etr")
}

/// `baseline learn CAPTURE -o BASE` with `extra` arguments.
fn learn(capture: &Path, base: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "baseline",
        "learn",
        capture.to_str().unwrap(),
        "-o",
        base.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    etcd_trace(&args)
}

/// `detect --format json FILE --baseline BASE`: the findings.
fn detect_with(capture: &Path, base: &Path) -> Vec<Value> {
    detect(capture, &["--baseline", base.to_str().unwrap()]).0
}

#[test]
fn a_bad_baseline_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.json");
    let capture = fixture();
    let learned = learn(&capture, &base, &[]);
    assert!(learned.status.success(), "{}", stderr(&learned));
    assert!(
        stdout(&learned).contains("learned 8 calls of 1 client"),
        "{}",
        stdout(&learned)
    );
    let findings = detect_with(&capture, &base);
    assert!(
        findings
            .iter()
            .all(|f| !f["rule"].as_str().unwrap().starts_with("baseline-")),
        "a capture is normal against itself: {findings:?}"
    );

    let json = std::fs::read_to_string(&base).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (dir.path().join("missing.json"), "No such file"),
        (
            write("cut.json", &json[..json.len() / 2]),
            "is not a baseline (not JSON",
        ),
        (
            write(
                "v2.json",
                &json.replacen("\"version\": 1", "\"version\": 2", 1),
            ),
            "format version 2, and this etcd-trace reads version 1 only",
        ),
        (
            write(
                "depth.json",
                &json.replacen("\"prefix_depth\": 2", "\"prefix_depth\": 3", 1),
            ),
            "learned with --prefix-depth 3, but the rules compare key prefixes at depth 2",
        ),
        (capture.clone(), "is not a baseline"),
    ];
    for (path, said) in cases {
        let out = etcd_trace(&[
            "detect",
            capture.to_str().unwrap(),
            "--baseline",
            path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let err = stderr(&out);
        assert!(
            err.contains(said) && err.contains("baseline"),
            "{said}: {err}"
        );
    }
    // Learning: nothing to learn from, and bounds.
    let empty = write("empty.etr", "");
    let out = learn(&empty, &base, &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = learn(&capture, &base, &["--prefix-depth", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--prefix-depth must be"),
        "{}",
        stderr(&out)
    );
}

#[cfg(feature = "record")]
mod recorded {
    use std::process::Output;
    use std::time::Duration;

    use super::*;

    /// The clients' addresses: three in every run, the fourth only in the abnormal one.
    const A: &str = "127.0.0.11";
    const B: &str = "127.0.0.12";
    const C: &str = "127.0.0.13";
    const D: &str = "127.0.0.14";

    fn rig(name: &str) -> Rig {
        Rig::start_with_clients(name, &[A, B, C, D])
    }

    fn ctl(rig: &Rig, ip: &str, args: &[&str]) -> Output {
        rig.etcdctl_from(ip, args)
    }

    fn pause() {
        std::thread::sleep(Duration::from_millis(150));
    }

    /// The workload, three clients at once. A reads config keys one at a time, B
    /// writes jobs and lists them now and then, C writes and reads its status. The
    /// abnormal run has A list the whole config prefix (40 keys) at each read, B
    /// delete jobs, C read the secrets, and a fourth client D.
    fn workload(rig: &Rig, abnormal: bool) {
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..24 {
                    if abnormal {
                        ctl(rig, A, &["get", "/app/config/", "--prefix"]);
                    } else {
                        ctl(rig, A, &["get", &format!("/app/config/cfg-{:02}", i % 12)]);
                    }
                    pause();
                }
            });
            s.spawn(|| {
                for i in 0..24 {
                    ctl(rig, B, &["put", &format!("/app/jobs/job-{i}"), "queued"]);
                    if i % 6 == 5 {
                        ctl(rig, B, &["get", "/app/jobs/", "--prefix", "--keys-only"]);
                    }
                    pause();
                }
                if abnormal {
                    for i in 0..4 {
                        ctl(rig, B, &["del", &format!("/app/jobs/job-{i}")]);
                    }
                }
            });
            s.spawn(|| {
                for i in 0..12 {
                    let key = format!("/app/status/c-{i}");
                    ctl(rig, C, &["put", &key, "ok"]);
                    ctl(rig, C, &["get", &key]);
                    pause();
                }
                if abnormal {
                    for _ in 0..3 {
                        ctl(rig, C, &["get", "/app/secrets/", "--prefix"]);
                    }
                }
            });
            if abnormal {
                s.spawn(|| {
                    for _ in 0..3 {
                        ctl(rig, D, &["get", "/app/config/cfg-01"]);
                        pause();
                    }
                });
            }
        });
    }

    /// One recorded run of the workload into `name` in the rig's directory.
    fn record_run(rig: &Rig, name: &str, abnormal: bool) -> std::path::PathBuf {
        let path = rig.dir.0.join(name);
        let rec = rig.record_to(&path, &[]);
        workload(rig, abnormal);
        stop_cleanly(rec);
        path
    }

    fn ours(findings: &[Value]) -> Vec<&Value> {
        findings
            .iter()
            .filter(|f| f["rule"].as_str().unwrap().starts_with("baseline-"))
            .collect()
    }

    fn find<'a>(findings: &'a [&'a Value], rule: &str, client: &str) -> &'a Value {
        findings
            .iter()
            .find(|f| f["rule"] == rule && f["client"] == client)
            .unwrap_or_else(|| panic!("no {rule} for {client} in {findings:#?}"))
    }

    #[test]
    fn deviations_from_a_learned_baseline_are_flagged_and_normal_runs_are_not() {
        if skip_without_root() {
            return;
        }
        let rig = rig("baseline");
        for i in 0..40 {
            rig.etcdctl(&["put", &format!("/app/config/cfg-{i:02}"), &"c".repeat(64)]);
        }
        for i in 0..10 {
            rig.etcdctl(&["put", &format!("/app/secrets/s-{i}"), "hunter2"]);
        }
        let normal = record_run(&rig, "normal.etr", false);
        let abnormal = record_run(&rig, "abnormal.etr", true);
        let again = record_run(&rig, "normal-again.etr", false);

        let base = rig.dir.0.join("base.json");
        let learned = learn(&normal, &base, &[]);
        assert!(learned.status.success(), "{}", stderr(&learned));
        let said = stdout(&learned);
        eprintln!("{said}");
        assert!(said.contains("of 3 clients from 1 capture"), "{said}");
        let json: Value = serde_json::from_slice(&std::fs::read(&base).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        let clients: Vec<&str> = json["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client"].as_str().unwrap())
            .collect();
        assert_eq!(clients, [A, B, C], "{json}");
        let prefixes: Vec<&str> = json["read_prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["prefix"].as_str().unwrap())
            .collect();
        assert_eq!(prefixes, ["/app/config/", "/app/jobs/", "/app/status/"]);

        let findings = detect_with(&abnormal, &base);
        let found = ours(&findings);
        for f in &found {
            eprintln!("abnormal: [{}] {}", f["rule"], f["summary"]);
            assert!(!f["evidence"].as_array().unwrap().is_empty(), "{f}");
        }
        let fast = find(&found, "baseline-read-rate", A);
        let text = fast["summary"].as_str().unwrap();
        assert!(
            text.contains("its normal") && text.contains("on /app/config/"),
            "{text}"
        );
        assert!(
            fast["volume"]["keys"].as_u64().unwrap() >= 24 * 40,
            "{fast}"
        );
        assert!(
            fast["evidence"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("40 keys"),
            "{fast}"
        );
        let new = find(&found, "baseline-new-client", D);
        assert!(
            new["summary"].as_str().unwrap().contains("never saw"),
            "{new}"
        );
        assert_eq!(new["events"], 3, "{new}");
        let prefix = find(&found, "baseline-new-prefix", C);
        assert!(
            prefix["summary"]
                .as_str()
                .unwrap()
                .contains("/app/secrets/ (3 reads)"),
            "{prefix}"
        );
        let mix = find(&found, "baseline-method-mix", B);
        assert!(
            mix["summary"]
                .as_str()
                .unwrap()
                .contains("DeleteRange 4 calls"),
            "{mix}"
        );
        assert!(mix["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["method"] == "DeleteRange"));
        let text = stdout(&etcd_trace(&[
            "detect",
            abnormal.to_str().unwrap(),
            "--baseline",
            base.to_str().unwrap(),
        ]));
        assert!(text.contains("[baseline-read-rate]"), "{text}");

        let findings = detect_with(&again, &base);
        for f in &findings {
            eprintln!("normal again: [{}] {}", f["rule"], f["summary"]);
        }
        assert!(ours(&findings).is_empty(), "{findings:#?}");
    }
}

//! timeline on a real capture: the Perfetto trace is valid trace-event JSON whose slices
//! nest, and --slow names the phase that took the time.
#![cfg(feature = "record")]

mod common;

use std::collections::HashMap;

use common::*;

fn record_writes(name: &str) -> Rig {
    let rig = Rig::start(name);
    let rec = rig.record(&[]);
    std::thread::scope(|s| {
        for w in 0..4 {
            let rig = &rig;
            s.spawn(move || {
                for i in 0..8 {
                    rig.etcdctl(&["put", &format!("/t/{w}/{i}"), "v"]);
                    rig.etcdctl(&["get", &format!("/t/{w}/{i}")]);
                }
            });
        }
    });
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    rig
}

#[test]
fn perfetto_trace_is_valid_and_slices_nest() {
    if skip_without_root() {
        return;
    }
    let rig = record_writes("timeline-perfetto");
    let trace = rig.dir.0.join("trace.json");
    let out = etcd_trace(&[
        "timeline",
        rig.capture.to_str().unwrap(),
        "--format",
        "perfetto",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let mut per_track: HashMap<u64, Vec<(f64, f64, String)>> = HashMap::new();
    let mut names = HashMap::new();
    for e in events {
        match e["ph"].as_str().unwrap() {
            "X" => {
                let ts = e["ts"].as_f64().unwrap();
                let dur = e["dur"].as_f64().unwrap();
                assert!(dur >= 0.0);
                per_track
                    .entry(e["tid"].as_u64().unwrap())
                    .or_default()
                    .push((ts, ts + dur, e["name"].as_str().unwrap().to_string()));
            }
            "M" if e["name"] == "thread_name" => {
                names.insert(
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap().to_string(),
                );
            }
            _ => {}
        }
    }
    // Slices on one track either nest or do not overlap at all.
    for (tid, slices) in &per_track {
        for (i, a) in slices.iter().enumerate() {
            for b in &slices[i + 1..] {
                // Times are µs with ns decimals: allow a ns of float rounding.
                const EPS: f64 = 0.0015;
                let disjoint = a.1 <= b.0 + EPS || b.1 <= a.0 + EPS;
                let nested = (a.0 <= b.0 + EPS && b.1 <= a.1 + EPS)
                    || (b.0 <= a.0 + EPS && a.1 <= b.1 + EPS);
                assert!(
                    disjoint || nested,
                    "track {:?}: {a:?} and {b:?} overlap",
                    names.get(tid)
                );
            }
        }
    }
    let all: Vec<&String> = per_track.values().flatten().map(|s| &s.2).collect();
    assert!(all.iter().any(|n| n.starts_with("Put /t/")));
    assert!(
        all.iter().any(|n| *n == "fsync"),
        "fsync phases nested in writes"
    );
    assert!(names.values().any(|n| n.starts_with("client 127.0.0.1:")));
    assert!(names.values().any(|n| n == "WAL appends"));
    assert!(names.values().any(|n| n == "backend commits") || names.values().any(|n| n == "fsync"));
}

#[test]
fn slow_names_the_phase_that_took_the_time() {
    if skip_without_root() {
        return;
    }
    let rig = record_writes("timeline-slow");
    let out = etcd_trace(&["timeline", rig.capture.to_str().unwrap(), "--slow", "0ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let puts: Vec<&str> = text.lines().filter(|l| l.contains(" Put /t/")).collect();
    assert_eq!(puts.len(), 32, "{text}");
    for line in puts {
        // "<phase> X of Y  [raft + WAL append A | fsync B | apply + reply C]": the phase
        // named is the longest of the three.
        let (verdict, detail) = line.split_once("  [").unwrap();
        let named = ["raft + WAL append", "fsync", "apply + reply"]
            .into_iter()
            .find(|p| verdict.contains(&format!("{p} ")))
            .unwrap_or_else(|| panic!("no phase named: {line}"));
        let durations: Vec<(&str, f64)> = detail
            .trim_end_matches(']')
            .split(" | ")
            .map(|part| {
                let mut words: Vec<&str> = part.split(' ').collect();
                let unit = words.pop().unwrap();
                let value: f64 = words.pop().unwrap().parse().unwrap();
                let scale = match unit {
                    "ns" => 1.0,
                    "µs" => 1e3,
                    "ms" => 1e6,
                    "s" => 1e9,
                    other => panic!("unit {other}"),
                };
                let name = part.rsplitn(3, ' ').nth(2).unwrap();
                (name, value * scale)
            })
            .collect();
        // Shown rounded, two phases may tie (2.72 ms and 2.72 ms): the one named must be
        // among the longest as shown.
        let longest = durations.iter().map(|d| d.1).fold(0.0, f64::max);
        let named_duration = durations.iter().find(|d| d.0 == named).unwrap().1;
        assert_eq!(named_duration, longest, "{line}");
    }
    assert!(text.contains("operations at or above"));
    assert!(text.contains("WAL fsync latency"));
}

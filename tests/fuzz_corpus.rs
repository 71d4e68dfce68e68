//! The fuzz corpus as a regression test, without the fuzzer: every target's body
//! (`etcd_trace::fuzzing`, shared with `fuzz/`) runs over every file of its corpus in
//! fuzz/corpus/<target>/. The seeds there are cut from fixtures/ by
//! `etcd_trace::fuzzing::seeds`; `UPDATE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus`
//! rewrites them after a change of an input format.

use std::path::{Path, PathBuf};

use etcd_trace::fuzzing::{seeds::seeds, TARGETS};

const FIXTURES: [&str; 4] = ["basic-v1", "basic-v2", "peers-v3", "api-v6"];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/corpus/{target}"))
}

#[test]
fn every_corpus_input_decodes_without_panic() {
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: empty corpus");
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", file.display());
        }
        println!("{target}: {} inputs", files.len());
    }
}

/// The committed seeds are what the fixtures give in today's input formats.
#[test]
fn seeds_are_cut_from_the_fixtures() {
    let update = std::env::var_os("UPDATE_FUZZ_SEEDS").is_some();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for fixture in FIXTURES {
        let bytes = std::fs::read(root.join(format!("fixtures/{fixture}.etr"))).unwrap();
        all.extend(seeds(fixture, &bytes).unwrap());
    }
    for (target, _) in TARGETS {
        assert!(
            all.iter().any(|s| s.target == *target),
            "no seed for {target}"
        );
    }
    if update {
        for (target, _) in TARGETS {
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("seed-") {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
    }
    for seed in &all {
        let path = corpus_dir(seed.target).join(&seed.name);
        if update {
            std::fs::write(&path, &seed.data).unwrap();
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == seed.data,
            "{} differs from what the fixtures give; if an input format changed on \
             purpose, run UPDATE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus",
            path.display()
        );
    }
}

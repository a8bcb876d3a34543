//! What CI runs: every regression file as it is, and a fixed-seed campaign
//! of 2,000 mutated inputs from graphs/; each fails on any panic, abort or
//! hang (internal errors and optimizer mismatches are printed, not failed).
//! A long campaign: `cargo run --release -p gradc-fuzz` (docs/fuzzing.md).

use gradc_fuzz::campaign::{self, Config, Limits, Report};
use gradc_fuzz::mutate::Corpus;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SEED: u64 = 1;
const INPUTS: usize = 2000;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gradc-fuzz"))
}

/// Generous for a debug build on two shared cores; the slowest input of the
/// fixed seed takes well under a second.
fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(20),
        memory_mib: 2048,
    }
}

fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

fn assert_no_crash(what: &str, report: &Report) {
    println!("{what}:\n{}", report.summary());
    let crashes = report.crashes();
    assert!(
        crashes.is_empty(),
        "{what}: {} distinct crashes (panic, abort or hang):\n{}",
        crashes.len(),
        report.summary()
    );
}

#[test]
fn the_regression_corpus_does_not_crash() {
    let files = campaign::ron_files(&repo("fuzz/regressions")).expect("fuzz/regressions");
    assert!(!files.is_empty(), "the regression corpus is empty");
    let report = campaign::replay(&exe(), &files, limits(), jobs()).expect("the harness runs");
    assert_eq!(report.inputs, files.len());
    assert_no_crash("regressions", &report);
}

#[test]
fn a_fixed_seed_campaign_does_not_crash() {
    let corpus = Corpus::load(&[&repo("graphs")]).expect("graphs/");
    let cfg = Config {
        seed: SEED,
        inputs: INPUTS,
        jobs: jobs(),
        limits: limits(),
        progress: false,
    };
    let report = campaign::fuzz(&exe(), &corpus, &cfg).expect("the harness runs");
    assert_eq!(report.inputs, INPUTS);
    // The mutators must reach past the parser and the checks.
    let ok = report
        .counts
        .get(&campaign::Class::Ok)
        .copied()
        .unwrap_or(0);
    assert!(
        ok >= INPUTS / 10,
        "only {ok} inputs ran clean:\n{}",
        report.summary()
    );
    assert_no_crash(&format!("seed {SEED}, {INPUTS} inputs"), &report);
}

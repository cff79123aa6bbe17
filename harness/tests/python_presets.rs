//! Prediction check (issue #14, item 7): each preset and the mode of the bundled Python pool
//! (`subjects/python/pool_subject.py`) that follows the same rules find the same anomaly kinds
//! on every catalog scenario, through the same harness (counts may differ).
//!
//! A fork run is timed by the machine's scheduler, and a few kinds depend on it (a torn read
//! needs a reader to land inside an in-place write before a rendezvous times out). So the
//! claim checked is the one runs can show: no kind is found in every run of one side and in no
//! run of the other. Each cell runs once per side; a cell whose kinds differ runs again, up to
//! `RUNS` times per side, and fails when a kind is still always on one side and never on the
//! other. A scenario with a `[nemesis]` (random kills) is run and its differences printed, not
//! asserted: where the kills land decides its kinds, and a few runs cannot separate that from
//! a rule difference. Runs are one at a time (each starts a few processes and interpreters), so the test
//! fits a 2-core machine: about 75 runs, a minute or two.
//!
//! Needs `python3`; without it, it fails saying so.

mod common;

use std::collections::BTreeSet;

use common::{first_run, kinds as run_kinds, poolcheck, require, systematic_difference};
use harness::scenario::Scenario;

/// Each preset and the Python switches that follow its rules.
const PAIRS: &[(&str, &str)] = &[
    ("thread-lock", ""),
    ("flock", "--flock-per-write"),
    ("batched-persist", "--batched"),
    ("merge-on-write", "--merge"),
    ("upstream-main", "--upstream-main"),
    ("flock-txn", "--merge --batched --serialized-refresh"),
];

/// Most runs per side of one cell.
const RUNS: usize = 6;

/// The anomaly kinds one run found (`poolcheck run --format json ...`).
fn kinds(scenario: &str, target: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["run", "--format", "json", "--scenario", scenario];
    args.extend_from_slice(target);
    let out = poolcheck(&args);
    let run = first_run(&out, &format!("{scenario} {target:?}"));
    assert_ne!(run["verdict"], "error", "{scenario} {target:?}: {run}");
    run_kinds(&run)
}

#[test]
fn each_preset_and_its_python_mode_find_the_same_anomaly_kinds() {
    require("python3", "Python 3.9 or later");
    let mut differences = Vec::new();
    for sc in Scenario::catalog() {
        for (preset, switches) in PAIRS {
            let subject = format!("python3 subjects/python/pool_subject.py {switches}");
            let rust_side = ["--strategy", preset];
            let python_side = ["--subject", subject.trim_end()];
            let (mut rust, mut python) = (Vec::new(), Vec::new());
            let mut differ = BTreeSet::new();
            for _ in 0..RUNS {
                rust.push(kinds(&sc.name, &rust_side));
                python.push(kinds(&sc.name, &python_side));
                differ = systematic_difference(&rust, &python);
                if differ.is_empty() {
                    break;
                }
            }
            if rust.len() > 1 {
                eprintln!(
                    "{} x {preset}: {} runs per side (rust {rust:?}, python {python:?})",
                    sc.name,
                    rust.len()
                );
            }
            if !differ.is_empty() && sc.nemesis.is_some() {
                // A [nemesis] scenario kills processes at random points: which kinds its runs
                // show depends on where the kills land, which differs between a Rust worker and
                // a Python interpreter doing the same work at different speeds, so a few runs
                // cannot tell a rule difference from kill placement. Printed, not asserted.
                eprintln!(
                    "{} x {preset}: undecided under random kills: {differ:?} (runs: rust {rust:?}, python {python:?})",
                    sc.name
                );
            } else if !differ.is_empty() {
                differences.push(format!(
                    "{} x {preset} vs python{} {switches}: {differ:?} (runs: rust {rust:?}, python {python:?})",
                    sc.name,
                    if switches.is_empty() { "" } else { " " },
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "kinds found in every run of one side and none of the other:\n{}",
        differences.join("\n")
    );
}

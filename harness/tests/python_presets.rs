//! Prediction check (issue #14, item 7): each preset and the mode of the bundled Python pool
//! (`subjects/python/pool_subject.py`) that follows the same rules find the same anomaly kinds
//! on every catalog scenario, through the same harness (counts may differ).
//!
//! The sides are compared by `common::compare_kinds`: a kind differs only when it is found in
//! every run of one side and in no run of the other, first at the scenario's timing and then
//! with the order in which a rendezvous releases its parties shuffled. Both phases are needed.
//! A fork run is timed by the machine's scheduler (a torn read needs a reader inside an
//! in-place write), and speed is not a rule: a Python interpreter is a few milliseconds slower
//! than a Rust worker after a rendezvous, every time. Measured on `external-cli` x `flock-txn`
//! (2026-12-07, a CI machine and this one): the Rust pool beat the outside CLI to the token
//! endpoint in 6 of 6 runs and then used its rotated token after the replay revoked the family
//! (`stale_token_use`); the Python pool lost that race in 6 of 6 and never held a token to use.
//! With the release order shuffled both sides show it in some runs and not in others.
//!
//! A scenario with a `[nemesis]` (random kills) is run and its differences printed, not
//! asserted: where the kills land decides its kinds, and a few runs cannot separate that from
//! a rule difference. Runs are one at a time (each starts a few processes and interpreters), so
//! the test fits a 2-core machine: about 90 runs, a minute or two.
//!
//! Needs `python3`; without it, it fails saying so.

mod common;

use std::collections::BTreeSet;

use common::{compare_kinds, first_run, kinds as run_kinds, poolcheck, require, Compared};
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

/// The anomaly kinds one run found (`poolcheck run --format json ...`).
fn kinds(scenario: &str, target: &[&str], seed: Option<&str>) -> BTreeSet<String> {
    let mut args = vec!["run", "--format", "json", "--scenario", scenario];
    args.extend_from_slice(target);
    if let Some(seed) = seed {
        args.extend_from_slice(&["--seed", seed]);
    }
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
            let Compared { differ, said, .. } = compare_kinds(
                &sc.name,
                |sc: &str, seed: Option<&str>| kinds(sc, &rust_side, seed),
                |sc: &str, seed: Option<&str>| kinds(sc, &python_side, seed),
            );
            eprintln!("{} x {preset}: {said}", sc.name);
            if !differ.is_empty() && sc.nemesis.is_some() {
                // A [nemesis] scenario kills processes at random points: which kinds its runs
                // show depends on where the kills land, which differs between a Rust worker and
                // a Python interpreter doing the same work at different speeds, so a few runs
                // cannot tell a rule difference from kill placement. Printed, not asserted.
                eprintln!(
                    "{} x {preset}: undecided under random kills: {differ:?}",
                    sc.name
                );
            } else if !differ.is_empty() {
                differences.push(format!(
                    "{} x {preset} vs python{} {switches}: {differ:?} (rust vs python: {said})",
                    sc.name,
                    if switches.is_empty() { "" } else { " " },
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "kinds found in every run of one side and none of the other, at the scenario's timing and with the release order shuffled:\n{}",
        differences.join("\n")
    );
}

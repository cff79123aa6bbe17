//! Every user number is bounded: process counts capped (one cap for `--procs` and a scenario's
//! `count`), zero and empty lists refused, negative numbers reported as invalid values. Each
//! refusal is exit 2 with a message naming the flag or file and the allowed range, before any
//! process is forked.

use std::process::{Command, Output};

fn poolcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(args)
        .output()
        .expect("poolcheck runs")
}

/// Exit 2 and stderr holding every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = poolcheck(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: no {n:?} in {err}");
    }
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

const RUN: [&str; 5] = ["run", "--scenario", "refresh-race", "--strategy", "none"];

#[test]
fn process_counts_are_capped_with_the_allowed_range() {
    for n in ["100000", "257", "0"] {
        let mut a = RUN.to_vec();
        a.extend(["--procs", n]);
        refused(&a, &["--procs", "1..=256"]);
    }
    refused(
        &["bench", "--quick", "--procs", "1,100000"],
        &["--procs 100000", "1 to 256"],
    );
}

#[test]
fn a_scenario_count_has_the_same_cap_as_procs() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/refresh-race.toml"
    ))
    .unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, text.replace("count = 4", "count = 100000")).unwrap();
    let big = big.to_str().unwrap();
    refused(
        &["run", "--scenario", big, "--strategy", "none"],
        &["big.toml", "100000", "1 to 256"],
    );
    // Two roles within the cap each, over it in all once --procs raises the first.
    let two = dir.path().join("two.toml");
    std::fs::write(
        &two,
        text.replace(
            "[[role]]\nkind = \"cli\"\ncount = 4\nops = 2\n",
            "[[role]]\nkind = \"cli\"\ncount = 4\nops = 2\n\n[[role]]\nkind = \"gateway\"\ncount = 200\nops = 1\n",
        ),
    )
    .unwrap();
    let two = two.to_str().unwrap();
    refused(
        &[
            "run",
            "--scenario",
            two,
            "--strategy",
            "none",
            "--procs",
            "100",
        ],
        &["300 processes", "1 to 256"],
    );
}

#[test]
fn zero_counts_and_empty_lists_are_refused() {
    refused(&["matrix", "--strategies", ""], &["--strategies is empty"]);
    refused(&["matrix", "--drivers", ""], &["--drivers"]);
    refused(
        &["matrix", "--scenarios", "refresh-race,,"],
        &["--scenarios"],
    );
    refused(
        &["crash", "--strategies", " , "],
        &["--strategies is empty"],
    );
    refused(&["bench", "--strategies", ""], &["--strategies is empty"]);
    refused(
        &["explore", "--strategy", "none", "--cases", "0"],
        &["--cases"],
    );
    refused(&["crash", "--kills", "0"], &["--kills"]);
    refused(&["crash", "--max-runs", "0"], &["--max-runs"]);
    refused(&["gate", "--seeds", "0"], &["--seeds"]);
    let mut a = RUN.to_vec();
    a.extend(["--subject", "true", "--subject-timeout-ms", "0"]);
    a.retain(|s| *s != "--strategy" && *s != "none");
    refused(&a, &["--subject-timeout-ms"]);
}

#[test]
fn negative_numbers_are_invalid_values_not_unknown_flags() {
    for flag in ["--seed", "--procs"] {
        let mut a = RUN.to_vec();
        a.extend([flag, "-1"]);
        refused(&a, &["invalid value '-1'", flag]);
    }
    refused(&["gate", "--seed", "-5"], &["invalid value '-5'", "--seed"]);
    refused(&["crash", "--kills", "-3"], &["invalid value '-3'"]);
}

//! Helpers shared by the integration tests that run `poolcheck` on subjects and compare the
//! anomaly kinds of runs (`observe.rs`, `python_presets.rs`, `subject.rs`): one way to run
//! `poolcheck`, to require a subject's interpreter, to read a report. Each test binary uses a
//! part, so unused ones are allowed.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// The workspace root (where `subjects/` and `scenarios/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// One `poolcheck` at a time in a test binary: each run starts several interpreters (under
/// ptrace when observed), and on a small machine parallel runs push the scenarios' rendezvous
/// past their timeouts.
static SERIAL: Mutex<()> = Mutex::new(());

/// `poolcheck ARGS` from the workspace root (subject commands and scenario paths are relative
/// to it), one at a time.
pub fn poolcheck(args: &[&str]) -> Output {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .current_dir(root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args)
        .output()
        .expect("poolcheck runs")
}

/// `poolcheck run --format json --scenario SCENARIO --subject CMD EXTRA...`.
pub fn run_subject(cmd: &str, scenario: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--format",
        "json",
        "--scenario",
        scenario,
        "--subject",
        cmd,
    ];
    args.extend_from_slice(extra);
    poolcheck(&args)
}

/// Fails the test, saying what to install, when `PROGRAM --version` does not run: the subjects
/// written in Python and Node.js are part of this test suite, not optional (`.ci/run` checks
/// for both).
pub fn require(program: &str, what: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program}` is not on PATH: install {what} to run these tests"
    );
}

/// The first run of the JSON report `poolcheck ... --format json` printed; `what` names the
/// command in the panic when it printed none.
pub fn first_run(out: &Output, what: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{what}: not a JSON report ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["runs"][0].clone()
}

/// The anomaly kinds a run found (non-zero counts).
pub fn kinds(run: &Value) -> BTreeSet<String> {
    run["anomalies"]
        .as_object()
        .unwrap_or_else(|| panic!("no anomalies in {run}"))
        .iter()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, _)| k.clone())
        .collect()
}

/// The kinds found in every run of one side and in no run of the other: a difference that
/// the runs show systematically, not one that comes and goes with timing. Empty while
/// either side has no run.
pub fn systematic_difference(a: &[BTreeSet<String>], b: &[BTreeSet<String>]) -> BTreeSet<String> {
    let every = |runs: &[BTreeSet<String>]| -> BTreeSet<String> {
        let mut it = runs.iter();
        let first = it.next().cloned().unwrap_or_default();
        it.fold(first, |acc, k| &acc & k)
    };
    let any = |runs: &[BTreeSet<String>]| -> BTreeSet<String> {
        runs.iter().flatten().cloned().collect()
    };
    if a.is_empty() || b.is_empty() {
        return BTreeSet::new();
    }
    &(&every(a) - &any(b)) | &(&every(b) - &any(a))
}

#[test]
fn a_difference_is_systematic_only_when_always_on_one_side_and_never_on_the_other() {
    let set = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let a = [set(&["torn_read", "lost_update"]), set(&["lost_update"])];
    // lost_update: in every run of a, none of b. torn_read: not in every run of a.
    let b = [set(&["double_redeem"]), set(&[])];
    assert_eq!(systematic_difference(&a, &b), set(&["lost_update"]));
    assert_eq!(systematic_difference(&b, &a), set(&["lost_update"]));
    // Once b shows it in one run, it is timing, not a difference.
    let b = [set(&["lost_update"]), set(&[])];
    assert!(systematic_difference(&a, &b).is_empty());
    assert!(systematic_difference(&a, &[]).is_empty());
}

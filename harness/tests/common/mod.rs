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

/// Most runs per side in each phase of [`compare_kinds`].
pub const RUNS: usize = 6;

/// The jitter bound after a rendezvous in [`compare_kinds`]'s shuffled phase: well above the
/// few milliseconds between a Rust and a Python process released together, well below the
/// catalog's rendezvous timeouts (250 ms), so the processes a rendezvous gathered still overlap.
pub const SHUFFLE_MS: i64 = 40;

/// The scenario `name` (a catalog name, or a path from the workspace root) with a jitter rule
/// right after each rendezvous rule (same point, roles, op and arrivals), written to `dir`:
/// the processes a barrier releases then go on in an order the seed draws instead of the order
/// their speed gives. None when the scenario has no rendezvous (nothing to shuffle).
pub fn shuffled(name: &str, dir: &std::path::Path) -> Option<String> {
    let text = match harness::scenario::CATALOG.iter().find(|(n, _)| *n == name) {
        Some((_, t)) => t.to_string(),
        None => std::fs::read_to_string(root().join(name)).expect("a scenario file"),
    };
    let mut doc: toml::Table = text.parse().expect("the scenario parses");
    let rules = doc.get_mut("pause")?.as_array_mut()?;
    let mut out = Vec::new();
    let mut any = false;
    for rule in rules.drain(..) {
        let rendezvous = rule.get("action").and_then(|a| a.as_str()) == Some("rendezvous");
        out.push(rule.clone());
        if rendezvous {
            any = true;
            let mut jitter = rule.as_table().expect("a pause rule is a table").clone();
            jitter.remove("barrier");
            jitter.remove("timeout_ms");
            jitter.insert("action".into(), "jitter".into());
            jitter.insert("ms".into(), SHUFFLE_MS.into());
            out.push(jitter.into());
        }
    }
    if !any {
        return None;
    }
    *rules = out;
    let stem = std::path::Path::new(name).file_stem().expect("a name");
    let path = dir.join(format!("{}-shuffled.toml", stem.to_string_lossy()));
    std::fs::write(&path, toml::to_string(&doc).expect("serializes")).expect("writes");
    Some(path.display().to_string())
}

/// What [`compare_kinds`] saw.
pub struct Compared {
    /// The kinds on one side only in every phase run (empty: the sides agree).
    pub differ: BTreeSet<String>,
    /// The kinds of each run of side a, then of side b (both phases, in order).
    pub a: Vec<BTreeSet<String>>,
    pub b: Vec<BTreeSet<String>>,
    /// The runs phase by phase, for a failure message or the test's output.
    pub said: String,
}

/// Compares the anomaly kinds two sides find on `scenario`; `a` and `b` run one side on the
/// scenario (its name or a path) with an optional `--seed`.
///
/// A run is timed by the machine's scheduler and a few kinds depend on it, so the sides differ
/// only by a kind found in every run of one side and in no run of the other
/// ([`systematic_difference`]): runs alternate, up to [`RUNS`] per side, while a kind is so.
/// A rendezvous releases its parties together and leaves their order to speed, and speed is
/// not a rule (a Python interpreter, or a process under ptrace, is always a little slower): a
/// kind still on one side only is looked for again with the release order [`shuffled`], seeds
/// 1 to [`RUNS`] on both sides, and is a difference only when it is on one side only there
/// too. A rule difference survives any order; a speed difference does not.
pub fn compare_kinds(
    scenario: &str,
    mut a: impl FnMut(&str, Option<&str>) -> BTreeSet<String>,
    mut b: impl FnMut(&str, Option<&str>) -> BTreeSet<String>,
) -> Compared {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut differ = BTreeSet::new();
    for _ in 0..RUNS {
        ra.push(a(scenario, None));
        rb.push(b(scenario, None));
        differ = systematic_difference(&ra, &rb);
        if differ.is_empty() {
            break;
        }
    }
    let mut said = format!(
        "{} runs per side at the scenario's timing: {ra:?} vs {rb:?}",
        ra.len()
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = match differ.is_empty() {
        true => None,
        false => shuffled(scenario, dir.path()),
    };
    let Some(path) = path else {
        return Compared {
            differ,
            a: ra,
            b: rb,
            said,
        };
    };
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for seed in 1..=RUNS {
        let seed = seed.to_string();
        sa.push(a(&path, Some(&seed)));
        sb.push(b(&path, Some(&seed)));
    }
    let still = &differ & &systematic_difference(&sa, &sb);
    said.push_str(&format!(
        "; {differ:?} on one side only there; with the release order shuffled (seeds 1 to {RUNS}) {still:?}: {sa:?} vs {sb:?}"
    ));
    ra.extend(sa);
    rb.extend(sb);
    Compared {
        differ: still,
        a: ra,
        b: rb,
        said,
    }
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

#[test]
fn a_shuffled_scenario_jitters_right_after_each_rendezvous_and_still_parses() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = shuffled("external-cli", dir.path()).expect("external-cli has a rendezvous");
    let text = std::fs::read_to_string(&path).expect("written");
    let sc = harness::scenario::Scenario::parse(&text, &path).expect("a valid scenario");
    let actions: Vec<(&str, &str, u64)> = sc
        .pauses
        .iter()
        .map(|p| (p.point.as_str(), p.action.as_str(), p.ms))
        .collect();
    assert_eq!(
        actions,
        [
            ("before_redeem", "rendezvous", 0),
            ("before_redeem", "jitter", SHUFFLE_MS as u64)
        ]
    );
    // Nothing to shuffle: no rendezvous (a [nemesis] scenario cannot have one).
    assert!(shuffled("crash-mid-persist", dir.path()).is_none());
}

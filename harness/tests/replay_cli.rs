//! The replay commands poolcheck prints tell the same witness story when run, and `explore`
//! speaks the report contract (`--format json|markdown`) and never overwrites a file unasked.

use std::process::{Command, Output};

use serde_json::Value;

fn poolcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("poolcheck runs")
}

/// Run a printed `poolcheck ...` command line (single-quoted arguments allowed) with
/// `extra` arguments appended.
fn run_printed(cmd: &str, extra: &[&str]) -> Output {
    let rest = cmd.strip_prefix("poolcheck ").expect("a poolcheck command");
    let mut args: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut cur = String::new();
    for ch in rest.chars() {
        match ch {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    poolcheck(&all)
}

/// The story of the witness of `anomaly` in a report's runs.
fn story(report: &Value, anomaly: &str) -> Option<Vec<Value>> {
    report["runs"].as_array()?.iter().find_map(|r| {
        r["witnesses"]
            .as_array()?
            .iter()
            .find(|w| w["anomaly"] == anomaly)
            .map(|w| w["story"].as_array().unwrap().clone())
    })
}

#[test]
fn explore_json_its_replay_tells_the_same_story_and_existing_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.toml");
    let out_s = out.to_str().unwrap();
    let args = [
        "explore",
        "--strategy",
        "thread-lock",
        "--cases",
        "200",
        "--out",
        out_s,
        "--format",
        "json",
    ];
    let o = poolcheck(&args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["schema"], "poolcheck.report.v1");
    let found = &v["explore"]["found"];
    let anomaly = found["anomaly"].as_str().unwrap();
    let replay = found["replay"].as_str().unwrap();
    // The printed replay command, run, tells the same story.
    let r = run_printed(replay, &["--format", "json"]);
    let rv: Value = serde_json::from_slice(&r.stdout).unwrap_or_else(|_| {
        panic!("{replay}: {}", String::from_utf8_lossy(&r.stderr));
    });
    assert_eq!(
        story(&rv, anomaly).as_ref(),
        found["story"].as_array(),
        "{replay}"
    );
    // The file is there now: a second explore refuses to overwrite it, and leaves it whole.
    let before = std::fs::read(&out).unwrap();
    let o = poolcheck(&args);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(out_s) && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    // --force overwrites; Markdown carries the story and the replay command.
    let mut forced = args[..args.len() - 2].to_vec();
    forced.extend(["--force", "--format", "markdown"]);
    let o = poolcheck(&forced);
    assert_eq!(o.status.code(), Some(1));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("Replay: `poolcheck model") && md.contains("Witness ("),
        "{md}"
    );
}

/// `poolcheck gate --quick` on one expectation, `none` safe in `scenario` (a TOML string),
/// written to `dir/e.toml`: it fails (exit 1); its JSON report.
fn failing_gate(dir: &std::path::Path, scenario: &str) -> Value {
    let file = dir.join("e.toml");
    std::fs::write(
        &file,
        format!("[[expect]]\nstrategy = \"none\"\nscenarios = [{scenario}]\nsafe = true\n"),
    )
    .unwrap();
    let o = poolcheck(&[
        "gate",
        "--quick",
        "--expect",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_gate_replay_command_finds_the_same_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let v = failing_gate(dir.path(), "\"lost-update\"");
    let e = &v["gate"]["expectations"][0];
    let anomaly = e["witness"]["anomaly"].as_str().unwrap();
    let replay = e["replay"][0].as_str().unwrap();
    // Real processes: the times differ from run to run, the anomaly and its steps do not.
    // `lost-update`'s rendezvous force its lost update; should the gate's first witness be a
    // kind left to chance (a torn read of `none`'s in-place write), the replay may need a
    // second or third run to meet it, as a user replaying it would.
    let steps = |s: &[Value]| -> Vec<String> {
        s.iter()
            .map(|l| {
                let l = l.as_str().unwrap();
                // "N. +T ms who ...": drop the time.
                l.split_once("ms ").map_or(l, |(_, rest)| rest).to_string()
            })
            .collect()
    };
    let want = steps(e["witness"]["story"].as_array().unwrap()).len();
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = run_printed(replay, &["--format", "json"]);
        let rv: Value = serde_json::from_slice(&r.stdout).unwrap();
        let story = story(&rv, anomaly).map(|s| steps(&s));
        if story.as_ref().is_some_and(|s| s.len() == want) {
            return;
        }
        got.push(story);
    }
    panic!("{replay} did not find {anomaly} in {want} steps in 3 runs: {got:?}");
}

/// A gate's scenario loaded from a file is replayed from that file: its name is in no
/// catalog, so a replay command naming it would be refused.
#[test]
fn a_gate_replay_command_names_the_scenario_file_it_was_loaded_from() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("mine.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/lost-update.toml"
    ))
    .unwrap();
    let renamed = text.replacen("name = \"lost-update\"", "name = \"my-lost-update\"", 1);
    assert_ne!(renamed, text, "the catalog scenario names itself");
    std::fs::write(&scenario, renamed).unwrap();
    let v = failing_gate(dir.path(), &format!("{:?}", scenario.to_str().unwrap()));
    let e = &v["gate"]["expectations"][0];
    assert_eq!(e["scenario"], "my-lost-update");
    let replay = e["replay"][0].as_str().unwrap();
    assert!(replay.contains(scenario.to_str().unwrap()), "{replay}");
    let r = run_printed(replay, &["--format", "json"]);
    // The exit code is the scenario's own expectations' (its `[expect]` says `none` finds a
    // lost update): a refused scenario would be 2.
    assert_ne!(
        r.status.code(),
        Some(2),
        "{replay}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let rv: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(rv["runs"][0]["scenario"], "my-lost-update", "{replay}");
    let anomaly = e["witness"]["anomaly"].as_str().unwrap();
    assert!(
        story(&rv, anomaly).is_some(),
        "{replay} did not find {anomaly}"
    );
}

/// Issue #17 item 7: a failed cell of `matrix` shows the command that replays it in the
/// Markdown and in the HTML report, the same command in both, and run, it shows the same
/// anomaly and fails the same expectation again.
#[test]
fn a_failed_matrix_cell_shows_its_replay_command_in_markdown_and_html() {
    let dir = tempfile::tempdir().unwrap();
    // lost-update with an expectation that cannot hold: `none` clean.
    let catalog = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lost-update.toml"),
    )
    .unwrap();
    let start = catalog
        .find("\n[expect]")
        .expect("the catalog file has [expect]");
    let end = catalog[start + 1..]
        .find("\n[")
        .map_or(catalog.len(), |i| start + 1 + i);
    let text = format!(
        "{}\n[expect]\nclean = [\"none\"]\n{}",
        &catalog[..start],
        &catalog[end..]
    );
    let file = dir.path().join("lu.toml");
    std::fs::write(&file, text).unwrap();
    let html = dir.path().join("html");
    let o = poolcheck(&[
        "-q",
        "matrix",
        "--quick",
        "--strategies",
        "none,flock-txn",
        "--scenarios",
        file.to_str().unwrap(),
        "--format",
        "markdown",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let md = String::from_utf8_lossy(&o.stdout);
    let failed = md
        .split("Expectations that failed:")
        .nth(1)
        .unwrap_or_else(|| panic!("no failures section: {md}"));
    let replay = failed
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: `"))
        .and_then(|l| l.strip_suffix('`'))
        .unwrap_or_else(|| panic!("no replay line: {md}"));
    assert!(
        replay.starts_with("poolcheck run --scenario ") && replay.ends_with(" --seed 1 --quick"),
        "{replay}"
    );
    assert!(replay.contains(file.to_str().unwrap()), "{replay}");
    let page = std::fs::read_to_string(html.join("index.html")).unwrap();
    assert!(
        page.contains(&format!("Replay: <code>{replay}</code>")),
        "{page}"
    );
    // Only the failed or anomalous cells carry one: flock-txn's clean cell has none.
    assert_eq!(page.matches("Replay: <code>").count(), 1, "{page}");
    // Pasted, it runs the same cell: the lost update again, the expectation failed again.
    let r = run_printed(replay, &["--format", "json"]);
    assert_eq!(r.status.code(), Some(1), "{replay}");
    let rv: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(rv["runs"][0]["strategy"], "none");
    assert!(story(&rv, "lost_update").is_some(), "{replay}: {rv}");
    assert_eq!(rv["runs"][0]["expectations"][0]["held"], false);
}

/// A model counterexample's Markdown replay command reproduces its story exactly.
#[test]
fn a_model_counterexample_shows_a_replay_command_that_tells_the_same_story() {
    let args = [
        "model",
        "--checker",
        "shuttle-pct",
        "--strategy",
        "none",
        "--scenario",
        "refresh-race",
        "--procs",
        "2",
    ];
    let mut md_args = args.to_vec();
    md_args.extend(["--format", "markdown"]);
    let md = String::from_utf8_lossy(&poolcheck(&md_args).stdout).into_owned();
    let replay = md
        .lines()
        .find_map(|l| l.strip_prefix("Replay: `"))
        .and_then(|l| l.strip_suffix('`'))
        .unwrap_or_else(|| panic!("no replay line: {md}"));
    assert!(
        replay.contains(" --procs 2 ") && replay.contains(" --replay "),
        "{replay}"
    );
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let found: Value = serde_json::from_slice(&poolcheck(&json_args).stdout).unwrap();
    let replayed: Value =
        serde_json::from_slice(&run_printed(replay, &["--format", "json"]).stdout).unwrap();
    assert_eq!(
        story(&replayed, "double_redeem"),
        story(&found, "double_redeem"),
        "{replay}"
    );
}

/// A `matrix` model cell (resized by the matrix profile and `--quick`) is replayed at the
/// matrix's sizes: the printed command tells the cell's story.
#[test]
fn a_matrix_model_cell_replays_at_the_matrix_sizes() {
    let args = [
        "-q",
        "matrix",
        "--quick",
        "--drivers",
        "shuttle",
        "--strategies",
        "none",
        "--scenarios",
        "refresh-race",
    ];
    let table = String::from_utf8_lossy(&poolcheck(&args).stdout).into_owned();
    let replay = table
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay line: {table}"));
    assert!(replay.contains(" --matrix-sizes "), "{replay}");
    let mut json = args.to_vec();
    json.extend(["--format", "json"]);
    let cell: Value = serde_json::from_slice(&poolcheck(&json).stdout).unwrap();
    let replayed: Value =
        serde_json::from_slice(&run_printed(replay, &["--format", "json"]).stdout).unwrap();
    let anomaly = cell["runs"][0]["witnesses"][0]["anomaly"].as_str().unwrap();
    assert_eq!(story(&replayed, anomaly), story(&cell, anomaly), "{replay}");
}

/// What a run does not record itself is in its replay command: an observed subject's
/// `--observe syscalls` (without it the replay judges the subject's own reports, or nothing),
/// and `run`'s `--procs`. The printed command, run, finds the same anomaly again.
#[test]
fn a_replay_command_keeps_the_observer_and_the_process_count() {
    let replay_of = |args: &[&str]| -> String {
        let mut all = args.to_vec();
        all.extend(["--format", "markdown"]);
        let t = String::from_utf8_lossy(&poolcheck(&all).stdout).into_owned();
        t.lines()
            .find_map(|l| l.trim().strip_prefix("Replay: `"))
            .and_then(|l| l.strip_suffix('`'))
            .unwrap_or_else(|| panic!("no replay line: {t}"))
            .to_string()
    };
    let node = concat!(
        "node ",
        env!("CARGO_MANIFEST_DIR"),
        "/../subjects/node/pool.js"
    );
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/scenarios/redeem-together.toml"
    );
    let replay = replay_of(&[
        "run",
        "--scenario",
        scenario,
        "--subject",
        node,
        "--observe",
        "syscalls",
    ]);
    assert!(replay.contains(" --observe syscalls"), "{replay}");
    let r = run_printed(&replay, &["--format", "json"]);
    let rv: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(story(&rv, "double_redeem").is_some(), "{replay}: {rv}");

    let replay = replay_of(&[
        "run",
        "--scenario",
        "refresh-race",
        "--strategy",
        "none",
        "--procs",
        "3",
    ]);
    assert!(replay.ends_with(" --procs 3"), "{replay}");
}

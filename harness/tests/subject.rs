//! External subjects end to end: `poolcheck run --subject CMD` with the Python pool of
//! `subjects/python/` (its as-of-#8040 mode and its serialized-refresh fix), its own unit
//! tests, and tiny broken subjects (shell one-liners) that crash, hang or print garbage.
//!
//! The Python tests need `python3` and fail, saying so, without it (the broken-subject tests
//! need only `sh`).

mod common;

use std::process::Command;

use common::{require, root};
use serde_json::Value;

/// Python runs the bundled pool; it is part of this suite, not optional.
fn require_python() {
    require("python3", "Python 3.9 or later");
}

/// `poolcheck run --format json --subject CMD --scenario SC [extra]`: (report, exit, stderr).
fn run_subject(cmd: &str, scenario: &str, extra: &[&str]) -> (Value, i32, String) {
    let out = common::run_subject(cmd, scenario, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {text}\nstderr: {stderr}"));
    (v, out.status.code().unwrap_or(-1), stderr)
}

fn count(report: &Value, anomaly: &str) -> u64 {
    report["runs"][0]["anomalies"][anomaly]
        .as_u64()
        .unwrap_or_else(|| panic!("no count for {anomaly}: {report}"))
}

const PY: &str = "python3 subjects/python/pool_subject.py";

#[test]
fn python_subject_unit_tests_pass() {
    require_python();
    let out = Command::new("python3")
        .current_dir(root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "unittest", "discover", "-s", "subjects/python", "-v"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 -m unittest failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixed Python pool under round-robin selection, which writes a select's refresh at once
/// and its renumbering at the end of the operation: the second write takes the store's token
/// pair for an entry it did not refresh itself, so no peer's rotation is rolled back. Before,
/// seeds 1 to 3 each gave a double redeem (with the rollback and the dead credential).
/// `partial_sync_read` is not asserted: two writes per select are this mode's, not a fault.
#[test]
fn the_fixed_python_pool_rolls_back_no_token_under_round_robin() {
    require_python();
    let fixed = format!("{PY} --merge --batched --serialized-refresh");
    for seed in ["1", "2", "3"] {
        let (v, code, stderr) = run_subject(
            &fixed,
            "harness/tests/scenarios/round-robin-refresh.toml",
            &["--seed", seed],
        );
        assert_eq!(code, 0, "{stderr}");
        for kind in [
            "token_rollback",
            "double_redeem",
            "dead_credential",
            "stale_token_use",
            "lost_update",
        ] {
            assert_eq!(count(&v, kind), 0, "seed {seed}, {kind}: {v}");
        }
    }
}

/// Events a subject reports after its last reply (a background thread's write finishing, a
/// save on exit) are in the history like any other: here the fixed pool exits, and its
/// wrapper then reports a read of bytes no write produced, which must be judged (it was
/// dropped, and the peer reads of a late write looked torn).
#[test]
fn events_reported_after_the_last_reply_are_judged() {
    require_python();
    let late =
        r#"{"event": {"ev": "read", "hash": "00000000feedf00d", "outcome": {"kind": "parsed"}}}"#;
    let cmd = format!("{PY} --merge --batched --serialized-refresh; echo '{late}'");
    let (v, code, stderr) = run_subject(&cmd, "lost-update", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(count(&v, "torn_read") >= 1, "{v}");
    assert!(v.to_string().contains("00000000"), "{v}");
}

#[test]
fn python_pool_as_of_8040_double_redeems_in_the_refresh_race() {
    require_python();
    let (v, code, stderr) = run_subject(PY, "refresh-race", &[]);
    assert_eq!(code, 0, "{stderr}");
    let run = &v["runs"][0];
    assert_eq!(run["strategy"], "subject");
    assert_eq!(run["spec"], PY);
    assert_eq!(run["verdict"], "anomalous");
    assert!(count(&v, "double_redeem") >= 1, "{v}");
    assert!(count(&v, "dead_credential") >= 1, "{v}");
    assert_eq!(run["stats"]["crashed"], 0, "{stderr}");
    // Witnesses name the subject's processes and are redacted like pool-core's.
    let story = run["witnesses"].to_string();
    assert!(story.contains("(cli)"), "{story}");
}

#[test]
fn python_pool_with_serialized_refresh_is_clean_in_the_refresh_race() {
    require_python();
    let cmd = format!("{PY} --serialized-refresh");
    let (v, code, stderr) = run_subject(&cmd, "refresh-race", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["runs"][0]["verdict"], "clean", "{v}");
    // It did run: four processes, two load+select rounds each.
    assert!(
        v["runs"][0]["stats"]["operations"].as_u64().unwrap() >= 16,
        "{v}"
    );
}

#[test]
fn python_pool_as_of_8040_loses_an_update_and_merge_keeps_it() {
    require_python();
    let (v, _, stderr) = run_subject(PY, "lost-update", &[]);
    assert!(count(&v, "lost_update") >= 1, "{v}\n{stderr}");
    let (v, _, stderr) = run_subject(&format!("{PY} --merge"), "lost-update", &[]);
    assert_eq!(count(&v, "lost_update"), 0, "{v}\n{stderr}");
}

#[test]
fn python_pool_as_of_8040_shows_partial_sync_reads_in_seed_8040() {
    require_python();
    // The rendezvous that force the partial sync time out on a starved machine: looked for
    // over up to three runs.
    let mut found = (Value::Null, String::new());
    for _ in 0..3 {
        let (v, _, stderr) = run_subject(PY, "seed-8040", &[]);
        let hit = count(&v, "partial_sync_read") >= 1;
        found = (v, stderr);
        if hit {
            break;
        }
    }
    let (v, stderr) = found;
    assert!(count(&v, "partial_sync_read") >= 1, "{v}\n{stderr}");
    let (v, _, stderr) = run_subject(
        &format!("{PY} --merge --batched --serialized-refresh"),
        "seed-8040",
        &[],
    );
    assert_eq!(v["runs"][0]["verdict"], "clean", "{v}\n{stderr}");
}

#[test]
fn a_black_box_subject_is_judged_from_the_ledger_and_the_final_store() {
    require_python();
    let (v, code, stderr) = run_subject(&format!("{PY} --black-box"), "refresh-race", &[]);
    assert_eq!(code, 0, "{stderr}");
    // No writes were reported, so no rollback or lost update can be judged (torn reads
    // can: a reply says `read_failed` when the subject's read did not parse)...
    assert_eq!(
        count(&v, "token_rollback") + count(&v, "lost_update"),
        0,
        "{v}"
    );
    // ...but the issuer saw the double spend and the harness read the final store.
    assert!(count(&v, "double_redeem") >= 1, "{v}");
    assert!(count(&v, "dead_credential") >= 1, "{v}");
}

#[test]
fn a_crashing_subject_is_named_with_its_line_and_status() {
    let (v, code, stderr) = run_subject("echo 'no hello for you' >&2; exit 3", "refresh-race", &[]);
    assert_eq!(code, 2, "{stderr}");
    // Depending on who is first, the harness sees the closed pipe when it writes the hello
    // or when it reads the answer; either way the message names the subject, the process,
    // the request, the exit status and the end of the subject's stderr.
    let p1 = stderr
        .lines()
        .find(|l| l.contains("(p1 cli)"))
        .unwrap_or_else(|| panic!("no message for p1: {stderr}"));
    assert!(
        p1.starts_with(
            "poolcheck: subject 'echo 'no hello for you' >&2; exit 3' (p1 cli) closed its"
        ),
        "{p1}"
    );
    assert!(p1.contains("'hello'"), "{p1}");
    assert!(p1.contains("exit status: 3"), "{p1}");
    assert!(p1.contains("its stderr ends: no hello for you"), "{p1}");
    assert_eq!(v["runs"][0]["stats"]["crashed"], 4, "{v}");
}

#[test]
fn a_hanging_subject_times_out_per_request() {
    let started = std::time::Instant::now();
    let (v, code, stderr) = run_subject(
        "read hello; sleep 30",
        "refresh-race",
        &["--subject-timeout-ms", "300"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("(p2 cli) did not answer 'hello' within 300 ms"),
        "{stderr}"
    );
    assert!(
        started.elapsed().as_secs() < 20,
        "the hung subjects were not killed"
    );
    assert_eq!(v["runs"][0]["stats"]["crashed"], 4, "{v}");
}

#[test]
fn a_subject_printing_garbage_is_named_with_the_line() {
    let (_, code, stderr) = run_subject(
        r#"read hello; echo '{"protocol":"poolcheck-subject/1","ok":true}'; read op; echo 'Traceback: oops'"#,
        "refresh-race",
        &["--quick"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "(p3 cli) line 2 of its stdout is not a protocol message (expected value at line 1 column 1): Traceback: oops"
        ),
        "{stderr}"
    );
}

#[test]
fn one_broken_subject_does_not_stop_the_others_being_judged() {
    require_python();
    // Process 2 prints garbage instead of its hello; the other three are the Python pool.
    let cmd = format!(
        r#"if [ "$POOLCHECK_PROC" = 2 ]; then read hello; echo garbage; exit 0; fi; exec {PY}"#
    );
    let (v, code, stderr) = run_subject(&cmd, "refresh-race", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("(p2 cli) line 1 of its stdout is not a protocol message"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("poolcheck: subject").count(),
        1,
        "only p2 failed: {stderr}"
    );
    assert_eq!(v["runs"][0]["stats"]["crashed"], 1, "{v}");
    // The three healthy processes still raced for the refresh token, and were judged.
    assert!(count(&v, "double_redeem") >= 1, "{v}");
}

/// `poolcheck ARGS` from the repository root: (stdout, exit code, stderr).
fn poolcheck(args: &[&str]) -> (String, i32, String) {
    let out = common::poolcheck(args);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn restarted_subject_processes_number_their_operations_apart() {
    require_python();
    // Workers are killed by the nemesis and restarted; each life of a process must number
    // its operations in its own range, or the history merges ops of two lives (which showed
    // as 20-50 false partial_sync_reads per run).
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("run");
    let cmd = format!("{PY} --serialized-refresh");
    let (v, code, stderr) = run_subject(
        &cmd,
        "crash-mid-persist",
        &["--keep", keep.to_str().unwrap()],
    );
    assert_ne!(code, 2, "{stderr}");
    let run = &v["runs"][0];
    assert!(
        run["stats"]["killed"].as_u64().unwrap() >= 1,
        "no kill: {v}"
    );
    // Planned kills are not failures.
    assert_ne!(run["verdict"], "error", "{v}");
    let mut restarted = 0;
    for p in 1..=run["stats"]["processes"].as_u64().unwrap() {
        let log = std::fs::read_to_string(keep.join(format!("logs/p{p}.jsonl"))).unwrap();
        let mut ids = Vec::new();
        let mut lives = 0;
        for line in log.lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            if r["kind"] == "proc_start" {
                lives += 1;
            }
            if r["kind"] == "pool" && r["event"]["ev"] == "op_begin" {
                ids.push(r["event"]["op"].as_u64().unwrap());
            }
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ids.len(),
            "p{p} reused operation ids over {lives} lives: {ids:?}"
        );
        restarted += u32::from(lives > 1);
    }
    assert!(restarted >= 1, "no process was restarted: {v}");
}

#[test]
fn a_subject_that_exits_at_hello_is_an_error_in_every_command() {
    // It never ran an operation: the verdict is `error` (never `clean`) and the exit code 2.
    let dead = "exit 0";
    let (v, code, stderr) = run_subject(dead, "refresh-race", &["--quick"]);
    assert_eq!(code, 2, "{stderr}");
    let run = &v["runs"][0];
    assert_eq!(run["verdict"], "error", "{v}");
    assert_eq!(run["driver"], "subject", "{v}");
    assert!(
        run["errors"][0].as_str().unwrap().contains("'hello'"),
        "{v}"
    );

    // matrix: the subject's row beside a preset; the preset is judged, the subject is error.
    let (out, code, stderr) = poolcheck(&[
        "matrix",
        "--quick",
        "--format",
        "json",
        "--strategies",
        "flock-txn",
        "--scenarios",
        "refresh-race",
        "--subject",
        "dead=exit 0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    let m: Value = serde_json::from_str(&out).unwrap();
    let runs = m["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{m}");
    assert_eq!(
        (runs[0]["strategy"].as_str(), runs[0]["verdict"].as_str()),
        (Some("flock-txn"), Some("clean")),
        "{m}"
    );
    assert_eq!(
        (runs[1]["strategy"].as_str(), runs[1]["verdict"].as_str()),
        (Some("dead"), Some("error")),
        "{m}"
    );

    // gate: a `safe` expectation on it fails with exit 2, in the JSON and the JUnit.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.toml");
    std::fs::write(
        &file,
        "[subjects]\ndead = \"exit 0\"\n\n[[expect]]\nsubject = \"dead\"\nscenarios = [\"refresh-race\"]\nsafe = true\n",
    )
    .unwrap();
    let junit = dir.path().join("j.xml");
    let json = dir.path().join("g.json");
    let (_, code, stderr) = poolcheck(&[
        "gate",
        "--quick",
        "--expect",
        file.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let e = &g["gate"]["expectations"][0];
    assert_eq!(
        (e["held"].as_bool(), e["errors"].as_u64()),
        (Some(false), Some(1)),
        "{g}"
    );
    let x = std::fs::read_to_string(&junit).unwrap();
    // A run that did not run to the end is a JUnit error (not a failure of the pool).
    let doc = roxmltree::Document::parse(&x).expect("JUnit is well-formed XML");
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name("error"))
        .unwrap_or_else(|| panic!("no <error>: {x}"));
    assert!(
        error
            .text()
            .unwrap_or("")
            .contains("did not run to the end"),
        "{x}"
    );
    // merge keeps it an error.
    let (_, code, stderr) = poolcheck(&["merge", json.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");

    // crash: a campaign over a subject that never runs.
    let (out, code, stderr) = poolcheck(&[
        "crash",
        "--subject",
        "dead=exit 0",
        "--kills",
        "1",
        "--max-runs",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(code, 2, "{out}\n{stderr}");
    assert!(stderr.contains("verdict error"), "{stderr}");
}

#[test]
fn commands_that_cannot_drive_a_subject_say_so() {
    for cmd in [
        vec!["explore", "--strategy", "none", "--subject", "x"],
        vec![
            "model",
            "--checker",
            "loom",
            "--strategy",
            "none",
            "--scenario",
            "refresh-race",
            "--subject",
            "x",
        ],
        vec!["bench", "--subject", "x"],
    ] {
        let (_, code, stderr) = poolcheck(&cmd);
        assert_eq!(code, 2, "{cmd:?}: {stderr}");
        assert!(
            stderr.contains("cannot drive an external subject"),
            "{cmd:?}: {stderr}"
        );
    }
}

#[test]
fn the_gate_holds_the_fixed_python_pool_safe_and_fails_it_as_of_8040() {
    require_python();
    let file = "subjects/python/expectations.toml";
    let (out, code, stderr) = poolcheck(&["gate", "--quick", "--expect", file]);
    assert_eq!(code, 0, "{out}\n{stderr}");
    assert!(out.contains("5 of 5 expectations held"), "{out}");

    // The same file with `fixed` pointed at the pool as of #8040: exit 1, the witness on
    // stdout and in the JUnit, and a replay command naming the subject.
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let (out, code, stderr) = poolcheck(&[
        "gate",
        "--quick",
        "--expect",
        file,
        "--subject",
        &format!("fixed={PY}"),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}\n{stderr}");
    assert!(out.contains("FAILED: fixed in refresh-race: safe"), "{out}");
    assert!(out.contains("first witness"), "{out}");
    assert!(out.contains(&format!("--subject 'fixed={PY}'")), "{out}");
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(x.contains("<failure") && x.contains("first witness"), "{x}");

    // matrix: the subject's row beside the presets.
    let (out, code, stderr) = poolcheck(&[
        "matrix",
        "--quick",
        "--strategies",
        "none",
        "--scenarios",
        "refresh-race",
        "--subject",
        &format!("py={PY}"),
    ]);
    assert_eq!(code, 0, "{out}\n{stderr}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("none ") || l.starts_with("py "))
        .collect();
    assert!(
        rows.len() >= 2
            && rows
                .iter()
                .any(|l| l.starts_with("py ") && l.contains("double:")),
        "{out}"
    );
}

#[test]
fn a_subject_plays_a_script_op_by_op_and_refuses_the_ops_it_has_no_request_for() {
    require_python();
    // The same role player drives pool-core and subjects: a scripted role is played op by op
    // (`use` and `add` have requests), and `exhaust:0` (no request in the protocol) breaks
    // the role with an error naming it, rather than being skipped or replaced by another role.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scripted.toml");
    std::fs::write(
        &file,
        "name = \"scripted\"\ndescription = \"a scripted cli\"\n\
         [[entry]]\nlabel = \"key-a\"\nauth_type = \"api_key\"\n\
         [[role]]\nkind = \"cli\"\nscript = [\"use\", \"add\", \"exhaust:0\", \"use\"]\n",
    )
    .unwrap();
    let (v, code, stderr) = run_subject(PY, file.to_str().unwrap(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(v["runs"][0]["verdict"], "error", "{v}");
    assert!(
        stderr.contains("(p1 cli) cannot play the script op 'exhaust:N'"),
        "{stderr}"
    );
    // load + select, load + add, then the load before the refused op.
    assert_eq!(v["runs"][0]["stats"]["operations"], 5, "{v}");
}

/// The `t_ns` of every JSON line of `file` that `pick` selects.
fn times(file: &std::path::Path, pick: impl Fn(&Value) -> bool) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| pick(v))
        .filter_map(|v| v["t_ns"].as_u64())
        .collect()
}

#[test]
fn roles_start_only_once_every_subject_is_greeted() {
    require_python();
    // A subject that takes a second to start (a slow interpreter, a loaded machine) and an
    // external CLI of the harness's own that refreshes three times, 300 ms apart, from the
    // start (an access token living 60 s is always inside the 120 s refresh margin). The start
    // gate opens only when every worker is ready, so the external CLI's refreshes cannot all be
    // over before the subject's first operation begins (they were, when the gate opened as soon
    // as the workers were forked: 600 ms of refreshes end inside the subject's second). With
    // the gate the subject's first op has 600 ms to begin, room on a loaded machine.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("late.toml");
    std::fs::write(
        &file,
        "name = \"late-subject\"\ndescription = \"a slow subject beside an external cli\"\n\
         [issuer]\naccess_lifetime_s = 60\n\
         [[entry]]\nlabel = \"claude-code\"\nauth_type = \"oauth\"\nsource = \"claude_code\"\nexpires_in_s = 0\n\
         [[role]]\nkind = \"cli\"\nops = 1\n\
         [[role]]\nkind = \"external-cli\"\nsource = \"claude_code\"\nops = 3\nthink_ms = 300\n",
    )
    .unwrap();
    let keep = dir.path().join("run");
    let (v, code, stderr) = run_subject(
        &format!("sleep 1; exec {PY}"),
        file.to_str().unwrap(),
        &["--keep", keep.to_str().unwrap()],
    );
    assert_ne!(code, 2, "{stderr}\n{v}");
    let logs = keep.join("logs");
    let first_op = times(&logs.join("p1.jsonl"), |v| v["event"]["ev"] == "op_begin");
    let external = times(&logs.join("ledger.jsonl"), |v| {
        v["proc"] == 2 && v["kind"] == "redeemed"
    });
    assert!(!first_op.is_empty(), "{v}");
    assert_eq!(external.len(), 3, "one redeem per external refresh: {v}");
    assert!(
        external.iter().max() > first_op.iter().min(),
        "the external CLI's refreshes {external:?} all came before the subject's first op {first_op:?}"
    );
}

//! The catalog against upstream as it is (issue #14): #8040 as filed in the `openai-codex`
//! pool, and the `upstream-main` preset in the strategy list and the default matrix.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> (Value, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(args)
        .output()
        .expect("poolcheck runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    (v, out.status.code().unwrap_or(-1), stderr)
}

fn count(v: &Value, anomaly: &str) -> u64 {
    v["runs"][0]["anomalies"][anomaly].as_u64().unwrap()
}

/// #8040 as filed: in the Codex pool the gateway's k+1 writes are read half-synced under
/// `thread-lock` (and under `upstream-main`, whose syncs still write one by one); the
/// reference fix is clean there. The kept store shows it was the `openai-codex` pool, with
/// both Codex entries re-synced from the one Codex CLI file.
/// Runs a scenario's torn and partial reads need a reader inside the writer's window (the
/// rendezvous hold it 40 ms): a starved machine can miss it, so a `finds` is looked for over
/// up to this many runs, as `subject.rs` does; a clean verdict is by rule and needs one run.
const TRIES: usize = 3;

#[test]
fn seed_8040_shows_partial_sync_reads_in_the_codex_pool() {
    let keep = tempfile::tempdir().unwrap();
    let mut tries = Vec::new();
    let keep_dir = loop {
        let keep_dir = keep.path().join(format!("run{}", tries.len()));
        let (v, code, stderr) = run(&[
            "run",
            "--scenario",
            "seed-8040",
            "--strategy",
            "thread-lock",
            "--format",
            "json",
            "--keep",
            keep_dir.to_str().unwrap(),
        ]);
        assert_ne!(code, 2, "{v}\n{stderr}");
        // Exit 0: the scenario's expectations held (thread-lock finds a partial sync read and
        // a torn read).
        if code == 0 && count(&v, "partial_sync_read") >= 1 {
            break keep_dir;
        }
        tries.push(v);
        assert!(tries.len() < TRIES, "{TRIES} runs: {tries:?}");
    };
    let store: Value =
        serde_json::from_slice(&std::fs::read(keep_dir.join("auth.json")).unwrap()).unwrap();
    let pool = store["credential_pool"].as_object().unwrap();
    assert_eq!(pool.keys().collect::<Vec<_>>(), ["openai-codex"]);
    let entries = pool["openai-codex"].as_array().unwrap();
    let refresh: Vec<&Value> = entries[..2].iter().map(|e| &e["refresh_token"]).collect();
    assert_eq!(
        refresh[0], refresh[1],
        "both entries synced from the one file"
    );

    let (v, code, stderr) = run(&[
        "run",
        "--scenario",
        "seed-8040",
        "--strategy",
        "flock-txn",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{v}\n{stderr}");
    assert_eq!(v["runs"][0]["verdict"], "clean", "flock-txn: {v}");
    let mut runs = Vec::new();
    while runs.len() < TRIES {
        let (v, code, stderr) = run(&[
            "run",
            "--scenario",
            "seed-8040",
            "--strategy",
            "upstream-main",
            "--format",
            "json",
        ]);
        assert_ne!(code, 2, "{v}\n{stderr}");
        if code == 0 && v["runs"][0]["verdict"] != "clean" {
            break;
        }
        runs.push(v);
    }
    assert!(
        runs.len() < TRIES,
        "upstream-main clean in {TRIES} runs: {runs:?}"
    );
}

#[test]
fn upstream_main_is_listed_and_in_the_default_matrix() {
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .arg("strategies")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("upstream-main ")
            && l.contains("add-missing")
            && l.contains("openai-codex:serial+blind/retry2/presync")),
        "{text}"
    );
    let (v, code, stderr) = run(&[
        "matrix",
        "--scenarios",
        "lost-update",
        "--quick",
        "--format",
        "json",
    ]);
    assert!(code == 0 || code == 1, "{stderr}");
    assert!(
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["strategy"] == "upstream-main"),
        "{v}"
    );
}

//! The `poolcheck` binary, end to end: real processes, real files, a real loopback issuer.
//! Rendezvous pause points make the refresh race deterministic, so these run in every CI run.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn poolcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(args)
        .output()
        .expect("poolcheck runs")
}

fn json_report(args: &[&str]) -> (Value, i32) {
    let out = poolcheck(args);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

use harness::check::{ANOMALIES, TOLERATED};

#[test]
fn refresh_race_under_none_double_redeems() {
    let (v, code) = json_report(&[
        "run",
        "--scenario",
        "refresh-race",
        "--strategy",
        "none",
        "--format",
        "json",
    ]);
    let run = &v["runs"][0];
    assert!(
        run["anomalies"]["double_redeem"].as_u64().unwrap() > 0,
        "{run}"
    );
    assert_eq!(run["verdict"], "anomalous");
    let w = run["witnesses"].as_array().unwrap();
    assert!(w.iter().any(|w| w["anomaly"] == "double_redeem"));
    // The scenario expects exactly this, so the run meets its expectations.
    assert_eq!(code, 0);
}

#[test]
fn refresh_race_under_flock_txn_is_clean() {
    let (v, code) = json_report(&[
        "run",
        "--scenario",
        "refresh-race",
        "--strategy",
        "flock-txn",
        "--format",
        "json",
    ]);
    let run = &v["runs"][0];
    for a in ANOMALIES {
        assert_eq!(run["anomalies"][a], 0, "{a} in {run}");
    }
    assert_eq!(run["verdict"], "clean");
    assert_eq!(run["stats"]["crashed"], 0);
    assert!(run["stats"]["operations"].as_u64().unwrap() >= 8);
    assert_eq!(code, 0);
}

#[test]
fn matrix_json_follows_the_report_contract() {
    let (v, code) = json_report(&[
        "matrix",
        "--quick",
        "--strategies",
        "none,flock-txn",
        "--scenarios",
        "lost-update",
        "--format",
        "json",
    ]);
    assert_eq!(v["schema"], "poolcheck.report.v1");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["driver"], "fork");
        assert_eq!(r["scenario"], "lost-update");
        assert!(["clean", "anomalous"].contains(&r["verdict"].as_str().unwrap()));
        assert_eq!(r["anomalies"].as_object().unwrap().len(), 8);
        for a in ANOMALIES {
            assert!(r["anomalies"][a].is_u64(), "{a}");
        }
        for t in TOLERATED {
            assert!(r["tolerated"][t].is_u64(), "tolerated.{t} in {r}");
        }
        for k in ["processes", "operations", "seconds", "seed"] {
            assert!(!r["stats"][k].is_null(), "stats.{k}");
        }
    }
    assert_eq!(runs[0]["strategy"], "none");
    assert!(runs[0]["anomalies"]["lost_update"].as_u64().unwrap() > 0);
    assert_eq!(runs[1]["verdict"], "clean");
    assert_eq!(code, 0);
}

#[test]
fn no_output_holds_a_whole_token_and_run_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("run");
    let keep_s = keep.to_str().unwrap();
    let mut printed = String::new();
    for format in ["json", "table", "markdown"] {
        let out = poolcheck(&[
            "run",
            "--scenario",
            "refresh-race",
            "--strategy",
            "none",
            "--format",
            format,
            "--keep",
            keep_s,
        ]);
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let store: Value =
        serde_json::from_slice(&std::fs::read(keep.join("auth.json")).unwrap()).unwrap();
    let mut tokens = Vec::new();
    for e in store["credential_pool"]["anthropic"].as_array().unwrap() {
        for f in ["access_token", "refresh_token"] {
            if let Some(t) = e[f].as_str() {
                tokens.push(t.to_string());
            }
        }
    }
    assert!(!tokens.is_empty());
    for t in &tokens {
        assert!(t.len() >= 32, "tokens look real");
        assert!(!printed.contains(t.as_str()), "a whole token was printed");
    }
    // Logs hold tags only, and every file the run wrote is 0600.
    for entry in walk(&keep) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if entry.extension().is_some_and(|e| e == "jsonl") {
            for t in &tokens {
                assert!(
                    !text.contains(t.as_str()),
                    "{} holds a whole token",
                    entry.display()
                );
            }
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        if entry
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
        {
            assert_eq!(mode, 0o600, "{}", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_bad_strategy_is_exit_2_and_lists_the_allowed_values() {
    let out = poolcheck(&[
        "run",
        "--scenario",
        "refresh-race",
        "--strategy",
        "lock=flok,scope=op,persist=txn,write=rename,refresh=adopt",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "bad value 'flok' for lock: allowed values are none, mutex, flock, flock-data, fcntl"
        ),
        "{err}"
    );
}

#[test]
fn a_bad_scenario_file_is_exit_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"x\"\ndescription = \"y\"\n\n[[role]]\nkind = \"cli\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = poolcheck(&[
        "run",
        "--scenario",
        path.to_str().unwrap(),
        "--strategy",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:6:", path.display())), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn strategies_lists_the_eight_presets_with_five_dimensions() {
    let out = poolcheck(&["strategies"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for p in [
        "none",
        "thread-lock",
        "flock",
        "batched-persist",
        "merge-on-write",
        "flock-txn",
        "flock-data",
        "fcntl",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{p} "))),
            "{p} missing:\n{text}"
        );
    }
    assert!(
        text.contains("flock-txn        flock       op     txn         rename    adopt "),
        "{text}"
    );
}

#[test]
fn scenarios_lists_the_catalog() {
    let out = poolcheck(&["scenarios"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "seed-8040",
        "refresh-race",
        "lost-update",
        "cooldown-erasure",
        "external-cli",
    ] {
        assert!(text.contains(s), "{s}");
    }
}

#[test]
fn model_subcommand_reports_in_the_contract_and_replays() {
    let base = [
        "model",
        "--checker",
        "shuttle-pct",
        "--scenario",
        "refresh-race",
        "--procs",
        "2",
        "--format",
        "json",
    ];
    let (v, code) = json_report(&[&base[..], &["--strategy", "none"]].concat());
    assert_eq!(code, 0, "{v}");
    let run = &v["runs"][0];
    assert_eq!(run["driver"], "shuttle-pct");
    assert_eq!(run["verdict"], "counterexample");
    for a in ANOMALIES {
        assert!(run["anomalies"][a].is_u64(), "{a} missing");
    }
    assert!(run["anomalies"]["double_redeem"].as_u64().unwrap() > 0);
    let handle = run["stats"]["model"]["replay"].as_str().expect("handle");
    let (again, code) =
        json_report(&[&base[..], &["--strategy", "none", "--replay", handle]].concat());
    assert_eq!(code, 0);
    assert_eq!(again["runs"][0]["anomalies"], run["anomalies"]);
    assert_eq!(again["runs"][0]["witnesses"], run["witnesses"]);

    let (v, code) = json_report(
        &[
            &base[..],
            &["--strategy", "flock-txn", "--iterations", "50"],
        ]
        .concat(),
    );
    assert_eq!(code, 0);
    assert_eq!(v["runs"][0]["verdict"], "verified");
    assert_eq!(v["runs"][0]["stats"]["model"]["schedules"], 50);

    let out = poolcheck(&[&base[..], &["--strategy", "none", "--replay", "zz"]].concat());
    assert_eq!(out.status.code(), Some(2));
    let out = poolcheck(&[
        "model",
        "--checker",
        "loom",
        "--scenario",
        "refresh-race",
        "--strategy",
        "none",
        "--procs",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 4 processes"));
}

#[test]
fn matrix_runs_the_model_drivers() {
    let (v, code) = json_report(&[
        "matrix",
        "--drivers",
        "loom,shuttle",
        "--strategies",
        "none,flock-txn",
        "--scenarios",
        "refresh-race",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{v}");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4);
    for r in runs {
        let expected = if r["strategy"] == "none" {
            "counterexample"
        } else {
            "verified"
        };
        assert_eq!(r["verdict"], expected, "{r}");
        assert!(r["stats"]["model"]["note"]
            .as_str()
            .unwrap()
            .contains("matrix model profile"));
    }
    let drivers: Vec<&str> = runs.iter().map(|r| r["driver"].as_str().unwrap()).collect();
    assert!(drivers.contains(&"loom") && drivers.contains(&"shuttle-pct"));
    let out = poolcheck(&["matrix", "--drivers", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

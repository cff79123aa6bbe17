//! `poolcheck bench`, end to end with a tiny duration: the report carries every cell with all
//! its keys, the floor and SQLite rows, ordered percentiles, the anomaly counts of the same run,
//! and the files written to `--out`. Timing is never asserted.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> (Option<Value>, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .arg("bench")
        .args(args)
        .output()
        .expect("poolcheck runs");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    (
        serde_json::from_str(&text).ok(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

use harness::check::ANOMALIES;

#[test]
fn quick_json_bench_emits_every_cell_with_floor_and_sqlite_rows() {
    let out = tempfile::tempdir().unwrap();
    let (v, code, stderr) = bench(&[
        "--quick",
        "--format",
        "json",
        "--seconds",
        "0.05",
        "--procs",
        "1,2",
        "--fs",
        "shm,disk",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let v = v.unwrap_or_else(|| panic!("not JSON; exit {code}; stderr: {stderr}"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["schema"], "poolcheck.report.v1");
    let b = &v["bench"];
    for k in ["nproc", "kernel", "mem_total", "file_systems"] {
        assert!(!b["machine"][k].is_null(), "machine.{k} missing");
    }
    assert_eq!(b["config"]["mix"]["issuer_latency_ms"], 0);
    let cells = b["cells"].as_array().unwrap();
    let subjects = [
        "none",
        "lock=none,scope=io,persist=each,write=rename,refresh=blind",
        "flock-txn",
        "floor",
        "sqlite",
    ];
    assert_eq!(cells.len(), subjects.len() * 2 * 2, "{cells:#?}");
    // stderr is not a terminal: one progress line per finished cell (none on stdout).
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bench ["))
        .collect();
    assert_eq!(progress.len(), cells.len(), "{stderr}");
    assert!(
        progress[0].starts_with("bench [1/20] none x 1 procs on shm: ")
            && progress[0].contains(" ops/s, "),
        "{stderr}"
    );
    for fs in ["shm", "disk"] {
        for procs in [1, 2] {
            for s in subjects {
                let c = cells
                    .iter()
                    .find(|c| c["subject"] == s && c["fs"] == fs && c["procs"] == procs)
                    .unwrap_or_else(|| panic!("no cell {s} x {procs} on {fs}"));
                for k in [
                    "kind",
                    "ops",
                    "ops_per_s",
                    "lock_wait_s",
                    "lock_wait_share",
                    "locks",
                    "refreshes",
                    "errors",
                    "cdf",
                    "verdict",
                ] {
                    assert!(!c[k].is_null(), "{s}/{fs}/{procs}: {k} missing");
                }
                let (ops, errors) = (c["ops"].as_u64().unwrap(), c["errors"].as_u64().unwrap());
                assert!(ops + errors > 0, "{s}/{fs}/{procs} did nothing: {c}");
                if ["floor", "sqlite", "flock-txn"].contains(&s) {
                    // Unsafe strategies fail operations on torn reads (on a busy machine, in
                    // 0.05 s, every one of them may); these must not.
                    assert_eq!(errors, 0, "{s}/{fs}/{procs}: {c}");
                    assert!(ops > 0, "{s}/{fs}/{procs} did nothing: {c}");
                }
                // Latencies are of operations that succeeded.
                if ops > 0 {
                    let l = &c["latency_us"];
                    let p = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("latency_us.{k}"));
                    assert!(
                        0.0 < p("p50")
                            && p("p50") <= p("p99")
                            && p("p99") <= p("p999")
                            && p("p999") <= p("max"),
                        "{s}: percentiles out of order: {l}"
                    );
                }
                match s {
                    "floor" | "sqlite" => {
                        assert_eq!(c["kind"], s);
                        assert!(c["anomalies"].is_null());
                        assert_eq!(c["verdict"], "reference");
                        assert!(c["locks"].as_u64().unwrap() >= c["ops"].as_u64().unwrap());
                    }
                    _ => {
                        assert_eq!(c["kind"], "pool");
                        let a = c["anomalies"].as_object().unwrap();
                        for name in ANOMALIES {
                            assert!(a[name].is_u64(), "{s}: anomaly {name} missing");
                        }
                    }
                }
                if s == "flock-txn" {
                    // The fix is clean in the same runs it is timed in, and it locks.
                    assert_eq!(c["verdict"], "clean", "{c}");
                    assert!(c["lock_wait_s"].as_f64().unwrap() > 0.0);
                }
            }
        }
    }
    let targets = b["targets"].as_array().unwrap();
    for name in [
        "flock-txn vs SQLite",
        "flock-txn vs the physical floor, 1 process",
    ] {
        assert!(
            targets
                .iter()
                .any(|t| t["name"] == name && t["value"].is_f64()),
            "target {name} missing: {targets:#?}"
        );
    }
    for f in [
        "bench.json",
        "bench.md",
        "throughput-shm.svg",
        "throughput-disk.svg",
        "latency-cdf-shm.svg",
        "latency-cdf-disk.svg",
    ] {
        let text =
            std::fs::read_to_string(out.path().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!text.is_empty(), "{f} is empty");
        if f.ends_with(".svg") {
            assert!(
                text.starts_with("<svg") && text.contains("<polyline"),
                "{f}"
            );
        }
    }
    let md = std::fs::read_to_string(out.path().join("bench.md")).unwrap();
    assert!(
        md.contains("| floor | 1 |") && md.contains("| sqlite | 2 |"),
        "{md}"
    );
}

#[test]
fn bad_bench_arguments_exit_2_with_the_reason() {
    for (args, needle) in [
        (&["--procs", "0"][..], "--procs 0"),
        (&["--fs", "/no/such/dir"][..], "/no/such/dir"),
        (&["--strategies", "flok"][..], "unknown strategy"),
        (&["--seconds", "0"][..], "--seconds 0"),
    ] {
        let (_, code, stderr) = bench(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

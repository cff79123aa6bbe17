//! `poolcheck gate` and `poolcheck merge`, end to end on real processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// One gate at a time: each forks a campaign of workers, and gates run side by side on a
/// 2-core machine starve each other's rendezvous (the forced interleavings time out).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn poolcheck(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Command::new(env!("CARGO_BIN_EXE_poolcheck"));
    c.args(args).env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("poolcheck runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn the_default_gate_passes_quick_and_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let (junit, json, md, summary) = (
        dir.path().join("gate.xml"),
        dir.path().join("gate.json"),
        dir.path().join("gate.md"),
        dir.path().join("summary.md"),
    );
    let out = poolcheck(
        &[
            "gate",
            "--quick",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
        ],
        &[("GITHUB_STEP_SUMMARY", &summary)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // JUnit: well-formed, one test case per expectation, no failures.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is well-formed XML");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let expectations = report["gate"]["expectations"].as_array().unwrap();
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, expectations.len());
    assert!(cases >= 10);
    // Each test case says what it ran: seed, pool (spec), scenario (issue #17 item 7).
    for (tc, e) in doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .zip(expectations)
    {
        let prop = |name: &str| {
            tc.descendants()
                .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
                .and_then(|n| n.attribute("value"))
                .map(str::to_string)
        };
        assert_eq!(prop("seed").as_deref(), Some("1"));
        assert_eq!(prop("spec").as_deref(), e["spec"].as_str());
        assert_eq!(prop("scenario").as_deref(), e["scenario"].as_str());
        assert_eq!(prop("shard"), None, "not a shard");
    }
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        0
    );
    assert_eq!(report["schema"], "poolcheck.report.v1");
    // Markdown: a table, also appended to the step summary.
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("| result | strategy | scenario | expected | runs | found |"),
        "{md}"
    );
    assert!(md.contains("|---|---|---|---|---|---|"));
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| ✅ held")).count(),
        expectations.len()
    );
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), md);
}

#[test]
fn calling_none_safe_fails_with_the_witness_and_a_replay_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "e.toml",
        "[[expect]]\nstrategy = \"none\"\nscenarios = [\"lost-update\"]\nsafe = true\n",
    );
    let junit = dir.path().join("j.xml");
    let out = poolcheck(
        &[
            "gate",
            "--quick",
            "--expect",
            &file,
            "--junit",
            junit.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("FAILED: none in lost-update: safe"), "{t}");
    // The rendezvous force the lost update; a torn read of `none`'s in-place write, which
    // comes first in the report's order, may happen too, by chance.
    assert!(
        t.contains("first witness (lost_update)") || t.contains("first witness (torn_read)"),
        "{t}"
    );
    assert!(
        t.contains("replay: `poolcheck run --scenario lost-update --strategy lock=none"),
        "{t}"
    );
    // The failure comes before the table.
    assert!(t.find("FAILED").unwrap() < t.find("result  strategy").unwrap());
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure");
    assert!(failure
        .attribute("message")
        .unwrap()
        .contains("expected safe"));
    assert!(failure.text().unwrap().contains("lost_update"));
}

#[test]
fn calling_flock_txn_unsafe_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "e.toml",
        "[[expect]]\nstrategy = \"flock-txn\"\nscenarios = [\"refresh-race\"]\nfinds = [\"double_redeem\"]\n",
    );
    let out = poolcheck(&["gate", "--quick", "--expect", &file], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAILED: flock-txn in refresh-race: finds double_redeem"));
}

#[test]
fn a_bad_expectations_file_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "e.toml",
        "[[expect]]\nstrategy = \"lock=flok\"\nsafe = true\n",
    );
    let out = poolcheck(&["gate", "--quick", "--expect", &file], &[]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains(&file) && t.contains("bad value 'flok' for lock"),
        "{t}"
    );
    let out = poolcheck(&["gate", "--shard", "3/2"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

fn verdicts(report: &Value) -> BTreeMap<String, (bool, u64)> {
    report["gate"]["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                (e["held"].as_bool().unwrap(), e["runs"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn two_merged_shards_give_the_unsharded_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "e.toml",
        "[[expect]]\nstrategy = \"flock-txn\"\nscenarios = [\"lost-update\"]\nsafe = true\n\n\
         [[expect]]\nstrategy = \"none\"\nscenarios = [\"lost-update\"]\nfinds = [\"lost_update\"]\n\n\
         [[expect]]\nstrategy = \"none\"\nscenarios = [\"lost-update\"]\nsafe = true\n",
    );
    let json = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            "gate", "--quick", "--seeds", "2", "--expect", &file, "--json",
        ];
        let out = out.to_string();
        args.push(&out);
        args.extend_from_slice(extra);
        poolcheck(&args, &[])
    };
    let whole = run(&[], &json("whole.json"));
    assert_eq!(
        whole.status.code(),
        Some(1),
        "none is not safe: {}",
        text(&whole)
    );
    let a = run(&["--shard", "1/2"], &json("a.json"));
    let b = run(&["--shard", "2/2"], &json("b.json"));
    // The plan alternates the two cells, so shard 1 holds only flock-txn's runs (it passes:
    // the `finds` expectation about none is pending the merge) and shard 2 only none's (its
    // `safe` failure is final already).
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert!(text(&a).contains("pending merge"));
    assert_eq!(b.status.code(), Some(1), "{}", text(&b));
    let merged = poolcheck(
        &[
            "merge",
            &json("a.json"),
            &json("b.json"),
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(merged.status.code(), Some(1));
    let merged: Value = serde_json::from_slice(&merged.stdout).unwrap();
    let whole: Value =
        serde_json::from_str(&std::fs::read_to_string(json("whole.json")).unwrap()).unwrap();
    assert_eq!(verdicts(&merged), verdicts(&whole));
    assert_eq!(
        merged["runs"].as_array().unwrap().len(),
        whole["runs"].as_array().unwrap().len()
    );
    assert_eq!(merged["gate"]["shard"], "merged");
    // Shards of different campaigns do not merge.
    let other = run(&["--seed", "9", "--shard", "1/2"], &json("c.json"));
    assert_eq!(other.status.code(), Some(0));
    let out = poolcheck(&["merge", &json("a.json"), &json("c.json")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("another campaign"));
    // An incomplete set is refused naming the missing shard, a repeated shard too; --partial
    // gives the provisional view.
    let out = poolcheck(&["merge", &json("a.json")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("2/2"), "{}", text(&out));
    let out = poolcheck(
        &["merge", &json("a.json"), &json("a.json"), &json("b.json")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("given twice"), "{}", text(&out));
    let out = poolcheck(
        &["merge", "--partial", &json("a.json"), "--format", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let part: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(part["gate"]["shard"], "partial (missing 2/2)");
}

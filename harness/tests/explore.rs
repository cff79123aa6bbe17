//! `poolcheck explore`: generated workloads and choice-driven schedules, shrunk on the first
//! anomaly. These fail if shrinking stopped working (a witness longer than 6 events or more
//! than the minimal workload), if the written scenario file did not replay the shrunk history,
//! if a safe strategy showed an anomaly, or if a case were not deterministic.

use std::sync::Arc;

use harness::check;
use harness::drive::model::{Checker, ModelRun, ModelVerdict};
use harness::drive::shuttle;
use harness::explore::schedule::run_case;
use harness::explore::workload::{EntryGen, Workload};
use harness::explore::{search, witness_file, Outcome};
use harness::scenario::{Scenario, ScriptOp};
use pool_core::Strategy;

fn found(strategy: &str, anomaly: Option<&str>) -> Box<harness::explore::Found> {
    let st = Strategy::parse(strategy).expect("preset");
    match search(st, 500, 1, anomaly).expect("the search runs") {
        Outcome::Found(f) => f,
        Outcome::Clean { cases, .. } => panic!("{strategy}: {cases} cases clean"),
    }
}

#[test]
fn thread_lock_double_redeem_shrinks_to_at_most_6_events_and_replays_from_its_file() {
    let f = found("thread-lock", Some("double_redeem"));
    assert_eq!(f.anomaly, "double_redeem");
    let w = f.witness();
    assert!(
        w.events.len() <= 6,
        "{} events: {:?}",
        w.events.len(),
        w.story
    );
    assert_eq!(w.events.len(), w.story.len());
    // The minimal workload: two processes, one `use` each, one expiring OAuth entry.
    assert_eq!(
        f.workload.procs,
        vec![vec![ScriptOp::Use], vec![ScriptOp::Use]]
    );
    assert_eq!(f.workload.entries.len(), 1);

    // Write the file, load it as `poolcheck model --scenario FILE --replay HANDLE` does.
    let st = Strategy::parse("thread-lock").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    let text = witness_file(&f, &st, &path.display().to_string(), "test");
    std::fs::write(&path, &text).unwrap();
    assert!(text.contains(&format!("--replay {}", f.handle)), "{text}");
    let sc = Scenario::find(&path.display().to_string()).expect("the witness file loads");
    let run = ModelRun::new(Checker::ShuttlePct, sc, st, None, None, None);
    let ex = run.explore(Some(&f.handle)).expect("the handle replays");
    assert_eq!(ex.verdict, ModelVerdict::Counterexample);
    let h = ex.history.as_ref().expect("a history");
    assert_eq!(*h, f.history, "the replay gives the shrunk history");
    let rep = run.judge(&ex);
    assert!(rep.anomalies["double_redeem"] >= 1);
    // The file's own expectation (finds thread-lock = double_redeem) holds on the replay.
    assert!(
        !rep.expectations.is_empty() && rep.expectations.iter().all(|e| e.held),
        "{:?}",
        rep.expectations
    );
}

#[test]
fn shrunk_double_redeem_is_small_for_none_and_flock() {
    for s in ["none", "flock"] {
        let f = found(s, Some("double_redeem"));
        assert!(
            f.witness().events.len() <= 6,
            "{s}: {:?}",
            f.witness().story
        );
    }
}

#[test]
fn every_unsafe_preset_gives_a_witness() {
    for p in pool_core::strategy::PRESETS {
        if p.name == "flock-txn" {
            continue;
        }
        let f = found(p.name, None);
        assert!(
            check::check(&f.history).counts[&f.anomaly] > 0,
            "{}: the minimal case lost its anomaly",
            p.name
        );
    }
}

#[test]
fn flock_txn_stays_clean_in_a_bounded_run() {
    let st = Strategy::parse("flock-txn").unwrap();
    match search(st, 1000, 5, None).expect("the search runs") {
        Outcome::Clean { cases, .. } => assert_eq!(cases, 1000),
        Outcome::Found(f) => panic!("{}: {:?}", f.anomaly, f.witness().story),
    }
}

#[test]
fn a_case_is_deterministic_and_its_handle_replays_it() {
    let w = Workload {
        entries: vec![
            EntryGen {
                api_key: false,
                expiring: true,
            },
            EntryGen {
                api_key: true,
                expiring: false,
            },
        ],
        minted_expiring: true,
        procs: vec![
            vec![ScriptOp::Use, ScriptOp::Exhaust(1), ScriptOp::Add],
            vec![ScriptOp::Remove(1), ScriptOp::Use],
            vec![ScriptOp::Reset, ScriptOp::Use],
        ],
        choices: vec![1, 2, 0, 1, 1, 2, 0, 2, 1, 1, 0, 2],
    };
    let st = Strategy::parse("none").unwrap();
    let a = run_case(Arc::new(w.plan(st)), &w.choices).unwrap();
    let b = run_case(Arc::new(w.plan(st)), &w.choices).unwrap();
    assert_eq!(a.history, b.history);
    assert_eq!(a.handle, b.handle);
    // shuttle's own ReplayScheduler, from the handle, gives the same history again.
    let r = shuttle::replay(Arc::new(w.plan(st)), &a.handle).unwrap();
    assert_eq!(r, a.history);
    // Another schedule of the same workload gives another history (the choices matter).
    let c = run_case(Arc::new(w.plan(st)), &[0; 12]).unwrap();
    assert_ne!(c.history, a.history);
}

#[test]
fn a_bad_script_op_is_refused_with_the_allowed_values() {
    let text = "name = \"x\"\ndescription = \"x\"\n[[role]]\nkind = \"cli\"\nscript = [\"use\", \"steal:1\"]\n";
    let e = Scenario::parse(text, "x.toml").unwrap_err().to_string();
    assert!(e.contains("script") && e.contains("exhaust:N"), "{e}");
    for op in ["use", "exhaust:1", "add", "remove:0", "reset"] {
        assert_eq!(op.parse::<ScriptOp>().unwrap().to_string(), op);
    }
}

//! A process killed right after its rename, before it goes on, must not leave a false
//! `torn_read` (issue 13, item 10): the bytes it renamed into place are a write it began, and
//! a reader of them (its own restarted life, a peer, the harness) read a known write.
//!
//! The scenario kills every writer at `after_rename` (probability 1), then restarts it; the
//! restarted process loads the store its previous life renamed into place. Run with the
//! bundled Python subject (which reports `write_begin` before and `write` right after its
//! rename, before the pause, as docs/subjects.md asks) and with pool-core's own worker.

mod common;

use std::process::Command;

use common::root;
use serde_json::Value;

const SCENARIO: &str = r#"
name = "kill-after-rename"
description = "every writer is killed right after its rename, then restarted"
seed = 3

[[entry]]
label = "key-a"
auth_type = "api_key"

[[role]]
kind = "auth-add"
count = 2
ops = 3

[[role]]
kind = "cli"
ops = 3

[nemesis]
kill_at = ["after_rename"]
probability = 1.0
kills_per_process = 2
"#;

fn run(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("kill-after-rename.toml");
    std::fs::write(&sc, SCENARIO).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .current_dir(root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["run", "--format", "json", "--scenario"])
        .arg(&sc)
        .args(extra)
        .output()
        .expect("poolcheck runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn killed_and_torn(report: &Value) -> (u64, u64) {
    let run = &report["runs"][0];
    let killed = run["stats"]["killed"].as_u64().unwrap_or_else(|| {
        panic!("no stats.killed in {run}");
    });
    let torn = run["anomalies"]["torn_read"].as_u64().expect("torn_read");
    (killed, torn)
}

#[test]
fn a_subject_killed_after_its_rename_leaves_no_false_torn_read() {
    common::require("python3", "Python 3");
    let r = run(&[
        "--subject",
        "python3 subjects/python/pool_subject.py --flock-per-write",
    ]);
    let (killed, torn) = killed_and_torn(&r);
    assert!(killed > 0, "the nemesis killed nobody: {r}");
    assert_eq!(torn, 0, "{}", r["runs"][0]["witnesses"]);
}

#[test]
fn a_pool_core_worker_killed_after_its_rename_leaves_no_false_torn_read() {
    let r = run(&["--strategy", "flock"]);
    let (killed, torn) = killed_and_torn(&r);
    assert!(killed > 0, "the nemesis killed nobody: {r}");
    assert_eq!(torn, 0, "{}", r["runs"][0]["witnesses"]);
}

/// The window no pause point reaches: pool-core records a write right after its rename, and a
/// kill can still land between the two (the run's deadline, parent death, the OOM killer). The
/// test re-runs its own binary as a child whose hooks SIGKILL it the moment the pool reports a
/// completed store write (after the rename, before the record reaches the log); a second pool
/// then loads the store. The history must explain the bytes it read.
mod pool_core_window {
    use std::path::Path;

    use harness::drive::log::EventLog;
    use harness::history::{read_logs, Ev};
    use pool_core::real::{Hooks, RealOs, SystemClock};
    use pool_core::world::{Grant, Issuer, RedeemError, UseOutcome};
    use pool_core::{AuthType, Config, Event, NewEntry, Pool, Store, Strategy};

    const CHILD_ENV: &str = "POOLCHECK_KILL_WINDOW_DIR";

    struct NoIssuer;
    impl Issuer for NoIssuer {
        fn redeem(&self, _: &str) -> Result<Grant, RedeemError> {
            Err(RedeemError::Unavailable("no issuer in this test".into()))
        }
        fn use_credential(&self, _: &str) -> UseOutcome {
            UseOutcome::Accepted
        }
    }

    /// Logs every event; with `kill_on_write`, dies instead of logging a store write.
    struct Logging {
        log: EventLog,
        kill_on_write: bool,
    }
    impl Hooks for Logging {
        fn record(&self, event: Event) {
            if self.kill_on_write && matches!(event, Event::Write { file: None, .. }) {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            self.log.push(Ev::Pool { event });
        }
    }

    fn pool(
        dir: &Path,
        proc: u32,
        kill_on_write: bool,
    ) -> Pool<RealOs<Logging>, NoIssuer, SystemClock> {
        let log = EventLog::create(&dir.join(format!("logs/p{proc}.jsonl")), proc).unwrap();
        let os = RealOs::with_hooks(Logging { log, kill_on_write });
        Pool::new(
            os,
            NoIssuer,
            SystemClock,
            Config::new(dir, Strategy::parse("flock").unwrap()),
        )
    }

    #[test]
    fn kill_window_child() {
        let Ok(dir) = std::env::var(CHILD_ENV) else {
            return;
        };
        let p = pool(Path::new(&dir), 1, true);
        p.load_pool().unwrap();
        let _ = p.add_entry(NewEntry {
            label: "k".into(),
            auth_type: AuthType::ApiKey,
            source: "manual".into(),
            access_token: Some("sk-kill-window-0123456789".into()),
            refresh_token: None,
            expires_at_ms: None,
        });
        unreachable!("the hooks kill this process at its store write");
    }

    #[test]
    fn a_pool_core_worker_killed_between_rename_and_record_leaves_no_false_torn_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let bytes = Store::default().to_bytes();
        std::fs::write(dir.path().join("auth.json"), &bytes).unwrap();
        let harness_log = EventLog::create(&dir.path().join("logs/p0.jsonl"), 0).unwrap();
        harness_log.push(Ev::Pool {
            event: Event::Write {
                op: 0,
                hash: pool_core::digest::content_hash(&bytes),
                base: None,
                entries: vec![],
                file: None,
            },
        });
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pool_core_window::kill_window_child",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have been killed");
        let after = std::fs::read(dir.path().join("auth.json")).unwrap();
        assert_ne!(after, bytes, "the child's rename landed before its death");
        pool(dir.path(), 2, false).load_pool().unwrap();
        let h = read_logs(&dir.path().join("logs")).unwrap();
        let v = harness::check::check(&h);
        assert_eq!(v.counts["torn_read"], 0, "{:?}", v.witnesses);
    }
}

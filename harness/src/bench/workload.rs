//! The workload: the pool every cell starts from, the op mix every process runs, and one
//! measured cell of a pool strategy (forked workers against the real loopback issuer, judged
//! by the anomaly checkers on the same run).
//!
//! The op mix, per loop turn of a worker: one `select` (round robin, so every select is a
//! read-modify-write of the store); every `use_every`-th turn the selected credential is used
//! at the issuer's API (a loopback HTTP call, outside the lock, not timed as an operation);
//! every `exhaust_every`-th turn the selected entry is marked exhausted with a short cooldown
//! (`mark_exhausted_and_rotate`, timed as an operation). The one OAuth entry's access token is
//! minted to need a refresh every `refresh_interval_ms`; the issuer answers with no latency.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use pool_core::real::{Hooks, RealOs, SystemClock};
use pool_core::world::{Clock, Event, Issuer as _, RefreshOutcome, UseOutcome};
use pool_core::{Config, Pool, Selection, Strategy};
use serde::{Deserialize, Serialize};

use super::measure::{fork_timed, BenchError, Samples, TimedOs, Worker};
use crate::check::{self, Verdict};
use crate::drive::log::EventLog;
use crate::drive::setup::prepare;
use crate::history::{now_ns, Ev, History, Record};
use crate::issuer::client::HttpIssuer;
use crate::issuer::IssuerHandle;
use crate::scenario::Scenario;

/// The op mix and the pool it runs on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Mix {
    /// Use the selected credential at the API every this many turns (0: never).
    pub use_every: u64,
    /// Mark the selected entry exhausted every this many turns (0: never).
    pub exhaust_every: u64,
    /// Cooldown of an entry marked exhausted.
    pub cooldown_ms: u64,
    /// An access token needs a refresh this long after it was minted.
    pub refresh_interval_ms: u64,
    /// Latency of the issuer (both endpoints).
    pub issuer_latency_ms: u64,
    /// API-key entries in the pool (besides the one OAuth entry).
    pub api_keys: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            use_every: 8,
            exhaust_every: 32,
            cooldown_ms: 1,
            refresh_interval_ms: 1000,
            issuer_latency_ms: 0,
            api_keys: 3,
        }
    }
}

/// Lifetime of the access tokens the bench issuer mints.
const ACCESS_LIFETIME_S: u64 = 3600;

/// The bench pool as a scenario: one OAuth entry expiring at once, `api_keys` API keys.
pub fn scenario(mix: &Mix) -> Scenario {
    let mut toml = format!(
        "name = \"bench\"\ndescription = \"contention benchmark\"\nseed = 7\n\
         [pool]\nselection = \"round_robin\"\n\
         [issuer]\nlatency_ms = [{l}, {l}]\naccess_lifetime_s = {ACCESS_LIFETIME_S}\n\
         [[entry]]\nlabel = \"oauth\"\nauth_type = \"oauth\"\nexpires_in_s = 0\n",
        l = mix.issuer_latency_ms
    );
    for i in 0..mix.api_keys {
        toml.push_str(&format!(
            "[[entry]]\nlabel = \"key-{i}\"\nauth_type = \"api_key\"\n"
        ));
    }
    toml.push_str("[[role]]\nkind = \"gateway\"\n");
    Scenario::parse(&toml, "bench").expect("the bench scenario is valid")
}

/// The pool configuration of a bench worker.
pub fn pool_config(dir: &Path, strategy: Strategy, mix: &Mix, seed: u64) -> Config {
    let mut cfg = Config::new(dir, strategy);
    cfg.selection = Selection::RoundRobin;
    cfg.refresh_margin_ms = (ACCESS_LIFETIME_S * 1000).saturating_sub(mix.refresh_interval_ms);
    cfg.seed = seed;
    cfg
}

/// Hooks of a bench worker: events kept in memory (written after the clock stops), POSTs
/// to the token endpoint counted.
pub struct BenchHooks {
    proc: u32,
    records: RefCell<Vec<Record>>,
    refreshes: Cell<u64>,
}

impl BenchHooks {
    pub fn new(proc: u32) -> Self {
        BenchHooks {
            proc,
            records: RefCell::new(vec![Record {
                t_ns: now_ns(),
                proc,
                ev: Ev::ProcStart {
                    role: "bench".into(),
                },
            }]),
            refreshes: Cell::new(0),
        }
    }

    /// Write the events as one JSON-lines log.
    pub fn flush(&self, path: &Path) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in self.records.borrow().iter() {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        std::fs::File::create(path)?.write_all(&buf)
    }
}

impl Hooks for BenchHooks {
    fn record(&self, event: Event) {
        if let Event::Refresh {
            outcome: RefreshOutcome::Rotated | RefreshOutcome::Refused | RefreshOutcome::Unavailable,
            ..
        } = event
        {
            self.refreshes.set(self.refreshes.get() + 1);
        }
        self.records.borrow_mut().push(Record {
            t_ns: now_ns(),
            proc: self.proc,
            ev: Ev::Pool { event },
        });
    }
}

/// The worker's hooks, shared (on one thread) by its pool and itself.
#[derive(Clone)]
pub struct SharedHooks(Rc<BenchHooks>);

impl Hooks for SharedHooks {
    fn record(&self, event: Event) {
        self.0.record(event)
    }
}

type BenchPool = Pool<TimedOs<RealOs<SharedHooks>>, HttpIssuer, SystemClock>;

/// One forked process running the op mix on its own long-lived pool object.
pub struct PoolWorker {
    pool: BenchPool,
    hooks: Rc<BenchHooks>,
    mix: Mix,
    turn: u64,
    log: PathBuf,
}

impl PoolWorker {
    pub fn new(proc: u32, cfg: Config, issuer_url: &str, mix: &Mix, log: PathBuf) -> Self {
        let hooks = Rc::new(BenchHooks::new(proc));
        let pool = Pool::new(
            TimedOs::new(RealOs::with_hooks(SharedHooks(hooks.clone()))),
            HttpIssuer::new(issuer_url, proc, Duration::from_secs(10)),
            SystemClock,
            cfg,
        );
        // A torn read can fail a load under unsafe strategies; retry as a restarted gateway.
        for _ in 0..3 {
            if pool.load_pool().is_ok() {
                break;
            }
        }
        PoolWorker {
            pool,
            hooks,
            mix: mix.clone(),
            turn: 0,
            log,
        }
    }
}

/// Whether turn `turn` (counted from 1) is one of every `every` turns: the `every`-th, the
/// `2 * every`-th, ...
pub fn every(turn: u64, every: u64) -> bool {
    every > 0 && turn.is_multiple_of(every)
}

impl Worker for PoolWorker {
    fn step(&mut self, s: &mut Samples) {
        self.turn += 1;
        let picked = s.time(|| self.pool.select());
        let mut exhaust = every(self.turn, self.mix.exhaust_every);
        match picked {
            // Counted in `errors` by `time`.
            Err(_) | Ok(None) => {}
            Ok(Some(sel)) => {
                if every(self.turn, self.mix.use_every) {
                    // A rejected credential is marked exhausted, as upstream does on a 401.
                    if self.pool.issuer().use_credential(&sel.credential) == UseOutcome::Rejected {
                        exhaust = true;
                    }
                }
                if exhaust {
                    let reset = SystemClock.now_ms() + self.mix.cooldown_ms;
                    let _ = s.time(|| {
                        self.pool
                            .mark_exhausted_and_rotate(&sel.id, 429, "bench", Some(reset))
                    });
                }
            }
        }
    }

    fn finish(self, s: &mut Samples) -> io::Result<()> {
        s.lock_wait_ns = self.pool.os().wait_ns();
        s.locks = self.pool.os().locks();
        s.refreshes = self.hooks.refreshes.get();
        self.hooks.flush(&self.log)
    }
}

/// A measured pool cell: the workers' samples and the checkers' verdict on the same run.
pub struct PoolCell {
    pub samples: Vec<Samples>,
    pub verdict: Verdict,
}

fn io_at(what: &str, path: &Path) -> impl FnOnce(io::Error) -> BenchError {
    let what = format!("{what} {}", path.display());
    move |e| BenchError(format!("{what}: {e}"))
}

/// Prepare `dir` (initial store, issuer with the run's token families), start the issuer in
/// its own process, and hand back its handle.
pub fn start_world(dir: &Path, mix: &Mix) -> Result<(IssuerHandle, EventLog), BenchError> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_at("cannot create", &logs))?;
    let harness_log =
        EventLog::create(&logs.join("p0.jsonl"), 0).map_err(io_at("cannot create", &logs))?;
    let sc = scenario(mix);
    let issuer = prepare(
        &sc,
        sc.seed,
        dir,
        SystemClock.now_ms(),
        &logs.join("ledger.jsonl"),
        &harness_log,
        None,
    )
    .map_err(io_at("cannot prepare the run in", dir))?
    .spawn_process()
    .map_err(|e| BenchError(format!("cannot start the issuer: {e}")))?;
    Ok((issuer, harness_log))
}

/// Run one pool cell in `dir` (a fresh directory on the file system under test).
pub fn run_pool_cell(
    strategy: Strategy,
    procs: u32,
    seconds: f64,
    dir: &Path,
    mix: &Mix,
) -> Result<PoolCell, BenchError> {
    let (issuer, harness_log) = start_world(dir, mix)?;
    let logs = dir.join("logs");
    let url = issuer.url.clone();
    let samples = fork_timed(
        procs,
        seconds,
        dir,
        |p| {
            let cfg = pool_config(dir, strategy, mix, 0xBE4C ^ (u64::from(p) << 32));
            Ok(PoolWorker::new(
                p,
                cfg,
                &url,
                mix,
                logs.join(format!("p{p}.jsonl")),
            ))
        },
        Duration::from_secs(30),
    );
    let stopped = issuer.stop();
    let samples = samples?;
    stopped.map_err(|e| BenchError(format!("the issuer failed: {e}")))?;
    for p in 1..=procs {
        harness_log.push_for(
            p,
            Ev::ProcExit {
                status: "exit 0".into(),
                crashed: false,
            },
        );
    }
    push_final_store(dir, &harness_log);
    let history = read_history(&logs)?;
    Ok(PoolCell {
        samples,
        verdict: check::check(&history),
    })
}

/// Record the store as the run left it (as the fork driver does).
fn push_final_store(dir: &Path, log: &EventLog) {
    let provider = scenario(&Mix::default()).pool.provider;
    let bytes = std::fs::read(dir.join("auth.json")).ok();
    log.push(Ev::final_store(bytes.as_deref(), &provider));
}

fn read_history(logs: &Path) -> Result<History, BenchError> {
    crate::history::read_logs(logs).map_err(BenchError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_picks_one_turn_in_n() {
        let hits: Vec<u64> = (1..=32).filter(|&t| every(t, 16)).collect();
        assert_eq!(hits, vec![16, 32]);
        assert!(!(1..100).any(|t| every(t, 0)));
    }

    #[test]
    fn the_bench_pool_has_one_expiring_oauth_entry_and_the_keys() {
        let mix = Mix::default();
        let sc = scenario(&mix);
        assert_eq!(sc.entries.len(), 1 + mix.api_keys as usize);
        assert_eq!(sc.entries[0].auth_type, "oauth");
        assert_eq!(sc.entries[0].expires_in_s, 0);
        let cfg = pool_config(
            Path::new("/x"),
            Strategy::parse("flock-txn").unwrap(),
            &mix,
            1,
        );
        assert_eq!(cfg.refresh_margin_ms, 3_600_000 - 1000);
        assert_eq!(cfg.selection, Selection::RoundRobin);
    }
}

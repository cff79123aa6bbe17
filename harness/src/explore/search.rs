//! The search: proptest generates workloads (with their schedules), each runs once under the
//! choice scheduler and is judged by the checkers; the first anomalous case is shrunk by
//! proptest to a minimal workload that still shows the *same* anomaly (the first one the
//! checkers name for that case, or the one asked for).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use pool_core::Strategy as PoolStrategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::schedule::run_case;
use super::workload::{workload, Workload};
use crate::check::{self, Verdict};
use crate::history::History;
use crate::progress::Progress;

/// What a search came to.
pub enum Outcome {
    /// Every case was clean.
    Clean { cases: u64, seconds: f64 },
    /// A minimal anomalous workload.
    Found(Box<Found>),
}

pub struct Found {
    pub anomaly: String,
    pub workload: Workload,
    pub history: History,
    pub verdict: Verdict,
    /// shuttle's schedule string of the minimal case.
    pub handle: String,
    /// Cases run before the first anomalous one (that one included).
    pub cases: u64,
    /// Executions run while shrinking.
    pub shrink_runs: u64,
    pub seconds: f64,
}

impl Found {
    /// The witness of the anomaly shrunk for.
    pub fn witness(&self) -> &check::Witness {
        self.verdict
            .witnesses
            .iter()
            .find(|w| w.anomaly == self.anomaly)
            .expect("the minimal case shows the anomaly")
    }
}

/// Run `cases` generated workloads under `strategy`, the proptest RNG seeded from `seed`.
/// `want`: only that anomaly counts (others pass); default: any, and the first one found is
/// what shrinking keeps.
pub fn search(
    strategy: PoolStrategy,
    cases: u32,
    seed: u64,
    want: Option<&str>,
) -> Result<Outcome, String> {
    search_with(strategy, cases, seed, want, &mut Progress::quiet())
}

/// [`search`], telling `progress` of its two cells: the search (its cases) and the shrinking
/// (its runs).
pub fn search_with(
    strategy: PoolStrategy,
    cases: u32,
    seed: u64,
    want: Option<&str>,
    progress: &mut Progress,
) -> Result<Outcome, String> {
    let started = Instant::now();
    let progress = RefCell::new(progress);
    progress.borrow_mut().start("search");
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 100_000,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let target: RefCell<Option<String>> = RefCell::new(want.map(str::to_string));
    let hunting = want.is_none();
    let found_first = Cell::new(false);
    let (cases_run, shrink_runs) = (Cell::new(0u64), Cell::new(0u64));
    let error: RefCell<Option<String>> = RefCell::new(None);
    let result = runner.run(&workload(), |w| {
        if found_first.get() {
            shrink_runs.set(shrink_runs.get() + 1);
            let n = shrink_runs.get();
            progress.borrow_mut().advance(&format!("{n} runs"));
        } else {
            cases_run.set(cases_run.get() + 1);
            let n = cases_run.get();
            progress
                .borrow_mut()
                .advance(&format!("case {n} of at most {cases}"));
        }
        let run = match run_case(Arc::new(w.plan(strategy)), &w.choices) {
            Ok(r) => r,
            Err(e) => {
                // Not an anomaly: stop the search (shrinking keeps it failing, which is fine:
                // the error is reported, not a witness).
                error.borrow_mut().get_or_insert(e.clone());
                return Err(TestCaseError::fail(e));
            }
        };
        let v = check::check(&run.history);
        let mut t = target.borrow_mut();
        if t.is_none() && hunting {
            *t = v.witnesses.first().map(|w| w.anomaly.clone());
        }
        let hit = t
            .as_deref()
            .is_some_and(|a| v.counts.get(a).copied().unwrap_or(0) > 0);
        if hit {
            if !found_first.get() {
                let mut p = progress.borrow_mut();
                p.done(&format!(
                    "{} after {} cases",
                    t.as_deref().unwrap_or(""),
                    cases_run.get()
                ));
                p.start("shrink");
            }
            found_first.set(true);
            return Err(TestCaseError::fail(t.clone().unwrap_or_default()));
        }
        Ok(())
    });
    if let Some(e) = error.into_inner() {
        return Err(e);
    }
    let progress = progress.into_inner();
    match found_first.get() {
        true => progress.done(&format!("shrunk in {} runs", shrink_runs.get())),
        false => progress.done(&format!("{} cases clean", cases_run.get())),
    }
    match result {
        Ok(()) => Ok(Outcome::Clean {
            cases: cases_run.get(),
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(TestError::Fail(_, minimal)) => {
            let anomaly = target.into_inner().expect("a failure has a target");
            let run = run_case(Arc::new(minimal.plan(strategy)), &minimal.choices)?;
            let verdict = check::check(&run.history);
            Ok(Outcome::Found(Box::new(Found {
                anomaly,
                workload: minimal,
                history: run.history,
                verdict,
                handle: run.handle,
                cases: cases_run.get(),
                shrink_runs: shrink_runs.get(),
                seconds: started.elapsed().as_secs_f64(),
            })))
        }
        Err(TestError::Abort(why)) => Err(format!("the search aborted: {why}")),
    }
}

//! The shuttle driver: runs a scenario on the simulated kernel under shuttle's schedulers (PCT,
//! uniformly random, or depth-first), judges every execution with the checkers, stops at the
//! first counterexample, and hands back shuttle's schedule string as its replay handle.
//!
//! The schedule is recorded by a thin wrapper around shuttle's scheduler ([`Recording`]) and
//! encoded with shuttle's own serialization, so `shuttle::replay`-style replay
//! ([`ReplayScheduler::new_from_encoded`]) runs exactly that schedule again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shuttle::scheduler::{
    DfsScheduler, PctScheduler, RandomScheduler, ReplayScheduler, Schedule, Scheduler, Task, TaskId,
};
use shuttle::{Config, FailurePersistence, Runner};
use shuttle_engine::scheduler::serialization::{deserialize_schedule, serialize_schedule};

use super::fork::DriveError;
use super::model::{Catch, Exploration, Goal};
use crate::history::History;
use crate::sim::{execute, ModelPlan, Shuttle};

/// Which shuttle scheduler, and its budget.
#[derive(Clone, Copy, Debug)]
pub enum Search {
    /// Probabilistic Concurrency Testing: `iterations` schedules at bug depth `depth`.
    Pct {
        depth: usize,
        iterations: usize,
        seed: u64,
    },
    /// `iterations` uniformly random schedules.
    Random { iterations: usize, seed: u64 },
    /// Depth-first enumeration of every schedule, up to `max_iterations`.
    Dfs { max_iterations: usize },
}

impl Search {
    /// The bound as stated in reports.
    pub fn bound(&self) -> String {
        match self {
            Search::Pct {
                depth,
                iterations,
                seed,
            } => format!("pct depth={depth}, {iterations} sampled schedules, seed={seed} (probabilistic, not exhaustive)"),
            Search::Random { iterations, seed } => {
                format!("random, {iterations} sampled schedules, seed={seed} (probabilistic, not exhaustive)")
            }
            Search::Dfs { max_iterations } => {
                format!("dfs, every schedule, at most {max_iterations}")
            }
        }
    }
}

/// What the executions share with the driver.
#[derive(Default)]
struct Shared {
    executions: AtomicU64,
    stop: AtomicBool,
    catch: Mutex<Catch>,
    current: Mutex<Schedule>,
}

impl Shared {
    /// The executions the search kept during the execution that just ended get its schedule
    /// as their replay handle (one shell word: shuttle's encoding wraps long schedules over
    /// several lines). Called once the schedule is whole: the execution goes on after it is
    /// judged (its threads exit), and a replay needs those steps too.
    fn finish_execution(&self) {
        let mut catch = self.catch.lock().unwrap_or_else(|p| p.into_inner());
        let handle: String =
            serialize_schedule(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
                .split_whitespace()
                .collect();
        catch.fill_handles(&handle);
    }
}

/// Wraps a scheduler and records the current execution's schedule (shuttle's `Schedule`:
/// the seed, then every task choice and random draw), and ends the search on request.
struct Recording<S> {
    inner: S,
    shared: Arc<Shared>,
    /// On stop, run the inner scheduler to its end first: shuttle's random scheduler prints a
    /// "failing seed" message when it is dropped before its last iteration.
    drain: bool,
}

impl<S: Scheduler> Scheduler for Recording<S> {
    fn new_execution(&mut self) -> Option<Schedule> {
        // The execution before is over: its schedule is whole now.
        self.shared.finish_execution();
        if self.shared.stop.load(Ordering::SeqCst) {
            if self.drain {
                while self.inner.new_execution().is_some() {}
            }
            return None;
        }
        let s = self.inner.new_execution()?;
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = s.clone();
        Some(s)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let t = self.inner.next_task(runnable, current, is_yielding);
        if let Some(t) = t {
            self.shared
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_task(t);
        }
        t
    }

    fn next_u64(&mut self) -> u64 {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_random();
        self.inner.next_u64()
    }
}

/// Run `f` and put back the panic hook that was installed before: shuttle installs its own
/// during a run and leaves it behind, where it would report later, unrelated panics (such as
/// loom's) as failed shuttle tasks.
pub(crate) fn keeping_panic_hook<R>(f: impl FnOnce() -> R) -> R {
    let prev = std::panic::take_hook();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

pub(crate) fn config() -> Config {
    let mut c = Config::new();
    c.silence_warnings = true;
    c.stack_size = 1 << 20;
    c.failure_persistence = FailurePersistence::None;
    c
}

fn run_with<S: Scheduler + 'static>(
    plan: &Arc<ModelPlan>,
    scheduler: S,
    drain: bool,
    goal: &Goal,
) -> (Arc<Shared>, usize) {
    let shared = Arc::new(Shared {
        catch: Mutex::new(Catch::new(goal.clone())),
        ..Shared::default()
    });
    let runner = Runner::new(
        Recording {
            inner: scheduler,
            shared: shared.clone(),
            drain,
        },
        config(),
    );
    let (p, sh) = (plan.clone(), shared.clone());
    let n = keeping_panic_hook(|| {
        runner.run(move || {
            sh.executions.fetch_add(1, Ordering::SeqCst);
            let h = execute::<Shuttle>(&p);
            let done = sh
                .catch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .offer(h, String::new);
            if done {
                sh.stop.store(true, Ordering::SeqCst);
            }
        })
    });
    (shared, n)
}

/// Explore schedules of `plan` until the budget is spent or the search for `goal` is over.
pub fn explore(plan: Arc<ModelPlan>, search: Search, goal: Goal) -> Exploration {
    let started = Instant::now();
    let (shared, budget, exhaustive) = match search {
        Search::Pct {
            depth,
            iterations,
            seed,
        } => (
            run_with(
                &plan,
                PctScheduler::new_from_seed(seed, depth, iterations),
                false,
                &goal,
            )
            .0,
            iterations,
            false,
        ),
        Search::Random { iterations, seed } => (
            run_with(
                &plan,
                RandomScheduler::new_from_seed(seed, iterations),
                true,
                &goal,
            )
            .0,
            iterations,
            false,
        ),
        Search::Dfs { max_iterations } => (
            run_with(
                &plan,
                DfsScheduler::new(Some(max_iterations), false),
                false,
                &goal,
            )
            .0,
            max_iterations,
            true,
        ),
    };
    shared.finish_execution();
    let schedules = shared.executions.load(Ordering::SeqCst);
    let catch = std::mem::take(&mut *shared.catch.lock().unwrap_or_else(|p| p.into_inner()));
    // DFS stopped before its budget: it ran out of schedules, i.e. it saw them all. PCT /
    // random: every sampled schedule was judged (see the bound's wording).
    let complete = !exhaustive || (schedules as usize) < budget;
    catch.conclude(
        schedules,
        complete,
        search.bound(),
        started.elapsed().as_secs_f64(),
    )
}

/// Run exactly the schedule `handle` (a string from [`explore`]) once; its history.
pub fn replay(plan: Arc<ModelPlan>, handle: &str) -> Result<History, DriveError> {
    let handle: String = handle.split_whitespace().collect();
    let handle = handle.as_str();
    if deserialize_schedule(handle).is_none() {
        return Err(DriveError(format!(
            "--replay '{handle}': not a shuttle schedule string (use the replay handle a shuttle-* counterexample printed)"
        )));
    }
    let out: Arc<Mutex<Option<History>>> = Arc::default();
    let o = out.clone();
    let runner = Runner::new(ReplayScheduler::new_from_encoded(handle), config());
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        keeping_panic_hook(|| {
            runner.run(move || {
                let h = execute::<Shuttle>(&plan);
                *o.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
            })
        })
    }));
    if run.is_err() {
        return Err(DriveError(format!(
            "--replay '{handle}': the schedule does not fit this scenario, strategy and process count (replay with the same arguments that found it)"
        )));
    }
    let h = out.lock().unwrap_or_else(|p| p.into_inner()).take();
    h.ok_or_else(|| DriveError("--replay: the schedule ran no execution".into()))
}

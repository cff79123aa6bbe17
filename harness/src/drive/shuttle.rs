//! The shuttle driver: runs a scenario on the simulated kernel under shuttle's schedulers (PCT,
//! uniformly random, or depth-first), judges every execution with the checkers, stops at the
//! first counterexample, and hands back shuttle's schedule string as its replay handle.
//!
//! The schedule is recorded by a thin wrapper around shuttle's scheduler ([`Recording`]) and
//! encoded with shuttle's own serialization, so `shuttle::replay`-style replay
//! ([`ReplayScheduler::new_from_encoded`]) runs exactly that schedule again.
//!
//! Crashes: when the plan lets the machine crash, each execution crashes it right before a
//! shared step drawn at random ([`Crashes`]: uniform over the most steps an execution has
//! taken so far, from the search's seed; the first execution has no crash), so shuttle samples
//! crash points as it samples schedules. The handle is then `crash=N:` + the schedule. DFS
//! cannot claim every crash point of every schedule: with crashes it is never `verified`.

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
use crate::sim::{execute, CrashPlan, ModelPlan, Shuttle, World};

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

/// The crash point of each execution, drawn at random (xorshift64* from the search's seed)
/// over the most shared steps an execution has taken so far.
struct Crashes {
    state: u64,
    most: Option<u64>,
}

impl Crashes {
    fn new(seed: u64) -> Crashes {
        Crashes {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            most: None,
        }
    }

    /// The next execution's crash point; none for the first (it measures the steps).
    fn next(&mut self) -> Option<u64> {
        let most = self.most?;
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        Some(self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % (most + 1))
    }

    fn saw(&mut self, steps: u64) {
        self.most = Some(self.most.unwrap_or(0).max(steps));
    }
}

/// What the executions share with the driver.
#[derive(Default)]
struct Shared {
    executions: AtomicU64,
    stop: AtomicBool,
    catch: Mutex<Catch>,
    /// With crashes: the sampler, and the current execution's crash point.
    crashes: Mutex<Option<Crashes>>,
    crash_at: Mutex<Option<u64>>,
}

impl Shared {
    /// The executions the search kept during the execution that just ended get its schedule
    /// as their replay handle (one shell word: shuttle's encoding wraps long schedules over
    /// several lines). Called once the schedule is whole: the execution goes on after it is
    /// judged (its threads exit), and a replay needs those steps too. Encoded only when an
    /// execution was kept.
    fn finish_execution(&self, schedule: &Schedule) {
        let mut catch = self.catch.lock().unwrap_or_else(|p| p.into_inner());
        if !catch.wants_handle() {
            return;
        }
        let mut handle: String = serialize_schedule(schedule).split_whitespace().collect();
        if let Some(n) = *self.crash_at.lock().unwrap_or_else(|p| p.into_inner()) {
            handle = format!("crash={n}:{handle}");
        }
        catch.fill_handles(&handle);
    }
}

/// Wraps a scheduler and records the current execution's schedule (shuttle's `Schedule`:
/// the seed, then every task choice and random draw), and ends the search on request.
/// shuttle asks for a new execution after the last one too, so every execution's schedule is
/// finished here ([`Shared::finish_execution`]).
struct Recording<S> {
    inner: S,
    shared: Arc<Shared>,
    /// On stop, run the inner scheduler to its end first: shuttle's random scheduler prints a
    /// "failing seed" message when it is dropped before its last iteration.
    drain: bool,
    /// The schedule of the execution running (none before the first).
    current: Option<Schedule>,
}

impl<S: Scheduler> Scheduler for Recording<S> {
    fn new_execution(&mut self) -> Option<Schedule> {
        // The execution before is over: its schedule is whole now.
        if let Some(done) = self.current.take() {
            self.shared.finish_execution(&done);
        }
        if self.shared.stop.load(Ordering::SeqCst) {
            if self.drain {
                while self.inner.new_execution().is_some() {}
            }
            return None;
        }
        let s = self.inner.new_execution()?;
        self.current = Some(s.clone());
        Some(s)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let t = self.inner.next_task(runnable, current, is_yielding);
        if let (Some(t), Some(s)) = (t, self.current.as_mut()) {
            s.push_task(t);
        }
        t
    }

    fn next_u64(&mut self) -> u64 {
        if let Some(s) = self.current.as_mut() {
            s.push_random();
        }
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
    seed: u64,
) -> (Arc<Shared>, usize) {
    let crashes = (plan.crash != CrashPlan::Never).then(|| Crashes::new(seed));
    let shared = Arc::new(Shared {
        catch: Mutex::new(Catch::new(goal.clone())),
        crashes: Mutex::new(crashes),
        ..Shared::default()
    });
    let runner = Runner::new(
        Recording {
            inner: scheduler,
            shared: shared.clone(),
            drain,
            current: None,
        },
        config(),
    );
    // Built once: every execution starts from a copy of it.
    let world = World::new(plan);
    let sh = shared.clone();
    let n = keeping_panic_hook(|| {
        runner.run(move || {
            sh.executions.fetch_add(1, Ordering::SeqCst);
            let mut crashes = sh.crashes.lock().unwrap_or_else(|e| e.into_inner());
            let at = crashes.as_mut().and_then(Crashes::next);
            *sh.crash_at.lock().unwrap_or_else(|e| e.into_inner()) = at;
            drop(crashes);
            // No sampler: the plan does not crash (`at` is none).
            let crash = at.map_or(CrashPlan::Never, CrashPlan::AtStep);
            let (h, steps) = world.execute_counting::<Shuttle>(crash);
            if let Some(c) = sh
                .crashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                c.saw(steps);
            }
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
                seed,
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
                seed,
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
                0,
            )
            .0,
            max_iterations,
            true,
        ),
    };
    let schedules = shared.executions.load(Ordering::SeqCst);
    let catch = std::mem::take(&mut *shared.catch.lock().unwrap_or_else(|p| p.into_inner()));
    // DFS stopped before its budget: it ran out of schedules, i.e. it saw them all. PCT /
    // random: every sampled schedule was judged (see the bound's wording).
    let complete = !exhaustive || ((schedules as usize) < budget && plan.crash == CrashPlan::Never);
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
    let (crash, handle) = match handle.strip_prefix("crash=").and_then(|r| r.split_once(':')) {
        Some((n, rest)) => (
            Some(n.parse::<u64>().map_err(|_| {
                DriveError(format!(
                    "--replay '{handle}': the crash point '{n}' is not a number (use the handle a shuttle-* counterexample printed)"
                ))
            })?),
            rest,
        ),
        None => (None, handle.as_str()),
    };
    let mut plan = (*plan).clone();
    match (crash, plan.crash) {
        (Some(n), CrashPlan::Anywhere) => plan.crash = CrashPlan::AtStep(n),
        (None, CrashPlan::Anywhere) => plan.crash = CrashPlan::Never,
        (Some(_), _) => {
            return Err(DriveError(
                "--replay: the handle has a crash point, and this run does not crash the machine (replay with the same arguments that found it, --crash included)".to_string(),
            ))
        }
        (None, _) => {}
    }
    let plan = Arc::new(plan);
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

#[cfg(test)]
mod tests {
    //! What makes an execution cheaper must not change it: a world built once and shared
    //! memos give the histories a world built per execution gives, and a remembered verdict
    //! is the checkers' verdict.

    use super::*;
    use crate::check;
    use crate::drive::model::Judged;
    use crate::scenario::Scenario;
    use pool_core::Strategy;

    fn plan(strategy: &str, crash: CrashPlan) -> ModelPlan {
        let mut sc = Scenario::find("refresh-race").expect("catalog");
        sc.roles[0].count = 2;
        ModelPlan {
            scenario: sc,
            strategy: Strategy::parse(strategy).expect("preset"),
            seed: 7,
            crash,
        }
    }

    /// The histories of `iterations` PCT schedules (seeded: the same schedules every call),
    /// each execution crashing at step `crash(i)`, from one shared [`World`] or from a world
    /// built per execution.
    fn histories(
        plan: &ModelPlan,
        shared: bool,
        iterations: usize,
        crash: fn(u64) -> CrashPlan,
    ) -> Vec<History> {
        let out: Arc<Mutex<Vec<History>>> = Arc::default();
        let (o, p) = (out.clone(), plan.clone());
        let world = World::new(plan);
        let n = AtomicU64::new(0);
        let runner = Runner::new(PctScheduler::new_from_seed(3, 3, iterations), config());
        keeping_panic_hook(|| {
            runner.run(move || {
                let at = crash(n.fetch_add(1, Ordering::SeqCst));
                let h = if shared {
                    world.execute_counting::<Shuttle>(at).0
                } else {
                    let mut fresh = p.clone();
                    fresh.crash = at;
                    execute::<Shuttle>(&fresh)
                };
                o.lock().unwrap().push(h);
            })
        });
        let v = std::mem::take(&mut *out.lock().unwrap());
        assert_eq!(v.len(), iterations);
        v
    }

    #[test]
    fn a_world_built_once_gives_the_histories_of_a_world_built_per_execution() {
        let never: fn(u64) -> CrashPlan = |_| CrashPlan::Never;
        let every: fn(u64) -> CrashPlan = |i| CrashPlan::AtStep(i % 40);
        for (strategy, crash) in [
            ("flock-txn", never),
            ("none", never),
            ("flock-txn", every),
            (
                "lock=flock,scope=op,persist=txn,write=in-place,refresh=adopt",
                every,
            ),
        ] {
            let p = plan(strategy, CrashPlan::Never);
            let once = histories(&p, true, 150, crash);
            let each = histories(&p, false, 150, crash);
            for (i, (a, b)) in once.iter().zip(&each).enumerate() {
                assert_eq!(a, b, "{strategy}: execution {i} differs");
            }
        }
    }

    /// Over many executions (equal histories among them), every remembered verdict equals the
    /// checkers' verdict on the history, clean and anomalous ones alike.
    #[test]
    fn a_remembered_verdict_is_the_checkers_verdict() {
        let every: fn(u64) -> CrashPlan = |i| CrashPlan::AtStep(i % 40);
        let mut judged = Judged::default();
        let (mut runs, mut clean, mut flagged) = (0u64, 0u64, 0u64);
        for strategy in ["flock-txn", "flock-data", "none", "fcntl"] {
            for crash in [(|_| CrashPlan::Never) as fn(u64) -> CrashPlan, every] {
                for h in histories(&plan(strategy, CrashPlan::Never), true, 150, crash) {
                    let full = check::check(&h);
                    assert_eq!(judged.verdict(&h), full, "{strategy}");
                    runs += 1;
                    if full.is_clean() {
                        clean += 1;
                    } else {
                        flagged += 1;
                    }
                }
            }
        }
        assert!(clean > 0 && flagged > 0, "clean {clean}, flagged {flagged}");
        assert!(
            judged.checked < runs,
            "no verdict was remembered: {} of {runs} judged",
            judged.checked
        );
    }

    /// Scheduling points (shuttle's context switches, a count) and shared steps per execution
    /// of `iterations` PCT schedules of refresh-race 2 x 2 under `flock-txn`, with the
    /// primitives of facade `F`.
    fn points<F: crate::sim::Facade>(iterations: usize) -> (usize, u64) {
        let p = plan("flock-txn", CrashPlan::Never);
        let world = World::new(&p);
        let out: Arc<Mutex<(usize, u64)>> = Arc::default();
        let o = out.clone();
        let runner = Runner::new(PctScheduler::new_from_seed(5, 3, iterations), config());
        keeping_panic_hook(|| {
            runner.run(move || {
                let (_, steps) = world.execute_counting::<F>(CrashPlan::Never);
                let mut o = o.lock().unwrap();
                o.0 += shuttle::current::context_switches();
                o.1 += steps;
            })
        });
        let (p, s) = *out.lock().unwrap();
        (p / iterations, s / iterations as u64)
    }

    /// Every shared step costs one scheduling point where shuttle's own mutex and condition
    /// variable cost two or more (the lock and the release; a wait, a re-lock and a notify):
    /// the same executions with [`ShuttleStd`] (shuttle's `Mutex`/`Condvar`) take at least one
    /// more point per step. (Measured: 78 points per execution for 42 steps, 133 with shuttle's
    /// primitives.)
    #[test]
    fn shuttle_takes_one_scheduling_point_per_shared_step() {
        use crate::sim::facade::ShuttleStd;
        let (ours, steps) = points::<Shuttle>(200);
        let (std, std_steps) = points::<ShuttleStd>(200);
        eprintln!("points per execution: {ours} ({steps} steps), shuttle's primitives: {std} ({std_steps} steps)");
        assert!(steps > 20, "{steps} steps");
        assert!(
            ours + steps as usize <= std,
            "{ours} points per execution, {std} with shuttle's primitives, {steps} steps"
        );
    }
}

//! The loom driver: runs a scenario on the simulated kernel under loom, which explores every
//! interleaving of the simulated processes within a preemption bound, judges every execution
//! with the checkers and stops at the first counterexample.
//!
//! Crashes: when the plan lets the machine crash, loom explores one model per crash point N
//! (the machine crashes right before the execution's shared step N + 1: [`CrashPlan::AtStep`]),
//! N = 0, 1, 2, ... until no execution of the model took N steps any more (that last model has
//! no crash in it: the crash-free executions are explored too). So every crash point of every
//! interleaving within the bound is explored, whatever the bound.
//!
//! Replay: loom has no schedule string to hand out, but its exploration order is deterministic
//! for a given model and bound. The handle is `pb=B,iteration=N` (`pb=B,crash=C,iteration=N`
//! with crashes): re-running the same scenario, strategy, process and op counts with that
//! bound (and crash point) and stopping at execution N reproduces the counterexample exactly
//! (at the cost of re-exploring the N-1 before it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::fork::DriveError;
use super::model::{Catch, Exploration, Goal};
use crate::history::History;
use crate::sim::{CrashPlan, Loom, ModelPlan, Pauses, World};

/// The panic payload that ends a loom exploration on purpose.
struct Stop;

/// Keep panic messages out of the terminal for [`Stop`] only. Installed around whatever hook
/// is current at each run, because shuttle leaves its own hook installed after a run and that
/// hook would report our deliberate stop as a failed shuttle task.
fn quiet_stop_panics() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Stop>().is_none() {
            prev(info)
        }
    }));
}

/// Processes loom can model: its thread limit, less the model's main thread (which builds
/// and judges the world).
pub fn max_processes() -> u32 {
    loom::MAX_THREADS as u32 - 1
}

/// What to look for in the executions.
enum Target {
    /// A search: every execution is offered to the [`Catch`] until it is done.
    Search(Catch),
    /// Execution number N (1-based), whatever it shows.
    Iteration(u64, Option<History>),
}

/// loom's preemption bound: at most this many preemptions per execution, or none (every
/// interleaving: loom's plain DPOR, without the backtrack points a bounded search adds to
/// make up for what the bound cuts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound(pub Option<usize>);

impl Bound {
    /// One more preemption (`None` with no bound: there is nothing deeper).
    pub fn raised(self) -> Option<Bound> {
        self.0.map(|b| Bound(Some(b + 1)))
    }
}

impl std::str::FromStr for Bound {
    type Err = String;
    fn from_str(s: &str) -> Result<Bound, String> {
        match s {
            "none" => Ok(Bound(None)),
            _ => s.parse().map(|b| Bound(Some(b))).map_err(|_| {
                format!("'{s}': a preemption bound is a number of preemptions, or 'none'")
            }),
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(b) => write!(f, "{b}"),
            None => f.write_str("none"),
        }
    }
}

/// The replay handle of execution `n` of a model with `bound`, `crash` and `pauses`.
fn handle(bound: Bound, crash: CrashPlan, pauses: Pauses, n: u64) -> String {
    let mut h = format!("pb={bound}");
    if let CrashPlan::AtStep(c) = crash {
        h.push_str(&format!(",crash={c}"));
    }
    if pauses == Pauses::Plain {
        h.push_str(",pauses=plain");
    }
    h.push_str(&format!(",iteration={n}"));
    h
}

/// What one exploration of a model came to.
struct Ran {
    /// Executions run (the first `skip` of them again, not judged).
    executions: u64,
    target: Target,
    /// The most shared steps any execution took.
    most: u64,
    /// Whether loom explored the model to the end (no budget, no search, stopped it).
    complete: bool,
}

/// Explore one model, stopping after `budget` executions if given. Executions 1 to `skip`
/// were judged by an earlier run of the same model (loom's order is deterministic): they run
/// again, to steer loom to the ones after them, and are not offered to the search.
fn run(
    plan: Arc<ModelPlan>,
    bound: Bound,
    pauses: Pauses,
    budget: Option<u64>,
    skip: u64,
    target: Target,
) -> Result<Ran, DriveError> {
    if plan.processes() > max_processes() {
        return Err(DriveError(format!(
            "loom models at most {} processes (it has {} threads, one runs the model itself); this run has {}: use --procs {} or less, or a shuttle checker",
            max_processes(),
            loom::MAX_THREADS,
            plan.processes(),
            max_processes()
        )));
    }
    quiet_stop_panics();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = bound.0;
    b.max_branches = 1_000_000;
    b.max_threads = plan.processes() as usize + 1;
    b.max_permutations = None;
    b.checkpoint_file = None;
    let count = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let target = Arc::new(Mutex::new(target));
    let (c, t, m) = (count.clone(), target.clone(), most.clone());
    let crash = plan.crash;
    // Built once: every execution starts from a copy of it.
    let world = World::new(&plan);
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.check(move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            // On loom's main coroutine (its stack is small, 32 KiB, but holds the world's
            // setup and the judging; the pools run on the processes' threads, whose stacks
            // are LOOM_STACK): a thread of its own cost every execution one more stack to map,
            // protect and unmap, and one more thread for loom to schedule.
            let (h, steps) = world.execute_with::<Loom>(crash, pauses);
            m.fetch_max(steps, Ordering::SeqCst);
            let stop = match &mut *t.lock().unwrap_or_else(|e| e.into_inner()) {
                Target::Search(_) if n <= skip => false,
                Target::Search(catch) => catch.offer(h, || handle(bound, crash, pauses, n)),
                Target::Iteration(i, out) => {
                    if *i == n {
                        *out = Some(h);
                    }
                    *i == n
                }
            };
            if stop || budget == Some(n) {
                std::panic::panic_any(Stop);
            }
        })
    }));
    let n = count.load(Ordering::SeqCst);
    let most = most.load(Ordering::SeqCst);
    let target = std::mem::replace(
        &mut *target.lock().unwrap_or_else(|p| p.into_inner()),
        Target::Iteration(0, None),
    );
    let stopped = match &target {
        Target::Search(catch) => catch.done() || budget == Some(n),
        Target::Iteration(_, out) => out.is_some(),
    };
    let complete = checked.is_ok();
    match checked {
        Err(_) if !stopped => {
            let p = checked.unwrap_err();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            Err(DriveError(format!("loom stopped the model: {msg}")))
        }
        _ => Ok(Ran {
            executions: n,
            target,
            most,
            complete,
        }),
    }
}

/// The executions per crash point of the rounds before the exhaustive one: the first
/// execution of every crash point's model (the same schedule, crashed at each of its steps),
/// then a few more of each, then every one. Unsafe write paths mostly break in the first
/// round, which costs one execution per step; the exhaustive round re-runs (does not judge
/// again) what the earlier rounds judged.
const CRASH_ROUNDS: [Option<u64>; 3] = [Some(1), Some(16), None];

/// Explore every interleaving within `bound` preemptions (and at most `max_permutations`
/// executions in all, if given), the pause points as `pauses` says, looking for `goal`; with
/// crashes, at every crash point.
pub fn explore(
    plan: Arc<ModelPlan>,
    bound: Bound,
    pauses: Pauses,
    max_permutations: Option<usize>,
    goal: Goal,
) -> Result<Exploration, DriveError> {
    let started = Instant::now();
    let crashes = plan.crash != CrashPlan::Never;
    let max = max_permutations.map(|m| m as u64);
    let mut target = Target::Search(Catch::new(goal));
    let mut schedules = 0u64;
    let mut capped = false;
    // Per crash point: executions judged, whether its model was explored to the end, and
    // the most steps an execution of it took.
    let mut judged: Vec<u64> = Vec::new();
    let mut finished: Vec<bool> = Vec::new();
    let mut mosts: Vec<u64> = Vec::new();
    let mut points = 0u64;
    let rounds: &[Option<u64>] = if crashes { &CRASH_ROUNDS } else { &[None] };
    'rounds: for &per_point in rounds {
        let mut point = 0u64;
        loop {
            let i = point as usize;
            if judged.len() <= i {
                judged.push(0);
                finished.push(false);
                mosts.push(0);
            }
            if finished[i] {
                if mosts[i] < point {
                    break;
                }
                point += 1;
                continue;
            }
            let left = max.map(|m| m.saturating_sub(schedules));
            if left == Some(0) {
                capped = true;
                break 'rounds;
            }
            // This round's budget for the model: its executions so far, plus what is left.
            let budget = match (per_point, left) {
                (Some(b), Some(l)) => Some(b.min(judged[i] + l)),
                (Some(b), None) => Some(b),
                (None, l) => l.map(|l| judged[i] + l),
            };
            let model = if crashes {
                let mut p = (*plan).clone();
                p.crash = CrashPlan::AtStep(point);
                Arc::new(p)
            } else {
                plan.clone()
            };
            let ran = run(model, bound, pauses, budget, judged[i], target)?;
            target = ran.target;
            schedules += ran.executions.saturating_sub(judged[i]);
            judged[i] = judged[i].max(ran.executions);
            finished[i] = ran.complete;
            mosts[i] = ran.most;
            points = points.max(point + 1);
            let Target::Search(catch) = &target else {
                unreachable!("a search stays a search")
            };
            if catch.done() {
                break 'rounds;
            }
            if !ran.complete && per_point.is_none() {
                // The exhaustive round ran out of budget.
                capped = true;
                break 'rounds;
            }
            // The last crash point of this round: no execution run reached it. In the
            // exhaustive round that means no execution of the model takes that many steps
            // (the model has no crash in it, and none after it can).
            if !crashes || ran.most < point {
                break;
            }
            point += 1;
        }
    }
    let Target::Search(catch) = target else {
        unreachable!("a search stays a search")
    };
    let complete = catch.done() || !capped;
    let mut stated = match bound.0 {
        Some(b) => format!("loom, every interleaving with at most {b} preemptions"),
        None => "loom, every interleaving (no preemption bound)".to_string(),
    };
    stated.push_str(match pauses {
        Pauses::Yield => {
            " (a pause point is a switch that costs none, and the process that paused goes on only after another took a step)"
        }
        Pauses::Plain => " (pause points are no scheduling points)",
    });
    if crashes && !catch.done() && !capped {
        stated.push_str(&format!(
            ", at each of {points} crash points (the last: none)"
        ));
    } else if crashes {
        stated.push_str(&format!(
            ", crash points 0 to {} reached (in rounds: a few executions of each first)",
            points.saturating_sub(1)
        ));
    }
    if let Some(m) = max_permutations {
        stated.push_str(&format!(", at most {m} executions"));
    }
    Ok(catch.conclude(schedules, complete, stated, started.elapsed().as_secs_f64()))
}

/// A parsed loom replay handle `pb=B[,crash=C][,pauses=plain],iteration=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub bound: Bound,
    pub crash: Option<u64>,
    pub pauses: Pauses,
    pub iteration: u64,
}

/// Parse a loom replay handle `pb=B[,crash=C][,pauses=plain],iteration=N`.
pub fn parse_handle(handle: &str) -> Result<Handle, DriveError> {
    let bad = || {
        DriveError(format!(
            "--replay '{handle}': a loom handle looks like 'pb=2,iteration=17', 'pb=none,iteration=17' or 'pb=2,crash=5,iteration=17' (as a loom counterexample printed it)"
        ))
    };
    let mut pb = None;
    let mut crash = None;
    let mut pauses = Pauses::Yield;
    let mut it = None;
    for part in handle.split(',') {
        match part.split_once('=') {
            Some(("pb", v)) => pb = Some(v.parse().map_err(|_| bad())?),
            Some(("crash", v)) => crash = Some(v.parse().map_err(|_| bad())?),
            Some(("pauses", "plain")) => pauses = Pauses::Plain,
            Some(("iteration", v)) => it = Some(v.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    match (pb, it) {
        (Some(bound), Some(iteration)) if iteration > 0 => Ok(Handle {
            bound,
            crash,
            pauses,
            iteration,
        }),
        _ => Err(bad()),
    }
}

/// Re-run the exploration with the handle's bound (and crash point) up to its execution; that
/// execution's history.
pub fn replay(plan: Arc<ModelPlan>, handle: &str) -> Result<History, DriveError> {
    let Handle {
        bound,
        crash,
        pauses,
        iteration,
    } = parse_handle(handle)?;
    let plan = match (crash, plan.crash) {
        (Some(c), CrashPlan::Never) => {
            return Err(DriveError(format!(
                "--replay '{handle}': a crash point ({c}) for a run without crashes (replay with the same arguments that found it, --crash included)"
            )))
        }
        (Some(c), _) => {
            let mut p = (*plan).clone();
            p.crash = CrashPlan::AtStep(c);
            Arc::new(p)
        }
        (None, CrashPlan::Never) => plan,
        (None, _) => {
            return Err(DriveError(format!(
                "--replay '{handle}': this run crashes the machine, and the handle has no crash point (replay with the same arguments that found it)"
            )))
        }
    };
    match run(plan, bound, pauses, None, 0, Target::Iteration(iteration, None))? {
        Ran {
            target: Target::Iteration(_, Some(h)),
            ..
        } => Ok(h),
        Ran { executions: n, .. } => Err(DriveError(format!(
            "--replay '{handle}': the exploration has only {n} executions with this bound (replay with the same arguments that found it)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::check;
    use crate::drive::model::{Checker, ModelRun};
    use crate::history::Ev;
    use crate::scenario::Scenario;
    use crate::sim::os::tests::without_gates_or_names;

    /// What every interleaving of `strategy` on `refresh-race` (2 processes x 1 iteration,
    /// plain pause points, no preemption bound) comes to: the executions, and the set of
    /// (final store's hash, anomalies) over them.
    fn every_outcome(strategy: &str) -> (u64, BTreeSet<(String, Vec<String>)>) {
        let sc = Scenario::find("refresh-race").expect("catalog");
        let st = pool_core::Strategy::parse(strategy).expect("preset");
        let run = ModelRun::new(Checker::Loom, sc, st, None, Some(2), Some(1));
        let world = World::new(&run.plan);
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let count = Arc::new(AtomicU64::new(0));
        let (out, c) = (seen.clone(), count.clone());
        let mut b = loom::model::Builder::new();
        b.preemption_bound = None;
        b.check(move || {
            c.fetch_add(1, Ordering::SeqCst);
            // On loom's main coroutine, as `run` does.
            let (h, _) = world.execute_with::<Loom>(CrashPlan::Never, Pauses::Plain);
            let last = h.records.iter().rev().find_map(|r| match &r.ev {
                Ev::FinalStore { hash, .. } => Some(hash.clone()),
                _ => None,
            });
            let v = check::check(&h);
            let kinds = v
                .counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, _)| k.clone())
                .collect();
            out.lock()
                .unwrap()
                .insert((last.expect("a final store"), kinds));
        });
        let seen = seen.lock().unwrap().clone();
        (count.load(Ordering::SeqCst), seen)
    }

    /// Gates and names hide no interleaving of a real pool: over every interleaving, the
    /// final stores and the anomalies are the ones the kernel gave before them (a `flock`
    /// retried on its lane, every open a step on its lane), in fewer executions. (`flock`'s
    /// lock scope leaves races in: its outcomes include anomalies.)
    #[test]
    fn gates_and_names_give_every_outcome_the_lanes_gave() {
        for strategy in ["flock-txn", "flock"] {
            let (gated, with) = every_outcome(strategy);
            let (laned, without) = without_gates_or_names(|| every_outcome(strategy));
            assert_eq!(with, without, "{strategy}");
            assert!(with.len() > 1, "{strategy}: one outcome only: {with:?}");
            assert!(
                gated < laned,
                "{strategy}: {gated} executions with gates and names, {laned} without"
            );
        }
    }
}

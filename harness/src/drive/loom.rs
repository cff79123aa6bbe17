//! The loom driver: runs a scenario on the simulated kernel under loom, which explores every
//! interleaving of the simulated processes within a preemption bound, judges every execution
//! with the checkers and stops at the first counterexample.
//!
//! Replay: loom has no schedule string to hand out, but its exploration order is deterministic
//! for a given model and bound. The handle is `pb=B,iteration=N`: re-running the same
//! scenario, strategy, process and op counts with that bound and stopping at execution N
//! reproduces the counterexample exactly (at the cost of re-exploring the N-1 before it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::fork::DriveError;
use super::model::{Exploration, ModelVerdict};
use crate::check;
use crate::history::History;
use crate::sim::facade::LOOM_STACK;
use crate::sim::{execute, Loom, ModelPlan};

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

/// Processes loom can model: its thread limit, less the model's main thread and the thread
/// that builds and judges the world.
pub fn max_processes() -> u32 {
    loom::MAX_THREADS as u32 - 2
}

/// What to look for in the executions.
#[derive(Clone, Copy)]
enum Target {
    /// The first execution the checkers flag.
    Anomaly,
    /// Execution number N (1-based), whatever it shows.
    Iteration(u64),
}

struct Found {
    history: History,
    iteration: u64,
}

fn run(
    plan: Arc<ModelPlan>,
    bound: usize,
    max_permutations: Option<usize>,
    target: Target,
) -> Result<(u64, Option<Found>), DriveError> {
    if plan.processes() > max_processes() {
        return Err(DriveError(format!(
            "loom models at most {} processes (it has {} threads, two run the model itself); this run has {}: use --procs {} or less, or a shuttle checker",
            max_processes(),
            loom::MAX_THREADS,
            plan.processes(),
            max_processes()
        )));
    }
    quiet_stop_panics();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.max_branches = 1_000_000;
    b.max_threads = plan.processes() as usize + 2;
    b.max_permutations = max_permutations;
    b.checkpoint_file = None;
    let count = Arc::new(AtomicU64::new(0));
    let found: Arc<Mutex<Option<Found>>> = Arc::default();
    let (c, f) = (count.clone(), found.clone());
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.check(move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            // The world is built and judged on a thread of its own: loom's main coroutine
            // has a small stack.
            let p = plan.clone();
            let (h, anomalous) = loom::thread::Builder::new()
                .stack_size(LOOM_STACK)
                .spawn(move || {
                    let h = execute::<Loom>(&p);
                    let anomalous = !check::check(&h).is_clean();
                    (h, anomalous)
                })
                .expect("loom thread")
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            let hit = match target {
                Target::Anomaly => anomalous,
                Target::Iteration(i) => i == n,
            };
            if hit {
                *f.lock().unwrap_or_else(|e| e.into_inner()) = Some(Found {
                    history: h,
                    iteration: n,
                });
                std::panic::panic_any(Stop);
            }
        })
    }));
    let found = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (checked, found) {
        (_, Some(found)) => Ok((count.load(Ordering::SeqCst), Some(found))),
        (Ok(()), None) => Ok((count.load(Ordering::SeqCst), None)),
        (Err(p), None) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            Err(DriveError(format!("loom stopped the model: {msg}")))
        }
    }
}

/// Explore every interleaving within `bound` preemptions (and at most `max_permutations`
/// executions, if given).
pub fn explore(
    plan: Arc<ModelPlan>,
    bound: usize,
    max_permutations: Option<usize>,
) -> Result<Exploration, DriveError> {
    let started = Instant::now();
    let (schedules, found) = run(plan, bound, max_permutations, Target::Anomaly)?;
    let verdict = match (&found, max_permutations) {
        (Some(_), _) => ModelVerdict::Counterexample,
        (None, Some(m)) if schedules as usize >= m => ModelVerdict::Inconclusive,
        (None, _) => ModelVerdict::Verified,
    };
    let mut stated = format!("loom, every interleaving with at most {bound} preemptions");
    if let Some(m) = max_permutations {
        stated.push_str(&format!(", at most {m} executions"));
    }
    Ok(Exploration {
        verdict,
        schedules,
        bound: stated,
        replay: found
            .as_ref()
            .map(|f| format!("pb={bound},iteration={}", f.iteration)),
        history: found.map(|f| f.history),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Parse a loom replay handle `pb=B,iteration=N`.
pub fn parse_handle(handle: &str) -> Result<(usize, u64), DriveError> {
    let bad = || {
        DriveError(format!(
            "--replay '{handle}': a loom handle looks like 'pb=2,iteration=17' (as a loom counterexample printed it)"
        ))
    };
    let mut pb = None;
    let mut it = None;
    for part in handle.split(',') {
        match part.split_once('=') {
            Some(("pb", v)) => pb = Some(v.parse().map_err(|_| bad())?),
            Some(("iteration", v)) => it = Some(v.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    match (pb, it) {
        (Some(pb), Some(it)) if it > 0 => Ok((pb, it)),
        _ => Err(bad()),
    }
}

/// Re-run the exploration with the handle's bound up to its execution; that execution's history.
pub fn replay(plan: Arc<ModelPlan>, handle: &str) -> Result<History, DriveError> {
    let (bound, iteration) = parse_handle(handle)?;
    match run(plan, bound, None, Target::Iteration(iteration))? {
        (_, Some(f)) => Ok(f.history),
        (n, None) => Err(DriveError(format!(
            "--replay '{handle}': the exploration has only {n} executions with this bound (replay with the same arguments that found it)"
        ))),
    }
}

//! `poolcheck model` and the model drivers in `poolcheck matrix`: run a scenario under loom or
//! shuttle on the simulated kernel and judge it in the report contract.
//!
//! Verdicts: `verified` (every explored schedule clean, within the stated bound),
//! `counterexample` (the checkers' witnesses, plus a replay handle), `inconclusive` (the
//! budget ran out first, or a replayed schedule showed nothing). The bound, the number of
//! schedules explored and the replay handle are in `stats.model`.

use std::sync::Arc;

use clap::ValueEnum;
use pool_core::Strategy;

use super::fork::DriveError;
use super::{loom, shuttle};
use crate::check;
use crate::expect::Expect;
use crate::history::History;
use crate::report::{self, ModelStats, RunReport, Stats};
use crate::scenario::Scenario;
use crate::sim::ModelPlan;

/// Which model checker, and how it searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Checker {
    /// loom: every interleaving within a preemption bound.
    Loom,
    /// shuttle, Probabilistic Concurrency Testing.
    ShuttlePct,
    /// shuttle, uniformly random schedules.
    ShuttleRandom,
    /// shuttle, depth-first enumeration of every schedule.
    ShuttleDfs,
}

impl Checker {
    pub fn name(self) -> &'static str {
        match self {
            Checker::Loom => "loom",
            Checker::ShuttlePct => "shuttle-pct",
            Checker::ShuttleRandom => "shuttle-random",
            Checker::ShuttleDfs => "shuttle-dfs",
        }
    }
}

/// Default loom preemption bound.
pub const DEFAULT_PREEMPTION_BOUND: usize = 2;
/// Default PCT depth.
pub const DEFAULT_PCT_DEPTH: usize = 3;
/// Default schedules for shuttle-pct and shuttle-random.
pub const DEFAULT_SAMPLES: usize = 1000;
/// Default schedule budget of shuttle-dfs.
pub const DEFAULT_DFS_BUDGET: usize = 100_000;

/// `poolcheck model` arguments (the output format is the CLI's).
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// loom | shuttle-pct | shuttle-random | shuttle-dfs
    #[arg(long, value_enum)]
    pub checker: Checker,
    /// A preset name or a spec string.
    #[arg(long)]
    pub strategy: String,
    /// A catalog scenario name or a scenario file.
    #[arg(long)]
    pub scenario: String,
    /// Number of processes of the scenario's first role (default: the scenario's).
    #[arg(long)]
    pub procs: Option<u32>,
    /// Iterations per process for every role (default: the scenario's).
    #[arg(long)]
    pub ops: Option<u32>,
    /// loom: at most this many preemptions per execution.
    #[arg(long, default_value_t = DEFAULT_PREEMPTION_BOUND)]
    pub preemption_bound: usize,
    /// shuttle-pct: the bug depth PCT targets.
    #[arg(long, default_value_t = DEFAULT_PCT_DEPTH)]
    pub depth: usize,
    /// Schedule budget (default: 1000 for pct/random, 100000 for dfs, none for loom).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Seed of the world and of the pct/random scheduler (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Re-run one schedule: a shuttle schedule string, or a loom `pb=B,iteration=N`.
    #[arg(long, value_name = "HANDLE")]
    pub replay: Option<String>,
}

/// The model verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelVerdict {
    Verified,
    Counterexample,
    Inconclusive,
}

impl ModelVerdict {
    pub fn name(self) -> &'static str {
        match self {
            ModelVerdict::Verified => "verified",
            ModelVerdict::Counterexample => "counterexample",
            ModelVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// What a model checker's search came to.
pub struct Exploration {
    pub verdict: ModelVerdict,
    /// Executions (schedules) run.
    pub schedules: u64,
    /// The bound, in words.
    pub bound: String,
    /// The counterexample's (or replayed schedule's) history.
    pub history: Option<History>,
    pub replay: Option<String>,
    pub seconds: f64,
}

/// Everything a model run needs, resolved.
pub struct ModelRun {
    pub checker: Checker,
    pub scenario: Scenario,
    pub strategy: Strategy,
    pub plan: Arc<ModelPlan>,
    pub preemption_bound: usize,
    pub depth: usize,
    pub iterations: Option<usize>,
    pub seed: u64,
    /// Said in the report when the sizes differ from the scenario file's.
    pub note: Option<String>,
}

fn sizes(sc: &Scenario) -> String {
    sc.roles
        .iter()
        .map(|r| format!("{} x{} ops={}", r.label(), r.count, r.ops))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ModelRun {
    /// Resolve CLI arguments.
    pub fn from_args(a: &ModelArgs) -> Result<ModelRun, DriveError> {
        let sc = Scenario::find(&a.scenario).map_err(|e| DriveError(e.to_string()))?;
        let st = Strategy::parse(&a.strategy).map_err(|e| DriveError(e.to_string()))?;
        let mut run = ModelRun::new(a.checker, sc, st, a.seed, a.procs, a.ops);
        run.preemption_bound = a.preemption_bound;
        run.depth = a.depth;
        run.iterations = a.iterations;
        Ok(run)
    }

    /// A run of `sc` with the first role's count and every role's ops overridden if given.
    pub fn new(
        checker: Checker,
        sc: Scenario,
        strategy: Strategy,
        seed: Option<u64>,
        procs: Option<u32>,
        ops: Option<u32>,
    ) -> ModelRun {
        let mut modelled = sc.clone();
        if let (Some(n), Some(first)) = (procs, modelled.roles.first_mut()) {
            first.count = n.max(1);
        }
        if let Some(o) = ops {
            modelled.roles.iter_mut().for_each(|r| r.ops = o.max(1));
        }
        let note = (sizes(&modelled) != sizes(&sc)).then(|| {
            format!(
                "modelled {} (the scenario file says {})",
                sizes(&modelled),
                sizes(&sc)
            )
        });
        let seed = seed.unwrap_or(sc.seed);
        ModelRun {
            checker,
            plan: Arc::new(ModelPlan {
                scenario: modelled,
                strategy,
                seed,
            }),
            scenario: sc,
            strategy,
            preemption_bound: DEFAULT_PREEMPTION_BOUND,
            depth: DEFAULT_PCT_DEPTH,
            iterations: None,
            seed,
            note,
        }
    }

    /// Search (or replay `handle`) and return the exploration.
    pub fn explore(&self, handle: Option<&str>) -> Result<Exploration, DriveError> {
        let plan = self.plan.clone();
        if let Some(h) = handle {
            let started = std::time::Instant::now();
            let history = match self.checker {
                Checker::Loom => loom::replay(plan, h)?,
                _ => shuttle::replay(plan, h)?,
            };
            let anomalous = !check::check(&history).is_clean();
            return Ok(Exploration {
                verdict: if anomalous {
                    ModelVerdict::Counterexample
                } else {
                    ModelVerdict::Inconclusive
                },
                schedules: 1,
                bound: format!("replay of one schedule ({h})"),
                history: Some(history),
                replay: Some(h.to_string()),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Ok(match self.checker {
            Checker::Loom => loom::explore(plan, self.preemption_bound, self.iterations)?,
            Checker::ShuttlePct => shuttle::explore(
                plan,
                shuttle::Search::Pct {
                    depth: self.depth,
                    iterations: self.iterations.unwrap_or(DEFAULT_SAMPLES),
                    seed: self.seed,
                },
            ),
            Checker::ShuttleRandom => shuttle::explore(
                plan,
                shuttle::Search::Random {
                    iterations: self.iterations.unwrap_or(DEFAULT_SAMPLES),
                    seed: self.seed,
                },
            ),
            Checker::ShuttleDfs => shuttle::explore(
                plan,
                shuttle::Search::Dfs {
                    max_iterations: self.iterations.unwrap_or(DEFAULT_DFS_BUDGET),
                },
            ),
        })
    }

    /// Judge an exploration in the report contract.
    pub fn judge(&self, ex: &Exploration) -> RunReport {
        let empty = History::default();
        let h = ex.history.as_ref().unwrap_or(&empty);
        let verdict = check::check(h);
        let mut expectations: Vec<report::Expectation> = Expect::from_scenario(&self.scenario)
            .iter()
            .filter(|e| e.strategy == self.strategy)
            .map(|e| report::Expectation {
                expect: e.want_text(),
                held: e.holds(&verdict.counts),
            })
            .collect();
        for e in &mut expectations {
            if e.expect == "safe" {
                e.held &= ex.verdict == ModelVerdict::Verified;
            }
        }
        let operations = h.operations();
        RunReport {
            driver: self.checker.name().into(),
            strategy: self.strategy.label(),
            spec: self.strategy.spec(),
            scenario: self.scenario.name.clone(),
            verdict: ex.verdict.name().into(),
            anomalies: verdict.counts,
            witnesses: verdict.witnesses,
            stats: Stats {
                processes: self.plan.processes(),
                operations,
                seconds: (ex.seconds * 1000.0).round() / 1000.0,
                seed: self.seed,
                crashed: 0,
                killed: 0,
                model: Some(ModelStats {
                    checker: self.checker.name().into(),
                    bound: ex.bound.clone(),
                    schedules: ex.schedules,
                    replay: ex.replay.clone(),
                    note: self.note.clone(),
                }),
            },
            expectations,
            errors: Vec::new(),
        }
    }
}

/// `poolcheck model`.
pub fn run(args: &ModelArgs) -> Result<RunReport, DriveError> {
    let run = ModelRun::from_args(args)?;
    let ex = run.explore(args.replay.as_deref())?;
    Ok(run.judge(&ex))
}

/// `poolcheck matrix --drivers loom,shuttle`: the model drivers on a scenario, in the matrix
/// profile (every role at most 2 processes and 2 iterations, stated in the report's note):
/// loom with preemption bound 2 and at most 5000 executions, shuttle-pct depth 3 with 300
/// schedules.
pub fn matrix_run(
    driver: &str,
    sc: &Scenario,
    strategy: Strategy,
    seed: Option<u64>,
) -> Result<RunReport, DriveError> {
    let checker = match driver {
        "loom" => Checker::Loom,
        "shuttle" | "shuttle-pct" => Checker::ShuttlePct,
        "shuttle-random" => Checker::ShuttleRandom,
        "shuttle-dfs" => Checker::ShuttleDfs,
        d => {
            return Err(DriveError(format!(
                "unknown driver '{d}': allowed values are fork, loom, shuttle (= shuttle-pct), shuttle-random, shuttle-dfs"
            )))
        }
    };
    let mut small = sc.clone();
    for r in &mut small.roles {
        r.count = r.count.min(2);
        r.ops = r.ops.min(2);
    }
    let mut run = ModelRun::new(checker, small, strategy, seed, None, None);
    run.scenario = sc.clone();
    run.note = (sizes(&run.plan.scenario) != sizes(sc)).then(|| {
        format!(
            "matrix model profile: modelled {} (the scenario file says {})",
            sizes(&run.plan.scenario),
            sizes(sc)
        )
    });
    run.iterations = Some(match checker {
        Checker::Loom => 5000,
        Checker::ShuttleDfs => 20_000,
        _ => 300,
    });
    let ex = run.explore(None)?;
    Ok(run.judge(&ex))
}

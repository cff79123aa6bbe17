//! `poolcheck model` and the model drivers in `poolcheck matrix`: run a scenario under loom or
//! shuttle on the simulated kernel and judge it in the report contract.
//!
//! Verdicts: `verified` (every explored schedule clean, within the stated bound),
//! `counterexample` (the checkers' witnesses, plus a replay handle), `inconclusive` (the
//! budget ran out first, or a replayed schedule showed nothing). The bound, the number of
//! schedules explored and the replay handle are in `stats.model`.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::ValueEnum;
use pool_core::Strategy;

use super::fork::DriveError;
use super::{loom, shuttle};
use crate::check;
use crate::expect::{Expect, Want};
use crate::history::History;
use crate::report::{self, ModelStats, RunReport, Stats};
use crate::scenario::Scenario;
use crate::sim::{CrashPlan, ModelPlan, Pauses};

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
    /// loom: at most this many preemptions per execution, or `none`: every interleaving (in
    /// the search `verified` rests on, pause points are no scheduling points; see
    /// --no-pause-yields).
    #[arg(long, default_value_t = loom::Bound(Some(DEFAULT_PREEMPTION_BOUND)))]
    pub preemption_bound: loom::Bound,
    /// loom: explore with plain pause points only. By default loom first explores every
    /// interleaving within the bound with plain pause points (what `verified` rests on), then
    /// the same bound with a switch at every pause point, for as many executions again: a
    /// switch there costs no preemption, so that search reaches races the bound leaves out,
    /// but it leaves other interleavings out, even with no bound (docs/model.md, "Scheduling
    /// points"). This flag skips the second search.
    #[arg(long)]
    pub no_pause_yields: bool,
    /// shuttle-pct: the bug depth PCT targets.
    #[arg(long, default_value_t = DEFAULT_PCT_DEPTH)]
    pub depth: usize,
    /// Schedule budget (default: 1000 for pct/random, 100000 for dfs, none for loom).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Seed of the world and of the pct/random scheduler (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Re-run one schedule: a shuttle schedule string, or a loom handle
    /// (`pb=B[,crash=C][,pauses=plain],iteration=N`, as a report prints it).
    #[arg(long, value_name = "HANDLE")]
    pub replay: Option<String>,
    /// Model the scenario at the sizes `matrix --drivers` models it (every role at most 2
    /// processes and 2 iterations; loom at most 2 processes in all): what a matrix model
    /// cell's replay command passes (instead of --procs/--ops).
    #[arg(long, conflicts_with_all = ["procs", "ops"])]
    pub matrix_sizes: bool,
    /// Search for these anomalies (comma-separated): executions that show only other
    /// anomalies do not end the search (default: stop at the first anomaly of any kind).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub anomaly: Vec<String>,
    /// Let the machine crash once per execution, at any step (power loss: unsynced data and
    /// directory entries lost; the running processes restart). On by default for a scenario
    /// with a [nemesis].
    #[arg(long)]
    pub crash: bool,
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

/// What a search looks for: the first anomaly of any kind (no names), or each of the named
/// anomalies (an execution showing only others does not end the search).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Goal {
    pub anomalies: Vec<String>,
}

impl Goal {
    /// Any anomaly.
    pub fn any() -> Goal {
        Goal::default()
    }

    /// The named anomalies; an unknown name is refused with the allowed ones.
    pub fn named(names: &[String]) -> Result<Goal, DriveError> {
        for n in names {
            if !check::ANOMALIES.contains(&n.as_str()) {
                return Err(DriveError(format!(
                    "--anomaly '{n}': unknown anomaly (allowed values: {})",
                    check::ANOMALIES.join(", ")
                )));
            }
        }
        let mut anomalies: Vec<String> = Vec::new();
        for n in names {
            if !anomalies.contains(n) {
                anomalies.push(n.clone());
            }
        }
        Ok(Goal { anomalies })
    }

    /// The goal in words, for the report's bound.
    pub fn describe(&self) -> Option<String> {
        (!self.anomalies.is_empty()).then(|| format!("searching for {}", self.anomalies.join(", ")))
    }
}

/// One execution a search kept: its history and the handle that replays it.
#[derive(Clone, Debug)]
pub struct Hit {
    pub history: History,
    pub handle: String,
}

/// A search in progress: judges each execution against the [`Goal`], keeps the executions
/// that first showed a wanted anomaly, the first one that showed only others, and counts the
/// operations explored. Shared by the loom and shuttle drivers.
#[derive(Debug, Default)]
pub struct Catch {
    goal: Goal,
    seen: BTreeSet<String>,
    pub hits: Vec<Hit>,
    pub other: Option<Hit>,
    /// Operations (`op_begin` events) over every execution judged.
    pub operations: u64,
    judged: Judged,
}

/// The verdicts of the distinct histories a search has judged, by the whole history: a
/// sampling search meets the same history many times (shuttle-pct on `refresh-race`, 2 x 2:
/// 121 distinct histories in 5,000 executions), and [`check::check`] is a pure function of
/// the history, so an equal history's verdict is this one's. Keyed by a hash, compared whole
/// (a hash collision is never taken for a match). Keeps at most [`Judged::MAX`] histories
/// (then starts over).
#[derive(Debug, Default)]
pub struct Judged {
    by_hash: std::collections::HashMap<u64, Vec<(History, check::Verdict)>>,
    len: usize,
    /// A fast hash of the whole history (foldhash: a history is long, and only equality
    /// decides a match).
    hasher: foldhash::fast::FixedState,
    /// Histories judged by the checkers (the rest were equal to one of these).
    pub checked: u64,
}

impl Judged {
    /// Distinct histories kept at most.
    pub const MAX: usize = 1024;

    /// The checkers' verdict on `h`.
    pub fn verdict(&mut self, h: &History) -> check::Verdict {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(h);
        if let Some((_, v)) = self
            .by_hash
            .get(&key)
            .and_then(|seen| seen.iter().find(|(x, _)| x == h))
        {
            return v.clone();
        }
        let v = check::check(h);
        self.checked += 1;
        if self.len >= Self::MAX {
            self.by_hash.clear();
            self.len = 0;
        }
        self.by_hash
            .entry(key)
            .or_default()
            .push((h.clone(), v.clone()));
        self.len += 1;
        v
    }
}

impl Catch {
    pub fn new(goal: Goal) -> Catch {
        Catch {
            goal,
            ..Catch::default()
        }
    }

    /// Judge one execution; `handle` names it for replay. True when the search is over.
    pub fn offer(&mut self, history: History, handle: impl FnOnce() -> String) -> bool {
        self.operations += history.operations();
        let v = self.judged.verdict(&history);
        if v.is_clean() {
            return false;
        }
        let shown = |a: &String| v.counts.get(a).copied().unwrap_or(0) > 0;
        if self.goal.anomalies.is_empty() {
            self.hits.push(Hit {
                history,
                handle: handle(),
            });
            return true;
        }
        let new: Vec<String> = self
            .goal
            .anomalies
            .iter()
            .filter(|a| shown(a) && !self.seen.contains(*a))
            .cloned()
            .collect();
        if new.is_empty() {
            if self.other.is_none() {
                self.other = Some(Hit {
                    history,
                    handle: handle(),
                });
            }
            return false;
        }
        self.seen.extend(new);
        self.hits.push(Hit {
            history,
            handle: handle(),
        });
        self.done()
    }

    /// Give the executions kept with an empty handle this one (a driver that knows the
    /// handle only once the execution is over: shuttle's schedule ends after the judging).
    pub fn fill_handles(&mut self, handle: &str) {
        for h in self.hits.iter_mut().chain(self.other.as_mut()) {
            if h.handle.is_empty() {
                h.handle = handle.to_string();
            }
        }
    }

    /// Whether an execution was kept with no handle yet (see [`Catch::fill_handles`]).
    pub fn wants_handle(&self) -> bool {
        self.hits
            .iter()
            .chain(self.other.as_ref())
            .any(|h| h.handle.is_empty())
    }

    /// Every wanted anomaly was found (for [`Goal::any`]: any anomaly was).
    pub fn done(&self) -> bool {
        if self.goal.anomalies.is_empty() {
            !self.hits.is_empty()
        } else {
            self.seen.len() == self.goal.anomalies.len()
        }
    }

    /// The exploration this search came to: a counterexample if any execution was flagged
    /// (the wanted anomalies' executions first; else the first other one), else `verified`,
    /// or `inconclusive` when `complete` is false (the budget ran out before the space did).
    pub fn conclude(
        self,
        schedules: u64,
        complete: bool,
        bound: String,
        seconds: f64,
    ) -> Exploration {
        let mut kept: Vec<Hit> = self.hits;
        if kept.is_empty() {
            kept.extend(self.other);
        }
        let verdict = if !kept.is_empty() {
            ModelVerdict::Counterexample
        } else if complete {
            ModelVerdict::Verified
        } else {
            ModelVerdict::Inconclusive
        };
        let bound = match self.goal.describe() {
            Some(g) => format!("{bound}; {g}"),
            None => bound,
        };
        let mut kept = kept.into_iter();
        let first = kept.next();
        Exploration {
            verdict,
            schedules,
            operations: self.operations,
            bound,
            replay: first.as_ref().map(|h| h.handle.clone()),
            history: first.map(|h| h.history),
            more: kept.map(|h| h.history).collect(),
            seconds,
        }
    }
}

/// What a model checker's search came to.
pub struct Exploration {
    pub verdict: ModelVerdict,
    /// Executions (schedules) run.
    pub schedules: u64,
    /// Operations over every execution run.
    pub operations: u64,
    /// The bound, in words.
    pub bound: String,
    /// The counterexample's (or replayed schedule's) history.
    pub history: Option<History>,
    /// A search for several anomalies: the executions that showed the others (judged with
    /// `history`; `replay` reproduces `history` only).
    pub more: Vec<History>,
    pub replay: Option<String>,
    pub seconds: f64,
}

/// Everything a model run needs, resolved.
pub struct ModelRun {
    pub checker: Checker,
    pub scenario: Scenario,
    pub strategy: Strategy,
    pub plan: Arc<ModelPlan>,
    pub preemption_bound: loom::Bound,
    /// loom: what the pause points are.
    pub pauses: Pauses,
    pub depth: usize,
    pub iterations: Option<usize>,
    pub seed: u64,
    /// What the search looks for.
    pub goal: Goal,
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
        let mut run = if a.matrix_sizes {
            MatrixProfile::default().run(a.checker, &sc, st, a.seed)
        } else {
            ModelRun::new(a.checker, sc, st, a.seed, a.procs, a.ops)
        };
        if a.crash {
            run.crash_machine();
        }
        run.preemption_bound = a.preemption_bound;
        if a.no_pause_yields {
            if a.checker != Checker::Loom {
                return Err(DriveError(
                    "--no-pause-yields: for --checker loom only (shuttle's pause points are where PCT changes priorities)".into(),
                ));
            }
            run.pauses = Pauses::Plain;
        }
        run.depth = a.depth;
        run.iterations = a.iterations;
        run.goal = Goal::named(&a.anomaly)?;
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
                crash: if modelled.nemesis.is_some() {
                    CrashPlan::Anywhere
                } else {
                    CrashPlan::Never
                },
                scenario: modelled,
                strategy,
                seed,
            }),
            scenario: sc,
            strategy,
            preemption_bound: loom::Bound(Some(DEFAULT_PREEMPTION_BOUND)),
            pauses: Pauses::Yield,
            depth: DEFAULT_PCT_DEPTH,
            iterations: None,
            seed,
            goal: Goal::any(),
            note,
        }
    }

    /// Let every execution crash the machine once (a scenario with a `[nemesis]` does).
    pub fn crash_machine(&mut self) {
        let mut plan = (*self.plan).clone();
        plan.crash = CrashPlan::Anywhere;
        self.plan = Arc::new(plan);
    }

    /// The search's bound in words, with the crash if executions crash.
    fn stated(&self, bound: String) -> String {
        if self.plan.crash != CrashPlan::Never {
            format!("{bound}; one machine crash at any scheduling point (or none), the killed processes restarted")
        } else {
            bound
        }
    }

    /// Why this run cannot be modelled, if it cannot: loom models at most
    /// [`loom::max_processes`] processes.
    pub fn unsupported(&self) -> Option<String> {
        let n = self.plan.processes();
        if self.checker == Checker::Loom && n > loom::max_processes() {
            return Some(format!(
                "loom models at most {} processes (it has {} threads, one runs the model itself); this run has {n}: use --procs {} or less, or a shuttle checker",
                loom::max_processes(),
                ::loom::MAX_THREADS,
                loom::max_processes()
            ));
        }
        None
    }

    /// Search (or replay `handle`) and return the exploration.
    pub fn explore(&self, handle: Option<&str>) -> Result<Exploration, DriveError> {
        if let Some(why) = self.unsupported() {
            return Err(DriveError(why));
        }
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
                operations: history.operations(),
                bound: format!("replay of one schedule ({h})"),
                history: Some(history),
                more: Vec::new(),
                replay: Some(h.to_string()),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let goal = self.goal.clone();
        let mut ex = match self.checker {
            Checker::Loom => self.explore_loom(plan, goal)?,
            Checker::ShuttlePct => shuttle::explore(
                plan,
                shuttle::Search::Pct {
                    depth: self.depth,
                    iterations: self.iterations.unwrap_or(DEFAULT_SAMPLES),
                    seed: self.seed,
                },
                goal,
            ),
            Checker::ShuttleRandom => shuttle::explore(
                plan,
                shuttle::Search::Random {
                    iterations: self.iterations.unwrap_or(DEFAULT_SAMPLES),
                    seed: self.seed,
                },
                goal,
            ),
            Checker::ShuttleDfs => shuttle::explore(
                plan,
                shuttle::Search::Dfs {
                    max_iterations: self.iterations.unwrap_or(DEFAULT_DFS_BUDGET),
                },
                goal,
            ),
        };
        ex.bound = self.stated(ex.bound);
        Ok(ex)
    }

    /// loom's search. First every interleaving within the bound with plain pause points:
    /// what `verified` rests on. Then, unless `--no-pause-yields`, the same bound with a
    /// switch at every pause point, for at most as many executions as the first search took
    /// (and what is left of the budget): a yield is a switch that costs no preemption, so
    /// this search reaches interleavings the bound leaves out (a pitfall whose race needs
    /// more preemptions than the bound), but loom lets a yielding process go on only after
    /// another took a step, so it leaves others out, even with no bound (docs/model.md,
    /// "Scheduling points"). What it meets is a real execution, so a counterexample; that it
    /// met nothing adds nothing to the first search's `verified`.
    fn explore_loom(&self, plan: Arc<ModelPlan>, goal: Goal) -> Result<Exploration, DriveError> {
        let bound = self.preemption_bound;
        let plain = loom::explore(
            plan.clone(),
            bound,
            Pauses::Plain,
            self.iterations,
            goal.clone(),
        )?;
        if self.pauses == Pauses::Plain || self.met(&plain) {
            return Ok(plain);
        }
        let left = self
            .iterations
            .map_or(u64::MAX, |b| (b as u64).saturating_sub(plain.schedules));
        let budget = plain.schedules.min(left);
        if budget == 0 {
            return Ok(plain);
        }
        let yielding = loom::explore(plan, bound, Pauses::Yield, Some(budget as usize), goal)?;
        let (schedules, operations, seconds) = (
            plain.schedules + yielding.schedules,
            plain.operations + yielding.operations,
            plain.seconds + yielding.seconds,
        );
        let mut ex = if self.met(&yielding) {
            let mut ex = yielding;
            ex.bound = format!(
                "{}; the first search, the same bound with plain pause points ({} executions), had not met it",
                ex.bound, plain.schedules
            );
            ex
        } else {
            let mut ex = plain;
            ex.bound = format!(
                "{}; then with a switch at every pause point, {} executions met nothing more",
                ex.bound, yielding.schedules
            );
            ex
        };
        ex.schedules = schedules;
        ex.operations = operations;
        ex.seconds = seconds;
        Ok(ex)
    }

    /// Whether `ex` met what the search looks for: any anomaly, or every named one.
    fn met(&self, ex: &Exploration) -> bool {
        if self.goal.anomalies.is_empty() {
            ex.verdict == ModelVerdict::Counterexample
        } else {
            self.shows_every_named(ex)
        }
    }

    /// Whether the executions `ex` kept show every anomaly the goal names (false for
    /// [`Goal::any`]: there is nothing named to show).
    fn shows_every_named(&self, ex: &Exploration) -> bool {
        if self.goal.anomalies.is_empty() {
            return false;
        }
        let shown: Vec<check::Verdict> = ex
            .history
            .iter()
            .chain(&ex.more)
            .map(check::check)
            .collect();
        self.goal.anomalies.iter().all(|a| {
            shown
                .iter()
                .any(|v| v.counts.get(a).copied().unwrap_or(0) > 0)
        })
    }

    /// Search; a search for named anomalies that did not meet every one of them goes on at
    /// most `levels` levels deeper, each level with the whole budget again: loom at one more
    /// preemption (only when the space at this bound was explored to its end: a bound whose
    /// space the budget did not finish is not done with), shuttle-pct at one more depth
    /// (PCT's depth is a guess of how many ordering constraints the bug needs; an anomaly
    /// that needs more is met rarely or never below it). The deepest search is returned, its
    /// bound saying where the search started, with the executions of every level.
    ///
    /// Used for `matrix`/`gate` cells with a `finds` expectation; it changes nothing for a
    /// search for any anomaly (a `safe` cell), nor for the other checkers. A deeper level
    /// only adds interleavings (loom) or schedules (PCT) that are real executions, so what
    /// it finds is as much a counterexample as what the first level finds.
    pub fn explore_deeper(&mut self, levels: usize) -> Result<Exploration, DriveError> {
        let budget = self.iterations;
        let mut ex = self.explore(None)?;
        let (start, unit) = match self.checker {
            Checker::Loom => (self.preemption_bound.to_string(), "preemption bound"),
            Checker::ShuttlePct => (self.depth.to_string(), "depth"),
            _ => return Ok(ex),
        };
        let (mut schedules, mut operations, mut seconds) =
            (ex.schedules, ex.operations, ex.seconds);
        for _ in 0..levels {
            if self.goal.anomalies.is_empty() || self.shows_every_named(&ex) {
                break;
            }
            if self.checker == Checker::Loom {
                if budget.is_some_and(|b| ex.schedules >= b as u64) {
                    break;
                }
                match self.preemption_bound.raised() {
                    Some(b) => self.preemption_bound = b,
                    None => break,
                }
            } else {
                self.depth += 1;
            }
            ex = self.explore(None)?;
            schedules += ex.schedules;
            operations += ex.operations;
            seconds += ex.seconds;
        }
        let now = match self.checker {
            Checker::Loom => self.preemption_bound.to_string(),
            _ => self.depth.to_string(),
        };
        if now != start {
            ex.bound = format!(
                "{}; raised from {unit} {start}: not every anomaly searched for was met there ({schedules} executions in all)",
                ex.bound
            );
            ex.schedules = schedules;
            ex.operations = operations;
            ex.seconds = seconds;
        }
        Ok(ex)
    }

    /// Judge an exploration in the report contract.
    pub fn judge(&self, ex: &Exploration) -> RunReport {
        let empty = History::default();
        // The kept executions, judged together: counts add up, one witness per anomaly.
        let mut verdict = check::check(ex.history.as_ref().unwrap_or(&empty));
        for h in &ex.more {
            let v = check::check(h);
            for (k, n) in v.counts {
                *verdict.counts.entry(k).or_insert(0) += n;
            }
            for (k, n) in v.tolerated {
                *verdict.tolerated.entry(k).or_insert(0) += n;
            }
            for w in v.witnesses {
                if !verdict.witnesses.iter().any(|x| x.anomaly == w.anomaly) {
                    verdict.witnesses.push(w);
                }
            }
        }
        let mut expectations: Vec<report::Expectation> = Expect::from_scenario(&self.scenario)
            .iter()
            .filter(|e| e.strategy == self.strategy)
            .map(|e| report::Expectation {
                expect: e.want_text(),
                held: e.holds(&verdict.tally()),
            })
            .collect();
        for e in &mut expectations {
            if e.expect == "safe" {
                e.held &= ex.verdict == ModelVerdict::Verified;
            }
        }
        let operations = ex.operations;
        RunReport {
            driver: self.checker.name().into(),
            strategy: self.strategy.label(),
            spec: self.strategy.spec(),
            scenario: self.scenario.name.clone(),
            verdict: ex.verdict.name().into(),
            anomalies: verdict.counts,
            tolerated: verdict.tolerated,
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
            self_check: None,
            observed: false,
        }
    }
}

/// `poolcheck model`.
pub fn run(args: &ModelArgs) -> Result<RunReport, DriveError> {
    let run = ModelRun::from_args(args)?;
    let ex = run.explore(args.replay.as_deref())?;
    Ok(run.judge(&ex))
}

/// How `matrix` sizes and budgets a model cell.
#[derive(Clone, Copy, Debug)]
pub struct MatrixProfile {
    /// Processes per role at most.
    pub max_count: u32,
    /// Iterations per process at most.
    pub max_ops: u32,
    /// loom: processes in all at most (taken from the roles with the most processes first;
    /// every role keeps one); never more than [`loom::max_processes`]. Each process multiplies
    /// loom's interleavings; shuttle samples, so its cost grows only with the steps.
    pub loom_processes: u32,
    /// loom with machine crashes (a `[nemesis]` scenario): processes in all at most, and
    /// iterations per process at most. loom explores every interleaving once per crash
    /// point, so a crash cell costs about the steps of an execution times a crash-free one.
    /// A scenario with more roles than this many processes is `n/a` for loom.
    pub loom_crash_processes: u32,
    pub loom_crash_ops: u32,
    pub preemption_bound: usize,
    /// loom's execution budget.
    pub loom_executions: usize,
    /// shuttle-pct / shuttle-random schedules.
    pub shuttle_schedules: usize,
    /// shuttle-dfs's schedule budget.
    pub dfs_schedules: usize,
}

impl Default for MatrixProfile {
    /// The `matrix` profile: every role at most 2 processes and 2 iterations; loom with
    /// preemption bound 2, at most 5000 executions and at most 2 processes in all (with
    /// crashes: 2 processes x 1 iteration); shuttle-pct depth 3, 2000 schedules. A `finds`
    /// cell's search may go [`MATRIX_DEEPER_LEVELS`] deeper ([`ModelRun::explore_deeper`]).
    ///
    /// loom's 2 processes: a third multiplies its interleavings past any budget a matrix
    /// affords (`flock-txn` x `seed-8040` with gateway x1 + cli x2, ops 2: over 500,000
    /// executions at bound 2 and not done; with gateway x1 + cli x1: verified in 151).
    fn default() -> Self {
        MatrixProfile {
            max_count: 2,
            max_ops: 2,
            loom_processes: 2,
            loom_crash_processes: 2,
            loom_crash_ops: 1,
            preemption_bound: DEFAULT_PREEMPTION_BOUND,
            loom_executions: 5000,
            shuttle_schedules: 2000,
            dfs_schedules: 20_000,
        }
    }
}

/// The checker a `matrix --drivers` name stands for.
pub fn matrix_checker(driver: &str) -> Result<Checker, DriveError> {
    Ok(match driver {
        "loom" => Checker::Loom,
        "shuttle" | "shuttle-pct" => Checker::ShuttlePct,
        "shuttle-random" => Checker::ShuttleRandom,
        "shuttle-dfs" => Checker::ShuttleDfs,
        d => {
            return Err(DriveError(format!(
                "unknown driver '{d}': allowed values are fork, loom, shuttle (= shuttle-pct), shuttle-random, shuttle-dfs"
            )))
        }
    })
}

/// `poolcheck matrix --drivers loom,shuttle`: the model drivers on a scenario, in the
/// [`MatrixProfile::default`] profile (stated in the report's note).
pub fn matrix_run(
    driver: &str,
    sc: &Scenario,
    strategy: Strategy,
    seed: Option<u64>,
) -> Result<RunReport, DriveError> {
    matrix_run_with(&MatrixProfile::default(), driver, sc, strategy, seed)
}

/// One model cell of a matrix in `profile`. A `finds` expectation of the scenario about this
/// strategy makes the search look for those anomalies ([`Goal`]), so an execution that shows
/// another anomaly first does not end it. A cell the driver cannot model is reported as
/// verdict `n/a` with the reason in `stats.model.note` and no expectation judged.
pub fn matrix_run_with(
    profile: &MatrixProfile,
    driver: &str,
    sc: &Scenario,
    strategy: Strategy,
    seed: Option<u64>,
) -> Result<RunReport, DriveError> {
    let checker = matrix_checker(driver)?;
    let loom_crashes = checker == Checker::Loom && sc.nemesis.is_some();
    let mut run = profile.run(checker, sc, strategy, seed);
    run.preemption_bound = loom::Bound(Some(profile.preemption_bound));
    run.iterations = Some(match checker {
        Checker::Loom => profile.loom_executions,
        Checker::ShuttleDfs => profile.dfs_schedules,
        _ => profile.shuttle_schedules,
    });
    let mut wanted: Vec<String> = Vec::new();
    for e in Expect::from_scenario(sc) {
        if let (true, Want::Finds(list)) = (e.strategy == strategy, &e.want) {
            wanted.extend(list.iter().cloned());
        }
    }
    run.goal = Goal::named(&wanted)?;
    if loom_crashes && run.plan.processes() > profile.loom_crash_processes {
        return Ok(run.not_applicable(format!(
            "loom explores every interleaving once per crash point, which the matrix profile affords for at most {} processes; '{}' has {} roles (each keeps one process): use shuttle, or `poolcheck model --checker loom` on a smaller scenario file",
            profile.loom_crash_processes,
            sc.name,
            sc.roles.len()
        )));
    }
    if let Some(why) = run.unsupported() {
        return Ok(run.not_applicable(why));
    }
    let ex = run.explore_deeper(MATRIX_DEEPER_LEVELS)?;
    Ok(run.judge(&ex))
}

/// How many levels past the profile's bound (loom) or depth (shuttle-pct) a matrix cell's
/// search for the anomalies a `finds` expectation names may go.
pub const MATRIX_DEEPER_LEVELS: usize = 2;

impl MatrixProfile {
    /// A run of `sc` at this profile's sizes (`poolcheck model --matrix-sizes` and every
    /// matrix model cell), the difference stated in its note.
    pub fn run(
        &self,
        checker: Checker,
        sc: &Scenario,
        strategy: Strategy,
        seed: Option<u64>,
    ) -> ModelRun {
        let mut small = sc.clone();
        for r in &mut small.roles {
            r.count = r.count.min(self.max_count);
            r.ops = r.ops.min(self.max_ops);
        }
        // loom explores every interleaving once per crash point: a `[nemesis]` scenario is
        // modelled smaller still.
        let loom_crashes = checker == Checker::Loom && sc.nemesis.is_some();
        if loom_crashes {
            for r in &mut small.roles {
                r.ops = r.ops.min(self.loom_crash_ops);
            }
        }
        if checker == Checker::Loom {
            let mut cap = self.loom_processes.min(loom::max_processes());
            if loom_crashes {
                cap = cap.min(self.loom_crash_processes);
            }
            while small.processes() > cap {
                let Some(r) = small
                    .roles
                    .iter_mut()
                    .filter(|r| r.count > 1)
                    .max_by_key(|r| r.count)
                else {
                    break;
                };
                r.count -= 1;
            }
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
        run
    }
}

impl ModelRun {
    /// The report of a cell this driver does not apply to: verdict `n/a`, the reason in the
    /// note, no expectation judged (nothing was run).
    pub fn not_applicable(&self, why: String) -> RunReport {
        let empty = History::default();
        let verdict = check::check(&empty);
        RunReport {
            driver: self.checker.name().into(),
            strategy: self.strategy.label(),
            spec: self.strategy.spec(),
            scenario: self.scenario.name.clone(),
            verdict: "n/a".into(),
            anomalies: verdict.counts,
            tolerated: verdict.tolerated,
            witnesses: verdict.witnesses,
            stats: Stats {
                processes: self.plan.processes(),
                operations: 0,
                seconds: 0.0,
                seed: self.seed,
                crashed: 0,
                killed: 0,
                model: Some(ModelStats {
                    checker: self.checker.name().into(),
                    bound: "not run".into(),
                    schedules: 0,
                    replay: None,
                    note: Some(format!("does not apply: {why}")),
                }),
            },
            expectations: Vec::new(),
            errors: Vec::new(),
            self_check: None,
            observed: false,
        }
    }
}

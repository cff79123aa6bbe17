//! Reports: the judged runs in the `poolcheck.report.v1` contract, rendered as a terminal
//! table, JSON or Markdown. The JSON shape is documented in the README and kept stable.
//!
//! A report knows judged runs only ([`RunReport`], the gate's [`GateSection`]): [`judge`] makes
//! one from any driver's history and its [`Stats`], so no driver's run type and no command's
//! plan reaches this module.

pub mod gate;
pub mod html;
pub mod render;
pub mod replay;
pub mod self_check;
pub mod timeline;
pub mod xml;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{self, Witness};
use crate::expect::Expect;
use crate::history::{Ev, History};
use crate::scenario::Scenario;
use crate::target::Target;

pub use gate::{GateResult, GateSection};

pub const SCHEMA: &str = "poolcheck.report.v1";

/// The verdict of a run in which a process failed without a nemesis kill.
pub const ERROR: &str = "error";

/// The whole report of one command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub runs: Vec<RunReport>,
    /// Present in reports of `poolcheck gate` and `poolcheck merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSection>,
    /// How the command ran its cells, for the replay commands the renderers print beside
    /// each failure ([`replay::command`]); not part of the JSON contract.
    #[serde(skip)]
    pub invocation: replay::Invocation,
}

/// One judged run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub driver: String,
    /// Preset name, or the spec string of a custom strategy.
    pub strategy: String,
    pub spec: String,
    pub scenario: String,
    /// `clean`, `anomalous` or `error` (fork and subject runs; `error`: a process failed on
    /// its own, so the run is no evidence either way).
    pub verdict: String,
    /// All eight anomaly keys, always.
    pub anomalies: BTreeMap<String, u64>,
    /// Events judged harmless ([`check::TOLERATED`]: every key, always; informational: they
    /// fail only an expectation that names them). Empty in reports written before it existed.
    #[serde(default)]
    pub tolerated: BTreeMap<String, u64>,
    pub witnesses: Vec<Witness>,
    pub stats: Stats,
    /// The scenario's expectations that apply to this run, and whether each held.
    pub expectations: Vec<Expectation>,
    /// Why the verdict is `error`: each process that failed without a nemesis kill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Subjects run under the syscall observer that also report their own events: the
    /// operations in which the two disagreed ([`self_check`]; a fault of the adapter, not an
    /// anomaly: no verdict depends on it). Absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check: Option<self_check::SelfCheck>,
    /// A subject run judged from its system calls (`--observe syscalls`): its replay command
    /// says so. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    pub processes: u32,
    pub operations: u64,
    pub seconds: f64,
    pub seed: u64,
    /// Workers that did not exit 0 (crashed, or killed at the run deadline).
    pub crashed: u32,
    /// Workers the nemesis killed (and restarted while they had kills left).
    #[serde(default)]
    pub killed: u32,
    /// Model runs only: the checker, its bound, schedules explored, the replay handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelStats>,
}

/// What a model checker did (`stats.model`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelStats {
    pub checker: String,
    /// The bound every verdict is relative to, in words.
    pub bound: String,
    /// Executions (schedules) explored.
    pub schedules: u64,
    /// Reproduces the counterexample: a shuttle schedule string, or loom `pb=B,iteration=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// Set when the modelled process or op counts differ from the scenario file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Expectation {
    /// What was expected, e.g. `clean` or `finds double_redeem`.
    pub expect: String,
    pub held: bool,
}

impl Report {
    pub fn new(runs: Vec<RunReport>) -> Report {
        Report {
            schema: SCHEMA.to_string(),
            runs,
            gate: None,
            invocation: replay::Invocation::default(),
        }
    }

    /// Runs whose verdict is `error` (a process failed on its own): exit 2 in every command.
    pub fn errored(&self) -> Vec<&RunReport> {
        self.runs.iter().filter(|r| r.verdict == ERROR).collect()
    }

    /// Expectations that failed, as (run, expectation) pairs.
    pub fn failures(&self) -> Vec<(&RunReport, &Expectation)> {
        self.runs
            .iter()
            .flat_map(|r| {
                r.expectations
                    .iter()
                    .filter(|e| !e.held)
                    .map(move |e| (r, e))
            })
            .collect()
    }
}

/// The processes of a run that failed without a planned kill (a crash, a hang, a subject that
/// broke the protocol or did not start, the issuer): one line each.
pub fn process_errors(h: &History) -> Vec<String> {
    // A failed subject's worker records what the subject did; its exit code adds nothing.
    let subject_failed: Vec<u32> = h
        .records
        .iter()
        .filter(|r| matches!(&r.ev, Ev::ProcExit { status, .. } if status.starts_with("subject ")))
        .map(|r| r.proc)
        .collect();
    h.records
        .iter()
        .filter(|r| match &r.ev {
            Ev::ProcExit { status, .. } => {
                status.starts_with("subject ") || !subject_failed.contains(&r.proc)
            }
            _ => false,
        })
        .filter_map(|r| match &r.ev {
            Ev::ProcExit {
                status,
                crashed: true,
            } => Some(if status.starts_with("subject ") || r.proc == 0 {
                status.clone()
            } else {
                format!("p{}: {status}", r.proc)
            }),
            _ => None,
        })
        .collect()
}

/// Judge the `history` of a run of `target` (its counts in `stats`) with the checkers, and
/// against `expects` (those about this target in this scenario apply). A run with a failed
/// process is `error`, never `clean`, and no expectation holds on it.
pub fn judge(
    sc: &Scenario,
    target: &Target,
    history: &History,
    stats: Stats,
    expects: &[Expect],
) -> RunReport {
    let verdict = check::check(history);
    let errors = process_errors(history);
    let expectations = expects
        .iter()
        .filter(|e| e.strategy == *target && e.scenario == sc.name)
        .map(|e| Expectation {
            expect: e.want_text(),
            held: errors.is_empty() && e.holds(&verdict.tally()),
        })
        .collect();
    RunReport {
        driver: target.driver().into(),
        strategy: target.label(),
        spec: target.spec(),
        scenario: sc.name.clone(),
        verdict: if !errors.is_empty() {
            ERROR
        } else if verdict.is_clean() {
            "clean"
        } else {
            "anomalous"
        }
        .into(),
        anomalies: verdict.counts,
        tolerated: verdict.tolerated,
        witnesses: verdict.witnesses,
        stats,
        expectations,
        errors,
        self_check: self_check::SelfCheck::of(history),
        observed: matches!(target, Target::Subject(s) if s.observe),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Record;
    use pool_core::Strategy;

    fn record(history: Vec<(u32, &str, bool)>, crashed: u32, killed: u32) -> (History, Stats) {
        let h = History::from_records(history.into_iter().enumerate().map(
            |(i, (proc, status, crashed))| Record {
                t_ns: i as u64 + 1,
                proc,
                ev: Ev::ProcExit {
                    status: status.into(),
                    crashed,
                },
            },
        ));
        let stats = Stats {
            processes: 2,
            operations: 0,
            seconds: 0.1,
            seed: 1,
            crashed,
            killed,
            model: None,
        };
        (h, stats)
    }

    fn judge_fork(sc: &Scenario, st: Strategy, run: &(History, Stats), e: &[Expect]) -> RunReport {
        judge(sc, &Target::Model(st), &run.0, run.1.clone(), e)
    }

    #[test]
    fn a_process_that_failed_on_its_own_makes_the_run_an_error_a_planned_kill_does_not() {
        let sc = Scenario::find("refresh-race").unwrap();
        let st = Strategy::parse("flock-txn").unwrap();
        let expects = Expect::from_scenario(&sc);
        assert!(
            expects.iter().any(|e| e.strategy == st),
            "the scenario expects flock-txn clean"
        );
        // The nemesis killed p1 (and it was restarted); both ended well: judged as usual.
        let killed = record(
            vec![
                (1, "killed by the nemesis", false),
                (1, "exit 0", false),
                (2, "exit 0", false),
            ],
            0,
            1,
        );
        let run = judge_fork(&sc, st, &killed, &expects);
        assert_ne!(run.verdict, ERROR);
        assert!(run.errors.is_empty());
        // A pool-core worker that panicked (exit 101) with no kill planned: error, and no
        // expectation holds on such a run, even `safe` with zero anomalies.
        let crashed = record(vec![(1, "exit 0", false), (2, "exit 101", true)], 1, 0);
        let run = judge_fork(&sc, st, &crashed, &expects);
        assert_eq!(run.verdict, ERROR);
        assert_eq!(run.errors, vec!["p2: exit 101".to_string()]);
        assert!(
            run.expectations.iter().all(|e| !e.held),
            "{:?}",
            run.expectations
        );
        assert_eq!(Report::new(vec![run]).errored().len(), 1);
        // A subject's failure is reported once, in the subject's words.
        let subject = record(
            vec![
                (2, "subject 'x' (p2 cli) closed its stdout", true),
                (2, "exit 5", true),
            ],
            1,
            0,
        );
        let run = judge_fork(&sc, st, &subject, &[]);
        assert_eq!(
            run.errors,
            vec!["subject 'x' (p2 cli) closed its stdout".to_string()]
        );
    }
}

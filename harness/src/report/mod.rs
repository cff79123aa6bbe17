//! Reports: the judged runs in the `poolcheck.report.v1` contract, rendered as a terminal
//! table, JSON or Markdown. The JSON shape is documented in the README and kept stable.

pub mod html;
pub mod render;
pub mod timeline;
pub mod xml;

use std::collections::BTreeMap;

use pool_core::Strategy;
use serde::{Deserialize, Serialize};

use crate::check::{self, Witness};
use crate::drive::fork::RunRecord;
use crate::expect::Expect;
use crate::scenario::Scenario;

pub const SCHEMA: &str = "poolcheck.report.v1";

/// The whole report of one command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub runs: Vec<RunReport>,
    /// Present in reports of `poolcheck gate` and `poolcheck merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::gate::GateSection>,
}

/// One judged run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub driver: String,
    /// Preset name, or the spec string of a custom strategy.
    pub strategy: String,
    pub spec: String,
    pub scenario: String,
    /// `clean` or `anomalous` (fork runs).
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
        }
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

/// Judge a fork run with the checkers, and against `expects` (those about this strategy in
/// this scenario apply).
pub fn judge_fork(
    sc: &Scenario,
    strategy: Strategy,
    rec: &RunRecord,
    expects: &[Expect],
) -> RunReport {
    let verdict = check::check(&rec.history);
    let expectations = expects
        .iter()
        .filter(|e| e.strategy == strategy && e.scenario == sc.name)
        .map(|e| Expectation {
            expect: e.want_text(),
            held: e.holds(&verdict.tally()),
        })
        .collect();
    RunReport {
        driver: "fork".into(),
        strategy: strategy.label(),
        spec: strategy.spec(),
        scenario: sc.name.clone(),
        verdict: if verdict.is_clean() {
            "clean"
        } else {
            "anomalous"
        }
        .into(),
        anomalies: verdict.counts,
        tolerated: verdict.tolerated,
        witnesses: verdict.witnesses,
        stats: Stats {
            processes: rec.processes,
            operations: rec.operations,
            seconds: (rec.seconds * 1000.0).round() / 1000.0,
            seed: rec.seed,
            crashed: rec.crashed,
            killed: rec.killed,
            model: None,
        },
        expectations,
    }
}

//! The gate's part of a report (`poolcheck gate`, `poolcheck merge`): each expectation judged
//! over its runs. `crate::gate` plans and runs the campaign and fills it in; reports render
//! it and merges re-judge it from its counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::Witness;
use crate::expect::Want;

/// The gate's part of a report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateSection {
    /// `quick` or `deep`.
    pub budget: String,
    pub seed: u64,
    pub seeds_per_cell: u32,
    /// `i/n` when this report is one shard, `merged` after `poolcheck merge`, else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Whether every verdict below is final (false inside a shard).
    pub final_verdicts: bool,
    pub expectations: Vec<GateResult>,
}

/// One expectation, judged over its runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateResult {
    pub id: String,
    pub strategy: String,
    pub spec: String,
    pub scenario: String,
    /// `safe`, `finds` or `absent`.
    pub want: String,
    /// For `finds`: the anomalies (or tolerated events) that must be found; for `absent`: those
    /// that must not happen.
    #[serde(default)]
    pub anomalies: Vec<String>,
    pub runs: u32,
    /// Anomaly counts summed over the runs (all eight keys).
    pub counts: BTreeMap<String, u64>,
    /// Tolerated counts summed over the runs (every `tolerated` key of the runs).
    #[serde(default)]
    pub tolerated: BTreeMap<String, u64>,
    pub held: bool,
    /// Replay commands for the runs that make this expectation fail (safe: runs with
    /// anomalies; finds: every run).
    #[serde(default)]
    pub replay: Vec<String>,
    /// The first witness of a violating run (safe expectations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<Witness>,
    /// Runs whose verdict is `error` (a process failed on its own): the expectation fails and
    /// the gate exits 2.
    #[serde(default)]
    pub errors: u32,
    /// The first such run's first error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Adapter self-check disagreements summed over the runs (`runs[].self_check`): shown,
    /// never a failure (docs/subjects.md, "Self-check of an instrumented adapter").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub self_check: u64,
    pub seconds: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl GateSection {
    /// Whether `e` failed only for now: a `finds` not met inside one shard may be met by a run
    /// in another, so it is not a failure until `poolcheck merge` makes the verdicts final.
    pub fn provisional(&self, e: &GateResult) -> bool {
        !self.final_verdicts && e.want == "finds" && e.errors == 0
    }
}

impl GateResult {
    /// What its runs found, `double_redeem=2, lost_update=1`, or `no anomaly`.
    pub fn found_text(&self) -> String {
        let found: Vec<String> = self
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| format!("{a}={n}"))
            .collect();
        if found.is_empty() {
            "no anomaly".to_string()
        } else {
            found.join(", ")
        }
    }

    /// `safe`, or `finds a, b`.
    pub fn want_text(&self) -> String {
        self.expect().text()
    }

    fn expect(&self) -> Want {
        match self.want.as_str() {
            "safe" => Want::Safe,
            "absent" => Want::Absent(self.anomalies.clone()),
            _ => Want::Finds(self.anomalies.clone()),
        }
    }

    /// Judge again from the counts (after [`crate::gate::merge`] summed them).
    pub fn rejudge(&mut self) {
        self.held = self.errors == 0
            && self
                .expect()
                .holds(&crate::check::tally(&self.counts, &self.tolerated));
    }
}

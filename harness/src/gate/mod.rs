//! `poolcheck gate`: the CI regression gate. An expectations file says what must hold
//! ([`crate::expect`]); the gate plans the runs (strategy x scenario x seed), optionally takes
//! one shard of them, runs them on real processes, and judges every expectation over its runs.
//!
//! Guarantees: the plan is a pure function of the expectations, the budget, the seed and the
//! shard, so shards of one campaign partition its runs and [`merge`] of their reports gives the
//! verdict of the unsharded campaign. A `safe` expectation fails on any anomaly in any run; a
//! `finds` expectation fails when no run found one of its anomalies. Inside one shard a
//! `finds` verdict is provisional (another shard may hold the finding run): only the merge is
//! final for it.

pub mod junit;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{Witness, ANOMALIES, TOLERATED};
use crate::drive::fork::{self, DriveError, RunOptions};
use crate::expect::{Expect, Want};
use crate::report::{judge_fork, Report, RunReport};
use crate::scenario::Scenario;

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
    pub seconds: f64,
}

impl GateResult {
    /// `safe`, or `finds a, b`.
    pub fn want_text(&self) -> String {
        self.expect_kind().want_text()
    }

    fn expect(&self) -> Want {
        match self.want.as_str() {
            "safe" => Want::Safe,
            "absent" => Want::Absent(self.anomalies.clone()),
            _ => Want::Finds(self.anomalies.clone()),
        }
    }

    fn expect_kind(&self) -> Expect {
        Expect {
            strategy_name: self.strategy.clone(),
            strategy: pool_core::Strategy::parse(&self.spec).expect("a report's spec parses"),
            scenario: self.scenario.clone(),
            want: self.expect(),
        }
    }

    fn rejudge(&mut self) {
        self.held = self
            .expect_kind()
            .holds(&crate::check::tally(&self.counts, &self.tolerated));
    }
}

/// How much to run.
#[derive(Clone, Debug)]
pub struct GateOptions {
    pub quick: bool,
    /// Seeds per strategy x scenario cell (default: 1 with `quick`, 5 without).
    pub seeds: Option<u32>,
    pub seed: u64,
    /// (i, n): run only shard i of n (1-based).
    pub shard: Option<(u32, u32)>,
}

/// One run of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub strategy: pool_core::Strategy,
    pub scenario: String,
    pub seed: u64,
}

impl GateOptions {
    pub fn seeds_per_cell(&self) -> u32 {
        self.seeds.unwrap_or(if self.quick { 1 } else { 5 }).max(1)
    }
}

/// The runs a campaign needs: each distinct (strategy, scenario) cell once per seed, in the
/// order of the expectations; then this shard's share (every n-th unit).
pub fn plan(expects: &[Expect], opts: &GateOptions) -> Vec<Unit> {
    let mut cells: Vec<(pool_core::Strategy, String)> = Vec::new();
    for e in expects {
        let cell = (e.strategy, e.scenario.clone());
        if !cells.contains(&cell) {
            cells.push(cell);
        }
    }
    let mut units = Vec::new();
    for k in 0..u64::from(opts.seeds_per_cell()) {
        for (strategy, scenario) in &cells {
            units.push(Unit {
                strategy: *strategy,
                scenario: scenario.clone(),
                seed: opts.seed.wrapping_add(k),
            });
        }
    }
    match opts.shard {
        Some((i, n)) => units
            .into_iter()
            .enumerate()
            .filter(|(j, _)| (*j as u32) % n == i - 1)
            .map(|(_, u)| u)
            .collect(),
        None => units,
    }
}

/// Parse `i/n` (1 <= i <= n).
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad --shard '{s}': write i/n with 1 <= i <= n, e.g. 2/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Run the campaign (this shard of it) and judge every expectation. `progress` is told each
/// unit before it runs.
pub fn run(
    expects: &[Expect],
    scenarios: &[Scenario],
    opts: &GateOptions,
    mut progress: impl FnMut(usize, usize, &Unit),
) -> Result<Report, DriveError> {
    let units = plan(expects, opts);
    let mut runs = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        progress(i, units.len(), u);
        let mut sc = scenarios
            .iter()
            .find(|s| s.name == u.scenario)
            .expect("every planned scenario was loaded")
            .clone();
        if opts.quick {
            sc.make_quick();
        }
        let rec = fork::run(
            &sc,
            u.strategy,
            &RunOptions {
                seed: Some(u.seed),
                ..RunOptions::default()
            },
        )?;
        runs.push(judge_fork(&sc, u.strategy, &rec, expects));
    }
    let results = expects
        .iter()
        .map(|e| judge(e, &runs, opts.quick))
        .collect();
    let mut report = Report::new(runs);
    report.gate = Some(GateSection {
        budget: if opts.quick { "quick" } else { "deep" }.into(),
        seed: opts.seed,
        seeds_per_cell: opts.seeds_per_cell(),
        shard: opts.shard.map(|(i, n)| format!("{i}/{n}")),
        final_verdicts: opts.shard.is_none(),
        expectations: results,
    });
    Ok(report)
}

fn replay_command(r: &RunReport, quick: bool) -> String {
    format!(
        "poolcheck run --scenario {} --strategy {} --seed {}{}",
        r.scenario,
        r.spec,
        r.stats.seed,
        if quick { " --quick" } else { "" }
    )
}

/// Judge one expectation over the runs of its cell.
fn judge(e: &Expect, runs: &[RunReport], quick: bool) -> GateResult {
    let mine: Vec<&RunReport> = runs
        .iter()
        .filter(|r| r.scenario == e.scenario && r.spec == e.strategy.spec())
        .collect();
    let mut counts: BTreeMap<String, u64> = ANOMALIES.iter().map(|a| (a.to_string(), 0)).collect();
    let mut tolerated: BTreeMap<String, u64> =
        TOLERATED.iter().map(|a| (a.to_string(), 0)).collect();
    for r in &mine {
        for (a, n) in &r.anomalies {
            *counts.entry(a.clone()).or_default() += n;
        }
        for (a, n) in &r.tolerated {
            *tolerated.entry(a.clone()).or_default() += n;
        }
    }
    let held = e.holds(&crate::check::tally(&counts, &tolerated));
    let violating: Vec<&&RunReport> = match &e.want {
        Want::Safe => mine.iter().filter(|r| r.verdict != "clean").collect(),
        Want::Absent(list) => mine
            .iter()
            .filter(|r| {
                let t = crate::check::tally(&r.anomalies, &r.tolerated);
                list.iter().any(|a| t.get(a).copied().unwrap_or(0) > 0)
            })
            .collect(),
        Want::Finds(_) if !held => mine.iter().collect(),
        Want::Finds(_) => Vec::new(),
    };
    GateResult {
        id: e.id(),
        strategy: e.strategy_name.clone(),
        spec: e.strategy.spec(),
        scenario: e.scenario.clone(),
        want: match e.want {
            Want::Safe => "safe".into(),
            Want::Finds(_) => "finds".into(),
            Want::Absent(_) => "absent".into(),
        },
        anomalies: match &e.want {
            Want::Safe => Vec::new(),
            Want::Finds(a) | Want::Absent(a) => a.clone(),
        },
        runs: mine.len() as u32,
        counts,
        tolerated,
        held,
        replay: violating.iter().map(|r| replay_command(r, quick)).collect(),
        witness: match &e.want {
            Want::Safe => violating.iter().find_map(|r| r.witnesses.first().cloned()),
            Want::Absent(list) => violating.iter().find_map(|r| {
                r.witnesses
                    .iter()
                    .find(|w| list.contains(&w.anomaly))
                    .cloned()
            }),
            Want::Finds(_) => None,
        },
        seconds: mine.iter().map(|r| r.stats.seconds).sum::<f64>(),
    }
}

/// Combine shard reports into one: runs concatenated, each expectation's runs and counts
/// summed, verdicts judged again (final).
pub fn merge(reports: Vec<Report>) -> Result<Report, String> {
    let mut runs = Vec::new();
    let mut merged: Vec<GateResult> = Vec::new();
    let mut first: Option<GateSection> = None;
    for (i, r) in reports.into_iter().enumerate() {
        let gate = r.gate.ok_or_else(|| {
            format!(
                "report #{} has no gate section: merge takes reports of `poolcheck gate`",
                i + 1
            )
        })?;
        runs.extend(r.runs);
        for g in &gate.expectations {
            match merged.iter_mut().find(|m| m.id == g.id) {
                Some(m) => {
                    m.runs += g.runs;
                    for (a, n) in &g.counts {
                        *m.counts.entry(a.clone()).or_default() += n;
                    }
                    for (a, n) in &g.tolerated {
                        *m.tolerated.entry(a.clone()).or_default() += n;
                    }
                    m.replay.extend(g.replay.iter().cloned());
                    if m.witness.is_none() {
                        m.witness = g.witness.clone();
                    }
                    m.seconds += g.seconds;
                }
                None => merged.push(g.clone()),
            }
        }
        if let Some(f) = &first {
            if f.seed != gate.seed
                || f.budget != gate.budget
                || f.seeds_per_cell != gate.seeds_per_cell
            {
                return Err(format!(
                    "report #{} comes from another campaign (budget {}, seed {}, {} seeds per cell; the first: {}, {}, {}): merge shards of one campaign",
                    i + 1, gate.budget, gate.seed, gate.seeds_per_cell, f.budget, f.seed, f.seeds_per_cell
                ));
            }
        } else {
            first = Some(gate.clone());
        }
    }
    let first = first.ok_or("no reports to merge")?;
    for m in &mut merged {
        m.rejudge();
        if m.held {
            m.replay.clear();
        } else if m.want == "finds" {
            m.replay = runs
                .iter()
                .filter(|r| r.scenario == m.scenario && r.spec == m.spec)
                .map(|r| replay_command(r, first.budget == "quick"))
                .collect();
        }
    }
    let mut report = Report::new(runs);
    report.gate = Some(GateSection {
        shard: Some("merged".into()),
        final_verdicts: true,
        expectations: merged,
        ..first
    });
    Ok(report)
}

/// Whether the gate passes: every final verdict held, and no `safe` verdict failed anywhere.
pub fn passed(g: &GateSection) -> bool {
    g.expectations
        .iter()
        .all(|e| e.held || (!g.final_verdicts && e.want == "finds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::parse_file;

    fn expects() -> Vec<Expect> {
        parse_file(
            include_str!("../../../ci/expectations.toml"),
            "ci/expectations.toml",
        )
        .unwrap()
        .0
    }

    #[test]
    fn shards_partition_the_plan() {
        let ex = expects();
        let opts = |shard| GateOptions {
            quick: false,
            seeds: Some(3),
            seed: 7,
            shard,
        };
        let all = plan(&ex, &opts(None));
        let cells = {
            let mut c: Vec<_> = ex
                .iter()
                .map(|e| (e.strategy, e.scenario.clone()))
                .collect();
            c.dedup();
            c.sort_by_key(|(s, sc)| (s.spec(), sc.clone()));
            c.dedup();
            c.len()
        };
        assert_eq!(all.len(), cells * 3);
        let mut joined: Vec<Unit> = (1..=4)
            .flat_map(|i| plan(&ex, &opts(Some((i, 4)))))
            .collect();
        assert_eq!(joined.len(), all.len());
        for u in &all {
            let k = joined
                .iter()
                .position(|j| j == u)
                .expect("every unit is in one shard");
            joined.swap_remove(k);
        }
        assert!(joined.is_empty());
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        for bad in ["0/4", "5/4", "x", "1/0", "1-2"] {
            assert!(parse_shard(bad).unwrap_err().contains("i/n"), "{bad}");
        }
    }
}

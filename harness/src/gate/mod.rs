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

use crate::check::{ANOMALIES, TOLERATED};
use crate::drive::fork::{DriveError, RunOptions};
use crate::expect::{Expect, Want};
use crate::progress::{Progress, Style};
use crate::report::replay::Invocation;
use crate::report::{GateResult, GateSection, Report, RunReport, ERROR};
use crate::scenario::Scenario;
use crate::target::{run_and_judge, Target};

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
    /// The pool under test.
    pub strategy: Target,
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
    let mut cells: Vec<(Target, String)> = Vec::new();
    for e in expects {
        let cell = (e.strategy.clone(), e.scenario.clone());
        if !cells.contains(&cell) {
            cells.push(cell);
        }
    }
    let mut units = Vec::new();
    for k in 0..u64::from(opts.seeds_per_cell()) {
        for (strategy, scenario) in &cells {
            units.push(Unit {
                strategy: strategy.clone(),
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

/// Run the campaign (this shard of it) and judge every expectation. `progress` shows each
/// unit as a cell (`strategy x scenario seed N`).
pub fn run(
    expects: &[Expect],
    scenarios: &[Scenario],
    opts: &GateOptions,
    progress: Style,
) -> Result<Report, DriveError> {
    let units = plan(expects, opts);
    let mut runs = Vec::with_capacity(units.len());
    let mut progress = Progress::new(progress, "gate", units.len() as u64);
    for u in &units {
        progress.start(&format!(
            "{} x {} seed {}",
            u.strategy.label(),
            u.scenario,
            u.seed
        ));
        let mut sc = scenarios
            .iter()
            .find(|s| s.name == u.scenario)
            .expect("every planned scenario was loaded")
            .clone();
        if opts.quick {
            sc.make_quick();
        }
        let opts = RunOptions {
            seed: Some(u.seed),
            ..RunOptions::default()
        };
        let (run, _) = run_and_judge(&sc, &u.strategy, &opts, expects)?;
        progress.done(&crate::report::render::cell(&run));
        runs.push(run);
    }
    progress.finish();
    let mut invocation = Invocation::quick(opts.quick);
    for sc in scenarios {
        if let Some(source) = &sc.source {
            invocation.scenario(&sc.name, source);
        }
    }
    let results = expects
        .iter()
        .map(|e| judge(e, &runs, &invocation))
        .collect();
    let mut report = Report::new(runs);
    report.invocation = invocation;
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

fn replay_command(r: &RunReport, how: &Invocation) -> String {
    crate::report::replay::command(r, how).expect("fork and subject runs always have one")
}

/// Judge one expectation over the runs of its cell.
fn judge(e: &Expect, runs: &[RunReport], how: &Invocation) -> GateResult {
    let mine: Vec<&RunReport> = runs
        .iter()
        .filter(|r| {
            r.scenario == e.scenario
                && r.spec == e.strategy.spec()
                && r.driver == e.strategy.driver()
        })
        .collect();
    let errored: Vec<&&RunReport> = mine.iter().filter(|r| r.verdict == ERROR).collect();
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
    let held = errored.is_empty() && e.holds(&crate::check::tally(&counts, &tolerated));
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
        replay: violating.iter().map(|r| replay_command(r, how)).collect(),
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
        errors: errored.len() as u32,
        error: errored.iter().find_map(|r| r.errors.first().cloned()),
        self_check: mine
            .iter()
            .filter_map(|r| r.self_check.as_ref())
            .map(|s| s.disagreements)
            .sum(),
        seconds: mine.iter().map(|r| r.stats.seconds).sum::<f64>(),
    }
}

/// Combine shard reports into one: runs concatenated, each expectation's runs and counts
/// summed, verdicts judged again (final).
///
/// The set must be one whole campaign: every report a shard `i/n` of the same `n`, the same
/// budget, seed, seeds per cell and expectations, each shard exactly once. Anything else is
/// refused naming the report and what is missing or repeated; with `partial`, missing shards
/// are allowed and the result says which are missing and keeps its verdicts provisional.
/// `reports` pairs each report with the name to use in messages (its file).
pub fn merge(reports: Vec<(String, Report)>, partial: bool) -> Result<Report, String> {
    let mut runs = Vec::new();
    let mut merged: Vec<GateResult> = Vec::new();
    let mut first: Option<(String, GateSection, u32)> = None;
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    for (name, r) in reports {
        let gate = r.gate.ok_or_else(|| {
            format!(
                "{name} has no gate section: merge takes reports of `poolcheck gate --json FILE`"
            )
        })?;
        let (i, n) = match gate.shard.as_deref() {
            Some("merged") => {
                return Err(format!(
                    "{name} is already a merged report: merge the shard reports themselves"
                ))
            }
            Some(s) => parse_shard(s).map_err(|_| format!("{name}: unknown shard '{s}'"))?,
            None => (1, 1),
        };
        let ids = |g: &GateSection| {
            g.expectations
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        };
        if let Some((fname, f, fn_)) = &first {
            if f.seed != gate.seed
                || f.budget != gate.budget
                || f.seeds_per_cell != gate.seeds_per_cell
            {
                return Err(format!(
                    "{name} comes from another campaign (budget {}, seed {}, {} seeds per cell; {fname}: {}, {}, {}): merge shards of one campaign",
                    gate.budget, gate.seed, gate.seeds_per_cell, f.budget, f.seed, f.seeds_per_cell
                ));
            }
            if ids(f) != ids(&gate) {
                let (a, b) = (ids(f), ids(&gate));
                let only = |x: &[String], y: &[String]| {
                    x.iter()
                        .filter(|e| !y.contains(e))
                        .cloned()
                        .collect::<Vec<_>>()
                };
                return Err(format!(
                    "{name} judges other expectations than {fname} (only in {name}: {:?}; only in {fname}: {:?}): merge shards run from one expectations file",
                    only(&b, &a),
                    only(&a, &b)
                ));
            }
            if *fn_ != n {
                return Err(format!(
                    "{name} is shard {i}/{n} but {fname} is one of {fn_} shards: merge shards of one split"
                ));
            }
        } else {
            first = Some((name.clone(), gate.clone(), n));
        }
        if let Some(other) = seen.insert(i, name.clone()) {
            return Err(format!(
                "shard {i}/{n} is given twice ({other} and {name}): pass each shard once"
            ));
        }
        runs.extend(r.runs);
        for g in &gate.expectations {
            match merged.iter_mut().find(|m| m.id == g.id) {
                Some(m) => {
                    m.runs += g.runs;
                    m.errors += g.errors;
                    m.self_check += g.self_check;
                    if m.error.is_none() {
                        m.error = g.error.clone();
                    }
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
    }
    let (_, first, n) = first.ok_or("no reports to merge")?;
    let missing: Vec<String> = (1..=n)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() && !partial {
        return Err(format!(
            "incomplete campaign: shard(s) {} of {n} missing (given: {}); pass every shard, or --partial for a provisional view of these",
            missing.join(", "),
            seen.iter().map(|(i, f)| format!("{i}/{n} = {f}")).collect::<Vec<_>>().join(", ")
        ));
    }
    let complete = missing.is_empty();
    for m in &mut merged {
        m.rejudge();
        // A `finds` the merge fails failed in every shard, so each shard listed the replay
        // of every run it made of the cell (with the scenario argument it knew): kept as is.
        if m.held {
            m.replay.clear();
        }
    }
    let mut report = Report::new(runs);
    report.gate = Some(GateSection {
        shard: Some(if complete {
            "merged".into()
        } else {
            format!("partial (missing {})", missing.join(", "))
        }),
        final_verdicts: complete,
        expectations: merged,
        ..first
    });
    Ok(report)
}

/// Whether the gate passes: every final verdict held, and no `safe` verdict failed anywhere.
pub fn passed(g: &GateSection) -> bool {
    g.expectations.iter().all(|e| e.held || g.provisional(e))
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
                .map(|e| (e.strategy.clone(), e.scenario.clone()))
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

    /// A shard report over expectations `ids` (no runs: merge checks the set, not the runs).
    fn shard(name: &str, shard: Option<&str>, seed: u64, ids: &[&str]) -> (String, Report) {
        let expectations = ids
            .iter()
            .map(|id| GateResult {
                id: id.to_string(),
                strategy: "none".into(),
                spec: pool_core::Strategy::parse("none").unwrap().spec(),
                scenario: "refresh-race".into(),
                want: "safe".into(),
                anomalies: Vec::new(),
                runs: 1,
                counts: ANOMALIES.iter().map(|a| (a.to_string(), 0)).collect(),
                tolerated: TOLERATED.iter().map(|a| (a.to_string(), 0)).collect(),
                held: true,
                replay: Vec::new(),
                witness: None,
                errors: 0,
                error: None,
                self_check: 0,
                seconds: 0.0,
            })
            .collect();
        let mut r = Report::new(Vec::new());
        r.gate = Some(GateSection {
            budget: "quick".into(),
            seed,
            seeds_per_cell: 1,
            shard: shard.map(str::to_string),
            final_verdicts: shard.is_none(),
            expectations,
        });
        (name.to_string(), r)
    }

    #[test]
    fn merge_sums_self_check_disagreements_and_they_fail_nothing() {
        let with = |name, sh, n| {
            let (name, mut r) = shard(name, Some(sh), 1, &["a"]);
            r.gate.as_mut().unwrap().expectations[0].self_check = n;
            (name, r)
        };
        let merged = merge(
            vec![with("1.json", "1/2", 2), with("2.json", "2/2", 3)],
            false,
        )
        .unwrap()
        .gate
        .unwrap();
        assert_eq!(merged.expectations[0].self_check, 5);
        assert!(merged.expectations[0].held && passed(&merged));
    }

    #[test]
    fn merge_refuses_incomplete_duplicated_and_mixed_shard_sets() {
        let ids = ["a", "b"];
        let s = |name, sh, seed| shard(name, Some(sh), seed, &ids);
        let err = merge(
            vec![s("one.json", "1/4", 1), s("three.json", "3/4", 1)],
            false,
        )
        .unwrap_err();
        assert!(err.contains("2/4, 4/4") && err.contains("missing"), "{err}");
        assert!(err.contains("--partial"), "{err}");
        let err = merge(vec![s("x.json", "1/2", 1), s("y.json", "1/2", 1)], false).unwrap_err();
        assert!(
            err.contains("1/2 is given twice (x.json and y.json)"),
            "{err}"
        );
        let err = merge(vec![s("x.json", "1/2", 1), s("y.json", "2/3", 1)], false).unwrap_err();
        assert!(err.contains("y.json") && err.contains("2 shards"), "{err}");
        let err = merge(vec![s("x.json", "1/2", 1), s("y.json", "2/2", 7)], false).unwrap_err();
        assert!(err.contains("another campaign"), "{err}");
        let other = shard("y.json", Some("2/2"), 1, &["a", "c"]);
        let err = merge(vec![s("x.json", "1/2", 1), other], false).unwrap_err();
        assert!(
            err.contains("other expectations") && err.contains("\"c\""),
            "{err}"
        );
        let err = merge(
            vec![s("x.json", "1/2", 1), shard("w.json", None, 1, &ids)],
            false,
        )
        .unwrap_err();
        assert!(err.contains("w.json"), "{err}");
        // A whole set merges; a partial one only when asked, and then says what it lacks.
        let whole = merge(vec![s("2.json", "2/2", 1), s("1.json", "1/2", 1)], false).unwrap();
        let g = whole.gate.unwrap();
        assert_eq!(
            (g.shard.as_deref(), g.final_verdicts),
            (Some("merged"), true)
        );
        let part = merge(vec![s("1.json", "1/3", 1)], true)
            .unwrap()
            .gate
            .unwrap();
        assert_eq!(part.shard.as_deref(), Some("partial (missing 2/3, 3/3)"));
        assert!(!part.final_verdicts);
        // An unsharded report is a whole campaign of one shard.
        assert!(merge(vec![shard("w.json", None, 1, &ids)], false).is_ok());
    }
}

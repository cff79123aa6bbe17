//! Crash campaigns: run the `crash-mid-persist` scenario (or any scenario with a `[nemesis]`)
//! under one strategy, seed after seed, until the nemesis has killed the asked number of
//! workers; then count what the kills did to the store.
//!
//! Guarantee: the figures are sums over real runs, each judged by the same checkers; the
//! campaign stops at the first run that reaches the kill count, so it may overshoot a little.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{ANOMALIES, TOLERATED};
use crate::drive::fork::{DriveError, RunOptions};
use crate::report::ERROR;
use crate::scenario::Scenario;
use crate::target::{run_and_judge, Target};

/// What a campaign found under one strategy.
#[derive(Clone, Debug, Serialize)]
pub struct CrashSummary {
    pub strategy: String,
    pub scenario: String,
    pub runs: u32,
    pub kills: u32,
    /// Runs whose final store did not parse.
    pub corrupt_stores: u32,
    /// Runs that ended with a dead credential in the store.
    pub dead_credentials: u32,
    /// Runs with a refresh-token rollback.
    pub rollbacks: u32,
    /// Runs with a lost update (an acknowledged change missing).
    pub lost_updates: u32,
    /// Every anomaly count, summed over the runs.
    pub anomalies: BTreeMap<String, u64>,
    /// Every tolerated count (no harm, e.g. `grace_redeem`), summed over the runs.
    pub tolerated: BTreeMap<String, u64>,
    /// Runs whose verdict is `error` (a process failed without a nemesis kill).
    pub errors: u32,
    /// The first error of the first such run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
}

/// Run `sc` with `target` (a strategy or a subject) from `seed` on until `kills` workers were killed (at most
/// `max_runs` runs). `progress` is told the kills so far after each run.
pub fn crash(
    sc: &Scenario,
    target: &Target,
    kills: u32,
    seed: u64,
    max_runs: u32,
    mut progress: impl FnMut(u32, u32),
) -> Result<CrashSummary, DriveError> {
    if sc.nemesis.is_none() {
        return Err(DriveError(format!(
            "scenario '{}' has no [nemesis] section, so nothing would be killed: use crash-mid-persist or add one",
            sc.name
        )));
    }
    let mut s = CrashSummary {
        strategy: target.label(),
        scenario: sc.name.clone(),
        runs: 0,
        kills: 0,
        corrupt_stores: 0,
        dead_credentials: 0,
        rollbacks: 0,
        lost_updates: 0,
        anomalies: ANOMALIES.iter().map(|a| (a.to_string(), 0)).collect(),
        tolerated: TOLERATED.iter().map(|a| (a.to_string(), 0)).collect(),
        errors: 0,
        error: None,
        seconds: 0.0,
    };
    while s.kills < kills && s.runs < max_runs {
        let opts = RunOptions {
            seed: Some(seed.wrapping_add(u64::from(s.runs))),
            ..RunOptions::default()
        };
        let (r, _) = run_and_judge(sc, target, &opts, &[])?;
        if r.verdict == ERROR {
            s.errors += 1;
            if s.error.is_none() {
                s.error = r.errors.first().cloned();
            }
        }
        s.runs += 1;
        s.kills += r.stats.killed;
        s.seconds += r.stats.seconds;
        let has = |a: &str| r.anomalies.get(a).copied().unwrap_or(0) > 0;
        s.corrupt_stores += u32::from(has("corrupt_store"));
        s.dead_credentials += u32::from(has("dead_credential"));
        s.rollbacks += u32::from(has("token_rollback"));
        s.lost_updates += u32::from(has("lost_update"));
        for (a, n) in &r.anomalies {
            *s.anomalies.entry(a.clone()).or_default() += n;
        }
        for (a, n) in &r.tolerated {
            *s.tolerated.entry(a.clone()).or_default() += n;
        }
        progress(s.kills, s.runs);
    }
    s.seconds = (s.seconds * 1000.0).round() / 1000.0;
    Ok(s)
}

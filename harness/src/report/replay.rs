//! The command that reproduces a judged run, as the reports print it beside each failure: a
//! user pastes it to see the same cell again.
//!
//! A fork or subject run is replayed by `poolcheck run` with its scenario, pool, seed and
//! budget (real processes: the same interleavings are forced by the scenario's rendezvous, the
//! times differ); a model counterexample by `poolcheck model ... --replay HANDLE`, which runs
//! exactly the schedule that was found. What a run does not record itself (the scenario
//! argument it was loaded from, `--quick`, `run`'s `--procs` and `--store`, a model run's
//! `--procs`/`--ops`) comes from the
//! [`Invocation`] of the command that made the report.
//!
//! Guarantees: every command returned parses with the current CLI, and run, shows the run's
//! anomalies again (tests/replay_cli.rs); a `matrix` model cell is replayed at the matrix's
//! sizes (`model --matrix-sizes`). Not given: a command for a run with nothing to replay (a
//! model run without a counterexample).

use super::RunReport;
use crate::target::{of_report, shell_quote};

/// How the command that made a report ran its cells, beyond what each run records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The runs were made with `--quick` (at most two iterations per process).
    pub quick: bool,
    /// Scenario name -> the `--scenario` argument it was loaded from (a file path); a name not
    /// listed is a catalog name.
    pub scenarios: Vec<(String, String)>,
    /// Extra `poolcheck model` arguments the model runs were sized with (`--procs 2`).
    pub model_args: Vec<String>,
    /// The model runs are `matrix` cells, sized by its profile (`--matrix-sizes` replays them
    /// at those sizes).
    pub matrix: bool,
    /// Extra `poolcheck run` arguments the fork and subject runs were made with and do not
    /// record themselves (`--procs 6`, `--store FILE`).
    pub run_args: Vec<String>,
}

impl Invocation {
    pub fn quick(quick: bool) -> Invocation {
        Invocation {
            quick,
            ..Invocation::default()
        }
    }

    /// Remember that scenario `name` was loaded from `arg` (when it is not the name).
    pub fn scenario(&mut self, name: &str, arg: &str) {
        if name != arg && !self.scenarios.iter().any(|(n, _)| n == name) {
            self.scenarios.push((name.to_string(), arg.to_string()));
        }
    }

    fn scenario_arg(&self, name: &str) -> String {
        let arg = self
            .scenarios
            .iter()
            .find(|(n, _)| n == name)
            .map_or(name, |(_, a)| a.as_str());
        shell_quote(arg)
    }
}

/// The command that reproduces `r`, if one can.
pub fn command(r: &RunReport, how: &Invocation) -> Option<String> {
    let scenario = how.scenario_arg(&r.scenario);
    match &r.stats.model {
        None => {
            let mut cmd = format!(
                "poolcheck run --scenario {scenario} {} --seed {}{}",
                of_report(r).run_option(),
                r.stats.seed,
                if how.quick { " --quick" } else { "" }
            );
            for a in &how.run_args {
                cmd.push(' ');
                cmd.push_str(&shell_quote(a));
            }
            Some(cmd)
        }
        Some(m) => {
            let handle = m.replay.as_ref()?;
            let mut sizes = how.model_args.clone();
            if how.matrix {
                // The profile caps iterations at 2, as `--quick` does: one flag says both.
                sizes = vec!["--matrix-sizes".to_string()];
            } else if how.quick && sizes.is_empty() {
                return None;
            }
            let mut cmd = format!(
                "poolcheck model --checker {} --strategy {} --scenario {scenario} --seed {}",
                m.checker,
                shell_quote(&r.spec),
                r.stats.seed
            );
            for a in &sizes {
                cmd.push(' ');
                cmd.push_str(&shell_quote(a));
            }
            cmd.push_str(&format!(" --replay {}", shell_quote(handle)));
            Some(cmd)
        }
    }
}

/// Whether a run is a failure the reports give a replay command for: an expectation about it
/// failed, or it found an anomaly (a witness to look at again).
pub fn wanted(r: &RunReport) -> bool {
    !r.witnesses.is_empty() || r.expectations.iter().any(|e| !e.held)
}

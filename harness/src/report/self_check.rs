//! The adapter self-check of a run (`self_check` in a run's JSON): where a subject run under the
//! syscall observer (`--observe syscalls`) also reported its own store reads and writes, and
//! the two disagreed in some operation (history records [`Ev::SelfCheck`], written by the
//! subject's worker, `drive::subject`).
//!
//! Guarantees: a disagreement is about the adapter's reporting, never an anomaly of the pool;
//! it changes no verdict, count or expectation (the checkers judge the observed events). Only
//! content hashes and token tags appear (`read HASH`, `write HASH`, `refresh TAG OUTCOME`),
//! never bytes or tokens. The list is
//! bounded ([`MAX_LISTED`]); `disagreements` counts them all.
//!
//! Not guaranteed: a silent subject (one that reports nothing) is not compared, and neither is
//! a run without the observer: the section is absent then, as it is when all agreed.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::history::{Ev, History};

/// At most this many disagreements are listed in one run's report.
pub const MAX_LISTED: usize = 50;

/// What every rendering says first: whose fault a disagreement is.
pub const MEANING: &str = "the subject's own event reports disagree with what the syscall \
observer saw: a fault of the adapter's reporting, not an anomaly of the pool (verdicts come \
from the observed events and are unchanged)";

/// A run's self-check disagreements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// [`MEANING`], so a reader of the JSON alone knows what this is.
    pub about: String,
    /// Operations in which the subject's reports and the observer disagreed.
    pub disagreements: u64,
    /// The first [`MAX_LISTED`] of them, in history order.
    pub listed: Vec<Disagreement>,
}

/// One operation whose reported and observed store I/O differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    pub process: u32,
    /// The harness's operation id (0: between operations).
    pub op: u64,
    /// The request: `load_pool`, `select`, `mark_exhausted`, `add_entry`.
    pub op_kind: String,
    /// `read HASH` / `write HASH` / `refresh TAG OUTCOME` the subject told and the observer
    /// did not see.
    pub reported_not_observed: Vec<String>,
    /// The same, seen by the observer and not told by the subject.
    pub observed_not_reported: Vec<String>,
}

impl SelfCheck {
    /// The self-check section of a history; `None` when it holds no disagreement.
    pub fn of(h: &History) -> Option<SelfCheck> {
        let all: Vec<Disagreement> = h
            .records
            .iter()
            .filter_map(|r| match &r.ev {
                Ev::SelfCheck {
                    op,
                    op_kind,
                    reported_not_observed,
                    observed_not_reported,
                } => Some(Disagreement {
                    process: r.proc,
                    op: *op,
                    op_kind: op_kind.clone(),
                    reported_not_observed: reported_not_observed.clone(),
                    observed_not_reported: observed_not_reported.clone(),
                }),
                _ => None,
            })
            .collect();
        (!all.is_empty()).then(|| SelfCheck {
            about: MEANING.to_string(),
            disagreements: all.len() as u64,
            listed: all.into_iter().take(MAX_LISTED).collect(),
        })
    }
}

impl Disagreement {
    /// `p2 op 3 select: reported but not observed [write 1a2b...]; observed but not reported [..]`
    pub fn line(&self) -> String {
        format!(
            "p{} op {} {}: reported but not observed [{}]; observed but not reported [{}]",
            self.process,
            self.op,
            self.op_kind,
            self.reported_not_observed.join(", "),
            self.observed_not_reported.join(", ")
        )
    }
}

/// The self-check text of a report's runs (empty when no run has a disagreement): a heading,
/// [`MEANING`], then per run its count and listed disagreements. Markdown when `md`.
pub fn text(runs: &[super::RunReport], md: bool) -> String {
    let mut out = String::new();
    let with: Vec<_> = runs
        .iter()
        .filter_map(|r| r.self_check.as_ref().map(|s| (r, s)))
        .collect();
    if with.is_empty() {
        return out;
    }
    if md {
        let _ = writeln!(
            out,
            "\n### Adapter self-check\n\nNot an anomaly: {MEANING}.\n"
        );
    } else {
        let _ = writeln!(out, "\nAdapter self-check (not an anomaly): {MEANING}.");
    }
    for (r, s) in with {
        let _ = writeln!(
            out,
            "- {} under {}: {} disagreement(s){}",
            r.scenario,
            r.strategy,
            s.disagreements,
            if s.disagreements > s.listed.len() as u64 {
                format!(", the first {} listed", s.listed.len())
            } else {
                String::new()
            }
        );
        for d in &s.listed {
            if md {
                let _ = writeln!(out, "  - `{}`", d.line());
            } else {
                let _ = writeln!(out, "    {}", d.line());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Record;
    use crate::report::{judge, GateResult, GateSection, Report};
    use crate::scenario::Scenario;
    use crate::target::Target;
    use pool_core::Strategy;

    fn disagreeing(op: u64) -> Record {
        Record {
            t_ns: op,
            proc: 2,
            ev: Ev::SelfCheck {
                op,
                op_kind: "select".into(),
                reported_not_observed: vec!["write 1111111111111111".into()],
                observed_not_reported: vec!["write 2222222222222222".into()],
            },
        }
    }

    fn judged(records: Vec<Record>) -> crate::report::RunReport {
        let sc = Scenario::find("refresh-race").unwrap();
        let stats = crate::report::Stats {
            processes: 2,
            operations: 0,
            seconds: 0.1,
            seed: 1,
            crashed: 0,
            killed: 0,
            model: None,
        };
        let target = Target::Model(Strategy::parse("none").unwrap());
        judge(&sc, &target, &History::from_records(records), stats, &[])
    }

    #[test]
    fn disagreements_reach_the_run_report_bounded_and_change_no_verdict() {
        let plain = judged(vec![]);
        assert_eq!(plain.self_check, None);
        let n = MAX_LISTED as u64 + 3;
        let checked = judged((1..=n).map(disagreeing).collect());
        let s = checked.self_check.as_ref().expect("a self_check section");
        assert_eq!(s.disagreements, n);
        assert_eq!(s.listed.len(), MAX_LISTED);
        assert_eq!(
            s.listed[0].line(),
            "p2 op 1 select: reported but not observed [write 1111111111111111]; observed but not reported [write 2222222222222222]"
        );
        assert_eq!(checked.verdict, plain.verdict);
        assert_eq!(checked.anomalies, plain.anomalies);
        // Table, Markdown and HTML say it, and say it is the adapter's, not the pool's.
        let report = Report::new(vec![checked]);
        for out in [
            crate::report::render::table(&report),
            crate::report::render::markdown(&report),
        ] {
            assert!(out.contains("Adapter self-check"), "{out}");
            assert!(out.contains("not an anomaly of the pool"), "{out}");
            assert!(out.contains(&format!(
                "{n} disagreement(s), the first {MAX_LISTED} listed"
            )));
            assert!(
                out.contains("p2 op 1 select: reported but not observed"),
                "{out}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let page = crate::report::html::write(dir.path(), &report, &[]).unwrap();
        let html = std::fs::read_to_string(page).unwrap();
        assert!(html.contains("Adapter self-check") && html.contains("write 2222222222222222"));
        let json = crate::report::render::json(&report);
        assert!(json.contains("\"self_check\"") && json.contains("\"disagreements\": 53"));
    }

    #[test]
    fn the_gate_shows_disagreements_without_failing_on_them() {
        let mut e: GateResult = serde_json::from_value(serde_json::json!({
            "id": "subject in refresh-race: safe", "strategy": "subject", "spec": "x",
            "scenario": "refresh-race", "want": "safe", "runs": 2, "counts": {},
            "held": true, "seconds": 0.1
        }))
        .unwrap();
        let g = |e: &GateResult| GateSection {
            budget: "quick".into(),
            seed: 1,
            seeds_per_cell: 2,
            shard: None,
            final_verdicts: true,
            expectations: vec![e.clone()],
        };
        assert!(!crate::report::render::gate(&g(&e), false).contains("self-check"));
        e.self_check = 3;
        let out = crate::report::render::gate(&g(&e), false);
        assert!(
            out.contains("Adapter self-check")
                && out.contains("- subject in refresh-race: safe: 3 disagreement(s)"),
            "{out}"
        );
        assert!(out.contains("1 of 1 expectations held"), "{out}");
    }
}

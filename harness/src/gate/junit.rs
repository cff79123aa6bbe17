//! JUnit XML for CI systems, written with `quick-junit`: one test suite per gate run, one test
//! case per expectation. Every test case carries properties saying what it ran (`seed`,
//! `seeds`, `budget`, `spec` or `subject`, `scenario`, `shard`); a failed expectation carries
//! the reason in its `<failure>` and its witness story and replay commands in `system-out`.
//!
//! Guarantees: the document is well-formed XML whatever the text (quick-junit escapes it and
//! drops the characters XML 1.0 forbids). It says nothing a gate report does not: what it
//! renders is the [`GateSection`].

use std::fmt::Write;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::report::{GateResult, GateSection};

/// The JUnit document for a gate section.
pub fn render(g: &GateSection) -> String {
    let seconds: f64 = g.expectations.iter().map(|e| e.seconds).sum();
    let mut suite = TestSuite::new(format!(
        "poolcheck gate ({} budget, seed {})",
        g.budget, g.seed
    ));
    suite.set_time(duration(seconds));
    suite.add_test_cases(g.expectations.iter().map(|e| case(g, e)));
    let mut report = Report::new("poolcheck gate");
    report.set_time(duration(seconds));
    report.add_test_suite(suite);
    report
        .to_string()
        .expect("a JUnit report of strings serializes")
}

fn duration(seconds: f64) -> Duration {
    Duration::from_secs_f64(if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    })
}

/// One expectation as a test case.
fn case(g: &GateSection, e: &GateResult) -> TestCase {
    let provisional = g.provisional(e);
    let found = e.found_text();
    let status = if e.held {
        TestCaseStatus::success()
    } else if provisional {
        // Another shard may hold the finding run: not a failure until `poolcheck merge`.
        let mut s = TestCaseStatus::skipped();
        s.set_message(format!(
            "not found in this shard: expected {}, found {found}; final only after `poolcheck merge`",
            e.want_text()
        ));
        s
    } else {
        let mut s = TestCaseStatus::non_success(if e.errors > 0 {
            NonSuccessKind::Error
        } else {
            NonSuccessKind::Failure
        });
        s.set_message(format!("expected {}, found {found}", e.want_text()));
        s.set_type(e.want.clone());
        let mut body = format!(
            "expected {} over {} run(s); found {found}",
            e.want_text(),
            e.runs
        );
        if e.errors > 0 {
            let _ = write!(
                body,
                "\nerror: {} run(s) did not run to the end: {}",
                e.errors,
                e.error.as_deref().unwrap_or("a process failed")
            );
        }
        s.set_description(body);
        s
    };
    let mut tc = TestCase::new(e.id.clone(), status);
    tc.set_classname(format!("poolcheck.{}", e.scenario));
    tc.set_time(duration(e.seconds));
    tc.add_properties(properties(g, e));
    let out = system_out(e);
    if !out.is_empty() {
        tc.set_system_out(out);
    }
    tc
}

/// What the test case ran: enough to run it again.
fn properties(g: &GateSection, e: &GateResult) -> Vec<Property> {
    let is_spec = pool_core::Strategy::parse(&e.spec).is_ok();
    let mut p = vec![
        Property::new("seed", g.seed.to_string()),
        Property::new("seeds", g.seeds_per_cell.to_string()),
        Property::new("budget", g.budget.clone()),
        Property::new("strategy", e.strategy.clone()),
        Property::new(if is_spec { "spec" } else { "subject" }, e.spec.clone()),
        Property::new("scenario", e.scenario.clone()),
        Property::new("expected", e.want_text()),
        Property::new("runs", e.runs.to_string()),
    ];
    if let Some(s) = &g.shard {
        p.push(Property::new("shard", s.clone()));
    }
    p
}

/// The witness story and the replay commands of a failed expectation (empty when it held).
fn system_out(e: &GateResult) -> String {
    let mut out = String::new();
    if e.self_check > 0 {
        let _ = writeln!(
            out,
            "adapter self-check: {} disagreement(s): {} (runs[].self_check in the JSON report)",
            e.self_check,
            crate::report::self_check::MEANING
        );
    }
    if e.held {
        return out;
    }
    if let Some(w) = &e.witness {
        let _ = writeln!(out, "first witness ({}):", w.anomaly);
        for step in &w.story {
            let _ = writeln!(out, "  {step}");
        }
    }
    for r in &e.replay {
        let _ = writeln!(out, "replay: {r}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Witness;
    use crate::report::GateResult;
    use std::collections::BTreeMap;

    fn result(held: bool, want: &str, spec: &str) -> GateResult {
        GateResult {
            id: format!("none in refresh-race: {want} <&>"),
            strategy: "none".into(),
            spec: spec.into(),
            scenario: "refresh-race".into(),
            want: want.into(),
            anomalies: vec![],
            runs: 1,
            counts: BTreeMap::from([("double_redeem".to_string(), 2)]),
            tolerated: BTreeMap::new(),
            held,
            replay: vec!["poolcheck run --scenario refresh-race --strategy none --seed 1".into()],
            witness: (!held).then(|| Witness {
                anomaly: "double_redeem".into(),
                story: vec!["1. +1.0ms p1 (cli) redeemed t:00000000 \u{1b}[1m<b>".into()],
                events: vec![0],
            }),
            errors: 0,
            error: None,
            self_check: 0,
            seconds: 0.5,
        }
    }

    fn section(shard: Option<&str>, expectations: Vec<GateResult>) -> GateSection {
        GateSection {
            budget: "quick".into(),
            seed: 7,
            seeds_per_cell: 1,
            shard: shard.map(str::to_string),
            final_verdicts: shard.is_none(),
            expectations,
        }
    }

    fn props(tc: roxmltree::Node) -> BTreeMap<String, String> {
        tc.descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|n| {
                (
                    n.attribute("name").unwrap().to_string(),
                    n.attribute("value").unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn cases_carry_properties_and_failures_their_witness_in_system_out() {
        let spec = "lock=none,scope=io,persist=each,write=in-place,refresh=blind";
        let g = section(
            Some("2/4"),
            vec![
                result(true, "finds", spec),
                result(false, "safe", spec),
                result(false, "safe", "python3 pool.py --no-lock"),
            ],
        );
        let x = render(&g);
        let doc = roxmltree::Document::parse(&x).expect("well-formed XML");
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("3"));
        assert_eq!(suite.attribute("failures"), Some("2"));
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 3);
        assert_eq!(
            cases[0].attribute("name"),
            Some("none in refresh-race: finds <&>")
        );
        let p = props(cases[1]);
        assert_eq!(p["seed"], "7");
        assert_eq!(p["spec"], spec);
        assert_eq!(p["scenario"], "refresh-race");
        assert_eq!(p["shard"], "2/4");
        assert!(!p.contains_key("subject"));
        assert_eq!(props(cases[2])["subject"], "python3 pool.py --no-lock");
        // The held case has no failure and no output; the failed one its reason and witness.
        assert!(!cases[0].descendants().any(|n| n.has_tag_name("failure")));
        let failure = cases[1]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(
            failure.attribute("message"),
            Some("expected safe, found double_redeem=2")
        );
        let out = cases[1]
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap();
        assert!(out.contains("first witness (double_redeem):"), "{out}");
        assert!(out.contains("redeemed t:00000000 <b>"), "{out}");
        assert!(!out.contains('\u{1b}'), "control characters dropped: {out}");
        assert!(
            out.contains("replay: poolcheck run --scenario refresh-race"),
            "{out}"
        );
    }

    #[test]
    fn a_finds_expectation_pending_in_a_shard_is_skipped_not_failed() {
        let mut pending = result(false, "finds", "lock=none");
        pending.witness = None;
        let x = render(&section(Some("1/2"), vec![pending.clone()]));
        let doc = roxmltree::Document::parse(&x).unwrap();
        assert!(doc.descendants().any(|n| n.has_tag_name("skipped")));
        assert!(!doc.descendants().any(|n| n.has_tag_name("failure")));
        // Merged (final), the same result fails.
        let x = render(&section(None, vec![pending]));
        let doc = roxmltree::Document::parse(&x).unwrap();
        assert!(doc.descendants().any(|n| n.has_tag_name("failure")));
    }
}

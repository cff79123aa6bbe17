//! JUnit XML for CI systems: one test case per expectation; a failed expectation carries its
//! replay commands and witness story.

use std::fmt::Write;

use crate::report::GateSection;

use crate::report::xml::escape as esc;

/// The JUnit document for a gate section.
pub fn render(g: &GateSection) -> String {
    let failed: Vec<_> = g.expectations.iter().filter(|e| !e.held).collect();
    let seconds: f64 = g.expectations.iter().map(|e| e.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"poolcheck gate\" tests=\"{}\" failures=\"{}\" time=\"{seconds:.3}\">",
        g.expectations.len(),
        failed.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"poolcheck gate ({} budget, seed {})\" tests=\"{}\" failures=\"{}\" time=\"{seconds:.3}\">",
        esc(&g.budget),
        g.seed,
        g.expectations.len(),
        failed.len()
    );
    for e in &g.expectations {
        let _ = write!(
            out,
            "    <testcase classname=\"poolcheck.{}\" name=\"{}\" time=\"{:.3}\"",
            esc(&e.scenario),
            esc(&e.id),
            e.seconds
        );
        if e.held {
            out.push_str("/>\n");
            continue;
        }
        let found: Vec<String> = e
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| format!("{a}={n}"))
            .collect();
        let found = if found.is_empty() {
            "no anomaly".to_string()
        } else {
            found.join(", ")
        };
        let mut body = format!(
            "expected {} over {} run(s); found {found}\n",
            e.want_text(),
            e.runs
        );
        if e.errors > 0 {
            let _ = writeln!(
                body,
                "error: {} run(s) did not run to the end: {}",
                e.errors,
                e.error.as_deref().unwrap_or("a process failed")
            );
        }
        for r in &e.replay {
            let _ = writeln!(body, "replay: {r}");
        }
        if let Some(w) = &e.witness {
            let _ = writeln!(body, "first witness ({}):", w.anomaly);
            for step in &w.story {
                let _ = writeln!(body, "  {step}");
            }
        }
        let _ = writeln!(
            out,
            ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
            esc(&format!("expected {}, found {found}", e.want_text())),
            esc(&e.want),
            esc(&body)
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::GateResult;
    use std::collections::BTreeMap;

    #[test]
    fn failures_carry_the_reason_and_text_is_escaped() {
        let r = |held, want: &str| GateResult {
            id: format!("none in refresh-race: {want} <&>"),
            strategy: "none".into(),
            spec: "lock=none,scope=io,persist=each,write=in-place,refresh=blind".into(),
            scenario: "refresh-race".into(),
            want: want.into(),
            anomalies: vec![],
            runs: 1,
            counts: BTreeMap::from([("double_redeem".to_string(), 2)]),
            tolerated: BTreeMap::new(),
            held,
            replay: vec!["poolcheck run --scenario refresh-race --strategy none --seed 1".into()],
            witness: None,
            errors: 0,
            error: None,
            seconds: 0.5,
        };
        let g = GateSection {
            budget: "quick".into(),
            seed: 1,
            seeds_per_cell: 1,
            shard: None,
            final_verdicts: true,
            expectations: vec![r(true, "finds"), r(false, "safe")],
        };
        let x = render(&g);
        assert!(x.contains("tests=\"2\" failures=\"1\""));
        assert!(x.contains("&lt;&amp;&gt;"));
        assert!(!x.contains("<&>"));
        assert!(x.contains("found double_redeem=2"));
        assert!(x.contains("replay: poolcheck run"));
        assert_eq!(x.matches("<testcase").count(), 2);
        assert_eq!(x.matches("<failure").count(), 1);
    }
}

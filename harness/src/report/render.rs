//! Rendering a [`Report`]: a terminal table, Markdown, JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Report, RunReport};
use crate::check::{ANOMALIES, TOLERATED};

/// Short column names for the anomaly table.
pub fn short(anomaly: &str) -> &'static str {
    match anomaly {
        "torn_read" => "torn",
        "partial_sync_read" => "partial",
        "lost_update" => "lost",
        "token_rollback" => "rollback",
        "double_redeem" => "double",
        "stale_token_use" => "stale",
        "dead_credential" => "dead",
        "corrupt_store" => "corrupt",
        "grace_redeem" => "grace",
        "grace_credential" => "grace-held",
        _ => "?",
    }
}

/// The run's tolerated events, `tolerated grace:6`, or `None` when there were none.
pub fn tolerated(r: &RunReport) -> Option<String> {
    let found: Vec<String> = TOLERATED
        .iter()
        .filter(|a| r.tolerated.get(**a).copied().unwrap_or(0) > 0)
        .map(|a| format!("{}:{}", short(a), r.tolerated[*a]))
        .collect();
    (!found.is_empty()).then(|| format!("tolerated {}", found.join(" ")))
}

/// How a run stands against the expectations that pin its cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// No expectation is about this cell.
    Unpinned,
    /// Every expectation about it held: what it shows is expected.
    Expected,
    /// One failed.
    Failed,
}

pub fn mark(r: &RunReport) -> Mark {
    if r.expectations.is_empty() {
        Mark::Unpinned
    } else if r.expectations.iter().all(|e| e.held) {
        Mark::Expected
    } else {
        Mark::Failed
    }
}

/// `N of M expectations held.` over every run of the report, or `None` when none applied.
pub fn held_line(report: &Report) -> Option<String> {
    let all: Vec<bool> = report
        .runs
        .iter()
        .flat_map(|r| r.expectations.iter().map(|e| e.held))
        .collect();
    if all.is_empty() {
        return None;
    }
    let held = all.iter().filter(|h| **h).count();
    Some(format!("{held} of {} expectations held.", all.len()))
}

/// What the marks and the tolerated events in the cells mean.
pub const LEGEND: &str = "(expected): an [expect] pins this cell and it held; (!): one failed.
(tolerated ...): no harm, never a failure unless an expectation names it. grace: a spent refresh
token presented again and accepted inside the issuer's reuse grace period; grace-held: a final
token the issuer honours only until its grace period ends.";

/// Strategies in first-seen order, with their runs.
fn by_strategy(report: &Report) -> Vec<(String, Vec<&RunReport>)> {
    let mut out: Vec<(String, Vec<&RunReport>)> = Vec::new();
    for r in &report.runs {
        match out.iter_mut().find(|(s, _)| *s == r.strategy) {
            Some((_, v)) => v.push(r),
            None => out.push((r.strategy.clone(), vec![r])),
        }
    }
    out
}

fn scenarios(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &report.runs {
        if !out.contains(&r.scenario) {
            out.push(r.scenario.clone());
        }
    }
    out
}

/// The cell of one run: `clean`, or the anomalies found with counts (`double:3 lost:1`).
pub fn cell(r: &RunReport) -> String {
    let found: Vec<String> = ANOMALIES
        .iter()
        .filter(|a| r.anomalies.get(**a).copied().unwrap_or(0) > 0)
        .map(|a| format!("{}:{}", short(a), r.anomalies[*a]))
        .collect();
    let mut s = match (&r.stats.model, found.is_empty()) {
        _ if r.verdict == super::ERROR && found.is_empty() => "error".to_string(),
        _ if r.verdict == super::ERROR => format!("error: {}", found.join(" ")),
        (None, true) => "clean".to_string(),
        (None, false) => found.join(" "),
        // Model runs: the checker and its verdict first (`loom verified`).
        (Some(_), true) => format!("{} {}", r.driver, r.verdict),
        (Some(_), false) => format!("{} {}: {}", r.driver, r.verdict, found.join(" ")),
    };
    if let Some(t) = tolerated(r) {
        let _ = write!(s, " ({t})");
    }
    match mark(r) {
        Mark::Unpinned => {}
        Mark::Expected => s.push_str(" (expected)"),
        Mark::Failed => s.push_str(" (!)"),
    }
    s
}

fn grid(report: &Report) -> (Vec<String>, Vec<Vec<String>>) {
    let scs = scenarios(report);
    let mut header = vec!["strategy".to_string()];
    header.extend(scs.iter().cloned());
    let mut rows = Vec::new();
    for (strategy, runs) in by_strategy(report) {
        let mut row = vec![strategy];
        for sc in &scs {
            let cells: Vec<String> = runs
                .iter()
                .filter(|r| r.scenario == *sc)
                .map(|r| cell(r))
                .collect();
            row.push(if cells.is_empty() {
                "-".into()
            } else {
                cells.join(", ")
            });
        }
        rows.push(row);
    }
    (header, rows)
}

/// Totals per strategy and anomaly (then tolerated event), over every scenario run.
fn totals(report: &Report) -> (Vec<String>, Vec<Vec<String>>) {
    let names: Vec<&str> = ANOMALIES.iter().chain(TOLERATED.iter()).copied().collect();
    let mut header = vec!["strategy".to_string()];
    header.extend(ANOMALIES.iter().map(|a| short(a).to_string()));
    header.extend(TOLERATED.iter().map(|a| format!("tolerated {}", short(a))));
    let mut rows = Vec::new();
    for (strategy, runs) in by_strategy(report) {
        let mut sum: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &runs {
            for a in ANOMALIES {
                *sum.entry(a).or_default() += r.anomalies.get(a).copied().unwrap_or(0);
            }
            for a in TOLERATED {
                *sum.entry(a).or_default() += r.tolerated.get(a).copied().unwrap_or(0);
            }
        }
        let mut row = vec![strategy];
        row.extend(names.iter().map(|a| match sum[a] {
            0 => ".".to_string(),
            n => n.to_string(),
        }));
        rows.push(row);
    }
    (header, rows)
}

fn text_table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(out, header);
    let _ = writeln!(
        out,
        "{}",
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for row in rows {
        line(out, row);
    }
}

fn md_table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

fn failures_text(report: &Report, out: &mut String, md: bool) {
    let failures = report.failures();
    if failures.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{}Expectations that failed:",
        if md { "### " } else { "" }
    );
    for (r, e) in failures {
        let _ = writeln!(
            out,
            "- {} under {}: expected {}, found {}",
            r.scenario,
            r.strategy,
            e.expect,
            cell(r)
        );
        if let Some(w) = r.witnesses.first() {
            for step in &w.story {
                let _ = writeln!(out, "    {step}");
            }
        }
        if let Some(cmd) = super::replay::command(r, &report.invocation) {
            let _ = writeln!(
                out,
                "{}",
                if md {
                    format!("  replay: `{cmd}`")
                } else {
                    format!("    replay: {cmd}")
                }
            );
        }
    }
}

/// Under the verdict grid: `N of M expectations held.` and what the marks mean (when a cell
/// carries one).
fn expectations_text(report: &Report, out: &mut String) {
    let marked = report
        .runs
        .iter()
        .any(|r| mark(r) != Mark::Unpinned || tolerated(r).is_some());
    if let Some(line) = held_line(report) {
        let _ = writeln!(out, "\n{line}");
    }
    if marked {
        let _ = writeln!(out, "{LEGEND}");
    }
}

/// The terminal table: verdicts per strategy x scenario, then totals per anomaly.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let (h, rows) = grid(report);
    text_table(&mut out, &h, &rows);
    expectations_text(report, &mut out);
    out.push('\n');
    let (h, rows) = totals(report);
    let _ = writeln!(out, "Anomalies found, summed over scenarios ('.' = none):");
    text_table(&mut out, &h, &rows);
    let crashed: u32 = report.runs.iter().map(|r| r.stats.crashed).sum();
    if crashed > 0 {
        let _ = writeln!(
            out,
            "\n{crashed} worker process(es) crashed or were killed; see the JSON report's stats."
        );
    }
    model_runs(report, &mut out);
    failures_text(report, &mut out, false);
    out.push_str(&super::self_check::text(&report.runs, false));
    out
}

/// Model runs: the bound each verdict is relative to, schedules explored, replay handles.
fn model_runs(report: &Report, out: &mut String) {
    let runs: Vec<&RunReport> = report
        .runs
        .iter()
        .filter(|r| r.stats.model.is_some())
        .collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nModel runs:");
    for r in runs {
        let m = r.stats.model.as_ref().expect("filtered");
        let _ = writeln!(
            out,
            "- {} x {} x {}: {} after {} schedule(s) in {:.3}s; bound: {}",
            r.driver, r.strategy, r.scenario, r.verdict, m.schedules, r.stats.seconds, m.bound
        );
        if let Some(note) = &m.note {
            let _ = writeln!(out, "    {note}");
        }
        match (super::replay::command(r, &report.invocation), &m.replay) {
            (Some(cmd), _) => {
                let _ = writeln!(out, "    replay: {cmd}");
            }
            (None, Some(h)) => {
                let _ = writeln!(out, "    replay: --checker {} --replay {h}", m.checker);
            }
            (None, None) => {}
        }
        for w in &r.witnesses {
            let _ = writeln!(out, "    {}:", w.anomaly);
            for step in &w.story {
                let _ = writeln!(out, "      {step}");
            }
        }
    }
}

/// Markdown: the same two tables, then the first witness of each anomalous run.
pub fn markdown(report: &Report) -> String {
    markdown_linked(report, None)
}

/// Markdown, with each witness linking its timeline SVG when an HTML report was written to
/// `html_dir` (see [`super::html`]; the link is `html_dir` joined with the SVG's name, so it
/// resolves from where the command ran).
pub fn markdown_linked(report: &Report, html_dir: Option<&std::path::Path>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## poolcheck report\n");
    let (h, rows) = grid(report);
    md_table(&mut out, &h, &rows);
    expectations_text(report, &mut out);
    let _ = writeln!(out, "\nAnomalies found, summed over scenarios:\n");
    let (h, rows) = totals(report);
    md_table(&mut out, &h, &rows);
    failures_text(report, &mut out, true);
    out.push_str(&super::self_check::text(&report.runs, true));
    let anomalous: Vec<(usize, &RunReport)> = report
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.witnesses.is_empty())
        .collect();
    if !anomalous.is_empty() {
        let _ = writeln!(out, "\n### Witnesses\n");
        if let Some(dir) = html_dir {
            let _ = writeln!(
                out,
                "Timelines: [{}]({})\n",
                dir.join("index.html").display(),
                dir.join("index.html").display()
            );
        }
        for (i, r) in anomalous {
            let replay = super::replay::command(r, &report.invocation);
            for w in &r.witnesses {
                let _ = writeln!(
                    out,
                    "<details><summary>{} under {}: {}</summary>\n",
                    r.scenario, r.strategy, w.anomaly
                );
                for step in &w.story {
                    let _ = writeln!(out, "    {step}");
                }
                if let Some(dir) = html_dir {
                    let svg = dir.join(super::html::svg_name(i, &w.anomaly));
                    let _ = writeln!(out, "\n[timeline]({})", svg.display());
                }
                if let Some(cmd) = &replay {
                    let _ = writeln!(out, "\nReplay: `{cmd}`");
                }
                let _ = writeln!(out, "\n</details>");
            }
        }
    }
    out
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("reports serialize")
}

/// The gate's verdicts: failures first (with replay commands and witness), then one line per
/// expectation. Markdown when `md`.
pub fn gate(g: &super::GateSection, md: bool) -> String {
    let mut out = String::new();
    let failed: Vec<_> = g.expectations.iter().filter(|e| !e.held).collect();
    let provisional = |e: &super::GateResult| g.provisional(e);
    let title = format!(
        "poolcheck gate: {} budget, seed {}, {} seed(s) per cell{}",
        g.budget,
        g.seed,
        g.seeds_per_cell,
        g.shard
            .as_deref()
            .map(|s| format!(", shard {s}"))
            .unwrap_or_default()
    );
    if md {
        let _ = writeln!(out, "## {title}\n");
    } else {
        let _ = writeln!(out, "{title}\n");
    }
    for e in &failed {
        let tag = if provisional(e) {
            "not found in this shard"
        } else {
            "FAILED"
        };
        let _ = writeln!(out, "{}{tag}: {}", if md { "### " } else { "" }, e.id);
        let _ = writeln!(
            out,
            "{}found over {} run(s): {}",
            if md { "\n" } else { "  " },
            e.runs,
            e.found_text()
        );
        if e.errors > 0 {
            let _ = writeln!(
                out,
                "{}error: {} run(s) did not run to the end: {}",
                if md { "\n" } else { "  " },
                e.errors,
                e.error.as_deref().unwrap_or("a process failed")
            );
        }
        if let Some(w) = &e.witness {
            let _ = writeln!(
                out,
                "{}first witness ({}):",
                if md { "\n" } else { "  " },
                w.anomaly
            );
            if md {
                out.push('\n');
            }
            for step in &w.story {
                let _ = writeln!(out, "    {step}");
            }
        }
        for r in e.replay.iter().take(3) {
            let _ = writeln!(out, "{}replay: `{r}`", if md { "\n" } else { "  " });
        }
        out.push('\n');
    }
    let rows: Vec<Vec<String>> = g
        .expectations
        .iter()
        .map(|e| {
            let result = match (e.held, provisional(e), md) {
                (true, _, true) => "✅ held",
                (true, _, false) => "held",
                (false, true, _) => "pending merge",
                (false, false, true) => "❌ failed",
                (false, false, false) => "FAILED",
            };
            let found: Vec<String> = ANOMALIES
                .iter()
                .filter(|a| e.counts.get(**a).copied().unwrap_or(0) > 0)
                .map(|a| format!("{}:{}", short(a), e.counts[*a]))
                .collect();
            let tolerated: Vec<String> = TOLERATED
                .iter()
                .filter(|a| e.tolerated.get(**a).copied().unwrap_or(0) > 0)
                .map(|a| format!("{}:{}", short(a), e.tolerated[*a]))
                .collect();
            let mut found = if found.is_empty() {
                "none".to_string()
            } else {
                found.join(" ")
            };
            if !tolerated.is_empty() {
                let _ = write!(found, " (tolerated {})", tolerated.join(" "));
            }
            vec![
                result.to_string(),
                e.strategy.clone(),
                e.scenario.clone(),
                e.want_text(),
                e.runs.to_string(),
                found,
            ]
        })
        .collect();
    let header: Vec<String> = [
        "result", "strategy", "scenario", "expected", "runs", "found",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if md {
        md_table(&mut out, &header, &rows);
    } else {
        text_table(&mut out, &header, &rows);
    }
    let checked: Vec<_> = g.expectations.iter().filter(|e| e.self_check > 0).collect();
    if !checked.is_empty() {
        let _ = writeln!(
            out,
            "\n{}Adapter self-check: {} (not a failure; runs[].self_check in the JSON report lists them):",
            if md { "### " } else { "" },
            super::self_check::MEANING
        );
        if md {
            out.push('\n');
        }
        for e in checked {
            let _ = writeln!(out, "- {}: {} disagreement(s)", e.id, e.self_check);
        }
    }
    let held = g.expectations.iter().filter(|e| e.held).count();
    let _ = writeln!(
        out,
        "\n{held} of {} expectations held{}.",
        g.expectations.len(),
        if g.final_verdicts {
            ""
        } else {
            " (finds-verdicts are final only after `poolcheck merge`)"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Expectation, Stats};

    fn run(strategy: &str, scenario: &str, found: &[(&str, u64)], grace: u64) -> RunReport {
        let mut anomalies: BTreeMap<String, u64> =
            ANOMALIES.iter().map(|a| (a.to_string(), 0)).collect();
        anomalies.extend(found.iter().map(|(a, n)| (a.to_string(), *n)));
        let mut tolerated: BTreeMap<String, u64> =
            TOLERATED.iter().map(|a| (a.to_string(), 0)).collect();
        tolerated.insert("grace_redeem".into(), grace);
        RunReport {
            driver: "fork".into(),
            strategy: strategy.into(),
            spec: strategy.into(),
            scenario: scenario.into(),
            verdict: if found.is_empty() {
                "clean"
            } else {
                "anomalous"
            }
            .into(),
            anomalies,
            tolerated,
            witnesses: vec![],
            stats: Stats {
                processes: 3,
                operations: 6,
                seconds: 0.5,
                seed: 1,
                crashed: 0,
                killed: 0,
                model: None,
            },
            expectations: vec![],
            errors: vec![],
            self_check: None,
            observed: false,
        }
    }

    fn pinned(mut r: RunReport, expect: &str, held: bool) -> RunReport {
        r.expectations.push(Expectation {
            expect: expect.into(),
            held,
        });
        r
    }

    /// The default matrix's flock-txn row: external-cli findings pinned by `[expect]`, a
    /// crash run whose grace redemptions are tolerated, an unpinned clean cell, and one
    /// expectation that failed elsewhere.
    fn report() -> Report {
        Report::new(vec![
            pinned(
                run(
                    "flock-txn",
                    "external-cli",
                    &[("double_redeem", 1), ("dead_credential", 1)],
                    0,
                ),
                "finds double_redeem, dead_credential",
                true,
            ),
            pinned(run("flock-txn", "crash-mid-persist", &[], 6), "safe", true),
            run("flock-txn", "seed-8040", &[], 0),
            pinned(
                run("none", "refresh-race", &[], 0),
                "finds double_redeem",
                false,
            ),
        ])
    }

    /// Issue #13 item 12: pinned cells read as expected, failed ones as failed, and the
    /// report says how many expectations held; item 4: tolerated events beside the verdict.
    #[test]
    fn cells_carry_their_expectation_marks_and_tolerated_events() {
        let r = report();
        assert_eq!(cell(&r.runs[0]), "double:1 dead:1 (expected)");
        assert_eq!(cell(&r.runs[1]), "clean (tolerated grace:6) (expected)");
        assert_eq!(cell(&r.runs[2]), "clean");
        assert_eq!(cell(&r.runs[3]), "clean (!)");
        assert_eq!(held_line(&r).unwrap(), "2 of 3 expectations held.");
        for out in [table(&r), markdown(&r)] {
            assert!(out.contains("double:1 dead:1 (expected)"), "{out}");
            assert!(
                out.contains("clean (tolerated grace:6) (expected)"),
                "{out}"
            );
            assert!(out.contains("2 of 3 expectations held."), "{out}");
            assert!(
                out.contains("(expected): an [expect] pins this cell"),
                "{out}"
            );
            assert!(out.contains("tolerated grace"), "{out}");
        }
        assert_eq!(held_line(&Report::new(vec![run("a", "b", &[], 0)])), None);
    }

    #[test]
    fn the_html_matrix_marks_expected_cells_and_counts_held_expectations() {
        let dir = tempfile::tempdir().unwrap();
        let index = crate::report::html::write(dir.path(), &report(), &[]).unwrap();
        let page = std::fs::read_to_string(index).unwrap();
        assert!(page.contains("<td class=\"anomalous expected\""), "{page}");
        assert!(page.contains("double:1 dead:1 (expected)"), "{page}");
        assert!(
            page.contains("clean (tolerated grace:6) (expected)"),
            "{page}"
        );
        assert!(page.contains("<td class=\"failed\""), "{page}");
        assert!(page.contains("2 of 3 expectations held."), "{page}");
    }

    /// Issue #13 item 4: every run of the JSON report carries the `tolerated` object, and a
    /// report written before it existed still parses.
    #[test]
    fn the_json_report_carries_tolerated_in_every_run() {
        let v: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        for r in v["runs"].as_array().unwrap() {
            for t in TOLERATED {
                assert!(r["tolerated"][t].is_u64(), "{t}: {r}");
            }
        }
        assert_eq!(v["runs"][1]["tolerated"]["grace_redeem"], 6);
        let mut old = v.clone();
        for r in old["runs"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("tolerated");
        }
        let back: Report = serde_json::from_value(old).unwrap();
        assert!(back.runs[1].tolerated.is_empty());
    }
}

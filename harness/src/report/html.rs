//! The HTML report: `DIR/index.html` (the verdict matrix; each anomalous or failed cell links
//! to its run's section with the command that replays it ([`super::replay`]), the witness
//! stories and timelines) plus one SVG per witness
//! ([`super::timeline`]). Timelines are rendered as each run is added, so a matrix keeps no
//! history in memory; only file names are kept until [`HtmlReport::finish`].
//!
//! The page is well-formed XHTML-compatible HTML, with no scripts and no external assets;
//! the SVGs are standalone (open one to get each mark's details as a tooltip).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::render::{cell, held_line, mark, Mark, LEGEND};
use super::{timeline, Report, RunReport};
use crate::history::History;

/// The SVG file of witness `anomaly` of run `index` (its position in `Report::runs`).
pub fn svg_name(index: usize, anomaly: &str) -> String {
    format!("run-{index:03}-{anomaly}.svg")
}

/// The anchor of run `index` in `index.html`.
pub fn anchor(index: usize) -> String {
    format!("run-{index:03}")
}

/// An HTML report being written.
pub struct HtmlReport {
    dir: PathBuf,
    /// run index -> SVG files written for it, in witness order
    svgs: BTreeMap<usize, Vec<String>>,
    next: usize,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

impl HtmlReport {
    /// Start a report in `dir` (created if needed).
    pub fn create(dir: &Path) -> Result<HtmlReport, String> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        Ok(HtmlReport {
            dir: dir.to_path_buf(),
            svgs: BTreeMap::new(),
            next: 0,
        })
    }

    /// Add the next run of the report (runs must be added in `Report::runs` order): writes
    /// one timeline SVG per witness now, so the history can be dropped.
    pub fn add(&mut self, run: &RunReport, history: &History) -> Result<(), String> {
        let index = self.next;
        self.next += 1;
        let mut names = Vec::new();
        for w in &run.witnesses {
            let title = format!(
                "{} under {}: {} (first witness)",
                run.scenario, run.strategy, w.anomaly
            );
            let svg = timeline::draw(history, &valid(&w.events, history), &w.story, &title);
            let name = svg_name(index, &w.anomaly);
            let path = self.dir.join(&name);
            std::fs::write(&path, svg).map_err(|e| io_err("write", &path, e))?;
            names.push(name);
        }
        self.svgs.insert(index, names);
        Ok(())
    }

    /// Write `index.html` for `report` (whose runs were added in order); returns its path.
    pub fn finish(self, report: &Report) -> Result<PathBuf, String> {
        let path = self.dir.join("index.html");
        std::fs::write(&path, page(report, &self.svgs)).map_err(|e| io_err("write", &path, e))?;
        Ok(path)
    }
}

fn valid(events: &[usize], h: &History) -> Vec<usize> {
    events
        .iter()
        .copied()
        .filter(|&i| i < h.records.len())
        .collect()
}

/// The whole report at once: `histories[i]` is the history of `report.runs[i]`.
pub fn write(dir: &Path, report: &Report, histories: &[History]) -> Result<PathBuf, String> {
    let mut out = HtmlReport::create(dir)?;
    for (run, h) in report.runs.iter().zip(histories) {
        out.add(run, h)?;
    }
    out.finish(report)
}

use crate::report::xml::escape as esc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin:8px 0 20px}\
th,td{border:1px solid #ccc;padding:4px 10px;text-align:left;font-size:14px}\
th{background:#f2f4f7}\
td.clean{color:#2a7a2a}\
td.anomalous{background:#fff3e0}\
td.failed{background:#fde0dc}\
td.expected{background:#eef6ee;border-left:4px solid #2a7a2a}\
td a{color:#b3360b;font-weight:bold}\
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow-x:auto}\
section{border-top:2px solid #ddd;margin-top:28px}\
.timeline{overflow-x:auto;border:1px solid #ddd;margin-bottom:18px}\
.timeline img{display:block}\
.meta{color:#666;font-size:13px}\
.replay code{background:#f7f7f7;padding:2px 6px;user-select:all}";

fn page(report: &Report, svgs: &BTreeMap<usize, Vec<String>>) -> String {
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>poolcheck report</title>\n");
    let _ = writeln!(o, "<style>{STYLE}</style>\n</head>\n<body>");
    o.push_str("<h1>poolcheck report</h1>\n");
    let _ = writeln!(
        o,
        "<p class=\"meta\">{} run(s). Each anomalous or failed cell links to its run: the command that replays it, the witness stories and their timelines (lanes = processes and the issuer's ledger; numbered marks = the witness's steps). Click a timeline to open the SVG, whose marks carry tooltips.</p>",
        report.runs.len()
    );

    // The verdict matrix: strategies x scenarios.
    let mut strategies: Vec<&str> = Vec::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !strategies.contains(&r.strategy.as_str()) {
            strategies.push(&r.strategy);
        }
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    o.push_str("<table class=\"matrix\">\n<tr><th>strategy</th>");
    for sc in &scenarios {
        let _ = write!(o, "<th>{}</th>", esc(sc));
    }
    o.push_str("</tr>\n");
    for st in &strategies {
        let _ = write!(o, "<tr><th>{}</th>", esc(st));
        for sc in &scenarios {
            let runs: Vec<(usize, &RunReport)> = report
                .runs
                .iter()
                .enumerate()
                .filter(|(_, r)| r.strategy == *st && r.scenario == *sc)
                .collect();
            if runs.is_empty() {
                o.push_str("<td>-</td>");
                continue;
            }
            let marks: Vec<Mark> = runs.iter().map(|(_, r)| mark(r)).collect();
            let failed = marks.contains(&Mark::Failed);
            let expected = marks.iter().all(|m| *m == Mark::Expected);
            let anomalous = runs
                .iter()
                .any(|(_, r)| !r.witnesses.is_empty() || r.anomalies.values().any(|n| *n > 0));
            let (class, title) = match (failed, expected, anomalous) {
                (true, ..) => ("failed", "an expectation about this cell failed"),
                (false, true, true) => (
                    "anomalous expected",
                    "expected: an [expect] pins these findings and it held",
                ),
                (false, true, false) => (
                    "clean expected",
                    "expected: an [expect] pins this cell and it held",
                ),
                (false, false, true) => ("anomalous", "no expectation pins this cell"),
                _ => ("clean", "no expectation pins this cell"),
            };
            let _ = write!(o, "<td class=\"{class}\" title=\"{}\">", esc(title));
            for (k, (i, r)) in runs.iter().enumerate() {
                if k > 0 {
                    o.push_str(", ");
                }
                if !super::replay::wanted(r) {
                    o.push_str(&esc(&cell(r)));
                } else {
                    let _ = write!(o, "<a href=\"#{}\">{}</a>", anchor(*i), esc(&cell(r)));
                }
            }
            o.push_str("</td>");
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
    if let Some(line) = held_line(report) {
        let _ = writeln!(o, "<p><b>{}</b></p>", esc(&line));
    }
    let _ = writeln!(o, "<p class=\"meta\">{}</p>", esc(LEGEND));
    let checked = super::self_check::text(&report.runs, false);
    if !checked.is_empty() {
        let _ = writeln!(
            o,
            "<section id=\"self-check\">\n<h2>Adapter self-check</h2>\n<pre>{}</pre>\n</section>",
            esc(checked.trim())
        );
    }

    // One section per anomalous or failed run.
    for (i, r) in report.runs.iter().enumerate() {
        if !super::replay::wanted(r) {
            continue;
        }
        let _ = writeln!(
            o,
            "<section id=\"{}\">\n<h2>{} under {}</h2>",
            anchor(i),
            esc(&r.scenario),
            esc(&r.strategy)
        );
        let _ = writeln!(
            o,
            "<p class=\"meta\">{} driver, spec <code>{}</code>, seed {}, {} processes, {} operations, {:.3} s. Found: {}.</p>",
            esc(&r.driver),
            esc(&r.spec),
            r.stats.seed,
            r.stats.processes,
            r.stats.operations,
            r.stats.seconds,
            esc(&cell(r))
        );
        for e in &r.expectations {
            let _ = writeln!(
                o,
                "<p class=\"meta\">expected {}: {}</p>",
                esc(&e.expect),
                if e.held { "held" } else { "<b>FAILED</b>" }
            );
        }
        if let Some(cmd) = super::replay::command(r, &report.invocation) {
            let _ = writeln!(
                o,
                "<p class=\"replay\">Replay: <code>{}</code></p>",
                esc(&cmd)
            );
        }
        let files = svgs.get(&i);
        for (k, w) in r.witnesses.iter().enumerate() {
            let count = r.anomalies.get(&w.anomaly).copied().unwrap_or(0);
            let _ = writeln!(
                o,
                "<h3 id=\"{}-{}\">{} ({count} found; the first)</h3>",
                anchor(i),
                esc(&w.anomaly),
                esc(&w.anomaly)
            );
            let _ = writeln!(o, "<pre>{}</pre>", esc(&w.story.join("\n")));
            match files.and_then(|f| f.get(k)) {
                Some(f) => {
                    let _ = writeln!(
                        o,
                        "<div class=\"timeline\"><a href=\"{f}\"><img src=\"{f}\" alt=\"timeline of the {} witness\" loading=\"lazy\"/></a></div>",
                        esc(&w.anomaly)
                    );
                }
                None => o.push_str(
                    "<p class=\"meta\">(no timeline: the run's history was not kept)</p>\n",
                ),
            }
        }
        o.push_str("</section>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
}

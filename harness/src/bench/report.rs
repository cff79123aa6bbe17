//! The bench report: cells and targets as a `bench` section of a `poolcheck.report.v1` object
//! (JSON), Markdown tables, a terminal table, and SVG plots (throughput vs processes per
//! subject, latency CDF) written to a directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use pool_core::strategy::Lock;
use pool_core::Strategy;
use serde::{Deserialize, Serialize};

use super::measure::{figures, Figures, Samples};
use super::svg::{line_chart, Chart, Series, Style};
use super::workload::Mix;
use super::{BenchOptions, FsTarget, Subject};
use crate::report::SCHEMA;

/// The whole report: the contract's envelope with no judged runs and a `bench` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub runs: Vec<serde_json::Value>,
    pub bench: BenchSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchSection {
    pub machine: Machine,
    pub config: Config,
    pub cells: Vec<Cell>,
    pub targets: Vec<Target>,
    /// The change of every cell against `bench --baseline FILE` (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

fn one() -> u32 {
    1
}

/// This run against an earlier report of the same grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    /// The earlier report's file.
    pub file: String,
    /// How a change is judged: beyond the noise when the repetitions' ranges do not overlap.
    pub noise: String,
    pub changes: Vec<Change>,
}

/// One cell of both reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    pub subject: String,
    pub fs: String,
    pub procs: u32,
    pub old_ops_per_s: f64,
    pub new_ops_per_s: f64,
    /// new / old - 1 (0.1 = 10 % faster).
    pub change: f64,
    /// The repetitions' [lowest, highest] ops/s in each report: the measured noise.
    pub old_range: (f64, f64),
    pub new_range: (f64, f64),
    /// `faster` or `slower` when the ranges do not overlap, `within noise` when they do.
    pub verdict: String,
    /// False when either cell had failed operations or anomalies.
    pub valid: bool,
}

/// How `--baseline` separates a change from noise.
pub const NOISE_RULE: &str = "a change is flagged when the ranges (lowest to highest ops/s) of the two cells' repetitions do not overlap; otherwise it is within noise";

/// Compare `new` with `old` cell by cell (subject, file system, process count); cells in only
/// one of them are left out.
pub fn compare(old: &BenchReport, new: &BenchReport, file: &str) -> Baseline {
    let changes = new
        .bench
        .cells
        .iter()
        .filter_map(|n| {
            let o = find(&old.bench.cells, &n.subject, &n.fs, n.procs)?;
            let (old_range, new_range) = (o.range(), n.range());
            let verdict = if new_range.0 > old_range.1 {
                "faster"
            } else if new_range.1 < old_range.0 {
                "slower"
            } else {
                "within noise"
            };
            Some(Change {
                subject: n.subject.clone(),
                fs: n.fs.clone(),
                procs: n.procs,
                old_ops_per_s: o.figures.ops_per_s,
                new_ops_per_s: n.figures.ops_per_s,
                change: if o.figures.ops_per_s > 0.0 {
                    n.figures.ops_per_s / o.figures.ops_per_s - 1.0
                } else {
                    f64::INFINITY
                },
                old_range,
                new_range,
                verdict: verdict.into(),
                valid: o.valid && n.valid,
            })
        })
        .collect();
    Baseline {
        file: file.into(),
        noise: NOISE_RULE.into(),
        changes,
    }
}

fn baseline_text(r: &BenchReport, md: bool) -> String {
    let Some(b) = &r.bench.baseline else {
        return String::new();
    };
    let mut out = String::new();
    if md {
        let _ = writeln!(
            out,
            "### Change against {}\n\nNoise: {}.\n",
            b.file, b.noise
        );
        out.push_str("| subject | fs | procs | old ops/s | new ops/s | change | old range | new range | verdict |\n|---|---|---:|---:|---:|---:|---|---|---|\n");
    } else {
        let _ = writeln!(out, "change against {} (noise: {}):", b.file, b.noise);
    }
    for c in &b.changes {
        let mark = if c.valid { "" } else { INVALID_MARK };
        let range = |(lo, hi): (f64, f64)| format!("{lo:.0}..{hi:.0}");
        if md {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0}{mark} | {:+.1}% | {} | {} | {} |",
                c.subject,
                c.fs,
                c.procs,
                c.old_ops_per_s,
                c.new_ops_per_s,
                c.change * 100.0,
                range(c.old_range),
                range(c.new_range),
                c.verdict
            );
        } else {
            let _ = writeln!(
                out,
                "  {:<16} {:<5} {:>3} procs  {:>9.0} -> {:>9.0}{mark:<1}  {:>+7.1}%  {}{}",
                short(&c.subject),
                c.fs,
                c.procs,
                c.old_ops_per_s,
                c.new_ops_per_s,
                c.change * 100.0,
                if c.verdict == "within noise" {
                    ""
                } else {
                    "** "
                },
                c.verdict
            );
        }
    }
    out.push('\n');
    out
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub mem_total: String,
    /// Label -> "path (type)".
    pub file_systems: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub seconds_per_cell: f64,
    /// Repetitions per cell.
    #[serde(default = "one")]
    pub reps: u32,
    pub procs: Vec<u32>,
    pub quick: bool,
    pub selection: String,
    pub mix: Mix,
}

/// One repetition of a cell, as measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rep {
    /// Successful operations per second (all processes).
    pub ops_per_s: f64,
    /// Failed operations.
    pub errors: u64,
}

/// What one repetition of a cell produced: the workers' samples and, for pool cells, the
/// anomaly counts of the same run.
pub struct RepRun {
    pub samples: Vec<Samples>,
    pub anomalies: Option<BTreeMap<String, u64>>,
}

/// One measured cell: the figures of its median repetition (by ops/s), the spread of all of
/// them, failed operations and anomalies summed over all of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Preset name or spec, `floor` or `sqlite`.
    pub subject: String,
    /// `pool`, `floor` or `sqlite`.
    pub kind: String,
    /// The strategy spec (pool cells).
    pub spec: Option<String>,
    pub fs: String,
    pub procs: u32,
    /// Figures of the median repetition: `ops` and `ops_per_s` count successful operations
    /// only, `errors` the failed ones.
    #[serde(flatten)]
    pub figures: Figures,
    /// Every repetition's ops/s and errors, in the order run.
    #[serde(default)]
    pub reps: Vec<Rep>,
    /// Failed operations over all repetitions.
    #[serde(default)]
    pub errors_all_reps: u64,
    /// The eight anomaly counts summed over the repetitions (pool cells; `null` for the
    /// references).
    pub anomalies: Option<BTreeMap<String, u64>>,
    /// `clean` or `anomalous` (pool cells), `reference` otherwise.
    pub verdict: String,
    /// False when any repetition had failed operations or anomalies: its speed is no result
    /// to compare (marked in every rendering).
    #[serde(default = "yes")]
    pub valid: bool,
}

fn yes() -> bool {
    true
}

impl Cell {
    /// A cell from its repetitions (at least one).
    pub fn new(subject: Subject, procs: u32, fs: &FsTarget, runs: &[RepRun]) -> Cell {
        assert!(!runs.is_empty(), "a cell has at least one repetition");
        let figs: Vec<Figures> = runs.iter().map(|r| figures(&r.samples)).collect();
        let mut order: Vec<usize> = (0..figs.len()).collect();
        order.sort_by(|&a, &b| figs[a].ops_per_s.total_cmp(&figs[b].ops_per_s));
        let median = order[(order.len() - 1) / 2];
        let mut anomalies: Option<BTreeMap<String, u64>> = None;
        for a in runs.iter().filter_map(|r| r.anomalies.as_ref()) {
            let sum = anomalies.get_or_insert_with(BTreeMap::new);
            for (k, n) in a {
                *sum.entry(k.clone()).or_default() += n;
            }
        }
        let (kind, spec) = match subject {
            Subject::Pool(s) => ("pool".to_string(), Some(s.spec())),
            Subject::Ref(r) => (r.name().to_string(), None),
        };
        let verdict = match &anomalies {
            None => "reference",
            Some(a) if a.values().all(|&c| c == 0) => "clean",
            Some(_) => "anomalous",
        }
        .to_string();
        let errors_all_reps = figs.iter().map(|f| f.errors).sum::<u64>();
        Cell {
            subject: subject.name(),
            kind,
            spec,
            fs: fs.label.clone(),
            procs,
            reps: figs
                .iter()
                .map(|f| Rep {
                    ops_per_s: f.ops_per_s,
                    errors: f.errors,
                })
                .collect(),
            figures: figs[median].clone(),
            errors_all_reps,
            valid: errors_all_reps == 0 && verdict != "anomalous",
            anomalies,
            verdict,
        }
    }

    /// The lowest and highest ops/s of the repetitions (the median's alone for a report
    /// without repetitions).
    pub fn range(&self) -> (f64, f64) {
        let v = self.reps.iter().map(|r| r.ops_per_s);
        match (v.clone().reduce(f64::min), v.reduce(f64::max)) {
            (Some(lo), Some(hi)) => (lo, hi),
            _ => (self.figures.ops_per_s, self.figures.ops_per_s),
        }
    }

    /// Half the range of the repetitions over the median: the cell's measured noise, e.g.
    /// 0.04 for +-4 %.
    pub fn spread(&self) -> f64 {
        let (lo, hi) = self.range();
        if self.figures.ops_per_s > 0.0 {
            (hi - lo) / 2.0 / self.figures.ops_per_s
        } else {
            0.0
        }
    }
}

/// One target of the issue, as measured in this run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub fs: String,
    pub procs: u32,
    /// The measured ratio.
    pub value: f64,
    /// What it must reach, e.g. `>= 0.5`.
    pub target: String,
    pub met: bool,
    /// How the ratio is formed.
    pub formula: String,
}

fn machine(fs: &[FsTarget]) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        mem_total: mem,
        file_systems: fs
            .iter()
            .map(|f| {
                (
                    f.label.clone(),
                    format!("{} ({})", f.root.display(), f.fs_type()),
                )
            })
            .collect(),
    }
}

impl BenchReport {
    pub fn new(opts: &BenchOptions, cells: Vec<Cell>) -> BenchReport {
        let targets = targets(&cells);
        BenchReport {
            schema: SCHEMA.to_string(),
            runs: Vec::new(),
            bench: BenchSection {
                machine: machine(&opts.fs),
                config: Config {
                    seconds_per_cell: opts.seconds,
                    reps: opts.reps,
                    procs: opts.procs.clone(),
                    quick: opts.quick,
                    selection: "round_robin".into(),
                    mix: opts.mix.clone(),
                },
                cells,
                targets,
                baseline: None,
            },
        }
    }
}

fn find<'c>(cells: &'c [Cell], subject: &str, fs: &str, procs: u32) -> Option<&'c Cell> {
    cells
        .iter()
        .find(|c| c.subject == subject && c.fs == fs && c.procs == procs)
}

/// The lock-free baseline for `fix`: the cell with no lock and the fix's write path, or the
/// `none` preset when that was not measured.
fn baseline_for(cells: &[Cell], fix: Strategy) -> Option<String> {
    let candidates: Vec<Strategy> = cells
        .iter()
        .filter_map(|c| c.spec.as_deref().and_then(|s| Strategy::parse(s).ok()))
        .filter(|s| s.lock == Lock::None)
        .collect();
    candidates
        .iter()
        .find(|s| s.write == fix.write)
        .or_else(|| candidates.first())
        .map(|s| s.label())
}

/// The targets, for every file system and process count measured.
pub fn targets(cells: &[Cell]) -> Vec<Target> {
    let fix = Strategy::parse("flock-txn").expect("preset");
    let mut out = Vec::new();
    let mut fss: Vec<&str> = cells.iter().map(|c| c.fs.as_str()).collect();
    fss.dedup();
    let base = baseline_for(cells, fix);
    for fs in fss {
        let mut procs: Vec<u32> = cells
            .iter()
            .filter(|c| c.fs == fs)
            .map(|c| c.procs)
            .collect();
        procs.sort_unstable();
        procs.dedup();
        let tput = |s: &str, p: u32| find(cells, s, fs, p).map(|c| c.figures.ops_per_s);
        let mut push = |name: &str, p: u32, value: Option<f64>, min: f64, formula: String| {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                out.push(Target {
                    name: name.into(),
                    fs: fs.into(),
                    procs: p,
                    value: (v * 1000.0).round() / 1000.0,
                    target: format!(">= {min}"),
                    met: v >= min,
                    formula,
                });
            }
        };
        if let Some(b) = &base {
            push(
                "flock-txn vs no lock, 8 processes",
                8,
                tput("flock-txn", 8).zip(tput(b, 8)).map(|(a, b)| a / b),
                0.5,
                format!("ops/s(flock-txn) / ops/s({b})"),
            );
        }
        for &p in procs.iter().filter(|&&p| p <= 8) {
            push(
                "flock-txn vs SQLite",
                p,
                tput("flock-txn", p)
                    .zip(tput("sqlite", p))
                    .map(|(a, b)| a / b),
                1.0,
                "ops/s(flock-txn) / ops/s(sqlite)".into(),
            );
        }
        push(
            "flock-txn vs the physical floor, 1 process",
            1,
            tput("flock-txn", 1)
                .zip(tput("floor", 1))
                .map(|(a, b)| a / b),
            0.667,
            "ops/s(flock-txn) / ops/s(floor) (within 1.5x: >= 1/1.5)".into(),
        );
    }
    out
}

/// The report as pretty JSON.
pub fn json(r: &BenchReport) -> String {
    serde_json::to_string_pretty(r).expect("reports serialize")
}

fn anomalies_text(c: &Cell) -> String {
    match &c.anomalies {
        None => "-".into(),
        Some(a) => {
            let hits: Vec<String> = a
                .iter()
                .filter(|(_, &n)| n > 0)
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            if hits.is_empty() {
                "0".into()
            } else {
                hits.join(" ")
            }
        }
    }
}

/// The mark on the ops/s of a cell that is no result to compare.
pub const INVALID_MARK: &str = "!";

fn row(c: &Cell) -> [String; COLS] {
    let f = &c.figures;
    [
        c.subject.clone(),
        c.procs.to_string(),
        format!(
            "{:.0}{}",
            f.ops_per_s,
            if c.valid { "" } else { INVALID_MARK }
        ),
        format!("±{:.0}%", c.spread() * 100.0),
        c.errors_all_reps.to_string(),
        format!("{:.0}", f.latency_us.p50),
        format!("{:.0}", f.latency_us.p99),
        format!("{:.0}", f.latency_us.p999),
        format!("{:.1}%", f.lock_wait_share * 100.0),
        f.refreshes.to_string(),
        anomalies_text(c),
    ]
}

const COLS: usize = 11;

const HEAD: [&str; COLS] = [
    "subject",
    "procs",
    "ops/s",
    "spread",
    "errors",
    "p50 us",
    "p99 us",
    "p99.9 us",
    "lock wait",
    "refreshes",
    "anomalies",
];

fn fs_list(r: &BenchReport) -> Vec<String> {
    let mut v: Vec<String> = r.bench.cells.iter().map(|c| c.fs.clone()).collect();
    v.dedup();
    v
}

/// A terminal table per file system, then the targets.
pub fn table(r: &BenchReport) -> String {
    let mut out = String::new();
    for fs in fs_list(r) {
        let rows: Vec<[String; COLS]> = r
            .bench
            .cells
            .iter()
            .filter(|c| c.fs == fs)
            .map(row)
            .collect();
        let mut w: Vec<usize> = HEAD.iter().map(|h| h.len()).collect();
        for rw in &rows {
            for (i, v) in rw.iter().enumerate() {
                w[i] = w[i].max(v.len());
            }
        }
        let fs_desc = r
            .bench
            .machine
            .file_systems
            .get(&fs)
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(out, "{fs}: {fs_desc}");
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i == 0 || i == COLS - 1 {
                        format!("{v:<w$}", w = w[i])
                    } else {
                        format!("{v:>w$}", w = w[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let head: Vec<String> = HEAD.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(out, "{}", line(&head).trim_end());
        for rw in &rows {
            let _ = writeln!(out, "{}", line(rw).trim_end());
        }
        out.push('\n');
    }
    out.push_str(&legend(r));
    out.push_str(&baseline_text(r, false));
    out.push_str(&targets_text(r, false));
    out
}

/// What the columns mean, under the tables.
fn legend(r: &BenchReport) -> String {
    format!(
        "ops/s: successful operations per second, median of {} repetitions; spread: half their range over the median; errors: failed operations over all repetitions (never in ops/s).\n{INVALID_MARK}: failed operations or anomalies: no result to compare, however fast.\n\n",
        r.bench.config.reps
    )
}

fn targets_text(r: &BenchReport, md: bool) -> String {
    let mut out = String::new();
    if md {
        out.push_str("| target | fs | procs | measured | needs | met | ratio |\n|---|---|---:|---:|---|---|---|\n");
    } else {
        out.push_str("targets:\n");
    }
    for t in &r.bench.targets {
        let met = if t.met { "yes" } else { "NO" };
        if md {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {} | {met} | {} |",
                t.name, t.fs, t.procs, t.value, t.target, t.formula
            );
        } else {
            let _ = writeln!(
                out,
                "  {:<44} {:<5} {:>2} procs  {:>7.3} ({}) {met}",
                t.name, t.fs, t.procs, t.value, t.target
            );
        }
    }
    out
}

/// Markdown: the machine, a table per file system, the targets.
pub fn markdown(r: &BenchReport) -> String {
    let m = &r.bench.machine;
    let mut out = format!(
        "Machine: {} CPUs, {} RAM, kernel {}; {:.2} s per cell; issuer latency {} ms, a refresh due every {} ms.\n\n",
        m.nproc,
        m.mem_total,
        m.kernel,
        r.bench.config.seconds_per_cell,
        r.bench.config.mix.issuer_latency_ms,
        r.bench.config.mix.refresh_interval_ms,
    );
    for fs in fs_list(r) {
        let _ = writeln!(
            out,
            "### {fs}: {}\n",
            m.file_systems.get(&fs).cloned().unwrap_or_default()
        );
        let _ = writeln!(out, "| {} |", HEAD.join(" | "));
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for c in r.bench.cells.iter().filter(|c| c.fs == fs) {
            let _ = writeln!(out, "| {} |", row(c).join(" | "));
        }
        out.push('\n');
    }
    out.push_str(&legend(r));
    out.push_str(&baseline_text(r, true));
    out.push_str("### Targets\n\n");
    out.push_str(&targets_text(r, true));
    out
}

/// Throughput vs processes, one line per subject, on file system `fs`.
pub fn throughput_svg(r: &BenchReport, fs: &str) -> String {
    let mut subjects: Vec<&str> = Vec::new();
    for c in r.bench.cells.iter().filter(|c| c.fs == fs) {
        if !subjects.contains(&c.subject.as_str()) {
            subjects.push(&c.subject);
        }
    }
    let series: Vec<Series> = subjects
        .iter()
        .map(|s| {
            let cells: Vec<&Cell> = r
                .bench
                .cells
                .iter()
                .filter(|c| c.fs == fs && c.subject == *s)
                .collect();
            Series {
                name: short(s),
                points: cells
                    .iter()
                    .map(|c| (f64::from(c.procs), c.figures.ops_per_s))
                    .collect(),
                style: style_of(&cells),
            }
        })
        .collect();
    let mut ticks: Vec<f64> = r
        .bench
        .cells
        .iter()
        .filter(|c| c.fs == fs)
        .map(|c| f64::from(c.procs))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    line_chart(
        &Chart {
            title: &format!("Throughput vs processes ({fs})"),
            x_label: "processes",
            y_label: "operations per second (all processes)",
            log_x: true,
            log_y: true,
            y_from_zero: false,
            x_ticks: Some(ticks),
        },
        &series,
    )
}

/// Latency CDF of every subject at `procs` processes on `fs`.
pub fn cdf_svg(r: &BenchReport, fs: &str, procs: u32) -> String {
    let series: Vec<Series> = r
        .bench
        .cells
        .iter()
        .filter(|c| c.fs == fs && c.procs == procs)
        .map(|c| Series {
            name: short(&c.subject),
            points: c.figures.cdf.clone(),
            style: style_of(&[c]),
        })
        .collect();
    line_chart(
        &Chart {
            title: &format!("Latency CDF, {procs} processes ({fs})"),
            x_label: "latency of one operation (microseconds)",
            y_label: "fraction of operations",
            log_x: true,
            log_y: false,
            y_from_zero: true,
            x_ticks: None,
        },
        &series,
    )
}

/// References in their own style; a series with any invalid cell marked invalid.
fn style_of(cells: &[&Cell]) -> Style {
    if cells.iter().any(|c| c.kind != "pool") {
        Style::Reference
    } else if cells.iter().any(|c| !c.valid) {
        Style::Invalid
    } else {
        Style::Measured
    }
}

/// A legend name: presets as they are, specs shortened to the dimensions that are not the
/// `none` preset's.
fn short(s: &str) -> String {
    if !s.contains('=') {
        return s.to_string();
    }
    let none = Strategy::parse("none").expect("preset").spec();
    let keep: Vec<&str> = s
        .split(',')
        .filter(|kv| !none.split(',').any(|n| n == *kv))
        .collect();
    format!("none+{}", keep.join(","))
}

/// Write bench.json, bench.md, throughput-FS.svg and latency-cdf-FS.svg into `dir`.
pub fn write_files(r: &BenchReport, dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("bench.json"), json(r) + "\n")?;
    std::fs::write(dir.join("bench.md"), markdown(r))?;
    for fs in fs_list(r) {
        std::fs::write(
            dir.join(format!("throughput-{fs}.svg")),
            throughput_svg(r, &fs),
        )?;
        let procs = r
            .bench
            .cells
            .iter()
            .filter(|c| c.fs == fs && c.procs <= 8)
            .map(|c| c.procs)
            .max()
            .unwrap_or(1);
        std::fs::write(
            dir.join(format!("latency-cdf-{fs}.svg")),
            cdf_svg(r, &fs, procs),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::refs::Reference;

    fn cell(subject: Subject, fs: &str, procs: u32, ops: u64) -> Cell {
        let s = Samples {
            ops,
            elapsed_ns: 1_000_000_000,
            latencies_ns: vec![1000; ops as usize],
            ..Samples::default()
        };
        let f = FsTarget {
            label: fs.into(),
            root: "/".into(),
        };
        let anomalies = matches!(subject, Subject::Pool(_)).then(|| {
            crate::check::ANOMALIES
                .iter()
                .map(|a| (a.to_string(), 0))
                .collect()
        });
        Cell::new(
            subject,
            procs,
            &f,
            &[RepRun {
                samples: vec![s],
                anomalies,
            }],
        )
    }

    fn fs() -> FsTarget {
        FsTarget {
            label: "shm".into(),
            root: "/".into(),
        }
    }

    fn clean() -> Option<BTreeMap<String, u64>> {
        Some(
            crate::check::ANOMALIES
                .iter()
                .map(|a| (a.to_string(), 0))
                .collect(),
        )
    }

    /// A worker whose `ok` first operations succeed and whose `failed` next ones fail.
    fn worker(ok: u64, failed: u64) -> Samples {
        let mut s = Samples::default();
        for i in 0..ok + failed {
            let _ = s.time(|| if i < ok { Ok(()) } else { Err("refused") });
        }
        s.elapsed_ns = 1_000_000_000;
        s
    }

    #[test]
    fn a_cell_whose_operations_all_fail_shows_0_ops_and_its_errors_and_is_marked() {
        let none = Subject::Pool(Strategy::parse("none").unwrap());
        let runs: Vec<RepRun> = (0..3)
            .map(|_| RepRun {
                samples: vec![worker(0, 500), worker(0, 400)],
                anomalies: clean(),
            })
            .collect();
        let c = Cell::new(none, 8, &fs(), &runs);
        assert_eq!(c.figures.ops, 0);
        assert_eq!(c.figures.ops_per_s, 0.0);
        assert_eq!(c.figures.errors, 900);
        assert_eq!(c.errors_all_reps, 2700);
        assert_eq!(c.figures.latency_us.p50, 0.0, "failures have no latency");
        assert!(!c.valid);
        let opts = BenchOptions {
            fs: vec![],
            ..BenchOptions::defaults(true)
        };
        let r = BenchReport::new(&opts, vec![c]);
        let t = table(&r);
        let line = t.lines().find(|l| l.starts_with("none ")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..5], ["none", "8", "0!", "±0%", "2700"], "{t}");
        assert!(markdown(&r).contains("| none | 8 | 0! |"));
        assert!(throughput_svg(&r, "shm").contains("none (invalid)"));
    }

    #[test]
    fn failed_operations_never_count_as_throughput() {
        let txn = Subject::Pool(Strategy::parse("flock-txn").unwrap());
        let runs: Vec<RepRun> = [(100, 0), (300, 0), (200, 50)]
            .iter()
            .map(|&(ok, failed)| RepRun {
                samples: vec![worker(ok, failed)],
                anomalies: clean(),
            })
            .collect();
        let c = Cell::new(txn, 1, &fs(), &runs);
        // The median repetition by successful ops/s is the 200 one; its 50 failures stay out.
        assert_eq!((c.figures.ops, c.figures.errors), (200, 50));
        assert_eq!(c.range(), (100.0, 300.0));
        assert!((c.spread() - 0.5).abs() < 1e-9);
        assert!(!c.valid, "a repetition had failures");
        let ok = Cell::new(txn, 1, &fs(), &runs[..2]);
        assert!(ok.valid && ok.errors_all_reps == 0);
    }

    #[test]
    fn baseline_flags_only_changes_beyond_the_repetitions_ranges() {
        let txn = Subject::Pool(Strategy::parse("flock-txn").unwrap());
        let cell_of = |ops: &[u64]| {
            let runs: Vec<RepRun> = ops
                .iter()
                .map(|&n| RepRun {
                    samples: vec![worker(n, 0)],
                    anomalies: clean(),
                })
                .collect();
            Cell::new(txn, 8, &fs(), &runs)
        };
        let opts = BenchOptions {
            fs: vec![],
            ..BenchOptions::defaults(true)
        };
        let old = BenchReport::new(&opts, vec![cell_of(&[100, 110, 120])]);
        for (new, verdict) in [
            (&[115, 125, 130][..], "within noise"),
            (&[121, 130, 140][..], "faster"),
            (&[50, 60, 99][..], "slower"),
        ] {
            let mut r = BenchReport::new(&opts, vec![cell_of(new)]);
            let b = compare(&old, &r, "old.json");
            assert_eq!(b.changes.len(), 1);
            assert_eq!(b.changes[0].verdict, verdict, "{new:?}");
            r.bench.baseline = Some(b);
            assert!(table(&r).contains(verdict));
        }
    }

    #[test]
    fn targets_are_the_ratios_of_the_right_cells() {
        let txn = Subject::Pool(Strategy::parse("flock-txn").unwrap());
        let none_rename = Subject::Pool(
            Strategy::parse("lock=none,scope=io,persist=each,write=rename,refresh=blind").unwrap(),
        );
        let none = Subject::Pool(Strategy::parse("none").unwrap());
        let cells = vec![
            cell(none, "shm", 8, 1000),
            cell(none_rename, "shm", 8, 400),
            cell(txn, "shm", 8, 100),
            cell(txn, "shm", 1, 90),
            cell(Subject::Ref(Reference::Sqlite), "shm", 1, 45),
            cell(Subject::Ref(Reference::Sqlite), "shm", 8, 200),
            cell(Subject::Ref(Reference::Floor), "shm", 1, 100),
        ];
        let t = targets(&cells);
        let get = |name: &str, p: u32| t.iter().find(|t| t.name == name && t.procs == p).unwrap();
        // The baseline is the no-lock cell on the fix's write path (rename), not `none`.
        let v = get("flock-txn vs no lock, 8 processes", 8);
        assert_eq!((v.value, v.met), (0.25, false));
        assert!(v.formula.contains("write=rename"), "{}", v.formula);
        assert_eq!(get("flock-txn vs SQLite", 1).value, 2.0);
        assert!(!get("flock-txn vs SQLite", 8).met);
        let f = get("flock-txn vs the physical floor, 1 process", 1);
        assert_eq!((f.value, f.met), (0.9, true));
    }

    #[test]
    fn json_has_the_contract_envelope_and_markdown_a_row_per_cell() {
        let opts = BenchOptions {
            fs: vec![],
            ..BenchOptions::defaults(true)
        };
        let cells = vec![
            cell(
                Subject::Pool(Strategy::parse("flock-txn").unwrap()),
                "shm",
                1,
                10,
            ),
            cell(Subject::Ref(Reference::Floor), "shm", 1, 10),
        ];
        let r = BenchReport::new(&opts, cells);
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["schema"], "poolcheck.report.v1");
        assert!(v["runs"].as_array().unwrap().is_empty());
        let c = &v["bench"]["cells"][0];
        for k in [
            "subject",
            "kind",
            "fs",
            "procs",
            "ops_per_s",
            "latency_us",
            "lock_wait_share",
            "anomalies",
            "verdict",
        ] {
            assert!(!c[k].is_null(), "missing {k}");
        }
        assert_eq!(c["anomalies"].as_object().unwrap().len(), 8);
        assert!(v["bench"]["cells"][1]["anomalies"].is_null());
        let md = markdown(&r);
        assert!(
            md.contains("| flock-txn | 1 |") && md.contains("| floor | 1 |"),
            "{md}"
        );
        assert_eq!(
            short("lock=none,scope=io,persist=each,write=rename,refresh=blind"),
            "none+write=rename"
        );
    }
}

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
use super::svg::{line_chart, Chart, Series};
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
    pub procs: Vec<u32>,
    pub quick: bool,
    pub selection: String,
    pub mix: Mix,
}

/// One measured cell.
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
    #[serde(flatten)]
    pub figures: Figures,
    /// The eight anomaly counts of the same run (pool cells; `null` for the references).
    pub anomalies: Option<BTreeMap<String, u64>>,
    /// `clean` or `anomalous` (pool cells), `reference` otherwise.
    pub verdict: String,
}

impl Cell {
    pub fn new(
        subject: Subject,
        procs: u32,
        fs: &FsTarget,
        samples: &[Samples],
        anomalies: Option<BTreeMap<String, u64>>,
    ) -> Cell {
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
        Cell {
            subject: subject.name(),
            kind,
            spec,
            fs: fs.label.clone(),
            procs,
            figures: figures(samples),
            anomalies,
            verdict,
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
                    procs: opts.procs.clone(),
                    quick: opts.quick,
                    selection: "round_robin".into(),
                    mix: opts.mix.clone(),
                },
                cells,
                targets,
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

fn row(c: &Cell) -> [String; 9] {
    let f = &c.figures;
    [
        c.subject.clone(),
        c.procs.to_string(),
        format!("{:.0}", f.ops_per_s),
        format!("{:.0}", f.latency_us.p50),
        format!("{:.0}", f.latency_us.p99),
        format!("{:.0}", f.latency_us.p999),
        format!("{:.1}%", f.lock_wait_share * 100.0),
        f.refreshes.to_string(),
        anomalies_text(c),
    ]
}

const HEAD: [&str; 9] = [
    "subject",
    "procs",
    "ops/s",
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
        let rows: Vec<[String; 9]> = r
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
                    if i == 0 || i == 8 {
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
    out.push_str(&targets_text(r, false));
    out
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
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for c in r.bench.cells.iter().filter(|c| c.fs == fs) {
            let _ = writeln!(out, "| {} |", row(c).join(" | "));
        }
        out.push('\n');
    }
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
        .map(|s| Series {
            name: short(s),
            points: r
                .bench
                .cells
                .iter()
                .filter(|c| c.fs == fs && c.subject == *s)
                .map(|c| (f64::from(c.procs), c.figures.ops_per_s))
                .collect(),
        })
        .collect();
    line_chart(
        &Chart {
            title: &format!("Throughput vs processes ({fs})"),
            x_label: "processes",
            y_label: "operations per second (all processes)",
            log_x: true,
            log_y: true,
            y_from_zero: false,
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
        },
        &series,
    )
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
        Cell::new(subject, procs, &f, &[s], anomalies)
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

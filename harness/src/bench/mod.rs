//! `poolcheck bench`: lock contention, measured on real forked processes.
//!
//! A run is a grid of cells: subject (a pool strategy, or one of the two references) x
//! process count x file system. Every cell starts from a fresh directory, forks its workers
//! behind one start gate, runs the op mix of [`workload`] for a fixed time, and merges the
//! workers' latencies ([`measure`]). Pool cells are judged by the anomaly checkers on the same
//! run: speed without correctness is no answer. The references ([`refs`]) are the physical
//! floor of a locked read-modify-write and SQLite doing the same logical op. [`report`] renders
//! the figures (JSON in the report contract, Markdown, a terminal table) and [`svg`] the plots.

pub mod measure;
pub mod refs;
pub mod report;
pub mod svg;
pub mod workload;

use std::path::PathBuf;

use pool_core::{Strategy, PRESETS};

use measure::BenchError;
use refs::Reference;
use report::{BenchReport, Cell, RepRun};
use workload::Mix;

/// No lock, every change written at once, but by temp file + rename (the `none` preset
/// writes in place): `flock-txn`'s baseline on the same write path.
pub const NONE_RENAME: &str = "lock=none,scope=io,persist=each,write=rename,refresh=blind";

/// What a cell measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subject {
    Pool(Strategy),
    Ref(Reference),
}

impl Subject {
    pub fn name(&self) -> String {
        match self {
            Subject::Pool(s) => s.label(),
            Subject::Ref(r) => r.name().to_string(),
        }
    }
}

/// A file system to run on: a label and a directory on it.
#[derive(Clone, Debug)]
pub struct FsTarget {
    pub label: String,
    pub root: PathBuf,
}

impl FsTarget {
    /// `shm` (/dev/shm), `disk` (the temp dir), or a directory path.
    pub fn parse(s: &str) -> Result<FsTarget, String> {
        let (label, root) = match s {
            "shm" | "tmpfs" => ("shm".to_string(), PathBuf::from("/dev/shm")),
            "disk" | "tmp" => ("disk".to_string(), std::env::temp_dir()),
            p => (p.to_string(), PathBuf::from(p)),
        };
        if !root.is_dir() {
            return Err(format!(
                "file system '{s}': {} is not a directory (use shm, disk or an existing directory)",
                root.display()
            ));
        }
        Ok(FsTarget { label, root })
    }

    /// The file system type of the root (from /proc/self/mounts), e.g. `tmpfs`, `ext4`.
    pub fn fs_type(&self) -> String {
        fs_type_of(&self.root).unwrap_or_else(|| "unknown".into())
    }
}

fn fs_type_of(path: &std::path::Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt).then(|| (mnt.len(), ty.to_string()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, t)| t)
}

/// A whole bench run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub procs: Vec<u32>,
    pub strategies: Vec<Strategy>,
    pub fs: Vec<FsTarget>,
    pub seconds: f64,
    pub mix: Mix,
    pub quick: bool,
    /// Repetitions per cell (each a fresh directory and fresh processes): the cell reports
    /// the median and the spread.
    pub reps: u32,
    /// How progress is shown on stderr.
    pub progress: crate::progress::Style,
}

/// Repetitions per cell unless `--reps` says otherwise; also the least allowed: a median and
/// a spread need three.
pub const MIN_REPS: u32 = 3;

impl BenchOptions {
    /// The defaults: every preset, 1..16 processes, both file systems, 1.5 s per cell; with
    /// `quick`, `none` and `flock-txn` at 1 and 8 processes for 0.4 s.
    pub fn defaults(quick: bool) -> BenchOptions {
        let mut names: Vec<&str> = if quick {
            vec!["none", "flock-txn"]
        } else {
            PRESETS.iter().map(|p| p.name).collect()
        };
        // The lock-free baseline on the fix's write path, for the "same write path" ratio.
        names.insert(1, NONE_RENAME);
        BenchOptions {
            procs: if quick {
                vec![1, 8]
            } else {
                vec![1, 2, 4, 8, 16]
            },
            strategies: names
                .into_iter()
                .map(|n| Strategy::parse(n).expect("presets parse"))
                .collect(),
            fs: ["shm", "disk"]
                .iter()
                .filter_map(|s| FsTarget::parse(s).ok())
                .collect(),
            seconds: if quick { 0.4 } else { 1.5 },
            mix: Mix::default(),
            quick,
            reps: MIN_REPS,
            progress: crate::progress::Style::Quiet,
        }
    }

    /// The subjects of every (procs, fs) column: the strategies, then the floor and SQLite.
    pub fn subjects(&self) -> Vec<Subject> {
        self.strategies
            .iter()
            .map(|s| Subject::Pool(*s))
            .chain([
                Subject::Ref(Reference::Floor),
                Subject::Ref(Reference::Sqlite),
            ])
            .collect()
    }
}

/// Run every cell. The caller must be single-threaded (cells fork).
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let subjects = opts.subjects();
    let total = subjects.len() * opts.procs.len() * opts.fs.len();
    let mut cells = Vec::with_capacity(total);
    let mut progress = crate::progress::Progress::new(opts.progress, "bench", total as u64);
    for fs in &opts.fs {
        for &procs in &opts.procs {
            for subject in &subjects {
                progress.start(&format!(
                    "{} x {procs} procs on {}",
                    subject.name(),
                    fs.label
                ));
                let cell = run_cell(*subject, procs, fs, opts)?;
                progress.done(&format!(
                    "{:.0} ops/s, {} errors{}",
                    cell.figures.ops_per_s,
                    cell.errors_all_reps,
                    if cell.valid { "" } else { " (not valid)" }
                ));
                cells.push(cell);
            }
        }
    }
    progress.finish();
    Ok(BenchReport::new(opts, cells))
}

/// One cell: `opts.reps` repetitions, each in a fresh directory.
pub fn run_cell(
    subject: Subject,
    procs: u32,
    fs: &FsTarget,
    opts: &BenchOptions,
) -> Result<Cell, BenchError> {
    let runs = (0..opts.reps.max(1))
        .map(|_| run_rep(subject, procs, fs, opts))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cell::new(subject, procs, fs, &runs))
}

/// One repetition in a fresh directory under the file system's root (removed afterwards).
fn run_rep(
    subject: Subject,
    procs: u32,
    fs: &FsTarget,
    opts: &BenchOptions,
) -> Result<RepRun, BenchError> {
    let tmp = tempfile::Builder::new()
        .prefix("poolcheck-bench.")
        .tempdir_in(&fs.root)
        .map_err(|e| {
            BenchError(format!(
                "cannot create a directory in {}: {e}",
                fs.root.display()
            ))
        })?;
    let dir = tmp.path();
    let fail = |e: BenchError| {
        BenchError(format!(
            "{} x {procs} procs on {}: {e}",
            subject.name(),
            fs.label
        ))
    };
    match subject {
        Subject::Pool(strategy) => {
            let c = workload::run_pool_cell(strategy, procs, opts.seconds, dir, &opts.mix)
                .map_err(fail)?;
            Ok(RepRun {
                samples: c.samples,
                anomalies: Some(c.verdict.counts),
            })
        }
        Subject::Ref(r) => {
            let s = refs::run_ref_cell(r, procs, opts.seconds, dir, &opts.mix).map_err(fail)?;
            Ok(RepRun {
                samples: s,
                anomalies: None,
            })
        }
    }
}

/// Output formats of `poolcheck bench`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

/// `poolcheck bench` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Small grid (none and flock-txn, 1 and 8 processes, 0.4 s per cell).
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated process counts (default 1,2,4,8,16; quick: 1,8).
    #[arg(long, value_delimiter = ',')]
    pub procs: Vec<u32>,
    /// Comma-separated presets or specs (default: every preset plus no lock on the rename
    /// path; quick: none, that, flock-txn). A spec's own commas are fine: consecutive key=value
    /// pairs form one spec. The floor and SQLite references are always measured.
    #[arg(long)]
    pub strategies: Vec<String>,
    /// Comma-separated file systems: shm (/dev/shm), disk (the temp dir) or directories.
    #[arg(long, value_delimiter = ',')]
    pub fs: Vec<String>,
    /// Seconds per cell (default 1.5; quick: 0.4).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Repetitions per cell, 3 to 50 (default 3): each cell reports the median and the spread.
    #[arg(long, value_parser = clap::value_parser!(u32).range(i64::from(MIN_REPS)..=50))]
    pub reps: Option<u32>,
    /// An earlier `bench.json` (or `--format json` output): show each cell's change against it
    /// and flag the changes beyond the measured noise (the repetitions' ranges do not overlap).
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write bench.json, bench.md and the SVG plots into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl BenchArgs {
    /// The options these arguments ask for, or what is wrong with them.
    pub fn options(&self) -> Result<BenchOptions, String> {
        let mut o = BenchOptions::defaults(self.quick);
        if !self.procs.is_empty() {
            let max = crate::scenario::MAX_PROCESSES;
            if let Some(bad) = self.procs.iter().find(|&&p| p == 0 || p > max) {
                return Err(format!("--procs {bad}: use 1 to {max} processes"));
            }
            o.procs = self.procs.clone();
        }
        if !self.strategies.is_empty() {
            o.strategies = pool_core::strategy::split_list(&self.strategies)
                .iter()
                .map(|s| Strategy::parse(s).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            if o.strategies.is_empty() {
                return Err("--strategies is empty: name at least one preset or spec (see `poolcheck strategies`)".into());
            }
        }
        if !self.fs.is_empty() {
            o.fs = self
                .fs
                .iter()
                .map(|s| FsTarget::parse(s))
                .collect::<Result<_, _>>()?;
        }
        if let Some(s) = self.seconds {
            if !(s > 0.0 && s <= 600.0) {
                return Err(format!("--seconds {s}: use a duration in (0, 600]"));
            }
            o.seconds = s;
        }
        if let Some(n) = self.reps {
            o.reps = n;
        }
        Ok(o)
    }
}

/// `poolcheck bench`: run, print in `format`, write the files to `--out`.
pub fn main(args: &BenchArgs, progress: crate::progress::Style) -> Result<(), String> {
    let mut opts = args.options()?;
    opts.progress = progress;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    }
    let old = match &args.baseline {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("--baseline: cannot read {}: {e}", p.display()))?;
            let old: BenchReport = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "--baseline: {} is not a bench report ({e}): pass a bench.json written by `poolcheck bench --out DIR` or `--format json`",
                    p.display()
                )
            })?;
            Some((p.display().to_string(), old))
        }
    };
    let mut rep = run(&opts).map_err(|e| e.to_string())?;
    if let Some((file, old)) = &old {
        rep.bench.baseline = Some(report::compare(old, &rep, file));
    }
    match args.format {
        Format::Table => print!("{}", report::table(&rep)),
        Format::Json => println!("{}", report::json(&rep)),
        Format::Markdown => print!("{}", report::markdown(&rep)),
    }
    if let Some(out) = &args.out {
        report::write_files(&rep, out)
            .map_err(|e| format!("cannot write the report into {}: {e}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_lists_keep_specs_whole() {
        let args = vec![
            format!("none,{NONE_RENAME},flock-txn"),
            "lock=flock,scope=op,persist=txn,write=rename,refresh=adopt".into(),
            "lock=mutex,scope=op,persist=each,write=in-place,refresh=blind,flock".into(),
        ];
        assert_eq!(
            pool_core::strategy::split_list(&args),
            vec![
                "none".to_string(),
                NONE_RENAME.to_string(),
                "flock-txn".into(),
                "lock=flock,scope=op,persist=txn,write=rename,refresh=adopt".into(),
                "lock=mutex,scope=op,persist=each,write=in-place,refresh=blind".into(),
                "flock".into(),
            ]
        );
        for s in pool_core::strategy::split_list(&args) {
            Strategy::parse(&s).unwrap();
        }
    }
}

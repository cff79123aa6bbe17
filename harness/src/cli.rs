//! The command line of `poolcheck`: every subcommand and flag (clap), in the library so that
//! tests can parse what the documentation shows (`tests/docs_examples.rs`). `main.rs` carries
//! out what is parsed here.
//!
//! Guarantees: [`parse`] and [`try_parse_from`] accept exactly what the binary accepts
//! (including `-1` taken as a value, refused as an invalid value of its type).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::drive::subject::SubjectSpec;
use crate::target;

#[derive(Parser)]
#[command(
    name = "poolcheck",
    version,
    about = "Finds cross-process races in file-backed OAuth credential pools",
    long_about = "Finds cross-process races in file-backed OAuth credential pools.\n\n\
        poolcheck drives a faithful model of a credential pool (one JSON store shared by \
        several processes) under a choice of lock strategies, with real forked processes, \
        real files and a real loopback OAuth token endpoint, and reports which strategies \
        let torn reads, lost updates, refresh-token double spends and the rest happen.\n\n\
        Start with `poolcheck matrix`.\n\n\
        Exit codes: 0 every expectation met; 1 an expectation failed; 2 bad usage or bad input."
)]
pub struct Cli {
    /// No progress on stderr (by default: a bar on a terminal, one line per finished cell
    /// otherwise). Reports on stdout are the same either way.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// List the strategy presets with their five dimensions.
    Strategies,
    /// List the scenario catalog.
    Scenarios,
    /// Run one scenario under one strategy on real processes, and judge it.
    Run {
        /// A catalog scenario name (see `poolcheck scenarios`) or a path to a scenario file.
        #[arg(long)]
        scenario: String,
        /// A preset name (see `poolcheck strategies`) or a spec such as
        /// lock=flock,scope=op,persist=txn,write=rename,refresh=adopt
        #[arg(long, required_unless_present = "subject", conflicts_with = "subject")]
        strategy: Option<String>,
        /// Play the pool roles with an external pool: a shell command speaking the
        /// poolcheck-subject/1 protocol (docs/subjects.md), as CMD or NAME=CMD.
        /// A run in which a process failed on its own has verdict `error` (exit 2).
        #[arg(long, value_name = "CMD")]
        subject: Option<String>,
        #[command(flatten)]
        subject_timeout: SubjectTimeout,
        /// Number of processes of the scenario's first role (1 to 256 processes in all).
        #[arg(long, value_parser = procs_range())]
        procs: Option<u32>,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Run in DIR and keep the store, logs and ledger there; DIR must be new or empty (default: a temp dir, removed).
        #[arg(long, value_name = "DIR")]
        keep: Option<std::path::PathBuf>,
        /// At most two iterations per process (as `matrix --quick` and `gate --quick` run).
        #[arg(long)]
        quick: bool,
        /// Start from a copy of this store (your own auth.json): its entries, order, sources,
        /// statuses and unknown fields, with every token replaced by one the run's issuer
        /// mints. The file is only read, never written.
        #[arg(long, value_name = "FILE")]
        store: Option<PathBuf>,
        /// Write an HTML report to DIR/index.html with one timeline SVG per witness.
        #[arg(long, value_name = "DIR")]
        html: Option<std::path::PathBuf>,
    },
    /// Every strategy x scenario x driver, judged; prints the verdict table.
    Matrix {
        /// Comma-separated drivers: fork, loom, shuttle (= shuttle-pct), shuttle-random, shuttle-dfs.
        #[arg(long, default_value = "fork", value_delimiter = ',')]
        drivers: Vec<String>,
        /// Comma-separated presets or specs (default: every preset); a spec's own commas are
        /// kept: `none,lock=flock,scope=op,persist=txn,write=rename,refresh=adopt`.
        #[arg(long)]
        strategies: Vec<String>,
        /// Comma-separated catalog names or files (default: the whole catalog).
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Also an external subject, one row beside the strategies (repeatable): NAME=CMD.
        /// Subjects run on the fork driver only.
        #[arg(long, value_name = "NAME=CMD")]
        subject: Vec<String>,
        #[command(flatten)]
        subject_timeout: SubjectTimeout,
        /// Fewer iterations per process (at most 2), for a fast check.
        #[arg(long)]
        quick: bool,
        /// Seed for every run (default: each scenario's).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write an HTML report to DIR/index.html with one timeline SVG per witness.
        #[arg(long, value_name = "DIR")]
        html: Option<std::path::PathBuf>,
    },
    /// Crash campaign: kill workers at pause points until N kills, per strategy; count
    /// corrupt stores, dead credentials, rollbacks and lost updates.
    Crash {
        /// Comma-separated presets or specs (default: flock-txn and none, unless --subject
        /// is given).
        #[arg(long)]
        strategies: Vec<String>,
        /// An external subject to crash instead (repeatable): CMD or NAME=CMD.
        #[arg(long, value_name = "NAME=CMD")]
        subject: Vec<String>,
        #[command(flatten)]
        subject_timeout: SubjectTimeout,
        /// Kills to reach per strategy (1 to 100000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        kills: u32,
        /// A scenario with a [nemesis] section.
        #[arg(long, default_value = "crash-mid-persist")]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up after this many runs per strategy (1 to 1000000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_runs: u32,
        /// table or json.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// CI regression gate: run what an expectations file asks for and judge it.
    Gate {
        /// Expectations file (TOML; see ci/expectations.toml). Default: the built-in copy of
        /// ci/expectations.toml.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
        /// The per-push budget: one seed per cell, at most two iterations per process.
        #[arg(long)]
        quick: bool,
        /// Seeds per strategy x scenario cell, 1 to 10000 (default: 1 with --quick, 5 without).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        seeds: Option<u32>,
        /// First seed of the campaign.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run only shard I of N of the campaign (combine the JSON reports with `merge`).
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Define (or override) a subject the expectations file names (repeatable): NAME=CMD.
        #[arg(long, value_name = "NAME=CMD")]
        subject: Vec<String>,
        #[command(flatten)]
        subject_timeout: SubjectTimeout,
        #[command(flatten)]
        out: GateOutputs,
    },
    /// Combine the JSON reports of a sharded gate campaign into one verdict.
    Merge {
        /// JSON reports written by `poolcheck gate --json` (or --format json).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Merge even when shards are missing: a provisional view (finds-verdicts pending,
        /// the missing shards named) instead of a refusal.
        #[arg(long)]
        partial: bool,
        #[command(flatten)]
        out: GateOutputs,
    },
    /// Lock contention: throughput, latency and lock wait of real processes per strategy,
    /// process count and file system, beside the physical floor and SQLite, with the anomaly
    /// counts of the same runs.
    Bench {
        #[command(flatten)]
        args: crate::bench::BenchArgs,
        #[command(flatten)]
        refuse: NoSubject,
    },
    /// Model-check one scenario under one strategy with loom or shuttle on a simulated kernel.
    Model {
        #[command(flatten)]
        args: crate::drive::model::ModelArgs,
        #[command(flatten)]
        refuse: NoSubject,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Generated workloads and schedules on the shuttle driver; the first anomaly is shrunk to
    /// a minimal witness and written as a scenario file (exit 1). See docs/explore.md.
    Explore {
        #[command(flatten)]
        args: crate::explore::ExploreArgs,
        #[command(flatten)]
        refuse: NoSubject,
    },
}

/// How long a subject may take to answer one request.
#[derive(clap::Args)]
pub struct SubjectTimeout {
    /// How long a subject may take to answer one request (pauses excluded; 1 to 3600000).
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub subject_timeout_ms: u64,
    /// Run subjects under the syscall observer (Linux x86_64; ptrace and seccomp-bpf): their
    /// store reads and writes, refreshes and pause points are taken from their system calls, so
    /// an unmodified pool is judged (docs/subjects.md, "The syscall observer"). What a subject
    /// reports itself is then only compared with what was observed.
    #[arg(long, value_name = "WHAT", value_parser = ["syscalls"])]
    pub observe: Option<String>,
}

impl SubjectTimeout {
    /// The `--subject` arguments, each with this timeout (and observed with `--observe`;
    /// refused, saying what to change, where ptrace or seccomp is not permitted).
    pub fn parse(&self, args: &[String]) -> Result<Vec<SubjectSpec>, String> {
        let t = std::time::Duration::from_millis(self.subject_timeout_ms);
        if self.observe.is_some() {
            crate::observe::preflight()?;
        }
        args.iter()
            .map(|a| {
                let mut s = target::parse_subject(a, t)?;
                s.observe = self.observe.is_some();
                Ok(s)
            })
            .collect()
    }
}

/// Commands that run pool-core on the simulated kernel or measure its strategies cannot
/// drive an external subject: they say so instead of ignoring `--subject`.
#[derive(clap::Args)]
pub struct NoSubject {
    #[arg(long, hide = true, value_name = "CMD")]
    pub subject: Option<String>,
}

impl NoSubject {
    /// Refuse `--subject` for `cmd`, saying `why`.
    pub fn check(&self, cmd: &str, why: &str) -> Result<(), String> {
        match &self.subject {
            None => Ok(()),
            Some(_) => Err(format!(
                "`poolcheck {cmd}` cannot drive an external subject: {why}. Subjects run with \
                 `poolcheck run`, `matrix`, `gate` and `crash` (--subject)"
            )),
        }
    }
}

/// Where a gate or merge writes its verdicts besides stdout.
#[derive(clap::Args)]
pub struct GateOutputs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write JUnit XML (one test case per expectation) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the JSON report to FILE (the input of `poolcheck merge`).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the Markdown summary to FILE (it is also appended to $GITHUB_STEP_SUMMARY
    /// when that is set).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// The most processes a run may fork in all: `--procs` and a scenario's `count` share it.
fn procs_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(crate::scenario::MAX_PROCESSES))
}

/// The clap command; every subcommand takes `-1` as a value (refused as an invalid value of
/// its type, exit 2) rather than as an unknown flag.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommands(|c| c.allow_negative_numbers(true))
}

/// Parse `args` (the first is the program name) as the binary does.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().try_get_matches_from(args)?)
}

/// Parse this process's command line; exit with clap's message on an error.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

//! `poolcheck`: the command line. Each subcommand is a thin layer over the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use harness::drive::fork::RunOptions;
use harness::drive::subject::SubjectSpec;
use harness::expect::Expect;
use harness::gate::{self, GateOptions};
use harness::report::{self, render, Report};
use harness::scenario::Scenario;
use harness::target::{self, Target};
use pool_core::strategy::{Lock, Persist, Refresh, Scope, WritePath};
use pool_core::{Strategy, PRESETS};
use std::path::PathBuf;

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
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Subcommand)]
enum Cmd {
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
        /// Run in DIR and keep the store, logs and ledger there (default: a temp dir, removed).
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
        args: harness::bench::BenchArgs,
        #[command(flatten)]
        refuse: NoSubject,
    },
    /// Model-check one scenario under one strategy with loom or shuttle on a simulated kernel.
    Model {
        #[command(flatten)]
        args: harness::drive::model::ModelArgs,
        #[command(flatten)]
        refuse: NoSubject,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Generated workloads and schedules on the shuttle driver; the first anomaly is shrunk to
    /// a minimal witness and written as a scenario file (exit 1). See docs/explore.md.
    Explore {
        #[command(flatten)]
        args: harness::explore::ExploreArgs,
        #[command(flatten)]
        refuse: NoSubject,
    },
}

/// How long a subject may take to answer one request.
#[derive(clap::Args)]
struct SubjectTimeout {
    /// How long a subject may take to answer one request (pauses excluded; 1 to 3600000).
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    subject_timeout_ms: u64,
    /// Run subjects under the syscall observer (Linux x86_64; ptrace and seccomp-bpf): their
    /// store reads and writes, refreshes and pause points are taken from their system calls, so
    /// an unmodified pool is judged (docs/subjects.md, "The syscall observer"). What a subject
    /// reports itself is then only compared with what was observed.
    #[arg(long, value_name = "WHAT", value_parser = ["syscalls"])]
    observe: Option<String>,
}

impl SubjectTimeout {
    fn parse(&self, args: &[String]) -> Result<Vec<SubjectSpec>, BadInput> {
        let t = std::time::Duration::from_millis(self.subject_timeout_ms);
        if self.observe.is_some() {
            harness::observe::preflight().map_err(BadInput)?;
        }
        args.iter()
            .map(|a| {
                let mut s = target::parse_subject(a, t).map_err(BadInput)?;
                s.observe = self.observe.is_some();
                Ok(s)
            })
            .collect()
    }
}

/// Commands that run pool-core on the simulated kernel or measure its strategies cannot
/// drive an external subject: they say so instead of ignoring `--subject`.
#[derive(clap::Args)]
struct NoSubject {
    #[arg(long, hide = true, value_name = "CMD")]
    subject: Option<String>,
}

impl NoSubject {
    fn check(&self, cmd: &str, why: &str) -> Result<(), BadInput> {
        match &self.subject {
            None => Ok(()),
            Some(_) => Err(BadInput(format!(
                "`poolcheck {cmd}` cannot drive an external subject: {why}. Subjects run with \
                 `poolcheck run`, `matrix`, `gate` and `crash` (--subject)"
            ))),
        }
    }
}

/// Where a gate or merge writes its verdicts besides stdout.
#[derive(clap::Args)]
struct GateOutputs {
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also write JUnit XML (one test case per expectation) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write the JSON report to FILE (the input of `poolcheck merge`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the Markdown summary to FILE (it is also appended to $GITHUB_STEP_SUMMARY
    /// when that is set).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// An error the user can fix: printed with its advice, exit 2.
struct BadInput(String);

/// The most processes a run may fork in all: `--procs` and a scenario's `count` share it.
fn procs_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(harness::scenario::MAX_PROCESSES))
}

/// Parse the command line; every subcommand takes `-1` as a value (refused as an invalid
/// value of its type, exit 2) rather than as an unknown flag.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_subcommands(|c| c.allow_negative_numbers(true));
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    harness::lifeline::default_sigpipe();
    let cli = parse_cli();
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(BadInput(msg)) => {
            eprintln!("poolcheck: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, BadInput> {
    match cmd {
        Cmd::Strategies => {
            print!("{}", strategies_table());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Scenarios => {
            for sc in Scenario::catalog() {
                println!(
                    "{:<18} {:>2} procs  {}",
                    sc.name,
                    sc.processes(),
                    sc.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            scenario,
            strategy,
            procs,
            seed,
            format,
            keep,
            quick,
            html,
            store,
            subject,
            subject_timeout,
        } => {
            let mut sc = Scenario::find(&scenario).map_err(|e| BadInput(e.to_string()))?;
            if quick {
                sc.make_quick();
            }
            let opts = RunOptions {
                seed,
                procs,
                dir: keep,
                store,
                ..RunOptions::default()
            };
            let target = match (subject, strategy) {
                (Some(cmd), _) => Target::Subject(subject_timeout.parse(&[cmd])?.remove(0)),
                (None, Some(_)) if subject_timeout.observe.is_some() => {
                    return Err(BadInput(
                        "--observe syscalls watches an external subject: give --subject CMD (pool-core strategies report their own events)".into(),
                    ))
                }
                (None, Some(st)) => {
                    Target::Model(Strategy::parse(&st).map_err(|e| BadInput(e.to_string()))?)
                }
                (None, None) => unreachable!("clap requires --strategy without --subject"),
            };
            let (run, rec) =
                target::run_and_judge(&sc, &target, &opts, &Expect::from_scenario(&sc))
                    .map_err(|e| BadInput(e.to_string()))?;
            if let Some(dir) = &rec.kept {
                eprintln!("run files kept in {}", dir.display());
            }
            let report = Report::new(vec![run]);
            if let Some(dir) = &html {
                let page = report::html::write(dir, &report, &[rec.history]).map_err(BadInput)?;
                eprintln!("HTML report: {}", page.display());
            }
            Ok(emit(&report, format, html.as_deref()))
        }
        Cmd::Crash {
            strategies,
            subject,
            subject_timeout,
            kills,
            scenario,
            seed,
            max_runs,
            format,
        } => {
            let sc = Scenario::find(&scenario).map_err(|e| BadInput(e.to_string()))?;
            let names = match (strategies.is_empty(), subject.is_empty()) {
                (true, true) => vec!["flock-txn".to_string(), "none".to_string()],
                (true, false) => Vec::new(),
                (false, _) => strategy_list(&strategies)?,
            };
            let targets = targets(&names, &subject_timeout.parse(&subject)?)?;
            let progress = std::io::stderr().is_terminal();
            let mut rows = Vec::new();
            for t in &targets {
                let s = harness::campaign::crash(&sc, t, kills, seed, max_runs, |k, r| {
                    if progress {
                        eprint!("\r\x1b[2K{}: {k}/{kills} kills in {r} runs ...", t.label());
                    }
                })
                .map_err(|e| BadInput(e.to_string()))?;
                rows.push(s);
            }
            if progress {
                eprint!("\r\x1b[2K");
            }
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("serializes")
                ),
                _ => {
                    println!(
                        "{:<16} {:>5} {:>6} {:>8} {:>5} {:>9} {:>5}  other anomalies",
                        "strategy", "runs", "kills", "corrupt", "dead", "rollback", "lost"
                    );
                    for s in &rows {
                        let other: Vec<String> = s
                            .anomalies
                            .iter()
                            .filter(|(a, n)| {
                                **n > 0
                                    && ![
                                        "corrupt_store",
                                        "dead_credential",
                                        "token_rollback",
                                        "lost_update",
                                    ]
                                    .contains(&a.as_str())
                            })
                            .map(|(a, n)| format!("{a}={n}"))
                            .collect();
                        let tolerated: Vec<String> = s
                            .tolerated
                            .iter()
                            .filter(|(_, n)| **n > 0)
                            .map(|(a, n)| format!("{a}={n}"))
                            .collect();
                        let other: Vec<String> = other
                            .into_iter()
                            .chain(
                                (!tolerated.is_empty())
                                    .then(|| format!("(tolerated: {})", tolerated.join(" "))),
                            )
                            .collect();
                        println!(
                            "{:<16} {:>5} {:>6} {:>8} {:>5} {:>9} {:>5}  {}",
                            s.strategy,
                            s.runs,
                            s.kills,
                            s.corrupt_stores,
                            s.dead_credentials,
                            s.rollbacks,
                            s.lost_updates,
                            other.join(" ")
                        );
                    }
                    println!("\ncorrupt/dead/rollback/lost: runs whose final store or history showed it (of `runs`).\ntolerated: events that did no harm, summed over the runs (see the README, \"Anomalies\").");
                }
            }
            let errored: Vec<_> = rows.iter().filter(|s| s.errors > 0).collect();
            for s in &errored {
                eprintln!(
                    "poolcheck: {}: {} run(s) with verdict error: {}",
                    s.strategy,
                    s.errors,
                    s.error.as_deref().unwrap_or("a process failed")
                );
            }
            Ok(if errored.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Cmd::Gate {
            expect,
            quick,
            seeds,
            seed,
            shard,
            subject,
            subject_timeout,
            out,
        } => {
            let shard = shard
                .as_deref()
                .map(gate::parse_shard)
                .transpose()
                .map_err(BadInput)?;
            let opts = GateOptions {
                quick,
                seeds,
                seed,
                shard,
            };
            gate_dispatch(
                expect,
                &subject_timeout.parse(&subject)?,
                &subject_timeout,
                opts,
                out,
            )
        }
        Cmd::Merge {
            reports,
            partial,
            out,
        } => {
            let mut parsed = Vec::new();
            for path in &reports {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
                let r: Report = serde_json::from_str(&text).map_err(|e| {
                    BadInput(format!(
                        "{} is not a poolcheck JSON report ({e}): pass files written by `poolcheck gate --json FILE`",
                        path.display()
                    ))
                })?;
                parsed.push((path.display().to_string(), r));
            }
            let merged = gate::merge(parsed, partial).map_err(BadInput)?;
            emit_gate(&merged, &out)
        }
        Cmd::Bench { args, refuse } => {
            refuse.check(
                "bench",
                "it measures pool-core's strategies against SQLite and the syscall floor",
            )?;
            harness::bench::main(&args)
                .map(|()| ExitCode::SUCCESS)
                .map_err(BadInput)
        }
        Cmd::Matrix {
            drivers,
            strategies,
            scenarios,
            subject,
            subject_timeout,
            quick,
            seed,
            format,
            html,
        } => {
            let names: Vec<String> = if strategies.is_empty() {
                PRESETS.iter().map(|p| p.name.to_string()).collect()
            } else {
                strategy_list(&strategies)?
            };
            nonempty_items("--drivers", &drivers)?;
            nonempty_items("--scenarios", &scenarios)?;
            let subjects = subject_timeout.parse(&subject)?;
            if let Some(s) = subjects.iter().find(|s| s.name == "subject") {
                return Err(BadInput(format!(
                    "matrix --subject '{}' has no name: write --subject NAME=CMD (the row's label)",
                    s.command
                )));
            }
            let strategies = targets(&names, &subjects)?;
            let mut scs: Vec<Scenario> = if scenarios.is_empty() {
                Scenario::catalog()
            } else {
                scenarios
                    .iter()
                    .map(|s| Scenario::find(s).map_err(|e| BadInput(e.to_string())))
                    .collect::<Result<_, _>>()?
            };
            if quick {
                scs.iter_mut().for_each(Scenario::make_quick);
            }
            let total = strategies.len() * scs.len() * drivers.len();
            let progress = std::io::stderr().is_terminal();
            let mut runs = Vec::with_capacity(total);
            let mut pages = match &html {
                Some(dir) => Some(report::html::HtmlReport::create(dir).map_err(BadInput)?),
                None => None,
            };
            for st in &strategies {
                for sc in &scs {
                    // The model checkers run pool-core only: a subject gets its fork row.
                    for d in drivers.iter().filter(|d| d.as_str() != "fork") {
                        let Some(model) = st.strategy() else { continue };
                        let run = harness::drive::model::matrix_run(d, sc, model, seed);
                        runs.push(run.map_err(|e| BadInput(e.to_string()))?);
                    }
                    if !drivers.iter().any(|d| d == "fork") && st.strategy().is_some() {
                        continue;
                    }
                    let opts = RunOptions {
                        seed,
                        ..RunOptions::default()
                    };
                    if progress {
                        eprint!(
                            "\r\x1b[2K[{}/{total}] {} x {} ...",
                            runs.len() + 1,
                            st.label(),
                            sc.name
                        );
                    }
                    let (run, rec) =
                        target::run_and_judge(sc, st, &opts, &Expect::from_scenario(sc))
                            .map_err(|e| BadInput(e.to_string()))?;
                    if let Some(p) = &mut pages {
                        p.add(&run, &rec.history).map_err(BadInput)?;
                    }
                    runs.push(run);
                }
            }
            if progress {
                eprint!("\r\x1b[2K");
            }
            let report = Report::new(runs);
            if let Some(p) = pages {
                let page = p.finish(&report).map_err(BadInput)?;
                eprintln!("HTML report: {}", page.display());
            }
            Ok(emit(&report, format, html.as_deref()))
        }
        Cmd::Model {
            args,
            refuse,
            format,
        } => {
            refuse.check(
                "model",
                "the model checkers run pool-core on a simulated kernel, not a program",
            )?;
            let run = harness::drive::model::run(&args).map_err(|e| BadInput(e.to_string()))?;
            Ok(emit(&Report::new(vec![run]), format, None))
        }
        Cmd::Explore { args, refuse } => {
            refuse.check(
                "explore",
                "it generates workloads for pool-core on a simulated kernel",
            )?;
            Ok(match harness::explore::run(&args).map_err(BadInput)? {
                true => ExitCode::from(1),
                false => ExitCode::SUCCESS,
            })
        }
    }
}

/// The pools under test a command names: strategies (presets or specs), then subjects.
fn targets(strategies: &[String], subjects: &[SubjectSpec]) -> Result<Vec<Target>, BadInput> {
    let mut out: Vec<Target> = strategies
        .iter()
        .map(|s| {
            Strategy::parse(s)
                .map(Target::Model)
                .map_err(|e| BadInput(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    for s in subjects {
        if out.iter().any(|t| t.label() == s.name) {
            return Err(BadInput(format!(
                "two pools under test are called '{}': give each --subject its own NAME=",
                s.name
            )));
        }
        out.push(Target::Subject(s.clone()));
    }
    Ok(out)
}

/// A given `--strategies` list, split (a spec's own commas kept); refused when it names none.
fn strategy_list(given: &[String]) -> Result<Vec<String>, BadInput> {
    let names = pool_core::strategy::split_list(given);
    if names.is_empty() {
        return Err(BadInput(
            "--strategies is empty: name at least one preset or spec (see `poolcheck strategies`), or leave the flag out for the default".into(),
        ));
    }
    Ok(names)
}

/// Refuse an empty item in a comma-separated list (`--drivers ""`, `--scenarios a,,b`).
fn nonempty_items(flag: &str, items: &[String]) -> Result<(), BadInput> {
    if items.iter().any(|i| i.trim().is_empty()) {
        return Err(BadInput(format!(
            "{flag} has an empty item: name at least one, comma-separated, or leave the flag out for the default"
        )));
    }
    Ok(())
}

fn gate_dispatch(
    expect: Option<PathBuf>,
    subjects: &[SubjectSpec],
    subject_opts: &SubjectTimeout,
    opts: GateOptions,
    out: GateOutputs,
) -> Result<ExitCode, BadInput> {
    let timeout =
        std::time::Duration::from_millis(subject_opts.subject_timeout_ms.clamp(1, 3_600_000));
    let (expects, scenarios) = match &expect {
        Some(path) => harness::expect::load_file(path, subjects, timeout),
        None => harness::expect::parse_file_with(
            DEFAULT_EXPECTATIONS,
            "ci/expectations.toml (built in)",
            subjects,
            timeout,
        ),
    }
    .map_err(BadInput)?;
    let mut expects = expects;
    for e in &mut expects {
        if let Target::Subject(s) = &mut e.strategy {
            s.observe = subject_opts.observe.is_some();
        }
    }
    let progress = std::io::stderr().is_terminal();
    let report = gate::run(&expects, &scenarios, &opts, |i, n, u| {
        if progress {
            eprint!(
                "\r\x1b[2K[{}/{n}] {} x {} seed {} ...",
                i + 1,
                u.strategy.label(),
                u.scenario,
                u.seed
            );
        }
    })
    .map_err(|e| BadInput(e.to_string()))?;
    if progress {
        eprint!("\r\x1b[2K");
    }
    emit_gate(&report, &out)
}

/// The built-in default expectations.
const DEFAULT_EXPECTATIONS: &str = include_str!("../../ci/expectations.toml");

/// Print and write a gate report; exit 1 unless the gate passed.
fn emit_gate(report: &Report, out: &GateOutputs) -> Result<ExitCode, BadInput> {
    let g = report
        .gate
        .as_ref()
        .expect("gate reports have a gate section");
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text)
            .map_err(|e| BadInput(format!("cannot write {}: {e}", path.display())))
    };
    match out.format {
        Format::Table => print!("{}", render::gate(g, false)),
        Format::Json => println!("{}", render::json(report)),
        Format::Markdown => print!("{}", render::gate(g, true)),
    }
    if let Some(p) = &out.junit {
        write(p, gate::junit::render(g))?;
    }
    if let Some(p) = &out.json {
        write(p, render::json(report))?;
    }
    if let Some(p) = &out.markdown {
        write(p, render::gate(g, true))?;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .and_then(|mut f| f.write_all(render::gate(g, true).as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "poolcheck: cannot append to $GITHUB_STEP_SUMMARY ({}): {e}",
                PathBuf::from(summary).display()
            );
        }
    }
    let errored = g.expectations.iter().filter(|e| e.errors > 0).count();
    Ok(if errored > 0 || !report.errored().is_empty() {
        for e in g.expectations.iter().filter(|e| e.errors > 0) {
            eprintln!(
                "poolcheck: {}: {} run(s) with verdict error: {}",
                e.id,
                e.errors,
                e.error.as_deref().unwrap_or("a process failed")
            );
        }
        ExitCode::from(2)
    } else if gate::passed(g) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Print the report; the exit code says whether every run ran (2 when a process failed on
/// its own) and whether every expectation held (1).
fn emit(report: &Report, format: Format, html: Option<&std::path::Path>) -> ExitCode {
    match format {
        Format::Table => print!("{}", render::table(report)),
        Format::Json => println!("{}", render::json(report)),
        Format::Markdown => print!("{}", render::markdown_linked(report, html)),
    }
    let errored = report.errored();
    for r in &errored {
        for e in &r.errors {
            if e.starts_with("subject ") {
                eprintln!("poolcheck: {e}");
            } else {
                eprintln!("poolcheck: {} x {}: error: {e}", r.strategy, r.scenario);
            }
        }
    }
    if !errored.is_empty() {
        ExitCode::from(2)
    } else if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn strategies_table() -> String {
    let refresh_values = Refresh::allowed();
    let w = PRESETS
        .iter()
        .map(|p| Strategy::parse(p.name).map_or(0, |s| s.refresh.to_string().len()))
        .max()
        .unwrap_or(8);
    let mut out = format!(
        "{:<16} {:<11} {:<6} {:<11} {:<9} {:<w$} meaning\n",
        "preset",
        Lock::KEY,
        Scope::KEY,
        Persist::KEY,
        WritePath::KEY,
        Refresh::KEY
    );
    for p in PRESETS {
        let s = Strategy::parse(p.name).expect("presets parse");
        out.push_str(&format!(
            "{:<16} {:<11} {:<6} {:<11} {:<9} {:<w$} {}\n",
            p.name, s.lock, s.scope, s.persist, s.write, s.refresh, p.meaning
        ));
    }
    out.push_str(
        "\nA custom strategy is a spec: lock=..,scope=..,persist=..,write=..,refresh=..\n",
    );
    for (key, values) in [
        (
            Lock::KEY,
            Lock::ALL.iter().map(|v| v.name()).collect::<Vec<_>>(),
        ),
        (Scope::KEY, Scope::ALL.iter().map(|v| v.name()).collect()),
        (
            Persist::KEY,
            Persist::ALL.iter().map(|v| v.name()).collect(),
        ),
        (
            WritePath::KEY,
            WritePath::ALL.iter().map(|v| v.name()).collect(),
        ),
        (Refresh::KEY, vec![refresh_values.as_str()]),
    ] {
        out.push_str(&format!("  {key:<8} {}\n", values.join(" | ")));
    }
    out
}

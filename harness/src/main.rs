//! `poolcheck`: the command line. Each subcommand is a thin layer over the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use harness::drive::fork::{self, RunOptions};
use harness::expect::Expect;
use harness::gate::{self, GateOptions};
use harness::report::{self, render, Report};
use harness::scenario::Scenario;
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
        /// poolcheck-subject/1 protocol (docs/subjects.md). Exit 2 if a subject fails.
        #[arg(long, value_name = "CMD")]
        subject: Option<String>,
        /// How long a subject may take to answer one request (pauses excluded).
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        subject_timeout_ms: u64,
        /// Number of processes of the scenario's first role.
        #[arg(long)]
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
        /// Comma-separated presets or specs (default: flock-txn and none).
        #[arg(long)]
        strategies: Vec<String>,
        /// Kills to reach per strategy.
        #[arg(long, default_value_t = 100)]
        kills: u32,
        /// A scenario with a [nemesis] section.
        #[arg(long, default_value = "crash-mid-persist")]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up after this many runs per strategy.
        #[arg(long, default_value_t = 10_000)]
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
        /// Seeds per strategy x scenario cell (default: 1 with --quick, 5 without).
        #[arg(long)]
        seeds: Option<u32>,
        /// First seed of the campaign.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run only shard I of N of the campaign (combine the JSON reports with `merge`).
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        #[command(flatten)]
        out: GateOutputs,
    },
    /// Combine the JSON reports of a sharded gate campaign into one verdict.
    Merge {
        /// JSON reports written by `poolcheck gate --json` (or --format json).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        #[command(flatten)]
        out: GateOutputs,
    },
    /// Lock contention: throughput, latency and lock wait of real processes per strategy,
    /// process count and file system, beside the physical floor and SQLite, with the anomaly
    /// counts of the same runs.
    Bench(harness::bench::BenchArgs),
    /// Model-check one scenario under one strategy with loom or shuttle on a simulated kernel.
    Model {
        #[command(flatten)]
        args: harness::drive::model::ModelArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Generated workloads and schedules on the shuttle driver; the first anomaly is shrunk to
    /// a minimal witness and written as a scenario file (exit 1). See docs/explore.md.
    Explore(harness::explore::ExploreArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            subject_timeout_ms,
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
            if let Some(cmd) = subject {
                return run_subject(&sc, cmd, subject_timeout_ms, &opts, format);
            }
            let strategy = strategy.expect("clap requires --strategy without --subject");
            let st = Strategy::parse(&strategy).map_err(|e| BadInput(e.to_string()))?;
            let rec = fork::run(&sc, st, &opts).map_err(|e| BadInput(e.to_string()))?;
            let run = report::judge_fork(&sc, st, &rec, &Expect::from_scenario(&sc));
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
            kills,
            scenario,
            seed,
            max_runs,
            format,
        } => {
            let sc = Scenario::find(&scenario).map_err(|e| BadInput(e.to_string()))?;
            let names = if strategies.is_empty() {
                vec!["flock-txn".to_string(), "none".to_string()]
            } else {
                pool_core::strategy::split_list(&strategies)
            };
            let progress = std::io::stderr().is_terminal();
            let mut rows = Vec::new();
            for name in &names {
                let st = Strategy::parse(name).map_err(|e| BadInput(e.to_string()))?;
                let s = harness::campaign::crash(&sc, st, kills, seed, max_runs, |k, r| {
                    if progress {
                        eprint!("\r\x1b[2K{}: {k}/{kills} kills in {r} runs ...", st.label());
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
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gate {
            expect,
            quick,
            seeds,
            seed,
            shard,
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
            gate_dispatch(expect, opts, out)
        }
        Cmd::Merge { reports, out } => {
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
                parsed.push(r);
            }
            let merged = gate::merge(parsed).map_err(BadInput)?;
            emit_gate(&merged, &out)
        }
        Cmd::Bench(args) => harness::bench::main(&args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(BadInput),
        Cmd::Matrix {
            drivers,
            strategies,
            scenarios,
            quick,
            seed,
            format,
            html,
        } => {
            let strategies: Vec<Strategy> = if strategies.is_empty() {
                PRESETS
                    .iter()
                    .map(|p| Strategy::parse(p.name).expect("presets parse"))
                    .collect()
            } else {
                pool_core::strategy::split_list(&strategies)
                    .iter()
                    .map(|s| Strategy::parse(s).map_err(|e| BadInput(e.to_string())))
                    .collect::<Result<_, _>>()?
            };
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
                    for d in drivers.iter().filter(|d| d.as_str() != "fork") {
                        let run = harness::drive::model::matrix_run(d, sc, *st, seed);
                        runs.push(run.map_err(|e| BadInput(e.to_string()))?);
                    }
                    if !drivers.iter().any(|d| d == "fork") {
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
                    let rec = fork::run(sc, *st, &opts).map_err(|e| BadInput(e.to_string()))?;
                    let run = report::judge_fork(sc, *st, &rec, &Expect::from_scenario(sc));
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
        Cmd::Model { args, format } => {
            let run = harness::drive::model::run(&args).map_err(|e| BadInput(e.to_string()))?;
            Ok(emit(&Report::new(vec![run]), format, None))
        }
        Cmd::Explore(args) => Ok(match harness::explore::run(&args).map_err(BadInput)? {
            true => ExitCode::from(1),
            false => ExitCode::SUCCESS,
        }),
    }
}

/// `run --subject`: one run with an external subject; exit 2 if a subject failed.
fn run_subject(
    sc: &Scenario,
    cmd: String,
    timeout_ms: u64,
    opts: &RunOptions,
    format: Format,
) -> Result<ExitCode, BadInput> {
    use harness::drive::subject::{self, SubjectSpec};
    let spec = SubjectSpec {
        timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
        ..SubjectSpec::new(cmd)
    };
    let (run, rec) =
        subject::run_and_judge(sc, &spec, opts).map_err(|e| BadInput(e.to_string()))?;
    if let Some(dir) = &rec.kept {
        eprintln!("run files kept in {}", dir.display());
    }
    let code = emit(&Report::new(vec![run]), format, None);
    let errors = subject::errors(&rec.history);
    for e in &errors {
        eprintln!("poolcheck: {e}");
    }
    Ok(if errors.is_empty() {
        code
    } else {
        ExitCode::from(2)
    })
}

fn gate_dispatch(
    expect: Option<PathBuf>,
    opts: GateOptions,
    out: GateOutputs,
) -> Result<ExitCode, BadInput> {
    let (expects, scenarios) = match &expect {
        Some(path) => harness::expect::load_file(path),
        None => {
            harness::expect::parse_file(DEFAULT_EXPECTATIONS, "ci/expectations.toml (built in)")
        }
    }
    .map_err(BadInput)?;
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
    Ok(if gate::passed(g) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Print the report; the exit code says whether every expectation held.
fn emit(report: &Report, format: Format, html: Option<&std::path::Path>) -> ExitCode {
    match format {
        Format::Table => print!("{}", render::table(report)),
        Format::Json => println!("{}", render::json(report)),
        Format::Markdown => print!("{}", render::markdown_linked(report, html)),
    }
    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn strategies_table() -> String {
    let mut out = format!(
        "{:<16} {:<11} {:<6} {:<8} {:<9} {:<8} meaning\n",
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
            "{:<16} {:<11} {:<6} {:<8} {:<9} {:<8} {}\n",
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
        (
            Refresh::KEY,
            Refresh::ALL.iter().map(|v| v.name()).collect(),
        ),
    ] {
        out.push_str(&format!("  {key:<8} {}\n", values.join(" | ")));
    }
    out
}

//! `poolcheck`: the command line. Each subcommand is a thin layer over the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use harness::drive::fork::{self, RunOptions};
use harness::report::{self, render, Report};
use harness::scenario::Scenario;
use pool_core::strategy::{Lock, Persist, Refresh, Scope, WritePath};
use pool_core::{Strategy, PRESETS};

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
        #[arg(long)]
        strategy: String,
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
    },
    /// Every strategy x scenario x driver, judged; prints the verdict table.
    Matrix {
        /// Comma-separated drivers: fork, loom, shuttle (= shuttle-pct), shuttle-random, shuttle-dfs.
        #[arg(long, default_value = "fork", value_delimiter = ',')]
        drivers: Vec<String>,
        /// Comma-separated presets or specs (default: every preset).
        #[arg(long, value_delimiter = ',')]
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
    },
    /// Model-check one scenario under one strategy with loom or shuttle on a simulated kernel.
    Model {
        #[command(flatten)]
        args: harness::drive::model::ModelArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
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
        } => {
            let sc = Scenario::find(&scenario).map_err(|e| BadInput(e.to_string()))?;
            let st = Strategy::parse(&strategy).map_err(|e| BadInput(e.to_string()))?;
            let opts = RunOptions {
                seed,
                procs,
                dir: keep,
                ..RunOptions::default()
            };
            let rec = fork::run(&sc, st, &opts).map_err(|e| BadInput(e.to_string()))?;
            let run = report::judge_fork(&sc, st, &rec);
            if let Some(dir) = &rec.kept {
                eprintln!("run files kept in {}", dir.display());
            }
            Ok(emit(&Report::new(vec![run]), format))
        }
        Cmd::Matrix {
            drivers,
            strategies,
            scenarios,
            quick,
            seed,
            format,
        } => {
            let strategies: Vec<Strategy> = if strategies.is_empty() {
                PRESETS
                    .iter()
                    .map(|p| Strategy::parse(p.name).expect("presets parse"))
                    .collect()
            } else {
                strategies
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
                    runs.push(report::judge_fork(sc, *st, &rec));
                }
            }
            if progress {
                eprint!("\r\x1b[2K");
            }
            Ok(emit(&Report::new(runs), format))
        }
        Cmd::Model { args, format } => {
            let run = harness::drive::model::run(&args).map_err(|e| BadInput(e.to_string()))?;
            Ok(emit(&Report::new(vec![run]), format))
        }
    }
}

/// Print the report; the exit code says whether every expectation held.
fn emit(report: &Report, format: Format) -> ExitCode {
    match format {
        Format::Table => print!("{}", render::table(report)),
        Format::Json => println!("{}", render::json(report)),
        Format::Markdown => print!("{}", render::markdown(report)),
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

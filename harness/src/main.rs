//! `poolcheck`: the command line. Each subcommand is a thin layer over the library.

use std::process::ExitCode;

use harness::cli::{self, Cmd, Format, GateOutputs};
use harness::drive::fork::RunOptions;
use harness::drive::subject::SubjectSpec;
use harness::expect::Expect;
use harness::gate::{self, GateOptions};
use harness::progress::{Progress, Style};
use harness::report::replay::Invocation;
use harness::report::{self, render, Report};
use harness::scenario::Scenario;
use harness::target::{self, Target};
use pool_core::strategy::{Lock, Persist, Refresh, Scope, WritePath};
use pool_core::{Strategy, PRESETS};
use std::path::PathBuf;

/// An error the user can fix: printed with its advice, exit 2.
struct BadInput(String);

fn main() -> ExitCode {
    harness::lifeline::default_sigpipe();
    let cli = cli::parse();
    match dispatch(cli.cmd, Style::detect(cli.quiet)) {
        Ok(code) => code,
        Err(BadInput(msg)) => {
            eprintln!("poolcheck: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd, progress: Style) -> Result<ExitCode, BadInput> {
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
                (Some(cmd), _) => {
                    Target::Subject(subject_timeout.parse(&[cmd]).map_err(BadInput)?.remove(0))
                }
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
            let mut report = Report::new(vec![run]);
            report.invocation = Invocation::quick(quick);
            report.invocation.scenario(&sc.name, &scenario);
            if let Some(n) = opts.procs {
                report
                    .invocation
                    .run_args
                    .extend(["--procs".into(), n.to_string()]);
            }
            if let Some(file) = &opts.store {
                let file = file.display().to_string();
                report.invocation.run_args.extend(["--store".into(), file]);
            }
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
            let targets = targets(&names, &subject_timeout.parse(&subject).map_err(BadInput)?)?;
            let mut rows = Vec::new();
            let mut p = Progress::new(progress, "crash", targets.len() as u64);
            for t in &targets {
                p.start(&format!("{} x {}", t.label(), sc.name));
                let s = harness::campaign::crash(&sc, t, kills, seed, max_runs, |k, r| {
                    p.advance(&format!("{k}/{kills} kills in {r} runs"));
                })
                .map_err(|e| BadInput(e.to_string()))?;
                p.done(&format!(
                    "{} kills in {} runs; corrupt {}, dead {}, rollback {}, lost {}",
                    s.kills,
                    s.runs,
                    s.corrupt_stores,
                    s.dead_credentials,
                    s.rollbacks,
                    s.lost_updates
                ));
                rows.push(s);
            }
            p.finish();
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
                &subject_timeout.parse(&subject).map_err(BadInput)?,
                subject_timeout.subject_timeout_ms,
                subject_timeout.observe.is_some(),
                opts,
                out,
                progress,
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
            refuse
                .check(
                    "bench",
                    "it measures pool-core's strategies against SQLite and the syscall floor",
                )
                .map_err(BadInput)?;
            harness::bench::main(&args, progress)
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
            let subjects = subject_timeout.parse(&subject).map_err(BadInput)?;
            if let Some(s) = subjects.iter().find(|s| s.name == "subject") {
                return Err(BadInput(format!(
                    "matrix --subject '{}' has no name: write --subject NAME=CMD (the row's label)",
                    s.command
                )));
            }
            let strategies = targets(&names, &subjects)?;
            let mut invocation = Invocation::quick(quick);
            invocation.matrix = true;
            let mut scs: Vec<Scenario> = if scenarios.is_empty() {
                Scenario::catalog()
            } else {
                scenarios
                    .iter()
                    .map(|s| {
                        let sc = Scenario::find(s).map_err(|e| BadInput(e.to_string()))?;
                        invocation.scenario(&sc.name, s);
                        Ok(sc)
                    })
                    .collect::<Result<_, _>>()?
            };
            if quick {
                scs.iter_mut().for_each(Scenario::make_quick);
            }
            // The cells: a subject has its fork row only (whatever --drivers says).
            let total: usize = strategies
                .iter()
                .map(|st| match st.strategy() {
                    Some(_) => drivers.len(),
                    None => 1,
                })
                .sum::<usize>()
                * scs.len();
            let mut p = Progress::new(progress, "matrix", total as u64);
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
                        p.start(&format!("{} x {} ({d})", st.label(), sc.name));
                        let run = harness::drive::model::matrix_run(d, sc, model, seed)
                            .map_err(|e| BadInput(e.to_string()))?;
                        p.done(&render::cell(&run));
                        runs.push(run);
                    }
                    if !drivers.iter().any(|d| d == "fork") && st.strategy().is_some() {
                        continue;
                    }
                    let opts = RunOptions {
                        seed,
                        ..RunOptions::default()
                    };
                    p.start(&format!("{} x {}", st.label(), sc.name));
                    let (run, rec) =
                        target::run_and_judge(sc, st, &opts, &Expect::from_scenario(sc))
                            .map_err(|e| BadInput(e.to_string()))?;
                    p.done(&render::cell(&run));
                    if let Some(p) = &mut pages {
                        p.add(&run, &rec.history).map_err(BadInput)?;
                    }
                    runs.push(run);
                }
            }
            p.finish();
            let mut report = Report::new(runs);
            report.invocation = invocation;
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
            refuse
                .check(
                    "model",
                    "the model checkers run pool-core on a simulated kernel, not a program",
                )
                .map_err(BadInput)?;
            let run = harness::drive::model::run(&args).map_err(|e| BadInput(e.to_string()))?;
            let mut report = Report::new(vec![run]);
            if let Some(sc) = report.runs.first().map(|r| r.scenario.clone()) {
                report.invocation.scenario(&sc, &args.scenario);
            }
            for (flag, v) in [("--procs", args.procs), ("--ops", args.ops)] {
                if let Some(v) = v {
                    report
                        .invocation
                        .model_args
                        .extend([flag.to_string(), v.to_string()]);
                }
            }
            if args.matrix_sizes {
                report.invocation.model_args.push("--matrix-sizes".into());
            }
            Ok(emit(&report, format, None))
        }
        Cmd::Explore { args, refuse } => {
            refuse
                .check(
                    "explore",
                    "it generates workloads for pool-core on a simulated kernel",
                )
                .map_err(BadInput)?;
            Ok(
                match harness::explore::run(&args, progress).map_err(BadInput)? {
                    true => ExitCode::from(1),
                    false => ExitCode::SUCCESS,
                },
            )
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
    timeout_ms: u64,
    observe: bool,
    opts: GateOptions,
    out: GateOutputs,
    progress: Style,
) -> Result<ExitCode, BadInput> {
    let timeout = std::time::Duration::from_millis(timeout_ms.clamp(1, 3_600_000));
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
            s.observe = observe; // the file's subjects too
        }
    }
    let report =
        gate::run(&expects, &scenarios, &opts, progress).map_err(|e| BadInput(e.to_string()))?;
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

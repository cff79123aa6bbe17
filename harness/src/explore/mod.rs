//! `poolcheck explore`: generated workloads that shrink.
//!
//! proptest generates a workload (initial entries and token lifetimes, one op list per
//! simulated process, and a vector of scheduling choices), it runs once on the simulated
//! kernel under a shuttle scheduler driven by those choices, and the checkers judge it. On the
//! first anomaly, proptest shrinks ops and schedule together to a minimal case that still
//! shows the same anomaly; `explore` prints its witness story, writes it as a scenario file
//! and exits 1. With no anomaly in `--cases` cases it exits 0.
//!
//! - [`workload`]: the generator and the workload -> scenario file mapping.
//! - [`schedule`]: the choice-driven shuttle scheduler and one execution.
//! - [`search`]: the proptest run and the shrinking.
//!
//! Replay: the written file holds the workload as `script` roles; replaying it means
//! `poolcheck model --checker shuttle-pct --strategy S --scenario FILE --replay HANDLE` with
//! the handle in the file's header: shuttle's `ReplayScheduler` then runs exactly the shrunk
//! schedule, and the history is the one `explore` judged.

pub mod schedule;
pub mod search;
pub mod workload;

use std::path::PathBuf;

use pool_core::Strategy;

pub use search::{search, search_with, Found, Outcome};

/// `poolcheck explore` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ExploreArgs {
    /// A preset name or a spec string.
    #[arg(long)]
    pub strategy: String,
    /// The model driver (only `shuttle`: the schedule is a shuttle scheduler's choices).
    #[arg(long, default_value = "shuttle")]
    pub driver: String,
    /// Generated cases (one workload and one schedule each), 1 to 1000000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub cases: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only this anomaly counts (default: the first one found).
    #[arg(long)]
    pub anomaly: Option<String>,
    /// Where the minimal witness scenario is written (an existing file only with --force).
    #[arg(long, default_value = "explore-witness.toml")]
    pub out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// table (text), json (the poolcheck.report.v1 envelope with an `explore` section) or
    /// markdown.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::bench::Format,
}

/// The scenario file of a found case: the replay command and the search in the header.
pub fn witness_file(f: &Found, strategy: &Strategy, out: &str, cmd: &str) -> String {
    let label = strategy.label();
    let mut header = vec![
        format!("Written by: {cmd}"),
        format!("Shrunk {} witness (strategy {label}).", f.anomaly),
        "Replay exactly (the shrunk schedule, shuttle's ReplayScheduler):".to_string(),
        format!(
            "  poolcheck model --checker shuttle-pct --strategy '{}' --scenario {out} --replay {}",
            strategy.spec(),
            f.handle
        ),
    ];
    header.extend(f.workload.describe().into_iter().map(|l| format!("  {l}")));
    f.workload.to_toml(&header, Some((&label, &f.anomaly)))
}

/// `poolcheck explore`: prints the outcome; `Ok(true)` when an anomaly was found.
pub fn run(a: &ExploreArgs, progress: crate::progress::Style) -> Result<bool, String> {
    if a.driver != "shuttle" {
        return Err(format!(
            "--driver '{}': explore runs only on the shuttle driver (allowed: shuttle)",
            a.driver
        ));
    }
    let st = Strategy::parse(&a.strategy).map_err(|e| e.to_string())?;
    if let Some(an) = &a.anomaly {
        if !crate::check::ANOMALIES.contains(&an.as_str()) {
            return Err(format!(
                "--anomaly '{an}' (allowed: {})",
                crate::check::ANOMALIES.join(", ")
            ));
        }
    }
    if a.out.exists() && !a.force {
        return Err(format!(
            "{} exists: pass --force to overwrite it, or --out another file",
            a.out.display()
        ));
    }
    // Two cells: the search, then (when it found something) the shrinking.
    let mut p = crate::progress::Progress::new(progress, "explore", 2);
    let outcome = search_with(st, a.cases, a.seed, a.anomaly.as_deref(), &mut p)?;
    p.finish();
    let section = match &outcome {
        Outcome::Clean { cases, seconds } => serde_json::json!({
            "strategy": st.label(),
            "spec": st.spec(),
            "seed": a.seed,
            "cases": cases,
            "seconds": seconds,
            "found": null,
        }),
        Outcome::Found(f) => {
            let w = f.witness();
            serde_json::json!({
                "strategy": st.label(),
                "spec": st.spec(),
                "seed": a.seed,
                "cases": f.cases,
                "seconds": f.seconds,
                "found": {
                    "anomaly": f.anomaly,
                    "shrink_runs": f.shrink_runs,
                    "workload": f.workload.describe(),
                    "events": w.events.len(),
                    "story": w.story,
                    "written": a.out.display().to_string(),
                    "replay": replay_command(st, &a.out.display().to_string(), &f.handle),
                },
            })
        }
    };
    if !matches!(a.format, crate::bench::Format::Table) {
        if let Outcome::Found(f) = &outcome {
            write_witness(a, st, f)?;
        }
        match a.format {
            crate::bench::Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "schema": crate::report::SCHEMA,
                    "runs": [],
                    "explore": section,
                }))
                .expect("serializes")
            ),
            _ => print!("{}", markdown(&section)),
        }
        return Ok(matches!(outcome, Outcome::Found(_)));
    }
    match outcome {
        Outcome::Clean { cases, seconds } => {
            println!(
                "explore {}: {cases} cases (one workload and one schedule each) clean in {seconds:.2} s (seed {})",
                st.label(),
                a.seed
            );
            Ok(false)
        }
        Outcome::Found(f) => {
            let out = a.out.display().to_string();
            write_witness(a, st, &f)?;
            let w = f.witness();
            println!(
                "explore {}: {} after {} cases; shrunk in {} runs ({:.2} s in all)",
                st.label(),
                f.anomaly,
                f.cases,
                f.shrink_runs,
                f.seconds
            );
            println!("minimal workload:");
            for l in f.workload.describe() {
                println!("  {l}");
            }
            println!("witness ({} events):", w.events.len());
            for s in &w.story {
                println!("  {s}");
            }
            println!("written: {out}");
            println!("replay: {}", replay_command(st, &out, &f.handle));
            Ok(true)
        }
    }
}

/// The command that replays a found case from its written file.
pub fn replay_command(st: Strategy, out: &str, handle: &str) -> String {
    format!(
        "poolcheck model --checker shuttle-pct --strategy '{}' --scenario {out} --replay {handle}",
        st.spec()
    )
}

fn write_witness(a: &ExploreArgs, st: Strategy, f: &Found) -> Result<(), String> {
    let out = a.out.display().to_string();
    let cmd = format!(
        "poolcheck explore --strategy '{}' --cases {} --seed {}{}",
        a.strategy,
        a.cases,
        a.seed,
        a.anomaly
            .as_ref()
            .map(|x| format!(" --anomaly {x}"))
            .unwrap_or_default()
    );
    let text = witness_file(f, &st, &out, &cmd);
    std::fs::write(&a.out, &text).map_err(|e| format!("cannot write {out}: {e}"))
}

/// The `explore` section as Markdown.
fn markdown(s: &serde_json::Value) -> String {
    let mut out = format!(
        "### explore {}\n\n{} cases, seed {}, {:.2} s.\n\n",
        s["strategy"].as_str().unwrap_or(""),
        s["cases"],
        s["seed"],
        s["seconds"].as_f64().unwrap_or(0.0)
    );
    let f = &s["found"];
    if f.is_null() {
        out.push_str("No anomaly found.\n");
        return out;
    }
    out.push_str(&format!(
        "**{}** (shrunk in {} runs).\n\nMinimal workload:\n\n",
        f["anomaly"].as_str().unwrap_or(""),
        f["shrink_runs"]
    ));
    for l in f["workload"].as_array().into_iter().flatten() {
        out.push_str(&format!("- {}\n", l.as_str().unwrap_or("")));
    }
    out.push_str(&format!("\nWitness ({} events):\n\n", f["events"]));
    for l in f["story"].as_array().into_iter().flatten() {
        out.push_str(&format!("1. {}\n", l.as_str().unwrap_or("")));
    }
    out.push_str(&format!(
        "\nWritten: `{}`. Replay: `{}`\n",
        f["written"].as_str().unwrap_or(""),
        f["replay"].as_str().unwrap_or("")
    ));
    out
}

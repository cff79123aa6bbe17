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

pub use search::{search, Found, Outcome};

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
    /// Where the minimal witness scenario is written.
    #[arg(long, default_value = "explore-witness.toml")]
    pub out: PathBuf,
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
pub fn run(a: &ExploreArgs) -> Result<bool, String> {
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
    match search(st, a.cases, a.seed, a.anomaly.as_deref())? {
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
            let text = witness_file(&f, &st, &out, &cmd);
            std::fs::write(&a.out, &text).map_err(|e| format!("cannot write {out}: {e}"))?;
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
            println!(
                "replay: poolcheck model --checker shuttle-pct --strategy '{}' --scenario {out} --replay {}",
                st.spec(),
                f.handle
            );
            Ok(true)
        }
    }
}

//! The run plan every driver takes: what a run starts from ([`setup`]: the issuer's token
//! families and keys, the initial store, the external credential files) and what each of its
//! processes does ([`WorkerPlan`], its numbering, and the role loops of [`roles`], played on
//! any pool under test).
//!
//! Guarantees: a plan is a pure function of the scenario, the strategy and the seed, so the
//! fork driver (real processes, pool-core or an external subject) and the simulated world
//! (`sim/`, under loom and shuttle) start from the same store, issue the same keys and play
//! the same role loops. This module depends on no driver: `drive/` and `sim/` import it, never
//! each other. It does not run anything by itself (no processes, files or threads).

pub mod roles;
pub mod setup;

use std::path::{Path, PathBuf};

use pool_core::external::ExternalFormat;
use pool_core::{Config, ExternalSource, Selection, Strategy};

use crate::scenario::{RoleSpec, Scenario};

/// Everything one worker needs, computed by the parent before it forks (or by the simulated
/// world before it starts its model threads).
#[derive(Clone)]
pub struct WorkerPlan {
    pub proc: u32,
    pub role: RoleSpec,
    pub strategy: Strategy,
    pub dir: PathBuf,
    pub issuer_url: String,
    pub seed: u64,
    /// 0 for the first start; n after the nemesis killed this process n times.
    pub incarnation: u32,
}

/// The seed of worker `proc` in a run seeded `seed`.
pub fn worker_seed(seed: u64, proc: u32) -> u64 {
    seed ^ (u64::from(proc) << 32)
}

/// The first operation id of a worker's `incarnation` (0 for the first start, n after the
/// nemesis's n-th kill): each life of a process numbers its operations in its own range, so
/// the operations of two lives of one process never merge in the history. Pool-core workers
/// and subject workers both number from here.
pub fn first_op_id(incarnation: u32) -> u64 {
    u64::from(incarnation) * 1_000_000 + 1
}

/// The path of an external source's credentials file in a run directory.
pub fn external_path(dir: &Path, source: &str) -> PathBuf {
    dir.join(format!("{source}.credentials.json"))
}

/// The file format of an external source (`claude_code`, `codex`), if it has a file.
pub fn external_format(source: &str) -> Option<ExternalFormat> {
    match source {
        "claude_code" => Some(ExternalFormat::ClaudeCode),
        "codex" => Some(ExternalFormat::Codex),
        _ => None,
    }
}

/// The pool configuration a worker of `plan` runs with.
pub fn pool_config(sc: &Scenario, plan: &WorkerPlan) -> Config {
    let mut cfg = Config::new(&plan.dir, plan.strategy);
    cfg.provider = sc.pool.provider.clone();
    let selection = plan.role.selection.as_deref().unwrap_or(&sc.pool.selection);
    cfg.selection = selection.parse::<Selection>().expect("validated");
    cfg.refresh_margin_ms = sc.pool.refresh_margin_s * 1000;
    cfg.default_cooldown_ms = sc.pool.cooldown_s * 1000;
    cfg.write_chunk = sc.pool.write_chunk;
    cfg.seed = plan.seed;
    cfg.external = sc
        .entries
        .iter()
        .filter_map(|e| {
            external_format(&e.source).map(|format| ExternalSource {
                format,
                path: external_path(&plan.dir, &e.source),
            })
        })
        .collect();
    cfg
}

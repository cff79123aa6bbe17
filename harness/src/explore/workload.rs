//! Generated workloads: the initial store (entries and token lifetimes), one op list per
//! simulated process, and the scheduling choices, as proptest strategies. A workload becomes
//! a scenario file (roles with a `script`), so what `explore` runs is exactly what it writes.

use pool_core::Strategy as PoolStrategy;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::scenario::{Scenario, ScriptOp};

/// One entry of the initial store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryGen {
    /// An API key instead of an OAuth pair.
    pub api_key: bool,
    /// OAuth: the initial access token is already expiring (`expires_in_s = 0`), so the first
    /// select refreshes it; otherwise it has an hour left.
    pub expiring: bool,
}

/// One generated case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub entries: Vec<EntryGen>,
    /// Access tokens the issuer mints are expiring at once (lifetime 60 s < the 120 s refresh
    /// margin), so every later select refreshes again; otherwise they live an hour.
    pub minted_expiring: bool,
    /// The op list of each simulated process (process n+1 plays `procs[n]`).
    pub procs: Vec<Vec<ScriptOp>>,
    /// Scheduling choices (see [`super::schedule`]).
    pub choices: Vec<u8>,
}

/// World seed of every generated scenario (token and entry ids); the proptest seed varies
/// the workloads and schedules.
pub const WORLD_SEED: u64 = 1;

fn op() -> impl Strategy<Value = ScriptOp> {
    // prop_oneof shrinks toward earlier arms: `use` is the simplest op.
    prop_oneof![
        4 => Just(ScriptOp::Use),
        1 => (0..2u8).prop_map(ScriptOp::Exhaust),
        1 => Just(ScriptOp::Add),
        1 => (0..2u8).prop_map(ScriptOp::Remove),
        1 => Just(ScriptOp::Reset),
    ]
}

fn entry() -> impl Strategy<Value = EntryGen> {
    (any::<bool>(), any::<bool>()).prop_map(|(api_key, fresh)| EntryGen {
        api_key,
        // Shrinks toward an expiring token (`fresh` shrinks to false).
        expiring: !fresh,
    })
}

/// The workload generator: 1-2 entries, 2-3 processes of 1-3 ops, up to 48 choices.
pub fn workload() -> impl Strategy<Value = Workload> {
    (
        vec(entry(), 1..=2),
        any::<bool>(),
        vec(vec(op(), 1..=3), 2..=3),
        vec(0..3u8, 0..=48),
    )
        .prop_map(|(entries, long_lived, procs, choices)| Workload {
            entries,
            minted_expiring: !long_lived,
            procs,
            choices,
        })
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

impl Workload {
    /// Events of the workload in words, one line per process.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            out.push(format!(
                "entry {i}: {}",
                match (e.api_key, e.expiring) {
                    (true, _) => "api key",
                    (false, true) => "oauth, access token expiring",
                    (false, false) => "oauth, access token valid 1 h",
                }
            ));
        }
        out.push(format!(
            "issuer mints access tokens valid {}",
            if self.minted_expiring {
                "60 s (expiring at once)"
            } else {
                "1 h"
            }
        ));
        for (i, ops) in self.procs.iter().enumerate() {
            let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
            out.push(format!("p{}: {}", i + 1, ops.join(", ")));
        }
        out.push(format!("schedule choices: {:?}", self.choices));
        out
    }

    /// The scenario file of this workload. `header` lines become leading comments; `finds`
    /// (strategy label, anomaly) becomes the `[expect]` table.
    pub fn to_toml(&self, header: &[String], finds: Option<(&str, &str)>) -> String {
        let mut t = String::new();
        for h in header {
            t.push_str(&format!("# {h}\n"));
        }
        t.push_str("name = \"explore-witness\"\n");
        t.push_str("description = \"A workload generated (and shrunk) by poolcheck explore\"\n");
        t.push_str(&format!("seed = {WORLD_SEED}\n\n[issuer]\n"));
        t.push_str(&format!(
            "access_lifetime_s = {}\n",
            if self.minted_expiring { 60 } else { 3600 }
        ));
        for (i, e) in self.entries.iter().enumerate() {
            t.push_str("\n[[entry]]\n");
            if e.api_key {
                t.push_str(&format!("label = \"key-{i}\"\nauth_type = \"api_key\"\n"));
            } else {
                t.push_str(&format!(
                    "label = \"oauth-{i}\"\nauth_type = \"oauth\"\nexpires_in_s = {}\n",
                    if e.expiring { 0 } else { 3600 }
                ));
            }
        }
        for (i, ops) in self.procs.iter().enumerate() {
            let ops: Vec<String> = ops.iter().map(|o| toml_str(&o.to_string())).collect();
            t.push_str(&format!(
                "\n[[role]]\nkind = \"cli\"\nname = \"p{}\"\nscript = [{}]\n",
                i + 1,
                ops.join(", ")
            ));
        }
        if let Some((strategy, anomaly)) = finds {
            t.push_str(&format!(
                "\n[expect]\nfinds = {{ {} = [{}] }}\n",
                toml_str(strategy),
                toml_str(anomaly)
            ));
        }
        t
    }

    /// The scenario this workload runs as (parsed from [`Workload::to_toml`]).
    pub fn scenario(&self) -> Scenario {
        Scenario::parse(&self.to_toml(&[], None), "explore workload")
            .expect("a generated scenario is valid")
    }

    /// The model plan of this workload under `strategy`.
    pub fn plan(&self, strategy: PoolStrategy) -> crate::sim::ModelPlan {
        crate::sim::ModelPlan {
            scenario: self.scenario(),
            strategy,
            seed: WORLD_SEED,
            crash: crate::sim::CrashPlan::Never,
        }
    }
}

//! Scenarios: who runs, how many, what they do, where they pause, and what is expected.
//!
//! A scenario is a TOML file (format documented in the README, section "Scenario files").
//! The catalog in `scenarios/` is compiled into the binary, so `poolcheck matrix` needs no
//! files; `--scenario PATH` loads any other file. Loading validates everything a run needs
//! and reports errors as `FILE:LINE:COL: problem`, naming the field and the allowed values.

/// The most worker processes one run may fork, summed over its roles: the cap of `--procs`
/// (run, bench) and of a scenario's `count`. Higher counts measure the machine's scheduler,
/// not the pool, and a mistyped count must not fork without limit.
pub const MAX_PROCESSES: u32 = 256;

use std::collections::BTreeMap;
use std::path::Path;

use pool_core::world::{OpKind, Pause};
use pool_core::{Selection, Strategy};
use serde::Deserialize;

/// The catalog, compiled in: (name, TOML text).
pub const CATALOG: &[(&str, &str)] = &[
    ("seed-8040", include_str!("../../scenarios/seed-8040.toml")),
    (
        "refresh-race",
        include_str!("../../scenarios/refresh-race.toml"),
    ),
    (
        "lost-update",
        include_str!("../../scenarios/lost-update.toml"),
    ),
    (
        "cooldown-erasure",
        include_str!("../../scenarios/cooldown-erasure.toml"),
    ),
    (
        "external-cli",
        include_str!("../../scenarios/external-cli.toml"),
    ),
    (
        "crash-mid-persist",
        include_str!("../../scenarios/crash-mid-persist.toml"),
    ),
];

/// A loaded, validated scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    #[serde(default = "one")]
    pub seed: u64,
    #[serde(default)]
    pub pool: PoolSpec,
    #[serde(default)]
    pub issuer: IssuerSpec,
    #[serde(rename = "entry", default)]
    pub entries: Vec<EntrySpec>,
    #[serde(rename = "role", default)]
    pub roles: Vec<RoleSpec>,
    #[serde(rename = "pause", default)]
    pub pauses: Vec<PauseRule>,
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub nemesis: Option<Nemesis>,
    /// The file it was loaded from, as the user named it (none: a catalog scenario). A replay
    /// command names the scenario by this.
    #[serde(skip)]
    pub source: Option<String>,
}

/// Crash injection: SIGKILL workers at pause points, then restart them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nemesis {
    /// Pause points at which a worker may be killed.
    pub kill_at: Vec<String>,
    /// Chance of a kill at each arrival at one of those points.
    #[serde(default = "half")]
    pub probability: f64,
    /// Kills (and so restarts) per worker process at most.
    #[serde(default = "three")]
    pub kills_per_process: u32,
    /// Roles whose processes may be killed (default: every role).
    #[serde(default)]
    pub roles: Vec<String>,
}

fn half() -> f64 {
    0.5
}
fn three() -> u32 {
    3
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    #[serde(default = "default_provider")]
    pub provider: String,
    #[serde(default = "default_selection")]
    pub selection: String,
    #[serde(default = "default_margin")]
    pub refresh_margin_s: u64,
    #[serde(default = "default_cooldown")]
    pub cooldown_s: u64,
    #[serde(default = "default_chunk")]
    pub write_chunk: usize,
}

impl Default for PoolSpec {
    fn default() -> Self {
        PoolSpec {
            provider: default_provider(),
            selection: default_selection(),
            refresh_margin_s: default_margin(),
            cooldown_s: default_cooldown(),
            write_chunk: default_chunk(),
        }
    }
}

fn default_provider() -> String {
    "anthropic".into()
}
fn default_selection() -> String {
    "fill_first".into()
}
fn default_margin() -> u64 {
    120
}
fn default_cooldown() -> u64 {
    3600
}
fn default_chunk() -> usize {
    256
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// Token endpoint latency, uniformly in [min, max] milliseconds.
    #[serde(default = "default_latency")]
    pub latency_ms: [u64; 2],
    /// Reuse grace period (0: every reuse revokes the family).
    #[serde(default)]
    pub grace_ms: u64,
    /// Lifetime of access tokens the issuer mints.
    #[serde(default = "default_lifetime")]
    pub access_lifetime_s: u64,
    /// `opaque` (default) or `jwt` (clients that read expiry from the `exp` claim, as
    /// upstream's Codex path does, can be driven).
    #[serde(default)]
    pub access_token_format: crate::issuer::rules::AccessTokenFormat,
}

impl Default for IssuerSpec {
    fn default() -> Self {
        IssuerSpec {
            latency_ms: default_latency(),
            grace_ms: 0,
            access_lifetime_s: default_lifetime(),
            access_token_format: Default::default(),
        }
    }
}

fn default_latency() -> [u64; 2] {
    [30, 50]
}
fn default_lifetime() -> u64 {
    3600
}

/// One entry of the store the run starts from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    pub label: String,
    /// `oauth` or `api_key`.
    pub auth_type: String,
    /// `manual`, or an external file source: `claude_code`, `codex`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Remaining life of the initial access token (OAuth): 0 means it is already expiring.
    #[serde(default = "default_lifetime")]
    pub expires_in_s: u64,
    /// `ok` or `exhausted` (exhausted entries start in a cooldown that has not ended).
    #[serde(default = "default_status")]
    pub status: String,
    /// The API answers 429 for this key.
    #[serde(default)]
    pub rate_limited: bool,
    /// For an external source: the other CLI already rotated the family, so its file holds a
    /// newer pair than the store.
    #[serde(default)]
    pub external_newer: bool,
}

fn default_source() -> String {
    "manual".into()
}
fn default_status() -> String {
    "ok".into()
}

/// What a role does; see the README's role table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleKind {
    /// Long-lived: loads once, then selects and uses in a loop; marks exhausted on a 429.
    Gateway,
    /// One CLI invocation per iteration: fresh snapshot, load, select, use.
    Cli,
    /// One `auth add` per iteration: fresh snapshot, load, add an API key.
    AuthAdd,
    /// Another tool sharing the token family: refreshes it in its own file, without our lock.
    ExternalCli,
}

impl RoleKind {
    pub fn name(self) -> &'static str {
        match self {
            RoleKind::Gateway => "gateway",
            RoleKind::Cli => "cli",
            RoleKind::AuthAdd => "auth-add",
            RoleKind::ExternalCli => "external-cli",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The name pause rules refer to (defaults to the kind).
    #[serde(default)]
    pub name: Option<String>,
    pub kind: RoleKind,
    #[serde(default = "one_u32")]
    pub count: u32,
    /// Iterations (loop turns) per process.
    #[serde(default = "one_u32")]
    pub ops: u32,
    /// Sleep between iterations.
    #[serde(default)]
    pub think_ms: u64,
    /// Overrides `[pool].selection` for this role.
    #[serde(default)]
    pub selection: Option<String>,
    /// external-cli: which external file it owns (`claude_code` or `codex`).
    #[serde(default)]
    pub source: Option<String>,
    /// An explicit op list (written by `poolcheck explore`): when not empty, each process of
    /// the role runs these ops in order instead of its kind's loop, each as one CLI-style
    /// invocation (fresh pool, load, op); `ops` and `think_ms` are then ignored. See
    /// [`ScriptOp`] for the syntax. Played by the fork and model drivers (not by subjects).
    #[serde(default)]
    pub script: Vec<String>,
}

/// One op of a role's `script`: `use` (select, use, react to a 429/401), `exhaust:N` (mark
/// entry N of the loaded snapshot exhausted with a 429), `add` (add an API key), `remove:N`
/// (remove entry N of the snapshot), `reset` (clear every status). N is taken modulo the
/// snapshot's length; with an empty snapshot the op does nothing after the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScriptOp {
    Use,
    Exhaust(u8),
    Add,
    Remove(u8),
    Reset,
}

impl std::fmt::Display for ScriptOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptOp::Use => write!(f, "use"),
            ScriptOp::Exhaust(n) => write!(f, "exhaust:{n}"),
            ScriptOp::Add => write!(f, "add"),
            ScriptOp::Remove(n) => write!(f, "remove:{n}"),
            ScriptOp::Reset => write!(f, "reset"),
        }
    }
}

impl std::str::FromStr for ScriptOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' (allowed: use, exhaust:N, add, remove:N, reset)");
        let (name, n) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        match (name, n) {
            ("use", None) => Ok(ScriptOp::Use),
            ("exhaust", Some(n)) => Ok(ScriptOp::Exhaust(n)),
            ("add", None) => Ok(ScriptOp::Add),
            ("remove", Some(n)) => Ok(ScriptOp::Remove(n)),
            ("reset", None) => Ok(ScriptOp::Reset),
            _ => Err(bad()),
        }
    }
}

fn one_u32() -> u32 {
    1
}

impl RoleSpec {
    /// The parsed `script` (validated when the scenario was loaded).
    pub fn script_ops(&self) -> Vec<ScriptOp> {
        self.script
            .iter()
            .map(|s| s.parse().expect("validated"))
            .collect()
    }

    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.name().to_string())
    }
}

/// What a process does when it reaches a pause point.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRule {
    /// A pause point name (`op_start`, `after_load`, `between_persists`, `before_redeem`,
    /// `after_redeem`, `mid_write`, `before_rename`, `after_rename`).
    pub point: String,
    /// Role names this rule applies to (default: every role).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Only inside this pool operation (`load_pool`, `select`, `mark_exhausted`, `add_entry`,
    /// `remove`, `reset_statuses`); default: any.
    #[serde(default)]
    pub op: Option<String>,
    /// `sleep` (for `ms`), `jitter` (uniform 0..`ms`), or `rendezvous` (wait until every
    /// process with a rule on the same barrier arrives, or `timeout_ms`; then sleep `ms`).
    pub action: String,
    #[serde(default)]
    pub ms: u64,
    /// Rendezvous group (default: the point name).
    #[serde(default)]
    pub barrier: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Arrivals (at this point, in this op, counted per rule) to let pass before the rule acts.
    #[serde(default)]
    pub skip: u32,
    /// Arrivals the rule acts on after `skip` (0: all).
    #[serde(default = "one_u32")]
    pub times: u32,
}

fn default_timeout() -> u64 {
    300
}

/// The operation kind named `name` in scenario files.
pub fn op_kind(name: &str) -> Option<OpKind> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Expectations judged by `run` and `matrix` (exit code 1 when one fails).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Strategies (preset names or specs) that must show no anomaly in this scenario.
    #[serde(default)]
    pub clean: Vec<String>,
    /// Strategy -> anomalies (or tolerated events) that must each be found at least once.
    #[serde(default)]
    pub finds: BTreeMap<String, Vec<String>>,
    /// Strategy -> anomalies or tolerated events that must not happen.
    #[serde(default)]
    pub absent: BTreeMap<String, Vec<String>>,
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{at}: {message}")]
pub struct ScenarioError {
    pub origin: String,
    pub at: String,
    pub message: String,
}

impl Scenario {
    /// A catalog name or a path to a TOML file.
    pub fn find(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((name, text)) = CATALOG.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, &format!("scenarios/{name}.toml"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ScenarioError {
                origin: name_or_path.to_string(),
                at: String::new(),
                message: format!(
                    "no such catalog scenario or file (catalog: {}; run `poolcheck scenarios`)",
                    CATALOG
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: path.display().to_string(),
            at: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut sc = Scenario::parse(&text, &path.display().to_string())?;
        sc.source = Some(name_or_path.to_string());
        Ok(sc)
    }

    /// Every catalog scenario.
    pub fn catalog() -> Vec<Scenario> {
        CATALOG
            .iter()
            .map(|(n, t)| {
                Scenario::parse(t, &format!("scenarios/{n}.toml")).expect("the catalog is valid")
            })
            .collect()
    }

    /// Parse and validate TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| {
            let at = span
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            ScenarioError {
                origin: origin.to_string(),
                at,
                message,
            }
        };
        let sc: Scenario =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
        sc.validate().map_err(|m| err(None, m))?;
        Ok(sc)
    }

    fn validate(&self) -> Result<(), String> {
        self.check_process_total()?;
        self.pool
            .selection
            .parse::<Selection>()
            .map_err(|e| format!("[pool] selection: {e}"))?;
        if self.issuer.latency_ms[0] > self.issuer.latency_ms[1] {
            return Err(
                "[issuer] latency_ms: the first value (min) is larger than the second (max)".into(),
            );
        }
        if self.roles.is_empty() {
            return Err("no [[role]]: a scenario needs at least one role (kinds: gateway, cli, auth-add, external-cli)".into());
        }
        let mut names = Vec::new();
        for (i, r) in self.roles.iter().enumerate() {
            let label = r.label();
            if names.contains(&label) {
                return Err(format!(
                    "[[role]] #{}: name '{label}' is used twice; give each role a distinct `name`",
                    i + 1
                ));
            }
            if r.count == 0 || r.count > MAX_PROCESSES {
                return Err(format!(
                    "[[role]] '{label}': count = {} is out of range: use 1 to {MAX_PROCESSES} processes",
                    r.count
                ));
            }
            for op in &r.script {
                op.parse::<ScriptOp>()
                    .map_err(|e| format!("[[role]] '{label}' script: {e}"))?;
            }
            if let Some(s) = &r.selection {
                s.parse::<Selection>()
                    .map_err(|e| format!("[[role]] '{label}' selection: {e}"))?;
            }
            if r.kind == RoleKind::ExternalCli {
                let src = r.source.as_deref().unwrap_or("");
                if !self.entries.iter().any(|e| e.source == src) {
                    return Err(format!(
                        "[[role]] '{label}': an external-cli needs `source` naming the source of an [[entry]] (claude_code or codex); got '{src}'"
                    ));
                }
            }
            names.push(label);
        }
        for (i, e) in self.entries.iter().enumerate() {
            let at = format!("[[entry]] #{} '{}'", i + 1, e.label);
            if !matches!(e.auth_type.as_str(), "oauth" | "api_key") {
                return Err(format!(
                    "{at} auth_type: '{}' (allowed values: oauth, api_key)",
                    e.auth_type
                ));
            }
            if !matches!(e.status.as_str(), "ok" | "exhausted") {
                return Err(format!(
                    "{at} status: '{}' (allowed values: ok, exhausted)",
                    e.status
                ));
            }
            let external = matches!(e.source.as_str(), "claude_code" | "codex");
            if e.external_newer && !external {
                return Err(format!(
                    "{at}: external_newer needs an external source (claude_code or codex)"
                ));
            }
            if external && e.auth_type != "oauth" {
                return Err(format!(
                    "{at}: an external source holds OAuth tokens; set auth_type = \"oauth\""
                ));
            }
            if external && self.entries.iter().filter(|o| o.source == e.source).count() > 1 {
                return Err(format!(
                    "{at}: only one entry may use source '{}'",
                    e.source
                ));
            }
        }
        for (i, p) in self.pauses.iter().enumerate() {
            let at = format!("[[pause]] #{}", i + 1);
            if Pause::from_name(&p.point).is_none() {
                let all: Vec<_> = Pause::ALL.iter().map(|p| p.name()).collect();
                return Err(format!(
                    "{at} point: '{}' (allowed values: {})",
                    p.point,
                    all.join(", ")
                ));
            }
            if let Some(op) = &p.op {
                if op_kind(op).is_none() {
                    return Err(format!(
                        "{at} op: '{op}' (allowed values: load_pool, select, mark_exhausted, add_entry, remove, reset_statuses)"
                    ));
                }
            }
            if !matches!(p.action.as_str(), "sleep" | "jitter" | "rendezvous") {
                return Err(format!(
                    "{at} action: '{}' (allowed values: sleep, jitter, rendezvous)",
                    p.action
                ));
            }
            for r in &p.roles {
                if !names.contains(r) {
                    return Err(format!(
                        "{at} roles: no role named '{r}' (roles: {})",
                        names.join(", ")
                    ));
                }
            }
        }
        if let Some(n) = &self.nemesis {
            for p in &n.kill_at {
                if Pause::from_name(p).is_none() {
                    let all: Vec<_> = Pause::ALL.iter().map(|p| p.name()).collect();
                    return Err(format!(
                        "[nemesis] kill_at: '{p}' (allowed values: {})",
                        all.join(", ")
                    ));
                }
            }
            if !(0.0..=1.0).contains(&n.probability) {
                return Err(format!(
                    "[nemesis] probability: {} is not between 0 and 1",
                    n.probability
                ));
            }
            for r in &n.roles {
                if !names.contains(r) {
                    return Err(format!(
                        "[nemesis] roles: no role named '{r}' (roles: {})",
                        names.join(", ")
                    ));
                }
            }
            if !self.barrier_parties().is_empty() {
                return Err("[nemesis] cannot be combined with rendezvous pause rules: a restarted process would never meet its barrier; use sleep or jitter".into());
            }
        }
        for s in self
            .expect
            .clean
            .iter()
            .chain(self.expect.finds.keys())
            .chain(self.expect.absent.keys())
        {
            Strategy::parse(s).map_err(|e| format!("[expect]: {e}"))?;
        }
        for (key, lists) in [
            ("finds", &self.expect.finds),
            ("absent", &self.expect.absent),
        ] {
            for list in lists.values() {
                crate::expect::check_names(list).map_err(|e| format!("[expect.{key}]: {e}"))?;
            }
        }
        Ok(())
    }

    /// The pause rules that apply to a role.
    pub fn rules_for(&self, role: &str) -> Vec<PauseRule> {
        self.pauses
            .iter()
            .filter(|p| p.roles.is_empty() || p.roles.iter().any(|r| r == role))
            .cloned()
            .collect()
    }

    /// How many processes take part in each rendezvous barrier.
    pub fn barrier_parties(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for r in &self.roles {
            let label = r.label();
            let mut mine: Vec<String> = self
                .rules_for(&label)
                .iter()
                .filter(|p| p.action == "rendezvous")
                .map(|p| p.barrier.clone().unwrap_or_else(|| p.point.clone()))
                .collect();
            mine.sort();
            mine.dedup();
            for b in mine {
                *out.entry(b).or_insert(0) += r.count;
            }
        }
        out
    }

    /// `--quick`: at most two iterations per process.
    pub fn make_quick(&mut self) {
        for r in &mut self.roles {
            r.ops = r.ops.min(2);
        }
    }

    /// Total worker processes.
    pub fn processes(&self) -> u32 {
        self.roles.iter().map(|r| r.count).sum()
    }

    /// Refuse a run of more than [`MAX_PROCESSES`] worker processes in all (after `--procs`).
    pub fn check_process_total(&self) -> Result<(), String> {
        let total: u64 = self.roles.iter().map(|r| u64::from(r.count)).sum();
        if total > u64::from(MAX_PROCESSES) {
            return Err(format!(
                "scenario '{}' would run {total} processes: use 1 to {MAX_PROCESSES} processes in all (lower --procs or the roles' count)",
                self.name
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_valid() {
        assert_eq!(Scenario::catalog().len(), CATALOG.len());
    }

    fn err(text: &str) -> String {
        Scenario::parse(text, "s.toml").unwrap_err().to_string()
    }

    const BASE: &str = "name = \"x\"\ndescription = \"y\"\n[[role]]\nkind = \"cli\"\n";

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let e = err("name = \"x\"\ndescription = \"y\"\n[[role]]\nkind = \"daemon\"\n");
        assert!(e.starts_with("s.toml:4:"), "{e}");
        assert!(e.contains("daemon") && e.contains("gateway"), "{e}");
        let e = err(&format!("{BASE}[pool]\nselection = \"best\"\n"));
        assert!(
            e.contains("[pool] selection") && e.contains("round_robin"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}[[pause]]\npoint = \"lunch\"\naction = \"sleep\"\n"
        ));
        assert!(
            e.contains("point: 'lunch'") && e.contains("before_redeem"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}[[pause]]\npoint = \"mid_write\"\nroles = [\"gw\"]\naction = \"sleep\"\n"
        ));
        assert!(e.contains("no role named 'gw'"), "{e}");
        let e = err(&format!(
            "{BASE}[[pause]]\npoint = \"mid_write\"\nop = \"frobnicate\"\naction = \"sleep\"\n"
        ));
        assert!(e.contains("op: 'frobnicate'"), "{e}");
        let e = err(&format!(
            "{BASE}[expect]\nfinds = {{ none = [\"explosion\"] }}\n"
        ));
        assert!(e.contains("unknown anomaly 'explosion'"), "{e}");
        let e = err(&format!("{BASE}[expect]\nclean = [\"lock=flok\"]\n"));
        assert!(e.contains("bad value 'flok'"), "{e}");
    }

    #[test]
    fn a_scenario_needs_a_role_and_consistent_entries() {
        assert!(err("name = \"x\"\ndescription = \"y\"\n").contains("no [[role]]"));
        let e = err(&format!(
            "{BASE}[[entry]]\nlabel = \"k\"\nauth_type = \"api_key\"\nexternal_newer = true\n"
        ));
        assert!(e.contains("external_newer needs an external source"), "{e}");
        let e = err("name = \"x\"\ndescription = \"y\"\n[[role]]\nkind = \"external-cli\"\nsource = \"codex\"\n");
        assert!(e.contains("external-cli needs `source`"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Mutated catalog scenarios: a scenario or an error naming the file, never a panic.
        #[test]
        fn mutated_scenarios_give_typed_answers(
            which in 0usize..CATALOG.len(),
            cut in 0usize..4096,
            flips in proptest::collection::vec((0usize..4096, 0x20u8..0x7f), 0..6),
        ) {
            let mut text = CATALOG[which].1.as_bytes().to_vec();
            for (i, b) in flips {
                let n = text.len();
                text[i % n] = b;
            }
            text.truncate(cut.max(1).min(text.len()));
            let text = String::from_utf8_lossy(&text).to_string();
            if let Err(e) = Scenario::parse(&text, "m.toml") {
                proptest::prop_assert!(e.to_string().starts_with("m.toml"));
            }
        }
    }

    #[test]
    fn barrier_parties_count_processes_not_rules() {
        let sc = Scenario::find("seed-8040").unwrap();
        let parties = sc.barrier_parties();
        assert_eq!(parties["torn"], 3);
        assert_eq!(parties["sync"], 3);
        let sc = Scenario::find("refresh-race").unwrap();
        assert_eq!(sc.barrier_parties()["before_redeem"], 4);
    }
}

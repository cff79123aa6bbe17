//! The roles a forked worker plays, modelled on who shares the upstream store:
//! a long-lived `gateway`, one-shot `cli` invocations, `auth-add` commands, and an
//! `external-cli` (another tool refreshing the same token family in its own file, lock-free).
//!
//! A role never stops on an operation error: the error is in the history (an `op_end` with
//! the message), and the role goes on, as the upstream programs do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pool_core::external::ExternalFormat;
use pool_core::real::{Hooks, RealOs, SystemClock};
use pool_core::world::{Clock, Issuer, Pause, UseOutcome};
use pool_core::{AuthType, Config, ExternalSource, NewEntry, Pool, Selected, Selection, Strategy};

use super::hooks::WorkerHooks;
use crate::history::Ev;
use crate::issuer::client::HttpIssuer;
use crate::scenario::{RoleKind, RoleSpec, Scenario, ScriptOp};

/// Everything one worker needs, computed by the parent before it forks.
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

/// The API key the `auth-add` process `proc` adds in its iteration `i`. The issuer knows
/// these keys from the start (see [`added_keys`]), as a provider knows keys it issued.
pub fn added_key(proc: u32, i: u32, seed: u64) -> String {
    format!(
        "sk-poolcheck-added-p{proc}-{i}-{:016x}{:016x}",
        seed,
        seed.rotate_left(17) ^ u64::from(i)
    )
}

/// Every key the run's `auth-add` processes will add (processes are numbered from 1 in role
/// order, as the fork driver numbers them).
pub fn added_keys(sc: &Scenario, seed: u64) -> Vec<String> {
    let mut keys = Vec::new();
    let mut proc = 0u32;
    for role in &sc.roles {
        for _ in 0..role.count {
            proc += 1;
            let adds = if !role.script.is_empty() {
                script_adds(&role.script_ops())
            } else if role.kind == RoleKind::AuthAdd {
                role.ops
            } else {
                0
            };
            keys.extend((0..adds).map(|i| added_key(proc, i, worker_seed(seed, proc))));
        }
    }
    keys
}

/// The seed of worker `proc` in a run seeded `seed`.
pub fn worker_seed(seed: u64, proc: u32) -> u64 {
    seed ^ (u64::from(proc) << 32)
}

/// The path of an external source's credentials file in a run directory.
pub fn external_path(dir: &Path, source: &str) -> PathBuf {
    dir.join(format!("{source}.credentials.json"))
}

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

/// How long a worker waits for the issuer (latency is at most a few hundred ms).
const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);

type WorkerPool<'h> = Pool<RealOs<&'h WorkerHooks<'h>>, HttpIssuer, SystemClock>;

/// Play the role to its end.
pub fn play(sc: &Scenario, plan: &WorkerPlan, hooks: &WorkerHooks<'_>) {
    let cfg = pool_config(sc, plan);
    let new_pool = || -> WorkerPool<'_> {
        Pool::new(
            RealOs::with_hooks(hooks),
            HttpIssuer::new(&plan.issuer_url, plan.proc, ISSUER_TIMEOUT),
            SystemClock,
            cfg.clone(),
        )
    };
    let think = || std::thread::sleep(Duration::from_millis(plan.role.think_ms));
    let external = plan.role.source.as_deref().and_then(|source| {
        Some((
            external_format(source)?,
            external_path(&plan.dir, source),
            HttpIssuer::new(&plan.issuer_url, plan.proc, ISSUER_TIMEOUT),
        ))
    });
    play_role(&plan.role, plan.proc, plan.seed, new_pool, think, || {
        if let Some((format, path, issuer)) = &external {
            external_refresh(path, *format, issuer, hooks, cfg.refresh_margin_ms);
        }
    });
}

/// The role loop every driver plays (forked workers and model threads alike): `new_pool`
/// makes a pool the way the driver does, `think` is the pause between iterations, `external`
/// is one refresh of an `external-cli`'s own file. Whatever credential a role presents is one
/// the run's issuer knows, whichever driver runs it: the keys an `auth-add` adds are the
/// [`added_key`]s of its process and seed, which every driver's issuer is given from the
/// start ([`added_keys`], through `setup::keys`).
pub fn play_role<O: pool_core::Os, I: Issuer, C: Clock>(
    role: &RoleSpec,
    proc: u32,
    seed: u64,
    new_pool: impl Fn() -> Pool<O, I, C>,
    think: impl Fn(),
    mut external: impl FnMut(),
) {
    if !role.script.is_empty() {
        run_script(new_pool, &role.script_ops(), proc, seed);
        return;
    }
    match role.kind {
        RoleKind::Gateway => {
            let pool = new_pool();
            // A gateway that cannot load (a torn read) tries again, as a restarted one would.
            for _ in 0..3 {
                if pool.load_pool().is_ok() {
                    break;
                }
            }
            for _ in 0..role.ops {
                if let Ok(Some(s)) = pool.select() {
                    use_and_react(&pool, s);
                }
                think();
            }
        }
        RoleKind::Cli => {
            for _ in 0..role.ops {
                let pool = new_pool();
                if pool.load_pool().is_ok() {
                    if let Ok(Some(s)) = pool.select() {
                        use_and_react(&pool, s);
                    }
                }
                think();
            }
        }
        RoleKind::AuthAdd => {
            for i in 0..role.ops {
                let pool = new_pool();
                if pool.load_pool().is_ok() {
                    let _ = pool.add_entry(NewEntry {
                        label: format!("added-by-p{proc}-{i}"),
                        auth_type: AuthType::ApiKey,
                        source: "manual".into(),
                        access_token: Some(added_key(proc, i, seed)),
                        refresh_token: None,
                        expires_at_ms: None,
                    });
                }
                think();
            }
        }
        RoleKind::ExternalCli => {
            for _ in 0..role.ops {
                external();
                think();
            }
        }
    }
}

/// How many `add` ops a script has (each adds the key [`added_key`] of its index).
pub fn script_adds(script: &[ScriptOp]) -> u32 {
    script.iter().filter(|o| **o == ScriptOp::Add).count() as u32
}

/// Play an explicit op list (a role's `script`, any driver): each op is one CLI-style
/// invocation on a fresh pool (load, then the op). Errors are in the history, as for roles.
pub fn run_script<O: pool_core::Os, I: Issuer, C: Clock>(
    new_pool: impl Fn() -> Pool<O, I, C>,
    script: &[ScriptOp],
    proc: u32,
    seed: u64,
) {
    let mut adds = 0;
    for op in script {
        let pool = new_pool();
        if pool.load_pool().is_err() {
            continue;
        }
        let nth = |n: u8| {
            let snap = pool.snapshot();
            let list = snap.entries(&pool.config().provider);
            (!list.is_empty()).then(|| list[usize::from(n) % list.len()].id.clone())
        };
        match *op {
            ScriptOp::Use => {
                if let Ok(Some(s)) = pool.select() {
                    use_and_react(&pool, s);
                }
            }
            ScriptOp::Exhaust(n) => {
                if let Some(id) = nth(n) {
                    let _ = pool.mark_exhausted_and_rotate(&id, 429, "rate_limited", None);
                }
            }
            ScriptOp::Add => {
                let _ = pool.add_entry(NewEntry {
                    label: format!("added-by-p{proc}-{adds}"),
                    auth_type: AuthType::ApiKey,
                    source: "manual".into(),
                    access_token: Some(added_key(proc, adds, seed)),
                    refresh_token: None,
                    expires_at_ms: None,
                });
                adds += 1;
            }
            ScriptOp::Remove(n) => {
                if let Some(id) = nth(n) {
                    let _ = pool.remove(&id);
                }
            }
            ScriptOp::Reset => {
                let _ = pool.reset_statuses();
            }
        }
    }
}

/// Use the credential (any driver's issuer); on a 429 or 401, mark it exhausted and use what the pool rotates to.
pub fn use_and_react<O: pool_core::Os, I: Issuer, C: Clock>(pool: &Pool<O, I, C>, s: Selected) {
    let mut current = Some(s);
    // At most one rotation per request, as upstream retries once.
    for _ in 0..2 {
        let Some(s) = current.take() else { return };
        let (code, reset) = match pool.issuer().use_credential(&s.credential) {
            UseOutcome::Accepted | UseOutcome::Unavailable(_) => return,
            UseOutcome::RateLimited { reset_at_ms } => (429, reset_at_ms),
            UseOutcome::Rejected => (401, None),
        };
        let reason = if code == 429 {
            "rate_limited"
        } else {
            "unauthorized"
        };
        current = pool
            .mark_exhausted_and_rotate(&s.id, code, reason, reset)
            .ok()
            .flatten();
    }
}

/// The external CLI's refresh: read its own file, refresh if the token is expiring, write the
/// file back (temp + rename, 0600). It takes no lock: that is the point of the role.
fn external_refresh(
    path: &Path,
    format: ExternalFormat,
    issuer: &HttpIssuer,
    hooks: &WorkerHooks<'_>,
    margin_ms: u64,
) {
    let Ok(old) = std::fs::read(path) else { return };
    let Some(creds) = format.parse(&old) else {
        return;
    };
    let now = SystemClock.now_ms();
    if creds.expires_at_ms.is_some_and(|t| t > now + margin_ms) {
        return;
    }
    hooks.pause(Pause::BeforeRedeem);
    let reply = issuer.redeem(&creds.refresh_token);
    hooks.pause(Pause::AfterRedeem);
    let Ok(g) = reply else { return };
    let new = pool_core::external::ExternalCreds {
        access_token: g.access_token,
        refresh_token: g.refresh_token,
        expires_at_ms: Some(SystemClock.now_ms() + g.expires_in_s * 1000),
    };
    let bytes = format.render(Some(&old), &new, now);
    let (begin, end) = super::setup::external_write(format.source(), &bytes);
    hooks.log().push(begin);
    if write_private(path, &bytes).is_ok() {
        hooks.log().push(end);
        hooks.log().push(Ev::ExternalWrite {
            path: path.display().to_string(),
            refresh: pool_core::digest::tag(&new.refresh_token),
        });
    }
}

/// Write a 0600 file atomically (temp + rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".poolcheck.")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

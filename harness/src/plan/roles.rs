//! The roles a worker plays, modelled on who shares the upstream store: a long-lived
//! `gateway`, one-shot `cli` invocations, `auth-add` commands, and an `external-cli` (another
//! tool refreshing the same token family in its own file, lock-free); or a role's explicit
//! `script` of ops. One role player ([`play_role`]) drives every pool under test
//! ([`PoolUnderTest`]): pool-core in this process ([`CorePool`], on real files or on the
//! simulated kernel) or an external subject over its protocol (`drive::subject`).
//!
//! A role never stops on an operation error: the error is in the history (an `op_end` with
//! the message), and the role goes on, as the upstream programs do. It stops only when the
//! pool under test itself is [`Broken`] (a subject that broke the protocol); pool-core never is.

use pool_core::world::{Clock, Issuer, UseOutcome};
use pool_core::{AuthType, NewEntry, Pool, Selected};

use crate::scenario::{RoleKind, RoleSpec, Scenario, ScriptOp};

/// Why a pool under test cannot go on (one line for the report, naming the pool and what it
/// did). The role stops; the run's verdict is `error`.
#[derive(Debug)]
pub struct Broken(pub String);

/// The pool a role is played on. Each method is one pool operation (or the use of a
/// credential with the run's API) and answers `Err` only when the pool itself is broken: an
/// operation that fails (a refused lock, a torn read) answers `Ok` with its failure, as the
/// history records it.
pub trait PoolUnderTest {
    /// A selected credential.
    type Selected;
    /// Start one invocation (a CLI process's life, a script op): pool-core makes a fresh pool
    /// with nothing loaded; a subject process serves all of a role's invocations.
    fn open(&mut self) {}
    /// Load the store; whether that succeeded.
    fn load_pool(&mut self) -> Result<bool, Broken>;
    /// Select a credential (none when the select failed or nothing is usable).
    fn select(&mut self) -> Result<Option<Self::Selected>, Broken>;
    /// Use `s` with the run's API: `Some((code, reset_at_ms))` when it was refused (429 or
    /// 401), `None` when it was accepted (or the API could not be asked).
    fn use_credential(&mut self, s: &Self::Selected) -> Result<Option<(u16, Option<u64>)>, Broken>;
    /// Mark `s` exhausted and select what the pool rotates to.
    fn mark_exhausted_and_rotate(
        &mut self,
        s: &Self::Selected,
        code: u16,
        reason: &str,
        reset_at_ms: Option<u64>,
    ) -> Result<Option<Self::Selected>, Broken>;
    fn add_entry(&mut self, new: NewEntry) -> Result<(), Broken>;
    /// Mark the `n`-th entry (mod the count) exhausted (a script's `exhaust:N`).
    fn exhaust_nth(&mut self, n: u8) -> Result<(), Broken>;
    /// Remove the `n`-th entry (mod the count) (a script's `remove:N`).
    fn remove_nth(&mut self, n: u8) -> Result<(), Broken>;
    fn reset_statuses(&mut self) -> Result<(), Broken>;
    /// End the role cleanly (a subject: close its stdin and wait briefly for it).
    fn finish(&mut self) -> Result<(), Broken> {
        Ok(())
    }
    /// Stop at once, after a failure (a subject: kill its process group).
    fn abort(&mut self) {}
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
/// order, as every driver numbers them).
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
            keys.extend((0..adds).map(|i| added_key(proc, i, super::worker_seed(seed, proc))));
        }
    }
    keys
}

/// How many `add` ops a script has (each adds the key [`added_key`] of its index).
pub fn script_adds(script: &[ScriptOp]) -> u32 {
    script.iter().filter(|o| **o == ScriptOp::Add).count() as u32
}

/// The entry the `auth-add` process `proc` adds in its `i`-th add.
fn new_key(proc: u32, i: u32, seed: u64) -> NewEntry {
    NewEntry {
        label: format!("added-by-p{proc}-{i}"),
        auth_type: AuthType::ApiKey,
        source: "manual".into(),
        access_token: Some(added_key(proc, i, seed)),
        refresh_token: None,
        expires_at_ms: None,
    }
}

/// Play `role` (process `proc`, worker seed `seed`) on `pool` to its end: `think` is the
/// pause between iterations, `external` is one refresh of an `external-cli`'s own file.
/// Whatever credential a role presents is one the run's issuer knows, whichever driver runs
/// it: the keys an `auth-add` adds are the [`added_key`]s of its process and seed, which every
/// driver's issuer is given from the start ([`added_keys`], through `setup::keys`).
pub fn play_role<P: PoolUnderTest>(
    role: &RoleSpec,
    proc: u32,
    seed: u64,
    pool: &mut P,
    think: impl Fn(),
    mut external: impl FnMut(),
) -> Result<(), Broken> {
    if !role.script.is_empty() {
        return run_script(pool, &role.script_ops(), proc, seed);
    }
    match role.kind {
        RoleKind::Gateway => {
            pool.open();
            // A gateway that cannot load (a torn read) tries again, as a restarted one would.
            for _ in 0..3 {
                if pool.load_pool()? {
                    break;
                }
            }
            for _ in 0..role.ops {
                if let Some(s) = pool.select()? {
                    use_and_react(pool, s)?;
                }
                think();
            }
        }
        RoleKind::Cli => {
            for _ in 0..role.ops {
                pool.open();
                if pool.load_pool()? {
                    if let Some(s) = pool.select()? {
                        use_and_react(pool, s)?;
                    }
                }
                think();
            }
        }
        RoleKind::AuthAdd => {
            for i in 0..role.ops {
                pool.open();
                if pool.load_pool()? {
                    pool.add_entry(new_key(proc, i, seed))?;
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
    Ok(())
}

/// Play an explicit op list (a role's `script`, any driver): each op is one CLI-style
/// invocation on a fresh pool (load, then the op). Errors are in the history, as for roles.
fn run_script<P: PoolUnderTest>(
    pool: &mut P,
    script: &[ScriptOp],
    proc: u32,
    seed: u64,
) -> Result<(), Broken> {
    let mut adds = 0;
    for op in script {
        pool.open();
        if !pool.load_pool()? {
            continue;
        }
        match *op {
            ScriptOp::Use => {
                if let Some(s) = pool.select()? {
                    use_and_react(pool, s)?;
                }
            }
            ScriptOp::Exhaust(n) => pool.exhaust_nth(n)?,
            ScriptOp::Add => {
                pool.add_entry(new_key(proc, adds, seed))?;
                adds += 1;
            }
            ScriptOp::Remove(n) => pool.remove_nth(n)?,
            ScriptOp::Reset => pool.reset_statuses()?,
        }
    }
    Ok(())
}

/// Use the credential; on a 429 or 401, mark it exhausted and use what the pool rotates to.
fn use_and_react<P: PoolUnderTest>(pool: &mut P, s: P::Selected) -> Result<(), Broken> {
    let mut current = Some(s);
    // At most one rotation per request, as upstream retries once.
    for _ in 0..2 {
        let Some(s) = current.take() else {
            return Ok(());
        };
        let Some((code, reset)) = pool.use_credential(&s)? else {
            return Ok(());
        };
        let reason = if code == 429 {
            "rate_limited"
        } else {
            "unauthorized"
        };
        current = pool.mark_exhausted_and_rotate(&s, code, reason, reset)?;
    }
    Ok(())
}

/// Pool-core as the pool under test, in this process, on any world (real files and HTTP, or
/// the simulated kernel and issuer): `new_pool` makes a pool the way the driver does, and each
/// invocation ([`PoolUnderTest::open`]) gets a fresh one. Never [`Broken`].
pub struct CorePool<O: pool_core::Os, I: Issuer, C: Clock, F: Fn() -> Pool<O, I, C>> {
    new_pool: F,
    pool: Option<Pool<O, I, C>>,
}

impl<O: pool_core::Os, I: Issuer, C: Clock, F: Fn() -> Pool<O, I, C>> CorePool<O, I, C, F> {
    pub fn new(new_pool: F) -> Self {
        CorePool {
            new_pool,
            pool: None,
        }
    }

    fn pool(&mut self) -> &Pool<O, I, C> {
        let new_pool = &self.new_pool;
        self.pool.get_or_insert_with(new_pool)
    }

    /// The id of the `n`-th entry (mod the count) of the loaded store.
    fn nth(&mut self, n: u8) -> Option<String> {
        let pool = self.pool();
        let snap = pool.snapshot();
        let list = snap.entries(&pool.config().provider);
        (!list.is_empty()).then(|| list[usize::from(n) % list.len()].id.clone())
    }
}

impl<O: pool_core::Os, I: Issuer, C: Clock, F: Fn() -> Pool<O, I, C>> PoolUnderTest
    for CorePool<O, I, C, F>
{
    type Selected = Selected;

    fn open(&mut self) {
        self.pool = Some((self.new_pool)());
    }

    fn load_pool(&mut self) -> Result<bool, Broken> {
        Ok(self.pool().load_pool().is_ok())
    }

    fn select(&mut self) -> Result<Option<Selected>, Broken> {
        Ok(self.pool().select().ok().flatten())
    }

    fn use_credential(&mut self, s: &Selected) -> Result<Option<(u16, Option<u64>)>, Broken> {
        Ok(match self.pool().issuer().use_credential(&s.credential) {
            UseOutcome::Accepted | UseOutcome::Unavailable(_) => None,
            UseOutcome::RateLimited { reset_at_ms } => Some((429, reset_at_ms)),
            UseOutcome::Rejected => Some((401, None)),
        })
    }

    fn mark_exhausted_and_rotate(
        &mut self,
        s: &Selected,
        code: u16,
        reason: &str,
        reset_at_ms: Option<u64>,
    ) -> Result<Option<Selected>, Broken> {
        Ok(self
            .pool()
            .mark_exhausted_and_rotate(&s.id, code, reason, reset_at_ms)
            .ok()
            .flatten())
    }

    fn add_entry(&mut self, new: NewEntry) -> Result<(), Broken> {
        let _ = self.pool().add_entry(new);
        Ok(())
    }

    fn exhaust_nth(&mut self, n: u8) -> Result<(), Broken> {
        if let Some(id) = self.nth(n) {
            let _ = self
                .pool()
                .mark_exhausted_and_rotate(&id, 429, "rate_limited", None);
        }
        Ok(())
    }

    fn remove_nth(&mut self, n: u8) -> Result<(), Broken> {
        if let Some(id) = self.nth(n) {
            let _ = self.pool().remove(&id);
        }
        Ok(())
    }

    fn reset_statuses(&mut self) -> Result<(), Broken> {
        let _ = self.pool().reset_statuses();
        Ok(())
    }
}

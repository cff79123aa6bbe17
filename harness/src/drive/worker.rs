//! What a forked worker runs once it has its plan: the plan's role player
//! ([`crate::plan::roles::play_role`]) on its pool under test (pool-core on real files and the
//! loopback issuer, [`core_pool`], or an external subject, `subject::start`), after the start
//! gate opens; and an `external-cli`'s refresh of its own file.
//!
//! Guarantees: a pool under test that breaks (a subject that failed) ends this worker only,
//! with its reason recorded as the worker's [`Ev::ProcExit`] and exit code [`POOL_BROKEN`];
//! anything else ends with exit 0 (operation errors are in the history), or 4 when the start
//! gate never opened.

use std::path::Path;
use std::time::Duration;

use pool_core::external::{ExternalCreds, ExternalFormat};
use pool_core::real::{Hooks, RealOs, SystemClock};
use pool_core::world::{Clock, Issuer, Pause};
use pool_core::{Pool, Selected};

use super::hooks::WorkerHooks;
use super::setup::write_private;
use crate::history::Ev;
use crate::issuer::client::HttpIssuer;
use crate::plan::roles::{play_role, Broken, CorePool, PoolUnderTest};
use crate::plan::setup::external_write;
use crate::plan::{external_format, external_path, pool_config, WorkerPlan};
use crate::scenario::Scenario;

/// The exit code of a worker whose pool under test broke (a subject that failed).
pub const POOL_BROKEN: i32 = 5;

/// The exit code of a worker whose start gate never opened.
pub const NO_GATE: i32 = 4;

/// How long a worker waits for the issuer (latency is at most a few hundred ms).
const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);

/// Pool-core, configured by the plan, on this process's real files and the loopback issuer.
pub fn core_pool<'h>(
    sc: &Scenario,
    plan: &WorkerPlan,
    hooks: &'h WorkerHooks<'h>,
) -> impl PoolUnderTest<Selected = Selected> + 'h {
    let cfg = pool_config(sc, plan);
    let url = plan.issuer_url.clone();
    let proc = plan.proc;
    CorePool::new(move || {
        Pool::new(
            RealOs::with_hooks(hooks),
            HttpIssuer::new(&url, proc, ISSUER_TIMEOUT),
            SystemClock,
            cfg.clone(),
        )
    })
}

/// Play the plan's role on `pool` once `gate` opens (`gate` counts this worker ready and
/// waits); returns the worker's exit code.
pub fn play<P: PoolUnderTest>(
    sc: &Scenario,
    plan: &WorkerPlan,
    hooks: &WorkerHooks<'_>,
    pool: Result<P, Broken>,
    gate: impl FnOnce() -> bool,
) -> i32 {
    // A pool that could not start still passes the gate (counted ready), so no one waits for it.
    let opened = gate();
    let mut pool = match pool {
        Ok(p) => p,
        Err(b) => return broken(hooks, b),
    };
    if !opened {
        pool.abort();
        return NO_GATE;
    }
    let margin_ms = pool_config(sc, plan).refresh_margin_ms;
    let think = || std::thread::sleep(Duration::from_millis(plan.role.think_ms));
    let external = plan.role.source.as_deref().and_then(|source| {
        Some((
            external_format(source)?,
            external_path(&plan.dir, source),
            HttpIssuer::new(&plan.issuer_url, plan.proc, ISSUER_TIMEOUT),
        ))
    });
    let played = play_role(&plan.role, plan.proc, plan.seed, &mut pool, think, || {
        if let Some((format, path, issuer)) = &external {
            external_refresh(path, *format, issuer, hooks, margin_ms);
        }
    });
    match played.and_then(|()| pool.finish()) {
        Ok(()) => 0,
        Err(b) => {
            pool.abort();
            broken(hooks, b)
        }
    }
}

/// Record why the pool under test broke; the worker's exit code.
fn broken(hooks: &WorkerHooks<'_>, Broken(status): Broken) -> i32 {
    hooks.log().push(Ev::ProcExit {
        status,
        crashed: true,
    });
    POOL_BROKEN
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
    let new = ExternalCreds {
        access_token: g.access_token,
        refresh_token: g.refresh_token,
        expires_at_ms: Some(SystemClock.now_ms() + g.expires_in_s * 1000),
    };
    let bytes = format.render(Some(&old), &new, now);
    let (begin, end) = external_write(format.source(), &bytes);
    hooks.log().push(begin);
    if write_private(path, &bytes).is_ok() {
        hooks.log().push(end);
        hooks.log().push(Ev::ExternalWrite {
            path: path.display().to_string(),
            refresh: pool_core::digest::tag(&new.refresh_token),
        });
    }
}

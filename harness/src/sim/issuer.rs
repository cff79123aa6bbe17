//! The simulated issuer and clock: pool-core's [`Issuer`] over one shared [`IssuerState`] (the
//! very rules the loopback server runs), whose ledger goes into the execution's [`Recorder`]
//! stamped by the logical clock; and a logical [`Clock`].
//!
//! A token request (and a credential use) is one atomic step under the issuer's lane of the
//! kernel ([`SharedKernel::issuer_step`]), as in the server (which applies the rules under one
//! mutex): a scheduling point, so the checker orders every request against every other one
//! (and, when executions may crash, against every kernel call: then every step takes one
//! global lane). A dead process's
//! request (the machine crashed since it started) never reaches the issuer: it fails as a
//! request that got no answer.

use std::sync::{Arc, Mutex};

use pool_core::world::{Clock, Grant, Issuer, RedeemError, UseOutcome};

use super::facade::Facade;
use super::kernel::Proc;
use super::os::{Recorder, SharedKernel};
use crate::history::{Record, UseVerdict};
use crate::issuer::rules::{IssuerState, LedgerSink};

/// A ledger sink that appends to the execution's history, re-stamped with the logical clock.
pub struct RecorderSink(pub Arc<Recorder>);

impl LedgerSink for RecorderSink {
    fn append(&mut self, record: &Record) {
        self.0.push(record.proc, record.ev.clone());
    }
}

/// Logical time in Unix ms: a fixed start plus one ms per recorded event, so time only moves
/// forward and every schedule is deterministic.
#[derive(Clone)]
pub struct LogicalClock {
    pub start_ms: u64,
    pub rec: Arc<Recorder>,
}

impl Clock for LogicalClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.rec.ticks()
    }
}

/// The issuer's state. Its scheduling point is the kernel's issuer lane
/// ([`SharedKernel::issuer_step`]); this plain mutex is never contended.
pub type SharedIssuer = Arc<Mutex<IssuerState>>;

/// One simulated process's connection to the shared issuer.
pub struct SimIssuer<F: Facade> {
    pub proc: Proc,
    /// The machine's life the process was started in, and the kernel that says whether it
    /// still runs.
    pub life: u64,
    pub kernel: Arc<SharedKernel<F>>,
    pub state: SharedIssuer,
    pub clock: LogicalClock,
}

/// What a dead process's request gets.
const NO_ANSWER: &str = "no answer: the machine crashed";

impl<F: Facade> SimIssuer<F> {
    /// One request: a scheduling point (the mutex), then the rules, atomically; `None` (and
    /// no scheduling point once known) when the process is dead.
    fn with<R>(&self, f: impl FnOnce(&mut IssuerState, u64) -> R) -> Option<R> {
        self.kernel.issuer_step(self.life, || {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.clock.now_ms();
            f(&mut st, now)
        })
    }
}

impl<F: Facade> Issuer for SimIssuer<F> {
    fn redeem(&self, refresh_token: &str) -> Result<Grant, RedeemError> {
        let reply = self.with(|st, now| match st.redeem(self.proc, refresh_token, now) {
            Ok(pair) => Ok(Grant {
                expires_in_s: pair.expires_in_s(now),
                access_token: pair.access,
                refresh_token: pair.refresh,
            }),
            Err(reason) => Err(RedeemError::Refused {
                error: reason.error().to_string(),
            }),
        });
        reply.unwrap_or_else(|| Err(RedeemError::Unavailable(NO_ANSWER.into())))
    }

    fn use_credential(&self, credential: &str) -> UseOutcome {
        self.with(|st, now| {
            let reset = st.config().rate_limit_reset_ms;
            match st.use_credential(self.proc, credential, now) {
                UseVerdict::Accepted => UseOutcome::Accepted,
                UseVerdict::RateLimited => UseOutcome::RateLimited {
                    reset_at_ms: reset.map(|w| now + w),
                },
                UseVerdict::Expired | UseVerdict::Revoked | UseVerdict::Unknown => {
                    UseOutcome::Rejected
                }
            }
        })
        .unwrap_or_else(|| UseOutcome::Unavailable(NO_ANSWER.into()))
    }
}

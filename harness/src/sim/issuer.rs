//! The simulated issuer and clock: pool-core's [`Issuer`] over one shared [`IssuerState`] (the
//! very rules the loopback server runs), whose ledger goes into the execution's [`Recorder`]
//! stamped by the logical clock; and a logical [`Clock`].
//!
//! A token request is one atomic step, as in the server (which applies the rules under one
//! mutex); the race window around it is the pool's `before_redeem` / `after_redeem` pauses,
//! where the model yields.

use std::sync::{Arc, Mutex};

use pool_core::world::{Clock, Grant, Issuer, RedeemError, UseOutcome};

use super::kernel::Proc;
use super::os::Recorder;
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

/// One simulated process's connection to the shared issuer.
#[derive(Clone)]
pub struct SimIssuer {
    pub proc: Proc,
    pub state: Arc<Mutex<IssuerState>>,
    pub clock: LogicalClock,
}

impl SimIssuer {
    fn with<R>(&self, f: impl FnOnce(&mut IssuerState, u64) -> R) -> R {
        let now = self.clock.now_ms();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st, now)
    }
}

impl Issuer for SimIssuer {
    fn redeem(&self, refresh_token: &str) -> Result<Grant, RedeemError> {
        self.with(|st, now| match st.redeem(self.proc, refresh_token, now) {
            Ok(pair) => Ok(Grant {
                expires_in_s: pair.expires_in_s(now),
                access_token: pair.access,
                refresh_token: pair.refresh,
            }),
            Err(reason) => Err(RedeemError::Refused {
                error: reason.error().to_string(),
            }),
        })
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
    }
}

//! What the criterion benches (`benches/ops.rs`) and the profiling loop (`examples/op_loop.rs`)
//! share: the store every measurement starts from, and an issuer that answers at once.

use std::cell::Cell;

use pool_core::real::SystemClock;
use pool_core::world::{Clock, Grant, Issuer, RedeemError, UseOutcome};
use pool_core::{AuthType, Entry, Store};

/// An issuer in the same process that answers at once: every refresh token is good once.
#[derive(Default)]
pub struct InstantIssuer {
    next: Cell<u64>,
}

impl Issuer for InstantIssuer {
    fn redeem(&self, _refresh_token: &str) -> Result<Grant, RedeemError> {
        let n = self.next.get() + 1;
        self.next.set(n);
        Ok(Grant {
            access_token: format!("at-bench-{n:016x}"),
            refresh_token: format!("rt-bench-{n:016x}"),
            expires_in_s: 3600,
        })
    }
    fn use_credential(&self, _credential: &str) -> UseOutcome {
        UseOutcome::Accepted
    }
}

/// The store every measurement starts from: one OAuth entry and three API keys.
pub fn initial_store() -> Vec<u8> {
    let now = SystemClock.now_ms();
    let mut s = Store::default();
    let list = s.entries_mut("anthropic");
    let mut e = Entry::new("0a0a0a", "oauth", AuthType::Oauth, "manual");
    e.access_token = Some("at-bench-initial-0000000000000000".into());
    e.refresh_token = Some("rt-bench-initial-0000000000000000".into());
    e.expires_at_ms = Some(now + 3_600_000);
    list.push(e);
    for i in 1..4 {
        let mut e = Entry::new(
            &format!("{i:06x}"),
            &format!("key-{i}"),
            AuthType::ApiKey,
            "manual",
        );
        e.priority = i;
        e.access_token = Some(format!("sk-bench-{i:032x}"));
        list.push(e);
    }
    s.to_bytes()
}

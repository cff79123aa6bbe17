//! The issuer's token rules, with no I/O of their own: the single source of truth for what an
//! OAuth provider does with a refresh grant or an API call.
//!
//! Guarantees:
//! - RFC 6749 §6 + RFC 9700 §4.14.2 refresh-token rotation: every refresh token is redeemable
//!   once. The first redemption of a family's current token issues the next generation
//!   ([`RedeemVerdict::Rotated`]). A repeat within [`IssuerConfig::grace_ms`] of the first
//!   redemption returns the very pair that first redemption returned ([`RedeemVerdict::Grace`]).
//!   A repeat after the grace period is refused with `invalid_grant` and revokes the whole family
//!   ([`RedeemVerdict::Reused`] plus [`Ev::FamilyRevoked`]); every token of a revoked family is
//!   refused from then on ([`RedeemVerdict::Revoked`]), and unknown tokens are refused
//!   ([`RedeemVerdict::Unknown`]).
//! - Every mint, redemption, revocation and API use is reported to the injected [`LedgerSink`]
//!   as a [`Record`], in the order the rules applied them, with tokens only as
//!   [`pool_core::digest::tag`]s. Times of day come in as `now_ms` arguments; record stamps come
//!   from an injectable nanosecond clock (default [`history::now_ns`]).
//! - Tokens look like real ones (43 characters of unpadded URL-safe base64 of 32 bytes) and come
//!   from a small RNG seeded with [`IssuerConfig::seed`]: the same seed and the same sequence of
//!   calls give the same tokens.
//!
//! Not guaranteed: these are not cryptographically secure tokens (they are test fixtures), and
//! when several requests race in a server the sequence of calls, hence which token goes to whom,
//! depends on the interleaving. Nothing here sleeps, locks or does I/O: latency, concurrency
//! and transport belong to [`super::server`].

use std::collections::HashMap;

use pool_core::digest::tag;
use serde::{Deserialize, Serialize};

use crate::history::{self, Ev, ProcId, Record, RedeemVerdict, UseVerdict};

/// How the issuer behaves. Every field has a default, so a scenario file names only what it
/// changes; unknown fields are an error (a misspelt setting must not be silently ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    /// Latency of every request, drawn uniformly from `min..=max` milliseconds. For a refresh
    /// grant it elapses before the rules run: it is the race window.
    pub latency_ms: (u64, u64),
    /// Reuse grace period (Auth0's reuse interval, Cognito's 0-60 s): a repeat of a redeemed
    /// refresh token strictly less than this many ms after its first redemption gets the same
    /// pair again. 0 (the default) disables it.
    pub grace_ms: u64,
    /// Lifetime of an access token (`expires_in`).
    pub access_lifetime_s: u64,
    /// If true, a rotation immediately revokes the family's older access tokens.
    pub revoke_access_on_rotate: bool,
    /// Seed of the token RNG (and, in the server, of the latency RNG).
    pub seed: u64,
    /// API keys the resource API accepts.
    pub api_keys: Vec<String>,
    /// API keys the resource API answers with 429.
    pub rate_limited_keys: Vec<String>,
    /// When set, a 429 says the limit resets this many ms after the call; when unset, a 429
    /// carries no reset time (as many real APIs).
    pub rate_limit_reset_ms: Option<u64>,
    /// What access tokens look like: opaque random text, or JWTs a client can read `exp` from.
    pub access_token_format: AccessTokenFormat,
}

/// The shape of minted access tokens. The ledger, tags and rules are the same for both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenFormat {
    /// 43 URL-safe random characters.
    #[default]
    Opaque,
    /// `header.payload.signature`, base64url, with claims `exp` and `iat` (Unix seconds) and
    /// `sub` (the family); the signature is 43 random characters (nothing checks it).
    Jwt,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            latency_ms: (0, 0),
            grace_ms: 0,
            access_lifetime_s: 3600,
            revoke_access_on_rotate: false,
            seed: 0x5eed_0a17_c0de_0001,
            api_keys: Vec::new(),
            rate_limited_keys: Vec::new(),
            rate_limit_reset_ms: None,
            access_token_format: AccessTokenFormat::Opaque,
        }
    }
}

impl IssuerConfig {
    /// Check the settings for contradictions, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = self.latency_ms;
        if lo > hi {
            return Err(format!(
                "issuer.latency_ms: min {lo} is greater than max {hi}"
            ));
        }
        if self.access_lifetime_s == 0 {
            return Err("issuer.access_lifetime_s: must be at least 1".to_string());
        }
        if let Some(k) = self.api_keys.iter().find(|k| k.is_empty()) {
            return Err(format!("issuer.api_keys: empty key {k:?}"));
        }
        if self.rate_limited_keys.iter().any(|k| k.is_empty()) {
            return Err("issuer.rate_limited_keys: empty key".to_string());
        }
        Ok(())
    }
}

/// A token pair the issuer minted: generation `generation` of family `family`.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedPair {
    pub family: u32,
    pub generation: u32,
    pub access: String,
    pub refresh: String,
    /// Unix ms at which the access token expires.
    pub expires_at_ms: u64,
}

impl IssuedPair {
    /// `expires_in` as the token endpoint reports it at `now_ms` (whole seconds, rounded up,
    /// never negative).
    pub fn expires_in_s(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)
    }
}

/// Tokens are secrets: Debug shows tags only.
impl std::fmt::Debug for IssuedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedPair")
            .field("family", &self.family)
            .field("generation", &self.generation)
            .field("access", &tag(&self.access))
            .field("refresh", &tag(&self.refresh))
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Why a refresh grant was refused. On the wire every reason is `invalid_grant` (RFC 6749
/// §5.2); the reason shows in `error_description` and in the ledger verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// Never issued here.
    Unknown,
    /// Its family was revoked earlier.
    Revoked,
    /// Presented again after its grace period: this request revoked the family.
    Reused,
}

impl RefusalReason {
    /// The OAuth error code.
    pub fn error(self) -> &'static str {
        "invalid_grant"
    }

    /// A human-readable `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            RefusalReason::Unknown => "refresh token unknown",
            RefusalReason::Revoked => "refresh token revoked",
            RefusalReason::Reused => "refresh token reused: token family revoked",
        }
    }

    pub fn verdict(self) -> RedeemVerdict {
        match self {
            RefusalReason::Unknown => RedeemVerdict::Unknown,
            RefusalReason::Revoked => RedeemVerdict::Revoked,
            RefusalReason::Reused => RedeemVerdict::Reused,
        }
    }
}

/// Where the rules report what they did. Implementations must not fail the rule step: a sink
/// that cannot write remembers the failure and reports it through [`LedgerSink::failure`].
pub trait LedgerSink: Send {
    fn append(&mut self, record: &Record);
    /// The first failure to record, if any: a ledger with a hole is no longer ground truth.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// A sink that keeps records in memory (tests, the simulated issuer).
#[derive(Clone, Debug, Default)]
pub struct MemLedger(pub std::sync::Arc<std::sync::Mutex<Vec<Record>>>);

impl MemLedger {
    pub fn records(&self) -> Vec<Record> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl LedgerSink for MemLedger {
    fn append(&mut self, record: &Record) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record.clone());
    }
}

/// SplitMix64: tiny, seedable, and good enough for test tokens and latency draws.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (modulo bias is irrelevant at these ranges).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.next_u64() % span,
            None => self.next_u64(),
        }
    }

    /// 32 random bytes as 43 characters of unpadded URL-safe base64.
    pub fn token(&mut self) -> String {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        base64url(&bytes)
    }
}

/// Unpadded URL-safe base64 (RFC 4648 §5).
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        let chars = c.len() + 1;
        for i in 0..chars {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Family {
    revoked: bool,
    newest: u32,
}

#[derive(Clone, Debug)]
struct RefreshInfo {
    family: u32,
    /// First redemption: when, and the pair it returned.
    redeemed: Option<(u64, IssuedPair)>,
}

#[derive(Clone, Debug)]
struct AccessInfo {
    family: u32,
    generation: u32,
    expires_at_ms: u64,
}

/// The issuer's whole state: every token it ever minted, and what became of it.
pub struct IssuerState {
    config: IssuerConfig,
    rng: Rng,
    families: Vec<Family>,
    refresh: HashMap<String, RefreshInfo>,
    access: HashMap<String, AccessInfo>,
    sink: Box<dyn LedgerSink>,
    clock_ns: fn() -> u64,
    /// Whether the [`Ev::IssuerRules`] record has gone to the sink yet.
    announced: bool,
}

impl IssuerState {
    /// A fresh issuer with no families, reporting to `sink`, stamping records with
    /// [`history::now_ns`].
    pub fn new(config: IssuerConfig, sink: Box<dyn LedgerSink>) -> IssuerState {
        let rng = Rng::new(config.seed);
        IssuerState {
            config,
            rng,
            families: Vec::new(),
            refresh: HashMap::new(),
            access: HashMap::new(),
            sink,
            clock_ns: history::now_ns,
            announced: false,
        }
    }

    /// A copy of this issuer (every family, token and its fate, the RNG, the clock) that
    /// reports to `sink` from now on: the simulated world builds its issuer once per model
    /// check and starts every execution from a copy.
    pub fn fork(&self, sink: Box<dyn LedgerSink>) -> IssuerState {
        IssuerState {
            config: self.config.clone(),
            rng: self.rng.clone(),
            families: self.families.clone(),
            refresh: self.refresh.clone(),
            access: self.access.clone(),
            sink,
            clock_ns: self.clock_ns,
            announced: self.announced,
        }
    }

    /// Replace the clock that stamps records (a simulated issuer uses its own time).
    pub fn with_ns_clock(mut self, clock_ns: fn() -> u64) -> IssuerState {
        self.clock_ns = clock_ns;
        self
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The sink's first failure, if any (see [`LedgerSink::failure`]).
    pub fn ledger_failure(&self) -> Option<String> {
        self.sink.failure()
    }

    /// Number of families minted so far.
    pub fn family_count(&self) -> u32 {
        self.families.len() as u32
    }

    /// Whether `family` exists and has been revoked.
    pub fn is_revoked(&self, family: u32) -> bool {
        self.families
            .get(family as usize)
            .is_some_and(|f| f.revoked)
    }

    /// Newest generation of `family`, if it exists.
    pub fn newest_generation(&self, family: u32) -> Option<u32> {
        self.families.get(family as usize).map(|f| f.newest)
    }

    fn emit(&mut self, proc: ProcId, ev: Ev) {
        if !self.announced {
            // The rules first (stamped like every record, by the issuer's clock), so the
            // checkers can tell a token still inside its grace period from a dead one.
            self.announced = true;
            let grace_ms = self.config.grace_ms;
            self.emit(0, Ev::IssuerRules { grace_ms });
        }
        let record = Record {
            t_ns: (self.clock_ns)(),
            proc,
            ev,
        };
        self.sink.append(&record);
    }

    fn fresh_token(&mut self) -> String {
        loop {
            let t = self.rng.token();
            if !self.refresh.contains_key(&t) && !self.access.contains_key(&t) {
                return t;
            }
        }
    }

    fn issue(&mut self, proc: ProcId, family: u32, generation: u32, now_ms: u64) -> IssuedPair {
        let expires_at_ms =
            now_ms.saturating_add(self.config.access_lifetime_s.saturating_mul(1000));
        self.issue_until(proc, family, generation, now_ms, expires_at_ms)
    }

    fn issue_until(
        &mut self,
        proc: ProcId,
        family: u32,
        generation: u32,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> IssuedPair {
        let access = match self.config.access_token_format {
            AccessTokenFormat::Opaque => self.fresh_token(),
            // The signature is fresh random text, so the token is unique like an opaque one.
            AccessTokenFormat::Jwt => pool_core::jwt::encode(
                &format!("family-{family}"),
                now_ms / 1000,
                expires_at_ms / 1000,
                &self.fresh_token(),
            ),
        };
        let refresh = self.fresh_token();
        self.refresh.insert(
            refresh.clone(),
            RefreshInfo {
                family,
                redeemed: None,
            },
        );
        self.access.insert(
            access.clone(),
            AccessInfo {
                family,
                generation,
                expires_at_ms,
            },
        );
        self.families[family as usize].newest = generation;
        self.emit(
            proc,
            Ev::Issued {
                family,
                generation,
                refresh: tag(&refresh),
                access: tag(&access),
                expires_at_ms,
            },
        );
        IssuedPair {
            family,
            generation,
            access,
            refresh,
            expires_at_ms,
        }
    }

    /// Start a new token family: its generation-0 pair (recorded as process 0, the harness).
    pub fn mint_family(&mut self, now_ms: u64) -> IssuedPair {
        self.mint_family_for(0, now_ms)
    }

    /// [`IssuerState::mint_family`] on behalf of process `proc`.
    pub fn mint_family_for(&mut self, proc: ProcId, now_ms: u64) -> IssuedPair {
        let until = now_ms.saturating_add(self.config.access_lifetime_s.saturating_mul(1000));
        self.mint_family_until(proc, now_ms, until)
    }

    /// A new family whose generation-0 access token expires at `expires_at_ms` (a scenario's
    /// initial token with its own remaining life).
    pub fn mint_family_until(
        &mut self,
        proc: ProcId,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> IssuedPair {
        let family = self.families.len() as u32;
        self.families.push(Family {
            revoked: false,
            newest: 0,
        });
        self.issue_until(proc, family, 0, now_ms, expires_at_ms)
    }

    /// A refresh grant (RFC 6749 §6) for `refresh`, requested by process `proc` at `now_ms`.
    /// See the module doc for the rules.
    pub fn redeem(
        &mut self,
        proc: ProcId,
        refresh: &str,
        now_ms: u64,
    ) -> Result<IssuedPair, RefusalReason> {
        let Some(info) = self.refresh.get(refresh).cloned() else {
            return Err(self.refuse(proc, refresh, RefusalReason::Unknown));
        };
        if self.families[info.family as usize].revoked {
            return Err(self.refuse(proc, refresh, RefusalReason::Revoked));
        }
        match info.redeemed {
            None => {
                // Unredeemed and not revoked: by construction the family's newest token.
                let generation = self.families[info.family as usize].newest + 1;
                self.emit(
                    proc,
                    Ev::Redeemed {
                        refresh: tag(refresh),
                        outcome: RedeemVerdict::Rotated,
                    },
                );
                let pair = self.issue(proc, info.family, generation, now_ms);
                if let Some(r) = self.refresh.get_mut(refresh) {
                    r.redeemed = Some((now_ms, pair.clone()));
                }
                Ok(pair)
            }
            Some((first_ms, pair)) if now_ms.saturating_sub(first_ms) < self.config.grace_ms => {
                self.emit(
                    proc,
                    Ev::Redeemed {
                        refresh: tag(refresh),
                        outcome: RedeemVerdict::Grace,
                    },
                );
                Ok(pair)
            }
            Some(_) => {
                let reason = self.refuse(proc, refresh, RefusalReason::Reused);
                self.families[info.family as usize].revoked = true;
                self.emit(
                    proc,
                    Ev::FamilyRevoked {
                        family: info.family,
                        cause: tag(refresh),
                    },
                );
                Err(reason)
            }
        }
    }

    fn refuse(&mut self, proc: ProcId, refresh: &str, reason: RefusalReason) -> RefusalReason {
        self.emit(
            proc,
            Ev::Redeemed {
                refresh: tag(refresh),
                outcome: reason.verdict(),
            },
        );
        reason
    }

    /// An API call with `credential` (an access token or an API key) by process `proc` at
    /// `now_ms`. A rate-limited key is [`UseVerdict::RateLimited`] even if also listed as good.
    pub fn use_credential(&mut self, proc: ProcId, credential: &str, now_ms: u64) -> UseVerdict {
        let verdict = self.judge_use(credential, now_ms);
        self.emit(
            proc,
            Ev::Used {
                credential: tag(credential),
                outcome: verdict.clone(),
            },
        );
        verdict
    }

    fn judge_use(&self, credential: &str, now_ms: u64) -> UseVerdict {
        if self
            .config
            .rate_limited_keys
            .iter()
            .any(|k| k == credential)
        {
            return UseVerdict::RateLimited;
        }
        if self.config.api_keys.iter().any(|k| k == credential) {
            return UseVerdict::Accepted;
        }
        let Some(a) = self.access.get(credential) else {
            return UseVerdict::Unknown;
        };
        let family = &self.families[a.family as usize];
        if family.revoked || (self.config.revoke_access_on_rotate && a.generation != family.newest)
        {
            UseVerdict::Revoked
        } else if now_ms >= a.expires_at_ms {
            UseVerdict::Expired
        } else {
            UseVerdict::Accepted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn state(config: IssuerConfig) -> (IssuerState, MemLedger) {
        let ledger = MemLedger::default();
        (IssuerState::new(config, Box::new(ledger.clone())), ledger)
    }

    fn verdicts(ledger: &MemLedger) -> Vec<RedeemVerdict> {
        ledger
            .records()
            .into_iter()
            .filter_map(|r| match r.ev {
                Ev::Redeemed { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect()
    }

    /// `access_token_format = "jwt"`: access tokens are JWTs whose `exp` is the ledger's
    /// expiry (to the second); redemption, reuse and tags work as with opaque tokens.
    #[test]
    fn jwt_access_tokens_carry_the_ledgers_expiry() {
        let config = IssuerConfig {
            access_token_format: AccessTokenFormat::Jwt,
            ..IssuerConfig::default()
        };
        let (mut s, _) = state(config);
        let p0 = s.mint_family(1_795_867_200_500);
        let claims = pool_core::jwt::claims(&p0.access).expect("a JWT");
        assert_eq!(claims["sub"], "family-0");
        assert_eq!(claims["iat"], 1_795_867_200u64);
        assert_eq!(
            pool_core::jwt::exp_ms(&p0.access),
            Some(p0.expires_at_ms / 1000 * 1000)
        );
        let p1 = s.redeem(1, &p0.refresh, 1_795_867_201_000).unwrap();
        assert!(pool_core::jwt::exp_ms(&p1.access).is_some());
        assert_ne!(p1.access, p0.access);
        assert!(s.redeem(2, &p0.refresh, 1_795_867_202_000).is_err());
        let (mut s, _) = state(IssuerConfig::default());
        assert_eq!(pool_core::jwt::claims(&s.mint_family(0).access), None);
    }

    #[test]
    fn tokens_look_real() {
        let (mut s, _) = state(IssuerConfig::default());
        let p = s.mint_family(T0);
        for t in [&p.access, &p.refresh] {
            assert_eq!(t.len(), 43, "{}", tag(t));
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        assert_ne!(p.access, p.refresh);
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(b"fooba"), "Zm9vYmE");
    }

    #[test]
    fn rotation_issues_the_next_generation_and_spends_the_old_token() {
        let (mut s, ledger) = state(IssuerConfig::default());
        let g0 = s.mint_family(T0);
        assert_eq!((g0.family, g0.generation), (0, 0));
        let g1 = s.redeem(3, &g0.refresh, T0 + 10).expect("first redemption");
        assert_eq!((g1.family, g1.generation), (0, 1));
        assert_ne!(g1.refresh, g0.refresh);
        assert_ne!(g1.access, g0.access);
        assert_eq!(g1.expires_at_ms, T0 + 10 + 3_600_000);
        assert_eq!(g1.expires_in_s(T0 + 10), 3600);
        let g2 = s.redeem(3, &g1.refresh, T0 + 20).expect("next generation");
        assert_eq!(g2.generation, 2);
        assert_eq!(s.newest_generation(0), Some(2));
        assert_eq!(
            verdicts(&ledger),
            vec![RedeemVerdict::Rotated, RedeemVerdict::Rotated]
        );
        let issued: Vec<(u32, u32, u32)> = ledger
            .records()
            .into_iter()
            .filter_map(|r| match r.ev {
                Ev::Issued {
                    family, generation, ..
                } => Some((r.proc, family, generation)),
                _ => None,
            })
            .collect();
        assert_eq!(issued, vec![(0, 0, 0), (3, 0, 1), (3, 0, 2)]);
    }

    #[test]
    fn double_redeem_revokes_the_whole_family() {
        let (mut s, ledger) = state(IssuerConfig::default());
        let g0 = s.mint_family(T0);
        let other = s.mint_family(T0);
        let g1 = s.redeem(1, &g0.refresh, T0 + 1).unwrap();
        // Same millisecond still counts as a reuse when the grace period is 0.
        assert_eq!(s.redeem(2, &g0.refresh, T0 + 1), Err(RefusalReason::Reused));
        assert!(s.is_revoked(0));
        assert!(!s.is_revoked(1));
        // Every token of the family is dead from now on, including the newest.
        assert_eq!(
            s.redeem(1, &g1.refresh, T0 + 2),
            Err(RefusalReason::Revoked)
        );
        assert_eq!(
            s.redeem(1, &g0.refresh, T0 + 2),
            Err(RefusalReason::Revoked)
        );
        assert_eq!(s.use_credential(1, &g1.access, T0 + 2), UseVerdict::Revoked);
        assert_eq!(s.use_credential(1, &g0.access, T0 + 2), UseVerdict::Revoked);
        // The other family is untouched.
        assert!(s.redeem(1, &other.refresh, T0 + 3).is_ok());
        assert_eq!(
            verdicts(&ledger),
            vec![
                RedeemVerdict::Rotated,
                RedeemVerdict::Reused,
                RedeemVerdict::Revoked,
                RedeemVerdict::Revoked,
                RedeemVerdict::Rotated
            ]
        );
        let revoked: Vec<(u32, u32, String)> = ledger
            .records()
            .into_iter()
            .filter_map(|r| match r.ev {
                Ev::FamilyRevoked { family, cause } => Some((r.proc, family, cause)),
                _ => None,
            })
            .collect();
        assert_eq!(revoked, vec![(2, 0, tag(&g0.refresh))]);
    }

    #[test]
    fn grace_period_returns_the_same_pair_then_expires() {
        let config = IssuerConfig {
            grace_ms: 100,
            ..IssuerConfig::default()
        };
        let (mut s, ledger) = state(config);
        let g0 = s.mint_family(T0);
        let g1 = s.redeem(1, &g0.refresh, T0).unwrap();
        let again = s.redeem(2, &g0.refresh, T0 + 99).unwrap();
        assert_eq!(
            again, g1,
            "a repeat within the grace period gets the same pair"
        );
        assert_eq!(
            s.newest_generation(0),
            Some(1),
            "no new generation was minted"
        );
        assert!(!s.is_revoked(0));
        assert_eq!(
            s.redeem(2, &g0.refresh, T0 + 100),
            Err(RefusalReason::Reused)
        );
        assert!(s.is_revoked(0));
        assert_eq!(
            verdicts(&ledger),
            vec![
                RedeemVerdict::Rotated,
                RedeemVerdict::Grace,
                RedeemVerdict::Reused
            ]
        );
    }

    #[test]
    fn unknown_tokens_are_refused() {
        let (mut s, ledger) = state(IssuerConfig::default());
        let g0 = s.mint_family(T0);
        assert_eq!(s.redeem(1, "not-a-token", T0), Err(RefusalReason::Unknown));
        // An access token is not a refresh token.
        assert_eq!(s.redeem(1, &g0.access, T0), Err(RefusalReason::Unknown));
        assert_eq!(s.use_credential(1, &g0.refresh, T0), UseVerdict::Unknown);
        assert_eq!(s.use_credential(1, "nope", T0), UseVerdict::Unknown);
        assert!(!s.is_revoked(0));
        assert_eq!(
            verdicts(&ledger),
            vec![RedeemVerdict::Unknown, RedeemVerdict::Unknown]
        );
        assert_eq!(RefusalReason::Unknown.error(), "invalid_grant");
    }

    #[test]
    fn access_tokens_expire() {
        let config = IssuerConfig {
            access_lifetime_s: 60,
            ..IssuerConfig::default()
        };
        let (mut s, _) = state(config);
        let g0 = s.mint_family(T0);
        assert_eq!(
            s.use_credential(1, &g0.access, T0 + 59_999),
            UseVerdict::Accepted
        );
        assert_eq!(
            s.use_credential(1, &g0.access, T0 + 60_000),
            UseVerdict::Expired
        );
        // Without revoke_access_on_rotate an older access token lives out its lifetime.
        let g1 = s.redeem(1, &g0.refresh, T0 + 1).unwrap();
        assert_eq!(
            s.use_credential(1, &g0.access, T0 + 2),
            UseVerdict::Accepted
        );
        assert_eq!(
            s.use_credential(1, &g1.access, T0 + 2),
            UseVerdict::Accepted
        );
    }

    #[test]
    fn rotation_can_revoke_older_access_tokens() {
        let config = IssuerConfig {
            revoke_access_on_rotate: true,
            ..IssuerConfig::default()
        };
        let (mut s, _) = state(config);
        let g0 = s.mint_family(T0);
        assert_eq!(s.use_credential(1, &g0.access, T0), UseVerdict::Accepted);
        let g1 = s.redeem(1, &g0.refresh, T0 + 1).unwrap();
        assert_eq!(s.use_credential(1, &g0.access, T0 + 2), UseVerdict::Revoked);
        assert_eq!(
            s.use_credential(1, &g1.access, T0 + 2),
            UseVerdict::Accepted
        );
    }

    #[test]
    fn api_keys_and_rate_limits() {
        let config = IssuerConfig {
            api_keys: vec!["sk-good".into(), "sk-both".into()],
            rate_limited_keys: vec!["sk-limited".into(), "sk-both".into()],
            ..IssuerConfig::default()
        };
        let (mut s, ledger) = state(config);
        assert_eq!(s.use_credential(4, "sk-good", T0), UseVerdict::Accepted);
        assert_eq!(
            s.use_credential(4, "sk-limited", T0),
            UseVerdict::RateLimited
        );
        assert_eq!(s.use_credential(4, "sk-both", T0), UseVerdict::RateLimited);
        assert_eq!(s.use_credential(4, "sk-other", T0), UseVerdict::Unknown);
        let used: Vec<(u32, String, UseVerdict)> = ledger
            .records()
            .into_iter()
            .filter_map(|r| match r.ev {
                Ev::Used {
                    credential,
                    outcome,
                } => Some((r.proc, credential, outcome)),
                _ => None,
            })
            .collect();
        assert_eq!(used[0], (4, tag("sk-good"), UseVerdict::Accepted));
        assert_eq!(used[1], (4, tag("sk-limited"), UseVerdict::RateLimited));
        assert_eq!(used.len(), 4);
    }

    #[test]
    fn tokens_are_reproducible_from_the_seed() {
        let run = |seed| {
            let (mut s, _) = state(IssuerConfig {
                seed,
                ..IssuerConfig::default()
            });
            let a = s.mint_family(T0);
            let b = s.mint_family(T0);
            let c = s.redeem(1, &a.refresh, T0 + 5).unwrap();
            vec![
                a.access, a.refresh, b.access, b.refresh, c.access, c.refresh,
            ]
        };
        assert_eq!(run(7), run(7));
        let other = run(8);
        assert!(run(7).iter().all(|t| !other.contains(t)));
    }

    #[test]
    fn ledger_never_holds_a_whole_token() {
        let config = IssuerConfig {
            grace_ms: 10,
            api_keys: vec!["sk-api-key-secret-0123456789".into()],
            rate_limited_keys: vec!["sk-limited-secret-0123456789".into()],
            ..IssuerConfig::default()
        };
        let (mut s, ledger) = state(config.clone());
        let mut secrets = config.api_keys.clone();
        secrets.extend(config.rate_limited_keys.clone());
        let a = s.mint_family(T0);
        let b = s.mint_family(T0);
        let a1 = s.redeem(1, &a.refresh, T0).unwrap();
        s.redeem(2, &a.refresh, T0 + 1).unwrap(); // grace
        s.redeem(2, &a.refresh, T0 + 50).unwrap_err(); // reuse: revokes
        s.redeem(2, &a1.refresh, T0 + 51).unwrap_err(); // revoked
        s.redeem(2, "unknown-secret-token-value-0123456789", T0)
            .unwrap_err();
        s.use_credential(3, &a1.access, T0);
        s.use_credential(3, &b.access, T0 + 10_000_000);
        s.use_credential(3, &config.api_keys[0], T0);
        s.use_credential(3, &config.rate_limited_keys[0], T0);
        secrets.extend(
            [
                &a.access,
                &a.refresh,
                &b.access,
                &b.refresh,
                &a1.access,
                &a1.refresh,
            ]
            .map(|s| s.to_string()),
        );
        secrets.push("unknown-secret-token-value-0123456789".into());
        let records = ledger.records();
        let kinds: std::collections::BTreeSet<&str> = records
            .iter()
            .map(|r| match r.ev {
                Ev::Issued { .. } => "issued",
                Ev::Redeemed { .. } => "redeemed",
                Ev::FamilyRevoked { .. } => "revoked",
                Ev::Used { .. } => "used",
                Ev::IssuerRules { .. } => "rules",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            vec!["issued", "redeemed", "revoked", "rules", "used"]
        );
        for r in &records {
            let line = serde_json::to_string(r).unwrap();
            for secret in &secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "ledger line leaks {}: {line}",
                    tag(secret)
                );
            }
        }
        // Debug output of a pair is redacted too.
        let dbg = format!("{a:?}");
        assert!(!dbg.contains(&a.access) && !dbg.contains(&a.refresh));
        // Records are stamped in rule order.
        assert!(records.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: IssuerConfig = serde_json::from_str(r#"{"grace_ms": 5}"#).unwrap();
        assert_eq!(c.grace_ms, 5);
        assert_eq!(
            c.access_lifetime_s,
            IssuerConfig::default().access_lifetime_s
        );
        assert!(!c.revoke_access_on_rotate);
        assert!(serde_json::from_str::<IssuerConfig>(r#"{"grace_msec": 5}"#).is_err());
        assert!(c.validate().is_ok());
        let bad = IssuerConfig {
            latency_ms: (10, 5),
            ..IssuerConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("latency_ms"));
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let x = rng.between(50, 60);
            assert!((50..=60).contains(&x));
        }
    }
}

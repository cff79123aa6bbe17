//! The world a run starts from: the issuer's initial token families and API keys, the initial
//! store and the external credential files, as values (the fork driver writes them to the run
//! directory, each secret file 0600: `drive::setup`; the simulated world installs them in its
//! kernel).
//!
//! The initial store is recorded in the history as a write by the harness (proc 0, op 0), so
//! every later read and write can be traced back to a version someone wrote.

use pool_core::digest::content_hash;
use pool_core::external::ExternalCreds;
use pool_core::store::{Status, Store};
use pool_core::world::Event;
use pool_core::{AuthType, Entry};

use super::external_format;
use crate::history::Ev;
use crate::issuer::rules::{AccessTokenFormat, IssuerConfig, IssuerState};
use crate::scenario::Scenario;

/// The issuer configuration a scenario asks for (API keys are added by [`keys`]).
pub fn issuer_config(sc: &Scenario, seed: u64) -> IssuerConfig {
    IssuerConfig {
        latency_ms: (sc.issuer.latency_ms[0], sc.issuer.latency_ms[1]),
        grace_ms: sc.issuer.grace_ms,
        access_lifetime_s: sc.issuer.access_lifetime_s,
        access_token_format: sc.issuer.access_token_format,
        seed,
        ..IssuerConfig::default()
    }
}

/// The run's API keys, drawn from the seed, with the issuer configuration that knows them.
pub struct Keys {
    pub issuer: IssuerConfig,
    /// One per `[[entry]]`: the key of an `api_key` entry, `None` for OAuth.
    pub keys: Vec<Option<String>>,
    rng: crate::issuer::rules::Rng,
}

/// Draw the API keys of a scenario's entries and configure the issuer to know them.
pub fn keys(sc: &Scenario, seed: u64) -> Keys {
    let mut cfg = issuer_config(sc, seed);
    let mut rng = crate::issuer::rules::Rng::new(seed ^ 0xA11CE);
    let keys: Vec<Option<String>> = sc
        .entries
        .iter()
        .map(|e| (e.auth_type == "api_key").then(|| format!("sk-poolcheck-{}", rng.token())))
        .collect();
    for (spec, key) in sc.entries.iter().zip(&keys) {
        if let Some(k) = key {
            if spec.rate_limited {
                cfg.rate_limited_keys.push(k.clone());
            } else {
                cfg.api_keys.push(k.clone());
            }
        }
    }
    cfg.api_keys.extend(super::roles::added_keys(sc, seed));
    Keys {
        issuer: cfg,
        keys,
        rng,
    }
}

/// External credential files: (source, file bytes).
pub type Externals = Vec<(String, Vec<u8>)>;

/// The initial store and external credential files of a run (driver-independent): mints the
/// OAuth families from `issuer`. Externals are (source, file bytes). With `user`, a user's own
/// store (see [`user_entries`]), the initial store keeps its shape: every entry's id,
/// priority, status and unknown fields, and every other part of the document, with each
/// secret replaced by one this run's issuer minted (secrets of other providers are removed).
pub fn initial_world(
    sc: &Scenario,
    keys: Keys,
    issuer: &mut IssuerState,
    now_ms: u64,
    user: Option<&Store>,
) -> std::io::Result<(Store, Externals)> {
    let Keys { keys, mut rng, .. } = keys;
    let cooldown_ms = sc.pool.cooldown_s * 1000;
    let mut externals = Vec::new();
    let mut store = match user {
        Some(u) => without_secrets(u),
        None => Store {
            active_provider: Some(sc.pool.provider.clone()),
            ..Store::default()
        },
    };
    let originals: Vec<Entry> = store.entries(&sc.pool.provider).to_vec();
    let list = store.entries_mut(&sc.pool.provider);
    list.clear();
    for (i, (spec, key)) in sc.entries.iter().zip(keys).enumerate() {
        let id = loop {
            let id = format!("{:06x}", rng.next_u64() & 0xff_ffff);
            if !list.iter().any(|e: &Entry| e.id == id) {
                break id;
            }
        };
        let auth = if spec.auth_type == "oauth" {
            AuthType::Oauth
        } else {
            AuthType::ApiKey
        };
        let mut e = Entry::new(&id, &spec.label, auth, &spec.source);
        e.priority = i as i64;
        match key {
            Some(k) => e.access_token = Some(k),
            None => {
                // A JWT says when it expires: the scenario's remaining life, as in the store.
                let pair = match issuer.config().access_token_format {
                    AccessTokenFormat::Jwt => {
                        issuer.mint_family_until(0, now_ms, now_ms + spec.expires_in_s * 1000)
                    }
                    AccessTokenFormat::Opaque => issuer.mint_family(now_ms),
                };
                e.access_token = Some(pair.access.clone());
                e.refresh_token = Some(pair.refresh.clone());
                e.expires_at_ms = Some(now_ms + spec.expires_in_s * 1000);
                let file_written = externals.iter().any(|(s, _)| *s == spec.source);
                if let Some(format) = external_format(&spec.source).filter(|_| !file_written) {
                    // The other CLI's file holds the same pair, or, when it already rotated
                    // the family, the newer one (and the store's pair is then spent).
                    let file_pair = if spec.external_newer {
                        issuer.redeem(0, &pair.refresh, now_ms).map_err(|r| {
                            std::io::Error::other(format!("setup redeem refused: {r:?}"))
                        })?
                    } else {
                        pair.clone()
                    };
                    let creds = ExternalCreds {
                        access_token: file_pair.access.clone(),
                        refresh_token: file_pair.refresh.clone(),
                        expires_at_ms: Some(if spec.external_newer {
                            file_pair.expires_at_ms
                        } else {
                            now_ms + spec.expires_in_s * 1000
                        }),
                    };
                    externals.push((spec.source.clone(), format.render(None, &creds, now_ms)));
                }
            }
        }
        if spec.status == "exhausted" {
            e.last_status = Some(Status::Exhausted);
            e.last_status_at = Some(now_ms);
            e.last_error_code = Some(429);
            e.last_error_reason = Some("rate_limited".into());
            e.last_error_reset_at = Some(now_ms + cooldown_ms);
        }
        if let Some(o) = originals.get(i) {
            e.id = o.id.clone();
            e.priority = o.priority;
            e.request_count = o.request_count;
            e.extra = o.extra.clone();
            e.copy_status_from(o);
        }
        list.push(e);
    }
    store.updated_at = Some(pool_core::store::rfc3339(now_ms));
    Ok((store, externals))
}

/// The history records of the run's start (proc 0, op 0): the pool settings every pool
/// process is given ([`Ev::PoolRules`]), then the initial store, a write by the harness.
pub fn initial_records(sc: &Scenario, store: &Store, bytes: &[u8]) -> [Ev; 2] {
    [
        Ev::PoolRules {
            cooldown_ms: sc.pool.cooldown_s.saturating_mul(1000),
        },
        initial_write(sc, store, bytes),
    ]
}

/// The history record of the initial store: a write by the harness (proc 0, op 0).
fn initial_write(sc: &Scenario, store: &Store, bytes: &[u8]) -> Ev {
    Ev::Pool {
        event: Event::Write {
            op: 0,
            hash: content_hash(bytes),
            base: None,
            entries: store
                .entries(&sc.pool.provider)
                .iter()
                .map(pool_core::pool::summary)
                .collect(),
            file: None,
        },
    }
}

/// The history records of a write of an external credential file (`source`) outside the
/// pool (the harness's setup, an external CLI): its intent and its completion, which a driver
/// records around the write. Pool reads of those bytes are then reads of a known write.
pub fn external_write(source: &str, bytes: &[u8]) -> (Ev, Ev) {
    let hash = content_hash(bytes);
    let file = Some(source.to_string());
    (
        Ev::Pool {
            event: Event::WriteBegin {
                op: 0,
                hash: hash.clone(),
                file: file.clone(),
            },
        },
        Ev::Pool {
            event: Event::Write {
                op: 0,
                hash,
                base: None,
                entries: Vec::new(),
                file,
            },
        },
    )
}

/// The scenario entries that stand for a user store's entries of `provider` (same order, kind
/// and source; an access token that expires within `margin_s` stays expiring).
pub fn user_entries(
    user: &Store,
    provider: &str,
    now_ms: u64,
    margin_s: u64,
) -> Vec<crate::scenario::EntrySpec> {
    user.entries(provider)
        .iter()
        .map(|e| crate::scenario::EntrySpec {
            label: e.label.clone(),
            auth_type: match e.auth_type {
                AuthType::Oauth => "oauth".into(),
                AuthType::ApiKey => "api_key".into(),
            },
            source: e.source.clone(),
            expires_in_s: match e.expires_at_ms {
                Some(t) if t <= now_ms + margin_s * 1000 => 0,
                _ => 3600,
            },
            status: "ok".into(),
            rate_limited: false,
            external_newer: false,
        })
        .collect()
}

/// A copy of a store with every token removed (the run mints its own).
fn without_secrets(user: &Store) -> Store {
    let mut s = user.clone();
    for rec in s.providers.values_mut() {
        rec.access_token = None;
        rec.refresh_token = None;
    }
    for list in s.credential_pool.values_mut() {
        for e in list {
            e.access_token = None;
            e.refresh_token = None;
        }
    }
    s
}

//! Shared fixtures for the pool-core integration tests: an in-memory rotating [`FakeIssuer`],
//! a [`ManualClock`], recording [`RecHooks`] for [`RealOs`], and helpers to build pools in
//! temp directories on the real OS.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use pool_core::external::ExternalFormat;
use pool_core::pool::{Config, ExternalSource, NewEntry, Pool, Selection};
use pool_core::real::{Hooks, RealOs};
use pool_core::store::{AuthType, Store};
use pool_core::strategy::Strategy;
use pool_core::world::{Clock, Event, Grant, Issuer, Pause, RedeemError, UseOutcome};

/// The start of every test's clock (2026-11-28T12:00:00Z).
pub const T0: u64 = 1_795_867_200_000;

// ---------------------------------------------------------------- clock

/// A clock that only moves when told to. Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(ms)))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------- issuer

#[derive(Default, Debug)]
struct IssuerState {
    next: u64,
    /// Refresh tokens that can still be redeemed (each once).
    live_refresh: HashSet<String>,
    /// Access tokens the API accepts.
    live_access: HashSet<String>,
    /// How many times each refresh token was presented.
    redemptions: HashMap<String, usize>,
    /// Credentials the API answers 429 for.
    rate_limited: HashSet<String>,
}

/// An in-memory OAuth issuer with rotation: each refresh token is redeemable once; every
/// presentation is counted. Tokens are 43 URL-safe characters. Clones share state.
#[derive(Clone, Debug, Default)]
pub struct FakeIssuer(Arc<Mutex<IssuerState>>);

fn token(kind: &str, n: u64) -> String {
    // 43 URL-safe characters, like a base64url-encoded 32-byte secret.
    let t = format!("{kind}_{n:0>width$}", width = 43 - kind.len() - 1);
    assert_eq!(t.len(), 43);
    t
}

impl FakeIssuer {
    pub fn new() -> Self {
        Self::default()
    }
    /// A fresh (access, refresh) pair the issuer honours.
    pub fn mint(&self) -> (String, String) {
        let mut s = self.0.lock().unwrap();
        s.next += 1;
        let (a, r) = (token("at", s.next), token("rt", s.next));
        s.live_access.insert(a.clone());
        s.live_refresh.insert(r.clone());
        (a, r)
    }
    /// How many times `refresh_token` was presented to the token endpoint.
    pub fn redemptions(&self, refresh_token: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .redemptions
            .get(refresh_token)
            .copied()
            .unwrap_or(0)
    }
    /// Total presentations of any refresh token.
    pub fn total_redemptions(&self) -> usize {
        self.0.lock().unwrap().redemptions.values().sum()
    }
    pub fn rate_limit(&self, credential: &str) {
        self.0
            .lock()
            .unwrap()
            .rate_limited
            .insert(credential.to_string());
    }
    pub fn is_live_refresh(&self, rt: &str) -> bool {
        self.0.lock().unwrap().live_refresh.contains(rt)
    }
}

impl Issuer for FakeIssuer {
    fn redeem(&self, refresh_token: &str) -> Result<Grant, RedeemError> {
        let mut s = self.0.lock().unwrap();
        *s.redemptions.entry(refresh_token.to_string()).or_default() += 1;
        if !s.live_refresh.remove(refresh_token) {
            return Err(RedeemError::Refused {
                error: "invalid_grant".into(),
            });
        }
        s.next += 1;
        let (a, r) = (token("at", s.next), token("rt", s.next));
        s.live_access.insert(a.clone());
        s.live_refresh.insert(r.clone());
        Ok(Grant {
            access_token: a,
            refresh_token: r,
            expires_in_s: 3600,
        })
    }

    fn use_credential(&self, credential: &str) -> UseOutcome {
        let s = self.0.lock().unwrap();
        if s.rate_limited.contains(credential) {
            UseOutcome::RateLimited { reset_at_ms: None }
        } else if s.live_access.contains(credential) || credential.starts_with("sk-") {
            UseOutcome::Accepted
        } else {
            UseOutcome::Rejected
        }
    }
}

// ---------------------------------------------------------------- hooks

type PauseFn = Arc<dyn Fn(Pause) + Send + Sync>;

#[derive(Default)]
struct HookState {
    pauses: Mutex<BTreeMap<Pause, usize>>,
    events: Mutex<Vec<Event>>,
    on_pause: Mutex<Option<PauseFn>>,
}

/// Hooks that count pause points, collect events, and run an optional callback at each pause.
/// Clones share state.
#[derive(Clone, Default)]
pub struct RecHooks(Arc<HookState>);

impl RecHooks {
    pub fn count(&self, p: Pause) -> usize {
        self.0.pauses.lock().unwrap().get(&p).copied().unwrap_or(0)
    }
    pub fn events(&self) -> Vec<Event> {
        self.0.events.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.0.pauses.lock().unwrap().clear();
        self.0.events.lock().unwrap().clear();
    }
    /// Number of completed store writes recorded.
    pub fn writes(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Event::Write { .. }))
            .count()
    }
    pub fn on_pause(&self, f: impl Fn(Pause) + Send + Sync + 'static) {
        *self.0.on_pause.lock().unwrap() = Some(Arc::new(f));
    }
    pub fn clear_on_pause(&self) {
        *self.0.on_pause.lock().unwrap() = None;
    }
}

impl Hooks for RecHooks {
    fn pause(&self, point: Pause) {
        *self.0.pauses.lock().unwrap().entry(point).or_default() += 1;
        let f = self.0.on_pause.lock().unwrap().clone();
        if let Some(f) = f {
            f(point);
        }
    }
    fn record(&self, event: Event) {
        self.0.events.lock().unwrap().push(event);
    }
}

// ---------------------------------------------------------------- gate

/// A rendezvous at a pause point: the pool thread reports it arrived and waits until the test
/// releases it (or a timeout passes, so a broken test fails instead of hanging).
pub struct Gate {
    pub reached: mpsc::Receiver<Pause>,
    release: mpsc::Sender<()>,
}

impl Gate {
    /// Arm `hooks` so that the first time `point` is hit (by any thread) it stops there.
    pub fn arm(hooks: &RecHooks, point: Pause) -> Gate {
        let (reached_tx, reached) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let state = Mutex::new(Some((reached_tx, release_rx)));
        hooks.on_pause(move |p| {
            if p != point {
                return;
            }
            let taken = state.lock().unwrap().take();
            if let Some((tx, rx)) = taken {
                let _ = tx.send(p);
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
        });
        Gate { reached, release }
    }
    pub fn wait(&self) {
        self.reached
            .recv_timeout(Duration::from_secs(10))
            .expect("the pool never reached the gate");
    }
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

// ---------------------------------------------------------------- pools

pub type TestOs = RealOs<RecHooks>;
pub type TestPool = Pool<TestOs, FakeIssuer, ManualClock>;

/// A temp directory, on tmpfs when there is one (fsync is cheap there).
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("poolcore-").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

pub fn strategy(s: &str) -> Strategy {
    Strategy::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Everything one "process" needs: its pool and handles on its hooks, issuer and clock.
pub struct Proc {
    pub pool: TestPool,
    pub hooks: RecHooks,
    pub issuer: FakeIssuer,
    pub clock: ManualClock,
}

pub fn config(dir: &Path, strat: &str) -> Config {
    Config::new(dir, strategy(strat))
}

/// A pool (its own `RealOs`, i.e. its own process-local mutex) over `cfg`.
pub fn proc_with(cfg: Config, issuer: &FakeIssuer, clock: &ManualClock) -> Proc {
    let hooks = RecHooks::default();
    let pool = Pool::new(
        RealOs::with_hooks(hooks.clone()),
        issuer.clone(),
        clock.clone(),
        cfg,
    );
    Proc {
        pool,
        hooks,
        issuer: issuer.clone(),
        clock: clock.clone(),
    }
}

pub fn proc(dir: &Path, strat: &str) -> Proc {
    proc_with(
        config(dir, strat),
        &FakeIssuer::new(),
        &ManualClock::new(T0),
    )
}

pub fn api_key(label: &str) -> NewEntry {
    NewEntry {
        label: label.into(),
        auth_type: AuthType::ApiKey,
        source: "manual".into(),
        access_token: Some(format!("sk-{label}-0123456789")),
        refresh_token: None,
        expires_at_ms: None,
    }
}

pub fn oauth(
    label: &str,
    source: &str,
    access: &str,
    refresh: &str,
    expires_at_ms: u64,
) -> NewEntry {
    NewEntry {
        label: label.into(),
        auth_type: AuthType::Oauth,
        source: source.into(),
        access_token: Some(access.into()),
        refresh_token: Some(refresh.into()),
        expires_at_ms: Some(expires_at_ms),
    }
}

pub fn read_store(path: &Path) -> Store {
    let bytes = std::fs::read(path).unwrap();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (id, status) of the provider's entries on disk.
pub fn disk_entries(cfg: &Config) -> Vec<pool_core::Entry> {
    read_store(&cfg.store_path).entries(&cfg.provider).to_vec()
}

pub fn ids(entries: &[pool_core::Entry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

pub fn mem_entries(p: &TestPool) -> Vec<pool_core::Entry> {
    p.snapshot().entries(&p.config().provider).to_vec()
}

pub fn external(format: ExternalFormat, path: PathBuf) -> ExternalSource {
    ExternalSource { format, path }
}

/// A Claude Code `.credentials.json`.
pub fn claude_file(path: &Path, access: &str, refresh: &str, expires_at: u64) {
    let v = serde_json::json!({"claudeAiOauth": {"accessToken": access, "refreshToken": refresh,
        "expiresAt": expires_at, "scopes": ["user:inference"]}});
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// A Codex CLI `auth.json`.
pub fn codex_file(path: &Path, access: &str, refresh: &str, expires_at: u64) {
    let v = serde_json::json!({"tokens": {"access_token": access, "refresh_token": refresh,
        "expires_at_ms": expires_at}, "last_refresh": null});
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

pub fn selection_config(dir: &Path, strat: &str, sel: Selection, seed: u64) -> Config {
    let mut c = config(dir, strat);
    c.selection = sel;
    c.seed = seed;
    c
}

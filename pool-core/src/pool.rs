//! The credential pool: `load_pool`, `select` (with the `available_entries` pass),
//! `mark_exhausted_and_rotate`, `add_entry`, `remove`, `reset_statuses`.
//!
//! One [`Pool`] is one upstream pool object: a process builds one and its threads share it.
//! Each operation copies the shared snapshot out, works on the copy and copies it back, so
//! two threads that run an operation at once without a lock lose one's in-memory change, as
//! unsynchronized code does; the strategy's lock decides whether that can happen.
//!
//! Writes and reads follow the [`Strategy`]: which lock, over what scope, how many writes per
//! operation, in place or by rename, and whether a refresh re-reads before spending a token.
//! With `persist=each` one `select` writes k+1 times, as upstream did at #8040.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::digest::{content_hash, tag};
use crate::external::{ExternalCreds, ExternalFormat};
use crate::merge;
use crate::store::{rfc3339, AuthType, Entry, ProviderRecord, Status, Store, STORE_VERSION};
use crate::strategy::{Lock, Mode, Persist, Rule, Scope, Strategy, WritePath};
use crate::versions::Versions;
use crate::world::{
    Clock, EntrySummary, Event, Issuer, LockKind, OpKind, Os, Pause, ReadOutcome, RedeemError,
    RefreshOutcome,
};

/// How `select` picks among the usable entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The lowest priority; never writes.
    FillFirst,
    /// The lowest priority, then moved to the end with all priorities renumbered (writes).
    RoundRobin,
    /// The lowest `request_count`.
    LeastUsed,
    /// Uniformly at random, from the pool's seeded generator.
    Random,
}

impl Selection {
    pub const ALL: &'static [Selection] = &[
        Selection::FillFirst,
        Selection::RoundRobin,
        Selection::LeastUsed,
        Selection::Random,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Selection::FillFirst => "fill_first",
            Selection::RoundRobin => "round_robin",
            Selection::LeastUsed => "least_used",
            Selection::Random => "random",
        }
    }
}

impl FromStr for Selection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Selection::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!("unknown selection '{s}': allowed values are fill_first, round_robin, least_used, random")
            })
    }
}

/// An external credential file the pool seeds from and syncs with.
#[derive(Clone, Debug)]
pub struct ExternalSource {
    pub format: ExternalFormat,
    pub path: PathBuf,
}

/// Where the pool lives and how it behaves.
#[derive(Clone, Debug)]
pub struct Config {
    pub store_path: PathBuf,
    pub lock_path: PathBuf,
    pub provider: String,
    pub selection: Selection,
    pub strategy: Strategy,
    /// Refresh an OAuth entry whose access token expires within this margin (upstream: 120 s).
    pub refresh_margin_ms: u64,
    /// Cooldown of an exhausted entry without `last_error_reset_at` (upstream: 1 h).
    pub default_cooldown_ms: u64,
    pub external: Vec<ExternalSource>,
    /// Bytes per `write(2)` on the in-place path.
    pub write_chunk: usize,
    /// Seed of the generator behind `random` selection and new entry ids.
    pub seed: u64,
}

impl Config {
    /// `auth.json` and `auth.lock` in `dir`, provider `anthropic`, upstream's defaults.
    pub fn new(dir: &Path, strategy: Strategy) -> Config {
        Config {
            store_path: dir.join("auth.json"),
            lock_path: dir.join("auth.lock"),
            provider: "anthropic".to_string(),
            selection: Selection::FillFirst,
            strategy,
            refresh_margin_ms: 120_000,
            default_cooldown_ms: 3_600_000,
            external: Vec::new(),
            write_chunk: 256,
            seed: 1,
        }
    }
}

/// The credential `select` chose. Its `Debug` form redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Selected {
    pub id: String,
    pub label: String,
    pub auth_type: AuthType,
    pub credential: String,
}

impl fmt::Debug for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selected")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("auth_type", &self.auth_type)
            .field("credential", &tag(&self.credential))
            .finish()
    }
}

/// A new entry for [`Pool::add_entry`].
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub label: String,
    pub auth_type: AuthType,
    pub source: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at_ms: Option<u64>,
}

/// Why an operation failed. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid credential store ({detail}); it was left untouched: fix or restore it, or move it aside to start empty")]
    CorruptStore { path: PathBuf, detail: String },
    #[error("{path} has store version {found}, newer than the {supported} this tool understands; it was left untouched: use a newer tool")]
    UnsupportedVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("no entry with id '{0}' in the pool")]
    UnknownEntry(String),
}

pub type Result<T> = std::result::Result<T, PoolError>;

#[derive(Clone)]
struct State {
    store: Store,
    /// Content hash of the newest store version the snapshot absorbed.
    seen: Option<String>,
    /// Ids this pool removed (merge must not resurrect them).
    removed: BTreeSet<String>,
    /// When this pool last deliberately cleared an entry's status (`reset_statuses`): a
    /// cooldown on disk older than that is not "newer" for merge.
    cleared: BTreeMap<String, u64>,
    rng: u64,
}

/// One pool object (see the module docs).
pub struct Pool<O: Os, I: Issuer, C: Clock> {
    os: O,
    issuer: I,
    clock: C,
    cfg: Config,
    shared: Mutex<State>,
    /// Store versions this pool knows (by default the one it wrote last): reading back
    /// exactly those bytes skips the parse and the hash (a cache, never a source of truth:
    /// it is used only on a byte-for-byte match; see [`Versions`]).
    versions: Arc<Versions>,
}

/// Operation ids, unique within a process (a process may build many pools in turn, as a CLI
/// invocation loop does), so that a history can tell any two operations of a process apart.
static NEXT_OP: AtomicU64 = AtomicU64::new(1);

/// Make this process's operation ids start at `first`: for a process restarted under the
/// identity of one that died (its ids must not repeat the dead one's).
pub fn start_op_ids_at(first: u64) {
    NEXT_OP.store(first.max(1), Ordering::Relaxed);
}

impl<O: Os, I: Issuer, C: Clock> Pool<O, I, C> {
    /// A pool with an empty snapshot; call [`Pool::load_pool`] first.
    pub fn new(os: O, issuer: I, clock: C, cfg: Config) -> Self {
        let rng = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Pool {
            os,
            issuer,
            clock,
            shared: Mutex::new(State {
                store: Store::default(),
                seen: None,
                removed: BTreeSet::new(),
                cleared: BTreeMap::new(),
                rng,
            }),
            versions: Arc::new(Versions::own()),
            cfg,
        }
    }

    /// This pool with `versions` in place of its own cache of store versions: pools that
    /// share one skip the parse and the hash of any version one of them already parsed or
    /// wrote (see [`Versions::shared`]). What the pool reads, does and records is the same.
    pub fn with_versions(mut self, versions: Arc<Versions>) -> Self {
        self.versions = versions;
        self
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn os(&self) -> &O {
        &self.os
    }
    pub fn issuer(&self) -> &I {
        &self.issuer
    }

    /// A copy of the in-memory snapshot.
    pub fn snapshot(&self) -> Store {
        self.shared.lock().expect("state lock").store.clone()
    }

    /// Read the store (a missing file is an empty store), then seed entries from the
    /// `providers` record and the external credential files; write once if seeding added any.
    pub fn load_pool(&self) -> Result<()> {
        self.run(OpKind::LoadPool, |op| {
            match op.read_store()? {
                Some((store, hash)) => {
                    op.st.store = store;
                    op.st.seen = Some(hash);
                }
                None => {
                    op.st.store = Store::default();
                    op.st.seen = None;
                }
            }
            op.pool.os.pause(Pause::AfterLoad);
            if op.seed()? {
                op.changed()?;
            }
            Ok(())
        })
    }

    /// Run the `available_entries` pass and pick one entry; `None` when nothing is usable.
    pub fn select(&self) -> Result<Option<Selected>> {
        self.run(OpKind::Select, |op| op.select())
    }

    /// Mark an entry exhausted (after a 429 or similar), write, and select again.
    pub fn mark_exhausted_and_rotate(
        &self,
        id: &str,
        code: u16,
        reason: &str,
        reset_at_ms: Option<u64>,
    ) -> Result<Option<Selected>> {
        self.run(OpKind::MarkExhausted, |op| {
            let now = op.now();
            let e = op.entry_mut(id)?;
            e.clear_status();
            e.last_status = Some(Status::Exhausted);
            e.last_status_at = Some(now);
            e.last_error_code = Some(code);
            e.last_error_reason = Some(reason.to_string());
            e.last_error_message = Some(format!("HTTP {code}: {reason}"));
            e.last_error_reset_at = reset_at_ms;
            op.changed()?;
            op.select()
        })
    }

    /// Append an entry (lowest precedence) and write; returns its new id.
    pub fn add_entry(&self, new: NewEntry) -> Result<String> {
        self.run(OpKind::AddEntry, |op| {
            let id = op.add(new);
            op.changed()?;
            Ok(id)
        })
    }

    /// Remove an entry and write; `false` when no entry has that id.
    pub fn remove(&self, id: &str) -> Result<bool> {
        self.run(OpKind::Remove, |op| {
            let provider = op.pool.cfg.provider.clone();
            let list = op.st.store.entries_mut(&provider);
            let before = list.len();
            list.retain(|e| e.id != id);
            if list.len() == before {
                return Ok(false);
            }
            op.st.removed.insert(id.to_string());
            op.changed()?;
            Ok(true)
        })
    }

    /// Clear the status of every entry and write.
    pub fn reset_statuses(&self) -> Result<()> {
        self.run(OpKind::ResetStatuses, |op| {
            let provider = op.pool.cfg.provider.clone();
            let now = op.now();
            for e in op.st.store.entries_mut(&provider) {
                e.clear_status();
                op.st.cleared.insert(e.id.clone(), now);
            }
            op.changed()
        })
    }

    /// Run one operation: record it, take the op-scoped lock if any, copy the snapshot out,
    /// reload it under `persist=txn`, run `body`, write once if batched, copy back, unlock.
    fn run<R>(
        &self,
        kind: OpKind,
        body: impl FnOnce(&mut Op<'_, O, I, C>) -> Result<R>,
    ) -> Result<R> {
        let id = NEXT_OP.fetch_add(1, Ordering::Relaxed);
        self.os.record(Event::OpBegin { op: id, kind });
        self.os.pause(Pause::OpStart);
        let result = self.run_locked(id, kind, body);
        self.os.record(Event::OpEnd {
            op: id,
            ok: result.is_ok(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }

    fn run_locked<R>(
        &self,
        id: u64,
        kind: OpKind,
        body: impl FnOnce(&mut Op<'_, O, I, C>) -> Result<R>,
    ) -> Result<R> {
        let held = if self.cfg.strategy.scope == Scope::Op {
            self.acquire(id)?
        } else {
            None
        };
        let st = self.shared.lock().expect("state lock").clone();
        let mut op = Op {
            pool: self,
            id,
            st,
            dirty: false,
            reloaded: false,
            tokens_touched: false,
            holding: false,
        };
        let result = (|| {
            if self.cfg.strategy.persist == Persist::Txn && kind != OpKind::LoadPool {
                op.reload()?;
            }
            let value = body(&mut op)?;
            if op.dirty {
                op.write_now()?;
            }
            Ok(value)
        })();
        *self.shared.lock().expect("state lock") = op.st;
        let released = self.release(held);
        let value = result?;
        released?;
        Ok(value)
    }

    /// The lock the strategy names, on the file it names.
    fn lock_target(&self) -> Option<(LockKind, &Path)> {
        let c = &self.cfg;
        match c.strategy.lock {
            Lock::None => None,
            Lock::Mutex => Some((LockKind::ProcessMutex, &c.lock_path)),
            Lock::Flock => Some((LockKind::Flock, &c.lock_path)),
            Lock::FlockData => Some((LockKind::Flock, &c.store_path)),
            Lock::Fcntl => Some((LockKind::Fcntl, &c.store_path)),
        }
    }

    fn acquire(&self, op: u64) -> Result<Option<O::Held>> {
        let Some((kind, path)) = self.lock_target() else {
            return Ok(None);
        };
        if path == self.cfg.store_path {
            self.create_store_if_missing(op)?;
        }
        self.os
            .lock(kind, path)
            .map(Some)
            .map_err(|source| PoolError::Io {
                action: "cannot lock",
                path: path.to_path_buf(),
                source,
            })
    }

    /// A lock on the data file needs the data file: opening it to lock would otherwise create
    /// an empty one that every reader refuses. Create an empty store atomically (temp + rename)
    /// first, as implementations that lock the data file do.
    fn create_store_if_missing(&self, op: u64) -> Result<()> {
        let path = &self.cfg.store_path;
        if self
            .os
            .read(path)
            .map_err(io_err("cannot read", path))?
            .is_some()
        {
            return Ok(());
        }
        let bytes = Store::default().to_bytes();
        let written = Event::Write {
            op,
            hash: content_hash(&bytes),
            base: None,
            entries: Vec::new(),
            file: None,
        };
        self.put(WritePath::Rename, path, &bytes, written, false)
    }

    /// Put `bytes` at `path` by `write`, recording it: [`Event::WriteBegin`] (with `written`'s
    /// op, hash and file) right before the bytes can first become visible (the truncating
    /// open, or the rename), and `written` itself the moment they all are (after the last
    /// chunk in place, right after the rename otherwise), so a process killed before the
    /// directory fsync still has its visible write in the history, and one killed between
    /// the rename and the record still has its intent there. With `pauses`, the store's
    /// pause points are reported.
    fn put(
        &self,
        write: WritePath,
        path: &Path,
        bytes: &[u8],
        written: Event,
        pauses: bool,
    ) -> Result<()> {
        let os = &self.os;
        let pause = |p| {
            if pauses {
                os.pause(p)
            }
        };
        let begin = || {
            if let Event::Write { op, hash, file, .. } = &written {
                os.record(Event::WriteBegin {
                    op: *op,
                    hash: hash.clone(),
                    file: file.clone(),
                });
            }
        };
        let visible = || os.record(written.clone());
        match write {
            WritePath::InPlace => {
                begin();
                let mut f = os.create(path).map_err(io_err("cannot open", path))?;
                for (i, chunk) in bytes.chunks(self.cfg.write_chunk.max(1)).enumerate() {
                    if i > 0 {
                        pause(Pause::MidWrite);
                    }
                    os.write(&mut f, chunk)
                        .map_err(io_err("cannot write", path))?;
                }
                visible();
                os.close(f).map_err(io_err("cannot close", path))
            }
            WritePath::Rename | WritePath::RenameNoFsync | WritePath::RenameNoDirsync => {
                let (mut f, tmp) = os
                    .create_temp(path)
                    .map_err(io_err("cannot create a temp file beside", path))?;
                let done = os
                    .write(&mut f, bytes)
                    .and_then(|()| {
                        if write == WritePath::RenameNoFsync {
                            Ok(())
                        } else {
                            os.sync(&mut f)
                        }
                    })
                    .map_err(io_err("cannot write", &tmp));
                let closed = os.close(f).map_err(io_err("cannot close", &tmp));
                if let Err(e) = done.and(closed) {
                    let _ = os.remove(&tmp);
                    return Err(e);
                }
                pause(Pause::BeforeRename);
                begin();
                if let Err(e) = os.rename(&tmp, path) {
                    let _ = os.remove(&tmp);
                    return Err(io_err("cannot rename over", path)(e));
                }
                visible();
                pause(Pause::AfterRename);
                if write == WritePath::RenameNoDirsync {
                    return Ok(());
                }
                let dir = path.parent().unwrap_or(Path::new("."));
                os.sync_dir(dir)
                    .map_err(io_err("cannot fsync directory", dir))
            }
        }
    }

    fn release(&self, held: Option<O::Held>) -> Result<()> {
        match held {
            None => Ok(()),
            Some(h) => self.os.unlock(h).map_err(|source| PoolError::Io {
                action: "cannot unlock",
                path: self
                    .lock_target()
                    .map(|(_, p)| p.to_path_buf())
                    .unwrap_or_default(),
                source,
            }),
        }
    }
}

/// One running operation: the pool, the op id, and the working copy of the snapshot.
struct Op<'p, O: Os, I: Issuer, C: Clock> {
    pool: &'p Pool<O, I, C>,
    id: u64,
    st: State,
    /// A change is waiting for the operation's single write (`batched`, `txn`).
    dirty: bool,
    /// `persist=txn` re-read the store at the start of this operation.
    reloaded: bool,
    /// This operation replaced some entry's tokens in its snapshot.
    tokens_touched: bool,
    /// A `serial` refresh holds the strategy's lock: reads and writes inside it take no more.
    holding: bool,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PoolError + 'a {
    move |source| PoolError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl<'p, O: Os, I: Issuer, C: Clock> Op<'p, O, I, C> {
    fn now(&self) -> u64 {
        self.pool.clock.now_ms()
    }

    fn strategy(&self) -> Strategy {
        self.pool.cfg.strategy
    }

    fn entries(&self) -> &[Entry] {
        self.st.store.entries(&self.pool.cfg.provider)
    }

    fn entries_mut(&mut self) -> &mut Vec<Entry> {
        let provider = self.pool.cfg.provider.clone();
        self.st.store.entries_mut(&provider)
    }

    fn entry_mut(&mut self, id: &str) -> Result<&mut Entry> {
        self.entries_mut()
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| PoolError::UnknownEntry(id.to_string()))
    }

    /// Run `f` under the lock the scope asks for at this level (`write`: a write and its
    /// re-read; otherwise a read). Under `scope=op` the operation already holds it.
    fn guarded<R>(&mut self, for_write: bool, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let scope = self.strategy().scope;
        let wanted = !self.holding && (scope == Scope::Io || (scope == Scope::Write && for_write));
        if !wanted {
            return f(self);
        }
        let held = self.pool.acquire(self.id)?;
        let r = f(self);
        let released = self.pool.release(held);
        let v = r?;
        released?;
        Ok(v)
    }

    /// Read and parse the store under the read lock of the scope.
    fn read_store(&mut self) -> Result<Option<(Store, String)>> {
        self.guarded(false, |op| op.read_unlocked())
    }

    fn read_unlocked(&mut self) -> Result<Option<(Store, String)>> {
        let path = &self.pool.cfg.store_path;
        let bytes = self
            .pool
            .os
            .read(path)
            .map_err(io_err("cannot read", path))?;
        let Some(bytes) = bytes else {
            self.record_read(String::new(), ReadOutcome::Missing);
            return Ok(None);
        };
        // A version this pool knows (bytes it wrote: a store serializes and parses back to
        // itself; or, with shared versions, bytes it or another pool parsed): the same read
        // outcome, without parsing and hashing them again. Only supported versions are kept.
        if let Some((store, hash)) = self.pool.versions.recall(&bytes) {
            self.record_read(hash.clone(), ReadOutcome::Parsed);
            return Ok(Some((store, hash)));
        }
        let hash = content_hash(&bytes);
        match serde_json::from_slice::<Store>(&bytes) {
            Ok(store) => {
                self.record_read(hash.clone(), ReadOutcome::Parsed);
                if store.version > STORE_VERSION {
                    return Err(PoolError::UnsupportedVersion {
                        path: path.clone(),
                        found: store.version,
                        supported: STORE_VERSION,
                    });
                }
                self.pool.versions.parsed(&bytes, &hash, &store);
                Ok(Some((store, hash)))
            }
            Err(e) => {
                let detail = if bytes.is_empty() {
                    "the file is empty".to_string()
                } else {
                    e.to_string()
                };
                self.record_read(hash, ReadOutcome::Corrupt(detail.clone()));
                Err(PoolError::CorruptStore {
                    path: path.clone(),
                    detail,
                })
            }
        }
    }

    fn record_read(&self, hash: String, outcome: ReadOutcome) {
        self.pool.os.record(Event::Read {
            op: self.id,
            hash,
            outcome,
            file: None,
        });
    }

    /// `persist=txn`: the snapshot becomes what is on disk, except that usage counts this
    /// process has not written yet (`select` bumps `request_count` without a write, as
    /// upstream) are kept, as they are under every other persist mode.
    fn reload(&mut self) -> Result<()> {
        if let Some((mut store, hash)) = self.read_store()? {
            let provider = &self.pool.cfg.provider;
            let mem = self.st.store.entries(provider);
            for d in store
                .credential_pool
                .get_mut(provider)
                .into_iter()
                .flatten()
            {
                if let Some(m) = mem.iter().find(|m| m.id == d.id) {
                    d.request_count = d.request_count.max(m.request_count);
                }
            }
            self.st.store = store;
            self.st.seen = Some(hash);
        }
        self.reloaded = true;
        Ok(())
    }

    /// Whether the store on disk is known to hold, for every entry whose tokens this operation
    /// did not replace, exactly the tokens of the snapshot, so that re-reading it to look for a
    /// peer's rotation cannot find one. True under `lock=flock, scope=op, persist=txn` once the
    /// operation re-read the store: every writer of the strategy holds the same file lock for
    /// its whole operation, and this operation writes the store only at its end.
    fn store_matches_snapshot_tokens(&self) -> bool {
        let s = self.strategy();
        s.lock == Lock::Flock
            && s.scope == Scope::Op
            && s.persist == Persist::Txn
            && self.reloaded
            && !self.tokens_touched
    }

    /// A change was made to the snapshot: write now (`each`, `merge`) or at the end of the
    /// operation (`batched`, `txn`). Returns whether it wrote.
    fn changed(&mut self) -> Result<()> {
        self.changed_wrote().map(|_| ())
    }

    fn changed_wrote(&mut self) -> Result<bool> {
        match self.strategy().persist {
            Persist::Each | Persist::Merge | Persist::AddMissing => self.write_now().map(|()| true),
            Persist::Batched | Persist::Txn => {
                self.dirty = true;
                Ok(false)
            }
        }
    }

    /// Write the snapshot to the store: under the write lock of the scope, re-load the file
    /// and overlay or merge this provider's list (not under `txn`, whose snapshot is already
    /// what is on disk), then write by the strategy's path.
    fn write_now(&mut self) -> Result<()> {
        self.dirty = false;
        self.guarded(true, |op| {
            let now = op.now();
            let cfg = &op.pool.cfg;
            let mut base = op.st.seen.clone();
            let disk = if cfg.strategy.persist != Persist::Txn {
                op.read_unlocked()?
            } else {
                None
            };
            let mut doc = match disk {
                Some((disk, hash)) if cfg.strategy.persist == Persist::Merge => {
                    base = Some(hash);
                    merge::merge(
                        disk,
                        &op.st.store,
                        &cfg.provider,
                        &op.st.removed,
                        &op.st.cleared,
                        now,
                        cfg.default_cooldown_ms,
                    )
                }
                Some((disk, _)) if cfg.strategy.persist == Persist::AddMissing => {
                    merge::add_missing(disk, &op.st.store, &cfg.provider, &op.st.removed)
                }
                Some((disk, _)) => merge::overlay(disk, &op.st.store, &cfg.provider),
                None => op.st.store.clone(),
            };
            doc.updated_at = Some(rfc3339(now));
            let bytes = doc.to_bytes();
            // Bytes a pool already wrote or parsed: their hash is known (the same string).
            let hash = (op.pool.versions.hash_of(&bytes)).unwrap_or_else(|| content_hash(&bytes));
            let written = Event::Write {
                op: op.id,
                hash: hash.clone(),
                base,
                entries: doc.entries(&cfg.provider).iter().map(summary).collect(),
                file: None,
            };
            op.pool
                .put(cfg.strategy.write, &cfg.store_path, &bytes, written, true)?;
            if cfg.strategy.persist == Persist::Merge {
                op.st.store = doc.clone();
            }
            op.st.seen = Some(hash.clone());
            op.pool.versions.wrote(bytes, hash, doc);
            Ok(())
        })
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: small, seeded, reproducible.
        let mut x = self.st.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.st.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn add(&mut self, new: NewEntry) -> String {
        let id = loop {
            let id = format!("{:06x}", self.next_rand() >> 40);
            if !self.entries().iter().any(|e| e.id == id) {
                break id;
            }
        };
        let priority = self
            .entries()
            .iter()
            .map(|e| e.priority + 1)
            .max()
            .unwrap_or(0);
        let mut e = Entry::new(&id, &new.label, new.auth_type, &new.source);
        e.priority = priority;
        e.access_token = new.access_token;
        e.refresh_token = new.refresh_token;
        e.expires_at_ms = new.expires_at_ms;
        self.entries_mut().push(e);
        id
    }

    /// Seed entries from the `providers` record and the external files; whether any was added.
    fn seed(&mut self) -> Result<bool> {
        let cfg = &self.pool.cfg;
        let mut added = false;
        let record = self.st.store.providers.get(&cfg.provider).cloned();
        if let Some(ProviderRecord {
            access_token: Some(a),
            refresh_token: Some(r),
            ..
        }) = record
        {
            if !self.entries().iter().any(|e| e.source == "device_code") {
                self.add(NewEntry {
                    label: "device_code".into(),
                    auth_type: AuthType::Oauth,
                    source: "device_code".into(),
                    access_token: Some(a),
                    refresh_token: Some(r),
                    expires_at_ms: None,
                });
                added = true;
            }
        }
        for src in &cfg.external {
            if src.format.provider() != cfg.provider {
                continue;
            }
            if self
                .entries()
                .iter()
                .any(|e| e.source == src.format.source())
            {
                continue;
            }
            if let Some(c) = self.read_external(src)? {
                self.add(NewEntry {
                    label: src.format.source().into(),
                    auth_type: AuthType::Oauth,
                    source: src.format.source().into(),
                    access_token: Some(c.access_token),
                    refresh_token: Some(c.refresh_token),
                    expires_at_ms: c.expires_at_ms,
                });
                added = true;
            }
        }
        Ok(added)
    }

    /// The external file this pool syncs `e` from, if any (see [`crate::external`]).
    fn external_of(&self, e: &Entry) -> Option<&'p ExternalSource> {
        let cfg = &self.pool.cfg;
        cfg.external.iter().find(|s| {
            s.format
                .syncs(&cfg.provider, &e.source, e.refresh_token.is_some())
        })
    }

    /// The refresh rule of this pool's provider.
    fn rule(&self) -> Rule {
        self.strategy().refresh.rule(&self.pool.cfg.provider)
    }

    fn read_external(&self, src: &ExternalSource) -> Result<Option<ExternalCreds>> {
        let bytes = self.read_external_bytes(src)?;
        Ok(bytes.and_then(|b| src.format.parse(&b)))
    }

    /// Read an external credential file, recording the read (`file`: its source name). Bytes
    /// that are not JSON are a corrupt read (a torn write of the other tool or of a peer); JSON
    /// without a token pair is a parsed read that seeds nothing.
    fn read_external_bytes(&self, src: &ExternalSource) -> Result<Option<Vec<u8>>> {
        let bytes = self
            .pool
            .os
            .read(&src.path)
            .map_err(io_err("cannot read", &src.path))?;
        let (hash, outcome) = match &bytes {
            None => (String::new(), ReadOutcome::Missing),
            Some(b) => (
                content_hash(b),
                match serde_json::from_slice::<serde_json::Value>(b) {
                    Ok(_) => ReadOutcome::Parsed,
                    Err(_) if b.is_empty() => ReadOutcome::Corrupt("the file is empty".into()),
                    Err(e) => ReadOutcome::Corrupt(e.to_string()),
                },
            ),
        };
        self.pool.os.record(Event::Read {
            op: self.id,
            hash,
            outcome,
            file: Some(src.format.source().to_string()),
        });
        Ok(bytes)
    }

    /// Whether an OAuth entry's access token expires within the refresh margin: by the JWT's
    /// `exp` claim where this provider's client reads it (a token that is not a JWT falls back
    /// to the stored time), else by `expires_at_ms`.
    fn expiring(&self, e: &Entry, now: u64) -> bool {
        let from_jwt = ExternalFormat::expiry_from_jwt(&self.pool.cfg.provider)
            .then(|| e.access_token.as_deref().and_then(crate::jwt::exp_ms))
            .flatten();
        e.auth_type == AuthType::Oauth
            && from_jwt
                .or(e.expires_at_ms)
                .is_some_and(|t| t <= now.saturating_add(self.pool.cfg.refresh_margin_ms))
    }

    /// The `available_entries` pass, then the pick.
    fn select(&mut self) -> Result<Option<Selected>> {
        let usable = self.available_entries()?;
        let Some(idx) = self.pick(&usable) else {
            return Ok(None);
        };
        let mut chosen = self.entries()[idx].clone();
        if self.pool.cfg.selection == Selection::RoundRobin {
            let list = self.entries_mut();
            let e = list.remove(idx);
            list.sort_by_key(|e| e.priority);
            list.push(e);
            for (i, e) in list.iter_mut().enumerate() {
                e.priority = i as i64;
            }
            self.changed()?;
        }
        chosen.request_count += 1;
        if let Some(e) = self.entries_mut().iter_mut().find(|e| e.id == chosen.id) {
            e.request_count = chosen.request_count;
        }
        Ok(Some(Selected {
            id: chosen.id,
            label: chosen.label,
            auth_type: chosen.auth_type,
            credential: chosen.access_token.unwrap_or_default(),
        }))
    }

    fn pick(&mut self, usable: &[usize]) -> Option<usize> {
        let list = self.entries();
        match self.pool.cfg.selection {
            Selection::FillFirst | Selection::RoundRobin => {
                usable.iter().copied().min_by_key(|&i| list[i].priority)
            }
            Selection::LeastUsed => usable
                .iter()
                .copied()
                .min_by_key(|&i| list[i].request_count),
            Selection::Random => {
                if usable.is_empty() {
                    None
                } else {
                    let r = self.next_rand() as usize;
                    Some(usable[r % usable.len()])
                }
            }
        }
    }

    /// One pass over the entries (UPSTREAM.md, `available_entries`): external re-sync,
    /// cooldown, refresh; then one more write if any status was cleared. Returns the indices
    /// of the usable entries.
    fn available_entries(&mut self) -> Result<Vec<usize>> {
        let now = self.now();
        let mut cleared = false;
        let mut usable = Vec::new();
        for idx in 0..self.entries().len() {
            let e = self.entries()[idx].clone();
            if e.last_status == Some(Status::Dead) {
                continue;
            }
            // 1. An exhausted entry backed by an external file that now holds another token.
            let mut presync = None;
            if e.is_exhausted() {
                if let Some(src) = self.external_of(&e) {
                    if let Some(c) = self.read_external(src)? {
                        if Some(&c.refresh_token) != e.refresh_token.as_ref() {
                            presync = Some(e.clone());
                            let entry = &mut self.entries_mut()[idx];
                            set_tokens(entry, &c);
                            entry.clear_status();
                            self.tokens_touched = true;
                            cleared = true;
                            self.persist_in_pass()?;
                        }
                    }
                }
            }
            // 2. Cooldown.
            let e = self.entries()[idx].clone();
            if let Some(until) = e.cooldown_until(self.pool.cfg.default_cooldown_ms) {
                if until > now {
                    continue;
                }
                self.entries_mut()[idx].clear_status();
                cleared = true;
            }
            // 3. Refresh an access token about to expire.
            if self.expiring(&e, now) && !self.refresh(idx, presync)? {
                continue;
            }
            usable.push(idx);
        }
        // 4. One more write if any status was cleared.
        if cleared {
            self.changed()?;
        }
        Ok(usable)
    }

    /// A write inside the pass, then the `between_persists` pause if it really wrote.
    fn persist_in_pass(&mut self) -> Result<()> {
        if self.changed_wrote()? {
            self.pool.os.pause(Pause::BetweenPersists);
        }
        Ok(())
    }

    /// A token a peer rotated to since the snapshot: on disk, or in the entry's external file.
    fn peer_rotation(&mut self, e: &Entry) -> Result<Option<ExternalCreds>> {
        // The disk can only show a rotation the snapshot lacks if someone wrote since the
        // reload; where that is impossible, skip the redundant read (and its parse and hash).
        let disk = if self.store_matches_snapshot_tokens() {
            None
        } else {
            self.read_store()?
        };
        if let Some((disk, _)) = disk {
            if let Some(d) = disk
                .entries(&self.pool.cfg.provider)
                .iter()
                .find(|d| d.id == e.id)
            {
                if let (Some(a), Some(r)) = (&d.access_token, &d.refresh_token) {
                    if Some(r) != e.refresh_token.as_ref() {
                        return Ok(Some(ExternalCreds {
                            access_token: a.clone(),
                            refresh_token: r.clone(),
                            expires_at_ms: d.expires_at_ms,
                        }));
                    }
                }
            }
        }
        if let Some(src) = self.external_of(e) {
            if let Some(c) = self.read_external(src)? {
                if Some(&c.refresh_token) != e.refresh_token.as_ref() {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    fn record_refresh(&self, entry: &Entry, token: &str, outcome: RefreshOutcome) {
        self.pool.os.record(Event::Refresh {
            op: self.id,
            entry: entry.id.clone(),
            token: tag(token),
            outcome,
        });
    }

    /// Refresh entry `idx` (`presync`: the entry as it was before this pass re-synced it);
    /// whether it is usable afterwards. Under a `serial` rule the lock is held across the
    /// re-read, the POST and the write, unless the operation already holds it.
    fn refresh(&mut self, idx: usize, presync: Option<Entry>) -> Result<bool> {
        let serial = self.rule().mode == Mode::Serial && !self.holding;
        if !serial {
            return self.refresh_unserialized(idx, presync);
        }
        let held = self.pool.acquire(self.id)?;
        self.holding = true;
        let r = self.refresh_unserialized(idx, presync).and_then(|usable| {
            if self.dirty {
                self.write_now()?;
            }
            Ok(usable)
        });
        self.holding = false;
        let released = self.pool.release(held);
        let usable = r?;
        released?;
        Ok(usable)
    }

    fn refresh_unserialized(&mut self, idx: usize, presync: Option<Entry>) -> Result<bool> {
        let rule = self.rule();
        let adopt = rule.mode != Mode::Blind;
        let mut entry = self.entries()[idx].clone();
        if adopt {
            if let Some(c) = self.peer_rotation(&entry)? {
                self.record_refresh(&entry, &c.refresh_token, RefreshOutcome::Adopted);
                set_tokens(&mut entry, &c);
                self.tokens_touched = true;
                entry.clear_status();
                let still_expiring = self.expiring(&entry, self.now());
                self.entries_mut()[idx] = entry.clone();
                self.persist_in_pass()?;
                if !still_expiring {
                    return Ok(true);
                }
            }
        }
        let Some(rt) = entry.refresh_token.clone() else {
            return Ok(false);
        };
        let os = &self.pool.os;
        os.pause(Pause::BeforeRedeem);
        let mut reply = self.pool.issuer.redeem(&rt);
        os.pause(Pause::AfterRedeem);
        if rule.retry_second_endpoint {
            if let Err(RedeemError::Refused { .. }) = &reply {
                // The second token endpoint of the same authorization server: the same
                // refresh token, presented once more.
                self.record_refresh(&entry, &rt, RefreshOutcome::Refused);
                reply = self.pool.issuer.redeem(&rt);
            }
        }
        let now = self.now();
        let usable = match reply {
            Ok(g) => {
                self.record_refresh(&entry, &rt, RefreshOutcome::Rotated);
                let c = ExternalCreds {
                    access_token: g.access_token,
                    refresh_token: g.refresh_token,
                    expires_at_ms: Some(now + g.expires_in_s * 1000),
                };
                set_tokens(&mut entry, &c);
                self.tokens_touched = true;
                entry.clear_status();
                self.write_back_elsewhere(&entry, &c, now)?;
                true
            }
            Err(RedeemError::Refused { error }) => {
                self.record_refresh(&entry, &rt, RefreshOutcome::Refused);
                match adopt
                    .then(|| self.peer_rotation(&entry))
                    .transpose()?
                    .flatten()
                {
                    Some(c) => {
                        set_tokens(&mut entry, &c);
                        self.tokens_touched = true;
                        entry.clear_status();
                        !self.expiring(&entry, now)
                    }
                    None => {
                        let status = if adopt {
                            Status::Dead
                        } else {
                            Status::Exhausted
                        };
                        if rule.mark_presync_copy {
                            if let Some(before) = presync {
                                entry = before;
                            }
                        }
                        mark(&mut entry, status, now, 400, &error);
                        false
                    }
                }
            }
            Err(RedeemError::Unavailable(msg)) => {
                self.record_refresh(&entry, &rt, RefreshOutcome::Unavailable);
                if rule.mark_presync_copy {
                    if let Some(before) = presync {
                        entry = before;
                    }
                }
                mark(&mut entry, Status::Exhausted, now, 503, &msg);
                false
            }
        };
        self.entries_mut()[idx] = entry;
        self.persist_in_pass()?;
        Ok(usable)
    }

    /// After a rotation, upstream also updates the `providers` record and the external file.
    fn write_back_elsewhere(&mut self, e: &Entry, c: &ExternalCreds, now: u64) -> Result<()> {
        let provider = self.pool.cfg.provider.clone();
        if let Some(rec) = self.st.store.providers.get_mut(&provider) {
            if e.source == "device_code" {
                rec.access_token = Some(c.access_token.clone());
                rec.refresh_token = Some(c.refresh_token.clone());
                rec.last_refresh = Some(rfc3339(now));
            }
        }
        if let Some(src) = self.external_of(e) {
            let old = self.read_external_bytes(src)?;
            let bytes = src.format.render(old.as_deref(), c, now);
            let written = Event::Write {
                op: self.id,
                hash: content_hash(&bytes),
                base: None,
                entries: Vec::new(),
                file: Some(src.format.source().to_string()),
            };
            self.pool
                .put(self.strategy().write, &src.path, &bytes, written, false)?;
        }
        Ok(())
    }
}

fn set_tokens(e: &mut Entry, c: &ExternalCreds) {
    e.access_token = Some(c.access_token.clone());
    e.refresh_token = Some(c.refresh_token.clone());
    e.expires_at_ms = c.expires_at_ms;
}

fn mark(e: &mut Entry, status: Status, now: u64, code: u16, reason: &str) {
    e.clear_status();
    e.last_status = Some(status);
    e.last_status_at = Some(now);
    e.last_error_code = Some(code);
    e.last_error_reason = Some(reason.to_string());
    e.last_error_message = Some(format!("refresh failed: {reason}"));
    e.last_error_reset_at = None;
}

/// What a write reports of one entry.
pub fn summary(e: &Entry) -> EntrySummary {
    EntrySummary {
        id: e.id.clone(),
        status: e.last_status,
        status_at: e.last_status_at,
        refresh: e.refresh_token.as_deref().map(tag),
        access: e.access_token.as_deref().map(tag),
        priority: Some(e.priority),
        reset_at: e.last_error_reset_at,
    }
}

//! The two references every bench run measures beside the pool, with the same op mix (one
//! logical op per `select`, one more per `mark_exhausted`, the same API use outside the lock):
//!
//! - the physical floor: the bare syscalls of one locked read-modify-write of a file the size of
//!   the store (open the lock file, flock, read, write a temp file, fsync, rename, fsync the
//!   directory, unlock) with no pool logic: a counter in the file is incremented;
//! - SQLite (bundled) in WAL mode with `synchronous=FULL`, the same pool as rows, each op one
//!   `BEGIN IMMEDIATE` transaction doing the round-robin pick (cooldown check, renumbering,
//!   usage count) or the mark-exhausted-and-rotate. No refresh (there is no issuer call in it).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool_core::real::SystemClock;
use pool_core::store::Store;
use pool_core::world::{Clock, Issuer as _};
use rusqlite::{params, Connection, OptionalExtension};

use super::measure::{fork_timed, BenchError, Samples, Worker};
use super::workload::{every, start_world, Mix};
use crate::issuer::client::HttpIssuer;

/// Which reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    Floor,
    Sqlite,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::Floor => "floor",
            Reference::Sqlite => "sqlite",
        }
    }
}

pub const FLOOR_FILE: &str = "floor.json";
pub const FLOOR_LOCK: &str = "floor.lock";
pub const SQLITE_FILE: &str = "pool.db";
const PROVIDER: &str = "anthropic";
/// Where the counter's 20 digits start in the floor file.
const COUNTER_AT: usize = 11;

/// Write the floor file: a counter padded to `len` bytes (the size of the pool's store).
pub fn prepare_floor(dir: &Path, len: usize) -> io::Result<()> {
    let mut s = format!("{{\"counter\":{:020},\"pad\":\"", 0);
    while s.len() + 2 < len {
        s.push('x');
    }
    s.push_str("\"}");
    std::fs::write(dir.join(FLOOR_FILE), s)
}

/// The counter in the floor file: how many read-modify-writes it has seen.
pub fn floor_counter(dir: &Path) -> io::Result<u64> {
    let b = std::fs::read(dir.join(FLOOR_FILE))?;
    parse_counter(&b).ok_or_else(|| io::Error::other("the floor file has no counter"))
}

fn parse_counter(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b.get(COUNTER_AT..COUNTER_AT + 20)?)
        .ok()?
        .parse()
        .ok()
}

/// One floor op; returns the nanoseconds spent waiting for the lock.
pub fn floor_op(dir: &Path, tmp: &Path) -> io::Result<u64> {
    let t = Instant::now();
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(FLOOR_LOCK))?;
    lock.lock()?;
    let wait = t.elapsed().as_nanos() as u64;
    let store = dir.join(FLOOR_FILE);
    let mut bytes = std::fs::read(&store)?;
    let n = parse_counter(&bytes).ok_or_else(|| io::Error::other("floor file torn"))?;
    bytes[COUNTER_AT..COUNTER_AT + 20].copy_from_slice(format!("{:020}", n + 1).as_bytes());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, &store)?;
    File::open(dir)?.sync_all()?;
    lock.unlock()?;
    Ok(wait)
}

/// Create the SQLite database holding the pool of the store at `store` (WAL, one row per entry).
pub fn prepare_sqlite(dir: &Path, store: &Store) -> rusqlite::Result<()> {
    let conn = Connection::open(dir.join(SQLITE_FILE))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE entries (
            provider TEXT NOT NULL, id TEXT NOT NULL, label TEXT NOT NULL,
            auth_type TEXT NOT NULL, priority INTEGER NOT NULL, source TEXT NOT NULL,
            access_token TEXT, refresh_token TEXT, expires_at_ms INTEGER,
            request_count INTEGER NOT NULL,
            last_status TEXT, last_status_at INTEGER, last_error_code INTEGER,
            last_error_reason TEXT, last_error_message TEXT, last_error_reset_at INTEGER,
            PRIMARY KEY (provider, id));",
    )?;
    let mut ins = conn.prepare(
        "INSERT INTO entries VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, NULL, NULL, NULL, NULL)",
    )?;
    for e in store.entries(PROVIDER) {
        let auth = serde_json::to_value(e.auth_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        ins.execute(params![
            PROVIDER,
            e.id,
            e.label,
            auth,
            e.priority,
            e.source,
            e.access_token,
            e.refresh_token,
            e.expires_at_ms.map(|v| v as i64),
            e.request_count as i64,
        ])?;
    }
    Ok(())
}

/// A connection as the workers use it: `synchronous=FULL`, a long busy timeout.
pub fn sqlite_connect(dir: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(dir.join(SQLITE_FILE))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(60))?;
    Ok(conn)
}

/// Rows in the database and the sum of their usage counts.
pub fn sqlite_totals(dir: &Path) -> rusqlite::Result<(u64, u64)> {
    let conn = sqlite_connect(dir)?;
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(request_count), 0) FROM entries",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// One SQLite op in one `BEGIN IMMEDIATE` transaction: optionally mark `mark` exhausted until
/// `reset_at`, then the round-robin pick. Returns the picked id and the lock wait (ns).
pub fn sqlite_op(
    conn: &Connection,
    now: u64,
    mark: Option<(&str, u64)>,
    default_cooldown_ms: u64,
) -> rusqlite::Result<(Option<String>, u64)> {
    let t = Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let wait = t.elapsed().as_nanos() as u64;
    let r = sqlite_pick(conn, now, mark, default_cooldown_ms);
    match r {
        Ok(picked) => {
            conn.execute_batch("COMMIT")?;
            Ok((picked, wait))
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

type Row = (String, Option<String>, Option<i64>, Option<i64>);

fn sqlite_pick(
    conn: &Connection,
    now: u64,
    mark: Option<(&str, u64)>,
    default_cooldown_ms: u64,
) -> rusqlite::Result<Option<String>> {
    if let Some((id, reset_at)) = mark {
        conn.prepare_cached(
            "UPDATE entries SET last_status = 'exhausted', last_status_at = ?1,
             last_error_code = 429, last_error_reason = 'bench',
             last_error_message = 'HTTP 429: bench', last_error_reset_at = ?2
             WHERE provider = ?3 AND id = ?4",
        )?
        .execute(params![now as i64, reset_at as i64, PROVIDER, id])?;
    }
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT id, last_status, last_status_at, last_error_reset_at FROM entries
             WHERE provider = ?1 ORDER BY priority",
        )?
        .query_map([PROVIDER], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut picked = None;
    for (id, status, at, reset) in &rows {
        match status.as_deref() {
            Some("dead") => continue,
            Some("exhausted") => {
                let until = reset
                    .map(|r| r as u64)
                    .unwrap_or(at.unwrap_or(0) as u64 + default_cooldown_ms);
                if until > now {
                    continue;
                }
                conn.prepare_cached(
                    "UPDATE entries SET last_status = NULL, last_status_at = NULL,
                     last_error_code = NULL, last_error_reason = NULL,
                     last_error_message = NULL, last_error_reset_at = NULL
                     WHERE provider = ?1 AND id = ?2",
                )?
                .execute(params![PROVIDER, id])?;
            }
            _ => {}
        }
        if picked.is_none() {
            picked = Some(id.clone());
        }
    }
    let Some(pick) = picked else {
        return Ok(None);
    };
    // Round robin: the pick moves to the end, every priority renumbered.
    let mut set =
        conn.prepare_cached("UPDATE entries SET priority = ?1 WHERE provider = ?2 AND id = ?3")?;
    let order = rows
        .iter()
        .map(|r| &r.0)
        .filter(|id| **id != pick)
        .chain(std::iter::once(&pick));
    for (i, id) in order.enumerate() {
        set.execute(params![i as i64, PROVIDER, id])?;
    }
    conn.prepare_cached(
        "UPDATE entries SET request_count = request_count + 1 WHERE provider = ?1 AND id = ?2",
    )?
    .execute(params![PROVIDER, pick])?;
    Ok(Some(pick))
}

/// A forked reference worker.
pub struct RefWorker {
    dir: PathBuf,
    tmp: PathBuf,
    conn: Option<Connection>,
    issuer: Option<HttpIssuer>,
    credential: String,
    mix: Mix,
    turn: u64,
}

impl RefWorker {
    pub fn new(
        kind: Reference,
        proc: u32,
        dir: &Path,
        issuer_url: Option<&str>,
        credential: String,
        mix: &Mix,
    ) -> io::Result<RefWorker> {
        let conn = match kind {
            Reference::Sqlite => Some(sqlite_connect(dir).map_err(io::Error::other)?),
            Reference::Floor => None,
        };
        Ok(RefWorker {
            dir: dir.to_path_buf(),
            tmp: dir.join(format!(".{FLOOR_FILE}.p{proc}.tmp")),
            conn,
            issuer: issuer_url.map(|u| HttpIssuer::new(u, proc, Duration::from_secs(10))),
            credential,
            mix: mix.clone(),
            turn: 0,
        })
    }

    /// One logical op (`mark`: mark the last pick exhausted first); the picked id.
    fn op(&mut self, s: &mut Samples, mark: Option<&str>) -> Option<String> {
        let (dir, tmp) = (&self.dir, &self.tmp);
        let now = SystemClock.now_ms();
        let reset = now + self.mix.cooldown_ms;
        let r = match &self.conn {
            None => s.time(|| floor_op(dir, tmp).map(|w| (Some(String::new()), w))),
            Some(c) => s
                .time(|| sqlite_op(c, now, mark.map(|m| (m, reset)), 3_600_000))
                .map_err(io::Error::other),
        };
        match r {
            Ok((picked, wait)) => {
                s.lock_wait_ns += wait;
                s.locks += 1;
                picked
            }
            // Counted in `errors` by `time`.
            Err(_) => None,
        }
    }
}

impl Worker for RefWorker {
    fn step(&mut self, s: &mut Samples) {
        self.turn += 1;
        let picked = self.op(s, None);
        if picked.is_none() {
            return;
        }
        if every(self.turn, self.mix.use_every) {
            if let Some(i) = &self.issuer {
                let _ = i.use_credential(&self.credential);
            }
        }
        if every(self.turn, self.mix.exhaust_every) {
            let id = picked.unwrap_or_default();
            self.op(s, Some(&id));
        }
    }
}

/// Run one reference cell in `dir`.
pub fn run_ref_cell(
    kind: Reference,
    procs: u32,
    seconds: f64,
    dir: &Path,
    mix: &Mix,
) -> Result<Vec<Samples>, BenchError> {
    // The same world as a pool cell: its store gives the pool's size and rows, its issuer
    // answers the API use.
    let (issuer, _log) = start_world(dir, mix)?;
    let bytes = std::fs::read(dir.join("auth.json"))?;
    let store: Store = serde_json::from_slice(&bytes)
        .map_err(|e| BenchError(format!("the bench store does not parse: {e}")))?;
    let credential = store
        .entries(PROVIDER)
        .iter()
        .find(|e| e.refresh_token.is_none())
        .and_then(|e| e.access_token.clone())
        .unwrap_or_default();
    match kind {
        Reference::Floor => prepare_floor(dir, bytes.len())?,
        Reference::Sqlite => prepare_sqlite(dir, &store)
            .map_err(|e| BenchError(format!("cannot create the SQLite database: {e}")))?,
    }
    let url = issuer.url.clone();
    let samples = fork_timed(
        procs,
        seconds,
        dir,
        |p| RefWorker::new(kind, p, dir, Some(&url), credential.clone(), mix),
        Duration::from_secs(30),
    );
    let stopped = issuer.stop();
    let samples = samples?;
    stopped.map_err(|e| BenchError(format!("the issuer failed: {e}")))?;
    Ok(samples)
}

/// Row of the SQLite table by id, for tests: (priority, request_count, last_status).
pub fn sqlite_row(dir: &Path, id: &str) -> rusqlite::Result<Option<(i64, i64, Option<String>)>> {
    sqlite_connect(dir)?
        .query_row(
            "SELECT priority, request_count, last_status FROM entries WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_core::{AuthType, Entry};

    fn store(n: usize) -> Store {
        let mut s = Store::default();
        for i in 0..n {
            let mut e = Entry::new(
                &format!("{i:06x}"),
                &format!("k{i}"),
                AuthType::ApiKey,
                "manual",
            );
            e.priority = i as i64;
            e.access_token = Some(format!("sk-{i}"));
            s.entries_mut(PROVIDER).push(e);
        }
        s
    }

    #[test]
    fn the_floor_counts_every_read_modify_write_across_processes() {
        if !crate::testing::in_single_threaded_process(
            "bench::refs::tests::the_floor_counts_every_read_modify_write_across_processes",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        prepare_floor(dir.path(), 900).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(FLOOR_FILE)).unwrap().len(),
            900
        );
        let mix = Mix {
            use_every: 0,
            exhaust_every: 3,
            ..Mix::default()
        };
        let samples = fork_timed(
            3,
            0.2,
            dir.path(),
            |p| RefWorker::new(Reference::Floor, p, dir.path(), None, String::new(), &mix),
            Duration::from_secs(30),
        )
        .unwrap();
        let ops: u64 = samples.iter().map(|s| s.ops).sum();
        assert!(ops > 0, "{ops}");
        assert_eq!(samples.iter().map(|s| s.errors).sum::<u64>(), 0);
        assert_eq!(floor_counter(dir.path()).unwrap(), ops);
        assert_eq!(
            std::fs::read(dir.path().join(FLOOR_FILE)).unwrap().len(),
            900
        );
    }

    #[test]
    fn sqlite_ops_persist_round_robin_and_cooldowns() {
        let dir = tempfile::tempdir().unwrap();
        prepare_sqlite(dir.path(), &store(3)).unwrap();
        let conn = sqlite_connect(dir.path()).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let picks: Vec<String> = (0..4)
            .map(|_| sqlite_op(&conn, 1000, None, 3_600_000).unwrap().0.unwrap())
            .collect();
        assert_eq!(picks, ["000000", "000001", "000002", "000000"]);
        // Mark 000001 (next in line) exhausted until 5000: the pick skips it, then comes back.
        let (p, _) = sqlite_op(&conn, 1000, Some(("000001", 5000)), 3_600_000).unwrap();
        assert_eq!(p.as_deref(), Some("000002"));
        let (p, _) = sqlite_op(&conn, 1001, None, 3_600_000).unwrap();
        assert_eq!(p.as_deref(), Some("000000"));
        let (p, _) = sqlite_op(&conn, 5000, None, 3_600_000).unwrap();
        assert_eq!(p.as_deref(), Some("000001"));
        drop(conn);
        // Persisted: a new connection sees the 7 picks and the cleared status.
        assert_eq!(sqlite_totals(dir.path()).unwrap(), (3, 7));
        let (_, count, status) = sqlite_row(dir.path(), "000001").unwrap().unwrap();
        assert_eq!((count, status), (2, None));
    }

    #[test]
    fn forked_sqlite_workers_lose_no_pick() {
        if !crate::testing::in_single_threaded_process(
            "bench::refs::tests::forked_sqlite_workers_lose_no_pick",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        prepare_sqlite(dir.path(), &store(4)).unwrap();
        let mix = Mix {
            use_every: 0,
            exhaust_every: 0,
            ..Mix::default()
        };
        let samples = fork_timed(
            3,
            0.2,
            dir.path(),
            |p| RefWorker::new(Reference::Sqlite, p, dir.path(), None, String::new(), &mix),
            Duration::from_secs(30),
        )
        .unwrap();
        let ops: u64 = samples.iter().map(|s| s.ops).sum();
        assert!(ops > 0, "{ops}");
        assert_eq!(samples.iter().map(|s| s.errors).sum::<u64>(), 0);
        assert_eq!(sqlite_totals(dir.path()).unwrap(), (4, ops));
    }
}

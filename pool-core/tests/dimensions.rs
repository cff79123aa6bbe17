//! One test (or a few) per value of each strategy dimension, on the real OS in temp dirs,
//! plus selection strategies and `load_pool`'s seeding and bad-input handling.

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use pool_core::external::ExternalFormat;
use pool_core::pool::Selection;
use pool_core::real::RealOs;
use pool_core::store::{ProviderRecord, Status, Store};
use pool_core::world::{Event, LockKind, Os, Pause, RefreshOutcome};
use pool_core::PoolError;

/// What a pause hook collects for the test to look at afterwards.
type Shared<T> = Arc<Mutex<Vec<T>>>;

/// A pool with `n` API-key entries, loaded; hooks cleared afterwards.
fn loaded(dir: &std::path::Path, strat: &str, n: usize) -> (Proc, Vec<String>) {
    // Start from a valid empty store: with a lock on the data file itself (flock-data, fcntl)
    // a missing store cannot be created (see `fresh_profile_works_with_data_file_locks`).
    let store = dir.join("auth.json");
    std::fs::write(&store, Store::default().to_bytes()).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = proc(dir, strat);
    p.pool.load_pool().unwrap();
    let ids = (0..n)
        .map(|i| p.pool.add_entry(api_key(&format!("key{i}"))).unwrap())
        .collect();
    p.hooks.clear();
    (p, ids)
}

// ================================================================ write=in-place

#[test]
fn in_place_truncates_and_writes_in_several_chunks() {
    let dir = tempdir();
    let (p, ids) = loaded(
        dir.path(),
        "lock=none,scope=io,persist=each,write=in-place,refresh=blind",
        3,
    );
    let path = p.pool.config().store_path.clone();
    let before = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(
        before > p.pool.config().write_chunk,
        "store must be larger than one chunk"
    );
    // A reader at the mid-write pause sees a torn file.
    let torn: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let t = torn.clone();
    let rp = path.clone();
    p.hooks.on_pause(move |pt| {
        if pt == Pause::MidWrite {
            t.lock().unwrap().push(std::fs::read(&rp).unwrap());
        }
    });
    p.pool
        .mark_exhausted_and_rotate(&ids[0], 429, "rate_limited", None)
        .unwrap();
    let mids = p.hooks.count(Pause::MidWrite);
    assert!(mids >= 1, "no MidWrite pause");
    assert_eq!(p.hooks.count(Pause::BeforeRename), 0);
    let seen = torn.lock().unwrap().clone();
    assert_eq!(seen.len(), mids);
    for bytes in &seen {
        // Truncated then partially written: shorter than the final file and not a store.
        assert!(
            serde_json::from_slice::<Store>(bytes).is_err(),
            "mid-write read parsed"
        );
    }
    assert!(
        seen[0].len() <= p.pool.config().write_chunk,
        "first mid-write read should hold one chunk"
    );
    // Afterwards the content is complete and correct.
    let disk = disk_entries(p.pool.config());
    assert_eq!(common::ids(&disk), ids);
    assert_eq!(disk[0].last_status, Some(Status::Exhausted));
    // Only the store file (no temp files) was used.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("auth.json")]);
}

#[test]
fn in_place_small_store_is_one_chunk() {
    let dir = tempdir();
    let mut cfg = config(dir.path(), "none");
    cfg.write_chunk = 1 << 20;
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    p.pool.add_entry(api_key("a")).unwrap();
    assert_eq!(p.hooks.count(Pause::MidWrite), 0);
    assert_eq!(p.hooks.writes(), 1);
}

// ================================================================ write=rename

#[test]
fn rename_fsyncs_renames_leaves_no_temp_and_readers_see_old_content() {
    let dir = tempdir();
    let (p, ids) = loaded(dir.path(), "flock", 3);
    let path = p.pool.config().store_path.clone();
    let old = std::fs::read(&path).unwrap();
    let seen: Shared<(Pause, Vec<u8>, usize)> = Arc::default();
    let (s, rp, d) = (seen.clone(), path.clone(), dir.path().to_path_buf());
    p.hooks.on_pause(move |pt| {
        if matches!(pt, Pause::BeforeRename | Pause::AfterRename) {
            let temps = std::fs::read_dir(&d)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".tmp")
                })
                .count();
            s.lock()
                .unwrap()
                .push((pt, std::fs::read(&rp).unwrap(), temps));
        }
    });
    p.pool
        .mark_exhausted_and_rotate(&ids[1], 429, "rate_limited", None)
        .unwrap();
    assert_eq!(p.hooks.count(Pause::MidWrite), 0);
    assert_eq!(p.hooks.count(Pause::BeforeRename), 1);
    assert_eq!(p.hooks.count(Pause::AfterRename), 1);
    let seen = seen.lock().unwrap().clone();
    let (_, before, temps_before) = &seen[0];
    assert_eq!(
        before, &old,
        "a read before the rename must see the old, complete store"
    );
    assert_eq!(*temps_before, 1, "the temp file exists before the rename");
    let (_, after, temps_after) = &seen[1];
    let after: Store = serde_json::from_slice(after).unwrap();
    assert_eq!(
        after.entries("anthropic")[1].last_status,
        Some(Status::Exhausted)
    );
    assert_eq!(*temps_after, 0);
    // No temp files remain; store and lock file are 0600.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["auth.json", "auth.lock"]);
    for n in names {
        let mode = std::fs::metadata(dir.path().join(&n))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{n} has mode {mode:o}");
    }
}

#[test]
fn in_place_store_is_created_0600() {
    let dir = tempdir();
    let p = proc(dir.path(), "none");
    p.pool.load_pool().unwrap();
    p.pool.add_entry(api_key("a")).unwrap();
    let mode = std::fs::metadata(&p.pool.config().store_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

// ================================================================ persist

/// #8040 as filed: in the `openai-codex` pool, `k` exhausted OAuth entries and a Codex CLI
/// file whose tokens changed since: one `select` re-syncs every one of them from that file.
fn resync_fixture(dir: &std::path::Path, strat: &str) -> (Proc, usize) {
    let codex = dir.join("codex.json");
    let far = T0 + 86_400_000;
    codex_file(&codex, "at_codex_0", "rt_codex_0", far);
    let mut cfg = config(dir, strat);
    cfg.provider = "openai-codex".into();
    cfg.external = vec![external(ExternalFormat::Codex, codex.clone())];
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    p.pool.load_pool().unwrap(); // seeds the codex entry
    for (label, source) in [("user@example.com", "device_code"), ("second", "manual")] {
        p.pool
            .add_entry(oauth(label, source, "at_codex_0", "rt_codex_0", far))
            .unwrap();
    }
    let all = ids(&mem_entries(&p.pool));
    assert_eq!(all.len(), 3);
    for id in &all {
        p.pool
            .mark_exhausted_and_rotate(id, 429, "rate_limited", Some(far))
            .unwrap();
    }
    assert!(mem_entries(&p.pool).iter().all(|e| e.is_exhausted()));
    // The Codex CLI rotates its tokens.
    codex_file(&codex, "at_codex_1", "rt_codex_1", far);
    p.hooks.clear();
    (p, all.len())
}

/// The same store in the `anthropic` pool: the Codex file is not this pool's (upstream never
/// syncs it there), so nothing re-syncs and nothing is written.
#[test]
fn a_codex_file_is_synced_only_in_the_openai_codex_pool() {
    let dir = tempdir();
    let codex = dir.path().join("codex.json");
    let far = T0 + 86_400_000;
    codex_file(&codex, "at_codex_0", "rt_codex_0", far);
    let mut cfg = config(
        dir.path(),
        "lock=flock,scope=io,persist=each,write=rename,refresh=blind",
    );
    cfg.external = vec![external(ExternalFormat::Codex, codex.clone())];
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    assert!(
        mem_entries(&p.pool).is_empty(),
        "the anthropic pool seeds nothing from Codex"
    );
    let id = p
        .pool
        .add_entry(oauth("codex", "codex", "at_codex_0", "rt_codex_0", far))
        .unwrap();
    p.pool
        .mark_exhausted_and_rotate(&id, 429, "rate_limited", Some(far))
        .unwrap();
    codex_file(&codex, "at_codex_1", "rt_codex_1", far);
    p.hooks.clear();
    assert_eq!(p.pool.select().unwrap(), None);
    assert_eq!(p.hooks.writes(), 0);
}

#[test]
fn persist_each_writes_k_plus_one_times_per_select() {
    let dir = tempdir();
    let (p, k) = resync_fixture(
        dir.path(),
        "lock=flock,scope=io,persist=each,write=rename,refresh=blind",
    );
    let sel = p.pool.select().unwrap();
    assert!(sel.is_some());
    assert_eq!(
        p.hooks.writes(),
        k + 1,
        "persist=each: one write per re-sync plus one"
    );
    assert_eq!(p.hooks.count(Pause::BetweenPersists), k);
    assert!(disk_entries(p.pool.config())
        .iter()
        .all(|e| e.last_status.is_none()));
}

#[test]
fn persist_batched_and_txn_write_once_per_select() {
    for strat in [
        "lock=flock,scope=op,persist=batched,write=rename,refresh=blind",
        "lock=flock,scope=op,persist=txn,write=rename,refresh=blind",
    ] {
        let dir = tempdir();
        let (p, _) = resync_fixture(dir.path(), strat);
        p.pool.select().unwrap().unwrap();
        assert_eq!(p.hooks.writes(), 1, "{strat}");
        assert_eq!(p.hooks.count(Pause::BetweenPersists), 0, "{strat}");
        let disk = disk_entries(p.pool.config());
        assert!(disk.iter().all(|e| e.last_status.is_none()), "{strat}");
        assert!(disk
            .iter()
            .all(|e| e.refresh_token.as_deref() == Some("rt_codex_1")));
    }
}

#[test]
fn persist_txn_reloads_at_op_start_batched_does_not() {
    // A peer adds an entry; the next operation of a txn pool sees it, a batched one does not.
    for (strat, sees) in [
        (
            "lock=flock,scope=op,persist=txn,write=rename,refresh=blind",
            true,
        ),
        (
            "lock=flock,scope=op,persist=batched,write=rename,refresh=blind",
            false,
        ),
    ] {
        let dir = tempdir();
        let (p, _) = loaded(dir.path(), strat, 1);
        let q = proc(dir.path(), strat);
        q.pool.load_pool().unwrap();
        let c = q.pool.add_entry(api_key("peer")).unwrap();
        p.pool.reset_statuses().unwrap();
        assert_eq!(ids(&mem_entries(&p.pool)).contains(&c), sees, "{strat}");
        assert_eq!(
            ids(&disk_entries(p.pool.config())).contains(&c),
            sees,
            "{strat}"
        );
    }
}

#[test]
fn persist_merge_rereads_keeps_disk_only_entries_and_binding_cooldown() {
    let merge = "lock=flock,scope=write,persist=merge,write=rename,refresh=blind";
    let each = "lock=flock,scope=write,persist=each,write=rename,refresh=blind";
    for (strat, keeps) in [(merge, true), (each, false)] {
        let dir = tempdir();
        let (p, ids0) = loaded(dir.path(), strat, 2);
        // Q: a second process adds C and puts A in a binding cooldown.
        let q = proc(dir.path(), strat);
        q.pool.load_pool().unwrap();
        let c = q.pool.add_entry(api_key("c")).unwrap();
        q.pool
            .mark_exhausted_and_rotate(&ids0[0], 429, "rate_limited", Some(T0 + 3_600_000))
            .unwrap();
        // P (stale snapshot: [A ok, B ok]) writes for an unrelated reason.
        p.clock.advance(1000);
        p.pool
            .mark_exhausted_and_rotate(&ids0[1], 429, "rate_limited", None)
            .unwrap();
        let disk = disk_entries(p.pool.config());
        let a = disk.iter().find(|e| e.id == ids0[0]).unwrap();
        assert_eq!(
            disk.iter().any(|e| e.id == c),
            keeps,
            "{strat}: disk-only entry"
        );
        assert_eq!(
            a.last_status == Some(Status::Exhausted),
            keeps,
            "{strat}: binding cooldown"
        );
        let b = disk.iter().find(|e| e.id == ids0[1]).unwrap();
        assert_eq!(b.last_status, Some(Status::Exhausted));
        // Merge re-read the store inside its write: a Read of the op, then a Write whose base
        // is that read's hash.
        let evs = p.hooks.events();
        let pos = evs
            .iter()
            .position(|e| matches!(e, Event::Write { .. }))
            .unwrap();
        let Event::Write { op, base, .. } = &evs[pos] else {
            unreachable!()
        };
        let read = evs[..pos].iter().rev().find_map(|e| match e {
            Event::Read { op: o, hash, .. } if o == op => Some(hash.clone()),
            _ => None,
        });
        assert!(read.is_some(), "{strat}: no re-read before the write");
        if keeps {
            assert_eq!(base, &read, "merge records the re-read as its base");
            // And the merged state is the new snapshot.
            assert!(ids(&mem_entries(&p.pool)).contains(&c));
        }
    }
}

#[test]
fn persist_merge_does_not_resurrect_a_removed_entry() {
    let dir = tempdir();
    let (p, ids0) = loaded(dir.path(), "merge-on-write", 3);
    assert!(p.pool.remove(&ids0[1]).unwrap());
    p.pool.reset_statuses().unwrap();
    assert!(!ids(&disk_entries(p.pool.config())).contains(&ids0[1]));
}

// ================================================================ refresh

/// P and Q share an expiring OAuth entry with refresh token R0; Q refreshes it first.
fn rotated_by_peer(strat: &str) -> (tempfile::TempDir, Proc, String, String) {
    let dir = tempdir();
    let issuer = FakeIssuer::new();
    let clock = ManualClock::new(T0);
    let (a0, r0) = issuer.mint();
    let p = proc_with(config(dir.path(), strat), &issuer, &clock);
    p.pool.load_pool().unwrap();
    let id = p
        .pool
        .add_entry(oauth("o", "manual", &a0, &r0, T0 + 60_000))
        .unwrap();
    let q = proc_with(config(dir.path(), strat), &issuer, &clock);
    q.pool.load_pool().unwrap();
    assert_eq!(q.pool.select().unwrap().unwrap().id, id);
    assert_eq!(issuer.redemptions(&r0), 1);
    p.hooks.clear();
    (dir, p, id, r0)
}

#[test]
fn refresh_blind_spends_the_stale_token_again() {
    let (_d, p, id, r0) =
        rotated_by_peer("lock=flock,scope=op,persist=each,write=rename,refresh=blind");
    let sel = p.pool.select().unwrap();
    assert_eq!(
        p.issuer.redemptions(&r0),
        2,
        "blind must POST R0 a second time"
    );
    assert!(sel.is_none());
    let e = mem_entries(&p.pool)
        .into_iter()
        .find(|e| e.id == id)
        .unwrap();
    assert_eq!(
        e.last_status,
        Some(Status::Exhausted),
        "blind marks a refusal exhausted"
    );
    assert!(p.hooks.events().iter().any(|e| matches!(
        e,
        Event::Refresh {
            outcome: RefreshOutcome::Refused,
            ..
        }
    )));
}

#[test]
fn refresh_adopt_takes_the_peers_token_without_a_post() {
    let (_d, p, id, r0) =
        rotated_by_peer("lock=flock,scope=op,persist=each,write=rename,refresh=adopt");
    let before = p.issuer.total_redemptions();
    let sel = p.pool.select().unwrap().unwrap();
    assert_eq!(sel.id, id);
    assert_eq!(p.issuer.redemptions(&r0), 1);
    assert_eq!(p.issuer.total_redemptions(), before, "adopt must not POST");
    let e = mem_entries(&p.pool)
        .into_iter()
        .find(|e| e.id == id)
        .unwrap();
    assert_ne!(e.refresh_token.as_deref(), Some(r0.as_str()));
    assert!(p
        .issuer
        .is_live_refresh(e.refresh_token.as_deref().unwrap()));
    assert_eq!(sel.credential, e.access_token.clone().unwrap());
    assert!(p.hooks.events().iter().any(|e| matches!(
        e,
        Event::Refresh {
            outcome: RefreshOutcome::Adopted,
            ..
        }
    )));
}

#[test]
fn refusal_without_newer_token_is_dead_under_adopt_exhausted_under_blind() {
    for (refresh, status) in [("adopt", Status::Dead), ("blind", Status::Exhausted)] {
        let dir = tempdir();
        let strat = format!("lock=flock,scope=op,persist=each,write=rename,refresh={refresh}");
        let p = proc(dir.path(), &strat);
        p.pool.load_pool().unwrap();
        // A token the issuer never issued (or already revoked): refused, nothing newer anywhere.
        let id = p
            .pool
            .add_entry(oauth("o", "manual", "at_unknown", "rt_unknown", T0 + 1000))
            .unwrap();
        assert!(p.pool.select().unwrap().is_none());
        assert_eq!(p.issuer.redemptions("rt_unknown"), 1);
        let disk = disk_entries(p.pool.config());
        let e = disk.iter().find(|e| e.id == id).unwrap();
        assert_eq!(e.last_status, Some(status), "refresh={refresh}");
        assert_eq!(e.last_error_reason.as_deref(), Some("invalid_grant"));
    }
}

// ================================================================ scope

fn try_flock(path: &std::path::Path) -> bool {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    match f.try_lock() {
        Ok(()) => {
            f.unlock().unwrap();
            true
        }
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(e)) => panic!("flock: {e}"),
    }
}

/// Whether a separate open file description can take the lock file's flock at each pause.
fn lock_free_at(scope: &str, points: &[Pause]) -> Vec<(Pause, bool)> {
    let dir = tempdir();
    let issuer = FakeIssuer::new();
    let (a0, r0) = issuer.mint();
    let strat = format!("lock=flock,scope={scope},persist=each,write=rename,refresh=blind");
    let p = proc_with(config(dir.path(), &strat), &issuer, &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    p.pool
        .add_entry(oauth("o", "manual", &a0, &r0, T0 + 1000))
        .unwrap();
    let lock = p.pool.config().lock_path.clone();
    assert!(lock.exists());
    let out: Arc<Mutex<Vec<(Pause, bool)>>> = Arc::default();
    let (o, pts) = (out.clone(), points.to_vec());
    p.hooks.on_pause(move |pt| {
        if pts.contains(&pt) {
            o.lock().unwrap().push((pt, try_flock(&lock)));
        }
    });
    p.pool.select().unwrap().unwrap();
    assert_eq!(issuer.redemptions(&r0), 1);
    let v = out.lock().unwrap().clone();
    v
}

#[test]
fn scope_op_holds_the_lock_across_the_whole_operation() {
    let got = lock_free_at(
        "op",
        &[Pause::BeforeRedeem, Pause::AfterRedeem, Pause::BeforeRename],
    );
    assert_eq!(
        got,
        vec![
            (Pause::BeforeRedeem, false),
            (Pause::AfterRedeem, false),
            (Pause::BeforeRename, false)
        ]
    );
}

#[test]
fn scope_write_and_io_lock_only_around_io() {
    for scope in ["write", "io"] {
        let got = lock_free_at(scope, &[Pause::BeforeRedeem, Pause::BeforeRename]);
        assert_eq!(
            got,
            vec![(Pause::BeforeRedeem, true), (Pause::BeforeRename, false)],
            "scope={scope}"
        );
    }
}

/// Hold the lock file's flock from outside and run `load_pool` (a pure read when nothing is
/// seeded): whether it completes while the lock is held.
fn read_completes_under_foreign_lock(scope: &str) -> bool {
    let dir = tempdir();
    let strat = format!("lock=flock,scope={scope},persist=each,write=rename,refresh=blind");
    let (p, _) = loaded(dir.path(), &strat, 1);
    let lock_path = p.pool.config().lock_path.clone();
    let holder = File::options()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.lock().unwrap();
    let p = Arc::new(p.pool);
    let (tx, rx) = mpsc::channel();
    let p2 = p.clone();
    let t = thread::spawn(move || {
        p2.load_pool().unwrap();
        tx.send(()).unwrap();
    });
    // Reading under `scope=write` takes no lock and completes at once: wait long for it (a
    // loaded machine may be slow); a read that waits for the lock shows in 300 ms.
    let patience = if scope == "write" { 10_000 } else { 300 };
    let done = rx.recv_timeout(Duration::from_millis(patience)).is_ok();
    holder.unlock().unwrap();
    t.join().unwrap();
    done
}

#[test]
fn scope_io_locks_reads_scope_write_does_not() {
    assert!(
        !read_completes_under_foreign_lock("io"),
        "scope=io: a read must wait for the lock"
    );
    assert!(
        read_completes_under_foreign_lock("write"),
        "scope=write: reads take no lock"
    );
}

// ================================================================ lock

#[test]
fn lock_mutex_excludes_threads_of_one_process_not_another_process() {
    let dir = tempdir();
    let (p, ids0) = loaded(
        dir.path(),
        "lock=mutex,scope=op,persist=each,write=rename,refresh=blind",
        1,
    );
    let lock_path = p.pool.config().lock_path.clone();
    let hooks = p.hooks.clone();
    let pool = Arc::new(p.pool);
    let gate = Gate::arm(&hooks, Pause::BeforeRename);
    let p1 = pool.clone();
    let id = ids0[0].clone();
    let op = thread::spawn(move || p1.mark_exhausted_and_rotate(&id, 429, "x", None).unwrap());
    gate.wait(); // the op holds the process mutex now
                 // Another thread of the same process (same RealOs) blocks on it...
    let (tx, rx) = mpsc::channel();
    let (p2, lp) = (pool.clone(), lock_path.clone());
    let other = thread::spawn(move || {
        let h = p2.os().lock(LockKind::ProcessMutex, &lp).unwrap();
        tx.send(()).unwrap();
        p2.os().unlock(h).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "same process: must block"
    );
    // ...while another process (another RealOs) takes its own mutex at once.
    let foreign = RealOs::new();
    let h = foreign.lock(LockKind::ProcessMutex, &lock_path).unwrap();
    foreign.unlock(h).unwrap();
    gate.release();
    op.join().unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("freed after the op");
    other.join().unwrap();
}

#[test]
fn lock_flock_data_is_split_by_the_rename() {
    let dir = tempdir();
    let (p, ids0) = loaded(dir.path(), "flock-data", 1);
    let store = p.pool.config().store_path.clone();
    let got: Arc<Mutex<Vec<(Pause, bool)>>> = Arc::default();
    let (g, s) = (got.clone(), store.clone());
    p.hooks.on_pause(move |pt| {
        if matches!(pt, Pause::BeforeRename | Pause::AfterRename) {
            // A new open of the path, as another process would do.
            g.lock().unwrap().push((pt, try_flock(&s)));
        }
    });
    p.pool
        .mark_exhausted_and_rotate(&ids0[0], 429, "x", None)
        .unwrap();
    // Before the rename the path is the locked inode; after it, a new inode nobody locks:
    // the pool's description still holds its lock on the old inode while a second holder
    // locks the new one.
    assert_eq!(
        got.lock().unwrap().clone(),
        vec![(Pause::BeforeRename, false), (Pause::AfterRename, true)]
    );
    // No separate lock file is used.
    assert!(!p.pool.config().lock_path.exists());
}

#[test]
fn lock_flock_is_on_a_separate_file_that_survives_renames() {
    let dir = tempdir();
    let (p, ids0) = loaded(dir.path(), "flock-txn", 1);
    let lock = p.pool.config().lock_path.clone();
    let got: Arc<Mutex<Vec<(Pause, bool)>>> = Arc::default();
    let (g, l) = (got.clone(), lock.clone());
    p.hooks.on_pause(move |pt| {
        if matches!(pt, Pause::BeforeRename | Pause::AfterRename) {
            g.lock().unwrap().push((pt, try_flock(&l)));
        }
    });
    p.pool
        .mark_exhausted_and_rotate(&ids0[0], 429, "x", None)
        .unwrap();
    assert_eq!(
        got.lock().unwrap().clone(),
        vec![(Pause::BeforeRename, false), (Pause::AfterRename, false)]
    );
    assert!(try_flock(&lock), "released after the op");
}

#[test]
fn lock_none_takes_no_lock_at_all() {
    let dir = tempdir();
    let (p, ids0) = loaded(
        dir.path(),
        "lock=none,scope=op,persist=each,write=rename,refresh=blind",
        1,
    );
    let store = p.pool.config().store_path.clone();
    let got: Arc<Mutex<Vec<bool>>> = Arc::default();
    let (g, s) = (got.clone(), store.clone());
    p.hooks.on_pause(move |pt| {
        if pt == Pause::BeforeRename {
            g.lock().unwrap().push(try_flock(&s));
        }
    });
    p.pool
        .mark_exhausted_and_rotate(&ids0[0], 429, "x", None)
        .unwrap();
    assert_eq!(got.lock().unwrap().clone(), vec![true]);
    assert!(!p.pool.config().lock_path.exists());
}

// ================================================================ selection

fn sel_pool(dir: &std::path::Path, sel: Selection, seed: u64, n: usize) -> (Proc, Vec<String>) {
    let cfg = selection_config(dir, "flock-txn", sel, seed);
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    let ids = (0..n)
        .map(|i| p.pool.add_entry(api_key(&format!("k{i}"))).unwrap())
        .collect();
    p.hooks.clear();
    (p, ids)
}

fn picks(p: &Proc, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| p.pool.select().unwrap().unwrap().id)
        .collect()
}

#[test]
fn selection_fill_first_sticks_to_the_lowest_priority_and_never_writes() {
    let dir = tempdir();
    let (p, ids0) = sel_pool(dir.path(), Selection::FillFirst, 1, 3);
    assert_eq!(picks(&p, 4), vec![ids0[0].clone(); 4]);
    assert_eq!(p.hooks.writes(), 0);
    p.pool
        .mark_exhausted_and_rotate(&ids0[0], 429, "x", None)
        .unwrap();
    assert_eq!(picks(&p, 2), vec![ids0[1].clone(); 2]);
}

#[test]
fn selection_round_robin_rotates_and_persists_priorities() {
    let dir = tempdir();
    let (p, ids0) = sel_pool(dir.path(), Selection::RoundRobin, 1, 3);
    let got = picks(&p, 4);
    assert_eq!(
        got,
        vec![
            ids0[0].clone(),
            ids0[1].clone(),
            ids0[2].clone(),
            ids0[0].clone()
        ]
    );
    assert_eq!(p.hooks.writes(), 4, "each pick rewrites priorities");
    // After A,B,C,A the order is B,C,A with priorities renumbered 0..3, on disk.
    let disk = disk_entries(p.pool.config());
    let mut by_prio = disk.clone();
    by_prio.sort_by_key(|e| e.priority);
    assert_eq!(
        ids(&by_prio),
        vec![ids0[1].clone(), ids0[2].clone(), ids0[0].clone()]
    );
    assert_eq!(
        by_prio.iter().map(|e| e.priority).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn selection_least_used_spreads_over_entries() {
    let dir = tempdir();
    let cfg = selection_config(dir.path(), "flock", Selection::LeastUsed, 1);
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    let ids0: Vec<String> = (0..3)
        .map(|i| p.pool.add_entry(api_key(&format!("k{i}"))).unwrap())
        .collect();
    let got = picks(&p, 6);
    let mut counts = std::collections::BTreeMap::new();
    for g in &got {
        *counts.entry(g.clone()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{got:?}");
    assert!(counts.values().all(|&c| c == 2), "{counts:?}");
    assert_eq!(&got[..3], &ids0[..]);
    let mem = mem_entries(&p.pool);
    assert!(mem.iter().all(|e| e.request_count == 2));
}

#[test]
fn selection_random_is_reproducible_per_seed() {
    let run = |seed: u64| {
        let dir = tempdir();
        let (p, ids0) = sel_pool(dir.path(), Selection::Random, seed, 4);
        let got = picks(&p, 12);
        // Map ids to positions so runs with different ids compare.
        got.iter()
            .map(|g| ids0.iter().position(|i| i == g).unwrap())
            .collect::<Vec<_>>()
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same picks");
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() > 1, "random never varied: {a:?}");
    assert!(
        (1..6).any(|s| run(100 + s) != a),
        "different seeds always gave the same picks"
    );
}

// ================================================================ load_pool

#[test]
fn load_pool_seeds_from_claude_credentials_and_writes_once() {
    let dir = tempdir();
    let creds = dir.path().join(".credentials.json");
    claude_file(&creds, "at_cc", "rt_cc", T0 + 7_200_000);
    let mut cfg = config(dir.path(), "flock-txn");
    cfg.external = vec![external(ExternalFormat::ClaudeCode, creds)];
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    assert_eq!(p.hooks.writes(), 1);
    let disk = disk_entries(p.pool.config());
    assert_eq!(disk.len(), 1);
    assert_eq!(disk[0].source, "claude_code");
    assert_eq!(disk[0].refresh_token.as_deref(), Some("rt_cc"));
    assert_eq!(disk[0].access_token.as_deref(), Some("at_cc"));
    assert_eq!(disk[0].expires_at_ms, Some(T0 + 7_200_000));
    // A second load seeds nothing and writes nothing.
    p.hooks.clear();
    p.pool.load_pool().unwrap();
    assert_eq!(p.hooks.writes(), 0);
    assert_eq!(disk_entries(p.pool.config()).len(), 1);
}

#[test]
fn load_pool_seeds_from_the_providers_record() {
    let dir = tempdir();
    let mut s = Store::default();
    s.providers.insert(
        "anthropic".into(),
        ProviderRecord {
            access_token: Some("at_dc".into()),
            refresh_token: Some("rt_dc".into()),
            ..Default::default()
        },
    );
    std::fs::write(dir.path().join("auth.json"), s.to_bytes()).unwrap();
    let p = proc(dir.path(), "none");
    p.pool.load_pool().unwrap();
    assert_eq!(p.hooks.writes(), 1);
    let disk = disk_entries(p.pool.config());
    assert_eq!(disk.len(), 1);
    assert_eq!(disk[0].source, "device_code");
    assert_eq!(disk[0].refresh_token.as_deref(), Some("rt_dc"));
    p.hooks.clear();
    p.pool.load_pool().unwrap();
    assert_eq!(p.hooks.writes(), 0);
}

#[test]
fn load_pool_without_sources_does_not_write() {
    let dir = tempdir();
    let p = proc(dir.path(), "flock-txn");
    p.pool.load_pool().unwrap();
    assert_eq!(p.hooks.writes(), 0);
    assert!(!p.pool.config().store_path.exists());
}

#[test]
fn corrupt_store_is_refused_named_and_left_untouched() {
    let dir = tempdir();
    let (p0, _) = loaded(dir.path(), "none", 2);
    let good = std::fs::read(&p0.pool.config().store_path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("not json", b"this is not json\n".to_vec()),
    ];
    for preset in pool_core::PRESETS {
        for (what, bytes) in &cases {
            let d = tempdir();
            let path: PathBuf = d.path().join("auth.json");
            std::fs::write(&path, bytes).unwrap();
            let p = proc(d.path(), preset.name);
            let err = p.pool.load_pool().unwrap_err();
            match &err {
                PoolError::CorruptStore { path: ep, .. } => assert_eq!(ep, &path),
                other => panic!("{} / {what}: {other:?}", preset.name),
            }
            assert!(err.to_string().contains(&path.display().to_string()));
            // Other operations refuse too, and never overwrite the bytes.
            let _ = p.pool.add_entry(api_key("x"));
            let _ = p.pool.reset_statuses();
            let _ = p.pool.select();
            assert_eq!(
                &std::fs::read(&path).unwrap(),
                bytes,
                "{} / {what}: bytes changed",
                preset.name
            );
        }
    }
}

#[test]
fn future_version_is_unsupported_and_untouched() {
    let dir = tempdir();
    let path = dir.path().join("auth.json");
    let bytes = br#"{"version": 99, "credential_pool": {}}"#.to_vec();
    std::fs::write(&path, &bytes).unwrap();
    let p = proc(dir.path(), "flock-txn");
    match p.pool.load_pool() {
        Err(PoolError::UnsupportedVersion {
            path: ep,
            found,
            supported,
        }) => {
            assert_eq!(ep, path);
            assert_eq!(found, 99);
            assert_eq!(supported, pool_core::store::STORE_VERSION);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// `Os::lock` creates the file it locks; with the lock on the data file (`flock-data`,
/// `fcntl`) that must not leave an empty `auth.json` that the first read refuses as corrupt.
#[test]
fn fresh_profile_works_with_data_file_locks() {
    for preset in ["flock-data", "fcntl"] {
        let dir = tempdir();
        let p = proc(dir.path(), preset);
        p.pool
            .load_pool()
            .unwrap_or_else(|e| panic!("{preset}: {e}"));
        p.pool.add_entry(api_key("a")).unwrap();
        assert_eq!(disk_entries(p.pool.config()).len(), 1);
    }
}

#[test]
fn selection_least_used_spreads_under_every_preset() {
    for preset in pool_core::PRESETS {
        let dir = tempdir();
        let store = dir.path().join("auth.json");
        std::fs::write(&store, Store::default().to_bytes()).unwrap();
        let cfg = selection_config(dir.path(), preset.name, Selection::LeastUsed, 1);
        let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
        p.pool.load_pool().unwrap();
        let ids0: Vec<String> = (0..3)
            .map(|i| p.pool.add_entry(api_key(&format!("k{i}"))).unwrap())
            .collect();
        let got = picks(&p, 6);
        let spread: std::collections::BTreeSet<_> = got.iter().collect();
        assert_eq!(
            spread.len(),
            3,
            "{}: least_used picked {got:?} of {ids0:?}",
            preset.name
        );
    }
}

#[test]
fn merge_reset_statuses_clears_a_cooldown_but_a_later_peer_cooldown_wins() {
    let dir = tempdir();
    let (p, ids0) = loaded(dir.path(), "merge-on-write", 2);
    p.pool
        .mark_exhausted_and_rotate(&ids0[0], 429, "x", Some(T0 + 3_600_000))
        .unwrap();
    p.clock.advance(10);
    p.pool.reset_statuses().unwrap();
    assert_eq!(
        disk_entries(p.pool.config())[0].last_status,
        None,
        "own reset must stick"
    );
    assert_eq!(mem_entries(&p.pool)[0].last_status, None);
    // A peer's cooldown set after the reset still wins over P's stale (cleared) entry.
    let q = proc_with(config(dir.path(), "merge-on-write"), &p.issuer, &p.clock);
    q.pool.load_pool().unwrap();
    p.clock.advance(10);
    q.pool
        .mark_exhausted_and_rotate(&ids0[0], 429, "x", Some(T0 + 3_600_000))
        .unwrap();
    p.clock.advance(10);
    p.pool
        .mark_exhausted_and_rotate(&ids0[1], 429, "x", Some(T0 + 3_600_000))
        .unwrap();
    let disk = disk_entries(p.pool.config());
    assert_eq!(
        disk[0].last_status,
        Some(Status::Exhausted),
        "peer's newer cooldown erased"
    );
    assert_eq!(disk[1].last_status, Some(Status::Exhausted));
}

/// A lock file that cannot be created fails the operation with an error naming it, and the
/// store is left as it was.
#[test]
fn a_lock_file_that_cannot_be_created_is_a_clear_error() {
    let dir = tempdir();
    let mut cfg = config(dir.path(), "flock-txn");
    cfg.lock_path = dir.path().join("no-such-dir").join("auth.lock");
    let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
    let err = p.pool.load_pool().unwrap_err().to_string();
    assert!(err.starts_with("cannot lock "), "{err}");
    assert!(err.contains("no-such-dir/auth.lock"), "{err}");
    assert!(
        !dir.path().join("auth.json").exists(),
        "nothing was written"
    );
}

//! Two threads share ONE `Pool` over one `RealOs` (a gateway process). Thread B runs a
//! `select` that refreshes an expiring entry; while B is stopped at `before_redeem` (its
//! working copy of the snapshot already taken), thread A adds an entry. Without a lock B's
//! copy-back and its write drop A's entry; with the process-local lock A waits for B.

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use pool_core::world::Pause;

/// Returns (A's id, whether it is in memory at the end, whether it is on disk at the end).
fn race(strat: &str) -> (String, bool, bool) {
    let dir = tempdir();
    let issuer = FakeIssuer::new();
    let (a0, r0) = issuer.mint();
    let p = proc_with(config(dir.path(), strat), &issuer, &ManualClock::new(T0));
    p.pool.load_pool().unwrap();
    p.pool
        .add_entry(oauth("o", "manual", &a0, &r0, T0 + 1000))
        .unwrap();
    let hooks = p.hooks.clone();
    let cfg = p.pool.config().clone();
    let pool = Arc::new(p.pool);

    // B stops at before_redeem, lets A go, and waits for A to finish, but only for a bounded
    // time: under a lock A cannot finish before B releases it.
    let (go_a_tx, go_a_rx) = mpsc::channel::<()>();
    let (a_done_tx, a_done_rx) = mpsc::channel::<()>();
    let b_state = Mutex::new(Some((go_a_tx, a_done_rx)));
    let a_finished_while_b_paused: Arc<Mutex<Option<bool>>> = Arc::default();
    // Without a lock A finishes at once: wait long for it (a loaded machine may be slow); under
    // a lock it cannot, and 1.5 s shows that.
    let patience = if cfg.strategy.lock == pool_core::strategy::Lock::None {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(1500)
    };
    let flag = a_finished_while_b_paused.clone();
    hooks.on_pause(move |pt| {
        if pt != Pause::BeforeRedeem || thread::current().name() != Some("B") {
            return;
        }
        if let Some((go, done)) = b_state.lock().unwrap().take() {
            go.send(()).unwrap();
            let finished = done.recv_timeout(patience).is_ok();
            *flag.lock().unwrap() = Some(finished);
        }
    });

    let pb = pool.clone();
    let b = thread::Builder::new()
        .name("B".into())
        .spawn(move || pb.select().unwrap())
        .unwrap();
    go_a_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("B never reached before_redeem");
    let pa = pool.clone();
    let a = thread::Builder::new()
        .name("A".into())
        .spawn(move || {
            let id = pa.add_entry(api_key("from-a")).unwrap();
            let _ = a_done_tx.send(());
            id
        })
        .unwrap();
    let sel = b.join().unwrap();
    let id = a.join().unwrap();
    assert!(sel.is_some(), "B's refresh succeeded");
    assert_eq!(issuer.redemptions(&r0), 1);
    let finished = a_finished_while_b_paused
        .lock()
        .unwrap()
        .expect("B's hook ran");
    let in_mem = ids(&mem_entries(&pool)).contains(&id);
    let on_disk = ids(&disk_entries(&cfg)).contains(&id);
    // The interleaving really happened as intended.
    if pool.config().strategy.lock == pool_core::strategy::Lock::None {
        assert!(finished, "without a lock A must complete while B is paused");
    } else {
        assert!(!finished, "with the process lock A must wait for B");
    }
    (id, in_mem, on_disk)
}

#[test]
fn no_lock_loses_the_other_threads_update() {
    let (_, in_mem, on_disk) = race("none");
    assert!(!in_mem, "none: A's entry should be lost in memory");
    assert!(!on_disk, "none: A's entry should be lost on disk");
}

#[test]
fn thread_lock_keeps_the_other_threads_update() {
    let (_, in_mem, on_disk) = race("thread-lock");
    assert!(in_mem, "thread-lock: A's entry lost in memory");
    assert!(on_disk, "thread-lock: A's entry lost on disk");
}

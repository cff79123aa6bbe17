//! Upstream's refresh and write rules, each as the strategy dimension that models it: the
//! `serial` refresh (Codex under the store lock), the second-endpoint retry (`retry2`), the
//! pre-sync copy marked after a failed refresh (`presync`), `persist=add-missing`, and expiry
//! read from a JWT's `exp` in the `openai-codex` pool.

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use pool_core::external::ExternalFormat;
use pool_core::world::{Event, Pause, RefreshOutcome};
use pool_core::Status;

const FAR: u64 = T0 + 86_400_000;

fn refusals(p: &Proc) -> usize {
    p.hooks
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Refresh {
                    outcome: RefreshOutcome::Refused,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn retry2_presents_a_refused_token_once_more_and_only_then() {
    for (refresh, presented) in [
        ("blind", 1),
        ("blind/retry2", 2),
        ("anthropic:blind/retry2+blind", 2),
        ("openai-codex:blind/retry2+blind", 1),
    ] {
        let dir = tempdir();
        let p = proc(
            dir.path(),
            &format!("lock=flock,scope=op,persist=each,write=rename,refresh={refresh}"),
        );
        p.pool.load_pool().unwrap();
        p.pool
            .add_entry(oauth("o", "manual", "at_unknown", "rt_unknown", T0 + 1000))
            .unwrap();
        assert!(p.pool.select().unwrap().is_none());
        assert_eq!(p.issuer.redemptions("rt_unknown"), presented, "{refresh}");
        assert_eq!(refusals(&p), presented, "{refresh}");
    }
}

/// A `claude_code` entry, exhausted, whose file now holds a token the issuer refuses: the
/// pass syncs it, the refresh fails. With `presync` the entry marked (and written) is the copy
/// from before the sync: the operation rolls its own sync back.
#[test]
fn presync_marks_the_copy_from_before_the_sync() {
    for (refresh, kept) in [("blind", "rt_synced"), ("blind/presync", "rt_before")] {
        let dir = tempdir();
        let claude = dir.path().join("claude.json");
        claude_file(&claude, "at_before", "rt_before", FAR);
        let mut cfg = config(
            dir.path(),
            &format!("lock=flock,scope=write,persist=add-missing,write=rename,refresh={refresh}"),
        );
        cfg.external = vec![external(ExternalFormat::ClaudeCode, claude.clone())];
        let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
        p.pool.load_pool().unwrap();
        let id = mem_entries(&p.pool)[0].id.clone();
        p.pool
            .mark_exhausted_and_rotate(&id, 429, "rate_limited", Some(T0 + 1))
            .unwrap();
        p.clock.set(T0 + 2);
        // Claude Code wrote an expiring token the issuer does not honour.
        claude_file(&claude, "at_synced", "rt_synced", T0);
        assert!(p.pool.select().unwrap().is_none());
        let e = disk_entries(p.pool.config())[0].clone();
        assert_eq!(e.last_status, Some(Status::Exhausted), "{refresh}");
        assert_eq!(e.refresh_token.as_deref(), Some(kept), "{refresh}");
    }
}

/// Two gateways of the `openai-codex` pool hold the same expiring token. Under `serial` the
/// first holds the lock from its re-read to its write, so the second adopts the rotation and
/// never POSTs; under `blind` (no lock around the refresh) both POST it.
#[test]
fn serial_refresh_posts_each_token_once_and_the_waiter_adopts() {
    for (refresh, posts) in [("openai-codex:serial+blind", 1), ("blind", 2)] {
        let dir = tempdir();
        let strat =
            format!("lock=flock,scope=write,persist=add-missing,write=rename,refresh={refresh}");
        let issuer = FakeIssuer::new();
        let clock = ManualClock::new(T0);
        let (a0, r0) = issuer.mint();
        let mk = || {
            let mut cfg = config(dir.path(), &strat);
            cfg.provider = "openai-codex".into();
            proc_with(cfg, &issuer, &clock)
        };
        let (p, q) = (mk(), mk());
        p.pool.load_pool().unwrap();
        p.pool
            .add_entry(oauth("codex", "device_code", &a0, &r0, T0 + 1000))
            .unwrap();
        q.pool.load_pool().unwrap();
        let gate = Gate::arm(&p.hooks, Pause::BeforeRedeem);
        thread::scope(|s| {
            let first = s.spawn(|| p.pool.select().unwrap());
            gate.wait();
            let second = s.spawn(|| q.pool.select().unwrap());
            // A schedule aid, not an assertion: give the second gateway time to reach its
            // refresh while the first is held before its POST.
            thread::sleep(Duration::from_millis(200));
            gate.release();
            let (first, second) = (first.join().unwrap(), second.join().unwrap());
            assert_eq!(issuer.redemptions(&r0), posts, "{refresh}");
            // The second gateway adopts (serial) or spends the token first (blind); the first
            // is then refused under blind.
            assert!(second.is_some(), "{refresh}");
            assert_eq!(first.is_some(), posts == 1, "{refresh}");
        });
    }
}

/// `add-missing`: a stale snapshot keeps a peer's new entry (added from disk) but erases the
/// peer's cooldown on an entry the snapshot has.
#[test]
fn add_missing_keeps_new_ids_and_lets_the_snapshot_win_for_its_own() {
    let dir = tempdir();
    let strat = "lock=flock,scope=write,persist=add-missing,write=rename,refresh=blind";
    let issuer = FakeIssuer::new();
    let clock = ManualClock::new(T0);
    let p = proc_with(config(dir.path(), strat), &issuer, &clock);
    let q = proc_with(config(dir.path(), strat), &issuer, &clock);
    p.pool.load_pool().unwrap();
    let a = p.pool.add_entry(api_key("a")).unwrap();
    let b = p.pool.add_entry(api_key("b")).unwrap();
    q.pool.load_pool().unwrap();
    let c = q.pool.add_entry(api_key("c")).unwrap();
    q.pool
        .mark_exhausted_and_rotate(&a, 429, "rate_limited", Some(FAR))
        .unwrap();
    // p, on its stale snapshot, writes for an unrelated reason.
    p.pool
        .mark_exhausted_and_rotate(&b, 429, "rate_limited", Some(FAR))
        .unwrap();
    let disk = disk_entries(p.pool.config());
    assert_eq!(ids(&disk), [a.clone(), b, c]);
    assert_eq!(
        disk[0].last_status, None,
        "the peer's cooldown on a is erased"
    );
}

/// In the `openai-codex` pool expiry comes from the access token's JWT `exp`, whatever the
/// stored time says; elsewhere from `expires_at_ms`.
#[test]
fn codex_expiry_is_read_from_the_jwt_exp_claim() {
    for (provider, posts) in [("openai-codex", 1), ("anthropic", 0)] {
        let dir = tempdir();
        let mut cfg = config(
            dir.path(),
            "lock=flock,scope=op,persist=txn,write=rename,refresh=adopt",
        );
        cfg.provider = provider.into();
        let p = proc_with(cfg, &FakeIssuer::new(), &ManualClock::new(T0));
        let (_, r0) = p.issuer.mint();
        let jwt = pool_core::jwt::encode("family-1", T0 / 1000 - 3600, T0 / 1000 + 30, "c2ln");
        p.pool.load_pool().unwrap();
        p.pool
            .add_entry(oauth("c", "device_code", &jwt, &r0, FAR))
            .unwrap();
        assert!(p.pool.select().unwrap().is_some());
        assert_eq!(p.issuer.redemptions(&r0), posts, "{provider}");
    }
}

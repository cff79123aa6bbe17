//! How a write combines the snapshot with the store on disk.
//!
//! Three rules, all from upstream:
//! - [`overlay`] (upstream at #8040): re-load the file and replace this provider's whole list
//!   (and its `providers` record) with the in-memory one. Other providers survive; anything a
//!   peer changed in this provider's list since the snapshot was taken is lost.
//! - [`merge`] (upstream main): merge by entry `id`. The in-memory entry wins, except that a
//!   newer binding cooldown on disk wins unless the access token changed; entries on disk but
//!   not in memory are kept unless this pool removed them. A status this pool deliberately
//!   cleared (`reset_statuses`) counts as set at the time of the clear.
//! - [`add_missing`] (upstream main as its code does it at 88d1d620): re-load the file and add
//!   only the entries whose ids the snapshot lacks; for ids it has, the snapshot wins whole (so
//!   a stale snapshot still erases a peer's cooldown and can write an older token back).

use std::collections::{BTreeMap, BTreeSet};

use crate::store::{Entry, Store};

/// `disk` with `provider`'s list and provider record taken from `mem`.
pub fn overlay(disk: Store, mem: &Store, provider: &str) -> Store {
    overlay_list(disk, mem, provider, mem.entries(provider).to_vec())
}

/// `disk` merged with `mem` by entry id (see the module docs).
pub fn merge(
    disk: Store,
    mem: &Store,
    provider: &str,
    removed: &BTreeSet<String>,
    cleared: &BTreeMap<String, u64>,
    now_ms: u64,
    default_cooldown_ms: u64,
) -> Store {
    let on_disk = disk.entries(provider).to_vec();
    let mut list: Vec<Entry> = Vec::with_capacity(on_disk.len().max(mem.entries(provider).len()));
    for m in mem.entries(provider) {
        let mut e = m.clone();
        if let Some(d) = on_disk.iter().find(|d| d.id == m.id) {
            let mem_at = m.last_status_at.max(cleared.get(&m.id).copied());
            if binding_cooldown_is_newer(d, mem_at, now_ms, default_cooldown_ms)
                && d.access_token == m.access_token
            {
                e.copy_status_from(d);
            }
        }
        list.push(e);
    }
    for d in &on_disk {
        if !list.iter().any(|e| e.id == d.id) && !removed.contains(&d.id) {
            list.push(d.clone());
        }
    }
    overlay_list(disk, mem, provider, list)
}

/// `disk` with `provider`'s list: `mem`'s, then the disk entries whose ids `mem` lacks (unless
/// this pool removed them).
pub fn add_missing(disk: Store, mem: &Store, provider: &str, removed: &BTreeSet<String>) -> Store {
    let mut list = mem.entries(provider).to_vec();
    for d in disk.entries(provider) {
        if !list.iter().any(|e| e.id == d.id) && !removed.contains(&d.id) {
            list.push(d.clone());
        }
    }
    overlay_list(disk, mem, provider, list)
}

fn overlay_list(mut disk: Store, mem: &Store, provider: &str, list: Vec<Entry>) -> Store {
    disk.credential_pool.insert(provider.to_string(), list);
    if let Some(rec) = mem.providers.get(provider) {
        disk.providers.insert(provider.to_string(), rec.clone());
    }
    disk
}

/// The disk entry carries a cooldown still in force at `now_ms` that was set after
/// `mem_at`, when the memory entry's status was last set or deliberately cleared.
fn binding_cooldown_is_newer(
    disk: &Entry,
    mem_at: Option<u64>,
    now_ms: u64,
    default_cooldown_ms: u64,
) -> bool {
    let binding = disk
        .cooldown_until(default_cooldown_ms)
        .is_some_and(|until| until > now_ms);
    binding && disk.last_status_at > mem_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuthType, Status};

    fn entry(id: &str) -> Entry {
        let mut e = Entry::new(id, id, AuthType::ApiKey, "manual");
        e.access_token = Some(format!("key-{id}"));
        e
    }

    fn store(entries: Vec<Entry>) -> Store {
        let mut s = Store::default();
        s.credential_pool.insert("p".into(), entries);
        s
    }

    fn exhausted(mut e: Entry, at: u64) -> Entry {
        e.last_status = Some(Status::Exhausted);
        e.last_status_at = Some(at);
        e
    }

    #[test]
    fn merge_keeps_disk_only_entries_overlay_drops_them() {
        let disk = store(vec![entry("a"), entry("b"), entry("c")]);
        let mem = store(vec![entry("a"), entry("b")]);
        let merged = merge(
            disk.clone(),
            &mem,
            "p",
            &BTreeSet::new(),
            &BTreeMap::new(),
            0,
            10,
        );
        assert_eq!(merged.entries("p").len(), 3);
        assert_eq!(overlay(disk, &mem, "p").entries("p").len(), 2);
    }

    #[test]
    fn add_missing_keeps_disk_only_entries_but_the_snapshot_wins_for_its_own_ids() {
        let disk = store(vec![exhausted(entry("a"), 100), entry("c")]);
        let mem = store(vec![entry("a"), entry("b")]);
        let out = add_missing(disk.clone(), &mem, "p", &BTreeSet::new());
        let ids: Vec<_> = out.entries("p").iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // The peer's binding cooldown on `a` is erased (merge would keep it).
        assert_eq!(out.entries("p")[0].last_status, None);
        let merged = merge(
            disk.clone(),
            &mem,
            "p",
            &BTreeSet::new(),
            &BTreeMap::new(),
            105,
            10,
        );
        assert_eq!(merged.entries("p")[0].last_status, Some(Status::Exhausted));
        let removed = BTreeSet::from(["c".to_string()]);
        assert_eq!(add_missing(disk, &mem, "p", &removed).entries("p").len(), 2);
    }

    #[test]
    fn merge_does_not_resurrect_what_this_pool_removed() {
        let disk = store(vec![entry("a"), entry("c")]);
        let mem = store(vec![entry("a")]);
        let removed = BTreeSet::from(["c".to_string()]);
        assert_eq!(
            merge(disk, &mem, "p", &removed, &BTreeMap::new(), 0, 10)
                .entries("p")
                .len(),
            1
        );
    }

    #[test]
    fn a_binding_cooldown_on_disk_wins_unless_the_token_changed() {
        let disk = store(vec![exhausted(entry("a"), 100)]);
        let mem = store(vec![entry("a")]);
        let merged = merge(
            disk.clone(),
            &mem,
            "p",
            &BTreeSet::new(),
            &BTreeMap::new(),
            105,
            10,
        );
        assert_eq!(merged.entries("p")[0].last_status, Some(Status::Exhausted));
        // Expired cooldown: memory wins.
        let merged = merge(
            disk.clone(),
            &mem,
            "p",
            &BTreeSet::new(),
            &BTreeMap::new(),
            200,
            10,
        );
        assert_eq!(merged.entries("p")[0].last_status, None);
        // Access token changed in memory: memory wins.
        let mut fresh = entry("a");
        fresh.access_token = Some("rotated".into());
        let merged = merge(
            disk.clone(),
            &store(vec![fresh]),
            "p",
            &BTreeSet::new(),
            &BTreeMap::new(),
            105,
            10,
        );
        assert_eq!(merged.entries("p")[0].last_status, None);
        // This pool cleared the status after the disk's cooldown was set: memory wins; a
        // cooldown set after the clear still wins.
        let cleared = BTreeMap::from([("a".to_string(), 101)]);
        let merged = merge(disk.clone(), &mem, "p", &BTreeSet::new(), &cleared, 105, 10);
        assert_eq!(merged.entries("p")[0].last_status, None);
        let cleared = BTreeMap::from([("a".to_string(), 99)]);
        let merged = merge(disk, &mem, "p", &BTreeSet::new(), &cleared, 105, 10);
        assert_eq!(merged.entries("p")[0].last_status, Some(Status::Exhausted));
    }
}

//! `lost_update`: a committed change vanished, overwritten by a writer that never saw it
//! (entry dropped or brought back, cooldown erased or replaced by an older one, status reset
//! undone, priority change reverted).
//!
//! Each store version is judged by aspects of its entries: whether entry X is present, X's
//! bench (exhausted or dead, with `status_at` and `reset_at`; not benched otherwise), X's
//! priority. For each write W, an aspect A is lost when, for every version that may have been
//! on disk right before W landed ([`Index::predecessors`]: overlapping writes are unordered, so
//! the claim must hold whichever came first):
//!
//! - W's value of A differs from that version's (a cooldown W replaces by one that ends no
//!   earlier is kept);
//! - W did not change A itself: its value is that of its base (what its snapshot had absorbed);
//! - the change that made that version's value was a real change (write I set A to it, I's own
//!   base had another value), and W's writer never observed I: I is not in W's base chain.
//!
//! Bases come from the code under test, so they are checked: a write's `base` must be a
//! version its process read or wrote before the write; otherwise the latest version it did
//! read or write stands in, and the witness says so. A write whose base is unknown (no
//! version observed, or content no completed write produced) is not judged. Counted per write
//! and aspect.
//!
//! A write that does not tell its base (`base: null`, as the syscall observer records every
//! write) is also judged from content: when its value of an entry's presence or bench differs
//! from the latest version its process observed but equals an older one it observed, it was
//! built from that older snapshot, and the change in between is lost if no operation could
//! have made it: no operation removes an entry or brings one back, and a cooldown is cleared
//! only once it has ended (checked against the longest the run could have lasted by then:
//! the write's time since the run's first record; a bench without a reset time lasts the
//! cooldown the run gives its pools, [`Ev::PoolRules`], upstream's hour when the history does
//! not say) or when the entry takes new tokens (a refresh, a re-sync from another CLI's file). Priorities are not judged this way (a
//! round-robin pass renumbers them). This is weaker than a told base: a pool that re-reads and
//! deliberately reverts a change in one of these ways would be reported.
//!
//! A machine crash that took back an acknowledged write is a lost update too
//! ([`super::crash_loss`], counted per crash; its witness comes after the overwrites').

use std::collections::HashSet;

use pool_core::store::Status;
use pool_core::world::{EntrySummary, Event};

use super::{short, Finding, Index, Told};
use crate::history::{Ev, History};

/// Upstream's default cooldown when the API gave no reset time (UPSTREAM.md): the bench's
/// length when the history does not say ([`Ev::PoolRules`]).
const DEFAULT_COOLDOWN_MS: u64 = 3_600_000;

/// How long the run's pools bench an entry the API gave no reset time for.
fn cooldown_ms(h: &History) -> u64 {
    h.records
        .iter()
        .find_map(|r| match r.ev {
            Ev::PoolRules { cooldown_ms } => Some(cooldown_ms),
            _ => None,
        })
        .unwrap_or(DEFAULT_COOLDOWN_MS)
}

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aspect<'h> {
    Presence(&'h str),
    Bench(&'h str),
    Priority(&'h str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Present(bool),
    /// (status, status_at, reset_at) of a benched entry; `None`: usable.
    Bench(Option<(Status, u64, Option<u64>)>),
    Priority(i64),
}

fn entry<'a>(entries: &'a [EntrySummary], id: &str) -> Option<&'a EntrySummary> {
    entries.iter().find(|e| e.id == id)
}

/// The value of an aspect in a version; `None` when it has none (an absent entry's bench).
fn value(entries: &[EntrySummary], a: Aspect<'_>) -> Option<Value> {
    match a {
        Aspect::Presence(id) => Some(Value::Present(entry(entries, id).is_some())),
        Aspect::Bench(id) => {
            let e = entry(entries, id)?;
            Some(Value::Bench(match e.status {
                Some(s @ (Status::Exhausted | Status::Dead)) => {
                    Some((s, e.status_at.unwrap_or(0), e.reset_at))
                }
                _ => None,
            }))
        }
        Aspect::Priority(id) => entry(entries, id)?.priority.map(Value::Priority),
    }
}

/// When a bench ends (dead: never), for pools that bench `cooldown` ms without a reset time.
fn until(b: (Status, u64, Option<u64>), cooldown: u64) -> u64 {
    match b {
        (Status::Dead, ..) => u64::MAX,
        (_, at, reset) => reset.unwrap_or(at.saturating_add(cooldown)),
    }
}

/// Whether `w` keeps the change `had`: equal, or a bench that ends no earlier.
fn keeps(w: Value, had: Value, cooldown: u64) -> bool {
    match (w, had) {
        (Value::Bench(Some(bw)), Value::Bench(Some(bh))) => {
            until(bw, cooldown) >= until(bh, cooldown)
        }
        _ => w == had,
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Exhausted => "exhausted",
        Status::Dead => "dead",
    }
}

impl Index<'_> {
    /// For a write `k` that did not tell its base: the newest version its process observed
    /// before its latest one whose value of `a` is `now` (the snapshot `k` was built from, by
    /// content), as a write position.
    fn older_source(&self, k: usize, a: Aspect<'_>, now: Option<Value>) -> Option<usize> {
        let w = &self.writes[k];
        let seen: Vec<&str> = self
            .observed
            .get(&w.proc)?
            .iter()
            .filter(|(r, _)| *r < w.rec)
            .map(|(_, h)| *h)
            .collect();
        let (_, older) = seen.split_last()?;
        older.iter().rev().find_map(|h| {
            let b = self.base_write(h, k)?;
            (value(self.writes[b].entries, a) == now).then_some(b)
        })
    }

    /// The write a hash names, seen from write `k`: the latest earlier write with that hash,
    /// else (records are logged just after the bytes land) the earliest other one.
    fn base_write(&self, hash: &str, k: usize) -> Option<usize> {
        let ws = self.by_hash.get(hash)?;
        ws.iter()
            .rev()
            .find(|&&w| w < k)
            .or_else(|| ws.iter().find(|&&w| w != k))
            .copied()
    }

    /// The version write `k`'s snapshot had absorbed, checked: its `base` if its process read
    /// or wrote that version before, else the latest version it did read or write. Returns
    /// the hash and whether the claimed base was observed.
    fn checked_base(&self, k: usize) -> Option<(&str, bool)> {
        let w = &self.writes[k];
        let seen: Vec<&str> = self
            .observed
            .get(&w.proc)
            .map(|v| {
                v.iter()
                    .filter(|(r, _)| *r < w.rec)
                    .map(|(_, h)| *h)
                    .collect()
            })
            .unwrap_or_default();
        match w.base {
            Some(b) if seen.contains(&b) => Some((b, true)),
            _ => seen.last().map(|h| (*h, w.base.is_none())),
        }
    }

    /// The write behind write `k`'s checked base.
    fn parent(&self, k: usize) -> Option<usize> {
        let (hash, _) = self.checked_base(k)?;
        self.base_write(hash, k)
    }

    /// Every write W's snapshot had absorbed: its base write, that write's base, and so on.
    fn ancestors(&self, k: usize) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut cur = k;
        while let Some(b) = self.parent(cur) {
            if !seen.insert(b) {
                break;
            }
            cur = b;
        }
        seen
    }

    /// The write that gave write `p`'s aspect its value: back along the base chain while the
    /// parent has the same value. `None` when the value goes back to a version with no known
    /// parent (the initial store, an unknown base): no change made it.
    fn introduced(&self, p: usize, a: Aspect<'_>) -> Option<usize> {
        let v = value(self.writes[p].entries, a);
        let mut cur = p;
        let mut steps = 0;
        loop {
            let parent = self.parent(cur)?;
            if value(self.writes[parent].entries, a) != v {
                return Some(cur);
            }
            cur = parent;
            steps += 1;
            if steps > self.writes.len() {
                return None; // a cycle of bases: no change to point at
            }
        }
    }
}

/// One lost aspect of one write, for the witness.
struct Lost<'h> {
    aspect: Aspect<'h>,
    had: Value,
    now: Option<Value>,
    by: usize,
    /// Judged from content (no base told): the older version the write was built from.
    source: Option<usize>,
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let cooldown = cooldown_ms(ix.h);
    let mut count = 0;
    let mut witness = None;
    for k in 0..ix.writes.len() {
        let Some(preds) = ix.predecessors(k) else {
            continue;
        };
        let Some(base) = ix.parent(k) else {
            continue;
        };
        let w = &ix.writes[k];
        let b = ix.writes[base].entries;
        // The longest the run can have lasted at W: an upper bound of W's wall time is any
        // status stamped in the run plus this.
        let run_ms = (w.t_ns - ix.h.records.first().map_or(w.t_ns, |r| r.t_ns)) / 1_000_000;
        let mut ids: Vec<&str> = w.entries.iter().map(|e| e.id.as_str()).collect();
        for &p in &preds {
            ids.extend(ix.writes[p].entries.iter().map(|e| e.id.as_str()));
        }
        ids.sort_unstable();
        ids.dedup();
        let mut ancestors = None;
        for id in ids {
            for a in [
                Aspect::Presence(id),
                Aspect::Bench(id),
                Aspect::Priority(id),
            ] {
                let now = value(w.entries, a);
                if now.is_none() && a != Aspect::Presence(id) {
                    continue; // W dropped the entry: judged as its presence
                }
                // The snapshot W's value of A came from: its base, or (untold base) an older
                // version its process observed with that value.
                let mut source = None;
                if now != value(b, a) {
                    if w.base.is_some() || matches!(a, Aspect::Priority(_)) {
                        continue; // W changed it itself
                    }
                    match ix.older_source(k, a, now) {
                        Some(o) => source = Some(o),
                        None => continue, // W changed it itself
                    }
                }
                let mut by = None;
                let lost = preds.iter().all(|&p| {
                    let Some(had) = value(ix.writes[p].entries, a) else {
                        return false;
                    };
                    if now.is_some_and(|n| keeps(n, had, cooldown)) {
                        return false;
                    }
                    let Some(i) = ix.introduced(p, a) else {
                        return false;
                    };
                    if let Some(o) = source {
                        // Judged from content: the change must be one no operation of W's
                        // undoes, and its snapshot must not have absorbed it.
                        if let (
                            Some(Value::Bench(None)),
                            Value::Bench(Some(bh)),
                            Aspect::Bench(id),
                        ) = (now, had, a)
                        {
                            if until(bh, cooldown) <= bh.1.saturating_add(run_ms) {
                                return false; // the cooldown may have ended: cleared legitimately
                            }
                            let tokens = |es: &'_ [EntrySummary]| {
                                entry(es, id).map(|e| (e.refresh.clone(), e.access.clone()))
                            };
                            if tokens(w.entries) != tokens(ix.writes[p].entries) {
                                return false; // new tokens (a refresh, a re-sync) clear a bench
                            }
                        }
                        let mut anc = ix.ancestors(o);
                        anc.insert(o);
                        if anc.contains(&i) || i == k {
                            return false;
                        }
                        by.get_or_insert((i, had));
                        return true;
                    }
                    let anc = ancestors.get_or_insert_with(|| ix.ancestors(k));
                    if anc.contains(&i) || i == k {
                        return false;
                    }
                    by.get_or_insert((i, had));
                    true
                });
                let Some((by, had)) = by.filter(|_| lost) else {
                    continue;
                };
                count += 1;
                if witness.is_none() {
                    witness = Some(story(
                        ix,
                        Lost {
                            aspect: a,
                            had,
                            now,
                            by,
                            source,
                        },
                        k,
                    ));
                }
            }
        }
    }
    let crashed = super::crash_loss::find(ix);
    Finding {
        count: count + crashed.count,
        witness: witness.or(crashed.witness),
    }
}

fn bench_text(b: Option<(Status, u64, Option<u64>)>) -> String {
    match b {
        None => "usable (no status)".to_string(),
        Some((s, at, None)) => format!("{} (status_at {at})", status_name(s)),
        Some((s, at, Some(r))) => format!("{} (status_at {at}, reset_at {r})", status_name(s)),
    }
}

fn story(ix: &Index<'_>, l: Lost<'_>, k: usize) -> Told {
    let w = &ix.writes[k];
    let mut s = ix.story();
    let (made, lost) = match (l.aspect, l.had, l.now) {
        (Aspect::Presence(id), Value::Present(true), _) => (
            format!("entry {id} is in it"),
            format!("entry {id} is gone"),
        ),
        (Aspect::Presence(id), _, _) => (
            format!("entry {id} is removed"),
            format!("entry {id} is back"),
        ),
        (Aspect::Bench(id), Value::Bench(Some(h)), Some(Value::Bench(Some(n)))) => (
            format!("entry {id} is {}", bench_text(Some(h))),
            format!(
                "entry {id}'s {} status is replaced by an earlier-ending one, {}",
                bench_text(Some(h)),
                bench_text(Some(n))
            ),
        ),
        (Aspect::Bench(id), Value::Bench(Some((st, t, _))), _) => (
            format!("entry {id} is {}", bench_text(Some((st, t, None)))),
            format!(
                "entry {id}'s {} status (status_at {t}) is erased",
                status_name(st)
            ),
        ),
        (Aspect::Bench(id), _, n) => (
            format!("entry {id}'s status is cleared"),
            format!(
                "entry {id}'s cleared status is back to {}",
                match n {
                    Some(Value::Bench(b)) => bench_text(b),
                    _ => "its old one".to_string(),
                }
            ),
        ),
        (Aspect::Priority(id), had, now) => {
            let p = |v: Option<Value>| match v {
                Some(Value::Priority(p)) => p.to_string(),
                _ => "?".to_string(),
            };
            (
                format!("entry {id} has priority {}", p(Some(had))),
                format!("entry {id}'s priority is back to {}", p(now)),
            )
        }
    };
    ix.write_step(&mut s, l.by, &made);
    // Where the overwriter's snapshot came from: its read of the base, else the base write.
    let checked = ix.checked_base(k);
    if let Some((base, _)) = checked {
        let read = ix.h.records[..w.rec]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, r)| match &r.ev {
                Ev::Pool {
                    event:
                        Event::Read {
                            op,
                            hash,
                            file: None,
                            ..
                        },
                } if r.proc == w.proc && hash == base => Some((i, *op)),
                _ => None,
            });
        match (read, ix.base_write(base, k)) {
            (Some((i, op)), _) => {
                ix.pool_step(&mut s, i, op, &format!("read store {}", short(base)))
            }
            (None, Some(b)) if b != l.by => {
                ix.write_step(&mut s, b, "the version the overwriter had absorbed")
            }
            _ => {}
        }
    }
    let intro = &ix.writes[l.by];
    let mut text = match l.source {
        // Judged from content: the writer may well have read the change, and wrote from an
        // older snapshot all the same.
        Some(o) => format!(
            "{lost}: written from the older version {} its process had read, not from {} op {}'s write {} (no base told: judged from content)",
            short(ix.writes[o].hash),
            ix.h.who(intro.proc),
            intro.op,
            short(intro.hash)
        ),
        None => format!(
            "{lost}: this writer never saw {} op {}'s write {}",
            ix.h.who(intro.proc),
            intro.op,
            short(intro.hash)
        ),
    };
    if let (Some((b, false)), Some(claimed)) = (checked, w.base) {
        text += &format!(
            " (it claims base {}, a version it never read or wrote; judged from {})",
            short(claimed),
            short(b)
        );
    }
    ix.write_step(&mut s, k, &text);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    /// Race 1: P loads [A,B]; Q adds C and writes; P marks A exhausted and writes [A*,B].
    /// `p_base` is what P's write says its snapshot absorbed; `p_read` whether P re-read h1.
    fn race1_with(p_base: &str, p_read: bool) -> History {
        let b = HistoryBuilder::new()
            .role(1, "cli")
            .role(2, "gateway")
            .init(&[e("aaaaaa"), e("bbbbbb")])
            .op(1, 1, OpKind::MarkExhausted)
            .read(1, 1, "h0")
            .op(2, 1, OpKind::AddEntry)
            .read(2, 1, "h0")
            .write(
                2,
                1,
                "h1",
                Some("h0"),
                &[e("aaaaaa"), e("bbbbbb"), e("cccccc")],
            );
        let b = if p_read { b.read(1, 1, "h1") } else { b };
        b.write(
            1,
            1,
            "h2",
            Some(p_base),
            &[exhausted("aaaaaa", 50), e("bbbbbb")],
        )
        .build()
    }

    fn race1(p_base: &str) -> History {
        race1_with(p_base, p_base == "h1")
    }

    #[test]
    fn an_entry_dropped_by_a_writer_that_never_saw_it_is_lost() {
        let f = check(&race1("h0"));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("p1 (cli) op 1 mark_exhausted: read store h0"),
            "{w:?}"
        );
        assert!(w[1].contains(
            "p2 (gateway) op 1 add_entry: wrote store h1 (based on h0), entry cccccc is in it"
        ));
        assert!(w[2].contains(
            "p1 (cli) op 1 mark_exhausted: wrote store h2 (based on h0), entry cccccc is gone"
        ));
    }

    #[test]
    fn a_writer_whose_base_includes_the_change_loses_nothing() {
        // Same writes, but P re-read Q's write and absorbed it: a deliberate removal.
        assert_eq!(check(&race1("h1")), Finding::none());
    }

    /// Item 8 of issue 13: `base` comes from the code under test. P claims to have absorbed
    /// h1 but never read it: the claim is not trusted, the loss is reported, and the witness
    /// says why.
    #[test]
    fn a_base_the_writer_never_observed_is_reported_not_trusted() {
        let f = check(&race1_with("h1", false));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert!(
            w[2].contains("entry cccccc is gone")
                && w[2].contains(
                    "it claims base h1, a version it never read or wrote; judged from h0"
                ),
            "{w:?}"
        );
    }

    /// Item 7 of issue 13: P's write began before Q's completed, so either may have landed
    /// last; the version before P's is h0 or h1, and only h1 has C. Nothing is claimed.
    #[test]
    fn overlapping_writes_are_unordered_and_nothing_rests_on_them() {
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa"), e("bbbbbb")])
            .read(1, 1, "h0")
            .read(2, 1, "h0")
            .write_begin(1, 1, "h2")
            .write(
                2,
                1,
                "h1",
                Some("h0"),
                &[e("aaaaaa"), e("bbbbbb"), e("cccccc")],
            )
            .write_done(
                1,
                1,
                "h2",
                Some("h0"),
                &[exhausted("aaaaaa", 50), e("bbbbbb")],
            )
            .build();
        assert_eq!(check(&h), Finding::none());
        // A subject that sends no write_begin: its write may have begun when its op did.
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa"), e("bbbbbb")])
            .op(1, 1, OpKind::MarkExhausted)
            .read(1, 1, "h0")
            .read(2, 1, "h0")
            .write(
                2,
                1,
                "h1",
                Some("h0"),
                &[e("aaaaaa"), e("bbbbbb"), e("cccccc")],
            )
            .write_done(
                1,
                1,
                "h2",
                Some("h0"),
                &[exhausted("aaaaaa", 50), e("bbbbbb")],
            )
            .build();
        assert_eq!(check(&h), Finding::none());
    }

    /// Q changes `a_in_q`'s A; P's stale snapshot (`a_in_p`) is written later for another
    /// reason. `p_base` is what P read before writing.
    fn stale_over(
        a0: EntrySummary,
        a_in_q: EntrySummary,
        p_base: &str,
        a_in_p: EntrySummary,
    ) -> History {
        HistoryBuilder::new()
            .init(&[a0, e("bbbbbb")])
            .read(1, 1, "h0")
            .read(2, 1, "h0")
            .write(2, 1, "h1", Some("h0"), &[a_in_q, e("bbbbbb")])
            .read(1, 1, p_base)
            .write(
                1,
                1,
                "h2",
                Some(p_base),
                &[a_in_p, e("bbbbbb"), e("dddddd")],
            )
            .build()
    }

    fn cooldown_erasure(p_base: &str, a_in_p: EntrySummary) -> History {
        stale_over(e("aaaaaa"), exhausted("aaaaaa", 100), p_base, a_in_p)
    }

    #[test]
    fn a_cooldown_erased_by_a_stale_snapshot_is_lost() {
        let f = check(&cooldown_erasure("h0", e("aaaaaa")));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert!(w
            .last()
            .unwrap()
            .contains("entry aaaaaa's exhausted status (status_at 100) is erased"));
    }

    #[test]
    fn a_cooldown_cleared_by_one_who_saw_it_or_replaced_by_a_newer_one_is_kept() {
        assert_eq!(check(&cooldown_erasure("h1", e("aaaaaa"))).count, 0);
        assert_eq!(
            check(&cooldown_erasure("h0", exhausted("aaaaaa", 200))).count,
            0
        );
    }

    /// Item 8: a cooldown replaced by a shorter one (same `status_at`, the API's later reset
    /// time lost) is lost too.
    #[test]
    fn a_cooldown_replaced_by_a_shorter_one_is_lost() {
        let long = EntrySummary {
            reset_at: Some(100 + 7_200_000),
            ..exhausted("aaaaaa", 100)
        };
        let f = check(&stale_over(
            exhausted("aaaaaa", 100),
            long,
            "h0",
            exhausted("aaaaaa", 100),
        ));
        assert_eq!(f.count, 1, "{f:?}");
        let w = f.witness.unwrap();
        assert!(
            w.last()
                .unwrap()
                .contains("replaced by an earlier-ending one"),
            "{w:?}"
        );
    }

    /// Item 8: `reset_statuses` cleared A; the stale snapshot writes A's old bench back.
    #[test]
    fn a_lost_status_reset_is_lost() {
        let f = check(&stale_over(
            exhausted("aaaaaa", 5),
            e("aaaaaa"),
            "h0",
            exhausted("aaaaaa", 5),
        ));
        assert_eq!(f.count, 1, "{f:?}");
        let w = f.witness.unwrap();
        assert!(
            w.last()
                .unwrap()
                .contains("entry aaaaaa's cleared status is back to exhausted (status_at 5)"),
            "{w:?}"
        );
    }

    /// Item 8: Q removed C; P's stale snapshot brings it back.
    #[test]
    fn an_entry_removed_and_brought_back_by_a_stale_snapshot_is_lost() {
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa"), e("cccccc")])
            .read(1, 1, "h0")
            .op(2, 1, OpKind::Remove)
            .read(2, 1, "h0")
            .write(2, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .write(
                1,
                1,
                "h2",
                Some("h0"),
                &[exhausted("aaaaaa", 9), e("cccccc")],
            )
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1, "{f:?}");
        let w = f.witness.unwrap();
        assert!(
            w.iter().any(|s| s
                .contains("p2 op 1 remove: wrote store h1 (based on h0), entry cccccc is removed")),
            "{w:?}"
        );
        assert!(w.last().unwrap().contains("entry cccccc is back"), "{w:?}");
    }

    /// Item 8: a round-robin pick renumbered the priorities; the stale snapshot puts the old
    /// ones back (one loss per entry).
    #[test]
    fn a_lost_priority_change_is_lost() {
        let p = |id: &str, n: i64| EntrySummary {
            priority: Some(n),
            ..e(id)
        };
        let h = HistoryBuilder::new()
            .init(&[p("aaaaaa", 0), p("bbbbbb", 1)])
            .read(1, 1, "h0")
            .read(2, 1, "h0")
            .write(2, 1, "h1", Some("h0"), &[p("bbbbbb", 0), p("aaaaaa", 1)])
            .write(
                1,
                1,
                "h2",
                Some("h0"),
                &[p("aaaaaa", 0), p("bbbbbb", 1), p("dddddd", 2)],
            )
            .build();
        let f = check(&h);
        assert_eq!(f.count, 2, "{f:?}");
        assert!(f
            .witness
            .unwrap()
            .last()
            .unwrap()
            .contains("priority is back to"));
    }

    #[test]
    fn own_earlier_writes_are_ancestors_and_the_chain_is_followed() {
        // p1 adds C (h1), p2 absorbs h1 and writes h2, p1 (based on its own h1) then drops
        // nothing of p2's... and p3, based on h2, removes C on purpose.
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .read(1, 1, "h0")
            .write(1, 1, "h1", Some("h0"), &[e("aaaaaa"), e("cccccc")])
            .read(2, 1, "h1")
            .write(
                2,
                1,
                "h2",
                Some("h1"),
                &[exhausted("aaaaaa", 9), e("cccccc")],
            )
            .read(3, 1, "h2")
            .write(3, 1, "h3", Some("h2"), &[exhausted("aaaaaa", 9)])
            .read(1, 2, "h3")
            .write(1, 2, "h4", Some("h3"), &[exhausted("aaaaaa", 9)])
            .build();
        assert_eq!(check(&h).count, 0);
    }

    #[test]
    fn a_fact_that_was_removed_and_came_back_is_judged_by_its_latest_introduction() {
        // C exists in h0, is removed (seen) in h1, re-added by p2 in h2; p3 based on h1 drops it.
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa"), e("cccccc")])
            .read(1, 1, "h0")
            .write(1, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .read(2, 1, "h1")
            .read(3, 1, "h1")
            .write(2, 1, "h2", Some("h1"), &[e("aaaaaa"), e("cccccc")])
            .write(3, 1, "h3", Some("h1"), &[e("aaaaaa")])
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert!(w.iter().any(|s| s.contains("p2 op 1: wrote store h2 (based on h1), entry cccccc is in it")), "{w:?}");
    }

    /// The shape loom finds under `lock=none`: P's write (A exhausted) lands inside Q's longer
    /// in-place write (C added), both from h0. The stamps overlap, but Q then reads its own
    /// h2 back: h2 replaced h1, and A's cooldown is lost. Without that read nothing is claimed.
    #[test]
    fn a_read_that_shows_which_overlapping_write_landed_last_proves_the_loss() {
        let h = |read_back: bool| {
            let b = HistoryBuilder::new()
                .init(&[e("aaaaaa"), e("bbbbbb")])
                .read(1, 1, "h0")
                .read(2, 1, "h0")
                .write_begin(2, 1, "h2")
                .write(
                    1,
                    1,
                    "h1",
                    Some("h0"),
                    &[exhausted("aaaaaa", 50), e("bbbbbb")],
                )
                .write_done(
                    2,
                    1,
                    "h2",
                    Some("h0"),
                    &[e("aaaaaa"), e("bbbbbb"), e("cccccc")],
                );
            if read_back { b.read(2, 2, "h2") } else { b }.build()
        };
        let f = check(&h(true));
        assert_eq!(f.count, 1, "{f:?}");
        let w = f.witness.unwrap();
        assert!(
            w.last()
                .unwrap()
                .contains("entry aaaaaa's exhausted status (status_at 50) is erased"),
            "{w:?}"
        );
        assert_eq!(check(&h(false)), Finding::none());
    }

    /// Issue 16: the syscall observer records no base. P loaded h0, re-read h1 (which holds
    /// the entry p2 added) right before writing, and wrote its old snapshot: h2 lacks the entry.
    /// The latest version P observed holds it, an older one does not, and no operation
    /// removes entries: lost, from content.
    fn untold(p_entries: &[EntrySummary], added: EntrySummary) -> History {
        HistoryBuilder::new()
            .role(1, "gateway")
            .role(2, "auth-add")
            .init(&[e("aaaaaa")])
            .op(1, 1, OpKind::LoadPool)
            .read(1, 1, "h0")
            .op(2, 1, OpKind::AddEntry)
            .read(2, 1, "h0")
            .write(2, 1, "h1", None, &[e("aaaaaa"), added])
            .op(1, 2, OpKind::Select)
            .read(1, 2, "h1")
            .write(1, 2, "h2", None, p_entries)
            .build()
    }

    #[test]
    fn an_untold_base_is_judged_from_content() {
        let f = check(&untold(&[exhausted("aaaaaa", 50)], e("cccccc")));
        assert_eq!(f.count, 1, "{:?}", f.witness);
        let w = f.witness.unwrap();
        assert!(
            w.iter().any(|l| l.contains("entry cccccc is gone")),
            "{w:?}"
        );
        // The writer that kept what it re-read lost nothing.
        let f = check(&untold(
            &[exhausted("aaaaaa", 50), e("cccccc")],
            e("cccccc"),
        ));
        assert_eq!(f.count, 0, "{:?}", f.witness);
    }

    #[test]
    fn an_untold_base_erasing_a_cooldown_in_force_loses_it_but_not_an_ended_one() {
        // p2 benched aaaaaa (default cooldown: an hour); P wrote it usable again from h0.
        let f = check(&untold(&[e("aaaaaa")], e("bbbbbb")));
        assert_eq!(f.count, 1, "{:?}", f.witness); // bbbbbb is gone
        let benched = |reset_at| {
            HistoryBuilder::new()
                .role(1, "gateway")
                .role(2, "gateway")
                .init(&[e("aaaaaa")])
                .op(1, 1, OpKind::LoadPool)
                .read(1, 1, "h0")
                .op(2, 1, OpKind::MarkExhausted)
                .read(2, 1, "h0")
                .write(
                    2,
                    1,
                    "h1",
                    None,
                    &[EntrySummary {
                        reset_at,
                        ..exhausted("aaaaaa", 50)
                    }],
                )
                .op(1, 2, OpKind::Select)
                .read(1, 2, "h1")
                .write(1, 2, "h2", None, &[e("aaaaaa")])
                .build()
        };
        let f = check(&benched(None));
        assert_eq!(f.count, 1);
        // P read h1 before writing: the witness must not say it never saw it.
        let last = f.witness.unwrap().last().cloned().unwrap();
        assert!(
            last.contains("written from the older version h0") && !last.contains("never saw"),
            "{last}"
        );
        // A cooldown that had ended (reset at its own stamp) may be cleared by a select.
        assert_eq!(check(&benched(Some(50))).count, 0);
        // So may one whose entry took new tokens (a re-sync from another CLI's file).
        let mut h = benched(None);
        for r in &mut h.records {
            if let Ev::Pool {
                event: Event::Write { hash, entries, .. },
            } = &mut r.ev
            {
                if hash == "h2" {
                    entries[0].refresh = Some("t:0000beef".into());
                }
            }
        }
        assert_eq!(check(&h).count, 0);
        // The bench lasts the cooldown the run gives its pools (`Ev::PoolRules`), not
        // upstream's hour: P's select clears it about 10 ms after it was set.
        let with_cooldown = |cooldown_ms| {
            let mut h = benched(None);
            let t_ns = h.records[0].t_ns;
            h.records.insert(
                0,
                crate::history::Record {
                    t_ns,
                    proc: 0,
                    ev: Ev::PoolRules { cooldown_ms },
                },
            );
            check(&h).count
        };
        assert_eq!(with_cooldown(5), 0, "a 5 ms cooldown had ended");
        assert_eq!(with_cooldown(1000), 1, "a 1 s cooldown was in force");
    }
}

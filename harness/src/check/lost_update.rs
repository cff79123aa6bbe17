//! `lost_update`: a committed change vanished, overwritten by a writer that never saw it
//! (entry dropped, cooldown erased).
//!
//! The facts of a committed state (a `Write`'s entries) are "entry X exists" and "entry X is
//! benched (exhausted or dead) since T". Walking the writes in time order, for each write W
//! that lacks a fact F of the previous write: W' is the write that introduced F (the earliest
//! since which F was continuously present). If W' is not an ancestor of W in the base graph
//! (W's base write, its base, ... back to the initial store; a process's own writes are its
//! next base), W's writer never saw F and F was lost. Counted per lost fact.
//!
//! A cooldown counts as kept when W benches the entry since T or later (a newer cooldown),
//! and the cooldown of an entry W dropped altogether is not counted twice.

use std::collections::{HashMap, HashSet};

use pool_core::store::Status;
use pool_core::world::{EntrySummary, Event};

use super::{short, Finding, Index, Told};
use crate::history::{Ev, History};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fact<'h> {
    Exists(&'h str),
    Benched(&'h str, &'static str, u64),
}

fn benched(s: Option<Status>) -> bool {
    matches!(s, Some(Status::Exhausted | Status::Dead))
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Exhausted => "exhausted",
        Status::Dead => "dead",
    }
}

fn facts(entries: &[EntrySummary]) -> Vec<Fact<'_>> {
    let mut out = Vec::new();
    for e in entries {
        out.push(Fact::Exists(&e.id));
        if let (true, Some(s)) = (benched(e.status), e.status) {
            out.push(Fact::Benched(
                &e.id,
                status_name(s),
                e.status_at.unwrap_or(0),
            ));
        }
    }
    out
}

fn holds(entries: &[EntrySummary], f: Fact<'_>) -> bool {
    match f {
        Fact::Exists(id) => entries.iter().any(|e| e.id == id),
        Fact::Benched(id, _, t) => entries
            .iter()
            .any(|e| e.id == id && benched(e.status) && e.status_at.unwrap_or(0) >= t),
    }
}

impl Index<'_> {
    /// The write a base hash names, seen from write `k`: the latest earlier write with that
    /// hash, else (records are logged just after the bytes land) the earliest other one.
    fn base_write(&self, hash: &str, k: usize) -> Option<usize> {
        let ws = self.by_hash.get(hash)?;
        ws.iter()
            .rev()
            .find(|&&w| w < k)
            .or_else(|| ws.iter().find(|&&w| w != k))
            .copied()
    }

    /// Every write W's snapshot had absorbed: its base write, that write's base, and so on.
    fn ancestors(&self, k: usize) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut cur = k;
        while let Some(b) = self.writes[cur].base.and_then(|h| self.base_write(h, cur)) {
            if !seen.insert(b) {
                break;
            }
            cur = b;
        }
        seen
    }
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut count = 0;
    let mut witness = None;
    // Facts of the previous committed state -> the write that introduced them.
    let mut intro: HashMap<Fact<'_>, usize> = HashMap::new();
    for k in 0..ix.writes.len() {
        let w = &ix.writes[k];
        if k > 0 {
            let prev = ix.writes[k - 1].entries;
            let mut ancestors = None;
            for f in facts(prev) {
                if holds(w.entries, f) {
                    continue;
                }
                if let Fact::Benched(id, ..) = f {
                    if !holds(w.entries, Fact::Exists(id)) {
                        continue; // the entry went: counted (or excused) as such
                    }
                }
                let by = intro[&f];
                let ancestors = ancestors.get_or_insert_with(|| ix.ancestors(k));
                if ancestors.contains(&by) {
                    continue; // the writer saw F and removed it on purpose
                }
                count += 1;
                if witness.is_none() {
                    witness = Some(story(ix, f, by, k));
                }
            }
        }
        let mut next = HashMap::new();
        for f in facts(w.entries) {
            next.insert(f, intro.get(&f).copied().unwrap_or(k));
        }
        intro = next;
    }
    Finding { count, witness }
}

fn story(ix: &Index<'_>, f: Fact<'_>, by: usize, k: usize) -> Told {
    let w = &ix.writes[k];
    let mut s = ix.story();
    let (made, lost) = match f {
        Fact::Exists(id) => (
            format!("entry {id} is in it"),
            format!("entry {id} is gone"),
        ),
        Fact::Benched(id, st, t) => (
            format!("entry {id} is {st} (status_at {t})"),
            format!("entry {id}'s {st} status (status_at {t}) is erased"),
        ),
    };
    ix.write_step(&mut s, by, &made);
    // Where the overwriter's snapshot came from: its read of the base, else the base write.
    if let Some(base) = w.base {
        let read = ix.h.records[..w.rec]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, r)| match &r.ev {
                Ev::Pool {
                    event: Event::Read { op, hash, .. },
                } if r.proc == w.proc && hash == base => Some((i, *op)),
                _ => None,
            });
        match (read, ix.base_write(base, k)) {
            (Some((i, op)), _) => {
                ix.pool_step(&mut s, i, op, &format!("read store {}", short(base)))
            }
            (None, Some(b)) if b != by => {
                ix.write_step(&mut s, b, "the version the overwriter had absorbed")
            }
            _ => {}
        }
    }
    let intro = &ix.writes[by];
    let text = format!(
        "{lost}: this writer never saw {} op {}'s write {}",
        ix.h.who(intro.proc),
        intro.op,
        short(intro.hash)
    );
    ix.write_step(&mut s, k, &text);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    /// Race 1: P loads [A,B]; Q adds C and writes; P marks A exhausted and writes [A*,B].
    /// `p_base` is what P's write says its snapshot absorbed.
    fn race1(p_base: &str) -> History {
        HistoryBuilder::new()
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
            )
            .write(
                1,
                1,
                "h2",
                Some(p_base),
                &[exhausted("aaaaaa", 50), e("bbbbbb")],
            )
            .build()
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
        // Same writes, but P's snapshot had absorbed Q's write: a deliberate removal.
        assert_eq!(check(&race1("h1")), Finding::none());
    }

    /// Race 2: Q benches A; P's stale snapshot (A ok) is written later for another reason.
    fn cooldown_erasure(p_base: &str, a_in_p: EntrySummary) -> History {
        HistoryBuilder::new()
            .init(&[e("aaaaaa"), e("bbbbbb")])
            .write(
                2,
                1,
                "h1",
                Some("h0"),
                &[exhausted("aaaaaa", 100), e("bbbbbb")],
            )
            .write(
                1,
                1,
                "h2",
                Some(p_base),
                &[a_in_p, e("bbbbbb"), e("dddddd")],
            )
            .build()
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

    #[test]
    fn own_earlier_writes_are_ancestors_and_the_chain_is_followed() {
        // p1 adds C (h1), p2 absorbs h1 and writes h2, p1 (based on its own h1) then drops
        // nothing of p2's... and p3, based on h2, removes C on purpose.
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .write(1, 1, "h1", Some("h0"), &[e("aaaaaa"), e("cccccc")])
            .write(
                2,
                1,
                "h2",
                Some("h1"),
                &[exhausted("aaaaaa", 9), e("cccccc")],
            )
            .write(3, 1, "h3", Some("h2"), &[exhausted("aaaaaa", 9)])
            .write(1, 2, "h4", Some("h3"), &[exhausted("aaaaaa", 9)])
            .build();
        assert_eq!(check(&h).count, 0);
    }

    #[test]
    fn a_fact_that_was_removed_and_came_back_is_judged_by_its_latest_introduction() {
        // C exists in h0, is removed (seen) in h1, re-added by p2 in h2; p3 based on h1 drops it.
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa"), e("cccccc")])
            .write(1, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .write(2, 1, "h2", Some("h1"), &[e("aaaaaa"), e("cccccc")])
            .write(3, 1, "h3", Some("h1"), &[e("aaaaaa")])
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert!(w.iter().any(|s| s.contains("p2 op 1: wrote store h2 (based on h1), entry cccccc is in it")), "{w:?}");
    }
}

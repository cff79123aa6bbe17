//! The order of store writes, as far as the history proves it.
//!
//! Each completed write has two stamps: `begin_ns` (recorded before its content could land)
//! and `t_ns` (recorded after it had). Write A certainly landed before write B when A's
//! completion precedes B's beginning, or when one process made both (a process does one thing
//! at a time), or when a read after A had completed found B's content and no other write
//! (completed or begun) produced that content: B's bytes replaced A's. Writes whose intervals
//! overlap and that no such read separates are unordered: either may have landed first, and
//! their record order says nothing. The checkers that compare a write with "the version on
//! disk before it" (`lost_update`, `token_rollback`) use [`Index::predecessors`]: every write
//! that may have been that version. A claim must hold for all of them; a begun write that was
//! never recorded complete ([`super::Pending`]) and may have landed in between makes the
//! version before unknown, and nothing is claimed.
//!
//! A machine crash ([`crate::history::Ev::Crash`]) puts back on disk whatever was durable, which
//! is not the content of the write that landed last: for a write after a crash, only writes
//! that began after that crash are candidates, and if none of them certainly came before it,
//! the version before it is the crash's, which is no write: nothing is claimed (what a crash
//! took back is [`super::crash_loss`]'s to judge).
//!
//! Not guaranteed: the exact on-disk order. The bounds are sound, not tight, so some real
//! anomalies between writes that overlap are not reported.

use super::Index;

impl Index<'_> {
    /// Whether completed write `a` certainly landed before completed write `b`.
    pub fn before(&self, a: usize, b: usize) -> bool {
        if a == b {
            return false;
        }
        let (wa, wb) = (&self.writes[a], &self.writes[b]);
        (wa.proc == wb.proc && a < b) || wa.t_ns < wb.begin_ns || self.read_over(a, b)
    }

    /// Whether a read after write `a` completed found write `b`'s content, which no other
    /// write produced: then `b`'s bytes landed over `a`'s.
    fn read_over(&self, a: usize, b: usize) -> bool {
        let (wa, wb) = (&self.writes[a], &self.writes[b]);
        wa.hash != wb.hash
            && self.last_read_ns.get(wb.hash).is_some_and(|&r| r > wa.t_ns)
            && self.by_hash.get(wb.hash).is_some_and(|ws| ws.len() == 1)
            && !self.pending.iter().any(|p| p.hash == wb.hash)
    }

    /// Every completed write that may have been on disk right before write `k` landed: it may
    /// have landed before `k`, and no write certainly landed between the two. `None` when a
    /// write of unknown content (begun, never recorded complete) may have been in between, or
    /// when nothing came before `k`.
    pub fn predecessors(&self, k: usize) -> Option<Vec<usize>> {
        let wk = &self.writes[k];
        // Only writes since the last crash before k count (all of them, without a crash).
        let crash = self.crash_before(wk.begin_ns);
        let since = |j: usize| crash == 0 || self.writes[j].begin_ns > crash;
        if crash > 0 && !(0..self.writes.len()).any(|j| since(j) && self.before(j, k)) {
            return None; // the version before k is what the crash left
        }
        // Writes certainly before k: the latest beginning among them, and per process the
        // last of them. A write that ended before that beginning, or that its own process
        // followed with one of them, certainly landed before another write before k.
        let mut latest_begin = 0;
        let mut last_of: std::collections::HashMap<u32, usize> = Default::default();
        for j in (0..self.writes.len()).filter(|&j| since(j)) {
            if self.before(j, k) {
                let w = &self.writes[j];
                latest_begin = latest_begin.max(w.begin_ns);
                let e = last_of.entry(w.proc).or_insert(j);
                *e = (*e).max(j);
            }
        }
        let dominated = |j: usize| {
            let w = &self.writes[j];
            w.t_ns < latest_begin || last_of.get(&w.proc).is_some_and(|&l| j < l)
        };
        let may_precede = |j: usize| {
            let w = &self.writes[j];
            j != k && !self.before(k, j) && (w.begin_ns <= wk.t_ns || self.before(j, k))
        };
        let unknown_between = self.pending.iter().any(|p| {
            p.begin_ns <= wk.t_ns
                && p.end_ns >= latest_begin
                && !(p.proc == wk.proc && p.rec > wk.rec)
        });
        if unknown_between {
            return None;
        }
        let preds: Vec<usize> = (0..self.writes.len())
            .filter(|&j| since(j) && may_precede(j) && !dominated(j))
            .collect();
        (!preds.is_empty()).then_some(preds)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Index;

    #[test]
    fn sequential_writes_have_one_predecessor_and_overlapping_ones_several() {
        // p1's write spans p2's whole write: either may have landed first.
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .write_begin(1, 1, "h1")
            .write_done(2, 1, "h2", Some("h0"), &[e("aaaaaa")])
            .write_done(1, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .write_done(3, 1, "h3", Some("h1"), &[e("aaaaaa")])
            .build();
        let ix = Index::new(&h);
        let pos = |hash: &str| ix.writes.iter().position(|w| w.hash == hash).unwrap();
        assert!(ix.before(pos("h0"), pos("h2")));
        assert!(!ix.before(pos("h2"), pos("h1")) && !ix.before(pos("h1"), pos("h2")));
        assert_eq!(ix.predecessors(pos("h2")), Some(vec![pos("h0"), pos("h1")]));
        assert_eq!(ix.predecessors(pos("h1")), Some(vec![pos("h0"), pos("h2")]));
        assert_eq!(ix.predecessors(pos("h3")), Some(vec![pos("h2"), pos("h1")]));
        assert_eq!(ix.predecessors(pos("h0")), None);
    }

    #[test]
    fn a_write_that_never_completed_makes_the_version_before_unknown() {
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .write_begin(1, 1, "h1")
            .write_done(2, 1, "h2", Some("h0"), &[e("aaaaaa")])
            .build();
        let ix = Index::new(&h);
        assert_eq!(ix.predecessors(1), None);
    }

    /// Overlapping writes h1 and h2; a read after both completed found h2: h2's bytes replaced
    /// h1's. Not when another write also produced h2's content, nor without the read.
    #[test]
    fn a_later_read_of_a_unique_content_orders_the_write_it_replaced() {
        let overlapping = |then: fn(HistoryBuilder) -> HistoryBuilder| {
            then(
                HistoryBuilder::new()
                    .init(&[e("aaaaaa")])
                    .write_begin(2, 1, "h2")
                    .write(1, 1, "h1", Some("h0"), &[e("aaaaaa")])
                    .write_done(2, 1, "h2", Some("h0"), &[e("bbbbbb")]),
            )
            .build()
        };
        let h = overlapping(|b| b.read(3, 1, "h2"));
        let ix = Index::new(&h);
        let pos = |hash: &str| ix.writes.iter().position(|w| w.hash == hash).unwrap();
        assert!(ix.before(pos("h1"), pos("h2")) && !ix.before(pos("h2"), pos("h1")));
        assert_eq!(ix.predecessors(pos("h2")), Some(vec![pos("h1")]));
        let h = overlapping(|b| b);
        let ix = Index::new(&h);
        assert!(!ix.before(1, 2) && !ix.before(2, 1));
        let h = overlapping(|b| {
            b.write(3, 1, "h2", Some("h0"), &[e("bbbbbb")])
                .read(3, 2, "h2")
        });
        let ix = Index::new(&h);
        assert!(!ix.before(1, 2) && !ix.before(2, 1));
    }
}

//! Acknowledged writes a machine crash took back (counted as `lost_update`: a committed change
//! vanished).
//!
//! A write is *visible* once its bytes are in place (its `write` record) and *acknowledged*
//! once the operation that made it has returned success to its caller (an `op_end` with `ok`):
//! only then may anyone rely on it. A crash may take back a visible write whose operation was
//! still running (the caller never heard it succeed; durability is promised at the return),
//! but not an acknowledged one. So after a crash ([`Ev::Crash`]), the store must hold the
//! content of the last acknowledged write or of a write that may have landed after it.
//!
//! For each crash that left a store that parses (one that does not is `corrupt_store`): it is
//! a loss when some write acknowledged before the crash (since the crash before it) certainly
//! landed after every write whose content the crash left ([`Index::before`]), or when the
//! crash left content no write since the previous crash made (an older version, such as the
//! initial store) while such a write exists. A content some begun, never completed write may
//! have produced is never a loss (it may have landed last). Counted once per crash.

use super::{short, Finding, Index, Told};
use crate::history::{Ev, FinalStore};

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut count = 0;
    let mut witness = None;
    for (n, &c) in ix.crashes.iter().enumerate() {
        let Ev::Crash {
            hash,
            outcome: FinalStore::Parsed { .. },
        } = &ix.h.records[c].ev
        else {
            continue;
        };
        let t_c = ix.h.records[c].t_ns;
        let since = n
            .checked_sub(1)
            .map_or(0, |p| ix.h.records[ix.crashes[p]].t_ns);
        let in_life = |t: u64| t > since && t < t_c;
        if ix
            .pending
            .iter()
            .any(|p| p.hash == hash && p.begin_ns < t_c)
        {
            continue;
        }
        // The writes whose content the crash left, since the crash before.
        let left: Vec<usize> = (0..ix.writes.len())
            .filter(|&j| ix.writes[j].hash == hash && in_life(ix.writes[j].t_ns))
            .collect();
        // The acknowledged writes of this life that certainly landed after all of those.
        let lost = (0..ix.writes.len()).rev().find(|&w| {
            let wr = &ix.writes[w];
            let acked = ix
                .op_ends
                .get(&(wr.proc, wr.op))
                .is_some_and(|&(e, ok)| ok && ix.h.records[e].t_ns < t_c);
            wr.proc != 0
                && acked
                && in_life(wr.t_ns)
                && wr.hash != hash
                && left.iter().all(|&j| ix.before(j, w))
        });
        let Some(w) = lost else { continue };
        count += 1;
        if witness.is_none() {
            witness = Some(story(ix, w, c, hash, left.last().copied()));
        }
    }
    Finding { count, witness }
}

fn story(ix: &Index<'_>, w: usize, c: usize, left: &str, by: Option<usize>) -> Told {
    let mut s = ix.story();
    let wr = &ix.writes[w];
    ix.write_step(&mut s, w, "");
    if let Some(&(e, _)) = ix.op_ends.get(&(wr.proc, wr.op)) {
        ix.pool_step(
            &mut s,
            e,
            wr.op,
            &format!("returned success: store {} acknowledged", short(wr.hash)),
        );
    }
    let older = match by {
        Some(j) => {
            let b = &ix.writes[j];
            format!(
                "the version {} wrote, before it",
                ix.h.who(b.proc).replace("harness", "the harness's setup")
            )
        }
        None => "an older version".to_string(),
    };
    s.push_as(
        c,
        format!(
            "machine crash: the store came back as {} ({older}): the acknowledged {} is lost",
            short(left),
            short(wr.hash)
        ),
    );
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::history::History;
    use pool_core::world::{Event, OpKind};

    fn crash(
        b: HistoryBuilder,
        back_to: &str,
        entries: &[pool_core::world::EntrySummary],
    ) -> History {
        b.at(
            0,
            Ev::Crash {
                hash: back_to.into(),
                outcome: FinalStore::Parsed {
                    entries: entries.to_vec(),
                },
            },
        )
        .build()
    }

    fn acked(b: HistoryBuilder) -> HistoryBuilder {
        b.at(
            1,
            Ev::Pool {
                event: Event::OpEnd {
                    op: 1,
                    ok: true,
                    error: None,
                },
            },
        )
    }

    fn wrote() -> HistoryBuilder {
        HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .op(1, 1, OpKind::AddEntry)
            .write(1, 1, "h1", Some("h0"), &[e("aaaaaa"), e("bbbbbb")])
    }

    #[test]
    fn a_crash_that_brings_back_the_store_before_an_acknowledged_write_loses_it() {
        let h = crash(acked(wrote()), "h0", &[e("aaaaaa")]);
        let f = super::super::lost_update::check(&h);
        assert_eq!(f.count, 1, "{f:?}");
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[1].contains("returned success: store h1 acknowledged"),
            "{w:?}"
        );
        assert!(
            w[2].contains("machine crash: the store came back as h0"),
            "{w:?}"
        );
    }

    #[test]
    fn a_crash_may_take_back_a_write_not_acknowledged_yet_or_keep_an_acknowledged_one() {
        // The operation was still running: its caller never heard of h1.
        assert_eq!(
            super::super::lost_update::check(&crash(wrote(), "h0", &[e("aaaaaa")])).count,
            0
        );
        // Acknowledged and still there.
        let h = crash(acked(wrote()), "h1", &[e("aaaaaa"), e("bbbbbb")]);
        assert_eq!(super::super::lost_update::check(&h).count, 0);
        // Acknowledged, then a later (unacknowledged) write: either may be what survived.
        let h = crash(
            acked(wrote()).write(2, 1, "h2", Some("h1"), &[e("aaaaaa")]),
            "h2",
            &[e("aaaaaa")],
        );
        assert_eq!(super::super::lost_update::check(&h).count, 0);
    }
}

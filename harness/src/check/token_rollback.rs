//! `token_rollback`: the store's refresh token went back to an older one of the same family.
//!
//! The ledger's `Issued` events map each refresh tag to (family, generation). Walking the
//! writes in time order, a write is a rollback when, for some entry, its refresh token is of
//! the same family as the entry's previous committed refresh token (in the last write holding
//! the entry) but of a lower generation. Counted per write.

use std::collections::HashMap;

use super::{tok, Finding, Index, Told};
use crate::history::{Ev, History, RedeemVerdict};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut count = 0;
    let mut witness = None;
    // entry id -> (refresh tag, write position) last committed
    let mut last: HashMap<&str, (&str, usize)> = HashMap::new();
    for (k, w) in ix.writes.iter().enumerate() {
        let mut rolled = None;
        for e in w.entries {
            let Some(r) = e.refresh.as_deref() else {
                continue;
            };
            if let Some(&(prev, pk)) = last.get(e.id.as_str()) {
                let old = ix.issued_refresh.get(prev);
                let new = ix.issued_refresh.get(r);
                if let (Some(&(f0, g0, _)), Some(&(f1, g1, _))) = (old, new) {
                    if f0 == f1 && g1 < g0 && rolled.is_none() {
                        rolled = Some((e.id.as_str(), prev, pk, r));
                    }
                }
            }
            last.insert(&e.id, (r, k));
        }
        if let Some((id, newer, pk, older)) = rolled {
            count += 1;
            if witness.is_none() {
                witness = Some(story(ix, id, newer, pk, older, k));
            }
        }
    }
    Finding { count, witness }
}

fn story(ix: &Index<'_>, id: &str, newer: &str, pk: usize, older: &str, k: usize) -> Told {
    let mut s = ix.story();
    // The redemption that made the older token history, if the ledger has it.
    let spent = ix.h.records.iter().enumerate().find(|(_, r)| {
        matches!(&r.ev, Ev::Redeemed { refresh, outcome: RedeemVerdict::Rotated } if refresh == older)
    });
    if let Some((i, _)) = spent {
        let text = format!(
            "{} redeemed {} -> rotated to {} {}",
            ix.requester_of(i),
            tok(older),
            tok(newer),
            ix.gen_of_refresh(newer)
        );
        s.push_as(i, text);
    }
    ix.write_step(
        &mut s,
        pk,
        &format!(
            "entry {id} holds {} {}",
            tok(newer),
            ix.gen_of_refresh(newer)
        ),
    );
    let text = format!(
        "entry {id} back to {} {}: older than the committed {}",
        tok(older),
        ix.gen_of_refresh(older),
        tok(newer)
    );
    ix.write_step(&mut s, k, &text);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn race4(written_back: &str) -> History {
        let (r0, r1) = (tag(0x10), tag(0x11));
        HistoryBuilder::new()
            .role(1, "gateway")
            .role(2, "cli")
            .issued(1, 0, &r0, &tag(0x20))
            .init(&[oauth("aaaaaa", &r0)])
            .op(1, 1, OpKind::Select)
            .redeemed(&r0, RedeemVerdict::Rotated)
            .issued(1, 1, &r1, &tag(0x21))
            .refresh(1, 1, "aaaaaa", &r0, RefreshOutcome::Rotated)
            .write(1, 1, "h1", Some("h0"), &[oauth("aaaaaa", &r1)])
            .write(
                2,
                1,
                "h2",
                Some("h0"),
                &[oauth("aaaaaa", written_back), e("bbbbbb")],
            )
            .build()
    }

    #[test]
    fn a_stale_snapshot_writing_the_spent_token_back_is_a_rollback() {
        let f = check(&race4(&tag(0x10)));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("p1 (gateway) op 1 select: redeemed t:00000010 -> rotated to t:00000011 (family 1 gen 1)"), "{w:?}");
        assert!(w[1].contains("entry aaaaaa holds t:00000011 (family 1 gen 1)"));
        assert!(w[2].contains("p2 (cli) op 1: wrote store h2 (based on h0), entry aaaaaa back to t:00000010 (family 1 gen 0)"));
    }

    #[test]
    fn keeping_the_newer_token_or_switching_family_is_not_a_rollback() {
        assert_eq!(check(&race4(&tag(0x11))), Finding::none());
        // A token of another family (a fresh login) is not a rollback either.
        let h = HistoryBuilder::new()
            .issued(1, 0, &tag(0x10), &tag(0x20))
            .issued(1, 1, &tag(0x11), &tag(0x21))
            .issued(2, 0, &tag(0x30), &tag(0x40))
            .init(&[oauth("aaaaaa", &tag(0x11))])
            .write(1, 1, "h1", Some("h0"), &[oauth("aaaaaa", &tag(0x30))])
            .build();
        assert_eq!(check(&h).count, 0);
    }
}

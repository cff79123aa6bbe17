//! `token_rollback`: the store's refresh token went back to an older one of the same family.
//!
//! The ledger's `Issued` events map each refresh tag to (family, generation). A write W is a
//! rollback when, for some entry, its refresh token is of a lower generation of the same
//! family than the entry's token in every version that may have been on disk right before W
//! landed ([`Index::predecessors`]): writes that overlap are unordered, and a rollback that
//! holds only in one of their orders is not claimed. Counted per write.

use super::{tok, Finding, Index, Told};
use crate::history::{Ev, History, RedeemVerdict};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut count = 0;
    let mut witness = None;
    for (k, w) in ix.writes.iter().enumerate() {
        let Some(preds) = ix.predecessors(k) else {
            continue;
        };
        let mut rolled = None;
        for e in w.entries {
            let Some(r) = e.refresh.as_deref() else {
                continue;
            };
            let Some(&(f1, g1, _)) = ix.issued_refresh.get(r) else {
                continue;
            };
            // The entry's token in each possible version before W: all newer, same family.
            let mut newer = None;
            let all = preds.iter().all(|&p| {
                let prev = ix.writes[p]
                    .entries
                    .iter()
                    .find(|x| x.id == e.id)
                    .and_then(|x| x.refresh.as_deref());
                match prev.and_then(|t| ix.issued_refresh.get(t).map(|g| (t, g))) {
                    Some((t, &(f0, g0, _))) if f0 == f1 && g1 < g0 => {
                        newer.get_or_insert((t, p));
                        true
                    }
                    _ => false,
                }
            });
            if let (true, Some((prev, pk)), None) = (all, newer, rolled) {
                rolled = Some((e.id.as_str(), prev, pk, r));
            }
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

    /// Item 7 of issue 13: p2's write began before p1's completed, so p1's may have landed
    /// last; with the record order trusted this was a false rollback.
    #[test]
    fn a_write_overlapping_the_rotation_is_not_a_rollback() {
        let (r0, r1) = (tag(0x10), tag(0x11));
        let h = HistoryBuilder::new()
            .issued(1, 0, &r0, &tag(0x20))
            .init(&[oauth("aaaaaa", &r0)])
            .redeemed(&r0, RedeemVerdict::Rotated)
            .issued(1, 1, &r1, &tag(0x21))
            .write_begin(2, 1, "h2")
            .write(1, 1, "h1", Some("h0"), &[oauth("aaaaaa", &r1)])
            .write_done(2, 1, "h2", Some("h0"), &[oauth("aaaaaa", &r0), e("bbbbbb")])
            .build();
        assert_eq!(check(&h), Finding::none());
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

//! `dead_credential`: at the end the store holds refresh tokens the issuer no longer honours.
//!
//! For each entry of the parsed final store that holds a refresh token: dead when the token
//! was already redeemed (`Rotated` or `Grace`), its family was revoked, or it was never
//! issued. Counted per dead entry; entries without a refresh token (API keys) never count.
//! A missing or corrupt final store is `corrupt_store`'s business: 0 here.

use super::corrupt_store::final_store;
use super::{short, tok, Finding, Index};
use crate::history::{Ev, FinalStore, History, RedeemVerdict};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let Some((fin, hash, FinalStore::Parsed { entries })) = final_store(ix.h) else {
        return Finding::none();
    };
    let h = ix.h;
    let mut count = 0;
    let mut witness = None;
    for e in entries {
        let Some(r) = e.refresh.as_deref() else {
            continue;
        };
        // (record of the cause, what it says) or None when the issuer still honours r.
        let cause: Option<(Option<usize>, String)> = match ix.issued_refresh.get(r) {
            None => Some((None, "never issued".to_string())),
            Some(&(family, ..)) => {
                let spent = h.records.iter().position(|x| {
                    matches!(&x.ev, Ev::Redeemed { refresh, outcome: RedeemVerdict::Rotated | RedeemVerdict::Grace } if refresh == r)
                });
                let revoked = h.records.iter().position(
                    |x| matches!(&x.ev, Ev::FamilyRevoked { family: f, .. } if *f == family),
                );
                match (spent, revoked) {
                    (Some(i), _) => Some((Some(i), "already redeemed".to_string())),
                    (None, Some(i)) => Some((Some(i), format!("family {family} revoked"))),
                    (None, None) => None,
                }
            }
        };
        let Some((at, why)) = cause else { continue };
        count += 1;
        if witness.is_some() {
            continue;
        }
        let mut s = ix.story();
        if let Some(i) = at {
            match &h.records[i].ev {
                Ev::Redeemed { outcome, .. } => {
                    let v = super::double_redeem::verdict_name(outcome);
                    let text = format!("{} redeemed {} -> {v}", ix.requester_of(i), tok(r));
                    s.push_as(i, text);
                }
                Ev::FamilyRevoked { family, cause } => {
                    s.push(
                        i,
                        &format!("revoked family {family} (replay of {})", tok(cause)),
                    );
                }
                _ => {}
            }
        }
        // The last write that committed this token to the entry.
        let wrote = ix.writes.iter().rposition(|w| {
            w.entries
                .iter()
                .any(|x| x.id == e.id && x.refresh.as_deref() == Some(r))
        });
        if let Some(k) = wrote {
            ix.write_step(&mut s, k, &format!("entry {} holds {}", e.id, tok(r)));
        }
        let text = format!(
            "final check: store {} entry {} holds {} {}: {why}",
            short(hash),
            e.id,
            tok(r),
            ix.gen_of_refresh(r)
        );
        s.push_as(fin, text);
        witness = Some(s.finish());
    }
    Finding { count, witness }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn ending_with(kept: &str) -> History {
        let (r0, r1) = (tag(0x10), tag(0x11));
        HistoryBuilder::new()
            .role(1, "gateway")
            .issued(1, 0, &r0, &tag(0x20))
            .init(&[oauth("aaaaaa", &r0), e("bbbbbb")])
            .op(1, 1, OpKind::Select)
            .redeemed(&r0, RedeemVerdict::Rotated)
            .refresh(1, 1, "aaaaaa", &r0, RefreshOutcome::Rotated)
            .issued(1, 1, &r1, &tag(0x21))
            .write(
                1,
                1,
                "h1",
                Some("h0"),
                &[oauth("aaaaaa", kept), e("bbbbbb")],
            )
            .final_store(&[oauth("aaaaaa", kept), e("bbbbbb")])
            .build()
    }

    #[test]
    fn a_final_store_holding_a_spent_token_is_dead() {
        let f = check(&ending_with(&tag(0x10)));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("p1 (gateway) op 1 select: redeemed t:00000010 -> rotated"));
        assert!(w[1].contains("wrote store h1 (based on h0), entry aaaaaa holds t:00000010"));
        assert!(w[2].contains("final check: store hf entry aaaaaa holds t:00000010 (family 1 gen 0): already redeemed"));
    }

    #[test]
    fn a_final_store_holding_the_live_token_is_not() {
        assert_eq!(check(&ending_with(&tag(0x11))), Finding::none());
    }

    #[test]
    fn revoked_families_and_never_issued_tokens_are_dead_but_not_when_the_store_is_corrupt() {
        let h = HistoryBuilder::new()
            .issued(1, 0, &tag(0x10), &tag(0x20))
            .revoked(1, &tag(0x10))
            .final_store(&[
                oauth("aaaaaa", &tag(0x10)),
                oauth("cccccc", &tag(0x99)),
                e("bbbbbb"),
            ])
            .build();
        let f = check(&h);
        assert_eq!(f.count, 2);
        assert!(f
            .witness
            .unwrap()
            .last()
            .unwrap()
            .contains("family 1 revoked"));
        let h = HistoryBuilder::new()
            .issued(1, 0, &tag(0x10), &tag(0x20))
            .final_corrupt()
            .build();
        assert_eq!(check(&h).count, 0);
    }
}

//! `dead_credential`: at the end the store holds refresh tokens the issuer no longer honours.
//!
//! For each entry of the parsed final store that holds a refresh token, as of the final check:
//! dead when it was never issued, when it was redeemed (`Rotated`) longer ago than the issuer's
//! reuse grace period ([`Ev::IssuerRules`]; 0 when the history does not say), or when its
//! family was revoked. A token redeemed *inside* the grace period is still honoured (the issuer
//! returns the pair its first redemption returned), so it is dead only if that pair's refresh
//! token is itself dead, by the same rule: such an entry is not counted here but reported as
//! `grace_credential` in the run's `tolerated` object (alive now, dead once the grace period
//! runs out unless the pool refreshes first). Counted per dead entry; entries without a refresh
//! token (API keys) never count. A missing or corrupt final store is `corrupt_store`'s
//! business: 0 here.

use std::collections::HashMap;

use super::corrupt_store::final_store;
use super::{short, tok, Finding, Index};
use crate::history::{Ev, FinalStore, History, RedeemVerdict};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    judge(ix).0
}

/// Final-store entries honoured only because a grace period has not run out yet
/// (`tolerated.grace_credential`).
pub(crate) fn grace_credentials(ix: &Index<'_>) -> u64 {
    judge(ix).1
}

/// What the issuer would do with a refresh token at the final check.
enum Life {
    /// Never redeemed, family alive.
    Live,
    /// Redeemed inside the grace period, and the pair it returns again is alive.
    Grace,
    /// Refused: the record that killed it (if any) and why.
    Dead(Option<usize>, String),
}

/// The issuer's reuse grace period as the history records it, in ns (0 when it does not).
fn grace_ns(ix: &Index<'_>) -> u64 {
    ix.h.records
        .iter()
        .find_map(|r| match r.ev {
            Ev::IssuerRules { grace_ms } => Some(grace_ms.saturating_mul(1_000_000)),
            _ => None,
        })
        .unwrap_or(0)
}

fn life(ix: &Index<'_>, token: &str, at_ns: u64, grace_ns: u64) -> Life {
    let h = ix.h;
    // (family, generation) -> refresh tag, to follow a grace redemption to the pair it returns
    let by_gen: HashMap<(u32, u32), &str> = ix
        .issued_refresh
        .iter()
        .map(|(t, &(f, g, _))| ((f, g), *t))
        .collect();
    let mut t = token;
    let mut in_grace = false;
    // Generations only grow along the chain, so it ends within the tokens issued.
    for _ in 0..=ix.issued_refresh.len() {
        let Some(&(family, gen, _)) = ix.issued_refresh.get(t) else {
            return Life::Dead(None, "never issued".to_string());
        };
        let spent = h.records.iter().position(|x| {
            matches!(&x.ev, Ev::Redeemed { refresh, outcome: RedeemVerdict::Rotated } if refresh == t)
        });
        let revoked = h
            .records
            .iter()
            .position(|x| matches!(&x.ev, Ev::FamilyRevoked { family: f, .. } if *f == family));
        let inside = |i: usize| at_ns.saturating_sub(h.records[i].t_ns) < grace_ns;
        // Why a token reached through grace redemptions is dead: say which one.
        let via = |why: String| {
            if in_grace {
                format!("still inside its grace period, but the pair that returns holds {} (gen {gen}): {why}", tok(t))
            } else {
                why
            }
        };
        match (spent, revoked) {
            (Some(i), _) if !inside(i) => {
                let why = if grace_ns > 0 {
                    "already redeemed, and its grace period is over"
                } else {
                    "already redeemed"
                };
                return Life::Dead(Some(i), via(why.to_string()));
            }
            (_, Some(i)) => return Life::Dead(Some(i), via(format!("family {family} revoked"))),
            (None, None) => return if in_grace { Life::Grace } else { Life::Live },
            (Some(_), None) => match by_gen.get(&(family, gen + 1)) {
                Some(next) => {
                    in_grace = true;
                    t = next;
                }
                None => return Life::Dead(None, "redeemed, but its successor is unknown".into()),
            },
        }
    }
    Life::Dead(None, "redeemed, but its successor is unknown".into())
}

/// (dead entries with the first witness, entries alive only through a grace period)
fn judge(ix: &Index<'_>) -> (Finding, u64) {
    let Some((fin, hash, FinalStore::Parsed { entries })) = final_store(ix.h) else {
        return (Finding::none(), 0);
    };
    let h = ix.h;
    let at_ns = h.records[fin].t_ns;
    let grace_ns = grace_ns(ix);
    let mut count = 0;
    let mut graced = 0;
    let mut witness = None;
    for e in entries {
        let Some(r) = e.refresh.as_deref() else {
            continue;
        };
        let (at, why) = match life(ix, r, at_ns, grace_ns) {
            Life::Live => continue,
            Life::Grace => {
                graced += 1;
                continue;
            }
            Life::Dead(at, why) => (at, why),
        };
        count += 1;
        if witness.is_some() {
            continue;
        }
        let mut s = ix.story();
        if let Some(i) = at {
            match &h.records[i].ev {
                Ev::Redeemed { outcome, refresh } => {
                    let v = super::double_redeem::verdict_name(outcome);
                    let text = format!("{} redeemed {} -> {v}", ix.requester_of(i), tok(refresh));
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
    (Finding { count, witness }, graced)
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

    /// A worker killed right after the issuer rotated its token leaves the spent token in the
    /// store (the crash-mid-persist run of flock-txn) until the final check, 3 ms later.
    fn killed_after_redeem(grace_ms: Option<u64>) -> History {
        let (r0, r1) = (tag(0x10), tag(0x11));
        let mut b = HistoryBuilder::new();
        if let Some(grace_ms) = grace_ms {
            b = b.at(0, Ev::IssuerRules { grace_ms });
        }
        b.role(1, "gateway")
            .issued(1, 0, &r0, &tag(0x20))
            .init(&[oauth("aaaaaa", &r0)])
            .op(1, 1, OpKind::Select)
            .redeemed(&r0, RedeemVerdict::Rotated)
            .issued(1, 1, &r1, &tag(0x21))
            .final_store(&[oauth("aaaaaa", &r0)])
            .build()
    }

    /// Issue #13 item 14: a token still inside its grace period is honoured, not dead; it is
    /// reported as tolerated instead.
    #[test]
    fn a_token_inside_its_grace_period_is_not_dead_but_tolerated() {
        let h = killed_after_redeem(Some(10_000));
        assert_eq!(check(&h), Finding::none());
        assert_eq!(grace_credentials(&Index::new(&h)), 1);
    }

    /// Once the grace period is over (the records are 1 ms apart), or with none, it is dead.
    #[test]
    fn a_token_past_its_grace_period_or_without_one_is_dead() {
        for (grace, why) in [
            (Some(1), "already redeemed, and its grace period is over"),
            (Some(0), "already redeemed"),
            (None, "already redeemed"),
        ] {
            let h = killed_after_redeem(grace);
            let f = check(&h);
            assert_eq!(f.count, 1, "{grace:?}");
            assert!(
                f.witness.unwrap().last().unwrap().ends_with(why),
                "{grace:?}"
            );
            assert_eq!(grace_credentials(&Index::new(&h)), 0);
        }
    }

    /// Inside the grace period the issuer returns the first redemption's pair again: if that
    /// pair's token is dead (its family revoked, or itself spent past its grace), so is this.
    #[test]
    fn a_grace_token_whose_returned_pair_is_dead_is_dead() {
        let (r0, r1, r2) = (tag(0x10), tag(0x11), tag(0x12));
        let base = || {
            HistoryBuilder::new()
                .at(0, Ev::IssuerRules { grace_ms: 10_000 })
                .issued(1, 0, &r0, &tag(0x20))
                .redeemed(&r0, RedeemVerdict::Rotated)
                .issued(1, 1, &r1, &tag(0x21))
                .redeemed(&r1, RedeemVerdict::Rotated)
                .issued(1, 2, &r2, &tag(0x22))
        };
        // R0 -> R1 -> R2, all inside the grace period: alive through grace.
        let h = base().final_store(&[oauth("aaaaaa", &r0)]).build();
        assert_eq!(check(&h), Finding::none());
        assert_eq!(grace_credentials(&Index::new(&h)), 1);
        // The family revoked: dead, and the story says so.
        let h = base()
            .redeemed(&r1, RedeemVerdict::Reused)
            .revoked(1, &r1)
            .final_store(&[oauth("aaaaaa", &r0)])
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1);
        assert!(f
            .witness
            .unwrap()
            .last()
            .unwrap()
            .contains("family 1 revoked"));
        assert_eq!(grace_credentials(&Index::new(&h)), 0);
    }
}

//! `double_redeem`: a spent refresh token was presented again and refused, so its family is
//! revoked and the user is logged out (RFC 9700 §4.14.2).
//!
//! From the ledger, per refresh token, in time order: its first `Rotated` spends it. The harm
//! is a later refusal *because* it was spent: `Reused` (this request revoked the family), or
//! `Revoked` of a spent token (an earlier reuse already revoked the family: the same harm).
//! Counted once per token, however many times it is presented again, whoever presents it (a
//! pool process, or a tool outside the pool's lock such as an external CLI: the witness names
//! such an outsider).
//!
//! Not counted here: a repeat the issuer accepted inside its reuse grace period (`Grace`: the
//! same new pair again, no harm), which [`grace_redeems`] counts for the report's `tolerated`
//! object; a token never issued (`Unknown`); a token refused on its first presentation because
//! another token's reuse revoked its family (that harm is the other token's).

use std::collections::{HashMap, HashSet};

use super::{tok, Finding, Index, Told};
use crate::history::{Ev, History, ProcId, RedeemVerdict};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn verdict_name(v: &RedeemVerdict) -> &'static str {
    match v {
        RedeemVerdict::Rotated => "rotated",
        RedeemVerdict::Grace => "grace (the same new pair again)",
        RedeemVerdict::Reused => "refused as reused",
        RedeemVerdict::Revoked => "refused, family revoked",
        RedeemVerdict::Unknown => "refused, unknown token",
    }
}

/// Re-presentations of spent refresh tokens that the issuer accepted inside its reuse grace
/// period (`tolerated.grace_redeem`): no harm, but a pool that relies on them is one slow
/// restart away from a revoked family.
pub fn grace_redeems(h: &History) -> u64 {
    h.records
        .iter()
        .filter(|r| {
            matches!(
                r.ev,
                Ev::Redeemed {
                    outcome: RedeemVerdict::Grace,
                    ..
                }
            )
        })
        .count() as u64
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    // token -> the `Rotated` record that spent it
    let mut spent: HashMap<&str, usize> = HashMap::new();
    // harmed tokens in the order of their first harmful re-presentation: (token, that record)
    let mut harmed: Vec<(&str, usize)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, r) in ix.h.records.iter().enumerate() {
        let Ev::Redeemed { refresh, outcome } = &r.ev else {
            continue;
        };
        let t = refresh.as_str();
        let harm = match outcome {
            RedeemVerdict::Rotated => {
                spent.entry(t).or_insert(i);
                false
            }
            RedeemVerdict::Reused => true,
            RedeemVerdict::Revoked => spent.contains_key(t),
            RedeemVerdict::Grace | RedeemVerdict::Unknown => false,
        };
        if harm && seen.insert(t) {
            harmed.push((t, i));
        }
    }
    let witness = harmed
        .first()
        .map(|&(t, refused)| story(ix, t, spent.get(t).copied(), refused));
    Finding {
        count: harmed.len() as u64,
        witness,
    }
}

/// Processes that ran at least one pool operation.
fn pool_procs(ix: &Index<'_>) -> HashSet<ProcId> {
    ix.op_kinds.keys().map(|(p, _)| *p).collect()
}

fn story(ix: &Index<'_>, token: &str, first: Option<usize>, refused: usize) -> Told {
    let mut s = ix.story();
    let h = ix.h;
    let pool = pool_procs(ix);
    for i in first.into_iter().chain([refused]) {
        let Ev::Redeemed { outcome, .. } = &h.records[i].ev else {
            continue;
        };
        let gen = match (outcome, ix.issued_refresh.get(token)) {
            (RedeemVerdict::Rotated, Some((_, g, _))) => format!(" (gen {})", g + 1),
            _ => String::new(),
        };
        let p = h.records[i].proc;
        let outside = if p != 0 && !ix.requester.contains_key(&i) && !pool.contains(&p) {
            " [outside the pool's lock: this process ran no pool operation]"
        } else {
            ""
        };
        let text = format!(
            "{} redeemed {} -> {}{gen}{outside}",
            ix.requester_of(i),
            tok(token),
            verdict_name(outcome)
        );
        s.push_as(i, text);
    }
    // The revocation: the one this re-presentation caused, else the earlier one it met.
    let family = ix.issued_refresh.get(token).map(|(f, ..)| *f);
    let revoked = h
        .records
        .iter()
        .enumerate()
        .skip(refused)
        .find(|(_, r)| matches!(&r.ev, Ev::FamilyRevoked { cause, .. } if cause == token))
        .or_else(|| {
            h.records[..refused].iter().enumerate().rev().find(
                |(_, r)| matches!(&r.ev, Ev::FamilyRevoked { family: f, .. } if Some(*f) == family),
            )
        });
    if let Some((i, r)) = revoked {
        if let Ev::FamilyRevoked { family, cause } = &r.ev {
            s.push(
                i,
                &format!("revoked family {family} (replay of {})", tok(cause)),
            );
        }
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn race(second_token: &str) -> History {
        // (the second token is the first: a replay)
        let r0 = tag(0x10);
        HistoryBuilder::new()
            .role(1, "gateway")
            .role(2, "cli")
            .issued(1, 0, &r0, &tag(0x20))
            .issued(2, 0, &tag(0x30), &tag(0x40))
            .init(&[oauth("aaaaaa", &r0)])
            .op(1, 1, OpKind::Select)
            .op(2, 4, OpKind::Select)
            .redeemed(&r0, RedeemVerdict::Rotated)
            .refresh(1, 1, "aaaaaa", &r0, RefreshOutcome::Rotated)
            .redeemed(second_token, RedeemVerdict::Reused)
            .revoked(1, second_token)
            .refresh(2, 4, "aaaaaa", second_token, RefreshOutcome::Refused)
            .build()
    }

    #[test]
    fn one_token_redeemed_twice_is_a_double_redeem() {
        let f = check(&race(&tag(0x10)));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("p1 (gateway) op 1 select: redeemed t:00000010 -> rotated (gen 1)"),
            "{w:?}"
        );
        assert!(
            w[1].contains("p2 (cli) op 4 select: redeemed t:00000010 -> refused as reused"),
            "{w:?}"
        );
        assert!(
            w[2].contains("issuer: revoked family 1 (replay of t:00000010)"),
            "{w:?}"
        );
    }

    #[test]
    fn two_redeems_of_different_tokens_are_not() {
        let h = HistoryBuilder::new()
            .redeemed(&tag(0x10), RedeemVerdict::Rotated)
            .redeemed(&tag(0x30), RedeemVerdict::Rotated)
            .build();
        assert_eq!(check(&h), Finding::none());
    }

    /// Issue #13 item 4 (b): the crash-mid-persist run of flock-txn: a killed process's token
    /// re-presented inside the grace period gets the same pair again. No harm: tolerated.
    #[test]
    fn a_repeat_accepted_inside_the_grace_period_is_tolerated_not_counted() {
        let h = HistoryBuilder::new()
            .role(1, "gateway")
            .role(2, "cli")
            .op(1, 1, OpKind::Select)
            .op(2, 1, OpKind::Select)
            .redeemed(&tag(1), RedeemVerdict::Rotated)
            .redeemed(&tag(1), RedeemVerdict::Grace)
            .refresh(2, 1, "aaaaaa", &tag(1), RefreshOutcome::Rotated)
            .redeemed(&tag(1), RedeemVerdict::Grace)
            .build();
        assert_eq!(check(&h), Finding::none());
        assert_eq!(grace_redeems(&h), 2);
    }

    /// Issue #13 item 4 (a): one spent token presented again and again is one harm (the family
    /// is revoked once); a token never issued is no double redeem.
    #[test]
    fn a_spent_token_refused_many_times_counts_once() {
        let h = HistoryBuilder::new()
            .issued(1, 0, &tag(1), &tag(0x21))
            .redeemed(&tag(1), RedeemVerdict::Rotated)
            .issued(1, 1, &tag(2), &tag(0x22))
            .redeemed(&tag(1), RedeemVerdict::Reused)
            .revoked(1, &tag(1))
            .redeemed(&tag(1), RedeemVerdict::Revoked)
            .redeemed(&tag(1), RedeemVerdict::Revoked)
            .redeemed(&tag(9), RedeemVerdict::Unknown)
            .redeemed(&tag(9), RedeemVerdict::Unknown)
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1);
        // No pool process reported these requests: the issuer is named.
        let w = f.witness.unwrap();
        assert!(
            w[0].contains("issuer: redeemed t:00000001 -> rotated (gen 1)"),
            "{w:?}"
        );
        assert!(
            w[1].contains("issuer: redeemed t:00000001 -> refused as reused"),
            "{w:?}"
        );
        assert!(
            w[2].contains("revoked family 1 (replay of t:00000001)"),
            "{w:?}"
        );
    }

    /// A spent token refused because an earlier reuse (of another token) revoked the family is
    /// the same harm, counted for that token too; the family's newest token, refused on its
    /// first presentation, is not a double redeem.
    #[test]
    fn a_spent_token_refused_after_another_reuse_counts_an_unspent_one_does_not() {
        let (r0, r1, r2) = (tag(1), tag(2), tag(3));
        let h = HistoryBuilder::new()
            .issued(1, 0, &r0, &tag(0x21))
            .redeemed(&r0, RedeemVerdict::Rotated)
            .issued(1, 1, &r1, &tag(0x22))
            .redeemed(&r1, RedeemVerdict::Rotated)
            .issued(1, 2, &r2, &tag(0x23))
            .redeemed(&r0, RedeemVerdict::Reused)
            .revoked(1, &r0)
            .redeemed(&r1, RedeemVerdict::Revoked)
            .redeemed(&r2, RedeemVerdict::Revoked)
            .redeemed(&r2, RedeemVerdict::Revoked)
            .build();
        assert_eq!(check(&h).count, 2);
    }

    /// Issue #13 item 4 (c): a tool outside the pool's lock (the external-cli run of flock-txn)
    /// colliding with a pool process is kept, and the witness names the outsider.
    #[test]
    fn a_collision_with_a_tool_outside_the_pool_names_the_outsider() {
        let r0 = tag(0x10);
        let h = HistoryBuilder::new()
            .role(1, "cli")
            .role(3, "external-cli")
            .issued(1, 0, &r0, &tag(0x20))
            .op(1, 2, OpKind::Select)
            .redeemed(&r0, RedeemVerdict::Rotated)
            .refresh(1, 2, "aaaaaa", &r0, RefreshOutcome::Rotated)
            .at(
                3,
                Ev::Redeemed {
                    refresh: r0.clone(),
                    outcome: RedeemVerdict::Reused,
                },
            )
            .revoked(1, &r0)
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert!(
            w[0].contains("p1 (cli) op 2 select: redeemed t:00000010 -> rotated (gen 1)"),
            "{w:?}"
        );
        assert!(
            w[1].contains("p3 (external-cli) redeemed t:00000010 -> refused as reused [outside the pool's lock"),
            "{w:?}"
        );
        assert!(!w[0].contains("outside"), "{w:?}");
    }
}

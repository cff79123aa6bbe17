//! `double_redeem`: the issuer saw one refresh token redeemed more than once.
//!
//! From the ledger: every `Redeemed` whose verdict is not `Unknown` is an attempt to redeem an
//! issued token. Count = attempts beyond the first, summed over tokens. The witness names the
//! first two requesters (matched to the pool's `Refresh` records), the verdicts, and the
//! family revocation that followed, if any.

use std::collections::HashMap;

use super::{tok, Finding, Index, Told};
use crate::history::{Ev, History, RedeemVerdict};

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

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut attempts: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new(); // tokens by their second attempt
    let mut count = 0;
    for (i, r) in ix.h.records.iter().enumerate() {
        if let Ev::Redeemed { refresh, outcome } = &r.ev {
            if *outcome == RedeemVerdict::Unknown {
                continue;
            }
            let a = attempts.entry(refresh.as_str()).or_default();
            a.push(i);
            if a.len() > 1 {
                count += 1;
                if a.len() == 2 {
                    order.push(refresh);
                }
            }
        }
    }
    let witness = order.first().map(|t| story(ix, t, &attempts[t]));
    Finding { count, witness }
}

fn story(ix: &Index<'_>, token: &str, attempts: &[usize]) -> Told {
    let mut s = ix.story();
    let h = ix.h;
    for &i in &attempts[..2] {
        let Ev::Redeemed { outcome, .. } = &h.records[i].ev else {
            continue;
        };
        let gen = match (outcome, ix.issued_refresh.get(token)) {
            (RedeemVerdict::Rotated | RedeemVerdict::Grace, Some((_, g, _))) => {
                format!(" (gen {})", g + 1)
            }
            _ => String::new(),
        };
        let text = format!(
            "{} redeemed {} -> {}{gen}",
            ix.requester_of(i),
            tok(token),
            verdict_name(outcome)
        );
        s.push_as(i, text);
    }
    // The revocation the replay caused, if any.
    let family = ix.issued_refresh.get(token).map(|(f, ..)| *f);
    let second = attempts[1];
    let revoked = h
        .records
        .iter()
        .enumerate()
        .skip(second)
        .find(|(_, r)| match &r.ev {
            Ev::FamilyRevoked { family: f, cause } => cause == token || Some(*f) == family,
            _ => false,
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
        assert_eq!(check(&race(&tag(0x30))), Finding::none());
    }

    #[test]
    fn extra_attempts_are_summed_and_unknown_tokens_do_not_count() {
        let h = HistoryBuilder::new()
            .redeemed(&tag(1), RedeemVerdict::Rotated)
            .redeemed(&tag(1), RedeemVerdict::Grace)
            .redeemed(&tag(1), RedeemVerdict::Reused)
            .redeemed(&tag(2), RedeemVerdict::Unknown)
            .redeemed(&tag(2), RedeemVerdict::Unknown)
            .build();
        let f = check(&h);
        assert_eq!(f.count, 2);
        // No pool process reported these requests: the issuer is named.
        assert!(f.witness.unwrap()[1].contains("issuer: redeemed t:00000001 -> grace"));
    }
}

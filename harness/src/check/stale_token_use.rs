//! `stale_token_use`: an API call used an access token that was already rotated, revoked or
//! expired (or that the issuer never issued).
//!
//! Every ledger `Used` with verdict `Expired`, `Revoked` or `Unknown` counts (`Accepted` and
//! `RateLimited` are fine). The witness shows why the token was stale: the rotation that
//! superseded it, the family revocation, or its issue with its expiry.

use super::{tok, Finding, Index, Told};
use crate::history::{Ev, History, RedeemVerdict, UseVerdict};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut count = 0;
    let mut witness = None;
    for (i, r) in ix.h.records.iter().enumerate() {
        let Ev::Used {
            credential,
            outcome,
        } = &r.ev
        else {
            continue;
        };
        let verdict = match outcome {
            UseVerdict::Expired => "expired",
            UseVerdict::Revoked => "revoked",
            UseVerdict::Unknown => "unknown to the issuer",
            UseVerdict::Accepted | UseVerdict::RateLimited => continue,
        };
        count += 1;
        if witness.is_none() {
            witness = Some(story(ix, i, credential, verdict));
        }
    }
    Finding { count, witness }
}

fn story(ix: &Index<'_>, use_rec: usize, credential: &str, verdict: &str) -> Told {
    let h = ix.h;
    let mut s = ix.story();
    let before = &h.records[..use_rec];
    let what = match ix.issued_access.get(credential) {
        Some(&(family, gen, issued)) => {
            if let Ev::Issued { expires_at_ms, .. } = &h.records[issued].ev {
                let text = format!(
                    "issued access {} (family {family} gen {gen}, expires_at_ms {expires_at_ms})",
                    tok(credential)
                );
                s.push(issued, &text);
            }
            // The rotation that superseded it: its pair's refresh token redeemed.
            let refresh = ix
                .issued_refresh
                .iter()
                .find(|(_, &(f, g, _))| f == family && g == gen)
                .map(|(r, _)| *r);
            let rotated = before.iter().enumerate().find(|(_, r)| {
                matches!(&r.ev, Ev::Redeemed { refresh: t, outcome: RedeemVerdict::Rotated } if Some(t.as_str()) == refresh)
            });
            if let (Some((j, _)), Some(rt)) = (rotated, refresh) {
                let text = format!(
                    "{} redeemed {} -> rotated (gen {})",
                    ix.requester_of(j),
                    tok(rt),
                    gen + 1
                );
                s.push_as(j, text);
            }
            let revoked = before.iter().enumerate().rev().find(
                |(_, r)| matches!(&r.ev, Ev::FamilyRevoked { family: f, .. } if *f == family),
            );
            if let Some((j, r)) = revoked {
                if let Ev::FamilyRevoked { cause, .. } = &r.ev {
                    s.push(
                        j,
                        &format!("revoked family {family} (replay of {})", tok(cause)),
                    );
                }
            }
            format!("(family {family} gen {gen})")
        }
        None => "(never issued)".to_string(),
    };
    s.push(
        use_rec,
        &format!("API call with {} {what} -> {verdict}", tok(credential)),
    );
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn rotated_then_used(verdict: UseVerdict) -> History {
        let (r0, a0) = (tag(0x10), tag(0x20));
        HistoryBuilder::new()
            .role(1, "gateway")
            .issued(1, 0, &r0, &a0)
            .op(1, 1, OpKind::Select)
            .redeemed(&r0, RedeemVerdict::Rotated)
            .refresh(1, 1, "aaaaaa", &r0, RefreshOutcome::Rotated)
            .issued(1, 1, &tag(0x11), &tag(0x21))
            .used(&a0, verdict)
            .build()
    }

    #[test]
    fn using_a_rotated_access_token_is_stale() {
        for v in [
            UseVerdict::Expired,
            UseVerdict::Revoked,
            UseVerdict::Unknown,
        ] {
            let f = check(&rotated_then_used(v));
            assert_eq!(f.count, 1);
            let w = f.witness.unwrap();
            assert_eq!(w.len(), 3, "{w:?}");
            assert!(w[0].contains("issuer: issued access t:00000020 (family 1 gen 0"));
            assert!(
                w[1].contains("p1 (gateway) op 1 select: redeemed t:00000010 -> rotated (gen 1)")
            );
            assert!(w[2].contains("issuer: API call with t:00000020 (family 1 gen 0) -> "));
        }
    }

    #[test]
    fn accepted_and_rate_limited_uses_are_fine() {
        for v in [UseVerdict::Accepted, UseVerdict::RateLimited] {
            assert_eq!(check(&rotated_then_used(v)), Finding::none());
        }
    }
}

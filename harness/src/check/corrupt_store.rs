//! `corrupt_store`: the final store does not parse or fails the schema (or is gone), or a
//! machine crash left it so.
//!
//! 1 when the harness's `FinalStore` is `Corrupt` or `Missing`, plus 1 for each machine crash
//! ([`Ev::Crash`]) after which the store came back `Corrupt` or `Missing` (whatever the
//! restarted processes did next: a crash-safe store never needs repairing). A history without
//! a `FinalStore` and without a crash (the harness never got to look) is not judged: 0.

use pool_core::world::Event;

use super::{scrub, short, Finding, Index};
use crate::history::{Ev, FinalStore, History};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut looks: Vec<(usize, &str, &FinalStore)> = ix
        .crashes
        .iter()
        .filter_map(|&c| match &ix.h.records[c].ev {
            Ev::Crash { hash, outcome } => Some((c, hash.as_str(), outcome)),
            _ => None,
        })
        .collect();
    looks.extend(final_store(ix.h));
    let mut count = 0;
    let mut witness = None;
    for (i, hash, outcome) in looks {
        let why = match outcome {
            FinalStore::Parsed { .. } => continue,
            FinalStore::Missing => "the store file is missing".to_string(),
            FinalStore::Corrupt { detail } => {
                format!("store {} does not parse ({})", short(hash), scrub(detail))
            }
        };
        count += 1;
        if witness.is_some() {
            continue;
        }
        let t = ix.h.records[i].t_ns;
        let mut s = ix.story();
        let last = ix.writes.iter().rposition(|w| w.t_ns <= t);
        if let Some(last) = last {
            ix.write_step(&mut s, last, "the last completed write");
        }
        // A write under way after it (begun, never completed: its writer died).
        let since = last.map_or(0, |l| ix.writes[l].t_ns);
        if let Some(p) = ix
            .pending
            .iter()
            .rev()
            .find(|p| p.begin_ns > since && p.begin_ns < t)
        {
            if let Ev::Pool {
                event: Event::WriteBegin { op, .. },
            } = &ix.h.records[p.rec].ev
            {
                let text = format!("began writing store {} (never completed)", short(p.hash));
                ix.pool_step(&mut s, p.rec, *op, &text);
            }
        }
        let when = match ix.h.records[i].ev {
            Ev::Crash { .. } => "machine crash: after it",
            _ => "final check:",
        };
        s.push_as(i, format!("{when} {why}"));
        witness = Some(s.finish());
    }
    Finding { count, witness }
}

/// The last `FinalStore` record: its index, hash and outcome.
pub(crate) fn final_store(h: &History) -> Option<(usize, &str, &FinalStore)> {
    h.records
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, r)| match &r.ev {
            Ev::FinalStore { hash, outcome } => Some((i, hash.as_str(), outcome)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn run() -> HistoryBuilder {
        HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .write(1, 1, "h1", Some("h0"), &[e("aaaaaa")])
    }

    #[test]
    fn a_corrupt_or_missing_final_store_is_reported() {
        for h in [run().final_corrupt().build(), run().final_missing().build()] {
            let f = check(&h);
            assert_eq!(f.count, 1);
            let w = f.witness.unwrap();
            assert_eq!(w.len(), 2, "{w:?}");
            assert!(w[1].contains("final check: "));
        }
    }

    /// Issue #13 item 2: a final store as upstream writes it (float epoch seconds, a reset time
    /// in epoch ms, an ISO-8601 time, unknown fields) with an exhausted entry holding a spent
    /// refresh token is a store: not corrupt, and its dead credential is found.
    #[test]
    fn a_final_store_as_upstream_writes_it_is_judged_and_its_dead_credential_found() {
        let bytes = include_bytes!("../../../pool-core/tests/fixtures/upstream-88d1d620.json");
        let (r0, r1) = (
            pool_core::digest::tag("sk-ant-ort01-entry"),
            pool_core::digest::tag("sk-ant-ort01-next"),
        );
        let h = HistoryBuilder::new()
            .issued(1, 0, &r0, &tag(0x20))
            .redeemed(&r0, RedeemVerdict::Rotated)
            .issued(1, 1, &r1, &tag(0x21))
            .at(0, Ev::final_store(Some(bytes), "anthropic"))
            .build();
        let (_, _, outcome) = final_store(&h).unwrap();
        let FinalStore::Parsed { entries } = outcome else {
            panic!("not parsed: {outcome:?}");
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].status_at, Some(1_783_017_000_250));
        assert_eq!(check(&h), Finding::none());
        let dead = super::super::dead_credential::check(&h);
        // The exhausted entry holds the spent token; the other OAuth entry's token was never
        // issued by this run's issuer.
        assert_eq!(dead.count, 2, "{dead:?}");
        assert!(dead
            .witness
            .unwrap()
            .last()
            .unwrap()
            .contains("entry a1b2c3"));
    }

    #[test]
    fn a_parsed_final_store_is_not() {
        assert_eq!(
            check(&run().final_store(&[e("aaaaaa")]).build()),
            Finding::none()
        );
        assert_eq!(check(&run().build()), Finding::none());
    }
}

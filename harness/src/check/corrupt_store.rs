//! `corrupt_store`: the final store does not parse or fails the schema (or is gone).
//!
//! 1 when the harness's `FinalStore` is `Corrupt` or `Missing`, else 0. A history without a
//! `FinalStore` (the harness never got to look) is not judged here: 0.

use super::{scrub, short, Finding, Index};
use crate::history::{Ev, FinalStore, History};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let Some((i, hash, outcome)) = final_store(ix.h) else {
        return Finding::none();
    };
    let why = match outcome {
        FinalStore::Parsed { .. } => return Finding::none(),
        FinalStore::Missing => "the store file is missing".to_string(),
        FinalStore::Corrupt { detail } => {
            format!("store {} does not parse ({})", short(hash), scrub(detail))
        }
    };
    let mut s = ix.story();
    if let Some(last) = ix.writes.len().checked_sub(1) {
        ix.write_step(&mut s, last, "the last completed write");
    }
    s.push_as(i, format!("final check: {why}"));
    Finding {
        count: 1,
        witness: Some(s.finish()),
    }
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

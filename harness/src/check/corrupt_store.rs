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

    #[test]
    fn a_parsed_final_store_is_not() {
        assert_eq!(
            check(&run().final_store(&[e("aaaaaa")]).build()),
            Finding::none()
        );
        assert_eq!(check(&run().build()), Finding::none());
    }
}

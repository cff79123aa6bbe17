//! `torn_read`: a read returned bytes no writer ever completed (empty, half old/half new,
//! unparseable).
//!
//! A `Read` that did not parse, or that parsed to content whose hash no `Write` (the harness's
//! initial one included) ever produced, at any time in the run.

use std::collections::HashSet;

use pool_core::world::{Event, ReadOutcome};

use super::{scrub, short, Finding, Index};
use crate::history::{Ev, History};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let written: HashSet<&str> = ix.writes.iter().map(|w| w.hash).collect();
    let mut count = 0;
    let mut witness = None;
    for (i, r) in ix.h.records.iter().enumerate() {
        let Ev::Pool {
            event: Event::Read { op, hash, outcome },
        } = &r.ev
        else {
            continue;
        };
        let why = match outcome {
            ReadOutcome::Corrupt(detail) => format!("does not parse ({})", scrub(detail)),
            ReadOutcome::Parsed if !written.contains(hash.as_str()) => {
                "parses, but no write ever produced these bytes".to_string()
            }
            _ => continue,
        };
        count += 1;
        if witness.is_some() {
            continue;
        }
        let mut s = ix.story();
        // What the file held last, and the write that was under way.
        if let Some(prev) = ix.writes.iter().rposition(|w| w.t_ns <= r.t_ns) {
            ix.write_step(&mut s, prev, "the last completed write");
        }
        ix.pool_step(
            &mut s,
            i,
            *op,
            &format!("read store {}: {why}", short(hash)),
        );
        if let Some(next) = ix.writes.iter().position(|w| w.t_ns > r.t_ns) {
            ix.write_step(&mut s, next, "the next completed write");
        }
        witness = Some(s.finish());
    }
    Finding { count, witness }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn base() -> HistoryBuilder {
        HistoryBuilder::new()
            .role(1, "cli")
            .role(2, "gateway")
            .init(&[e("aaaaaa")])
            .op(2, 1, OpKind::AddEntry)
    }

    #[test]
    fn an_unparseable_read_is_torn() {
        let h = base()
            .op(1, 1, OpKind::Select)
            .read_corrupt(1, 1, "", "the file is empty")
            .write(2, 1, "h1", Some("h0"), &[e("aaaaaa"), e("bbbbbb")])
            .build();
        let f = check(&h);
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[1].contains(
            "p1 (cli) op 1 select: read store (empty): does not parse (the file is empty)"
        ));
        assert!(w[2].contains("p2 (gateway) op 1 add_entry: wrote store h1"));
    }

    #[test]
    fn a_read_of_bytes_nobody_wrote_is_torn() {
        let h = base()
            .read(1, 1, "h7")
            .write(2, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .build();
        assert_eq!(check(&h).count, 1);
    }

    #[test]
    fn reads_of_written_versions_are_not_torn() {
        // The same reads, of the initial store and of a write recorded just after the read.
        let h = base()
            .read(1, 1, "h0")
            .read(1, 1, "h1")
            .write(2, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .build();
        let f = check(&h);
        assert_eq!(f, Finding::none());
    }
}

//! `torn_read`: a read returned bytes no writer ever completed (empty, half old/half new,
//! unparseable), of the store or of an external credential file.
//!
//! A `Read` that did not parse, or that parsed to content whose hash no write of that file
//! (the harness's initial ones included) ever began or completed, at any time in the run. A
//! begun write counts: a process killed between its rename and its completion record left
//! bytes that a write did produce. So does a machine crash: a read after it of what it left is
//! not torn (a store the crash left corrupt is `corrupt_store`'s). A read that parses is not
//! judged once a write of unknown content ([`UNKNOWN_CONTENT`]: the syscall observer could not
//! read what a copy put into the file) of that file has begun before it: its bytes may be that
//! write's. A read that does not parse is judged all the same.

use pool_core::world::{Event, ReadOutcome};

use super::{scrub, short, Finding, Index};
use crate::history::{Ev, History, UNKNOWN_CONTENT};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let mut count = 0;
    let mut witness = None;
    for (i, r) in ix.h.records.iter().enumerate() {
        let Ev::Pool {
            event:
                Event::Read {
                    op,
                    hash,
                    outcome,
                    file,
                },
        } = &r.ev
        else {
            continue;
        };
        let left_by_crash = file.is_none()
            && ix.crashes.iter().any(|&c| {
                c < i && matches!(&ix.h.records[c].ev, Ev::Crash { hash: h, .. } if h == hash)
            });
        let why = match outcome {
            _ if left_by_crash => continue,
            ReadOutcome::Corrupt(detail) => format!("does not parse ({})", scrub(detail)),
            ReadOutcome::Parsed if !ix.produced.contains(&(file.as_deref(), hash.as_str())) => {
                if unknown_write_before(ix, i, file.as_deref()) {
                    continue;
                }
                "parses, but no write ever produced these bytes".to_string()
            }
            _ => continue,
        };
        count += 1;
        if witness.is_some() {
            continue;
        }
        let mut s = ix.story();
        let store = file.is_none();
        // What the file held last, and the write that was under way.
        if store {
            if let Some(prev) = ix.writes.iter().rposition(|w| w.t_ns <= r.t_ns) {
                ix.write_step(&mut s, prev, "the last completed write");
            }
        }
        let what = file.as_deref().unwrap_or("store");
        ix.pool_step(
            &mut s,
            i,
            *op,
            &format!("read {what} {}: {why}", short(hash)),
        );
        if store {
            if let Some(next) = ix.writes.iter().position(|w| w.t_ns > r.t_ns) {
                ix.write_step(&mut s, next, "the next completed write");
            }
        }
        witness = Some(s.finish());
    }
    Finding { count, witness }
}

/// Whether a write of unknown content of `file` began before record `i` and no write of known
/// content of that file completed between the two (after which the file held known bytes
/// again, and a read of bytes no write produced is torn as ever).
fn unknown_write_before(ix: &Index<'_>, i: usize, file: Option<&str>) -> bool {
    for r in ix.h.records[..i].iter().rev() {
        match &r.ev {
            Ev::Pool {
                event: Event::WriteBegin { hash, file: f, .. },
            } if hash == UNKNOWN_CONTENT && f.as_deref() == file => return true,
            Ev::Pool {
                event: Event::Write { hash, file: f, .. },
            } if hash != UNKNOWN_CONTENT && f.as_deref() == file => return false,
            _ => {}
        }
    }
    false
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

    /// A writer killed between its rename and its completion record: its `write_begin` names
    /// the bytes, so a read of them is not torn (item 10 of issue 13).
    #[test]
    fn a_read_of_a_begun_write_that_never_completed_is_not_torn() {
        let h = base().write_begin(2, 1, "h1").read(1, 1, "h1").build();
        assert_eq!(check(&h), Finding::none());
    }

    /// An observed copy from a pipe into the store: its content is unknown, so a read after
    /// it began may be of its bytes; a read before it, or one that does not parse, is torn.
    #[test]
    fn a_parsed_read_after_a_write_of_unknown_content_began_is_not_judged() {
        let h = base()
            .read(1, 1, "h7")
            .write_begin(2, 1, UNKNOWN_CONTENT)
            .read(1, 1, "h8")
            .read_corrupt(1, 1, "h9", "EOF")
            .build();
        let f = check(&h);
        assert_eq!(f.count, 2, "{f:?}");
        // Once a write of known content has completed after it, the file holds known bytes
        // again: a later read of bytes no write produced is torn as ever.
        let h = base()
            .write_begin(2, 1, UNKNOWN_CONTENT)
            .read(1, 1, "h8")
            .write(2, 1, "h1", Some("h0"), &[e("aaaaaa")])
            .read(1, 1, "h9")
            .build();
        assert_eq!(check(&h).count, 1, "h9 only");
    }

    #[test]
    fn external_files_are_judged_by_their_own_writes() {
        let torn = base()
            .external_write(0, 0, "claude_code", "x0")
            .external_read(1, 1, "claude_code", "x0", ReadOutcome::Parsed)
            .external_read(
                1,
                1,
                "claude_code",
                "x9",
                ReadOutcome::Corrupt("EOF".into()),
            )
            // the store's hash is not the external file's
            .external_read(1, 1, "claude_code", "h0", ReadOutcome::Parsed)
            .build();
        let f = check(&torn);
        assert_eq!(f.count, 2, "{f:?}");
        let w = f.witness.unwrap();
        assert!(
            w[0].contains("read claude_code x9: does not parse (EOF)"),
            "{w:?}"
        );
    }
}

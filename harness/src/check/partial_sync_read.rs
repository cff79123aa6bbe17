//! `partial_sync_read`: a read saw an intermediate state of another process's multi-write
//! operation (race 3, #8040 as filed).
//!
//! A `Read` by process p whose content hash is that of a `Write` by another process q which
//! was not the last write of q's pass (q wrote again later in it), and whose entries differ
//! both from those of that last write and from those of every settled version that may have
//! been on disk before the pass's first write ([`Index::predecessors`]). A pass is an
//! operation's writes, or q's writes outside any operation (op 0) between two of its
//! operations: a background sync loop is one pass, two background saves with an operation
//! between them are two. Judged by entry
//! state, not bytes: two writes of one operation that differ only in a timestamp
//! (`updated_at`) leave a reader of the first with the operation's final entries, and a first
//! write that changed nothing (a pool that saves after a sync pass that found nothing to
//! sync) leaves it with the entries from before the operation. Neither is partial: the
//! reader saw all of the operation or none of it, unless the version before the operation was
//! itself part of another one (two processes re-syncing the same entry one after the other:
//! the second's first write repeats the first's intermediate state, which is partial). When
//! the version before the operation is unknown (a write of unknown content, a crash), it
//! settles nothing.

use std::collections::HashMap;

use pool_core::world::{Event, ReadOutcome};

use super::{short, Finding, Index};
use crate::history::{Ev, History, ProcId};

pub fn check(h: &History) -> Finding {
    find(&Index::new(h))
}

pub(crate) fn find(ix: &Index<'_>) -> Finding {
    let passes = Passes::of(ix);
    let mut count = 0;
    let mut witness = None;
    for (i, r) in ix.h.records.iter().enumerate() {
        let Ev::Pool {
            event:
                Event::Read {
                    op,
                    hash,
                    outcome: ReadOutcome::Parsed,
                    file: None,
                },
        } = &r.ev
        else {
            continue;
        };
        let Some(k) = ix.write_of(hash, r.t_ns) else {
            continue;
        };
        let w = &ix.writes[k];
        if w.proc == r.proc {
            continue;
        }
        if settled(ix, &passes, k, ix.writes.len()) {
            continue;
        }
        let siblings = passes.siblings(k);
        let last = *siblings.last().expect("the write itself");
        count += 1;
        if witness.is_none() {
            let nth = siblings.iter().position(|&x| x == k).unwrap_or(0) + 1;
            let mut s = ix.story();
            ix.write_step(
                &mut s,
                k,
                &format!("write {nth} of {} of this op", siblings.len()),
            );
            let text = format!(
                "read store {}: an intermediate state of {} op {}",
                short(hash),
                ix.h.who(w.proc),
                w.op
            );
            ix.pool_step(&mut s, i, *op, &text);
            ix.write_step(&mut s, last, "the op's final write");
            witness = Some(s.finish());
        }
    }
    Finding { count, witness }
}

/// The writes of each pass, in order. A pass is an operation's writes, or a process's writes
/// outside any operation (op 0: a background save, a loop after the reply) between two of its
/// operations: a background sync loop is a pass as much as a select's, and two background
/// saves with an operation between them are two.
struct Passes {
    of: HashMap<(ProcId, u64, usize), Vec<usize>>,
    key: Vec<(ProcId, u64, usize)>,
}

impl Passes {
    fn of(ix: &Index<'_>) -> Passes {
        // Per process, the records at which its operations began, in order.
        let mut begins: HashMap<ProcId, Vec<usize>> = HashMap::new();
        for (i, r) in ix.h.records.iter().enumerate() {
            if let Ev::Pool {
                event: Event::OpBegin { .. },
            } = &r.ev
            {
                begins.entry(r.proc).or_default().push(i);
            }
        }
        let key: Vec<_> = ix
            .writes
            .iter()
            .map(|w| {
                let burst = match w.op {
                    0 => begins
                        .get(&w.proc)
                        .map_or(0, |b| b.partition_point(|&i| i < w.rec)),
                    _ => 0,
                };
                (w.proc, w.op, burst)
            })
            .collect();
        let mut of: HashMap<_, Vec<usize>> = HashMap::new();
        for (k, g) in key.iter().enumerate() {
            of.entry(*g).or_default().push(k);
        }
        Passes { of, key }
    }

    fn siblings(&self, k: usize) -> &[usize] {
        &self.of[&self.key[k]]
    }
}

/// Whether write `k`'s entries are a settled state, not part of a pass: `k` is its pass's
/// last write, or has that write's entries, or has the entries of a settled version that may
/// have been on disk before its pass's first write (the pass had changed nothing yet).
/// Unknown versions before a pass settle nothing. `depth` bounds the walk back.
fn settled(ix: &Index<'_>, passes: &Passes, k: usize, depth: usize) -> bool {
    let w = &ix.writes[k];
    let siblings = passes.siblings(k);
    let last = *siblings.last().expect("the write itself");
    if last == k || w.entries == ix.writes[last].entries {
        return true;
    }
    if depth == 0 {
        return false;
    }
    ix.predecessors(siblings[0]).is_some_and(|before| {
        before
            .iter()
            .any(|&p| ix.writes[p].entries == w.entries && settled(ix, passes, p, depth - 1))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn two_write_op(read_of: &str) -> History {
        HistoryBuilder::new()
            .role(1, "gateway")
            .role(2, "cli")
            .init(&[exhausted("aaaaaa", 5), exhausted("bbbbbb", 5)])
            .op(1, 3, OpKind::Select)
            .write(
                1,
                3,
                "h1",
                Some("h0"),
                &[e("aaaaaa"), exhausted("bbbbbb", 5)],
            )
            .op(2, 1, OpKind::Select)
            .read(2, 1, read_of)
            .write(1, 3, "h2", Some("h1"), &[e("aaaaaa"), e("bbbbbb")])
            .build()
    }

    #[test]
    fn a_read_between_the_writes_of_one_op_is_partial() {
        // The read lands between p1's two writes of one select pass.
        let f = check(&two_write_op("h1"));
        assert_eq!(f.count, 1);
        let w = f.witness.unwrap();
        assert_eq!(w.len(), 3);
        assert!(w[0].contains(
            "p1 (gateway) op 3 select: wrote store h1 (based on h0), write 1 of 2 of this op"
        ));
        assert!(w[1].contains(
            "p2 (cli) op 1 select: read store h1: an intermediate state of p1 (gateway) op 3"
        ));
        assert!(w[2].contains("wrote store h2"));
    }

    #[test]
    fn a_read_of_the_final_write_is_not_partial() {
        // Same shape; the read's bytes are those of the op's final write (recorded just after).
        assert_eq!(check(&two_write_op("h2")), Finding::none());
        assert_eq!(check(&two_write_op("h0")), Finding::none());
    }

    /// A first write that changed nothing (a save after a sync pass that found nothing), read
    /// by another process, shows it the entries from before the op: none of the op, not part.
    /// The first write's bytes may even be the initial store's, byte for byte.
    #[test]
    fn a_read_of_a_write_that_changed_nothing_yet_is_not_partial() {
        let h = |first: &str| {
            HistoryBuilder::new()
                .role(1, "gateway")
                .role(2, "cli")
                .init(&[exhausted("aaaaaa", 5), exhausted("bbbbbb", 5)])
                .op(1, 3, OpKind::Select)
                .read(1, 3, "h0")
                .write(
                    1,
                    3,
                    first,
                    Some("h0"),
                    &[exhausted("aaaaaa", 5), exhausted("bbbbbb", 5)],
                )
                .op(2, 1, OpKind::Select)
                .read(2, 1, first)
                .write(1, 3, "h2", Some(first), &[e("aaaaaa"), e("bbbbbb")])
                .build()
        };
        assert_eq!(check(&h("h1")), Finding::none(), "new bytes, same entries");
        assert_eq!(check(&h("h0")), Finding::none(), "the same bytes again");
    }

    /// Two processes re-sync the same entry one after the other (no lock between them): the
    /// second's first write repeats the first's intermediate state. Its entries equal the
    /// version before its op, but that version was itself part of an op: still partial.
    #[test]
    fn a_repeat_of_another_ops_intermediate_state_is_still_partial() {
        let half = [e("aaaaaa"), exhausted("bbbbbb", 5)];
        let h = HistoryBuilder::new()
            .role(1, "gateway")
            .role(2, "gateway")
            .role(3, "cli")
            .init(&[exhausted("aaaaaa", 5), exhausted("bbbbbb", 5)])
            .op(2, 1, OpKind::Select)
            .write(2, 1, "h1", Some("h0"), &half)
            .op(1, 1, OpKind::Select)
            .write(1, 1, "h2", Some("h1"), &half)
            .op(3, 1, OpKind::Select)
            .read(3, 1, "h2")
            .write(2, 1, "h3", Some("h1"), &[e("aaaaaa"), e("bbbbbb")])
            .write(1, 1, "h4", Some("h2"), &[e("aaaaaa"), e("bbbbbb")])
            .build();
        assert_eq!(check(&h).count, 1);
    }

    /// Writes outside any operation (op 0) with one of the writer's operations between them
    /// are two passes (background saves after two replies): a read of the first is of a whole
    /// version. Without an operation between them they are one pass (a background sync loop),
    /// and a read of its first write is partial.
    #[test]
    fn background_writes_are_one_pass_until_an_operation_comes_between() {
        let h = |op_between: bool| {
            let b = HistoryBuilder::new()
                .role(1, "cli")
                .role(2, "cli")
                .init(&[e("aaaaaa"), e("bbbbbb")])
                .write(1, 0, "h1", None, &[exhausted("aaaaaa", 5), e("bbbbbb")])
                .op(2, 1, OpKind::LoadPool)
                .read(2, 1, "h1");
            let b = if op_between {
                b.op(1, 7, OpKind::Select).read(1, 7, "h1")
            } else {
                b
            };
            b.write(
                1,
                0,
                "h2",
                None,
                &[exhausted("aaaaaa", 5), exhausted("bbbbbb", 5)],
            )
            .build()
        };
        assert_eq!(check(&h(true)), Finding::none());
        assert_eq!(check(&h(false)).count, 1);
    }

    #[test]
    fn a_read_of_a_write_whose_entries_are_already_final_is_not_partial() {
        let h = HistoryBuilder::new()
            .init(&[exhausted("aaaaaa", 5)])
            .op(1, 3, OpKind::Select)
            .write(1, 3, "h1", Some("h0"), &[e("aaaaaa")])
            .read(2, 1, "h1")
            .write(1, 3, "h2", Some("h1"), &[e("aaaaaa")])
            .build();
        assert_eq!(check(&h), Finding::none());
    }

    #[test]
    fn a_process_reading_its_own_intermediate_write_is_not_partial() {
        let h = HistoryBuilder::new()
            .init(&[e("aaaaaa")])
            .write(1, 3, "h1", Some("h0"), &[e("aaaaaa")])
            .read(1, 3, "h1")
            .write(1, 3, "h2", Some("h1"), &[e("aaaaaa")])
            .build();
        assert_eq!(check(&h).count, 0);
    }
}

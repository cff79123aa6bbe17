//! Hand-made histories for the checker tests.

use pool_core::store::Status;
pub use pool_core::world::{EntrySummary, Event, OpKind, ReadOutcome, RefreshOutcome};

use crate::history::{Ev, History, ProcId, Record};
pub use crate::history::{FinalStore, RedeemVerdict, UseVerdict};

/// Builds a history one event at a time, 1 ms apart, starting at 1 s.
pub struct HistoryBuilder {
    t: u64,
    records: Vec<Record>,
}

impl HistoryBuilder {
    pub fn new() -> HistoryBuilder {
        HistoryBuilder {
            t: 1_000_000_000,
            records: Vec::new(),
        }
    }

    pub fn at(mut self, proc: ProcId, ev: Ev) -> Self {
        self.t += 1_000_000;
        self.records.push(Record {
            t_ns: self.t,
            proc,
            ev,
        });
        self
    }

    fn pool(self, proc: ProcId, event: Event) -> Self {
        self.at(proc, Ev::Pool { event })
    }

    pub fn role(self, proc: ProcId, role: &str) -> Self {
        self.at(proc, Ev::ProcStart { role: role.into() })
    }

    /// The initial store, as the harness records it: proc 0, op 0, hash `h0`, no base.
    pub fn init(self, entries: &[EntrySummary]) -> Self {
        self.write(0, 0, "h0", None, entries)
    }

    pub fn op(self, proc: ProcId, op: u64, kind: OpKind) -> Self {
        self.pool(proc, Event::OpBegin { op, kind })
    }

    /// A store write as pool-core records it: its `write_begin` (1 ms before; none for the
    /// harness's proc 0), then its completion.
    pub fn write(
        self,
        proc: ProcId,
        op: u64,
        hash: &str,
        base: Option<&str>,
        entries: &[EntrySummary],
    ) -> Self {
        let b = if proc == 0 {
            self
        } else {
            self.write_begin(proc, op, hash)
        };
        b.write_done(proc, op, hash, base, entries)
    }

    /// Only the completion of a store write (a subject that sends no `write_begin`).
    pub fn write_done(
        self,
        proc: ProcId,
        op: u64,
        hash: &str,
        base: Option<&str>,
        entries: &[EntrySummary],
    ) -> Self {
        self.pool(
            proc,
            Event::Write {
                op,
                hash: hash.into(),
                base: base.map(Into::into),
                entries: entries.to_vec(),
                file: None,
            },
        )
    }

    /// The beginning of a store write (`write_begin`): recorded before its content can land.
    pub fn write_begin(self, proc: ProcId, op: u64, hash: &str) -> Self {
        self.pool(
            proc,
            Event::WriteBegin {
                op,
                hash: hash.into(),
                file: None,
            },
        )
    }

    /// A write of an external credential file (begun and completed at once).
    pub fn external_write(self, proc: ProcId, op: u64, file: &str, hash: &str) -> Self {
        self.pool(
            proc,
            Event::Write {
                op,
                hash: hash.into(),
                base: None,
                entries: vec![],
                file: Some(file.into()),
            },
        )
    }

    /// A read of an external credential file.
    pub fn external_read(
        self,
        proc: ProcId,
        op: u64,
        file: &str,
        hash: &str,
        outcome: ReadOutcome,
    ) -> Self {
        self.pool(
            proc,
            Event::Read {
                op,
                hash: hash.into(),
                outcome,
                file: Some(file.into()),
            },
        )
    }

    pub fn read(self, proc: ProcId, op: u64, hash: &str) -> Self {
        self.pool(
            proc,
            Event::Read {
                op,
                hash: hash.into(),
                outcome: ReadOutcome::Parsed,
                file: None,
            },
        )
    }

    pub fn read_corrupt(self, proc: ProcId, op: u64, hash: &str, detail: &str) -> Self {
        self.pool(
            proc,
            Event::Read {
                op,
                hash: hash.into(),
                outcome: ReadOutcome::Corrupt(detail.into()),
                file: None,
            },
        )
    }

    pub fn refresh(
        self,
        proc: ProcId,
        op: u64,
        entry: &str,
        token: &str,
        outcome: RefreshOutcome,
    ) -> Self {
        self.pool(
            proc,
            Event::Refresh {
                op,
                entry: entry.into(),
                token: token.into(),
                outcome,
            },
        )
    }

    pub fn issued(self, family: u32, generation: u32, refresh: &str, access: &str) -> Self {
        self.at(
            0,
            Ev::Issued {
                family,
                generation,
                refresh: refresh.into(),
                access: access.into(),
                expires_at_ms: 0,
            },
        )
    }

    pub fn redeemed(self, refresh: &str, outcome: RedeemVerdict) -> Self {
        self.at(
            0,
            Ev::Redeemed {
                refresh: refresh.into(),
                outcome,
            },
        )
    }

    pub fn revoked(self, family: u32, cause: &str) -> Self {
        self.at(
            0,
            Ev::FamilyRevoked {
                family,
                cause: cause.into(),
            },
        )
    }

    pub fn used(self, credential: &str, outcome: UseVerdict) -> Self {
        self.at(
            0,
            Ev::Used {
                credential: credential.into(),
                outcome,
            },
        )
    }

    pub fn final_store(self, entries: &[EntrySummary]) -> Self {
        self.at(
            0,
            Ev::FinalStore {
                hash: "hf".into(),
                outcome: FinalStore::Parsed {
                    entries: entries.to_vec(),
                },
            },
        )
    }

    pub fn final_missing(self) -> Self {
        self.at(
            0,
            Ev::FinalStore {
                hash: String::new(),
                outcome: FinalStore::Missing,
            },
        )
    }

    pub fn final_corrupt(self) -> Self {
        self.at(
            0,
            Ev::FinalStore {
                hash: "hx".into(),
                outcome: FinalStore::Corrupt {
                    detail: "EOF while parsing".into(),
                },
            },
        )
    }

    pub fn build(self) -> History {
        History::from_records(self.records)
    }
}

/// A token tag, `t:` + 8 hex digits.
pub fn tag(n: u32) -> String {
    format!("t:{n:08x}")
}

/// An API-key entry in good standing.
pub fn e(id: &str) -> EntrySummary {
    EntrySummary {
        id: id.into(),
        status: Some(Status::Ok),
        status_at: None,
        refresh: None,
        access: Some(tag(0xa91)),
        priority: None,
        reset_at: None,
    }
}

/// An OAuth entry holding refresh tag `refresh`.
pub fn oauth(id: &str, refresh: &str) -> EntrySummary {
    EntrySummary {
        refresh: Some(refresh.into()),
        ..e(id)
    }
}

/// An entry benched (exhausted) at wall time `at`.
pub fn exhausted(id: &str, at: u64) -> EntrySummary {
    EntrySummary {
        status: Some(Status::Exhausted),
        status_at: Some(at),
        ..e(id)
    }
}

/// Whether `s` holds a run of 43 or more token characters (a whole OAuth token).
pub fn has_long_token(s: &str) -> bool {
    let mut run = 0;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            run += 1;
            if run >= 43 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// One history with every anomaly in it, from tags only; the final store is either parsed
/// (holding a dead credential) or corrupt (then `dead_credential` cannot be judged).
pub fn everything_goes_wrong(corrupt_final: bool) -> History {
    let r0 = tag(0x10);
    let r1 = tag(0x11);
    let a0 = tag(0x20);
    let b = HistoryBuilder::new()
        .role(1, "gateway")
        .role(2, "cli")
        .issued(1, 0, &r0, &a0)
        .init(&[oauth("aaaaaa", &r0), e("bbbbbb")])
        // p1 and p2 both load h0
        .op(1, 1, OpKind::Select)
        .read(1, 1, "h0")
        .op(2, 1, OpKind::Select)
        .read(2, 1, "h0")
        // p1 rotates R0 and writes twice in one op (persist=each)
        .redeemed(&r0, RedeemVerdict::Rotated)
        .issued(1, 1, &r1, &tag(0x21))
        .refresh(1, 1, "aaaaaa", &r0, RefreshOutcome::Rotated)
        .write(
            1,
            1,
            "h1",
            Some("h0"),
            &[oauth("aaaaaa", &r1), exhausted("bbbbbb", 5), e("cccccc")],
        )
        // p3 reads p1's half-synced state, and a torn one
        .read(3, 1, "h1")
        .read_corrupt(3, 2, "hz", "EOF while parsing a value at line 1 column 80")
        .write(
            1,
            1,
            "h2",
            Some("h1"),
            &[oauth("aaaaaa", &r1), e("bbbbbb"), e("cccccc")],
        )
        // p2 replays R0: reuse, family revoked
        .redeemed(&r0, RedeemVerdict::Reused)
        .revoked(1, &r0)
        .refresh(2, 1, "aaaaaa", &r0, RefreshOutcome::Refused)
        // p2's stale snapshot (h0) writes R0 back and drops cccccc
        .write(2, 1, "h3", Some("h0"), &[oauth("aaaaaa", &r0), e("bbbbbb")])
        .used(&a0, UseVerdict::Revoked);
    if corrupt_final {
        b.final_corrupt().build()
    } else {
        b.final_store(&[oauth("aaaaaa", &r0), e("bbbbbb")]).build()
    }
}

//! Histories: every event of a run, from every process and from the issuer's ledger, on one
//! monotonic clock. This is what the checkers judge; nothing else about a run reaches them.
//!
//! Each worker appends its records to its own JSON-lines file as it goes (so a killed worker
//! leaves a readable prefix); the issuer appends its ledger the same way; the parent merges
//! them by time. Secrets appear only as [`pool_core::digest::tag`]s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use pool_core::world::{EntrySummary, Event};
use serde::{Deserialize, Serialize};

/// The hash of a write whose content is unknown (`write_begin` only, never completed): the
/// syscall observer's for an in-place write that a copy from a source it could not read
/// (`splice` from a pipe) wrote into. No content hash is this (they are hex digits).
pub const UNKNOWN_CONTENT: &str = "unknown";

/// A process in a run: workers count from 1; 0 is the harness itself (setup and final check).
pub type ProcId = u32;

/// Nanoseconds on `CLOCK_MONOTONIC`, which every process on the machine shares.
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// One event at one time in one process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    pub t_ns: u64,
    pub proc: ProcId,
    #[serde(flatten)]
    pub ev: Ev,
}

/// Everything a history can hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Ev {
    /// What the pool code reported (op boundaries, store reads and writes, refreshes).
    Pool { event: Event },
    /// Ledger: the issuer minted a token pair, generation `generation` of family `family`
    /// (generation 0 is the pair the run starts with).
    Issued {
        family: u32,
        generation: u32,
        refresh: String,
        access: String,
        expires_at_ms: u64,
    },
    /// Ledger: a refresh-grant request for `refresh`, and what the issuer did.
    Redeemed {
        refresh: String,
        outcome: RedeemVerdict,
    },
    /// Ledger: the issuer revoked a whole token family (RFC 9700 §4.14.2) because `cause` was
    /// presented again.
    FamilyRevoked { family: u32, cause: String },
    /// Ledger: the rules the issuer applies, recorded once before its first other record, so
    /// that a history alone says how long a redeemed refresh token is still honoured.
    IssuerRules { grace_ms: u64 },
    /// Harness: the pool settings the run gives every pool process (pool-core's config, a
    /// subject's hello), recorded once before the initial store, so that a history alone says
    /// how long a bench without a reset time lasts.
    PoolRules { cooldown_ms: u64 },
    /// Ledger: an API call with an access token or API key, and the verdict.
    Used {
        credential: String,
        outcome: UseVerdict,
    },
    /// Harness: a worker started with this role.
    ProcStart { role: String },
    /// Harness: the nemesis killed this worker (SIGKILL) at a pause point.
    Killed { point: String },
    /// A worker has waited over a second for a lock held by `holder` (a pid, where known).
    LockWait { path: String, holder: Option<u32> },
    /// Syscall observer: a `flock` or `fcntl` lock call on the file at `path` (inode `inode`):
    /// `op` is `exclusive`, `shared` or `unlock`; `outcome` is `requested` (the call began),
    /// `granted` or `refused` (it returned).
    Lock {
        path: String,
        inode: u64,
        op: String,
        outcome: String,
    },
    /// Syscall observer, self-check of an adapter: in operation `op` (a `op_kind` request; op 0
    /// and `between operations` for what came outside one) the subject's own reports and the
    /// observer disagreed. `reported_not_observed` and `observed_not_reported` list store reads
    /// and writes as `read HASH` / `write HASH` (`(missing)` for a missing file) and token
    /// requests as `refresh TAG OUTCOME`. About the adapter's reporting, not the pool: no
    /// checker reads it.
    SelfCheck {
        op: u64,
        op_kind: String,
        reported_not_observed: Vec<String>,
        observed_not_reported: Vec<String>,
    },
    /// Harness: a worker ended; `crashed` when it did not exit 0.
    ProcExit { status: String, crashed: bool },
    /// Harness: an external CLI wrote its own credentials file holding `refresh`.
    ExternalWrite { path: String, refresh: String },
    /// Harness: the store at the end of the run.
    FinalStore { hash: String, outcome: FinalStore },
    /// Harness: the whole machine crashed (power loss: what was not synced is gone, and every
    /// running process with it, each `killed` just before); `hash` and `outcome` are the store
    /// as the machine came back, before any process ran again.
    Crash { hash: String, outcome: FinalStore },
}

/// What the token endpoint did with one refresh request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedeemVerdict {
    /// First redemption: a new pair was issued.
    Rotated,
    /// A repeat within the reuse grace period: the same new pair was returned again.
    Grace,
    /// A repeat after the grace period: refused, and the family revoked.
    Reused,
    /// The family was already revoked: refused.
    Revoked,
    /// Never issued by this issuer: refused.
    Unknown,
}

/// What the resource API said of one credential.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UseVerdict {
    Accepted,
    RateLimited,
    Expired,
    Revoked,
    Unknown,
}

/// The final store as the harness found it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FinalStore {
    Parsed { entries: Vec<EntrySummary> },
    Missing,
    Corrupt { detail: String },
}

impl Ev {
    /// The `final_store` record of store bytes as a run left them (`None`: no file).
    pub fn final_store(bytes: Option<&[u8]>, provider: &str) -> Ev {
        let (hash, outcome) = store_state(bytes, provider);
        Ev::FinalStore { hash, outcome }
    }
}

/// The content hash and the judged state of store bytes (`None`: no file).
pub fn store_state(bytes: Option<&[u8]>, provider: &str) -> (String, FinalStore) {
    match bytes {
        None => (String::new(), FinalStore::Missing),
        Some(b) => (
            pool_core::digest::content_hash(b),
            match serde_json::from_slice::<pool_core::Store>(b) {
                Ok(s) => FinalStore::Parsed {
                    entries: s
                        .entries(provider)
                        .iter()
                        .map(pool_core::pool::summary)
                        .collect(),
                },
                Err(e) => FinalStore::Corrupt {
                    detail: e.to_string(),
                },
            },
        ),
    }
}

/// [`store_state`] of one provider's store versions, remembered by their bytes: a model
/// check judges the same few final stores over and over (a pure function of the bytes, so a
/// remembered state is the state). Keeps at most [`StoreStates::MAX`] versions (then starts
/// over).
#[derive(Debug)]
pub struct StoreStates {
    provider: String,
    memo: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (String, FinalStore)>>,
}

impl StoreStates {
    /// Versions remembered at most.
    pub const MAX: usize = 1024;

    pub fn new(provider: &str) -> StoreStates {
        StoreStates {
            provider: provider.to_string(),
            memo: Default::default(),
        }
    }

    /// [`store_state`] of `bytes` for this provider.
    pub fn state(&self, bytes: Option<&[u8]>) -> (String, FinalStore) {
        let Some(b) = bytes else {
            return store_state(None, &self.provider);
        };
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = memo.get(b) {
            return s.clone();
        }
        let s = store_state(Some(b), &self.provider);
        if memo.len() >= Self::MAX {
            memo.clear();
        }
        memo.insert(b.to_vec(), s.clone());
        s
    }
}

/// A whole run's history, sorted by time, with the role of each process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct History {
    pub roles: BTreeMap<ProcId, String>,
    pub records: Vec<Record>,
}

impl History {
    /// Merge records from any number of sources into one time-ordered history.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> History {
        let mut records: Vec<Record> = records.into_iter().collect();
        records.sort_by_key(|r| (r.t_ns, r.proc));
        let roles = records
            .iter()
            .filter_map(|r| match &r.ev {
                Ev::ProcStart { role } => Some((r.proc, role.clone())),
                _ => None,
            })
            .collect();
        History { roles, records }
    }

    /// How many pool operations began.
    pub fn operations(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| {
                matches!(
                    &r.ev,
                    Ev::Pool {
                        event: Event::OpBegin { .. }
                    }
                )
            })
            .count() as u64
    }

    /// The role of a process, for stories (`p3 (gateway)`).
    pub fn who(&self, proc: ProcId) -> String {
        match self.roles.get(&proc) {
            Some(role) => format!("p{proc} ({role})"),
            None if proc == 0 => "harness".to_string(),
            None => format!("p{proc}"),
        }
    }

    /// Time of a record relative to the first record, for stories (`+12.3ms`).
    pub fn at(&self, t_ns: u64) -> String {
        let t0 = self.records.first().map_or(t_ns, |r| r.t_ns);
        format!("+{:.1}ms", t_ns.saturating_sub(t0) as f64 / 1e6)
    }
}

/// Merge every `*.jsonl` record file of a run's log directory into one history.
pub fn read_logs(dir: &Path) -> Result<History, String> {
    let mut records = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            records.extend(read_jsonl(&path)?);
        }
    }
    Ok(History::from_records(records))
}

/// Read one JSON-lines record file. A torn last line (a killed writer) is skipped; any other
/// bad line is an error naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {} // torn tail of a killed writer
            Err(e) => {
                return Err(format!(
                    "{}:{}: bad history record: {e}",
                    path.display(),
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

//! The three small traits through which the pool touches the world: [`Os`], [`Issuer`] and
//! [`Clock`], plus the named [`Pause`] points and the [`Event`]s the pool reports.
//!
//! The pool never calls `std::fs`, `std::thread` or a clock itself. A real process plugs in
//! [`crate::real::RealOs`]; a model checker plugs in a simulated kernel, where every method
//! below is one step it can interleave. The methods are therefore syscall-sized: no method
//! does two things another process could observe separately.

use std::io;
use std::path::{Path, PathBuf};

/// What kind of lock [`Os::lock`] takes on its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// A lock local to this process (its threads exclude each other); the path is ignored.
    ProcessMutex,
    /// An exclusive BSD `flock` on the file at the path (created 0600 if absent).
    Flock,
    /// An exclusive POSIX record lock (`fcntl(F_SETLKW)`) on the whole file at the path.
    Fcntl,
}

/// The operating system as the pool sees it.
pub trait Os {
    /// An open file being written.
    type File;
    /// A held lock, given back to [`Os::unlock`].
    type Held;

    /// The whole content of the file, or `None` if it does not exist. Opens and closes its own
    /// descriptor (which, for POSIX record locks, is exactly what makes `fcntl` a pitfall).
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Open for writing, creating with mode 0600 and truncating to zero length (`O_TRUNC`).
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// A new, uniquely named 0600 file in the directory of `beside`, for a later rename.
    fn create_temp(&self, beside: &Path) -> io::Result<(Self::File, PathBuf)>;
    /// One `write(2)` of all of `bytes` at the end of what this handle wrote so far.
    fn write(&self, file: &mut Self::File, bytes: &[u8]) -> io::Result<()>;
    /// `fsync(2)` the file.
    fn sync(&self, file: &mut Self::File) -> io::Result<()>;
    /// Close the handle.
    fn close(&self, file: Self::File) -> io::Result<()>;
    /// `rename(2)`: atomically replace `to`'s directory entry.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `fsync(2)` the directory, making a rename durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Remove a file (used only to clean up a temp file after a failed write).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Take a lock, blocking until it is granted.
    fn lock(&self, kind: LockKind, path: &Path) -> io::Result<Self::Held>;
    /// Give a lock back.
    fn unlock(&self, held: Self::Held) -> io::Result<()>;
    /// The pool reached a named pause point: a driver may sleep, rendezvous, yield or kill here.
    fn pause(&self, point: Pause);
    /// The pool reports what it did and saw, for the history.
    fn record(&self, event: Event);
}

/// A refresh grant as the token endpoint returns it (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in_s: u64,
}

/// Why a refresh failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedeemError {
    /// The endpoint refused the token (HTTP 400, e.g. `invalid_grant`): terminal for that token.
    Refused { error: String },
    /// No answer (connection refused, timeout, 5xx): the token may still be good.
    Unavailable(String),
}

/// What the resource API said of a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UseOutcome {
    Accepted,
    /// 401: expired, revoked or unknown.
    Rejected,
    /// 429, with the time the limit resets, if the API said.
    RateLimited {
        reset_at_ms: Option<u64>,
    },
    Unavailable(String),
}

/// The OAuth provider: its token endpoint and the API that checks access tokens.
pub trait Issuer {
    /// `grant_type=refresh_token`: spend `refresh_token` for a new pair.
    fn redeem(&self, refresh_token: &str) -> Result<Grant, RedeemError>;
    /// Call the API with an access token or API key.
    fn use_credential(&self, credential: &str) -> UseOutcome;
}

/// Wall-clock time in Unix milliseconds.
pub trait Clock {
    fn now_ms(&self) -> u64;
}

/// Named places in the pool code where a driver may intervene (see [`Os::pause`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pause {
    /// An operation begins, before it takes any lock.
    OpStart,
    /// `load_pool` has read and parsed the store, before seeding.
    AfterLoad,
    /// `select`'s pass wrote the store and is about to go on to the next entry: the window in
    /// which a reader sees a half-synced list (race 3, #8040 as filed).
    BetweenPersists,
    /// A refresh is about to POST its refresh token.
    BeforeRedeem,
    /// The token endpoint answered; the result is not yet in the store.
    AfterRedeem,
    /// An in-place write has truncated the file and written some but not all chunks.
    MidWrite,
    /// The rename path wrote and fsynced the temp file; the rename is next.
    BeforeRename,
    /// The rename happened; the directory fsync is next.
    AfterRename,
}

impl Pause {
    pub const ALL: &'static [Pause] = &[
        Pause::OpStart,
        Pause::AfterLoad,
        Pause::BetweenPersists,
        Pause::BeforeRedeem,
        Pause::AfterRedeem,
        Pause::MidWrite,
        Pause::BeforeRename,
        Pause::AfterRename,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pause::OpStart => "op_start",
            Pause::AfterLoad => "after_load",
            Pause::BetweenPersists => "between_persists",
            Pause::BeforeRedeem => "before_redeem",
            Pause::AfterRedeem => "after_redeem",
            Pause::MidWrite => "mid_write",
            Pause::BeforeRename => "before_rename",
            Pause::AfterRename => "after_rename",
        }
    }

    pub fn from_name(s: &str) -> Option<Pause> {
        Pause::ALL.iter().copied().find(|p| p.name() == s)
    }
}

/// The pool operations, as named in histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    LoadPool,
    Select,
    MarkExhausted,
    AddEntry,
    Remove,
    ResetStatuses,
}

/// How a read of the store turned out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ReadOutcome {
    Parsed,
    Missing,
    /// The bytes did not parse as a store (empty, truncated, torn): the message says why.
    Corrupt(String),
}

/// What one entry looked like in a write: enough for the checkers, secrets only as tags.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EntrySummary {
    pub id: String,
    pub status: Option<crate::store::Status>,
    pub status_at: Option<u64>,
    /// Tag of the refresh token ([`crate::digest::tag`]).
    pub refresh: Option<String>,
    /// Tag of the access token or API key.
    pub access: Option<String>,
    /// The entry's `priority` (selection order; round robin renumbers it). Absent in
    /// histories written before it was reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// `last_error_reset_at`: when the cooldown ends, if the API said (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<u64>,
}

/// Which file a read or write is of: the store (`None`, the default) or an external
/// credential file, named by its entries' `source` (`claude_code`, `codex`).
pub type FileName = Option<String>;

/// What the pool reports through [`Os::record`]. Secrets appear only as tags.
///
/// A write is reported twice: [`Event::WriteBegin`] right before its bytes can first become
/// visible (before the `rename(2)`, or before the truncating open of an in-place write), and
/// [`Event::Write`] right after they all are. The two stamps bound the moment the new content
/// landed, so a judge can tell writes that are ordered from writes that overlap, and bytes
/// renamed into place by a process killed before its `Write` record are still known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "ev")]
pub enum Event {
    OpBegin {
        op: u64,
        kind: OpKind,
    },
    OpEnd {
        op: u64,
        ok: bool,
        error: Option<String>,
    },
    /// A read of the store file (or of an external credential file: `file`).
    Read {
        op: u64,
        hash: String,
        outcome: ReadOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: FileName,
    },
    /// A write is about to make `hash` visible: recorded before the rename (or the truncation),
    /// so its time is a lower bound of the moment the content landed.
    WriteBegin {
        op: u64,
        hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: FileName,
    },
    /// A completed write of the store. `base` is the content hash of the newest store version
    /// this pool's snapshot had absorbed (loaded, reloaded, merged, or written itself).
    /// External credential files (`file`) have no base and no entries.
    Write {
        op: u64,
        hash: String,
        base: Option<String>,
        entries: Vec<EntrySummary>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: FileName,
    },
    /// A refresh token was spent (`ok`) or refused; `adopted` marks a refresh skipped because
    /// a peer had already rotated the token.
    Refresh {
        op: u64,
        entry: String,
        token: String,
        outcome: RefreshOutcome,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshOutcome {
    Rotated,
    Adopted,
    Refused,
    Unavailable,
}

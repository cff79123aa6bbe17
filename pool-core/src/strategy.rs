//! The strategy space: lock x scope x persist x write x refresh, the named presets, and the
//! spec-string parser (`lock=flock,scope=op,persist=txn,write=rename,refresh=adopt`).
//!
//! A strategy is data: every preset is a point in this space, and the pool code branches on
//! the five dimensions only. Adding a value is one variant plus its name in [`dimension!`].
//!
//! The refresh dimension is a rule per provider, because upstream's token clients differ by
//! provider (its Codex refresh is serialized under the store lock, its Anthropic refresh is
//! not and retries a refused token at a second endpoint): `refresh=openai-codex:serial+blind/retry2`
//! is `serial` in the `openai-codex` pool and `blind` with the second-endpoint retry in every
//! other pool. See [`Refresh`].

use std::fmt;
use std::str::FromStr;

/// Declares one dimension: an enum, its spec names, `FromStr`, `Display` and `ALL`.
macro_rules! dimension {
    ($(#[$doc:meta])* $ty:ident, $key:literal, { $($(#[$vdoc:meta])* $var:ident = $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $ty { $($(#[$vdoc])* $var),+ }

        impl $ty {
            /// Every value of this dimension, in spec order.
            pub const ALL: &'static [$ty] = &[$($ty::$var),+];
            /// The key of this dimension in a spec string.
            pub const KEY: &'static str = $key;
            /// The spec name of this value.
            pub fn name(self) -> &'static str {
                match self { $($ty::$var => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.pad(self.name()) }
        }

        impl FromStr for $ty {
            type Err = SpecError;
            fn from_str(s: &str) -> Result<Self, SpecError> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| SpecError::BadValue {
                    key: $key,
                    value: s.to_string(),
                    allowed: $ty::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

dimension!(
    /// Which lock guards the store.
    Lock, "lock", {
        /// No lock at all.
        None = "none",
        /// A lock local to one process (threads of one process exclude each other; processes do not).
        Mutex = "mutex",
        /// An exclusive `flock` on a separate lock file that is never renamed or deleted.
        Flock = "flock",
        /// Pitfall: `flock` on the data file itself, which the rename path then replaces.
        FlockData = "flock-data",
        /// Pitfall: a POSIX record lock on the data file, dropped when the process closes any
        /// descriptor of that file (such as the one a re-read opens).
        Fcntl = "fcntl",
    }
);

dimension!(
    /// How much of the work the lock covers.
    Scope, "scope", {
        /// Each read and each write on its own.
        Io = "io",
        /// Writes only (a write's re-read included); reads take no lock.
        Write = "write",
        /// The whole operation, refresh included.
        Op = "op",
    }
);

dimension!(
    /// When and how changes reach the store.
    Persist, "persist", {
        /// Every change writes the snapshot (upstream at #8040: k+1 writes per `select`).
        Each = "each",
        /// One write per operation, at its end.
        Batched = "batched",
        /// Every change re-reads the store and merges by entry id: a newer binding cooldown on
        /// disk wins unless the token changed (upstream main's merge, as its design states it).
        Merge = "merge",
        /// Every change re-reads the store and adds only the ids on disk that the snapshot
        /// lacks; for ids it has, the snapshot wins (upstream main's `write_credential_pool`
        /// as its code does it at 88d1d620).
        AddMissing = "add-missing",
        /// The operation starts by re-reading the store into the snapshot and ends with one
        /// write: with `scope=op` and a cross-process lock, a transaction.
        Txn = "txn",
    }
);

dimension!(
    /// How bytes reach the store file.
    WritePath, "write", {
        /// Truncate the file, then several chunked writes (a reader can land in between).
        InPlace = "in-place",
        /// Temp file (0600) + fsync + rename + fsync of the directory.
        Rename = "rename",
        /// Pitfall: `rename` without the temp file's fsync (a crash after the rename may
        /// leave the new name on an empty or partial file).
        RenameNoFsync = "rename-nofsync",
        /// Pitfall: `rename` without the directory's fsync (a crash may bring the old file
        /// back after the write was reported done).
        RenameNoDirsync = "rename-nodirsync",
    }
);

dimension!(
    /// What a refresh does before it spends the refresh token (one part of a [`Rule`]).
    Mode, "refresh", {
        /// POST whatever refresh token the snapshot holds.
        Blind = "blind",
        /// Re-read first; if a peer already rotated the token, adopt it and skip the POST.
        /// A terminal refusal with no newer token on disk marks the entry `dead`.
        Adopt = "adopt",
        /// `adopt`, holding the strategy's lock across the re-read, the POST and the write
        /// (upstream main's Codex refresh: at most one POST per refresh token among the lock's
        /// holders), whatever the lock's scope.
        Serial = "serial",
    }
);

/// How one provider's pool refreshes: a [`Mode`] and two flags, written `mode[/flag...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub mode: Mode,
    /// `retry2`: after a refusal, present the same refresh token once more at a second token
    /// endpoint of the same authorization server (upstream's Anthropic client).
    pub retry_second_endpoint: bool,
    /// `presync`: when the refresh fails, the entry marked exhausted is the copy from before
    /// this pass re-synced it from its external file (upstream's `_mark_exhausted(entry, None)`
    /// with the pre-sync entry): the operation rolls its own sync back.
    pub mark_presync_copy: bool,
}

impl Rule {
    const FLAGS: &'static str = "retry2, presync";

    fn parse(text: &str) -> Result<Rule, SpecError> {
        let mut parts = text.split('/').map(str::trim);
        let mut rule = Rule {
            mode: parts.next().unwrap_or("").parse()?,
            retry_second_endpoint: false,
            mark_presync_copy: false,
        };
        for flag in parts {
            let slot = match flag {
                "retry2" => &mut rule.retry_second_endpoint,
                "presync" => &mut rule.mark_presync_copy,
                _ => {
                    return Err(SpecError::BadRefresh(format!(
                        "unknown flag '{flag}' in '{text}': the flags are {}",
                        Rule::FLAGS
                    )))
                }
            };
            if std::mem::replace(slot, true) {
                return Err(SpecError::BadRefresh(format!(
                    "flag '{flag}' is given twice in '{text}'"
                )));
            }
        }
        Ok(rule)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mode)?;
        if self.retry_second_endpoint {
            f.write_str("/retry2")?;
        }
        if self.mark_presync_copy {
            f.write_str("/presync")?;
        }
        Ok(())
    }
}

/// Most providers a refresh value may name.
const MAX_PROVIDER_RULES: usize = 4;

/// The refresh dimension: one [`Rule`] for every pool, and up to four rules for named
/// providers' pools. Spec: `[provider:]rule+...`, exactly one item without a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Refresh {
    pub default: Rule,
    /// Sorted by provider name; `None` slots last.
    by_provider: [Option<(&'static str, Rule)>; MAX_PROVIDER_RULES],
}

impl Refresh {
    pub const KEY: &'static str = "refresh";

    /// The same rule for every provider.
    pub const fn uniform(mode: Mode) -> Refresh {
        Refresh {
            default: Rule {
                mode,
                retry_second_endpoint: false,
                mark_presync_copy: false,
            },
            by_provider: [None; MAX_PROVIDER_RULES],
        }
    }

    /// The rule of `provider`'s pool.
    pub fn rule(&self, provider: &str) -> Rule {
        self.by_provider
            .iter()
            .flatten()
            .find(|(p, _)| *p == provider)
            .map_or(self.default, |&(_, r)| r)
    }

    /// What a refresh value may be, for error messages and `poolcheck strategies`.
    pub fn allowed() -> String {
        format!(
            "a mode ({}), optionally with flags ({}) as 'blind/retry2', optionally per provider as 'openai-codex:serial+blind'",
            allowed(Mode::ALL),
            Rule::FLAGS
        )
    }
}

impl FromStr for Refresh {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Refresh, SpecError> {
        let mut default = None;
        let mut named: Vec<(&'static str, Rule)> = Vec::new();
        for item in text.split('+').map(str::trim) {
            match item.split_once(':') {
                None => {
                    if default.replace(Rule::parse(item)?).is_some() {
                        return Err(SpecError::BadRefresh(format!(
                            "'{text}' has two rules without a provider: give one, for every other pool"
                        )));
                    }
                }
                Some((provider, rule)) => {
                    let provider = provider.trim();
                    if provider.is_empty() || provider.contains(['/', '=', ' ']) {
                        return Err(SpecError::BadRefresh(format!(
                            "'{provider}' in '{text}' is not a provider name"
                        )));
                    }
                    if named.iter().any(|(p, _)| *p == provider) {
                        return Err(SpecError::BadRefresh(format!(
                            "provider '{provider}' has two rules in '{text}'"
                        )));
                    }
                    named.push((intern(provider), Rule::parse(rule)?));
                }
            }
        }
        let default = default.ok_or_else(|| {
            SpecError::BadRefresh(format!(
                "'{text}' has no rule for the other providers: add one without a provider, e.g. '{text}+blind'"
            ))
        })?;
        if named.len() > MAX_PROVIDER_RULES {
            return Err(SpecError::BadRefresh(format!(
                "'{text}' names {} providers; at most {MAX_PROVIDER_RULES}",
                named.len()
            )));
        }
        // A provider rule equal to the default says nothing: canonical form drops it.
        named.retain(|(_, r)| *r != default);
        named.sort_by_key(|(p, _)| *p);
        let mut by_provider = [None; MAX_PROVIDER_RULES];
        for (slot, item) in by_provider.iter_mut().zip(named) {
            *slot = Some(item);
        }
        Ok(Refresh {
            default,
            by_provider,
        })
    }
}

impl fmt::Display for Refresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        for (p, r) in self.by_provider.iter().flatten() {
            text.push_str(&format!("{p}:{r}+"));
        }
        text.push_str(&self.default.to_string());
        f.pad(&text)
    }
}

/// A provider name with a static lifetime, so that a [`Strategy`] stays `Copy`. Each distinct
/// name is allocated once per process (a spec names a handful).
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(n);
    n
}

/// One point in the strategy space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Strategy {
    pub lock: Lock,
    pub scope: Scope,
    pub persist: Persist,
    pub write: WritePath,
    pub refresh: Refresh,
}

/// A named preset: a name, its spec, and one line of what it means.
pub struct Preset {
    pub name: &'static str,
    pub spec: &'static str,
    pub meaning: &'static str,
}

/// The named presets. The first four are the design card's, then upstream's later fixes and the
/// reference fix, then the pitfalls.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "none",
        spec: "lock=none,scope=io,persist=each,write=in-place,refresh=blind",
        meaning: "no locking at all; every change rewrites the file in place",
    },
    Preset {
        name: "thread-lock",
        spec: "lock=mutex,scope=op,persist=each,write=in-place,refresh=anthropic:blind/retry2+blind",
        meaning: "a process-local lock around each operation (the state #8040 reported)",
    },
    Preset {
        name: "flock",
        spec: "lock=flock,scope=io,persist=each,write=rename,refresh=blind",
        meaning: "a file lock around each read and each atomic write, nothing wider",
    },
    Preset {
        name: "batched-persist",
        spec: "lock=mutex,scope=op,persist=batched,write=in-place,refresh=blind",
        meaning: "one write per operation (PR #8070's idea), process-local lock, in-place write",
    },
    Preset {
        name: "merge-on-write",
        spec: "lock=flock,scope=write,persist=merge,write=rename,refresh=blind",
        meaning: "upstream main's merge as designed: under the file lock re-read and merge by id on every write",
    },
    Preset {
        name: "upstream-main",
        spec: "lock=flock,scope=write,persist=add-missing,write=rename,refresh=openai-codex:serial+blind/retry2/presync",
        meaning: "upstream main as its code is (88d1d620): flocked writes add missing ids only; Codex refresh serialized, Anthropic not",
    },
    Preset {
        name: "flock-txn",
        spec: "lock=flock,scope=op,persist=txn,write=rename,refresh=adopt",
        meaning: "the reference fix: one file lock across re-read, sync, adopt-or-redeem, one atomic write",
    },
    Preset {
        name: "flock-data",
        spec: "lock=flock-data,scope=op,persist=txn,write=rename,refresh=adopt",
        meaning: "pitfall: the fix, but locking the data file that the rename replaces",
    },
    Preset {
        name: "fcntl",
        spec: "lock=fcntl,scope=op,persist=txn,write=rename,refresh=adopt",
        meaning: "pitfall: the fix, but with a POSIX record lock that any close of the file drops",
    },
];

/// Why a strategy name or spec string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown strategy '{0}': use a preset ({presets}) or a spec such as 'lock=flock,scope=op,persist=txn,write=rename,refresh=adopt'", presets = preset_names())]
    UnknownPreset(String),
    #[error("'{0}' is not key=value: a spec is five comma-separated pairs, e.g. 'lock=flock,scope=op,persist=txn,write=rename,refresh=adopt'")]
    NotAPair(String),
    #[error("unknown key '{0}': the keys are lock, scope, persist, write, refresh")]
    UnknownKey(String),
    #[error("bad value '{value}' for {key}: allowed values are {allowed}")]
    BadValue {
        key: &'static str,
        value: String,
        allowed: String,
    },
    #[error("bad value for refresh: {0} (allowed: {allowed})", allowed = Refresh::allowed())]
    BadRefresh(String),
    #[error("key '{0}' is given twice")]
    Duplicate(&'static str),
    #[error("missing key '{key}' (allowed values: {allowed})")]
    Missing { key: &'static str, allowed: String },
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn allowed<T: fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Strategy {
    /// A preset by name, or a spec string (anything containing `=`).
    pub fn parse(s: &str) -> Result<Strategy, SpecError> {
        let s = s.trim();
        if s.contains('=') {
            return s.parse();
        }
        PRESETS
            .iter()
            .find(|p| p.name == s)
            .map(|p| p.spec.parse().expect("presets are valid specs"))
            .ok_or_else(|| SpecError::UnknownPreset(s.to_string()))
    }

    /// The canonical spec string.
    pub fn spec(&self) -> String {
        format!(
            "lock={},scope={},persist={},write={},refresh={}",
            self.lock, self.scope, self.persist, self.write, self.refresh
        )
    }

    /// The preset name of this point, if it is one.
    pub fn preset_name(&self) -> Option<&'static str> {
        PRESETS
            .iter()
            .find(|p| Strategy::parse(p.spec).as_ref() == Ok(self))
            .map(|p| p.name)
    }

    /// The preset name, or the spec string for a custom point.
    pub fn label(&self) -> String {
        self.preset_name()
            .map(str::to_string)
            .unwrap_or_else(|| self.spec())
    }

    /// Whether the lock excludes other processes (the rest only exclude threads, or nothing).
    pub fn lock_is_cross_process(&self) -> bool {
        matches!(self.lock, Lock::Flock | Lock::FlockData | Lock::Fcntl)
    }
}

impl FromStr for Strategy {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Strategy, SpecError> {
        let (mut lock, mut scope, mut persist, mut write, mut refresh) =
            (None, None, None, None, None);
        fn set<T>(slot: &mut Option<T>, key: &'static str, v: T) -> Result<(), SpecError> {
            if slot.replace(v).is_some() {
                return Err(SpecError::Duplicate(key));
            }
            Ok(())
        }
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| SpecError::NotAPair(pair.to_string()))?;
            let v = v.trim();
            match k.trim() {
                "lock" => set(&mut lock, Lock::KEY, v.parse()?)?,
                "scope" => set(&mut scope, Scope::KEY, v.parse()?)?,
                "persist" => set(&mut persist, Persist::KEY, v.parse()?)?,
                "write" => set(&mut write, WritePath::KEY, v.parse()?)?,
                "refresh" => set(&mut refresh, Refresh::KEY, v.parse()?)?,
                other => return Err(SpecError::UnknownKey(other.to_string())),
            }
        }
        fn need<T: Copy + fmt::Display>(
            v: Option<T>,
            key: &'static str,
            all: &[T],
        ) -> Result<T, SpecError> {
            v.ok_or_else(|| SpecError::Missing {
                key,
                allowed: allowed(all),
            })
        }
        Ok(Strategy {
            lock: need(lock, Lock::KEY, Lock::ALL)?,
            scope: need(scope, Scope::KEY, Scope::ALL)?,
            persist: need(persist, Persist::KEY, Persist::ALL)?,
            write: need(write, WritePath::KEY, WritePath::ALL)?,
            refresh: refresh.ok_or_else(|| SpecError::Missing {
                key: Refresh::KEY,
                allowed: Refresh::allowed(),
            })?,
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Split a comma-separated list of presets and specs: consecutive `key=value` pairs belong to
/// one spec until a key repeats; a word without `=` is a preset name.
pub fn split_list(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut spec: Vec<&str> = Vec::new();
    let key = |p: &str| p.split('=').next().unwrap_or("").trim().to_string();
    for piece in args
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if piece.contains('=') {
            if spec.iter().any(|p| key(p) == key(piece)) {
                out.push(spec.join(","));
                spec.clear();
            }
            spec.push(piece);
        } else {
            if !spec.is_empty() {
                out.push(spec.join(","));
                spec.clear();
            }
            out.push(piece.to_string());
        }
    }
    if !spec.is_empty() {
        out.push(spec.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_round_trips() {
        assert_eq!(PRESETS.len(), 9);
        for p in PRESETS {
            let s = Strategy::parse(p.name).unwrap();
            assert_eq!(s.spec(), p.spec);
            assert_eq!(s.preset_name(), Some(p.name));
            assert_eq!(Strategy::parse(&s.spec()).unwrap(), s);
        }
    }

    #[test]
    fn presets_are_distinct_points() {
        let mut seen = std::collections::HashSet::new();
        for p in PRESETS {
            assert!(
                seen.insert(Strategy::parse(p.spec).unwrap()),
                "{} duplicates",
                p.name
            );
        }
    }

    #[test]
    fn a_custom_spec_is_labelled_by_its_spec() {
        let s = Strategy::parse("refresh=adopt, lock=flock,scope=write,persist=merge,write=rename")
            .unwrap();
        assert_eq!(s.preset_name(), None);
        assert_eq!(
            s.label(),
            "lock=flock,scope=write,persist=merge,write=rename,refresh=adopt"
        );
    }

    #[test]
    fn refresh_rules_are_per_provider_with_one_default() {
        let s = Strategy::parse("upstream-main").unwrap();
        let codex = s.refresh.rule("openai-codex");
        assert_eq!(codex.mode, Mode::Serial);
        assert!(!codex.retry_second_endpoint && !codex.mark_presync_copy);
        let other = s.refresh.rule("anthropic");
        assert_eq!(other.mode, Mode::Blind);
        assert!(other.retry_second_endpoint && other.mark_presync_copy);
        // Canonical form: providers sorted, the default last, rules equal to it dropped.
        let r: Refresh =
            " xai:serial + blind/presync/retry2 + openai-codex:serial + anthropic:blind "
                .replace(' ', "")
                .parse()
                .unwrap();
        assert_eq!(
            r.to_string(),
            "anthropic:blind+openai-codex:serial+xai:serial+blind/retry2/presync"
        );
        let r: Refresh = "anthropic:adopt+adopt".parse().unwrap();
        assert_eq!(r, Refresh::uniform(Mode::Adopt));
        assert_eq!(r.to_string(), "adopt");
        let thread_lock = Strategy::parse("thread-lock").unwrap();
        assert!(thread_lock.refresh.rule("anthropic").retry_second_endpoint);
        assert!(
            !thread_lock
                .refresh
                .rule("openai-codex")
                .retry_second_endpoint
        );
    }

    #[test]
    fn bad_refresh_values_say_what_is_wrong() {
        let err = |v: &str| {
            Strategy::parse(&format!(
                "lock=flock,scope=op,persist=txn,write=rename,refresh={v}"
            ))
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err("blund"),
            "bad value 'blund' for refresh: allowed values are blind, adopt, serial"
        );
        assert!(err("blind/retry3")
            .contains("unknown flag 'retry3' in 'blind/retry3': the flags are retry2, presync"));
        assert!(err("blind/retry2/retry2").contains("flag 'retry2' is given twice"));
        assert!(err("openai-codex:serial").contains("has no rule for the other providers: add one without a provider, e.g. 'openai-codex:serial+blind'"));
        assert!(err("blind+adopt").contains("two rules without a provider"));
        assert!(err("a:serial+a:blind+blind").contains("provider 'a' has two rules"));
        assert!(err(":serial+blind").contains("is not a provider name"));
        assert!(err("a:serial+b:serial+c:serial+d:serial+e:serial+blind").contains("at most 4"));
        for e in [err("blind/x"), err("x:serial")] {
            assert!(e.contains("allowed: a mode (blind, adopt, serial)"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_bad_key_and_the_allowed_values() {
        let e = Strategy::parse("lock=flok,scope=op,persist=txn,write=rename,refresh=adopt")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad value 'flok' for lock: allowed values are none, mutex, flock, flock-data, fcntl"
        );
        let e = Strategy::parse("lock=flock,scope=op,persist=txn,write=rename").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "missing key 'refresh' (allowed values: a mode (blind, adopt, serial)"
            ),
            "{e}"
        );
        let e = Strategy::parse("lock=flock,colour=red").unwrap_err();
        assert!(e.to_string().contains("unknown key 'colour'"));
        let e = Strategy::parse("lock=flock,lock=none").unwrap_err();
        assert_eq!(e, SpecError::Duplicate("lock"));
        let e = Strategy::parse("lock").unwrap_err();
        assert!(e.to_string().contains("flock-txn"), "{e}");
        let e = Strategy::parse("lock=flock,scope").unwrap_err();
        assert!(matches!(e, SpecError::NotAPair(_)));
    }
}

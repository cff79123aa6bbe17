//! The strategy space: lock x scope x persist x write x refresh, the named presets, and the
//! spec-string parser (`lock=flock,scope=op,persist=txn,write=rename,refresh=adopt`).
//!
//! A strategy is data: every preset is a point in this space, and the pool code branches on
//! the five dimensions only. Adding a value is one variant plus its name in [`dimension!`].

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
        /// Every change re-reads the store and merges by entry id (upstream main).
        Merge = "merge",
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
    }
);

dimension!(
    /// What a refresh does before it spends the refresh token.
    Refresh, "refresh", {
        /// POST whatever refresh token the snapshot holds.
        Blind = "blind",
        /// Re-read first; if a peer already rotated the token, adopt it and skip the POST.
        /// A terminal refusal with no newer token on disk marks the entry `dead`.
        Adopt = "adopt",
    }
);

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
        spec: "lock=mutex,scope=op,persist=each,write=in-place,refresh=blind",
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
        meaning: "upstream main: under the file lock re-read and merge by id on every write",
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
            refresh: need(refresh, Refresh::KEY, Refresh::ALL)?,
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
        assert_eq!(PRESETS.len(), 8);
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
    fn errors_name_the_bad_key_and_the_allowed_values() {
        let e = Strategy::parse("lock=flok,scope=op,persist=txn,write=rename,refresh=adopt")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad value 'flok' for lock: allowed values are none, mutex, flock, flock-data, fcntl"
        );
        let e = Strategy::parse("lock=flock,scope=op,persist=txn,write=rename").unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing key 'refresh' (allowed values: blind, adopt)"
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

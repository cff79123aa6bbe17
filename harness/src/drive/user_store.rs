//! A user's own store as the starting point of a run (`poolcheck run --store FILE`).
//!
//! Guarantees: the original file is only ever read (opened read-only, never renamed, locked or
//! written); every refusal names the file, the problem and what to do; a file that does not
//! parse gets a quarantine copy (0600) in a directory of its own under the system temp dir,
//! never beside the original (whose directory may be read-only), and the error says where.
//! The run itself never sees the user's secrets: the driver replaces every token with one the
//! run's issuer minted (see `setup.rs`), keeping the store's shape (entries, order, sources,
//! statuses, unknown fields).

use std::io::Read;
use std::path::{Path, PathBuf};

use pool_core::store::{Store, STORE_VERSION};

/// Larger than any real credential store by orders of magnitude.
pub const MAX_STORE_BYTES: u64 = 10 * 1024 * 1024;

/// Read and validate a user's store.
pub fn load(path: &Path) -> Result<Store, String> {
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{shown}: no such file: pass the path of an auth.json")
        }
        _ => format!("{shown}: cannot inspect: {e}"),
    })?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(format!(
            "{shown} is a symbolic link (to {target}): pass the file it points to, so it is clear which file is read"
        ));
    }
    if meta.is_dir() {
        return Err(format!(
            "{shown} is a directory: pass the auth.json file inside it"
        ));
    }
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file: pass an auth.json"));
    }
    if meta.len() > MAX_STORE_BYTES {
        return Err(format!(
            "{shown} is {} MB, far larger than any credential store (limit {} MB): is it the right file?",
            meta.len() / (1024 * 1024),
            MAX_STORE_BYTES / (1024 * 1024)
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_STORE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                format!("{shown}: permission denied: run as the file's owner, or copy it somewhere readable")
            }
            _ => format!("{shown}: cannot read: {e}"),
        })?;
    parse(path, &bytes)
}

/// Validate store bytes read from `path`; an unparsable store is quarantined first.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Store, String> {
    let shown = path.display();
    match check(bytes) {
        Ok(store) => Ok(store),
        Err(Problem::Newer(v)) => Err(format!(
            "{shown} has store version {v}, newer than {STORE_VERSION}, the one this tool understands: use a newer poolcheck (the file was not modified)"
        )),
        Err(Problem::Unparsable(problem)) => {
            let kept = quarantine(path, bytes)
                .map(|q| format!("a copy is kept at {}", q.display()))
                .unwrap_or_else(|e| format!("no quarantine copy could be made ({e})"));
            Err(format!(
                "{shown} {problem}; the original was not modified ({kept}): fix or restore it, or pass another store"
            ))
        }
    }
}

/// Why store bytes were refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// What is wrong, as a phrase after the file name ("is empty").
    Unparsable(String),
    /// A store version newer than this tool's.
    Newer(u64),
}

/// The pure part of [`parse`]: no file is touched.
pub fn check(bytes: &[u8]) -> Result<Store, Problem> {
    if bytes.is_empty() {
        return Err(Problem::Unparsable("is empty".into()));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Problem::Unparsable(format!(
            "is not UTF-8 text (bad byte at offset {})",
            e.valid_up_to()
        )));
    }
    let store: Store = serde_json::from_slice(bytes).map_err(|e| {
        Problem::Unparsable(match e.classify() {
            serde_json::error::Category::Eof => {
                format!(
                    "is truncated (it ends at line {} column {})",
                    e.line(),
                    e.column()
                )
            }
            serde_json::error::Category::Syntax => format!("is not valid JSON ({e})"),
            _ => format!("is JSON but not a credential store ({e})"),
        })
    })?;
    if store.version > STORE_VERSION {
        return Err(Problem::Newer(store.version));
    }
    Ok(store)
}

/// Keep a copy of unparsable store bytes, 0600, in a fresh directory under the temp dir.
fn quarantine(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("poolcheck-quarantine.")
        .tempdir()?
        .keep();
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "store".into());
    let copy = dir.join(name);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&copy)?
        .write_all(bytes)?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = r#"{"version":1,"credential_pool":{"anthropic":[{"id":"a1b2c3","label":"A",
        "auth_type":"oauth","priority":0,"source":"manual","access_token":"a","refresh_token":"r",
        "expires_at_ms":5,"request_count":0,"last_status":null}]}}"#;

    /// `run --store` takes a store as upstream writes it (float epoch seconds, reset times in
    /// epoch ms or ISO-8601, unknown fields), at both upstream commits.
    #[test]
    fn stores_as_upstream_writes_them_are_accepted() {
        for bytes in [
            &include_bytes!("../../../pool-core/tests/fixtures/upstream-39cd5708.json")[..],
            &include_bytes!("../../../pool-core/tests/fixtures/upstream-88d1d620.json")[..],
        ] {
            let s = check(bytes).unwrap();
            assert!(s
                .credential_pool
                .values()
                .flatten()
                .any(|e| e.is_exhausted()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Mutated stores: a typed answer, never a panic.
        #[test]
        fn mutated_stores_give_typed_answers(
            cut in 0usize..VALID.len(),
            flips in proptest::collection::vec((0usize..VALID.len(), any::<u8>()), 0..6),
        ) {
            let mut bytes = VALID.as_bytes().to_vec();
            for (i, b) in flips {
                bytes[i] = b;
            }
            bytes.truncate(cut.max(1));
            match check(&bytes) {
                Ok(s) => prop_assert!(s.version <= STORE_VERSION),
                Err(Problem::Unparsable(m)) => prop_assert!(m.starts_with("is ")),
                Err(Problem::Newer(v)) => prop_assert!(v > STORE_VERSION),
            }
        }

        #[test]
        fn arbitrary_bytes_give_typed_answers(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = check(&bytes);
        }
    }
}

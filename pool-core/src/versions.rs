//! Store versions a pool already knows, remembered by their bytes: reading back bytes it
//! knows skips the parse and the content hash.
//!
//! A cache, never a source of truth: it answers only for a byte-for-byte match, with what
//! parsing and hashing those bytes gave (both are pure functions of the bytes), so a read
//! through it records and returns exactly what a read without it would. By default a pool
//! keeps the one version it wrote last ([`Versions::own`]). An embedding that runs many pools
//! over the same few versions, such as a model checker's simulated processes over many
//! executions, can share one [`Versions::shared`] between them: it also keeps the versions
//! they parsed. It does not keep what did not parse, nor a version newer than this crate
//! reads (those take the full path every time).

use std::collections::HashMap;
use std::sync::Mutex;

/// A fast hash of the bytes (foldhash: a store is a kilobyte or more, and only equality of the
/// bytes decides a match).
type Kept = HashMap<Vec<u8>, (String, Store), foldhash::fast::FixedState>;

use crate::store::Store;

/// Remembered store versions: bytes -> (content hash, the store they parse to).
#[derive(Debug)]
pub struct Versions {
    kept: Mutex<Kept>,
    /// Versions kept at most (then it starts over).
    capacity: usize,
    /// Whether parsed versions are kept too (else only written ones).
    reads: bool,
}

impl Versions {
    /// A pool's own: the version it wrote last.
    pub fn own() -> Versions {
        Versions {
            kept: Mutex::new(Kept::default()),
            capacity: 1,
            reads: false,
        }
    }

    /// One to share between pools: the last `capacity` versions any of them parsed or wrote
    /// (at least one).
    pub fn shared(capacity: usize) -> Versions {
        Versions {
            kept: Mutex::new(Kept::default()),
            capacity: capacity.max(1),
            reads: true,
        }
    }

    /// The content hash and the store of `bytes`, if they are a version kept here.
    pub fn recall(&self, bytes: &[u8]) -> Option<(Store, String)> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(bytes)
            .map(|(hash, store)| (store.clone(), hash.clone()))
    }

    /// The content hash of `bytes`, if they are a version kept here (what hashing them gives).
    pub fn hash_of(&self, bytes: &[u8]) -> Option<String> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(bytes).map(|(hash, _)| hash.clone())
    }

    /// `bytes` (content hash `hash`) were just written, serialized from `store`.
    pub fn wrote(&self, bytes: Vec<u8>, hash: String, store: Store) {
        self.keep(bytes, hash, store);
    }

    /// `bytes` (content hash `hash`) were just read and parsed as `store`.
    pub fn parsed(&self, bytes: &[u8], hash: &str, store: &Store) {
        if self.reads {
            self.keep(bytes.to_vec(), hash.to_string(), store.clone());
        }
    }

    fn keep(&self, bytes: Vec<u8>, hash: String, store: Store) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= self.capacity && !kept.contains_key(&bytes) {
            kept.clear();
        }
        kept.insert(bytes, (hash, store));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(updated: &str) -> (Vec<u8>, Store) {
        let s = Store {
            updated_at: Some(updated.into()),
            ..Store::default()
        };
        (s.to_bytes(), s)
    }

    #[test]
    fn own_keeps_only_the_last_write() {
        let v = Versions::own();
        let (a, sa) = store("a");
        let (b, sb) = store("b");
        v.parsed(&a, "ha", &sa);
        assert!(
            v.recall(&a).is_none(),
            "a read is not kept by a pool's own cache"
        );
        v.wrote(a.clone(), "ha".into(), sa.clone());
        assert_eq!(v.recall(&a), Some((sa, "ha".to_string())));
        v.wrote(b.clone(), "hb".into(), sb.clone());
        assert!(v.recall(&a).is_none());
        assert_eq!(v.recall(&b), Some((sb, "hb".to_string())));
    }

    #[test]
    fn shared_keeps_reads_and_writes_up_to_its_capacity() {
        let v = Versions::shared(2);
        let (a, sa) = store("a");
        let (b, sb) = store("b");
        let (c, sc) = store("c");
        v.parsed(&a, "ha", &sa);
        v.wrote(b.clone(), "hb".into(), sb.clone());
        assert_eq!(v.recall(&a), Some((sa, "ha".to_string())));
        assert_eq!(v.recall(&b), Some((sb, "hb".to_string())));
        assert_eq!(v.hash_of(&b).as_deref(), Some("hb"));
        v.parsed(&c, "hc", &sc);
        assert_eq!(v.recall(&c), Some((sc, "hc".to_string())));
        assert!(v.recall(&a).is_none() && v.recall(&b).is_none());
        // Only a byte-for-byte match answers.
        let mut near = c.clone();
        near.push(b' ');
        assert!(v.recall(&near).is_none());
        assert!(v.hash_of(&near).is_none());
    }
}

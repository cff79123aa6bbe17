//! The observer's view of the subject's descriptors: per process (thread group), which
//! descriptors name the store, an external credential file, or a socket connected to the
//! issuer, and what is in flight on each open file (a read being gathered, an in-place write
//! being gathered). Descriptors of anything else are not tracked.
//!
//! Open file descriptions are shared the way the kernel shares them: `dup` and `fork` copy the
//! reference, so a read or write through either descriptor continues the same file's state,
//! and it is finished when its last descriptor closes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Which watched file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    Store,
    /// An external credential file, by its source (`claude_code`, `codex`).
    External(String),
}

impl Watched {
    /// The history's `file` field: `None` for the store.
    pub fn file_name(&self) -> Option<String> {
        match self {
            Watched::Store => None,
            Watched::External(s) => Some(s.clone()),
        }
    }
}

/// The bytes of one read, from offset 0, as they arrive. Held in memory only to hash and
/// parse them when the read ends.
#[derive(Debug, Default)]
pub struct ReadSession {
    pub bytes: Vec<u8>,
    /// When the last read call returned.
    pub last_ns: u64,
    /// The operation in flight at the last read call.
    pub op: u64,
    /// The read reached the file's end: a call returned 0 at its end or fewer bytes than it
    /// asked for, or the bytes read reached the file's size at the entry or the return of the
    /// last call (a `pread` of exactly `st_size` that never reads EOF). Only such a read is a
    /// read of a version: one that stopped short (a peek at a prefix, a reader cut off by its
    /// process's exit) is dropped.
    pub whole: bool,
}

/// An in-place write: the file's content as this writer's calls left it.
#[derive(Debug)]
pub struct WriteSession {
    /// When the bytes could first be visible (the truncating open, the first write call).
    pub begin_ns: u64,
    /// The operation it began in.
    pub op: u64,
    pub content: Vec<u8>,
    /// Write calls so far (the second and later are `mid_write` points).
    pub calls: u32,
    /// When the last write call returned (the write's completion).
    pub last_ns: u64,
    /// Some of its bytes came by a copy whose source could not be read (`splice` from a pipe,
    /// say): its content is unknown, and it is reported as begun and never completed.
    pub unknown: bool,
}

/// One open file description of a watched file.
#[derive(Debug)]
pub struct OpenFile {
    pub what: Watched,
    pub read: Option<ReadSession>,
    pub write: Option<WriteSession>,
}

/// A socket connected to the issuer.
#[derive(Debug, Default)]
pub struct Socket {
    /// The request being sent (its first bytes, to recognise a token request and its refresh
    /// token); cleared when the response starts.
    pub request: Vec<u8>,
    /// A token request was sent and its response has not started.
    pub redeeming: bool,
}

#[derive(Clone, Debug)]
pub enum Fd {
    File(Rc<RefCell<OpenFile>>),
    Issuer(Rc<RefCell<Socket>>),
}

/// Every traced process's watched descriptors, by thread group id.
#[derive(Default)]
pub struct Tables {
    by_tgid: HashMap<i32, HashMap<i32, Fd>>,
}

/// How much of a request to keep to recognise it (its request line and a form body).
pub const REQUEST_PREFIX: usize = 16 * 1024;

impl Tables {
    pub fn get(&self, tgid: i32, fd: i32) -> Option<Fd> {
        self.by_tgid.get(&tgid)?.get(&fd).cloned()
    }

    pub fn insert(&mut self, tgid: i32, fd: i32, f: Fd) {
        self.by_tgid.entry(tgid).or_default().insert(fd, f);
    }

    /// Forget `fd`; the open file if this was its last descriptor anywhere (to finish it).
    pub fn remove(&mut self, tgid: i32, fd: i32) -> Option<Rc<RefCell<OpenFile>>> {
        match self.by_tgid.get_mut(&tgid)?.remove(&fd)? {
            Fd::File(f) if Rc::strong_count(&f) == 1 => Some(f),
            _ => None,
        }
    }

    /// A forked child starts with a copy of its parent's table (same open files).
    pub fn fork(&mut self, parent: i32, child: i32) {
        let copy = self.by_tgid.get(&parent).cloned().unwrap_or_default();
        let t = self.by_tgid.entry(child).or_default();
        for (fd, f) in copy {
            t.entry(fd).or_insert(f);
        }
    }

    /// A process exec'd or exited: its descriptors are gone (close-on-exec ones at least; a
    /// store descriptor kept across exec is not followed). Returns the files that were open
    /// only there.
    pub fn drop_process(&mut self, tgid: i32) -> Vec<Rc<RefCell<OpenFile>>> {
        let Some(t) = self.by_tgid.remove(&tgid) else {
            return Vec::new();
        };
        t.into_values()
            .filter_map(|f| match f {
                Fd::File(f) if Rc::strong_count(&f) == 1 => Some(f),
                _ => None,
            })
            .collect()
    }
}

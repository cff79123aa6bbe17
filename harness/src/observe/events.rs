//! What the subject's system calls mean for the history: each stopped call is decoded
//! ([`Call`]), followed to its return when its result matters, and turned into the events a
//! self-reporting subject sends (`read`, `write_begin`, `write`, `refresh`) and into pause
//! points, held until the worker releases them.
//!
//! - A read of a watched file is the bytes read from offset 0 through one open file, finished
//!   at the call that returns 0 (EOF), at the last close (or the process's exit), or at the
//!   next read from offset 0 through that open file. It is emitted only if it reached the
//!   file's end: a call returned 0 or fewer bytes than it asked for, or its bytes reached the
//!   file's size at the entry or the return of its last call (a `pread` of exactly `st_size`
//!   that never reads EOF). A read that skipped bytes, or that stopped short of the end (a
//!   peek at a prefix, closed or restarted at 0; a reader cut off by its process's exit), is
//!   dropped (not a whole version). Not guaranteed: a read of exactly the size it was told
//!   whose file another process resized during that very call looks short and is dropped. Its
//!   hash is that of those bytes; it is `parsed` when they parse as a store (or, for an
//!   external file, as JSON). Its operation is the one in flight at its last call.
//! - A write by `rename(2)` onto a watched path begins at the call (after `before_rename`) and
//!   completes at its successful return; its bytes are the renamed file's, read while the
//!   subject is stopped at the call. An in-place write begins at the truncating open (or the
//!   first write call, copy or `ftruncate` of an open file that has none in progress), is the
//!   content its own calls leave, and completes at its last write call. A copy into the file
//!   (`sendfile`, `copy_file_range`, `splice`) is a write call whose bytes are the source's,
//!   read from the source file while the subject is stopped at the call (as a renamed file's
//!   are); when the source is not a regular file (a pipe) they cannot be, and the write is
//!   emitted as begun only, with hash [`UNKNOWN_CONTENT`]: its content is unknown. Not taken
//!   from the file at the close: another process may have written since. It is reported when it is known
//!   to be complete: when its last descriptor closes (or its process exits), or when a call
//!   through the same open file starts the content over after it has had a write call: an
//!   `ftruncate` to length 0, or a write call at offset 0. That call begins the next write.
//!   So a descriptor kept open for the process's life gives one write per truncate-and-write
//!   cycle, each with the content that cycle left, which is what the file held in between.
//!   A write in several calls at increasing offsets after its truncate, or a write at offset 0
//!   followed by an `ftruncate` to its length (`seek(0); write(); truncate()`), stays one
//!   write. Not used as completion, because each can split one real write in two and make a
//!   half-written file look written (hiding a torn read): the end of the pool operation (a pool
//!   may answer before a background thread finishes its write) and releasing a lock (a pool may
//!   unlock between the chunks of its write; and a lock released by `close`, or held on
//!   another file, is not tied to the write). A write that returns to offset 0 within itself
//!   (a header rewritten after the body) is taken as two writes.
//! - A read or write found complete only at a later call is emitted then, stamped with its own
//!   times and operation (the history is ordered by time); `after_load` holds the subject only
//!   at a read's own end (its EOF or close).
//! - A write's `base` is not told (`null`): the checkers take the newest store version the
//!   subject read or wrote before it, and judge lost updates from content too
//!   (`check::lost_update`).
//! - A refresh is a `POST` whose request line names `/oauth/token` on a socket connected to the
//!   issuer's port; `before_redeem` holds its first send, `after_redeem` the return of the first
//!   receive of its response, whose status line gives the outcome. Its entry is the one whose
//!   refresh token the last version the subject saw holds (`unknown` when none does): by
//!   time, a whole store read counting from the return of its call that reached the file's
//!   size (before it is emitted), a read or write emitted late not replacing a newer one.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use pool_core::digest::{content_hash, tag};
use pool_core::world::{EntrySummary, Event, Pause, ReadOutcome, RefreshOutcome};

use super::files::{
    Fd, OpenFile, ReadSession, Socket, Tables, Watched, WriteSession, REQUEST_PREFIX,
};
use super::{canonical, Config, Report, Sink};
use crate::history::{now_ns, UNKNOWN_CONTENT};

/// A stopped call, decoded. Addresses and lengths are the tracee's.
#[derive(Debug)]
pub enum Call {
    Open {
        dirfd: i32,
        path: u64,
        flags: i32,
    },
    /// read, pread64, readv, preadv, preadv2, recvfrom, recvmsg: `offset` is `None` for the
    /// descriptor's own position.
    Read {
        fd: i32,
        iov: Iov,
        offset: Option<u64>,
    },
    Write {
        fd: i32,
        iov: Iov,
        offset: Option<u64>,
    },
    Close {
        fd: i32,
    },
    /// dup, dup2, dup3, fcntl(F_DUPFD*): the new descriptor is the return value.
    Dup {
        fd: i32,
        onto: Option<i32>,
    },
    Truncate {
        fd: i32,
        len: u64,
    },
    /// sendfile, copy_file_range, splice: the kernel copies up to `len` bytes from `src` to
    /// `dst`; an offset is a pointer to the tracee's `loff_t` (`None`: the descriptor's own
    /// position).
    Copy {
        src: i32,
        src_off: Option<u64>,
        dst: i32,
        dst_off: Option<u64>,
        len: u64,
    },
    Rename {
        olddir: i32,
        old: u64,
        newdir: i32,
        new: u64,
    },
    Connect {
        fd: i32,
        addr: u64,
        len: u64,
    },
    /// flock(2) (`op` its operation) or fcntl(2) record locks (`op`: the `l_type` at `lock`).
    Lock {
        fd: i32,
        kind: LockCall,
    },
    /// A call the observer has no use for.
    Other,
}

/// A lock call's request.
#[derive(Clone, Copy, Debug)]
pub enum LockCall {
    Flock(i32),
    /// The tracee's `struct flock`.
    Fcntl(u64),
}

/// Where a call's buffers are: one buffer, or an `iovec` array.
#[derive(Clone, Copy, Debug)]
pub enum Iov {
    Buf(u64, u64),
    Vec(u64, u64),
}

/// What the tracee's memory and `/proc` entries give the interpreter.
pub trait Tracee {
    fn tid(&self) -> i32;
    fn tgid(&self) -> i32;
    /// Up to `len` bytes at `addr`.
    fn read_mem(&self, addr: u64, len: usize) -> Vec<u8>;
}

/// What to do at the call's return.
pub enum Pending {
    Open {
        what: Option<Watched>,
        trunc: bool,
        t: u64,
    },
    Read {
        file: Rc<RefCell<OpenFile>>,
        fd: i32,
        iov: Iov,
        offset: u64,
        /// The file's size at the call's entry.
        size_before: Option<u64>,
    },
    Write {
        file: Rc<RefCell<OpenFile>>,
        iov: Iov,
        offset: u64,
    },
    Recv {
        sock: Rc<RefCell<Socket>>,
        iov: Iov,
    },
    Dup {
        from: Fd,
    },
    Truncate {
        file: Rc<RefCell<OpenFile>>,
        len: u64,
    },
    /// A copy into `file` at `offset`; `bytes`: the source's bytes there, read at the entry
    /// (`None`: the source is not a regular file, or could not be read).
    Copy {
        file: Rc<RefCell<OpenFile>>,
        offset: u64,
        bytes: Option<Vec<u8>>,
    },
    Rename {
        what: Watched,
        t: u64,
        op: u64,
        hash: String,
        entries: Vec<EntrySummary>,
    },
    Lock {
        path: String,
        inode: u64,
        op: &'static str,
    },
}

/// The interpreter's state for one subject process tree.
pub struct Observed {
    cfg: Config,
    store: PathBuf,
    external: Vec<(String, PathBuf)>,
    names: Vec<std::ffi::OsString>,
    pub tables: Tables,
    sink: Sink,
    op: Arc<AtomicU64>,
    /// When the subject had it, and the entries of, the newest store version it read or wrote
    /// (by time: a read or write emitted late does not replace a newer one).
    seen: Option<(u64, Vec<EntrySummary>)>,
    /// (operation, store writes it completed): a later write of that operation begins at
    /// `between_persists`.
    persisted: (u64, u32),
}

impl Observed {
    pub fn new(cfg: Config, sink: Sink, op: Arc<AtomicU64>) -> Observed {
        let store = canonical(&cfg.store);
        let external: Vec<(String, PathBuf)> = cfg
            .external
            .iter()
            .map(|(s, p)| (s.clone(), canonical(p)))
            .collect();
        let mut names: Vec<_> = std::iter::once(&store)
            .chain(external.iter().map(|(_, p)| p))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect();
        names.dedup();
        Observed {
            cfg,
            store,
            external,
            names,
            tables: Tables::default(),
            sink,
            op,
            seen: None,
            persisted: (0, 0),
        }
    }

    fn op(&self) -> u64 {
        self.op.load(Ordering::SeqCst)
    }

    fn emit(&self, t_ns: u64, event: Event) {
        (self.sink)(Report::Event { t_ns, event });
    }

    /// Hold the tracee at `point` until the worker releases it.
    fn pause(&self, point: Pause) {
        let (tx, rx) = mpsc::channel();
        (self.sink)(Report::Pause { point, resume: tx });
        let _ = rx.recv();
    }

    /// A store write begins: if its operation already completed one, this is the window
    /// between two persists.
    fn store_write_begins(&self) {
        let op = self.op();
        if op != 0 && self.persisted.0 == op && self.persisted.1 > 0 {
            self.pause(Pause::BetweenPersists);
        }
    }

    /// Which watched file `path` (absolute) names.
    fn watched(&self, path: &Path) -> Option<Watched> {
        let name = path.file_name()?;
        if !self.names.iter().any(|n| n == name) {
            return None;
        }
        let p = canonical(path);
        if p == self.store {
            return Some(Watched::Store);
        }
        self.external
            .iter()
            .find(|(_, x)| *x == p)
            .map(|(s, _)| Watched::External(s.clone()))
    }

    /// The call's entry: returns what to do at its return, if anything.
    pub fn entry(&mut self, t: &dyn Tracee, call: Call) -> Option<Pending> {
        let tgid = t.tgid();
        match call {
            Call::Open { dirfd, path, flags } => {
                let path = resolve(t, dirfd, path)?;
                let what = self.watched(&path);
                let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
                let trunc = what.is_some() && writable && flags & libc::O_TRUNC != 0;
                if trunc && what == Some(Watched::Store) {
                    self.store_write_begins();
                }
                // Every open's descriptor matters only if it names a watched file, but a
                // descriptor number reused for another file must be forgotten: at the return.
                Some(Pending::Open {
                    what,
                    trunc,
                    t: now_ns(),
                })
            }
            Call::Read { fd, iov, offset } => match self.tables.get(tgid, fd)? {
                Fd::File(file) => {
                    let offset = offset.or_else(|| position(t, fd))?;
                    Some(Pending::Read {
                        file,
                        fd,
                        iov,
                        offset,
                        size_before: file_size(t, fd),
                    })
                }
                Fd::Issuer(sock) => Some(Pending::Recv { sock, iov }),
            },
            Call::Write { fd, iov, offset } => match self.tables.get(tgid, fd)? {
                Fd::File(file) => {
                    let offset = offset.or_else(|| position(t, fd))?;
                    let calls = self.begin_in_place(t, fd, &file, now_ns(), Start::at(offset));
                    if calls > 0 && file.borrow().what == Watched::Store {
                        self.pause(Pause::MidWrite);
                    }
                    Some(Pending::Write { file, iov, offset })
                }
                Fd::Issuer(sock) => {
                    self.sending(t, &sock, iov);
                    None
                }
            },
            Call::Close { fd } => {
                if let Some(f) = self.tables.remove(tgid, fd) {
                    self.finish(&f);
                }
                None
            }
            Call::Dup { fd, onto } => {
                if let Some(new) = onto.filter(|&n| n != fd) {
                    if let Some(f) = self.tables.remove(tgid, new) {
                        self.finish(&f);
                    }
                }
                let from = self.tables.get(tgid, fd)?;
                Some(Pending::Dup { from })
            }
            Call::Truncate { fd, len } => match self.tables.get(tgid, fd)? {
                Fd::File(file) => {
                    self.begin_in_place(t, fd, &file, now_ns(), Start::truncate(len));
                    Some(Pending::Truncate { file, len })
                }
                Fd::Issuer(_) => None,
            },
            Call::Copy {
                src,
                src_off,
                dst,
                dst_off,
                len,
            } => {
                let Fd::File(file) = self.tables.get(tgid, dst)? else {
                    return None;
                };
                let offset = match dst_off {
                    Some(p) => word(t, p)?,
                    None => position(t, dst)?,
                };
                // The source's bytes, read while the subject is stopped at the call (as a
                // renamed file's are): what the kernel copies when it resumes.
                let bytes = match src_off {
                    Some(p) => word(t, p),
                    None => position(t, src),
                }
                .and_then(|at| read_regular(t, src, at, len));
                let calls = self.begin_in_place(t, dst, &file, now_ns(), Start::at(offset));
                if calls > 0 && file.borrow().what == Watched::Store {
                    self.pause(Pause::MidWrite);
                }
                Some(Pending::Copy {
                    file,
                    offset,
                    bytes,
                })
            }
            Call::Rename {
                olddir,
                old,
                newdir,
                new,
            } => {
                let dst = resolve(t, newdir, new)?;
                let what = self.watched(&dst)?;
                let src = resolve(t, olddir, old)?;
                if what == Watched::Store {
                    self.store_write_begins();
                    self.pause(Pause::BeforeRename);
                }
                // The renamed file's bytes, read while the subject is stopped at the call.
                let bytes = std::fs::read(in_root(t, &src)).ok()?;
                let hash = content_hash(&bytes);
                let entries = match what {
                    Watched::Store => self.entries(&bytes),
                    Watched::External(_) => Vec::new(),
                };
                Some(Pending::Rename {
                    what,
                    t: now_ns(),
                    op: self.op(),
                    hash,
                    entries,
                })
            }
            Call::Connect { fd, addr, len } => {
                let a = t.read_mem(addr, (len as usize).min(128));
                if a.len() >= 4 {
                    let family = u16::from_ne_bytes([a[0], a[1]]) as i32;
                    let port = u16::from_be_bytes([a[2], a[3]]);
                    if (family == libc::AF_INET || family == libc::AF_INET6)
                        && port == self.cfg.issuer_port
                    {
                        self.tables.insert(
                            tgid,
                            fd,
                            Fd::Issuer(Rc::new(RefCell::new(Socket::default()))),
                        );
                        return None;
                    }
                }
                if let Some(f) = self.tables.remove(tgid, fd) {
                    self.finish(&f);
                }
                None
            }
            Call::Lock { fd, kind } => {
                let op = match kind {
                    LockCall::Flock(op) if op & libc::LOCK_UN != 0 => "unlock",
                    LockCall::Flock(op) if op & libc::LOCK_EX != 0 => "exclusive",
                    LockCall::Flock(_) => "shared",
                    LockCall::Fcntl(addr) => {
                        let b = t.read_mem(addr, 2);
                        match (b.len() == 2).then(|| i16::from_ne_bytes([b[0], b[1]]) as i32) {
                            Some(libc::F_WRLCK) => "exclusive",
                            Some(libc::F_RDLCK) => "shared",
                            Some(libc::F_UNLCK) => "unlock",
                            _ => return None,
                        }
                    }
                };
                let link = format!("/proc/{}/fd/{fd}", t.tid());
                let path = std::fs::read_link(&link).ok()?.display().to_string();
                let inode = std::fs::metadata(&link)
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                    .unwrap_or(0);
                (self.sink)(Report::Lock {
                    t_ns: now_ns(),
                    path: path.clone(),
                    inode,
                    op,
                    outcome: "requested",
                });
                Some(Pending::Lock { path, inode, op })
            }
            Call::Other => None,
        }
    }

    /// The call returned `ret`.
    pub fn exit(&mut self, t: &dyn Tracee, p: Pending, ret: i64) {
        let tgid = t.tgid();
        let now = now_ns();
        match p {
            Pending::Open {
                what,
                trunc,
                t: began,
            } => {
                if ret >= 0 {
                    let fd = ret as i32;
                    if let Some(f) = self.tables.remove(tgid, fd) {
                        self.finish(&f);
                    }
                    if let Some(what) = what {
                        let write = trunc.then(|| WriteSession {
                            begin_ns: began,
                            op: self.op(),
                            content: Vec::new(),
                            calls: 0,
                            last_ns: now,
                            unknown: false,
                        });
                        let f = OpenFile {
                            what,
                            read: None,
                            write,
                        };
                        self.tables
                            .insert(tgid, fd, Fd::File(Rc::new(RefCell::new(f))));
                    }
                } else if ret == -(libc::ENOENT as i64) {
                    if let Some(what) = what {
                        self.emit(
                            now,
                            Event::Read {
                                op: self.op(),
                                hash: String::new(),
                                outcome: ReadOutcome::Missing,
                                file: what.file_name(),
                            },
                        );
                    }
                }
            }
            Pending::Read {
                file,
                fd,
                iov,
                offset,
                size_before,
            } => {
                if ret < 0 {
                    return;
                }
                let n = ret as usize;
                // A read from offset 0 over bytes already read starts a new read: the one
                // before it ended there. It is a read of the whole file if its bytes reached
                // the file's size (a `pread` of exactly `st_size`, never reading EOF);
                // otherwise it is dropped (a prefix, not a whole version).
                let restarts = offset == 0
                    && file
                        .borrow()
                        .read
                        .as_ref()
                        .is_some_and(|s| !s.bytes.is_empty());
                if restarts {
                    if file.borrow().read.as_ref().is_some_and(|s| s.whole) {
                        self.finish_read(&file, false);
                    } else {
                        file.borrow_mut().read = None;
                    }
                }
                let op = self.op();
                let size = if n > 0 { file_size(t, fd) } else { None };
                let short = asked(t, iov).is_some_and(|a| (n as u64) < a);
                let done = {
                    let mut f = file.borrow_mut();
                    if n > 0 {
                        let bytes = gather(t, iov, n);
                        match &mut f.read {
                            Some(s) if s.bytes.len() as u64 == offset => {
                                s.bytes.extend_from_slice(&bytes)
                            }
                            _ if offset == 0 => {
                                f.read = Some(ReadSession {
                                    bytes,
                                    ..ReadSession::default()
                                })
                            }
                            _ => f.read = None,
                        }
                        if let Some(s) = &mut f.read {
                            let len = Some(s.bytes.len() as u64);
                            s.last_ns = now;
                            s.op = op;
                            s.whole = short || size == len || size_before == len;
                        }
                        false
                    } else {
                        if offset == 0 && f.read.is_none() {
                            f.read = Some(ReadSession {
                                last_ns: now,
                                op,
                                ..ReadSession::default()
                            });
                        }
                        match &mut f.read {
                            Some(s) if s.bytes.len() as u64 == offset => {
                                s.whole = true;
                                true
                            }
                            _ => false,
                        }
                    }
                };
                if done {
                    self.finish_read(&file, true);
                } else {
                    // A whole store read that has not ended (it may never read EOF): the
                    // subject has that version now, e.g. for the refresh it does next.
                    let whole = {
                        let f = file.borrow();
                        let r = f.read.as_ref().filter(|s| s.whole);
                        r.filter(|_| f.what == Watched::Store)
                            .and_then(|s| self.parsed_entries(&s.bytes))
                    };
                    if let Some(entries) = whole {
                        self.saw(now, entries);
                    }
                }
            }
            Pending::Write { file, iov, offset } => {
                if ret <= 0 {
                    return;
                }
                let bytes = gather(t, iov, ret as usize);
                let mut f = file.borrow_mut();
                if let Some(w) = &mut f.write {
                    let at = offset as usize;
                    if w.content.len() < at + bytes.len() {
                        w.content.resize(at + bytes.len(), 0);
                    }
                    w.content[at..at + bytes.len()].copy_from_slice(&bytes);
                    w.calls += 1;
                    w.last_ns = now;
                }
            }
            Pending::Copy {
                file,
                offset,
                bytes,
            } => {
                if ret <= 0 {
                    return;
                }
                let n = ret as usize;
                if let Some(w) = &mut file.borrow_mut().write {
                    let at = offset as usize;
                    if w.content.len() < at + n {
                        w.content.resize(at + n, 0);
                    }
                    match bytes.as_deref().and_then(|b| b.get(..n)) {
                        Some(b) => w.content[at..at + n].copy_from_slice(b),
                        None => w.unknown = true,
                    }
                    w.calls += 1;
                    w.last_ns = now;
                }
            }
            Pending::Truncate { file, len } => {
                if ret == 0 {
                    if let Some(w) = &mut file.borrow_mut().write {
                        w.content.resize(len as usize, 0);
                        w.last_ns = now;
                    }
                }
            }
            Pending::Dup { from } => {
                if ret >= 0 {
                    let fd = ret as i32;
                    if let Some(f) = self.tables.remove(tgid, fd) {
                        self.finish(&f);
                    }
                    self.tables.insert(tgid, fd, from);
                }
            }
            Pending::Recv { sock, iov } => {
                if ret <= 0 {
                    return;
                }
                let redeeming = {
                    let mut s = sock.borrow_mut();
                    let r = s.redeeming;
                    s.redeeming = false;
                    r
                };
                if redeeming {
                    let head = gather(t, iov, (ret as usize).min(64));
                    let outcome = match status_code(&head) {
                        Some(200) => RefreshOutcome::Rotated,
                        Some(400..=499) => RefreshOutcome::Refused,
                        _ => RefreshOutcome::Unavailable,
                    };
                    let token = refresh_token(&sock.borrow().request);
                    if let Some(token) = token {
                        let tg = tag(&token);
                        let entry = self
                            .seen
                            .as_ref()
                            .and_then(|(_, es)| {
                                es.iter()
                                    .find(|e| e.refresh.as_deref() == Some(tg.as_str()))
                            })
                            .map(|e| e.id.clone())
                            .unwrap_or_else(|| "unknown".into());
                        self.emit(
                            now,
                            Event::Refresh {
                                op: self.op(),
                                entry,
                                token: tg,
                                outcome,
                            },
                        );
                    }
                    sock.borrow_mut().request.clear();
                    self.pause(Pause::AfterRedeem);
                } else {
                    sock.borrow_mut().request.clear();
                }
            }
            Pending::Lock { path, inode, op } => {
                (self.sink)(Report::Lock {
                    t_ns: now,
                    path,
                    inode,
                    op,
                    outcome: if ret == 0 { "granted" } else { "refused" },
                });
            }
            Pending::Rename {
                what,
                t: began,
                op,
                hash,
                entries,
            } => {
                if ret != 0 {
                    return;
                }
                let file = what.file_name();
                self.emit(
                    began,
                    Event::WriteBegin {
                        op,
                        hash: hash.clone(),
                        file: file.clone(),
                    },
                );
                self.wrote(now, op, &what, hash, entries);
                if what == Watched::Store {
                    self.pause(Pause::AfterRename);
                }
            }
        }
    }

    /// A process exited or exec'd: its files open only there are finished.
    pub fn process_gone(&mut self, tgid: i32) {
        for f in self.tables.drop_process(tgid) {
            self.finish(&f);
        }
    }

    /// Start an in-place write on `file` if none is in progress (its content is the file's
    /// current bytes); returns the write calls it has had. When this call starts the file's
    /// content over ([`Start::completes`]: a truncate to 0, or a write at offset 0 over a
    /// whole version), an in-progress write that has already had a write call is complete
    /// (its content is a version the file held) and a new one begins.
    fn begin_in_place(
        &mut self,
        t: &dyn Tracee,
        fd: i32,
        file: &Rc<RefCell<OpenFile>>,
        at: u64,
        start: Start,
    ) -> u32 {
        let done = {
            let mut f = file.borrow_mut();
            match &f.write {
                Some(w) if start.completes(w) => f.write.take(),
                Some(w) => return w.calls,
                None => None,
            }
        };
        let what = file.borrow().what.clone();
        if let Some(w) = done {
            self.complete_write(&what, w);
        }
        if what == Watched::Store {
            self.store_write_begins();
        }
        let content = std::fs::read(format!("/proc/{}/fd/{fd}", t.tid())).unwrap_or_default();
        file.borrow_mut().write = Some(WriteSession {
            begin_ns: at,
            op: self.op(),
            content,
            calls: 0,
            last_ns: at,
            unknown: false,
        });
        0
    }

    /// The last descriptor of `file` closed: its read and its in-place write end.
    fn finish(&mut self, file: &Rc<RefCell<OpenFile>>) {
        self.finish_read(file, true);
        let (what, w) = {
            let mut f = file.borrow_mut();
            (f.what.clone(), f.write.take())
        };
        if let Some(w) = w {
            self.complete_write(&what, w);
        }
    }

    /// An in-place write is complete: its `write_begin` and `write`, at the times it began and
    /// had its last write call (which may be before now: the history is ordered by time).
    /// A write with bytes of unknown content is only begun (its `write_begin`, with a hash
    /// no content has): the checkers take its content as unknown from then on.
    fn complete_write(&mut self, what: &Watched, w: WriteSession) {
        if w.unknown {
            self.emit(
                w.begin_ns,
                Event::WriteBegin {
                    op: w.op,
                    hash: UNKNOWN_CONTENT.into(),
                    file: what.file_name(),
                },
            );
            return;
        }
        let hash = content_hash(&w.content);
        let entries = match what {
            Watched::Store => self.entries(&w.content),
            Watched::External(_) => Vec::new(),
        };
        self.emit(
            w.begin_ns,
            Event::WriteBegin {
                op: w.op,
                hash: hash.clone(),
                file: what.file_name(),
            },
        );
        self.wrote(w.last_ns.max(w.begin_ns), w.op, what, hash, entries);
    }

    /// `file`'s read ends (at its time and in its operation); `pause`: this is the moment it
    /// ended (its EOF or close), where `after_load` may hold the subject, not a later call that
    /// found it ended.
    fn finish_read(&mut self, file: &Rc<RefCell<OpenFile>>, pause: bool) {
        let (what, r) = {
            let mut f = file.borrow_mut();
            (f.what.clone(), f.read.take())
        };
        // A read that stopped short of the file's end read no version: dropped.
        let Some(r) = r.filter(|r| r.whole) else {
            return;
        };
        let hash = content_hash(&r.bytes);
        let outcome = if r.bytes.is_empty() {
            ReadOutcome::Corrupt("the file is empty".into())
        } else {
            match what {
                Watched::Store => match serde_json::from_slice::<pool_core::store::Store>(&r.bytes)
                {
                    Ok(_) => ReadOutcome::Parsed,
                    Err(e) => ReadOutcome::Corrupt(e.to_string()),
                },
                Watched::External(_) => match serde_json::from_slice::<serde_json::Value>(&r.bytes)
                {
                    Ok(_) => ReadOutcome::Parsed,
                    Err(e) => ReadOutcome::Corrupt(e.to_string()),
                },
            }
        };
        let loaded = what == Watched::Store && outcome == ReadOutcome::Parsed;
        if loaded {
            let entries = self.entries(&r.bytes);
            self.saw(r.last_ns, entries);
        }
        self.emit(
            r.last_ns,
            Event::Read {
                op: r.op,
                hash,
                outcome,
                file: what.file_name(),
            },
        );
        if loaded && pause {
            // The worker applies it to the first such read of a `load_pool` only.
            self.pause(Pause::AfterLoad);
        }
    }

    fn wrote(
        &mut self,
        at: u64,
        op: u64,
        what: &Watched,
        hash: String,
        entries: Vec<EntrySummary>,
    ) {
        if *what == Watched::Store {
            self.saw(at, entries.clone());
            self.persisted = match self.persisted {
                (o, n) if o == op => (o, n + 1),
                _ => (op, 1),
            };
        }
        self.emit(
            at,
            Event::Write {
                op,
                hash,
                base: None, // not told: the checkers infer it
                entries,
                file: what.file_name(),
            },
        );
    }

    /// The subject had a store version with `entries` at `at`.
    fn saw(&mut self, at: u64, entries: Vec<EntrySummary>) {
        if self.seen.as_ref().is_none_or(|(t, _)| *t <= at) {
            self.seen = Some((at, entries));
        }
    }

    /// This provider's entries in store bytes (empty when they do not parse).
    fn entries(&self, bytes: &[u8]) -> Vec<EntrySummary> {
        self.parsed_entries(bytes).unwrap_or_default()
    }

    /// This provider's entries in store bytes, if they parse.
    fn parsed_entries(&self, bytes: &[u8]) -> Option<Vec<EntrySummary>> {
        serde_json::from_slice::<pool_core::store::Store>(bytes)
            .map(|s| {
                s.entries(&self.cfg.provider)
                    .iter()
                    .map(pool_core::pool::summary)
                    .collect()
            })
            .ok()
    }

    /// A send on the issuer's socket: recognise a token request and hold it at
    /// `before_redeem`.
    fn sending(&self, t: &dyn Tracee, sock: &Rc<RefCell<Socket>>, iov: Iov) {
        let starts = {
            let mut s = sock.borrow_mut();
            let room = REQUEST_PREFIX.saturating_sub(s.request.len());
            if room == 0 || s.redeeming {
                if !s.redeeming {
                    return;
                }
                let more = gather(t, iov, room);
                s.request.extend_from_slice(&more);
                return;
            }
            let more = gather(t, iov, room);
            s.request.extend_from_slice(&more);
            let line_end = s
                .request
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(s.request.len());
            let line = &s.request[..line_end];
            let token_request =
                line.starts_with(b"POST ") && line.windows(12).any(|w| w == b"/oauth/token");
            if token_request {
                s.redeeming = true;
            }
            token_request
        };
        if starts {
            self.pause(Pause::BeforeRedeem);
        }
    }
}

/// `path` (a pointer in the tracee) made absolute against `dirfd` or the tracee's cwd.
fn resolve(t: &dyn Tracee, dirfd: i32, path: u64) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let raw = t.read_mem(path, 4096);
    let end = raw.iter().position(|&b| b == 0)?;
    let p = Path::new(std::ffi::OsStr::from_bytes(&raw[..end]));
    if p.is_absolute() {
        return Some(p.to_path_buf());
    }
    let dir = if dirfd == libc::AT_FDCWD {
        std::fs::read_link(format!("/proc/{}/cwd", t.tid())).ok()?
    } else {
        std::fs::read_link(format!("/proc/{}/fd/{dirfd}", t.tid())).ok()?
    };
    Some(dir.join(p))
}

/// `path` as the tracee sees it (through its root).
fn in_root(t: &dyn Tracee, path: &Path) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/{}/root", t.tid()));
    p.push(path.strip_prefix("/").unwrap_or(path));
    p
}

/// A `u64` in the tracee's memory.
fn word(t: &dyn Tracee, addr: u64) -> Option<u64> {
    let b = t.read_mem(addr, 8);
    (b.len() == 8).then(|| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// Up to `len` bytes at `at` of the regular file descriptor `fd` names (`None` for a pipe, a
/// socket, anything else).
fn read_regular(t: &dyn Tracee, fd: i32, at: u64, len: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let link = format!("/proc/{}/fd/{fd}", t.tid());
    // Checked before opening: opening a pipe's link could block, or take its data.
    std::fs::metadata(&link).ok().filter(|m| m.is_file())?;
    let f = std::fs::File::open(&link).ok()?;
    let size = f.metadata().ok()?.len();
    let mut buf = vec![0; size.saturating_sub(at).min(len) as usize];
    f.read_exact_at(&mut buf, at).ok()?;
    Some(buf)
}

/// How many bytes a read call asked for.
fn asked(t: &dyn Tracee, iov: Iov) -> Option<u64> {
    match iov {
        Iov::Buf(_, len) => Some(len),
        Iov::Vec(addr, count) => {
            let count = (count as usize).min(1024);
            let raw = t.read_mem(addr, count * 16);
            (raw.len() == count * 16).then(|| {
                raw.chunks_exact(16)
                    .map(|c| u64::from_ne_bytes(c[8..].try_into().expect("8 bytes")))
                    .fold(0u64, u64::saturating_add)
            })
        }
    }
}

/// The size of the file a descriptor names.
fn file_size(t: &dyn Tracee, fd: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{}/fd/{fd}", t.tid()))
        .ok()
        .map(|m| m.len())
}

/// A descriptor's file position, from `/proc/PID/fdinfo`.
fn position(t: &dyn Tracee, fd: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", t.tid())).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("pos:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The first `n` bytes of a call's buffers.
fn gather(t: &dyn Tracee, iov: Iov, n: usize) -> Vec<u8> {
    match iov {
        Iov::Buf(addr, len) => t.read_mem(addr, n.min(len as usize)),
        Iov::Vec(addr, count) => {
            let count = (count as usize).min(1024);
            let raw = t.read_mem(addr, count * 16);
            let mut out = Vec::new();
            for c in raw.chunks_exact(16) {
                if out.len() >= n {
                    break;
                }
                let base = u64::from_ne_bytes(c[..8].try_into().expect("8 bytes"));
                let len = u64::from_ne_bytes(c[8..].try_into().expect("8 bytes")) as usize;
                let want = len.min(n - out.len());
                out.extend_from_slice(&t.read_mem(base, want));
            }
            out
        }
    }
}

/// The status code of an HTTP response's first bytes.
fn status_code(head: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(head.get(..head.len().min(32))?).ok()?;
    let mut parts = s.split(' ');
    parts.next().filter(|p| p.starts_with("HTTP/"))?;
    parts.next()?.get(..3)?.parse().ok()
}

/// The `refresh_token` form field of a request's body.
fn refresh_token(request: &[u8]) -> Option<String> {
    let at = request.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body = std::str::from_utf8(&request[at + 4..]).ok()?;
    body.split('&').find_map(|kv| {
        let v = kv.strip_prefix("refresh_token=")?;
        Some(percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a write call or truncate starts the file's content, for an in-place write in progress
/// on it ([`Observed::begin_in_place`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Within the content: the write in progress goes on.
    Within,
    /// A truncate to 0: the content starts over.
    Over,
    /// A write at offset 0: the content starts over if what the write in progress left is a
    /// whole version (it parses); a pool that writes its body and then a header at 0 is still
    /// in one write.
    AtZero,
}

impl Start {
    fn at(offset: u64) -> Start {
        if offset == 0 {
            Start::AtZero
        } else {
            Start::Within
        }
    }

    fn truncate(len: u64) -> Start {
        if len == 0 {
            Start::Over
        } else {
            Start::Within
        }
    }

    /// Whether the write in progress `w` is complete at this call.
    fn completes(self, w: &WriteSession) -> bool {
        w.calls > 0
            && match self {
                Start::Within => false,
                Start::Over => true,
                Start::AtZero => {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&w.content).is_ok()
                }
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_request_body_gives_its_refresh_token() {
        let req = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n\r\ngrant_type=refresh_token&refresh_token=r%2Bx+y";
        assert_eq!(refresh_token(req).as_deref(), Some("r+x y"));
        assert_eq!(refresh_token(b"POST /oauth/token HTTP/1.1\r\n"), None);
    }

    use std::collections::HashMap;
    use std::fs::{File, OpenOptions};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    use std::sync::Mutex;

    /// A traced process of the test: its descriptors are this test process's (so `/proc`
    /// answers for them), its thread group is its own, its memory a map of buffers.
    struct Fake {
        tgid: i32,
        mem: HashMap<u64, Vec<u8>>,
    }

    impl Tracee for Fake {
        fn tid(&self) -> i32 {
            std::process::id() as i32
        }
        fn tgid(&self) -> i32 {
            self.tgid
        }
        fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
            let b = self.mem.get(&addr).cloned().unwrap_or_default();
            b[..len.min(b.len())].to_vec()
        }
    }

    const PATH: u64 = 0x1000;
    const BUF: u64 = 0x2000;

    /// An observer of the store in a temporary directory; the events it emits, in order.
    struct Rig {
        obs: Observed,
        op: Arc<AtomicU64>,
        events: Arc<Mutex<Vec<Event>>>,
        store: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        fn new() -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("auth.json");
            std::fs::write(&store, b"{}").unwrap();
            let events = Arc::new(Mutex::new(Vec::new()));
            let ev = events.clone();
            // A pause's sender is dropped at once: the observer goes on.
            let sink: Sink = Box::new(move |r| {
                if let Report::Event { event, .. } = r {
                    ev.lock().unwrap().push(event);
                }
            });
            let cfg = Config {
                store: store.clone(),
                external: Vec::new(),
                issuer_port: 0,
                provider: "anthropic".into(),
            };
            let op = Arc::new(AtomicU64::new(0));
            Rig {
                obs: Observed::new(cfg, sink, op.clone()),
                op,
                events,
                store,
                _dir: dir,
            }
        }

        fn process(&self, tgid: i32) -> Fake {
            let mut path = std::os::unix::ffi::OsStrExt::as_bytes(self.store.as_os_str()).to_vec();
            path.push(0);
            Fake {
                tgid,
                mem: HashMap::from([(PATH, path)]),
            }
        }

        /// `p` opens the store (really, and through the observer): the file and its fd.
        fn open(&mut self, p: &Fake, write: bool) -> (File, i32) {
            let f = OpenOptions::new()
                .read(true)
                .write(write)
                .open(&self.store)
                .unwrap();
            let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
            let call = Call::Open {
                dirfd: libc::AT_FDCWD,
                path: PATH,
                flags,
            };
            let pending = self.obs.entry(p, call).unwrap();
            self.obs.exit(p, pending, f.as_raw_fd() as i64);
            let fd = f.as_raw_fd();
            (f, fd)
        }

        /// `p` opens the store `O_WRONLY | O_TRUNC` (shutil.copyfile's destination).
        fn open_trunc(&mut self, p: &Fake) -> (File, i32) {
            let call = Call::Open {
                dirfd: libc::AT_FDCWD,
                path: PATH,
                flags: libc::O_WRONLY | libc::O_TRUNC,
            };
            let pending = self.obs.entry(p, call).unwrap();
            let f = File::create(&self.store).unwrap();
            self.obs.exit(p, pending, f.as_raw_fd() as i64);
            let fd = f.as_raw_fd();
            (f, fd)
        }

        /// `p` copies `src` (from offset 0) into `dst` at its position, as `sendfile` does:
        /// the observer sees the call, never the bytes.
        fn sendfile(&mut self, p: &mut Fake, dst: &mut File, src: &File) {
            use std::io::{Read, Write};
            const OFF: u64 = 0x6000;
            p.mem.insert(OFF, 0u64.to_ne_bytes().to_vec());
            let call = Call::Copy {
                src: src.as_raw_fd(),
                src_off: Some(OFF),
                dst: dst.as_raw_fd(),
                dst_off: None,
                len: 1 << 23,
            };
            let pending = self.obs.entry(p, call).unwrap();
            let mut bytes = Vec::new();
            (&*src).read_to_end(&mut bytes).unwrap();
            dst.write_all(&bytes).unwrap();
            self.obs.exit(p, pending, bytes.len() as i64);
        }

        fn truncate(&mut self, p: &Fake, f: &File, len: u64) {
            let fd = f.as_raw_fd();
            let pending = self.obs.entry(p, Call::Truncate { fd, len }).unwrap();
            f.set_len(len).unwrap();
            self.obs.exit(p, pending, 0);
        }

        fn pwrite(&mut self, p: &mut Fake, f: &File, data: &[u8], at: u64) {
            p.mem.insert(BUF, data.to_vec());
            let call = Call::Write {
                fd: f.as_raw_fd(),
                iov: Iov::Buf(BUF, data.len() as u64),
                offset: Some(at),
            };
            let pending = self.obs.entry(p, call).unwrap();
            f.write_all_at(data, at).unwrap();
            self.obs.exit(p, pending, data.len() as i64);
        }

        /// A `pread` of `len` bytes at `at`; what it read.
        fn pread(&mut self, p: &mut Fake, f: &File, len: usize, at: u64) -> Vec<u8> {
            let call = Call::Read {
                fd: f.as_raw_fd(),
                iov: Iov::Buf(BUF, len as u64),
                offset: Some(at),
            };
            let pending = self.obs.entry(p, call).unwrap();
            let mut buf = vec![0; len];
            let n = f.read_at(&mut buf, at).unwrap();
            buf.truncate(n);
            p.mem.insert(BUF, buf.clone());
            self.obs.exit(p, pending, n as i64);
            buf
        }

        /// `p` POSTs refresh token `rt` to the issuer and gets a 200: the refresh's entry.
        fn refresh(&mut self, p: &mut Fake, rt: &str) -> String {
            const ADDR: u64 = 0x3000;
            const REQ: u64 = 0x4000;
            const RESP: u64 = 0x5000;
            let mut sa = (libc::AF_INET as u16).to_ne_bytes().to_vec();
            sa.extend_from_slice(&[0; 14]); // port 0: the rig's issuer port
            let req = format!(
                "POST /oauth/token HTTP/1.1\r\n\r\ngrant_type=refresh_token&refresh_token={rt}"
            );
            let resp = b"HTTP/1.1 200 OK\r\n";
            p.mem.insert(ADDR, sa);
            p.mem.insert(REQ, req.clone().into_bytes());
            p.mem.insert(RESP, resp.to_vec());
            let connect = Call::Connect {
                fd: 99,
                addr: ADDR,
                len: 16,
            };
            assert!(self.obs.entry(p, connect).is_none());
            let send = Call::Write {
                fd: 99,
                iov: Iov::Buf(REQ, req.len() as u64),
                offset: None,
            };
            assert!(self.obs.entry(p, send).is_none());
            let recv = Call::Read {
                fd: 99,
                iov: Iov::Buf(RESP, 64),
                offset: None,
            };
            let pending = self.obs.entry(p, recv).unwrap();
            self.obs.exit(p, pending, resp.len() as i64);
            let last = self.events.lock().unwrap().pop();
            match last {
                Some(Event::Refresh { entry, .. }) => entry,
                other => panic!("not a refresh: {other:?}"),
            }
        }

        fn close(&mut self, p: &Fake, fd: i32) {
            assert!(self.obs.entry(p, Call::Close { fd }).is_none());
        }

        /// The hashes of the `write_begin`s emitted so far.
        fn begun(&self) -> Vec<String> {
            self.events
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| match e {
                    Event::WriteBegin { hash, .. } => Some(hash.clone()),
                    _ => None,
                })
                .collect()
        }

        /// (kind, op, hash) of every read and write emitted so far.
        fn seen(&self) -> Vec<(&'static str, u64, String)> {
            self.events
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| match e {
                    Event::Read { op, hash, .. } => Some(("read", *op, hash.clone())),
                    Event::Write { op, hash, .. } => Some(("write", *op, hash.clone())),
                    _ => None,
                })
                .collect()
        }
    }

    const V1: &[u8] = br#"{"credential_pool":{"anthropic":[]},"v":1}"#;
    const V2: &[u8] = br#"{"credential_pool":{"anthropic":[]},"v":22}"#;

    #[test]
    fn each_truncate_and_write_cycle_on_a_kept_descriptor_is_its_own_write() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let mut b = rig.process(20);
        let (wf, wfd) = rig.open(&a, true);
        // Operation 1 of the writer: truncate, write V1 (ftruncate + pwrite at 0).
        rig.op.store(1, Ordering::SeqCst);
        rig.truncate(&a, &wf, 0);
        rig.pwrite(&mut a, &wf, V1, 0);
        // Another process reads V1 whole, to EOF.
        rig.op.store(0, Ordering::SeqCst);
        let (rf, rfd) = rig.open(&b, false);
        assert_eq!(rig.pread(&mut b, &rf, 4096, 0), V1);
        assert!(rig.pread(&mut b, &rf, 4096, V1.len() as u64).is_empty());
        rig.close(&b, rfd);
        // Operation 2 of the writer, through the same descriptor: write V2 the same way,
        // then (Python's `seek(0); write(); truncate()`) once more with V1's bytes.
        rig.op.store(2, Ordering::SeqCst);
        rig.truncate(&a, &wf, 0);
        rig.pwrite(&mut a, &wf, V2, 0);
        rig.op.store(3, Ordering::SeqCst);
        rig.pwrite(&mut a, &wf, V1, 0);
        rig.truncate(&a, &wf, V1.len() as u64);
        rig.close(&a, wfd);
        let (h1, h2) = (content_hash(V1), content_hash(V2));
        assert_eq!(
            rig.seen(),
            vec![
                ("read", 0, h1.clone()),
                ("write", 1, h1.clone()),
                ("write", 2, h2),
                ("write", 3, h1),
            ]
        );
    }

    #[test]
    fn a_write_in_chunks_after_a_truncate_is_one_write() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let (wf, wfd) = rig.open(&a, true);
        rig.truncate(&a, &wf, 0);
        for (i, chunk) in V2.chunks(8).enumerate() {
            rig.pwrite(&mut a, &wf, chunk, 8 * i as u64);
        }
        rig.close(&a, wfd);
        assert_eq!(rig.seen(), vec![("write", 0, content_hash(V2))]);
    }

    /// A pool that writes its body and then a header at offset 0: the write at 0 does not
    /// start the content over (what was there does not parse: it is the same write's half).
    /// One that rewrites a whole version from 0 without truncating does.
    #[test]
    fn a_header_written_at_zero_after_the_body_is_one_write() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let (wf, wfd) = rig.open(&a, true);
        rig.truncate(&a, &wf, 0);
        rig.pwrite(&mut a, &wf, &V2[8..], 8);
        rig.pwrite(&mut a, &wf, &V2[..8], 0);
        rig.pwrite(&mut a, &wf, V1, 0);
        rig.truncate(&a, &wf, V1.len() as u64);
        rig.close(&a, wfd);
        assert_eq!(
            rig.seen(),
            vec![
                ("write", 0, content_hash(V2)),
                ("write", 0, content_hash(V1))
            ]
        );
    }

    #[test]
    fn reads_of_exactly_the_size_on_a_kept_descriptor_are_each_a_read() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let mut b = rig.process(20);
        std::fs::write(&rig.store, V1).unwrap();
        let (rf, rfd) = rig.open(&b, false);
        // A read of exactly the file's size, never reading EOF...
        rig.op.store(1, Ordering::SeqCst);
        assert_eq!(rig.pread(&mut b, &rf, V1.len(), 0), V1);
        // ...then another process writes V2, and the reader reads again from 0: first a
        // prefix (a peek, dropped: not the whole file), then the whole of it.
        rig.op.store(2, Ordering::SeqCst);
        let (wf, wfd) = rig.open(&a, true);
        rig.truncate(&a, &wf, 0);
        rig.pwrite(&mut a, &wf, V2, 0);
        rig.close(&a, wfd);
        rig.op.store(3, Ordering::SeqCst);
        assert_eq!(rig.pread(&mut b, &rf, 4, 0), &V2[..4]);
        assert_eq!(rig.pread(&mut b, &rf, V2.len(), 0), V2);
        rig.op.store(0, Ordering::SeqCst);
        rig.close(&b, rfd);
        let (h1, h2) = (content_hash(V1), content_hash(V2));
        assert_eq!(
            rig.seen(),
            // Emitted in this order: the first read is found ended at the third's start.
            vec![("write", 2, h2.clone()), ("read", 1, h1), ("read", 3, h2)]
        );
    }

    #[test]
    fn a_refresh_after_a_whole_read_that_has_not_ended_is_for_that_reads_entry() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let store = br#"{"version":1,"credential_pool":{"anthropic":[{"id":"e1","label":"x","auth_type":"oauth","priority":0,"source":"manual","refresh_token":"rt-1"}]}}"#;
        std::fs::write(&rig.store, store).unwrap();
        let (rf, _rfd) = rig.open(&a, true);
        rig.op.store(1, Ordering::SeqCst);
        assert_eq!(rig.pread(&mut a, &rf, store.len(), 0), store);
        // The read of exactly the file's size has not ended (no EOF, no close) when the
        // process POSTs the refresh token it holds.
        assert_eq!(rig.refresh(&mut a, "rt-1"), "e1");
    }

    /// A store with entry e1 holding refresh token `rt`.
    fn store_with(rt: &str) -> Vec<u8> {
        format!(r#"{{"version":1,"credential_pool":{{"anthropic":[{{"id":"e1","auth_type":"oauth","refresh_token":"{rt}"}}]}}}}"#).into_bytes()
    }

    #[test]
    fn a_write_emitted_late_does_not_hide_a_newer_version_from_a_refresh() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let mut b = rig.process(11); // another process of the same subject's tree
        let (wf, _wfd) = rig.open(&a, true);
        rig.truncate(&a, &wf, 0);
        rig.pwrite(&mut a, &wf, &store_with("rt-0"), 0);
        // The other process rotates the token and writes (complete at its close)...
        let (bf, bfd) = rig.open(&b, true);
        rig.truncate(&b, &bf, 0);
        rig.pwrite(&mut b, &bf, &store_with("rt-1"), 0);
        rig.close(&b, bfd);
        // ...then the first starts its next write, which completes its first one (older),
        // and POSTs the newer token.
        rig.truncate(&a, &wf, 0);
        assert_eq!(rig.refresh(&mut a, "rt-1"), "e1");
    }

    #[test]
    fn a_read_that_stops_before_the_end_is_no_read() {
        let mut rig = Rig::new();
        let mut b = rig.process(20);
        std::fs::write(&rig.store, V2).unwrap();
        // A peek at the first bytes, closed: no read.
        let (rf, rfd) = rig.open(&b, false);
        assert_eq!(rig.pread(&mut b, &rf, 16, 0), &V2[..16]);
        rig.close(&b, rfd);
        // A reader cut off by its process's exit in the middle: no read.
        let (rf2, _) = rig.open(&b, false);
        rig.pread(&mut b, &rf2, 8, 0);
        rig.pread(&mut b, &rf2, 8, 8);
        rig.obs.process_gone(20);
        assert_eq!(rig.seen(), vec![]);
        // A read that got fewer bytes than it asked for reached the end, even without EOF.
        let (rf3, rfd3) = rig.open(&b, false);
        rig.op.store(1, Ordering::SeqCst);
        assert_eq!(rig.pread(&mut b, &rf3, 4096, 0), V2);
        rig.close(&b, rfd3);
        assert_eq!(rig.seen(), vec![("read", 1, content_hash(V2))]);
    }

    #[test]
    fn a_read_to_the_end_during_an_in_place_write_is_a_read_of_what_it_found() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let mut b = rig.process(20);
        let half = &V2[..V2.len() / 2];
        let (wf, _wfd) = rig.open(&a, true);
        rig.truncate(&a, &wf, 0);
        rig.pwrite(&mut a, &wf, half, 0);
        // Mid-write, one reader reads to EOF, another gets a short read and closes: both read
        // the half-written file (a torn read, for the checker to find).
        let (rf, rfd) = rig.open(&b, false);
        assert_eq!(rig.pread(&mut b, &rf, 8, 0), &half[..8]);
        assert_eq!(rig.pread(&mut b, &rf, 4096, 8), &half[8..]);
        assert!(rig.pread(&mut b, &rf, 4096, half.len() as u64).is_empty());
        rig.close(&b, rfd);
        let (rf, rfd) = rig.open(&b, false);
        assert_eq!(rig.pread(&mut b, &rf, 4096, 0), half);
        rig.close(&b, rfd);
        let h = content_hash(half);
        assert_eq!(rig.seen(), vec![("read", 0, h.clone()), ("read", 0, h)]);
    }

    #[test]
    fn a_copy_into_the_store_is_a_write_of_the_sources_bytes() {
        let mut rig = Rig::new();
        let mut a = rig.process(10);
        let tmp = rig.store.with_file_name("auth.json.tmp");
        std::fs::write(&tmp, V2).unwrap();
        let src = File::open(&tmp).unwrap();
        let (mut dst, dfd) = rig.open_trunc(&a);
        rig.sendfile(&mut a, &mut dst, &src);
        rig.close(&a, dfd);
        assert_eq!(std::fs::read(&rig.store).unwrap(), V2);
        assert_eq!(rig.seen(), vec![("write", 0, content_hash(V2))]);
    }

    #[test]
    fn a_copy_from_a_source_that_cannot_be_read_is_a_write_of_unknown_content() {
        let mut rig = Rig::new();
        let a = rig.process(10);
        // A socket as the source (as `splice` from a pipe): its bytes cannot be read aside.
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut tx, V2).unwrap();
        let (mut dst, dfd) = rig.open_trunc(&a);
        let call = Call::Copy {
            src: rx.as_raw_fd(),
            src_off: None,
            dst: dst.as_raw_fd(),
            dst_off: None,
            len: 4096,
        };
        let pending = rig.obs.entry(&a, call).unwrap();
        std::io::Write::write_all(&mut dst, V2).unwrap();
        rig.obs.exit(&a, pending, V2.len() as i64);
        rig.close(&a, dfd);
        // Begun, never completed: no write of the empty file, no content claimed.
        assert_eq!(rig.seen(), vec![]);
        assert_eq!(rig.begun(), vec![UNKNOWN_CONTENT.to_string()]);
    }

    #[test]
    fn status_lines_give_codes() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 400 Bad"), Some(400));
        assert_eq!(status_code(b"garbage"), None);
    }
}

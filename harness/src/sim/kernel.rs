//! The simulated kernel's state and its system calls, with no scheduler in it: every method is
//! one step that another process cannot observe half-done. [`super::os::SimOs`] puts this state
//! behind the scheduler's mutex; the tests here exercise the semantics directly.
//!
//! What it models (Linux semantics, reduced to what the pool can observe):
//! - a directory tree of paths -> inodes; an inode lives on while an open file description
//!   refers to it, even after `rename` replaced its directory entry;
//! - open file descriptions (OFDs) with their own offset and owning process; `O_TRUNC`;
//!   `write(2)` at the OFD's offset (the pool writes in chunks, so a reader can land between);
//! - `fsync` of a file and of a directory, and [`KernelState::crash`]: the state after a power
//!   loss, where unsynced data and unsynced directory entries are gone, and an `O_TRUNC` is
//!   kept (a truncation is durable at once: the worst case of a journaled metadata change, so
//!   an in-place write interrupted by a crash leaves an empty or partial file, not the old one);
//! - `flock`: one exclusive lock per inode, owned by an OFD, released by `LOCK_UN` or by the
//!   close of that OFD. Keyed by inode, so a lock on a path that `rename` later replaces locks
//!   the old file, not the new one;
//! - POSIX record locks (`fcntl(F_SETLK)`, whole file, exclusive), owned by the *process*, and
//!   dropped when that process closes *any* descriptor of the file (POSIX.1-2008, `fcntl`:
//!   "all locks associated with a file for a given process shall be removed when a file
//!   descriptor for that file is closed by that process").

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// A simulated process (workers count from 1; 0 is the harness).
pub type Proc = u32;
/// An inode number.
pub type Ino = usize;
/// An open file description.
pub type OfdId = u64;

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    /// What survives a crash: the content at the last `fsync`.
    durable: Vec<u8>,
    mode: u32,
    /// A temp file its creator has not renamed yet: only its creator can name it.
    private: bool,
    /// The path that names it now, or named it last (a renamed-over or unlinked file keeps
    /// its last name): the key of its steps' scheduling points ([`KernelState::key_of`]).
    name: PathBuf,
}

#[derive(Clone, Debug)]
struct Ofd {
    ino: Ino,
    proc: Proc,
    pos: usize,
}

/// The whole kernel: files, open file descriptions, locks.
#[derive(Clone, Debug, Default)]
pub struct KernelState {
    inodes: Vec<Inode>,
    dir: BTreeMap<PathBuf, Ino>,
    /// The directory entries as of the last directory `fsync` (what a crash leaves).
    durable_dir: BTreeMap<PathBuf, Ino>,
    ofds: BTreeMap<OfdId, Ofd>,
    next_ofd: OfdId,
    next_tmp: u64,
    flocks: BTreeMap<Ino, OfdId>,
    posix: BTreeMap<Ino, Proc>,
    /// The machine never crashes ([`KernelState::never_crashes`]): nothing reads what `fsync`
    /// makes durable, so it is not kept.
    uncrashable: bool,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn ebadf(ofd: OfdId) -> io::Error {
    io::Error::other(format!("bad file description {ofd}"))
}

impl KernelState {
    pub fn new() -> KernelState {
        KernelState::default()
    }

    /// Setup only: a file with this content, durable (as if synced long ago).
    pub fn install(&mut self, path: &Path, bytes: &[u8]) {
        let ino = self.inodes.len();
        self.inodes.push(Inode {
            data: bytes.to_vec(),
            durable: bytes.to_vec(),
            mode: 0o600,
            private: false,
            name: path.to_path_buf(),
        });
        self.dir.insert(path.to_path_buf(), ino);
        self.durable_dir.insert(path.to_path_buf(), ino);
    }

    /// The inode a path names now.
    pub fn ino_of(&self, path: &Path) -> Option<Ino> {
        self.dir.get(path).copied()
    }

    /// The content of the file a path names (no descriptor involved; for the harness).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.ino_of(path).map(|i| self.inodes[i].data.clone())
    }

    /// The mode of the file a path names.
    pub fn mode(&self, path: &Path) -> Option<u32> {
        self.ino_of(path).map(|i| self.inodes[i].mode)
    }

    fn new_inode(&mut self, name: &Path) -> Ino {
        self.inodes.push(Inode {
            mode: 0o600,
            name: name.to_path_buf(),
            ..Inode::default()
        });
        self.inodes.len() - 1
    }

    fn new_ofd(&mut self, proc: Proc, ino: Ino) -> OfdId {
        self.next_ofd += 1;
        self.ofds.insert(self.next_ofd, Ofd { ino, proc, pos: 0 });
        self.next_ofd
    }

    /// `open(2)`: with `create`, a missing file is created 0600; with `trunc`, `O_TRUNC`.
    pub fn open(
        &mut self,
        proc: Proc,
        path: &Path,
        create: bool,
        trunc: bool,
    ) -> io::Result<OfdId> {
        let ino = match self.ino_of(path) {
            Some(i) => i,
            None if create => {
                let i = self.new_inode(path);
                self.dir.insert(path.to_path_buf(), i);
                i
            }
            None => return Err(not_found(path)),
        };
        if trunc {
            // The truncation is metadata: a journaling file system commits it on its own,
            // long before the data written after it (ext4's zero-length files after a crash).
            // Modelled as its worst case: durable at once, the later data only at `fsync`.
            let i = &mut self.inodes[ino];
            i.data.clear();
            i.durable.clear();
        }
        self.inodes[ino].private = false;
        Ok(self.new_ofd(proc, ino))
    }

    /// A new uniquely named 0600 file beside `beside` (`O_CREAT|O_EXCL`), open for writing.
    pub fn create_temp(&mut self, proc: Proc, beside: &Path) -> (OfdId, PathBuf) {
        self.next_tmp += 1;
        let name = beside
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("store");
        let path = beside
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!(".{name}.{}.tmp", self.next_tmp));
        let ino = self.new_inode(&path);
        self.inodes[ino].private = true;
        self.dir.insert(path.clone(), ino);
        (self.new_ofd(proc, ino), path)
    }

    /// `write(2)` of all of `bytes` at the description's offset.
    pub fn write(&mut self, ofd: OfdId, bytes: &[u8]) -> io::Result<()> {
        let o = self.ofds.get_mut(&ofd).ok_or_else(|| ebadf(ofd))?;
        let data = &mut self.inodes[o.ino].data;
        let end = o.pos + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[o.pos..end].copy_from_slice(bytes);
        o.pos = end;
        Ok(())
    }

    /// The machine this kernel runs will never crash: `fsync` and directory `fsync` keep no
    /// durable state from now on (only [`KernelState::crash`] reads it; it refuses to run
    /// then). What every other call returns is unchanged.
    pub fn never_crashes(&mut self) {
        self.uncrashable = true;
    }

    /// `fsync(2)`: the file's content becomes durable.
    pub fn fsync(&mut self, ofd: OfdId) -> io::Result<()> {
        let ino = self.ofds.get(&ofd).ok_or_else(|| ebadf(ofd))?.ino;
        if self.uncrashable {
            return Ok(());
        }
        let i = &mut self.inodes[ino];
        i.durable = i.data.clone();
        Ok(())
    }

    /// `fsync(2)` of a directory: its entries become durable.
    pub fn fsync_dir(&mut self, dir: &Path) {
        if self.uncrashable {
            return;
        }
        self.durable_dir.retain(|p, _| p.parent() != Some(dir));
        for (p, i) in &self.dir {
            if p.parent() == Some(dir) {
                self.durable_dir.insert(p.clone(), *i);
            }
        }
    }

    /// `close(2)`: the description goes; its `flock` goes with it, and so do the POSIX
    /// record locks its process holds on the file. Returns whether any lock was released.
    pub fn close(&mut self, ofd: OfdId) -> io::Result<bool> {
        let o = self.ofds.remove(&ofd).ok_or_else(|| ebadf(ofd))?;
        let mut released = false;
        if self.flocks.get(&o.ino) == Some(&ofd) {
            self.flocks.remove(&o.ino);
            released = true;
        }
        if self.posix.get(&o.ino) == Some(&o.proc) {
            self.posix.remove(&o.ino);
            released = true;
        }
        Ok(released)
    }

    /// `exit(2)`: the process's descriptions are all closed (and with them its `flock`s and
    /// POSIX record locks). Returns whether any lock was released.
    pub fn exit(&mut self, proc: Proc) -> bool {
        let mine: Vec<OfdId> = self
            .ofds
            .iter()
            .filter(|(_, o)| o.proc == proc)
            .map(|(id, _)| *id)
            .collect();
        let mut released = false;
        for ofd in mine {
            released |= self.close(ofd).unwrap_or(false);
        }
        let before = self.posix.len();
        self.posix.retain(|_, owner| *owner != proc);
        released || self.posix.len() != before
    }

    /// Open, read the whole file, close: what `std::fs::read` does. `None` if missing. The
    /// close drops the process's POSIX record locks on the file, as in real life.
    pub fn read_file(&mut self, proc: Proc, path: &Path) -> (Option<Vec<u8>>, bool) {
        let Ok(ofd) = self.open(proc, path, false, false) else {
            return (None, false);
        };
        let ino = self.ofds[&ofd].ino;
        let bytes = self.inodes[ino].data.clone();
        let released = self.close(ofd).unwrap_or(false);
        (Some(bytes), released)
    }

    /// `rename(2)`: `to`'s directory entry now names `from`'s inode. Open descriptions of the
    /// replaced inode keep it (and any lock on it).
    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let ino = self.dir.remove(from).ok_or_else(|| not_found(from))?;
        self.inodes[ino].private = false;
        self.inodes[ino].name = to.to_path_buf();
        self.dir.insert(to.to_path_buf(), ino);
        Ok(())
    }

    /// The key of every step on `ofd`'s file: the path that names the file now or named it
    /// last. A step that reaches a file through a path has that path as its key, and the
    /// file's key changes only by a rename from that path (a step keyed by both paths), so
    /// two steps on one file always share a key. `None` for a closed description.
    pub fn key_of(&self, ofd: OfdId) -> Option<PathBuf> {
        self.ofds.get(&ofd).map(|o| self.inodes[o.ino].name.clone())
    }

    /// Whether `path` names a temp file its creator has not renamed yet (no other process
    /// can name it).
    pub fn is_private_path(&self, path: &Path) -> bool {
        self.ino_of(path).is_some_and(|i| self.inodes[i].private)
    }

    /// The keys of what [`KernelState::exit`] of `proc` touches: the files of its open
    /// descriptions and the files it holds a POSIX record lock on (sorted, no duplicates).
    /// Empty: its exit changes nothing another process can observe.
    pub fn exit_keys(&self, proc: Proc) -> Vec<PathBuf> {
        let mut keys: Vec<PathBuf> = self
            .ofds
            .values()
            .filter(|o| o.proc == proc)
            .map(|o| o.ino)
            .chain(
                self.posix
                    .iter()
                    .filter(|(_, owner)| **owner == proc)
                    .map(|(ino, _)| *ino),
            )
            .map(|ino| self.inodes[ino].name.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether `ofd`'s file is a temp file not renamed yet (and opened by no other path): no
    /// other process can observe or change what a step on it does.
    pub fn is_private(&self, ofd: OfdId) -> bool {
        self.ofds
            .get(&ofd)
            .is_some_and(|o| self.inodes[o.ino].private)
    }

    /// `unlink(2)`.
    pub fn unlink(&mut self, path: &Path) -> io::Result<()> {
        self.dir
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    /// `flock(LOCK_EX|LOCK_NB)` through `ofd`: whether it is granted.
    pub fn try_flock(&mut self, ofd: OfdId) -> io::Result<bool> {
        let ino = self.ofds.get(&ofd).ok_or_else(|| ebadf(ofd))?.ino;
        match self.flocks.get(&ino) {
            Some(&holder) if holder != ofd => Ok(false),
            _ => {
                self.flocks.insert(ino, ofd);
                Ok(true)
            }
        }
    }

    /// The inode `ofd` is open on.
    pub fn ino_of_ofd(&self, ofd: OfdId) -> io::Result<Ino> {
        self.ofds.get(&ofd).map(|o| o.ino).ok_or_else(|| ebadf(ofd))
    }

    /// Grant the `flock` of `ofd`'s file to `ofd`, when nothing else can hold it: the caller
    /// holds the file's gate (`sim::os`, `SharedKernel::flock_gated`), which a holder keeps
    /// until the kernel drops its lock. Panics if the lock is held all the same.
    pub fn grant_flock(&mut self, ofd: OfdId) -> io::Result<()> {
        let ino = self.ino_of_ofd(ofd)?;
        let before = self.flocks.insert(ino, ofd);
        assert!(
            before.is_none(),
            "a gated flock granted while {before:?} held it"
        );
        Ok(())
    }

    /// Whether closing `ofd` would drop a POSIX record lock (its process holds one on the
    /// file). Only that process can change the answer.
    pub fn close_drops_posix(&self, ofd: OfdId) -> bool {
        self.ofds
            .get(&ofd)
            .is_some_and(|o| self.posix.get(&o.ino) == Some(&o.proc))
    }

    /// The content of the file `ofd` is open on (for tests).
    #[cfg(test)]
    pub fn contents_of(&self, ofd: OfdId) -> Option<Vec<u8>> {
        self.ofds.get(&ofd).map(|o| self.inodes[o.ino].data.clone())
    }

    /// Whether a `flock` is held on inode `ino`.
    pub fn flocked(&self, ino: Ino) -> bool {
        self.flocks.contains_key(&ino)
    }

    /// `flock(LOCK_UN)` through `ofd`.
    pub fn funlock(&mut self, ofd: OfdId) -> io::Result<()> {
        let ino = self.ofds.get(&ofd).ok_or_else(|| ebadf(ofd))?.ino;
        if self.flocks.get(&ino) == Some(&ofd) {
            self.flocks.remove(&ino);
        }
        Ok(())
    }

    /// `fcntl(F_SETLK, F_WRLCK)` on the whole file through `ofd`: whether it is granted. The
    /// owner is the process, so a process never conflicts with itself.
    pub fn try_posix_lock(&mut self, ofd: OfdId) -> io::Result<bool> {
        let o = self.ofds.get(&ofd).ok_or_else(|| ebadf(ofd))?;
        let (ino, proc) = (o.ino, o.proc);
        match self.posix.get(&ino) {
            Some(&owner) if owner != proc => Ok(false),
            _ => {
                self.posix.insert(ino, proc);
                Ok(true)
            }
        }
    }

    /// `fcntl(F_SETLK, F_UNLCK)` through `ofd`.
    pub fn posix_unlock(&mut self, ofd: OfdId) -> io::Result<()> {
        let o = self.ofds.get(&ofd).ok_or_else(|| ebadf(ofd))?;
        if self.posix.get(&o.ino) == Some(&o.proc) {
            self.posix.remove(&o.ino);
        }
        Ok(())
    }

    /// Who holds the `flock` on the file a path names now.
    pub fn flock_holder(&self, path: &Path) -> Option<OfdId> {
        self.ino_of(path).and_then(|i| self.flocks.get(&i).copied())
    }

    /// Which process holds the POSIX record lock on the file a path names now.
    pub fn posix_owner(&self, path: &Path) -> Option<Proc> {
        self.ino_of(path).and_then(|i| self.posix.get(&i).copied())
    }

    /// The state after a power loss: only durable directory entries and durable file contents
    /// remain; no descriptions, no locks.
    pub fn crash(&self) -> KernelState {
        assert!(
            !self.uncrashable,
            "a kernel told it never crashes kept no durable state"
        );
        let mut k = KernelState {
            inodes: self.inodes.clone(),
            dir: self.durable_dir.clone(),
            durable_dir: self.durable_dir.clone(),
            next_tmp: self.next_tmp,
            next_ofd: self.next_ofd,
            ..KernelState::default()
        };
        for i in &mut k.inodes {
            i.data = i.durable.clone();
        }
        // A rename the crash took back takes its name back too.
        for (p, &i) in &k.dir {
            k.inodes[i].name = p.clone();
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from("/sim").join(s)
    }

    #[test]
    fn o_trunc_and_chunked_writes_are_visible_between_chunks() {
        let mut k = KernelState::new();
        k.install(&p("auth.json"), b"old content");
        let f = k.open(1, &p("auth.json"), true, true).unwrap();
        assert_eq!(k.read_file(2, &p("auth.json")).0.unwrap(), b"");
        k.write(f, b"new ").unwrap();
        assert_eq!(k.read_file(2, &p("auth.json")).0.unwrap(), b"new ");
        k.write(f, b"content").unwrap();
        k.close(f).unwrap();
        assert_eq!(k.contents(&p("auth.json")).unwrap(), b"new content");
        assert_eq!(k.mode(&p("auth.json")), Some(0o600));
        assert_eq!(k.read_file(2, &p("missing")).0, None);
    }

    #[test]
    fn rename_replaces_the_entry_but_open_descriptions_keep_the_old_inode() {
        let mut k = KernelState::new();
        k.install(&p("auth.json"), b"v1");
        let old = k.open(1, &p("auth.json"), false, false).unwrap();
        let (t, tmp) = k.create_temp(2, &p("auth.json"));
        k.write(t, b"v2").unwrap();
        k.close(t).unwrap();
        let before = k.ino_of(&p("auth.json"));
        k.rename(&tmp, &p("auth.json")).unwrap();
        assert_ne!(k.ino_of(&p("auth.json")), before);
        assert_eq!(k.contents(&p("auth.json")).unwrap(), b"v2");
        assert!(k.contents(&tmp).is_none());
        // The old description still writes to the old inode, invisible through the path.
        k.write(old, b"zz").unwrap();
        assert_eq!(k.contents(&p("auth.json")).unwrap(), b"v2");
    }

    #[test]
    fn flock_is_per_inode_and_owned_by_the_open_file_description() {
        let mut k = KernelState::new();
        k.install(&p("auth.lock"), b"");
        let a = k.open(1, &p("auth.lock"), true, false).unwrap();
        let b = k.open(2, &p("auth.lock"), true, false).unwrap();
        let a2 = k.open(1, &p("auth.lock"), true, false).unwrap();
        assert!(k.try_flock(a).unwrap());
        assert!(!k.try_flock(b).unwrap(), "another process is excluded");
        assert!(
            !k.try_flock(a2).unwrap(),
            "flock owners are descriptions: a second open in the same process conflicts too"
        );
        // Closing an unrelated description of the same file does not release it.
        k.close(a2).unwrap();
        assert!(!k.try_flock(b).unwrap());
        k.funlock(a).unwrap();
        assert!(k.try_flock(b).unwrap());
        // Closing the holder releases it.
        assert!(k.close(b).unwrap());
        assert!(k.try_flock(a).unwrap());
    }

    /// The `flock-data` pitfall: a lock on the data file locks the inode, and the rename
    /// write path gives the path a new inode that nobody has locked.
    #[test]
    fn flock_on_a_renamed_data_file_no_longer_excludes() {
        let mut k = KernelState::new();
        k.install(&p("auth.json"), b"v1");
        let a = k.open(1, &p("auth.json"), false, false).unwrap();
        assert!(k.try_flock(a).unwrap());
        let (t, tmp) = k.create_temp(1, &p("auth.json"));
        k.write(t, b"v2").unwrap();
        k.close(t).unwrap();
        k.rename(&tmp, &p("auth.json")).unwrap();
        // p1 still holds its lock (on the old inode), yet p2 locks the path's new inode.
        let b = k.open(2, &p("auth.json"), false, false).unwrap();
        assert!(k.try_flock(b).unwrap(), "both hold 'the' lock at once");
        assert_eq!(k.flock_holder(&p("auth.json")), Some(b));
    }

    /// The `fcntl` pitfall: POSIX record locks belong to the process and any close of any of
    /// its descriptors of the file drops them, such as the close at the end of a re-read.
    #[test]
    fn closing_any_descriptor_drops_the_process_record_lock() {
        let mut k = KernelState::new();
        k.install(&p("auth.json"), b"v1");
        let a = k.open(1, &p("auth.json"), true, false).unwrap();
        assert!(k.try_posix_lock(a).unwrap());
        let b = k.open(2, &p("auth.json"), true, false).unwrap();
        assert!(!k.try_posix_lock(b).unwrap(), "another process is excluded");
        // Same process, another descriptor: no conflict (the owner is the process).
        let a2 = k.open(1, &p("auth.json"), false, false).unwrap();
        assert!(k.try_posix_lock(a2).unwrap());
        k.close(a2).unwrap();
        assert_eq!(
            k.posix_owner(&p("auth.json")),
            None,
            "closing a2 dropped a's lock"
        );
        assert!(k.try_posix_lock(b).unwrap());
        k.posix_unlock(b).unwrap();
        // A whole-file read by the holder (open + read + close) drops it too.
        assert!(k.try_posix_lock(a).unwrap());
        let (bytes, released) = k.read_file(1, &p("auth.json"));
        assert_eq!(bytes.unwrap(), b"v1");
        assert!(released);
        assert_eq!(k.posix_owner(&p("auth.json")), None);
        // A read by another process does not.
        assert!(k.try_posix_lock(a).unwrap());
        let (_, released) = k.read_file(2, &p("auth.json"));
        assert!(!released);
        assert_eq!(k.posix_owner(&p("auth.json")), Some(1));
    }

    #[test]
    fn exit_closes_everything_and_releases_every_lock() {
        let mut k = KernelState::new();
        k.install(&p("auth.json"), b"v1");
        k.install(&p("auth.lock"), b"");
        let a = k.open(1, &p("auth.lock"), true, false).unwrap();
        let b = k.open(1, &p("auth.json"), true, false).unwrap();
        assert!(k.try_flock(a).unwrap());
        assert!(k.try_posix_lock(b).unwrap());
        assert!(!k.exit(2), "another process's exit releases nothing");
        assert!(k.exit(1));
        assert_eq!(k.flock_holder(&p("auth.lock")), None);
        assert_eq!(k.posix_owner(&p("auth.json")), None);
        assert!(k.write(a, b"x").is_err(), "its descriptions are gone");
    }

    #[test]
    fn a_crash_keeps_only_what_was_synced() {
        let mut k = KernelState::new();
        k.install(&p("auth.json"), b"v1");
        // In place, never synced: the truncation persists, the data after it does not.
        let f = k.open(1, &p("auth.json"), true, true).unwrap();
        k.write(f, b"v2-unsynced").unwrap();
        k.close(f).unwrap();
        assert_eq!(k.crash().contents(&p("auth.json")).unwrap(), b"");
        // ... synced: it is kept.
        let f = k.open(1, &p("auth.json"), true, true).unwrap();
        k.write(f, b"v1").unwrap();
        k.fsync(f).unwrap();
        k.close(f).unwrap();
        assert_eq!(k.crash().contents(&p("auth.json")).unwrap(), b"v1");
        // Temp + fsync + rename without a directory fsync: the rename is lost.
        let (t, tmp) = k.create_temp(1, &p("auth.json"));
        k.write(t, b"v3").unwrap();
        k.fsync(t).unwrap();
        k.close(t).unwrap();
        k.rename(&tmp, &p("auth.json")).unwrap();
        assert_eq!(k.crash().contents(&p("auth.json")).unwrap(), b"v1");
        // ... and with it, durable.
        k.fsync_dir(Path::new("/sim"));
        let after = k.crash();
        assert_eq!(after.contents(&p("auth.json")).unwrap(), b"v3");
        assert!(after.contents(&tmp).is_none());
    }
}

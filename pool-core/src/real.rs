//! The real operating system behind [`Os`]: std files, `flock` through std's `File::lock`,
//! POSIX record locks through `fcntl(F_SETLKW)`, tempfile for the temp file of the rename
//! path, 0600 for every file the pool creates, and fsync of the file and its directory.
//!
//! What happens at pause points and to recorded events is up to the [`Hooks`] a driver plugs
//! in; [`NoHooks`] ignores both.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::world::{Clock, Event, LockKind, Os, Pause};

/// What a driver does at pause points and with recorded events.
pub trait Hooks {
    fn pause(&self, _point: Pause) {}
    fn record(&self, _event: Event) {}
}

impl<T: Hooks + ?Sized> Hooks for std::sync::Arc<T> {
    fn pause(&self, point: Pause) {
        (**self).pause(point)
    }
    fn record(&self, event: Event) {
        (**self).record(event)
    }
}

impl<T: Hooks + ?Sized> Hooks for &T {
    fn pause(&self, point: Pause) {
        (**self).pause(point)
    }
    fn record(&self, event: Event) {
        (**self).record(event)
    }
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;
impl Hooks for NoHooks {}

/// The real OS, with a process-local mutex shared by the threads that share this value.
#[derive(Debug, Default)]
pub struct RealOs<H: Hooks = NoHooks> {
    hooks: H,
    mutex: ProcessMutex,
}

impl RealOs<NoHooks> {
    pub fn new() -> Self {
        RealOs::with_hooks(NoHooks)
    }
}

impl<H: Hooks> RealOs<H> {
    pub fn with_hooks(hooks: H) -> Self {
        RealOs {
            hooks,
            mutex: ProcessMutex::default(),
        }
    }
    pub fn hooks(&self) -> &H {
        &self.hooks
    }
}

/// A lock held through [`RealOs`].
#[derive(Debug)]
pub enum RealHeld {
    Mutex,
    /// The open file description that holds the `flock`; closing it releases the lock.
    Flock(File),
    /// The descriptor the record lock was taken through.
    Fcntl(File),
}

fn open_for_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn fcntl_lock(file: &File, kind: libc::c_short, wait: bool) -> io::Result<()> {
    // SAFETY: a zeroed `flock` is a valid value; fields set below describe the whole file.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    loop {
        // SAFETY: the descriptor is open for the call's duration and `fl` outlives it.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl<H: Hooks> Os for RealOs<H> {
    type File = File;
    type Held = RealHeld;

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
    }

    fn create_temp(&self, beside: &Path) -> io::Result<(File, PathBuf)> {
        let dir = beside.parent().unwrap_or(Path::new("."));
        let name = beside
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("store");
        // tempfile creates the file 0600 with O_EXCL under a random name.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        tmp.keep().map_err(|e| e.error)
    }

    fn write(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn sync(&self, file: &mut File) -> io::Result<()> {
        file.sync_all()
    }

    fn close(&self, file: File) -> io::Result<()> {
        drop(file);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn lock(&self, kind: LockKind, path: &Path) -> io::Result<RealHeld> {
        match kind {
            LockKind::ProcessMutex => {
                self.mutex.lock();
                Ok(RealHeld::Mutex)
            }
            LockKind::Flock => {
                let f = open_for_lock(path)?;
                f.lock()?;
                Ok(RealHeld::Flock(f))
            }
            LockKind::Fcntl => {
                let f = open_for_lock(path)?;
                fcntl_lock(&f, libc::F_WRLCK as libc::c_short, true)?;
                Ok(RealHeld::Fcntl(f))
            }
        }
    }

    fn unlock(&self, held: RealHeld) -> io::Result<()> {
        match held {
            RealHeld::Mutex => {
                self.mutex.unlock();
                Ok(())
            }
            RealHeld::Flock(f) => f.unlock(),
            RealHeld::Fcntl(f) => fcntl_lock(&f, libc::F_UNLCK as libc::c_short, false),
        }
    }

    fn pause(&self, point: Pause) {
        self.hooks.pause(point)
    }

    fn record(&self, event: Event) {
        self.hooks.record(event)
    }
}

/// A lock shared by the threads of one process, held across calls (no guard lifetime).
#[derive(Debug, Default)]
pub struct ProcessMutex {
    held: Mutex<bool>,
    freed: Condvar,
}

impl ProcessMutex {
    pub fn lock(&self) {
        let mut held = self.held.lock().expect("process mutex");
        while *held {
            held = self.freed.wait(held).expect("process mutex");
        }
        *held = true;
    }

    pub fn unlock(&self) {
        *self.held.lock().expect("process mutex") = false;
        self.freed.notify_one();
    }
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

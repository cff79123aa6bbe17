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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::world::{Clock, Event, LockKind, Os, Pause};

/// What a driver does at pause points, with recorded events, and when a lock wait is long.
pub trait Hooks {
    fn pause(&self, _point: Pause) {}
    fn record(&self, _event: Event) {}
    /// A lock has been waited for longer than the notice time (by default, one second).
    /// The default says so on stderr, the way cargo does.
    fn waiting(&self, path: &Path, holder: Option<u32>) {
        eprintln!("{}", waiting_message(path, holder));
    }
}

/// `Blocking waiting for file lock on PATH (held by pid N)`.
pub fn waiting_message(path: &Path, holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!(
            "Blocking waiting for file lock on {} (held by pid {pid})",
            path.display()
        ),
        None => format!("Blocking waiting for file lock on {}", path.display()),
    }
}

impl<T: Hooks + ?Sized> Hooks for std::sync::Arc<T> {
    fn pause(&self, point: Pause) {
        (**self).pause(point)
    }
    fn record(&self, event: Event) {
        (**self).record(event)
    }
    fn waiting(&self, path: &Path, holder: Option<u32>) {
        (**self).waiting(path, holder)
    }
}

impl<T: Hooks + ?Sized> Hooks for &T {
    fn pause(&self, point: Pause) {
        (**self).pause(point)
    }
    fn record(&self, event: Event) {
        (**self).record(event)
    }
    fn waiting(&self, path: &Path, holder: Option<u32>) {
        (**self).waiting(path, holder)
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
    waits: LockWaits,
}

/// How long file-lock waits may take.
#[derive(Clone, Copy, Debug)]
pub struct LockWaits {
    /// After this long, [`Hooks::waiting`] is told (default 1 s).
    pub notice: Duration,
    /// After this long, the lock attempt fails (default 30 s: longer than any refresh, so a
    /// waiter behind a refreshing peer adopts its token instead of timing out).
    pub deadline: Duration,
}

impl Default for LockWaits {
    fn default() -> Self {
        LockWaits {
            notice: Duration::from_secs(1),
            deadline: Duration::from_secs(30),
        }
    }
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
            waits: LockWaits::default(),
        }
    }

    /// Set how long file-lock waits may take.
    pub fn with_lock_waits(mut self, waits: LockWaits) -> Self {
        self.waits = waits;
        self
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
    Flock(Arc<File>),
    /// The descriptor the record lock was taken through.
    Fcntl(Arc<File>),
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
                let f = Arc::new(open_for_lock(path)?);
                self.wait_for_lock(path, &f, kind)?;
                Ok(RealHeld::Flock(f))
            }
            LockKind::Fcntl => {
                let f = Arc::new(open_for_lock(path)?);
                self.wait_for_lock(path, &f, kind)?;
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

impl<H: Hooks> RealOs<H> {
    /// Take a file lock: at once if it is free; otherwise block in a helper thread while this
    /// one tells the hooks after the notice time and gives up at the deadline. A lock the
    /// helper gets after the deadline is given back.
    ///
    /// The helper blocks on the very descriptor the lock is held through (shared, never
    /// duplicated): closing any descriptor of the file drops the process's POSIX record locks,
    /// so a helper that waited on a `dup` and closed it would release a contended `fcntl` lock
    /// the moment it was granted. The helper is joined before a granted lock is returned, so
    /// its handle on the descriptor is gone by then; only after a deadline does a still-blocked
    /// helper keep the descriptor (and close it, dropping the process's record locks on that
    /// file, once it is granted and gives the lock back).
    fn wait_for_lock(&self, path: &Path, file: &Arc<File>, kind: LockKind) -> io::Result<()> {
        if try_lock(file, kind)? {
            return Ok(());
        }
        let mine = file.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let helper = {
            let cancelled = cancelled.clone();
            std::thread::Builder::new()
                .name("lock-wait".into())
                .spawn(move || {
                    let got = block_on_lock(&mine, kind);
                    if got.is_ok() && cancelled.load(Ordering::SeqCst) {
                        let _ = unlock_file(&mine, kind);
                    }
                    let _ = tx.send(got);
                })?
        };
        let answered = |got: io::Result<()>| {
            let _ = helper.join();
            got
        };
        let start = Instant::now();
        let mut told = false;
        loop {
            let left = if told {
                self.waits.deadline
            } else {
                self.waits.notice
            }
            .saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(got) => return answered(got),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(
                        "the lock-wait thread ended without an answer",
                    ))
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !told => {
                    self.hooks.waiting(path, lock_holder(file, kind));
                    told = true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    cancelled.store(true, Ordering::SeqCst);
                    // The helper may have got the lock just now: take its answer if so.
                    if let Ok(got) = rx.try_recv() {
                        cancelled.store(false, Ordering::SeqCst);
                        return answered(got);
                    }
                    let holder = lock_holder(file, kind)
                        .map(|p| format!(" (held by pid {p})"))
                        .unwrap_or_default();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "gave up after {:.1} s waiting for the lock on {}{holder}: if that process is hung, stop it (the kernel releases its lock when it exits)",
                            self.waits.deadline.as_secs_f64(),
                            path.display()
                        ),
                    ));
                }
            }
        }
    }
}

/// Try a file lock without blocking: `Ok(false)` when someone else holds it.
fn try_lock(file: &File, kind: LockKind) -> io::Result<bool> {
    match kind {
        LockKind::Flock => match file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        },
        LockKind::Fcntl => match fcntl_lock(file, libc::F_WRLCK as libc::c_short, false) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                Ok(false)
            }
            Err(e) => Err(e),
        },
        LockKind::ProcessMutex => Ok(true),
    }
}

fn block_on_lock(file: &File, kind: LockKind) -> io::Result<()> {
    match kind {
        LockKind::Flock => file.lock(),
        LockKind::Fcntl => fcntl_lock(file, libc::F_WRLCK as libc::c_short, true),
        LockKind::ProcessMutex => Ok(()),
    }
}

fn unlock_file(file: &File, kind: LockKind) -> io::Result<()> {
    match kind {
        LockKind::Flock => file.unlock(),
        LockKind::Fcntl => fcntl_lock(file, libc::F_UNLCK as libc::c_short, false),
        LockKind::ProcessMutex => Ok(()),
    }
}

/// The pid holding a lock on `file`, where the kernel tells: `F_GETLK` for record locks,
/// `/proc/locks` (matched by device and inode) for flock.
pub fn lock_holder(file: &File, kind: LockKind) -> Option<u32> {
    match kind {
        LockKind::Fcntl => {
            // SAFETY: zeroed `flock` is valid; F_GETLK fills it in.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            // SAFETY: the descriptor is open and `fl` outlives the call.
            let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
            (r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid as u32)
        }
        LockKind::Flock => {
            use std::os::unix::fs::MetadataExt;
            let meta = file.metadata().ok()?;
            let dev = meta.dev();
            let want = format!(
                "{:02x}:{:02x}:{}",
                libc::major(dev),
                libc::minor(dev),
                meta.ino()
            );
            let locks = std::fs::read_to_string("/proc/locks").ok()?;
            locks.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" ("->" marks waiters)
                (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
                    .then(|| f.get(4).and_then(|p| p.parse().ok()))
                    .flatten()
            })
        }
        LockKind::ProcessMutex => None,
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

//! pool-core's [`Os`] over the simulated kernel: each simulated process is one [`SimOs`] (its
//! own process-local mutex and descriptors) sharing one [`SharedKernel`] and one [`Recorder`].
//!
//! Scheduling points: every kernel call takes the scheduler's mutex once (a blocking lock also
//! waits on its condition variable), and [`Os::pause`] yields. Recording is not a scheduling
//! point: it is an observation, stamped with the shared logical clock.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pool_core::world::{Event, LockKind, Os, Pause};

use super::facade::Facade;
use super::kernel::{KernelState, OfdId, Proc};
use crate::history::{Ev, Record};

/// Nanoseconds of history time per logical tick: one tick reads as 1 ms in witness stories
/// (`+3.0ms` is the third recorded event), never as wall time.
pub const NS_PER_TICK: u64 = 1_000_000;

/// The shared history of one execution, stamped by a logical clock (a shared counter).
#[derive(Debug, Default)]
pub struct Recorder {
    ticks: AtomicU64,
    records: Mutex<Vec<Record>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Append an event of process `proc` at the next tick.
    pub fn push(&self, proc: Proc, ev: Ev) {
        let t = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Record {
                t_ns: t * NS_PER_TICK,
                proc,
                ev,
            });
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::SeqCst)
    }

    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The kernel state behind the scheduler's mutex, with a condition variable for blocked locks.
pub struct SharedKernel<F: Facade> {
    state: F::Mutex<KernelState>,
    changed: F::Condvar,
}

impl<F: Facade> SharedKernel<F> {
    pub fn new(state: KernelState) -> Arc<SharedKernel<F>> {
        Arc::new(SharedKernel {
            state: F::mutex(state),
            changed: F::condvar(),
        })
    }

    /// One system call.
    pub fn call<R>(&self, f: impl FnOnce(&mut KernelState) -> R) -> R {
        F::with(&self.state, f)
    }

    /// One system call that may release a lock: wakes the waiters if it did.
    fn call_releasing<R>(&self, f: impl FnOnce(&mut KernelState) -> (R, bool)) -> R {
        let (r, released) = F::with(&self.state, f);
        if released {
            F::notify_all(&self.changed);
        }
        r
    }

    /// The process exits: the kernel closes its descriptions and drops its locks.
    pub fn exit(&self, proc: Proc) {
        self.call_releasing(|k| ((), k.exit(proc)))
    }

    /// A blocking lock call: retried each time the kernel's locks change.
    fn block_until(
        &self,
        mut f: impl FnMut(&mut KernelState) -> io::Result<bool>,
    ) -> io::Result<()> {
        F::wait_until(&self.state, &self.changed, |k| match f(k) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        })
    }
}

/// A process-local mutex (threads of one simulated process exclude each other).
pub struct ProcMutex<F: Facade> {
    held: F::Mutex<bool>,
    freed: F::Condvar,
}

impl<F: Facade> ProcMutex<F> {
    pub fn new() -> ProcMutex<F> {
        ProcMutex {
            held: F::mutex(false),
            freed: F::condvar(),
        }
    }
}

impl<F: Facade> Default for ProcMutex<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// An open file of a simulated process.
#[derive(Debug)]
pub struct SimFile(OfdId);

/// A lock held by a simulated process.
#[derive(Debug)]
pub enum SimHeld {
    Mutex,
    Flock(OfdId),
    Fcntl(OfdId),
}

/// One simulated process's view of the world.
pub struct SimOs<F: Facade> {
    proc: Proc,
    kernel: Arc<SharedKernel<F>>,
    mutex: Arc<ProcMutex<F>>,
    rec: Arc<Recorder>,
}

impl<F: Facade> SimOs<F> {
    pub fn new(proc: Proc, kernel: Arc<SharedKernel<F>>, rec: Arc<Recorder>) -> SimOs<F> {
        SimOs {
            proc,
            kernel,
            mutex: Arc::new(ProcMutex::new()),
            rec,
        }
    }

    /// Another handle of the same process (a second thread): same mutex, same process id.
    pub fn thread(&self) -> SimOs<F> {
        SimOs {
            proc: self.proc,
            kernel: self.kernel.clone(),
            mutex: self.mutex.clone(),
            rec: self.rec.clone(),
        }
    }

    pub fn proc(&self) -> Proc {
        self.proc
    }

    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.rec
    }
}

impl<F: Facade> Os for SimOs<F> {
    type File = SimFile;
    type Held = SimHeld;

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let proc = self.proc;
        Ok(self.kernel.call_releasing(|k| k.read_file(proc, path)))
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let proc = self.proc;
        self.kernel
            .call(|k| k.open(proc, path, true, true))
            .map(SimFile)
    }

    fn create_temp(&self, beside: &Path) -> io::Result<(SimFile, PathBuf)> {
        let proc = self.proc;
        let (ofd, path) = self.kernel.call(|k| k.create_temp(proc, beside));
        Ok((SimFile(ofd), path))
    }

    fn write(&self, file: &mut SimFile, bytes: &[u8]) -> io::Result<()> {
        self.kernel.call(|k| k.write(file.0, bytes))
    }

    fn sync(&self, file: &mut SimFile) -> io::Result<()> {
        self.kernel.call(|k| k.fsync(file.0))
    }

    fn close(&self, file: SimFile) -> io::Result<()> {
        self.kernel.call_releasing(|k| match k.close(file.0) {
            Ok(released) => (Ok(()), released),
            Err(e) => (Err(e), false),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.kernel.call(|k| k.rename(from, to))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.kernel.call(|k| k.fsync_dir(dir));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.kernel.call(|k| k.unlink(path))
    }

    fn lock(&self, kind: LockKind, path: &Path) -> io::Result<SimHeld> {
        let proc = self.proc;
        match kind {
            LockKind::ProcessMutex => {
                F::wait_until(&self.mutex.held, &self.mutex.freed, |held| {
                    (!*held).then(|| *held = true)
                });
                Ok(SimHeld::Mutex)
            }
            // Two system calls, as in real life: open (0600, no truncation), then lock.
            LockKind::Flock => {
                let ofd = self.kernel.call(|k| k.open(proc, path, true, false))?;
                self.kernel.block_until(|k| k.try_flock(ofd))?;
                Ok(SimHeld::Flock(ofd))
            }
            LockKind::Fcntl => {
                let ofd = self.kernel.call(|k| k.open(proc, path, true, false))?;
                self.kernel.block_until(|k| k.try_posix_lock(ofd))?;
                Ok(SimHeld::Fcntl(ofd))
            }
        }
    }

    fn unlock(&self, held: SimHeld) -> io::Result<()> {
        match held {
            SimHeld::Mutex => {
                F::with(&self.mutex.held, |h| *h = false);
                F::notify_all(&self.mutex.freed);
                Ok(())
            }
            // Unlock, then the handle is dropped (closed): one step here.
            SimHeld::Flock(ofd) => self.kernel.call_releasing(|k| {
                let r = k.funlock(ofd).and_then(|()| k.close(ofd).map(|_| ()));
                (r, true)
            }),
            SimHeld::Fcntl(ofd) => self.kernel.call_releasing(|k| {
                let r = k.posix_unlock(ofd).and_then(|()| k.close(ofd).map(|_| ()));
                (r, true)
            }),
        }
    }

    fn pause(&self, _point: Pause) {
        F::yield_now()
    }

    fn record(&self, event: Event) {
        self.rec.push(self.proc, Ev::Pool { event });
    }
}

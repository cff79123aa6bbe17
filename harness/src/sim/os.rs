//! pool-core's [`Os`] over the simulated kernel: each simulated process is one [`SimOs`] (its
//! own process-local mutex and descriptors) sharing one [`SharedKernel`] and one [`Recorder`].
//!
//! Scheduling points: every kernel call takes the scheduler's mutex once (a blocking lock also
//! waits on its condition variable); so does every issuer request ([`super::issuer`]).
//! Nothing else is one: [`Os::pause`] touches no shared state, and recording is an
//! observation stamped with the shared logical clock. Why dropping the pause points hides no
//! interleaving: docs/model.md, "Scheduling points".
//!
//! A write's intent ([`Event::WriteBegin`]) is stamped inside the step that can first make its
//! bytes visible (the truncating open, the rename), not when the pool reports it: the pool
//! reports it just before that step, and the scheduling point in between is where another
//! process's whole write can run. Stamped early, every such write would overlap this one and
//! the judge could order neither (a lost update under `lock=none` was never provable). Still
//! a lower bound of the moment the bytes land: nothing runs between the stamp and the step.

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

/// The kernel state and the scheduler's mutex, with a condition variable for blocked locks.
///
/// A *shared* step (one another process can observe, or whose outcome another process can
/// change) takes the scheduler's mutex first: that is its scheduling point. A *private* step
/// ([`SharedKernel::private`]) touches only what no other process can reach and is not a
/// scheduling point. The state itself sits in a plain mutex that is never contended: the
/// model runs one thread at a time and no guard of it is held across a scheduling point.
pub struct SharedKernel<F: Facade> {
    sched: F::Mutex<()>,
    changed: F::Condvar,
    state: Mutex<KernelState>,
}

impl<F: Facade> SharedKernel<F> {
    pub fn new(state: KernelState) -> Arc<SharedKernel<F>> {
        Arc::new(SharedKernel {
            sched: F::mutex(()),
            changed: F::condvar(),
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KernelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One shared system call (a scheduling point).
    pub fn call<R>(&self, f: impl FnOnce(&mut KernelState) -> R) -> R {
        F::with(&self.sched, |()| f(&mut self.state()))
    }

    /// One private step: no scheduling point. Only for steps no other process can observe
    /// and whose outcome no other process can change (see docs/model.md, "Scheduling
    /// points"): such a step commutes with every step of every other process.
    pub fn private<R>(&self, f: impl FnOnce(&mut KernelState) -> R) -> R {
        f(&mut self.state())
    }

    /// A system call on an open description: private while the description's file is a temp
    /// file its creator has not renamed yet (no other process can name it), shared otherwise.
    fn on_file<R>(&self, ofd: OfdId, f: impl FnOnce(&mut KernelState) -> R) -> R {
        let private = self.state().is_private(ofd);
        if private {
            self.private(f)
        } else {
            self.call(f)
        }
    }

    /// One shared system call that may release a lock: wakes the waiters if it did.
    fn call_releasing<R>(&self, f: impl FnOnce(&mut KernelState) -> (R, bool)) -> R {
        let (r, released) = self.call(f);
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
        F::wait_until(
            &self.sched,
            &self.changed,
            |()| match f(&mut self.state()) {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
        )
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
    /// A reported [`Event::WriteBegin`] not stamped yet (see the module's first lines).
    intent: Arc<Mutex<Option<Event>>>,
}

impl<F: Facade> SimOs<F> {
    pub fn new(proc: Proc, kernel: Arc<SharedKernel<F>>, rec: Arc<Recorder>) -> SimOs<F> {
        SimOs {
            proc,
            kernel,
            mutex: Arc::new(ProcMutex::new()),
            rec,
            intent: Arc::default(),
        }
    }

    /// Another handle of the same process (a second thread): same mutex, same process id.
    pub fn thread(&self) -> SimOs<F> {
        SimOs {
            proc: self.proc,
            kernel: self.kernel.clone(),
            mutex: self.mutex.clone(),
            rec: self.rec.clone(),
            intent: self.intent.clone(),
        }
    }

    pub fn proc(&self) -> Proc {
        self.proc
    }

    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.rec
    }
}

impl<F: Facade> SimOs<F> {
    /// Stamp the pending write intent, if any: inside the step that makes the write visible,
    /// or at the process's next other step or record, whichever comes first (each is no later
    /// than the moment the bytes can land, and keeps the process's own events in order).
    fn stamp_intent(&self) {
        let pending = self.intent.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(event) = pending {
            self.rec.push(self.proc, Ev::Pool { event });
        }
    }

    /// open(2) (create if missing, no truncation) and the lock call `lock`, as one shared step
    /// retried while the lock is taken: the open happens once, at the first attempt. Sound
    /// because the open changes nothing another process can observe unless it creates the
    /// file (then the lock attempt that follows it changes nothing a reader observes either),
    /// and the only steps its outcome depends on (a rename or unlink of the path) commute
    /// with the lock attempt (they do not read locks): docs/model.md, "Scheduling points".
    fn open_and_lock(
        &self,
        path: &Path,
        lock: fn(&mut KernelState, OfdId) -> io::Result<bool>,
    ) -> io::Result<OfdId> {
        let proc = self.proc;
        let mut opened: Option<OfdId> = None;
        self.kernel.block_until(|k| {
            let ofd = match opened {
                Some(o) => o,
                None => *opened.insert(k.open(proc, path, true, false)?),
            };
            lock(k, ofd)
        })?;
        Ok(opened.expect("the lock was granted through an open description"))
    }
}

impl<F: Facade> Os for SimOs<F> {
    type File = SimFile;
    type Held = SimHeld;

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.stamp_intent();
        let proc = self.proc;
        Ok(self.kernel.call_releasing(|k| k.read_file(proc, path)))
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let proc = self.proc;
        self.kernel
            .call(|k| {
                self.stamp_intent();
                k.open(proc, path, true, true)
            })
            .map(SimFile)
    }

    fn create_temp(&self, beside: &Path) -> io::Result<(SimFile, PathBuf)> {
        let proc = self.proc;
        // Private: a new, uniquely named file nobody else can name until it is renamed.
        let (ofd, path) = self.kernel.private(|k| k.create_temp(proc, beside));
        Ok((SimFile(ofd), path))
    }

    fn write(&self, file: &mut SimFile, bytes: &[u8]) -> io::Result<()> {
        self.stamp_intent();
        self.kernel.on_file(file.0, |k| k.write(file.0, bytes))
    }

    fn sync(&self, file: &mut SimFile) -> io::Result<()> {
        self.kernel.on_file(file.0, |k| k.fsync(file.0))
    }

    fn close(&self, file: SimFile) -> io::Result<()> {
        self.stamp_intent();
        if self.kernel.private(|k| k.is_private(file.0)) {
            // A temp file holds no lock: nobody can be waiting on its close.
            return self.kernel.private(|k| k.close(file.0).map(|_| ()));
        }
        self.kernel.call_releasing(|k| match k.close(file.0) {
            Ok(released) => (Ok(()), released),
            Err(e) => (Err(e), false),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.kernel.call(|k| {
            self.stamp_intent();
            k.rename(from, to)
        })
    }

    /// Private while no execution crashes: what a directory fsync changes (the durable
    /// entries) only a crash can observe.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.kernel.private(|k| k.fsync_dir(dir));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.stamp_intent();
        self.kernel.call(|k| k.unlink(path))
    }

    fn lock(&self, kind: LockKind, path: &Path) -> io::Result<SimHeld> {
        self.stamp_intent();
        match kind {
            LockKind::ProcessMutex => {
                F::wait_until(&self.mutex.held, &self.mutex.freed, |held| {
                    (!*held).then(|| *held = true)
                });
                Ok(SimHeld::Mutex)
            }
            // Two system calls in real life (open 0600 without truncation, then lock); one
            // step here (see `open_and_lock`).
            LockKind::Flock => Ok(SimHeld::Flock(
                self.open_and_lock(path, KernelState::try_flock)?,
            )),
            LockKind::Fcntl => Ok(SimHeld::Fcntl(
                self.open_and_lock(path, KernelState::try_posix_lock)?,
            )),
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

    /// A yield: the pool's pause points are where its race windows are, and a yield there
    /// lets the scheduler switch for free (loom does not count it as a preemption), so a
    /// bounded search reaches those windows first.
    fn pause(&self, _point: Pause) {
        F::yield_now()
    }

    fn record(&self, event: Event) {
        self.stamp_intent();
        if matches!(event, Event::WriteBegin { .. }) {
            *self.intent.lock().unwrap_or_else(|p| p.into_inner()) = Some(event);
        } else {
            self.rec.push(self.proc, Ev::Pool { event });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::facade::Loom;

    /// The intent is stamped by the truncating open itself, not where the pool reports it:
    /// the scheduling point in between belongs before the stamp.
    #[test]
    fn a_write_intent_is_stamped_by_the_step_that_makes_it_visible() {
        loom::model(|| {
            let rec = Recorder::new();
            let os: SimOs<Loom> = SimOs::new(1, SharedKernel::new(KernelState::new()), rec.clone());
            os.record(Event::WriteBegin {
                op: 1,
                hash: "h1".into(),
                file: None,
            });
            assert!(rec.records().is_empty(), "stamped before its step");
            let f = os.create(Path::new("/sim/auth.json")).expect("create");
            let recs = rec.records();
            assert_eq!(recs.len(), 1);
            assert!(matches!(
                recs[0].ev,
                Ev::Pool {
                    event: Event::WriteBegin { .. }
                }
            ));
            os.close(f).expect("close");
        });
    }
}

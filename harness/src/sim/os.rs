//! pool-core's [`Os`] over the simulated kernel: each simulated process is one [`SimOs`] (its
//! own process-local mutex and descriptors) sharing one [`SharedKernel`] and one [`Recorder`].
//!
//! Scheduling points: every kernel call takes the scheduler's mutex once (a blocking lock also
//! waits on its condition variable); so does every issuer request ([`super::issuer`]).
//! Nothing else is one: [`Os::pause`] touches no shared state, and recording is an
//! observation stamped with the shared logical clock. Why dropping the pause points hides no
//! interleaving: docs/model.md, "Scheduling points".
//!
//! Machine crashes ([`CrashPlan`]): the kernel is replaced by its crash state, and
//! every process running then is dead: each system call, issuer request or record of a dead
//! process fails at once, with no scheduling point, until its role loop returns and the world
//! restarts it ([`super::world`]). A process learns of the crash inside its next shared step
//! (the check and the step are one), so nothing it does after the crash reaches the kernel,
//! the issuer or the history.
//!
//! A write's intent ([`Event::WriteBegin`]) is stamped inside the step that can first make its
//! bytes visible (the truncating open, the rename), not when the pool reports it: the pool
//! reports it just before that step, and the scheduling point in between is where another
//! process's whole write can run. Stamped early, every such write would overlap this one and
//! the judge could order neither (a lost update under `lock=none` was never provable). Still
//! a lower bound of the moment the bytes land: nothing runs between the stamp and the step.

use std::collections::BTreeSet;
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

    /// Every record so far, leaving none behind (the end of an execution: no copy).
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
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
    /// The machine's life: each crash starts a new one. A process of an earlier life is dead.
    /// Written only inside a step (the crash), so a read is never stale by more than the
    /// steps of the reading process itself.
    epoch: AtomicU64,
    /// Processes started and not exited: the ones a crash kills (and the world restarts).
    running: Mutex<BTreeSet<Proc>>,
    /// Whether and where the machine may crash.
    plan: CrashPlan,
    /// Shared steps taken so far (kernel calls and issuer requests of live processes).
    steps: AtomicU64,
    /// Records a crash: the processes it killed, and the kernel as the machine came back.
    report: Box<CrashReport>,
}

/// What records a crash: the processes it killed, and the kernel as the machine came back.
pub type CrashReport = dyn Fn(&BTreeSet<Proc>, &KernelState) + Send + Sync;

/// Whether and where an execution's machine crashes (once at most).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPlan {
    /// Never.
    Never,
    /// Somewhere: the driver picks a crash point per execution (loom: each in turn; shuttle:
    /// at random), as [`CrashPlan::AtStep`]. A kernel given this plan never crashes.
    Anywhere,
    /// Right before shared step number N + 1 (after N steps; N = every step taken: at the
    /// end, when every process has exited).
    AtStep(u64),
}

/// The error a dead process's system calls fail with.
pub fn crashed() -> io::Error {
    io::Error::other("the machine crashed")
}

impl<F: Facade> SharedKernel<F> {
    pub fn new(state: KernelState) -> Arc<SharedKernel<F>> {
        SharedKernel::with_crashes(state, BTreeSet::new(), CrashPlan::Never, |_, _| {})
    }

    /// A kernel whose `running` processes a crash may kill, as `plan` says; `report` records
    /// each crash.
    pub fn with_crashes(
        state: KernelState,
        running: BTreeSet<Proc>,
        plan: CrashPlan,
        report: impl Fn(&BTreeSet<Proc>, &KernelState) + Send + Sync + 'static,
    ) -> Arc<SharedKernel<F>> {
        Arc::new(SharedKernel {
            sched: F::mutex(()),
            changed: F::condvar(),
            state: Mutex::new(state),
            epoch: AtomicU64::new(0),
            running: Mutex::new(running),
            plan,
            steps: AtomicU64::new(0),
            report: Box::new(report),
        })
    }

    /// Shared steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// Whether executions may crash.
    pub fn may_crash(&self) -> bool {
        self.plan != CrashPlan::Never
    }

    /// Count one shared step of a live process, crashing the machine first if the plan puts
    /// the crash right before it. Called inside the step (its lock held).
    fn tick(&self) {
        let n = self.steps.fetch_add(1, Ordering::SeqCst);
        if self.plan == CrashPlan::AtStep(n) {
            self.crash_here();
        }
    }

    /// The crash itself, inside a step: every running process dies, the kernel becomes its
    /// crash state, and the crash is recorded. Waiters are woken by the caller's step.
    fn crash_here(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut k = self.state();
        *k = k.crash();
        (self.report)(&running, &k);
    }

    /// The end of an execution with [`CrashPlan::AtStep`] N where exactly N steps were taken:
    /// the crash comes after the last one (no process left to kill).
    pub fn crash_at_end(&self) {
        if self.plan == CrashPlan::AtStep(self.steps()) {
            F::with(&self.sched, |()| self.crash_here());
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KernelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The machine's current life (0 until the first crash).
    pub fn life(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether a process started in `life` is still running (no crash since).
    pub fn alive(&self, life: u64) -> bool {
        self.life() == life
    }

    /// One shared system call (a scheduling point), by the harness.
    pub fn call<R>(&self, f: impl FnOnce(&mut KernelState) -> R) -> R {
        F::with(&self.sched, |()| f(&mut self.state()))
    }

    /// One shared system call of a process started in `life`: it fails with no scheduling
    /// point once the process is known dead, and inside the step if it died just before.
    pub fn call_in<R>(
        &self,
        life: u64,
        f: impl FnOnce(&mut KernelState) -> io::Result<R>,
    ) -> io::Result<R> {
        if !self.alive(life) {
            return Err(crashed());
        }
        let r = F::with(&self.sched, |()| {
            self.tick();
            if self.alive(life) {
                f(&mut self.state())
            } else {
                Err(crashed())
            }
        });
        if !self.alive(life) {
            F::notify_all(&self.changed);
        }
        r
    }

    /// Count one shared step a process of `life` takes under another lock (an issuer
    /// request), crashing the machine first if the plan puts the crash there: whether the
    /// process is still alive to take it.
    pub fn enter_step(&self, life: u64) -> bool {
        self.tick();
        let alive = self.alive(life);
        if !alive {
            F::notify_all(&self.changed);
        }
        alive
    }

    /// One private step of a process of `life`: no scheduling point. Only for steps no other
    /// process can observe and whose outcome no other process can change (see docs/model.md,
    /// "Scheduling points"): such a step commutes with every step of every other process.
    /// (A crash can only come at another process's scheduling point, so whether this process
    /// is dead is already decided when it runs.)
    pub fn private<R>(
        &self,
        life: u64,
        f: impl FnOnce(&mut KernelState) -> io::Result<R>,
    ) -> io::Result<R> {
        if !self.alive(life) {
            return Err(crashed());
        }
        f(&mut self.state())
    }

    /// A system call on an open description: private while the description's file is a temp
    /// file its creator has not renamed yet (no other process can name it), shared otherwise.
    fn on_file<R>(
        &self,
        life: u64,
        ofd: OfdId,
        f: impl FnOnce(&mut KernelState) -> io::Result<R>,
    ) -> io::Result<R> {
        let private = self.state().is_private(ofd);
        if private {
            self.private(life, f)
        } else {
            self.call_in(life, f)
        }
    }

    /// One shared system call that may release a lock: wakes the waiters if it did.
    fn call_releasing<R>(
        &self,
        life: u64,
        f: impl FnOnce(&mut KernelState) -> (io::Result<R>, bool),
    ) -> io::Result<R> {
        let mut released = false;
        let r = self.call_in(life, |k| {
            let (r, rel) = f(k);
            released = rel;
            r
        });
        if released {
            F::notify_all(&self.changed);
        }
        r
    }

    /// The process of `life` exits: the kernel closes its descriptions and drops its locks.
    /// False (and nothing done) if a crash killed it first: then it is to be restarted.
    pub fn exit(&self, proc: Proc, life: u64) -> bool {
        let exited = self.call_in(life, |k| {
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&proc);
            Ok(k.exit(proc))
        });
        match exited {
            Ok(released) => {
                if released {
                    F::notify_all(&self.changed);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// A blocking lock call of a process of `life`: retried each time the kernel's locks
    /// change; fails if the process dies meanwhile.
    fn block_until(
        &self,
        life: u64,
        mut f: impl FnMut(&mut KernelState) -> io::Result<bool>,
    ) -> io::Result<()> {
        if !self.alive(life) {
            return Err(crashed());
        }
        F::wait_until(&self.sched, &self.changed, |()| {
            self.tick();
            if !self.alive(life) {
                F::notify_all(&self.changed);
                return Some(Err(crashed()));
            }
            match f(&mut self.state()) {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
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
    /// The machine's life this process was started in ([`SharedKernel::life`]).
    life: u64,
    kernel: Arc<SharedKernel<F>>,
    mutex: Arc<ProcMutex<F>>,
    rec: Arc<Recorder>,
    /// A reported [`Event::WriteBegin`] not stamped yet (see the module's first lines).
    intent: Arc<Mutex<Option<Event>>>,
}

impl<F: Facade> SimOs<F> {
    /// Process `proc`, started in the machine's life `life`.
    pub fn new(
        proc: Proc,
        life: u64,
        kernel: Arc<SharedKernel<F>>,
        rec: Arc<Recorder>,
    ) -> SimOs<F> {
        SimOs {
            proc,
            life,
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
            life: self.life,
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

    /// Whether no crash has killed this process.
    pub fn alive(&self) -> bool {
        self.kernel.alive(self.life)
    }

    /// Append to the history, unless this process is dead (nothing it does after the crash
    /// happened).
    pub fn push(&self, ev: Ev) {
        if self.alive() {
            self.rec.push(self.proc, ev);
        }
    }
}

impl<F: Facade> SimOs<F> {
    /// Stamp the pending write intent, if any: inside the step that makes the write visible,
    /// or at the process's next other step or record, whichever comes first (each is no later
    /// than the moment the bytes can land, and keeps the process's own events in order).
    fn stamp_intent(&self) {
        let pending = self.intent.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(event) = pending {
            self.push(Ev::Pool { event });
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
        self.kernel.block_until(self.life, |k| {
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
        self.kernel.call_releasing(self.life, |k| {
            let (bytes, released) = k.read_file(proc, path);
            (Ok(bytes), released)
        })
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let proc = self.proc;
        self.kernel
            .call_in(self.life, |k| {
                self.stamp_intent();
                k.open(proc, path, true, true)
            })
            .map(SimFile)
    }

    fn create_temp(&self, beside: &Path) -> io::Result<(SimFile, PathBuf)> {
        let proc = self.proc;
        // Private: a new, uniquely named file nobody else can name until it is renamed.
        let (ofd, path) = self
            .kernel
            .private(self.life, |k| Ok(k.create_temp(proc, beside)))?;
        Ok((SimFile(ofd), path))
    }

    fn write(&self, file: &mut SimFile, bytes: &[u8]) -> io::Result<()> {
        self.stamp_intent();
        self.kernel
            .on_file(self.life, file.0, |k| k.write(file.0, bytes))
    }

    fn sync(&self, file: &mut SimFile) -> io::Result<()> {
        self.kernel.on_file(self.life, file.0, |k| k.fsync(file.0))
    }

    fn close(&self, file: SimFile) -> io::Result<()> {
        self.stamp_intent();
        if self.kernel.state().is_private(file.0) {
            // A temp file holds no lock: nobody can be waiting on its close.
            return self
                .kernel
                .private(self.life, |k| k.close(file.0).map(|_| ()));
        }
        self.kernel
            .call_releasing(self.life, |k| match k.close(file.0) {
                Ok(released) => (Ok(()), released),
                Err(e) => (Err(e), false),
            })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.kernel.call_in(self.life, |k| {
            self.stamp_intent();
            k.rename(from, to)
        })
    }

    /// What a directory fsync changes (the durable entries) only a crash observes: a shared
    /// step when executions may crash, private otherwise.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let sync = |k: &mut KernelState| {
            k.fsync_dir(dir);
            Ok(())
        };
        if self.kernel.may_crash() {
            self.kernel.call_in(self.life, sync)
        } else {
            self.kernel.private(self.life, sync)
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.stamp_intent();
        self.kernel.call_in(self.life, |k| k.unlink(path))
    }

    fn lock(&self, kind: LockKind, path: &Path) -> io::Result<SimHeld> {
        self.stamp_intent();
        if !self.alive() {
            return Err(crashed());
        }
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
                if !self.alive() {
                    // Its process is gone: nobody of it is left to wait for the mutex.
                    return Err(crashed());
                }
                F::with(&self.mutex.held, |h| *h = false);
                F::notify_all(&self.mutex.freed);
                Ok(())
            }
            // Unlock, then the handle is dropped (closed): one step here.
            SimHeld::Flock(ofd) => self.kernel.call_releasing(self.life, |k| {
                let r = k.funlock(ofd).and_then(|()| k.close(ofd).map(|_| ()));
                (r, true)
            }),
            SimHeld::Fcntl(ofd) => self.kernel.call_releasing(self.life, |k| {
                let r = k.posix_unlock(ofd).and_then(|()| k.close(ofd).map(|_| ()));
                (r, true)
            }),
        }
    }

    /// A yield: the pool's pause points are where its race windows are, and a yield there
    /// lets the scheduler switch for free (loom does not count it as a preemption), so a
    /// bounded search reaches those windows first. A dead process does not yield: what it
    /// still runs is invisible.
    fn pause(&self, _point: Pause) {
        if self.alive() {
            F::yield_now()
        }
    }

    fn record(&self, event: Event) {
        self.stamp_intent();
        if matches!(event, Event::WriteBegin { .. }) {
            *self.intent.lock().unwrap_or_else(|p| p.into_inner()) = Some(event);
        } else {
            self.push(Ev::Pool { event });
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
            let os: SimOs<Loom> =
                SimOs::new(1, 0, SharedKernel::new(KernelState::new()), rec.clone());
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

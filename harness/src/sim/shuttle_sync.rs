//! The mutex and condition variable of the shuttle side of the facade ([`super::facade::Shuttle`]):
//! one scheduling point per critical section, where shuttle's own `Mutex` and `Condvar` take
//! two or more.
//!
//! shuttle runs one model thread at a time and switches only at its scheduling points, so code
//! between two of them is atomic. shuttle's `Mutex` has a scheduling point at `lock` and
//! another at the release (`BatchSemaphore::release`); its `Condvar::wait` releases the mutex
//! (a point), blocks (a point) and locks it again (a point); `notify_all` is one more. Here:
//!
//! - [`StepMutex::with`]: one scheduling point (a `switch`), then the critical section and the
//!   release with none. This is loom's model of a mutex too (loom branches at the acquire, not
//!   at the release), the one docs/model.md's "Scheduling points" argues about. A release with
//!   no scheduling point before it hides nothing: whoever would run at that point can only do
//!   what it can do at the releasing thread's next scheduling point, except take this mutex
//!   while it is still held, which blocks and does nothing.
//! - [`StepCondvar`] (through [`StepMutex::wait_until`]): the condition is checked right after
//!   the lock's point; a thread whose condition is false blocks (one scheduling point, taken
//!   with it blocked: the scheduler runs someone else), and once woken takes one more point
//!   before it retakes the mutex and checks again. That point offers no order the wake-up did
//!   not, but PCT lowers only the thread that runs at a change point: this is where it can
//!   lower a woken thread right after choosing it (without it, PCT met `flock-data`'s lost
//!   update on `cooldown-erasure` after 2,097 schedules on average over 12 seeds, with it
//!   after 334, main after 688: docs/model.md, "Under shuttle").
//!   [`StepCondvar::notify_all`] has no scheduling point: it belongs to the step just taken
//!   (the simulated kernel wakes the waiters of a released lock inside the release).
//!
//! Blocking is shuttle's own: a blocked thread is not runnable, so PCT does not pick it and a
//! state where every thread waits is reported as a deadlock, as with shuttle's primitives.
//!
//! Not kept from shuttle's primitives: the vector clocks they carry for causality (no scheduler
//! the drivers use reads them: PCT, random, DFS, replay), poisoning, and reentrancy
//! detection. A critical section with a scheduling point inside it (a nested `with`) is still
//! excluded properly: a second thread that takes a held mutex blocks until it is released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use shuttle_engine::runtime::execution::ExecutionState;
use shuttle_engine::runtime::task::TaskId;
use shuttle_engine::runtime::thread::switch;

/// Model threads blocked on one object, to wake all at once.
#[derive(Default)]
struct Waiters(Mutex<Vec<TaskId>>);

/// Block the current model thread (enlisted somewhere) until it is woken: one scheduling
/// point, taken blocked.
fn block() {
    ExecutionState::with(|s| s.current_mut().block(false));
    switch();
}

impl Waiters {
    /// Put the current model thread on the list (it is woken by the next
    /// [`Waiters::wake_all`]); it blocks at its next [`block`].
    fn enlist(&self) {
        let me = ExecutionState::me();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(me);
    }

    /// Make every blocked thread runnable again (no scheduling point).
    fn wake_all(&self) {
        let woken = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        if woken.is_empty() || ExecutionState::should_stop() {
            // Nobody waits, or the execution is being torn down and nobody runs again.
            return;
        }
        ExecutionState::with(|s| {
            for t in woken {
                s.get_mut(t).unblock();
            }
        });
    }
}

/// A mutex whose critical section costs one scheduling point (see the module's first lines).
pub struct StepMutex<T> {
    held: AtomicBool,
    waiters: Waiters,
    value: Mutex<T>,
}

/// A condition variable for [`StepMutex::wait_until`].
#[derive(Default)]
pub struct StepCondvar {
    waiters: Waiters,
}

/// Releases the mutex when the critical section ends, by return or by panic.
struct Release<'a, T>(&'a StepMutex<T>);

impl<T> Drop for Release<'_, T> {
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::SeqCst);
        self.0.waiters.wake_all();
    }
}

impl<T> StepMutex<T> {
    pub fn new(value: T) -> StepMutex<T> {
        StepMutex {
            held: AtomicBool::new(false),
            waiters: Waiters::default(),
            value: Mutex::new(value),
        }
    }

    /// Take the mutex now, with no scheduling point unless it is held (only by a thread at a
    /// scheduling point inside its critical section): then block until it is released.
    fn take(&self) -> Release<'_, T> {
        while self.held.swap(true, Ordering::SeqCst) {
            self.waiters.enlist();
            block();
            switch();
        }
        Release(self)
    }

    /// Run `f` with the mutex held: one scheduling point, before it.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        switch();
        let _held = self.take();
        let mut v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut v)
    }

    /// Hold the mutex and call `f` until it returns `Some`, blocking on `cv` in between: one
    /// scheduling point for the first call, and two per wait (the block, the retry).
    pub fn wait_until<R>(&self, cv: &StepCondvar, mut f: impl FnMut(&mut T) -> Option<R>) -> R {
        switch();
        loop {
            let held = self.take();
            if let Some(r) = f(&mut self.value.lock().unwrap_or_else(|p| p.into_inner())) {
                return r;
            }
            // Waiting before the release: a notify after it wakes this thread. Nothing runs in
            // between (no scheduling point), so no notification is lost either way.
            cv.waiters.enlist();
            drop(held);
            block();
            // The retry's own scheduling point (see the module's first lines).
            switch();
        }
    }
}

impl StepCondvar {
    /// Wake every thread waiting on it (no scheduling point: see the module's first lines).
    pub fn notify_all(&self) {
        self.waiters.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
    use shuttle::Runner;

    use crate::drive::shuttle::{config, keeping_panic_hook};
    use crate::sim::facade::{Facade, Shuttle};
    use crate::sim::kernel::{KernelState, Proc};
    use crate::sim::os::{Recorder, SharedKernel, SimOs};
    use pool_core::world::Os;

    /// Scheduling points of one execution in which two threads each run `n` critical
    /// sections on one mutex.
    fn points(n: usize) -> usize {
        let out = Arc::new(Mutex::new(0));
        let o = out.clone();
        let runner = Runner::new(PctScheduler::new_from_seed(1, 3, 1), config());
        keeping_panic_hook(|| {
            runner.run(move || {
                let m = Arc::new(Shuttle::mutex(0u64));
                let bodies: Vec<Box<dyn FnOnce() + Send>> = (0..2)
                    .map(|_| {
                        let m = m.clone();
                        Box::new(move || {
                            for _ in 0..n {
                                Shuttle::with(&m, |v| *v += 1);
                            }
                        }) as Box<dyn FnOnce() + Send>
                    })
                    .collect();
                Shuttle::run_threads(bodies);
                assert_eq!(Shuttle::with(&m, |v| *v), 2 * n as u64);
                *o.lock().unwrap() = shuttle::current::context_switches();
            })
        });
        let p = *out.lock().unwrap();
        p
    }

    /// One scheduling point per critical section, none for the release: two threads of `n`
    /// sections take exactly `2n` more points than two threads of none.
    #[test]
    fn a_critical_section_is_one_scheduling_point() {
        let base = points(0);
        for n in [1, 5, 20] {
            assert_eq!(points(n) - base, 2 * n, "{n} sections per thread");
        }
    }

    /// Each process overwrites `path` in place and reads `other`: the outcomes of every
    /// execution of `iterations` schedules drawn by `scheduler`.
    fn outcomes(
        scheduler: impl Scheduler + 'static,
        paths: [(&'static str, &'static str); 2],
    ) -> BTreeSet<Vec<Vec<u8>>> {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let out = seen.clone();
        let runner = Runner::new(scheduler, config());
        keeping_panic_hook(|| {
            runner.run(move || {
                let mut k = KernelState::new();
                k.install(Path::new("/sim/a"), b"a0");
                k.install(Path::new("/sim/b"), b"b0");
                let kernel = SharedKernel::<Shuttle>::new(k);
                let rec = Recorder::new();
                let got = Arc::new(Mutex::new(vec![Vec::new(); 2]));
                let bodies: Vec<Box<dyn FnOnce() + Send>> = paths
                    .into_iter()
                    .enumerate()
                    .map(|(i, (path, other))| {
                        let os =
                            SimOs::<Shuttle>::new(i as Proc + 1, 0, kernel.clone(), rec.clone());
                        let got = got.clone();
                        Box::new(move || {
                            let mut f = os.create(Path::new(path)).expect("create");
                            os.write(&mut f, b"new").expect("write");
                            os.close(f).expect("close");
                            let r = os.read(Path::new(other)).expect("read").expect("exists");
                            got.lock().unwrap()[i] = r;
                        }) as Box<dyn FnOnce() + Send>
                    })
                    .collect();
                Shuttle::run_threads(bodies);
                let got = got.lock().unwrap().clone();
                out.lock().unwrap().insert(got);
            })
        });
        let seen = seen.lock().unwrap().clone();
        seen
    }

    /// The reduction hides no order of two processes' steps on shared files: PCT and random
    /// (seeded, 300 schedules) still see each process read the other's file before and after
    /// the other's write, every outcome of the race.
    #[test]
    fn every_outcome_of_a_race_on_a_file_is_still_sampled() {
        let all = [
            vec![b"b0".to_vec(), b"new".to_vec()],
            vec![b"new".to_vec(), b"a0".to_vec()],
            vec![b"new".to_vec(), b"new".to_vec()],
        ];
        let race = [("/sim/a", "/sim/b"), ("/sim/b", "/sim/a")];
        for (name, seen) in [
            (
                "pct",
                outcomes(PctScheduler::new_from_seed(9, 3, 300), race),
            ),
            (
                "random",
                outcomes(RandomScheduler::new_from_seed(9, 300), race),
            ),
        ] {
            for want in &all {
                assert!(seen.contains(want), "{name}: {want:?} never seen: {seen:?}");
            }
        }
    }
}

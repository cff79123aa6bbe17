//! The one place that decides where the model's synchronisation primitives come from: loom or
//! shuttle (tokio's `src/loom/` facade idea, as a type parameter rather than a `--cfg`, so one
//! binary carries both). The simulated kernel, the simulated processes and the drivers are
//! written once against [`Facade`]; [`Loom`] and [`Shuttle`] plug in the scheduler.
//!
//! The API is closure-shaped (no guard types cross it), which keeps lifetimes out of the trait.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use super::shuttle_sync::{StepCondvar, StepMutex};

/// The scheduler's primitives: a mutex, a condition variable, parking, yielding, and threads.
pub trait Facade: Send + Sync + 'static {
    /// `loom` or `shuttle`.
    const NAME: &'static str;
    /// Whether the simulated kernel gives each path its own mutex (a *lane*, `sim/os.rs`):
    /// worth it only for a checker that explores a second order of two steps only when they
    /// touch one object (loom's DPOR). shuttle explores orders by scheduling points, not
    /// objects: one lane for every step costs it one scheduling point per step, as a lane per
    /// path does, and fewer for a step on two paths.
    const PATH_LANES: bool;
    type Mutex<T: Send + 'static>: Send + Sync;
    type Condvar: Send + Sync;

    fn mutex<T: Send + 'static>(value: T) -> Self::Mutex<T>;
    fn condvar() -> Self::Condvar;
    /// Run `f` with the mutex held (one scheduling point: the lock).
    fn with<T: Send + 'static, R>(m: &Self::Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R;
    /// Hold the mutex and call `f` until it returns `Some`, waiting on `cv` in between.
    fn wait_until<T: Send + 'static, R>(
        m: &Self::Mutex<T>,
        cv: &Self::Condvar,
        f: impl FnMut(&mut T) -> Option<R>,
    ) -> R;
    fn notify_all(cv: &Self::Condvar);
    /// Whether a blocked lock call of the simulated kernel parks its thread until a release
    /// wakes it (loom), rather than waiting on its lane's condition variable (shuttle): see
    /// `sim::os`, `SharedKernel::block_until`.
    const PARKS: bool;
    /// A thread that [`Facade::unpark`] wakes out of [`Facade::park`].
    type Parked: Send + Sync + 'static;
    /// The current thread.
    fn current() -> Self::Parked;
    /// Sleep until [`Facade::unpark`] wakes this thread; at once if it was woken since its
    /// last `park`. A scheduling point with no operation on any object.
    fn park();
    /// Wake `p` (no scheduling point).
    fn unpark(p: &Self::Parked);
    /// Whether a `flock` is a [`Facade::Gate`] held from its grant to its release (loom),
    /// rather than a lock call retried until it is granted: see `sim::os`,
    /// `SharedKernel::flock_gated`.
    const GATES: bool;
    /// A lock the scheduler itself knows: a thread blocked on it is blocked to the model
    /// checker (loom's DPOR orders its acquisitions, and a waiter takes no step until it is
    /// released). Held from [`Facade::enter`] until its [`Facade::Entered`] is dropped, by
    /// whichever thread drops it.
    type Gate: Send + Sync + 'static;
    /// A held [`Facade::Gate`]; dropping it opens the gate.
    type Entered: Send + 'static;
    fn gate() -> Self::Gate;
    /// Wait until the gate is open and take it (a scheduling point).
    fn enter(gate: &Arc<Self::Gate>) -> Self::Entered;
    /// A word whose reads commute with each other but not with its changes: loom's atomics,
    /// whose loads its DPOR does not order against each other. What a path's name is to the
    /// model checker (`sim::os`, `SharedKernel::open_by_name`).
    type Word: Send + Sync + 'static;
    /// A new word, settled (every thread started after this reads this value or a later one).
    fn word() -> Self::Word;
    /// Read the word (a scheduling point).
    fn read_word(word: &Self::Word);
    /// Change the word (a scheduling point).
    fn change_word(word: &Self::Word);
    /// Let the scheduler run someone else.
    fn yield_now();
    /// Run every body on its own model thread and wait for all of them. A panic in a body
    /// propagates.
    fn run_threads(bodies: Vec<Box<dyn FnOnce() + Send + 'static>>);
}

/// Stack of a loom model thread: loom's default coroutine stack is too small for serde and the
/// pool code.
pub const LOOM_STACK: usize = 4 << 20;

/// loom: exhaustive exploration of interleavings (within a preemption bound).
pub struct Loom;

impl Facade for Loom {
    const NAME: &'static str = "loom";
    const PATH_LANES: bool = true;
    type Mutex<T: Send + 'static> = loom::sync::Mutex<T>;
    type Condvar = loom::sync::Condvar;

    fn mutex<T: Send + 'static>(value: T) -> Self::Mutex<T> {
        loom::sync::Mutex::new(value)
    }
    fn condvar() -> Self::Condvar {
        loom::sync::Condvar::new()
    }
    fn with<T: Send + 'static, R>(m: &Self::Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R {
        let mut g = m.lock().expect("model mutex");
        f(&mut g)
    }
    fn wait_until<T: Send + 'static, R>(
        m: &Self::Mutex<T>,
        cv: &Self::Condvar,
        mut f: impl FnMut(&mut T) -> Option<R>,
    ) -> R {
        let mut g = m.lock().expect("model mutex");
        loop {
            if let Some(r) = f(&mut g) {
                return r;
            }
            g = cv.wait(g).expect("model condvar");
        }
    }
    fn notify_all(cv: &Self::Condvar) {
        cv.notify_all()
    }
    const PARKS: bool = true;
    type Parked = loom::thread::Thread;
    fn current() -> Self::Parked {
        loom::thread::current()
    }
    fn park() {
        loom::thread::park()
    }
    fn unpark(p: &Self::Parked) {
        p.unpark()
    }
    const GATES: bool = true;
    type Gate = loom::sync::Mutex<()>;
    type Entered = LoomEntered;
    fn gate() -> Self::Gate {
        loom::sync::Mutex::new(())
    }
    fn enter(gate: &Arc<Self::Gate>) -> Self::Entered {
        let guard = gate.lock().expect("model gate");
        // SAFETY: the guard borrows the mutex that `gate` (an `Arc`) owns; `LoomEntered`
        // keeps a clone of that `Arc` and drops the guard first, so the mutex outlives every
        // use of the guard.
        let guard = unsafe {
            std::mem::transmute::<loom::sync::MutexGuard<'_, ()>, loom::sync::MutexGuard<'static, ()>>(
                guard,
            )
        };
        LoomEntered {
            guard: Some(guard),
            _gate: gate.clone(),
        }
    }
    type Word = loom::sync::atomic::AtomicUsize;
    fn word() -> Self::Word {
        let w = loom::sync::atomic::AtomicUsize::new(0);
        // loom's initial value is a release store, which a later sequentially consistent
        // store does not hide from a thread that has not seen that store: a load could
        // then return either, and loom would explore both. Settled, only the last one.
        w.store(0, SeqCst);
        w
    }
    fn read_word(word: &Self::Word) {
        word.load(SeqCst);
    }
    fn change_word(word: &Self::Word) {
        word.fetch_add(1, SeqCst);
    }
    fn yield_now() {
        loom::thread::yield_now()
    }
    fn run_threads(bodies: Vec<Box<dyn FnOnce() + Send + 'static>>) {
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|b| {
                loom::thread::Builder::new()
                    .stack_size(LOOM_STACK)
                    .spawn(b)
                    .expect("loom thread")
            })
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    }
}

/// A held loom gate: the guard of a mutex, kept beside the `Arc` that owns the mutex.
pub struct LoomEntered {
    guard: Option<loom::sync::MutexGuard<'static, ()>>,
    _gate: Arc<loom::sync::Mutex<()>>,
}

impl Drop for LoomEntered {
    fn drop(&mut self) {
        // Leaving is an operation on the gate: loom's DPOR orders two operations only through
        // an object both touch, and releasing a mutex is none (acquiring it is). A
        // `try_lock` by the holder fails, and is one: the next holder is then ordered after
        // everything this holder did before leaving, so loom does not try to reorder the
        // steps of two critical sections the gate already orders (measured: docs/model.md).
        let _ = self._gate.try_lock();
        // The guard goes before the mutex it borrows (`_gate` is dropped after this).
        self.guard.take();
    }
}

// SAFETY: loom runs every model thread of an execution as a coroutine on the one OS thread
// that called `loom::model`, so the guard (which wraps a `std::sync::MutexGuard`) is
// released on the OS thread that took it, whichever model thread drops it.
unsafe impl Send for LoomEntered {}

/// shuttle: randomized (PCT, random) or depth-first exploration, with replayable schedules.
///
/// The mutex and condition variable are [`super::shuttle_sync`]'s, not shuttle's own: one
/// scheduling point per critical section instead of two or more (a lock and a release), and
/// none to notify. Threads and yields are shuttle's.
pub struct Shuttle;

impl Facade for Shuttle {
    const NAME: &'static str = "shuttle";
    const PATH_LANES: bool = false;
    type Mutex<T: Send + 'static> = StepMutex<T>;
    type Condvar = StepCondvar;

    fn mutex<T: Send + 'static>(value: T) -> Self::Mutex<T> {
        StepMutex::new(value)
    }
    fn condvar() -> Self::Condvar {
        StepCondvar::default()
    }
    fn with<T: Send + 'static, R>(m: &Self::Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R {
        m.with(f)
    }
    fn wait_until<T: Send + 'static, R>(
        m: &Self::Mutex<T>,
        cv: &Self::Condvar,
        f: impl FnMut(&mut T) -> Option<R>,
    ) -> R {
        m.wait_until(cv, f)
    }
    fn notify_all(cv: &Self::Condvar) {
        cv.notify_all()
    }
    /// Not measured for shuttle's schedules: its blocked lock calls keep waiting on the lanes'
    /// condition variables.
    const PARKS: bool = false;
    type Parked = shuttle::thread::Thread;
    fn current() -> Self::Parked {
        shuttle::thread::current()
    }
    fn park() {
        shuttle::thread::park()
    }
    fn unpark(p: &Self::Parked) {
        p.unpark()
    }
    /// Not measured for shuttle's schedules (its throughput rests on one scheduling point per
    /// critical section): its flocks stay lock calls retried on the lanes' condition variables.
    const GATES: bool = false;
    type Gate = ();
    type Entered = ();
    fn gate() -> Self::Gate {}
    fn enter(_: &Arc<Self::Gate>) -> Self::Entered {
        unreachable!("shuttle's flocks are no gates (GATES is false)")
    }
    /// Never read: shuttle takes one lane for every step (`PATH_LANES` is false).
    type Word = ();
    fn word() -> Self::Word {}
    fn read_word(_: &Self::Word) {}
    fn change_word(_: &Self::Word) {}
    fn yield_now() {
        shuttle::thread::yield_now()
    }
    fn run_threads(bodies: Vec<Box<dyn FnOnce() + Send + 'static>>) {
        let handles: Vec<_> = bodies.into_iter().map(shuttle::thread::spawn).collect();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    }
}

/// shuttle with its own `Mutex` and `Condvar` (two or more scheduling points per critical
/// section), for tests that compare what [`Shuttle`]'s primitives save.
#[cfg(test)]
pub struct ShuttleStd;

#[cfg(test)]
impl Facade for ShuttleStd {
    const NAME: &'static str = "shuttle";
    const PATH_LANES: bool = false;
    type Mutex<T: Send + 'static> = shuttle::sync::Mutex<T>;
    type Condvar = shuttle::sync::Condvar;

    fn mutex<T: Send + 'static>(value: T) -> Self::Mutex<T> {
        shuttle::sync::Mutex::new(value)
    }
    fn condvar() -> Self::Condvar {
        shuttle::sync::Condvar::new()
    }
    fn with<T: Send + 'static, R>(m: &Self::Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R {
        let mut g = m.lock().expect("model mutex");
        f(&mut g)
    }
    fn wait_until<T: Send + 'static, R>(
        m: &Self::Mutex<T>,
        cv: &Self::Condvar,
        mut f: impl FnMut(&mut T) -> Option<R>,
    ) -> R {
        let mut g = m.lock().expect("model mutex");
        loop {
            if let Some(r) = f(&mut g) {
                return r;
            }
            g = cv.wait(g).expect("model condvar");
        }
    }
    fn notify_all(cv: &Self::Condvar) {
        cv.notify_all()
    }
    /// Not measured for shuttle's schedules: its blocked lock calls keep waiting on the lanes'
    /// condition variables.
    const PARKS: bool = false;
    type Parked = shuttle::thread::Thread;
    fn current() -> Self::Parked {
        shuttle::thread::current()
    }
    fn park() {
        shuttle::thread::park()
    }
    fn unpark(p: &Self::Parked) {
        p.unpark()
    }
    // Gates and words as [`Shuttle`]'s.
    const GATES: bool = Shuttle::GATES;
    type Gate = <Shuttle as Facade>::Gate;
    type Entered = <Shuttle as Facade>::Entered;
    fn gate() -> Self::Gate {
        Shuttle::gate()
    }
    fn enter(gate: &Arc<Self::Gate>) -> Self::Entered {
        Shuttle::enter(gate)
    }
    type Word = <Shuttle as Facade>::Word;
    fn word() -> Self::Word {
        Shuttle::word()
    }
    fn read_word(word: &Self::Word) {
        Shuttle::read_word(word)
    }
    fn change_word(word: &Self::Word) {
        Shuttle::change_word(word)
    }
    fn yield_now() {
        shuttle::thread::yield_now()
    }
    fn run_threads(bodies: Vec<Box<dyn FnOnce() + Send + 'static>>) {
        Shuttle::run_threads(bodies)
    }
}

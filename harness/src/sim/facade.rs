//! The one place that decides where the model's synchronisation primitives come from: loom or
//! shuttle (tokio's `src/loom/` facade idea, as a type parameter rather than a `--cfg`, so one
//! binary carries both). The simulated kernel, the simulated processes and the drivers are
//! written once against [`Facade`]; [`Loom`] and [`Shuttle`] plug in the scheduler.
//!
//! The API is closure-shaped (no guard types cross it), which keeps lifetimes out of the trait.

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
    fn yield_now() {
        shuttle::thread::yield_now()
    }
    fn run_threads(bodies: Vec<Box<dyn FnOnce() + Send + 'static>>) {
        Shuttle::run_threads(bodies)
    }
}

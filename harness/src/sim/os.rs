//! pool-core's [`Os`] over the simulated kernel: each simulated process is one [`SimOs`] (its
//! own process-local mutex and descriptors) sharing one [`SharedKernel`] and one [`Recorder`].
//!
//! Scheduling points: every shared kernel call takes the scheduler's mutex of the lane of each
//! path it concerns ([`Key`], [`SharedKernel`]; a lock call that finds the lock taken parks
//! until a step of that lane may have released it, then tries again: loom; under shuttle it
//! waits on the lane's condition variable); every issuer request takes the issuer's lane
//! ([`super::issuer`]). Under loom, two kinds of steps are told to the checker more finely: a
//! `flock` is a *gate*, a lock loom itself knows, held from the grant to the step that drops
//! it ([`SharedKernel::flock_gated`]), and (without crashes) the open before it, when it
//! creates nothing, only reads its path's *name* ([`SharedKernel::open_by_name`]), so two
//! such opens of one path are not ordered against each other.
//! Nothing else is one: [`Os::pause`] yields ([`Pauses::Yield`], which does leave some
//! interleavings out: see [`Pauses`]) or does nothing ([`Pauses::Plain`]) and touches no
//! shared state, private steps (temp files) touch nothing another process can reach, and
//! recording is an observation stamped with the shared logical clock. Why each removed or
//! split point hides no interleaving: docs/model.md, "Scheduling points".
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

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pool_core::world::{Event, LockKind, Os, Pause};

use super::facade::Facade;
use super::kernel::{Ino, KernelState, OfdId, Proc};
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

    /// A recorder with room for `n` records (an execution like the last one: no regrowing).
    pub fn with_capacity(n: usize) -> Arc<Recorder> {
        Arc::new(Recorder {
            ticks: AtomicU64::new(0),
            records: Mutex::new(Vec::with_capacity(n)),
        })
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

/// What a shared step's scheduling point is about: a path (every step on a file or a name
/// takes the key of the path it concerns, [`KernelState::key_of`]), or the issuer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Path(PathBuf),
    Issuer,
}

/// The scheduler's mutex of one key, and the blocked lock calls that wait on what a step of
/// that key can change: parked threads (loom), or a condition variable (shuttle).
struct Lane<F: Facade> {
    lock: F::Mutex<()>,
    changed: F::Condvar,
    /// Processes waiting on `changed` (counted under `lock`): a step that may release a
    /// lock notifies only when someone waits, so a release nobody waits for is no extra
    /// scheduling point.
    waiting: AtomicUsize,
    /// Processes parked until a step of this lane may have released a lock (added under
    /// `lock`, by the attempt that found the lock taken).
    parked: Mutex<Vec<F::Parked>>,
}

impl<F: Facade> Lane<F> {
    fn new() -> Arc<Lane<F>> {
        Arc::new(Lane {
            lock: F::mutex(()),
            changed: F::condvar(),
            waiting: AtomicUsize::new(0),
            parked: Mutex::new(Vec::new()),
        })
    }

    /// Wake the waiters, if any (called with no lock held, right after the step). Unparking
    /// is no scheduling point; notifying is one.
    fn wake(&self) {
        let parked = std::mem::take(&mut *self.parked.lock().unwrap_or_else(|p| p.into_inner()));
        for p in &parked {
            F::unpark(p);
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            F::notify_all(&self.changed);
        }
    }
}

/// What a path's name (which inode it names, if any) is to the model checker, apart from its
/// lane: a [`Facade::Word`] that every step changing the name changes, right before it does,
/// and that an open going by name only reads ([`SharedKernel::open_by_name`]). So two opens
/// of one path commute, and each is ordered against every step that renames, creates or
/// unlinks it. A few words for every path: two paths on one word are only ordered when they
/// need not be.
struct Names<F: Facade> {
    words: Vec<F::Word>,
    /// The word of each path met so far, in the order met.
    slot: Mutex<BTreeMap<PathBuf, usize>>,
    /// Paths a step changing more than one name has changed the word of, and not yet the
    /// name ([`SharedKernel::naming`]).
    busy: Mutex<BTreeSet<PathBuf>>,
}

/// How many words [`Names`] spreads the paths over.
const NAME_WORDS: usize = 8;

impl<F: Facade> Names<F> {
    /// Words made now, before any process starts (so every process has seen them settled),
    /// if `used`.
    fn new(used: bool) -> Names<F> {
        Names {
            words: if used {
                (0..NAME_WORDS).map(|_| F::word()).collect()
            } else {
                Vec::new()
            },
            slot: Mutex::new(BTreeMap::new()),
            busy: Mutex::new(BTreeSet::new()),
        }
    }

    fn word(&self, path: &Path) -> &F::Word {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let n = slot.len();
        let i = *slot.entry(path.to_path_buf()).or_insert(n % NAME_WORDS);
        &self.words[i]
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The kernel state and the scheduler's mutexes, one per [`Key`] (a *lane*).
///
/// A *shared* step (one another process can observe, or whose outcome another process can
/// change) takes the mutexes of the keys it touches first: that is its scheduling point (one
/// per key; every step but a rename between two shared paths has one key). Two steps of
/// different keys touch disjoint state and commute, and the model checker's partial-order
/// reduction (loom's DPOR) sees that through the mutexes. A *private* step
/// ([`SharedKernel::private`]) touches only what no other process can reach and is not a
/// scheduling point. The state itself sits in a plain mutex that is never contended: the
/// model runs one thread at a time and no guard of it is held across a scheduling point.
///
/// When executions may crash, every step (and every issuer request) takes the one global
/// lane instead: the crash plan counts the steps in one order (the crash comes before step
/// N + 1 of that order), which only holds if every two steps are ordered by the checker. So
/// does every step under a checker that orders by scheduling points rather than objects
/// ([`Facade::PATH_LANES`]: shuttle), where a lane per path would only cost lookups.
pub struct SharedKernel<F: Facade> {
    /// The lane of every step when executions may crash, and of the harness's calls.
    global: Arc<Lane<F>>,
    /// The lanes of the keys met so far (without crashes).
    lanes: Mutex<BTreeMap<Key, Arc<Lane<F>>>>,
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
    /// Whether a blocked lock call parks ([`Facade::PARKS`]) or waits on a condition variable.
    parks: bool,
    /// Whether a `flock` is a gate ([`Facade::GATES`]; see [`SharedKernel::flock_gated`]).
    gated: bool,
    /// The gates of the inodes a `flock` was asked on, made on demand.
    gates: Mutex<BTreeMap<Ino, Arc<F::Gate>>>,
    /// The gates held: exactly the inodes the kernel holds a `flock` on (a gate is entered
    /// right before the grant, and left inside the step that drops the lock).
    entered: Mutex<BTreeMap<Ino, F::Entered>>,
    /// Gates whose lock a step dropped, left right after that step.
    left: Mutex<Vec<F::Entered>>,
    /// The paths' names, when opens go by name ([`SharedKernel::by_name`]).
    names: Names<F>,
    /// What the processes' pause points are.
    pauses: Pauses,
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

/// What the pool's pause points ([`Os::pause`]) are to the model checker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pauses {
    /// A yield (the default): loom switches to another process there without counting a
    /// preemption, and the process that paused runs again only after another one took a step
    /// (when one can). A bounded search spends its preemptions elsewhere, but an interleaving
    /// where a process goes on past a pause point while another could run is never explored,
    /// with or without a bound (docs/model.md, "Scheduling points").
    #[default]
    Yield,
    /// Nothing: only the shared steps are scheduling points. Within a preemption bound,
    /// every interleaving with at most that many preemptions; with no effective bound, every
    /// interleaving.
    Plain,
}

/// The error a dead process's system calls fail with.
pub fn crashed() -> io::Error {
    io::Error::other("the machine crashed")
}

/// What a blocking lock attempt came to, inside its step.
enum Attempt {
    Done(io::Result<()>),
    /// The key of the file moved (a rename from its path) since the lane was chosen.
    Rekey,
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
        let mut state = state;
        if plan == CrashPlan::Never {
            state.never_crashes();
        }
        #[cfg(test)]
        let plain_kernel = tests::WITHOUT_GATES_OR_NAMES.with(|w| w.get());
        #[cfg(not(test))]
        let plain_kernel = false;
        Arc::new(SharedKernel {
            global: Lane::new(),
            lanes: Mutex::new(BTreeMap::new()),
            state: Mutex::new(state),
            epoch: AtomicU64::new(0),
            running: Mutex::new(running),
            plan,
            steps: AtomicU64::new(0),
            report: Box::new(report),
            parks: F::PARKS,
            gated: F::GATES && !plain_kernel,
            gates: Mutex::new(BTreeMap::new()),
            entered: Mutex::new(BTreeMap::new()),
            left: Mutex::new(Vec::new()),
            names: Names::new(F::PATH_LANES && plan == CrashPlan::Never && !plain_kernel),
            pauses: Pauses::Yield,
        })
    }

    /// The same kernel, whose processes' pause points are `pauses` (before any step).
    pub fn with_pauses(mut self: Arc<Self>, pauses: Pauses) -> Arc<Self> {
        Arc::get_mut(&mut self)
            .expect("set before any process shares the kernel")
            .pauses = pauses;
        self
    }

    /// A kernel whose blocked lock calls wait on the lanes' condition variables whatever the
    /// scheduler (the way loom's did before they parked), to compare the two.
    #[cfg(test)]
    fn waiting_on_condvars(state: KernelState) -> Arc<SharedKernel<F>> {
        let mut k = SharedKernel::new(state);
        Arc::get_mut(&mut k).expect("just made").parks = false;
        k
    }

    /// A kernel as loom's was before gates and names: a `flock` is a lock call retried on
    /// its path's lane (parking while the lock is taken), and every open is a step on its
    /// path's lane. To compare the two.
    #[cfg(test)]
    fn without_gates_or_names(state: KernelState) -> Arc<SharedKernel<F>> {
        tests::without_gates_or_names(|| SharedKernel::new(state))
    }

    /// Shared steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// Whether executions may crash.
    pub fn may_crash(&self) -> bool {
        self.plan != CrashPlan::Never
    }

    /// Whether every step takes the one global lane: when executions may crash, and under a
    /// checker that does not reorder by object ([`Facade::PATH_LANES`]: shuttle).
    fn one_lane(&self) -> bool {
        self.may_crash() || !F::PATH_LANES
    }

    /// Whether an open that creates nothing goes by name ([`Names`]) rather than by its
    /// path's lane: with a lane per path and no crash (with one lane, every step is
    /// ordered against every other anyway).
    fn by_name(&self) -> bool {
        !self.names.words.is_empty()
    }

    /// Change the words of the names of `paths`, one after the other, right before the step
    /// that changes them (its lanes held). The last word's change is where an open by name
    /// finds the step done; the paths before it are busy until [`SharedKernel::named`]: an
    /// open by name of one of them that reads its word in between (after the change, before
    /// the step) is told to read again, so that every open by name reads a word before its
    /// change and sees the old name, or after it and sees the new one.
    fn naming(&self, paths: &[PathBuf]) {
        if !self.by_name() {
            return;
        }
        for (i, p) in paths.iter().enumerate() {
            F::change_word(self.names.word(p));
            if i + 1 < paths.len() {
                // Busy from its word's change on (an open that read the word before the
                // change read it before the step, rightly).
                self.names.busy().insert(p.clone());
            }
        }
    }

    /// The step that changed the names of `paths` is done.
    fn named(&self, paths: &[PathBuf]) {
        if paths.len() > 1 {
            self.names.busy().retain(|p| !paths.contains(p));
        }
    }

    /// `open(2)` of `path` by process `proc` of `life`, creating it if missing (no
    /// truncation). Creating changes the path's name: a step on its lane. Opening an
    /// existing file changes nothing another process observes, and what it finds depends
    /// only on the name: with names ([`SharedKernel::by_name`]) it only reads the name's
    /// word, so two opens of one path are not ordered against each other, and each is
    /// ordered against every rename, creation and unlink of it. Without, a step on its
    /// lane.
    pub fn open_by_name(&self, life: u64, proc: Proc, path: &Path) -> io::Result<OfdId> {
        let create = |k: &mut KernelState| k.open(proc, path, true, false);
        if !self.by_name() {
            return self.call_in(life, |_| path_key(path), create);
        }
        loop {
            if !self.alive(life) {
                return Err(crashed());
            }
            if self.state().ino_of(path).is_none() {
                return self.naming_call_in(life, |_| path_key(path), |k| missing(k, path), create);
            }
            F::read_word(self.names.word(path));
            if self.names.busy().contains(path) {
                // Between the two names a rename changes: it goes on, and this reads again.
                F::yield_now();
                continue;
            }
            self.tick();
            let mut k = self.state();
            if k.ino_of(path).is_none() {
                // Unlinked (or renamed away) since the look above: create it, on its lane.
                continue;
            }
            return k.open(proc, path, false, false);
        }
    }

    /// The lane of `key`: its own, or the global one ([`SharedKernel::one_lane`]).
    fn lane(&self, key: &Key) -> Arc<Lane<F>> {
        if self.one_lane() {
            return self.global.clone();
        }
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_insert_with(Lane::new)
            .clone()
    }

    /// The lanes of `keys` (sorted, so every step takes its mutexes in one order), each
    /// once.
    fn lanes_of(&self, keys: &[Key]) -> Vec<Arc<Lane<F>>> {
        if self.one_lane() {
            return vec![self.global.clone()];
        }
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        keys.iter().map(|k| self.lane(k)).collect()
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
        self.leave_gates(&k);
        (self.report)(&running, &k);
    }

    /// Take out the gate of every inode the kernel no longer holds a `flock` on (inside the
    /// step that dropped the lock), to be left by [`SharedKernel::open_left_gates`].
    fn leave_gates(&self, k: &KernelState) {
        let mut entered = self.entered.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<Ino> = entered
            .keys()
            .filter(|ino| !k.flocked(**ino))
            .copied()
            .collect();
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        for ino in gone {
            left.extend(entered.remove(&ino));
        }
    }

    /// Leave the gates [`SharedKernel::leave_gates`] took out: after the step, with no lock
    /// of the kernel's own held (leaving a gate is a scheduling point).
    fn open_left_gates(&self) {
        if !self.gated {
            return;
        }
        let left = std::mem::take(&mut *self.left.lock().unwrap_or_else(|p| p.into_inner()));
        drop(left);
    }

    /// The end of an execution with [`CrashPlan::AtStep`] N where exactly N steps were taken:
    /// the crash comes after the last one (no process left to kill).
    pub fn crash_at_end(&self) {
        if self.plan == CrashPlan::AtStep(self.steps()) {
            F::with(&self.global.lock, |()| self.crash_here());
            self.open_left_gates();
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

    /// One call by the harness, with every process joined (the global lane).
    pub fn call<R>(&self, f: impl FnOnce(&mut KernelState) -> R) -> R {
        F::with(&self.global.lock, |()| f(&mut self.state()))
    }

    /// Run `f` holding the mutexes of `lanes` (one scheduling point each).
    fn holding<R>(lanes: &[Arc<Lane<F>>], f: impl FnOnce() -> R) -> R {
        match lanes.split_first() {
            None => f(),
            Some((first, rest)) => F::with(&first.lock, |()| Self::holding(rest, f)),
        }
    }

    /// One shared step of a process started in `life`, keyed by what `keys` computes from
    /// the state: it fails with no scheduling point once the process is known dead, and
    /// inside the step if it died just before. The keys are computed again once the lanes
    /// are held: if a step that ran at those scheduling points moved them (a rename), the
    /// lanes are taken again. `f` says whether the step may have released a lock: then the
    /// lanes' waiters are woken.
    fn step<R>(
        &self,
        life: u64,
        keys: impl Fn(&KernelState) -> Vec<Key>,
        f: impl FnOnce(&mut KernelState) -> (io::Result<R>, bool),
    ) -> io::Result<R> {
        self.naming_step(life, keys, |_| Vec::new(), f)
    }

    /// [`SharedKernel::step`] for a step that may change the names of paths (create, rename,
    /// unlink): `names` says which, from the state once its lanes are held (every path it
    /// names is one of its keys, so nobody else can change that answer before the step).
    fn naming_step<R>(
        &self,
        life: u64,
        keys: impl Fn(&KernelState) -> Vec<Key>,
        names: impl Fn(&KernelState) -> Vec<PathBuf>,
        f: impl FnOnce(&mut KernelState) -> (io::Result<R>, bool),
    ) -> io::Result<R> {
        let mut f = Some(f);
        loop {
            if !self.alive(life) {
                return Err(crashed());
            }
            // With one lane, no key is needed (and none can move).
            let want = if self.one_lane() {
                Vec::new()
            } else {
                keys(&self.state())
            };
            let lanes = self.lanes_of(&want);
            let mut released = false;
            let r = Self::holding(&lanes, || {
                if !self.one_lane() && keys(&self.state()) != want {
                    return None;
                }
                self.tick();
                if !self.alive(life) {
                    return Some(Err(crashed()));
                }
                let renamed = if self.by_name() {
                    names(&self.state())
                } else {
                    Vec::new()
                };
                self.naming(&renamed);
                let f = f.take().expect("a step runs once");
                let mut k = self.state();
                let (r, rel) = f(&mut k);
                if rel && self.gated {
                    self.leave_gates(&k);
                }
                self.named(&renamed);
                released = rel;
                Some(r)
            });
            let Some(r) = r else { continue };
            self.open_left_gates();
            if released || !self.alive(life) {
                for lane in &lanes {
                    lane.wake();
                }
            }
            return r;
        }
    }

    /// [`SharedKernel::naming_step`] for a step that releases no lock.
    fn naming_call_in<R>(
        &self,
        life: u64,
        keys: impl Fn(&KernelState) -> Vec<Key>,
        names: impl Fn(&KernelState) -> Vec<PathBuf>,
        f: impl FnOnce(&mut KernelState) -> io::Result<R>,
    ) -> io::Result<R> {
        self.naming_step(life, keys, names, |k| (f(k), false))
    }

    /// [`SharedKernel::step`] for a step that releases no lock.
    fn call_in<R>(
        &self,
        life: u64,
        keys: impl Fn(&KernelState) -> Vec<Key>,
        f: impl FnOnce(&mut KernelState) -> io::Result<R>,
    ) -> io::Result<R> {
        self.step(life, keys, |k| (f(k), false))
    }

    /// One issuer request of a process of `life`, run by `f` under the issuer's lane (the
    /// global one when executions may crash, so a crash point orders it against every
    /// kernel step): `None` if the process is dead (no scheduling point once known).
    pub fn issuer_step<R>(&self, life: u64, f: impl FnOnce() -> R) -> Option<R> {
        self.call_in(life, |_| vec![Key::Issuer], |_| Ok(f())).ok()
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
    /// file its creator has not renamed yet (no other process can name it), shared otherwise,
    /// keyed by its file ([`KernelState::key_of`]).
    fn on_file<R>(
        &self,
        life: u64,
        ofd: OfdId,
        f: impl FnOnce(&mut KernelState) -> (io::Result<R>, bool),
    ) -> io::Result<R> {
        let private = self.state().is_private(ofd);
        if private {
            self.private(life, |k| f(k).0)
        } else {
            self.step(life, |k| ofd_key(k, ofd), f)
        }
    }

    /// The process of `life` exits: the kernel closes its descriptions and drops its locks.
    /// False (and nothing done) if a crash killed it first: then it is to be restarted.
    /// A shared step keyed by the files it still has open or locked; with none (and no
    /// crash to come) it changes nothing another process observes and is private.
    pub fn exit(&self, proc: Proc, life: u64) -> bool {
        let leave = |k: &mut KernelState| {
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&proc);
            (Ok(()), k.exit(proc))
        };
        let keys = |k: &KernelState| k.exit_keys(proc).into_iter().map(Key::Path).collect();
        if !self.may_crash() && self.state().exit_keys(proc).is_empty() {
            return self.private(life, |k| leave(k).0).is_ok();
        }
        self.step(life, keys, leave).is_ok()
    }

    /// `flock(LOCK_EX)` on the file `path` names, by process `proc` of `life`, with gates
    /// ([`Facade::GATES`]: loom): two calls, as in real life. `open(2)` (create if missing, no
    /// truncation: [`SharedKernel::open_by_name`]); then the process enters the gate of the
    /// inode it opened, blocking while another holds it, and the kernel grants it the lock.
    /// The gate stays entered until the step that drops the lock (unlock, close, exit, crash)
    /// and is left right after that step.
    ///
    /// So a blocked `flock` is a thread blocked on a lock the model checker knows: loom takes
    /// no step for it and does not retry it, and explores the orders of the grants as it
    /// explores the orders of a mutex's holders. Sound because the kernel's `flock` of an
    /// inode changes only with its gate held (the grant) or in a step that leaves the gate
    /// (the release), so every two changes of it, and every grant and the step that reads it,
    /// are ordered by the gate; the open is ordered against every rename, creation and unlink
    /// of the path, and a rename between the open and the grant locks the old file, as
    /// `flock` does: docs/model.md, "Scheduling points".
    pub fn flock_gated(&self, life: u64, proc: Proc, path: &Path) -> io::Result<OfdId> {
        let ofd = self.open_by_name(life, proc, path)?;
        let ino = self.state().ino_of_ofd(ofd)?;
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ino)
            .or_insert_with(|| Arc::new(F::gate()))
            .clone();
        let entered = F::enter(&gate);
        if !self.alive(life) {
            // A crash killed this process while it waited: the gate goes to the next one.
            drop(entered);
            return Err(crashed());
        }
        self.state().grant_flock(ofd)?;
        self.entered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ino, entered);
        Ok(ofd)
    }

    /// A blocking lock call of a process of `life` on the file `path` names: `f` opens it at
    /// the first attempt and tries the lock, and is retried each time a step of the file's
    /// key may have released a lock; fails if the process dies meanwhile.
    ///
    /// An attempt that finds the lock taken parks its thread (loom) until such a step wakes
    /// it: the wait itself is no operation on any object, so loom does not order it against
    /// the other processes' steps (with a condition variable, the wait and each notification
    /// were two more dependent operations per blocked attempt). No wake-up is lost: the
    /// attempt registers under the lane's mutex, the releasing step takes the same mutex
    /// and wakes every registered thread after it, and a thread woken before it parks does
    /// not sleep. Every attempt, the first and each retry, is a step under the lane as before.
    fn block_until(
        &self,
        life: u64,
        path: &Path,
        opened: &mut Option<OfdId>,
        mut f: impl FnMut(&mut KernelState, &mut Option<OfdId>) -> io::Result<bool>,
    ) -> io::Result<()> {
        let key_now = |k: &KernelState, opened: &Option<OfdId>| match opened {
            Some(ofd) => ofd_key(k, *ofd),
            None => vec![Key::Path(path.to_path_buf())],
        };
        // One attempt, inside the lane's step: `None` when the lock is taken.
        let mut attempt = |want: &Vec<Key>, opened: &mut Option<OfdId>| {
            if !self.one_lane() && key_now(&self.state(), opened) != *want {
                return Some(Attempt::Rekey);
            }
            self.tick();
            if !self.alive(life) {
                return Some(Attempt::Done(Err(crashed())));
            }
            // The first attempt opens the file, and creates it if missing.
            if opened.is_none() {
                self.naming(&missing(&self.state(), path));
            }
            match f(&mut self.state(), opened) {
                Ok(true) => Some(Attempt::Done(Ok(()))),
                Ok(false) => None,
                Err(e) => Some(Attempt::Done(Err(e))),
            }
        };
        loop {
            if !self.alive(life) {
                return Err(crashed());
            }
            let want = if self.one_lane() {
                Vec::new()
            } else {
                key_now(&self.state(), opened)
            };
            let lane = self.lanes_of(&want).pop().expect("one lane");
            let tried = if self.parks {
                F::with(&lane.lock, |()| {
                    let tried = attempt(&want, opened);
                    if tried.is_none() {
                        lane.parked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(F::current());
                    }
                    tried
                })
            } else {
                let mut counted = false;
                Some(F::wait_until(&lane.lock, &lane.changed, |()| {
                    if counted {
                        lane.waiting.fetch_sub(1, Ordering::SeqCst);
                        counted = false;
                    }
                    let tried = attempt(&want, opened);
                    if tried.is_none() {
                        lane.waiting.fetch_add(1, Ordering::SeqCst);
                        counted = true;
                    }
                    tried
                }))
            };
            self.open_left_gates();
            match tried {
                None => F::park(),
                Some(Attempt::Rekey) => {}
                Some(Attempt::Done(r)) => {
                    if !self.alive(life) {
                        lane.wake();
                    }
                    return r;
                }
            }
        }
    }
}

/// The key of a step on `ofd` (none for a closed description: the step fails on its own).
fn ofd_key(k: &KernelState, ofd: OfdId) -> Vec<Key> {
    k.key_of(ofd).map(Key::Path).into_iter().collect()
}

/// `path`, if it names no file (a step that opens it with `O_CREAT` changes its name).
fn missing(k: &KernelState, path: &Path) -> Vec<PathBuf> {
    match k.ino_of(path) {
        Some(_) => Vec::new(),
        None => vec![path.to_path_buf()],
    }
}

/// The key of a step on the name `path`.
fn path_key(path: &Path) -> Vec<Key> {
    vec![Key::Path(path.to_path_buf())]
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
        self.kernel
            .block_until(self.life, path, &mut opened, |k, opened| {
                let ofd = match *opened {
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
        self.kernel.step(
            self.life,
            |_| path_key(path),
            |k| {
                let (bytes, released) = k.read_file(proc, path);
                (Ok(bytes), released)
            },
        )
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let proc = self.proc;
        self.kernel
            .naming_call_in(
                self.life,
                |_| path_key(path),
                |k| missing(k, path),
                |k| {
                    self.stamp_intent();
                    k.open(proc, path, true, true)
                },
            )
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
            .on_file(self.life, file.0, |k| (k.write(file.0, bytes), false))
    }

    fn sync(&self, file: &mut SimFile) -> io::Result<()> {
        self.kernel
            .on_file(self.life, file.0, |k| (k.fsync(file.0), false))
    }

    fn close(&self, file: SimFile) -> io::Result<()> {
        self.stamp_intent();
        // A temp file holds no lock: nobody can be waiting on its close.
        self.kernel
            .on_file(self.life, file.0, |k| match k.close(file.0) {
                Ok(released) => (Ok(()), released),
                Err(e) => (Err(e), false),
            })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // Keyed by both paths, unless `from` is a temp file only this process can name.
        let keys = |k: &KernelState| {
            let mut keys = path_key(to);
            if !k.is_private_path(from) {
                keys.extend(path_key(from));
            }
            keys
        };
        // Both names change (a temp file's name no other process can open).
        let names = |k: &KernelState| {
            keys(k)
                .into_iter()
                .filter_map(|key| match key {
                    Key::Path(p) => Some(p),
                    Key::Issuer => None,
                })
                .collect()
        };
        self.kernel.naming_call_in(self.life, keys, names, |k| {
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
            self.kernel.call_in(self.life, |_| path_key(dir), sync)
        } else {
            self.kernel.private(self.life, sync)
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.stamp_intent();
        let names = |k: &KernelState| match k.ino_of(path) {
            Some(_) => vec![path.to_path_buf()],
            None => Vec::new(),
        };
        self.kernel
            .naming_call_in(self.life, |_| path_key(path), names, |k| k.unlink(path))
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
            // Two system calls in real life (open 0600 without truncation, then lock): under
            // loom, two here too (the open, then the gate: `flock_gated`); under shuttle one
            // step (see `open_and_lock`).
            LockKind::Flock if self.kernel.gated => Ok(SimHeld::Flock(
                self.kernel.flock_gated(self.life, self.proc, path)?,
            )),
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
            // Unlock, then the handle is dropped (closed): one step here. With gates, a step
            // on no lane when it changes only the lock, which the gate orders; on the file's
            // lane when the close drops a POSIX record lock too (see
            // `SharedKernel::flock_gated`).
            SimHeld::Flock(ofd) => self.kernel.step(
                self.life,
                |k| {
                    if self.kernel.gated && !k.close_drops_posix(ofd) {
                        Vec::new()
                    } else {
                        ofd_key(k, ofd)
                    }
                },
                |k| {
                    let r = k.funlock(ofd).and_then(|()| k.close(ofd).map(|_| ()));
                    (r, true)
                },
            ),
            SimHeld::Fcntl(ofd) => self.kernel.step(
                self.life,
                |k| ofd_key(k, ofd),
                |k| {
                    let r = k.posix_unlock(ofd).and_then(|()| k.close(ofd).map(|_| ()));
                    (r, true)
                },
            ),
        }
    }

    /// With [`Pauses::Yield`], a yield: the pool's pause points are where its race windows
    /// are, and a yield there lets the scheduler switch for free (loom does not count it as a
    /// preemption), so a bounded search reaches those windows first. With [`Pauses::Plain`],
    /// nothing. A dead process does not yield: what it still runs is invisible.
    fn pause(&self, _point: Pause) {
        if self.kernel.pauses == Pauses::Yield && self.alive() {
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
pub(crate) mod tests {
    use super::*;
    use crate::sim::facade::Loom;

    thread_local! {
        /// Every kernel made on this thread is as loom's was before gates and names (loom
        /// runs a model's threads on the thread that called it).
        pub(crate) static WITHOUT_GATES_OR_NAMES: std::cell::Cell<bool> =
            const { std::cell::Cell::new(false) };
    }

    /// Run `f` with every kernel it makes as loom's was before gates and names: a `flock`
    /// retried on its path's lane, every open a step on its path's lane.
    pub(crate) fn without_gates_or_names<R>(f: impl FnOnce() -> R) -> R {
        WITHOUT_GATES_OR_NAMES.with(|w| w.set(true));
        let r = f();
        WITHOUT_GATES_OR_NAMES.with(|w| w.set(false));
        r
    }

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

    /// Overwrite `path` in place, then read `other`: two shared steps.
    fn write_then_read(os: &SimOs<Loom>, path: &str, other: &str) -> Vec<u8> {
        let mut f = os.create(Path::new(path)).expect("create");
        os.write(&mut f, b"new").expect("write");
        os.close(f).expect("close");
        os.read(Path::new(other)).expect("read").expect("exists")
    }

    /// Steps on one file are ordered both ways: each process can read the other's file
    /// before or after the other's write, so loom shows every outcome.
    #[test]
    fn steps_on_the_same_file_are_explored_in_every_order() {
        const CROSSED: &[Body] = &[
            |os| write_then_read(os, "/sim/a", "/sim/b"),
            |os| write_then_read(os, "/sim/b", "/sim/a"),
        ];
        let (_, seen) = explore_on(SharedKernel::new, TWO_FILES, CROSSED);
        for want in [
            vec![b"b0".to_vec(), b"new".to_vec()],
            vec![b"new".to_vec(), b"a0".to_vec()],
            vec![b"new".to_vec(), b"new".to_vec()],
        ] {
            assert!(seen.contains(&want), "{want:?} never explored: {seen:?}");
        }
    }

    /// `/sim/a` and `/sim/b`, each holding its name's letter and `0`.
    const TWO_FILES: &[(&str, &[u8])] = &[("/sim/a", b"a0"), ("/sim/b", b"b0")];

    /// Executions loom explores (no preemption bound) for two processes that each overwrite
    /// a file in place and read it back: each its own file, or both `/sim/a`.
    fn executions(apart: bool) -> usize {
        const APART: &[Body] = &[
            |os| write_then_read(os, "/sim/a", "/sim/a"),
            |os| write_then_read(os, "/sim/b", "/sim/b"),
        ];
        const TOGETHER: &[Body] = &[
            |os| write_then_read(os, "/sim/a", "/sim/a"),
            |os| write_then_read(os, "/sim/a", "/sim/a"),
        ];
        let bodies = if apart { APART } else { TOGETHER };
        explore_on(SharedKernel::new, TWO_FILES, bodies).0
    }

    /// Steps on different files commute, and loom's DPOR sees it through the per-path lanes:
    /// two processes that each touch only their own file are explored in fewer executions
    /// than the same two on one file (with one mutex for the whole kernel, as many).
    #[test]
    fn steps_on_different_files_are_not_reordered() {
        let apart = executions(true);
        let together = executions(false);
        assert!(
            apart < together,
            "{apart} executions apart, {together} on one file"
        );
    }

    /// How a test makes the kernel of an execution from its initial state.
    type MakeKernel = fn(KernelState) -> Arc<SharedKernel<Loom>>;

    /// A simulated process's body: what it returns is its part of an execution's outcome.
    type Body = fn(&SimOs<Loom>) -> Vec<u8>;

    /// [`explore_on`] with `/sim/a` holding `0`.
    fn explore_with(
        kernel: MakeKernel,
        bodies: &'static [Body],
    ) -> (usize, std::collections::BTreeSet<Vec<Vec<u8>>>) {
        explore_on(kernel, &[("/sim/a", b"0")], bodies)
    }

    /// Executions loom explores (no preemption bound) of `bodies` as simulated processes 1,
    /// 2, ... on a kernel `kernel` makes with `files` installed, and what each execution's
    /// bodies returned, over every execution.
    fn explore_on(
        kernel: MakeKernel,
        files: &'static [(&'static str, &'static [u8])],
        bodies: &'static [Body],
    ) -> (usize, std::collections::BTreeSet<Vec<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let (out, r) = (seen.clone(), runs.clone());
        let mut b = loom::model::Builder::new();
        b.preemption_bound = None;
        b.check(move || {
            r.fetch_add(1, Ordering::SeqCst);
            let mut k = KernelState::new();
            for (path, bytes) in files {
                k.install(Path::new(path), bytes);
            }
            let kernel = kernel(k);
            let rec = Recorder::new();
            let got = Arc::new(Mutex::new(vec![Vec::new(); bodies.len()]));
            let threads: Vec<_> = bodies
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let os = SimOs::new(i as Proc + 1, 0, kernel.clone(), rec.clone());
                    let got = got.clone();
                    loom::thread::spawn(move || {
                        let r = body(&os);
                        got.lock().unwrap()[i] = r;
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let got = got.lock().unwrap().clone();
            out.lock().unwrap().insert(got);
        });
        let seen = seen.lock().unwrap().clone();
        (runs.load(Ordering::SeqCst), seen)
    }

    /// Under a lock of `kind` on `/sim/lock`: read `/sim/a`, then put it back with `me`
    /// appended, `times` times, with the pool's pause points before the lock and after the
    /// read. What this process read each time.
    fn append_locked(os: &SimOs<Loom>, kind: LockKind, me: u8, times: usize) -> Vec<u8> {
        let lock = Path::new("/sim/lock");
        let mut read = Vec::new();
        for _ in 0..times {
            os.pause(Pause::OpStart);
            let held = os.lock(kind, lock).expect("lock");
            let mut bytes = os.read(Path::new("/sim/a")).expect("read").expect("exists");
            os.pause(Pause::AfterLoad);
            read.push(*bytes.last().expect("not empty"));
            bytes.push(me);
            let mut f = os.create(Path::new("/sim/a")).expect("create");
            os.write(&mut f, &bytes).expect("write");
            os.close(f).expect("close");
            os.unlock(held).expect("unlock");
        }
        read
    }

    const FLOCK_APPENDERS: &[Body] = &[
        |os| append_locked(os, LockKind::Flock, b'1', 2),
        |os| append_locked(os, LockKind::Flock, b'2', 1),
    ];

    const FCNTL_APPENDERS: &[Body] = &[
        |os| append_locked(os, LockKind::Fcntl, b'1', 2),
        |os| append_locked(os, LockKind::Fcntl, b'2', 1),
    ];

    /// Two processes that each append twice under a `flock`.
    const FLOCK_APPENDERS_2X2: &[Body] = &[
        |os| append_locked(os, LockKind::Flock, b'1', 2),
        |os| append_locked(os, LockKind::Flock, b'2', 2),
    ];

    /// The kernel, with plain pause points.
    fn plain(k: KernelState) -> Arc<SharedKernel<Loom>> {
        SharedKernel::new(k).with_pauses(Pauses::Plain)
    }

    /// The kernel as it was before gates and names, with plain pause points.
    fn plain_before_gates(k: KernelState) -> Arc<SharedKernel<Loom>> {
        SharedKernel::without_gates_or_names(k).with_pauses(Pauses::Plain)
    }

    /// A lock call excludes (every process reads the last write before its own: no update
    /// is lost) and every order of the three critical sections is explored: a gated `flock`,
    /// a `flock` retried on its lane (as before gates), and a POSIX record lock (retried on
    /// its lane, parking in between). A waiter granted a lock someone holds, a lost wake-up
    /// (a deadlock), or an order loom never reaches, fails this.
    #[test]
    fn a_lock_call_excludes_and_every_order_is_explored() {
        let orders: std::collections::BTreeSet<Vec<Vec<u8>>> = [
            // p1, p1, p2 / p1, p2, p1 / p2, p1, p1: what each read.
            vec![b"01".to_vec(), b"1".to_vec()],
            vec![b"02".to_vec(), b"1".to_vec()],
            vec![b"21".to_vec(), b"0".to_vec()],
        ]
        .into_iter()
        .collect();
        let kinds: [(&str, MakeKernel, &'static [Body]); 3] = [
            ("gated flock", plain, FLOCK_APPENDERS),
            ("flock before gates", plain_before_gates, FLOCK_APPENDERS),
            ("fcntl", plain, FCNTL_APPENDERS),
        ];
        for (what, kernel, bodies) in kinds {
            let (_, seen) = explore_with(kernel, bodies);
            assert_eq!(seen, orders, "{what}");
        }
    }

    /// The same critical sections cost loom fewer executions when a blocked lock call parks
    /// than when it waits on a condition variable (each wait and notification was one more
    /// dependent operation to order), with the same outcomes.
    #[test]
    fn a_parked_lock_call_costs_fewer_executions_than_a_condvar_wait() {
        let (parked, by_parking) = explore_with(SharedKernel::new, FCNTL_APPENDERS);
        let (waited, by_waiting) = explore_with(SharedKernel::waiting_on_condvars, FCNTL_APPENDERS);
        assert_eq!(by_parking, by_waiting);
        assert!(
            parked < waited,
            "{parked} executions parking, {waited} waiting on a condition variable"
        );
    }

    /// Gates and names cost loom fewer executions than a `flock` retried on its path's lane
    /// with every open a step on that lane, with the same outcomes (two processes, two
    /// critical sections each, every interleaving).
    #[test]
    fn a_gated_flock_costs_fewer_executions_than_a_retried_one() {
        let (gated, by_gates) = explore_with(plain, FLOCK_APPENDERS_2X2);
        let (retried, by_lanes) = explore_with(plain_before_gates, FLOCK_APPENDERS_2X2);
        assert_eq!(by_gates, by_lanes);
        assert!(
            gated < retried,
            "{gated} executions with gates and names, {retried} without"
        );
    }

    /// Lock `path` with a `flock`: the content of the file it locked, then unlock.
    fn locked_content(os: &SimOs<Loom>, path: &str) -> Vec<u8> {
        let held = os.lock(LockKind::Flock, Path::new(path)).expect("lock");
        let SimHeld::Flock(ofd) = &held else {
            unreachable!("a flock")
        };
        let content = os.kernel.state().contents_of(*ofd).expect("open");
        os.unlock(held).expect("unlock");
        content
    }

    /// A rename of one shared path over another changes two names at once: an open by name
    /// never sees one changed and not the other, and each order of the rename and the two
    /// opens is explored, as it is when every open is a step on its path's lane. (With
    /// names, the rename changes the first name's word, then the second's, then the names:
    /// an open that reads the first word in between reads again once the rename is done.)
    #[test]
    fn an_open_by_name_sees_a_rename_of_two_names_whole() {
        const BODIES: &[Body] = &[
            |os| {
                os.rename(Path::new("/sim/a"), Path::new("/sim/b"))
                    .expect("rename");
                Vec::new()
            },
            |os| [locked_content(os, "/sim/b"), locked_content(os, "/sim/a")].concat(),
        ];
        const FILES: &[(&str, &[u8])] = &[("/sim/a", b"a"), ("/sim/b", b"b")];
        let by_names = explore_on(plain, FILES, BODIES).1;
        let by_lanes = explore_on(plain_before_gates, FILES, BODIES).1;
        let p2 = |seen: &std::collections::BTreeSet<Vec<Vec<u8>>>| {
            seen.iter()
                .map(|v| v[1].clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        // Both opens before the rename; b before it and a after (a is created again,
        // empty); both after. Never "aa": b opened after the rename and a before it.
        let want: std::collections::BTreeSet<Vec<u8>> =
            [b"ba".to_vec(), b"b".to_vec(), b"a".to_vec()]
                .into_iter()
                .collect();
        assert_eq!(p2(&by_lanes), want, "with every open a step on its lane");
        assert_eq!(p2(&by_names), want, "with opens by name");
    }

    /// Under a `flock` of the data file `/sim/a`: write `1` to a temp file and rename it over
    /// `/sim/a` (the `flock-data` pitfall's writer).
    fn rename_over_locked_data(os: &SimOs<Loom>) -> Vec<u8> {
        let data = Path::new("/sim/a");
        let held = os.lock(LockKind::Flock, data).expect("lock");
        let (mut f, tmp) = os.create_temp(data).expect("temp");
        os.write(&mut f, b"1").expect("write");
        os.close(f).expect("close");
        os.rename(&tmp, data).expect("rename");
        os.unlock(held).expect("unlock");
        Vec::new()
    }

    /// The `flock-data` pitfall through the simulated Os: p2 opens the data file while p1
    /// holds its lock, p1 renames a new file over it and unlocks, and p2's lock call (parked
    /// meanwhile) is granted on the old inode, which the path no longer names. The retry
    /// after the wake-up must lock the description opened at the first attempt: one that
    /// opened the path again would never lock a stale inode. Both outcomes are explored.
    #[test]
    fn a_parked_flock_call_locks_the_inode_it_opened_first() {
        const BODIES: &[Body] = &[rename_over_locked_data, |os| {
            let data = Path::new("/sim/a");
            let held = os.lock(LockKind::Flock, data).expect("lock");
            let SimHeld::Flock(ofd) = &held else {
                unreachable!("a flock")
            };
            let current = os.kernel.state().flock_holder(data) == Some(*ofd);
            os.unlock(held).expect("unlock");
            vec![u8::from(current)]
        }];
        let (_, seen) = explore_with(SharedKernel::new, BODIES);
        let p2: std::collections::BTreeSet<Vec<u8>> =
            seen.into_iter().map(|v| v[1].clone()).collect();
        assert_eq!(
            p2,
            [vec![0], vec![1]].into_iter().collect(),
            "0: stale inode, 1: the path's"
        );
    }

    /// The outcomes of `bodies` on `files` with gates and names, which must be those without
    /// (every open a step on its lane, a `flock` retried there), and more than one (so the
    /// comparison can fail). How many executions each took.
    fn same_outcomes_with_and_without_gates(
        files: &'static [(&'static str, &'static [u8])],
        bodies: &'static [Body],
    ) -> (usize, usize) {
        let (gated, by_names) = explore_on(plain, files, bodies);
        let (laned, by_lanes) = explore_on(plain_before_gates, files, bodies);
        assert_eq!(by_names, by_lanes, "with gates and names, and without");
        assert!(by_lanes.len() > 1, "one outcome: {by_lanes:?}");
        (gated, laned)
    }

    /// Read `/sim/a` and write it back with `me` appended: what was read.
    fn append(os: &SimOs<Loom>, me: u8) -> Vec<u8> {
        let mut bytes = os.read(Path::new("/sim/a")).expect("read").expect("exists");
        let read = bytes.clone();
        bytes.push(me);
        let mut f = os.create(Path::new("/sim/a")).expect("create");
        os.write(&mut f, &bytes).expect("write");
        os.close(f).expect("close");
        read
    }

    /// Take a `flock` of `/sim/lock`, then [`append`] `me` under it.
    fn locked_append(os: &SimOs<Loom>, me: u8) -> Vec<u8> {
        let held = os
            .lock(LockKind::Flock, Path::new("/sim/lock"))
            .expect("lock");
        let read = append(os, me);
        os.unlock(held).expect("unlock");
        read
    }

    /// Unlink the lock file, then append under a `flock` of that path (so of a new file),
    /// while another process appends under a `flock` of the lock file: the other may have
    /// opened the unlinked one, and then both are in at once (an update is lost). Seen
    /// failing with neither an unlink nor a creating open changing its name's word (either
    /// one alone was not seen to fail it).
    #[test]
    fn a_lock_file_unlinked_while_another_opens_it_gives_the_same_outcomes() {
        fn unlink_then_append(os: &SimOs<Loom>) -> Vec<u8> {
            os.remove(Path::new("/sim/lock")).expect("remove");
            locked_append(os, b'1')
        }
        const FILES: &[(&str, &[u8])] = &[("/sim/a", b"0"), ("/sim/lock", b"")];
        const FIRST: &[Body] = &[unlink_then_append, |os| locked_append(os, b'2')];
        const SECOND: &[Body] = &[|os| locked_append(os, b'2'), unlink_then_append];
        same_outcomes_with_and_without_gates(FILES, FIRST);
        same_outcomes_with_and_without_gates(FILES, SECOND);
    }

    /// A rename of one shared path over another, with one process opening (and locking) the
    /// first and another the second: the same outcomes as when every open is a step on its
    /// path's lane. (Seen failing with only the last name's word changed by the rename.)
    #[test]
    fn opens_by_name_of_both_paths_of_a_rename_give_the_same_outcomes() {
        const BODIES: &[Body] = &[
            |os| {
                os.rename(Path::new("/sim/a"), Path::new("/sim/b"))
                    .expect("rename");
                Vec::new()
            },
            |os| locked_content(os, "/sim/a"),
            |os| locked_content(os, "/sim/b"),
        ];
        const FILES: &[(&str, &[u8])] = &[("/sim/a", b"a"), ("/sim/b", b"b")];
        same_outcomes_with_and_without_gates(FILES, BODIES);
    }

    /// `flock-data`: a new file renamed over the locked data file, while another process
    /// locks the data file and reads it through its description. (Seen failing with an open
    /// by name that reads no word.)
    #[test]
    fn a_rename_over_a_locked_data_file_gives_the_same_outcomes() {
        const BODIES: &[Body] = &[rename_over_locked_data, |os| locked_content(os, "/sim/a")];
        same_outcomes_with_and_without_gates(&[("/sim/a", b"0")], BODIES);
    }

    /// Write `/sim/a` twice with a pause point between, or read it twice.
    const WRITE_PAUSE_WRITE_AND_READ_TWICE: &[Body] = &[
        |os| {
            for v in [b"1", b"2"] {
                let mut f = os.create(Path::new("/sim/a")).expect("create");
                os.write(&mut f, v).expect("write");
                os.close(f).expect("close");
                os.pause(Pause::AfterLoad);
            }
            Vec::new()
        },
        |os| {
            let read = || os.read(Path::new("/sim/a")).expect("read").expect("exists");
            [read(), read()].concat()
        },
    ];

    /// A yield at a pause point hides interleavings from loom even with no preemption bound:
    /// the process that paused goes on only after another took a step, so p2 never reads
    /// the setup's content and then p1's second write with nothing of its own in between
    /// ("02"). With plain pause points every interleaving is explored, that one included.
    #[test]
    fn a_yielding_pause_point_hides_interleavings_that_a_plain_one_does_not() {
        let reads = |kernel| {
            let (_, seen) = explore_with(kernel, WRITE_PAUSE_WRITE_AND_READ_TWICE);
            seen.into_iter()
                .map(|v| String::from_utf8(v[1].clone()).expect("digits"))
                .collect::<std::collections::BTreeSet<String>>()
        };
        let plain = reads(|k| SharedKernel::new(k).with_pauses(Pauses::Plain));
        let yielding = reads(|k| SharedKernel::new(k).with_pauses(Pauses::Yield));
        for want in ["00", "01", "02", "11", "12", "22"] {
            assert!(plain.contains(want), "{want} never read: {plain:?}");
        }
        assert!(!yielding.contains("02"), "{yielding:?}");
        assert!(yielding.is_subset(&plain));
    }
}

//! One execution of a scenario on the simulated kernel: the initial world (the same store,
//! external files and token families as a fork run, from the same seed), one model thread per
//! simulated process playing its role with its own [`pool_core::Pool`], and the history.
//!
//! Machine crashes ([`ModelPlan::crash`], at most one per execution): with
//! [`CrashPlan::AtStep`] N the machine crashes right before the execution's shared step N + 1
//! (a kernel call or issuer request; the step's process and every other running one die), or
//! after its last step if it took exactly N (the loom driver explores every N, shuttle draws
//! one per execution). Every process the crash killed starts again, as a supervisor restarts
//! it: a new life of the same process plays its role from the beginning, loading the store as
//! the crash left it.
//!
//! The initial world is built once per plan ([`World`]) and copied into each execution.
//!
//! Only the kernel, the issuer and the recorder are shared between processes. Pause rules of
//! the scenario (sleep, jitter, rendezvous) are not used: every pause point yields to the
//! scheduler (or is nothing at all: [`Pauses`]), which explores the interleavings itself.
//! `think_ms` is ignored for the same reason.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pool_core::digest::tag;
use pool_core::external::{ExternalCreds, ExternalFormat};
use pool_core::versions::Versions;
use pool_core::world::{Clock, Event, Issuer, Os, Pause};
use pool_core::{Pool, Strategy};

use super::facade::Facade;
use super::issuer::{LogicalClock, RecorderSink, SharedIssuer, SimIssuer};
use super::kernel::{KernelState, Proc};
use super::os::{CrashPlan, Pauses, Recorder, SharedKernel, SimOs};
use crate::history::{Ev, History, Record, StoreStates};
use crate::issuer::rules::IssuerState;
use crate::plan::roles::{play_role, CorePool};
use crate::plan::{external_format, external_path, pool_config, setup, worker_seed, WorkerPlan};
use crate::scenario::{RoleSpec, Scenario};

/// The directory the simulated store lives in.
pub const DIR: &str = "/sim";
/// Logical time at the start of every execution (Unix ms).
pub const START_MS: u64 = 1_750_000_000_000;

/// What every execution of a model check runs: a scenario (process counts and op counts
/// already applied), a strategy and a seed.
#[derive(Clone, Debug)]
pub struct ModelPlan {
    pub scenario: Scenario,
    pub strategy: Strategy,
    pub seed: u64,
    /// Whether and where the machine crashes (see the module's first lines).
    pub crash: CrashPlan,
}

impl ModelPlan {
    /// Simulated processes (model threads) per execution.
    pub fn processes(&self) -> u32 {
        self.scenario.processes()
    }
}

/// Run one execution under scheduler `F` (call it inside `F`'s model) and return its history.
pub fn execute<F: Facade>(plan: &ModelPlan) -> History {
    execute_counting::<F>(plan).0
}

/// [`execute`], and the number of shared steps the execution took (the crash points of
/// [`CrashPlan::AtStep`] are 0 to that number).
pub fn execute_counting<F: Facade>(plan: &ModelPlan) -> (History, u64) {
    World::new(plan).execute_counting::<F>(plan.crash)
}

/// The start of every execution of a plan, built once (it is a pure function of the plan):
/// the kernel with the initial store and external files installed, the issuer with the token
/// families it minted for them, and the history records of that setup. Every execution
/// starts from copies of these, so a driver that runs many executions of one plan builds the
/// world once ([`World::execute_counting`]); the executions share nothing else but two memos
/// of pure functions of store bytes: their judged state ([`StoreStates`]) and what the pools
/// parse them to ([`Versions`]).
pub struct World {
    plan: ModelPlan,
    kernel: KernelState,
    /// The issuer as the setup left it; each execution reports to its own copy.
    issuer: std::sync::Mutex<IssuerState>,
    /// The setup's records (the issuer's ledger, the external files, the initial store), in
    /// order, from the first tick.
    setup: Vec<Record>,
    stores: Arc<StoreStates>,
    /// The store versions every simulated pool of every execution shares (see
    /// [`Versions::shared`]: a memo of parsing and hashing store bytes, which are pure
    /// functions of them; what each pool reads, does and records is unchanged).
    versions: Arc<Versions>,
    /// Records of the last execution: the next one's recorder starts with that much room.
    records: std::sync::atomic::AtomicUsize,
}

/// Store versions the simulated pools share at most (an execution of the catalog's scenarios
/// sees a few dozen).
const SHARED_VERSIONS: usize = 256;

impl World {
    /// Build the start of `plan`'s executions (its `crash` is the search's, not used here).
    pub fn new(plan: &ModelPlan) -> Arc<World> {
        let sc = &plan.scenario;
        let rec = Recorder::new();
        let keys = setup::keys(sc, plan.seed);
        let mut issuer = IssuerState::new(keys.issuer.clone(), Box::new(RecorderSink(rec.clone())))
            .with_ns_clock(|| 0);
        let dir = PathBuf::from(DIR);
        let mut kernel = KernelState::new();
        let (store, externals) = setup::initial_world(sc, keys, &mut issuer, START_MS, None)
            .expect("the simulated world cannot fail to build");
        for (source, bytes) in externals {
            kernel.install(&external_path(&dir, &source), &bytes);
            rec.push(0, setup::external_write(&source, &bytes).1);
        }
        let bytes = store.to_bytes();
        kernel.install(&store_path(), &bytes);
        for ev in setup::initial_records(sc, &store, &bytes) {
            rec.push(0, ev);
        }
        Arc::new(World {
            plan: plan.clone(),
            kernel,
            issuer: std::sync::Mutex::new(issuer),
            setup: rec.take(),
            stores: Arc::new(StoreStates::new(&sc.pool.provider)),
            versions: Arc::new(Versions::shared(SHARED_VERSIONS)),
            records: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The plan this world was built for.
    pub fn plan(&self) -> &ModelPlan {
        &self.plan
    }

    /// Run one execution under scheduler `F` (call it inside `F`'s model), the machine
    /// crashing as `crash` says: its history, and the number of shared steps it took (the
    /// crash points of [`CrashPlan::AtStep`] are 0 to that number).
    pub fn execute_counting<F: Facade>(self: &Arc<World>, crash: CrashPlan) -> (History, u64) {
        self.execute_with::<F>(crash, Pauses::Yield)
    }

    /// [`World::execute_counting`] with the pool's pause points as `pauses` says.
    pub fn execute_with<F: Facade>(
        self: &Arc<World>,
        crash: CrashPlan,
        pauses: Pauses,
    ) -> (History, u64) {
        let sc = &self.plan.scenario;
        let rec = Recorder::with_capacity(self.records.load(Ordering::Relaxed));
        // The same records at the same ticks as building the world made.
        for r in &self.setup {
            rec.push(r.proc, r.ev.clone());
        }
        let issuer = self
            .issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fork(Box::new(RecorderSink(rec.clone())));
        let store = store_path();
        let procs: BTreeSet<Proc> = (1..=self.plan.processes()).collect();
        let (r, stores) = (rec.clone(), self.stores.clone());
        let kernel =
            SharedKernel::<F>::with_crashes(self.kernel.clone(), procs, crash, move |killed, k| {
                for &p in killed {
                    let point = "machine_crash".to_string();
                    r.push(p, Ev::Killed { point });
                }
                let (hash, outcome) = stores.state(k.contents(&store).as_deref());
                r.push(0, Ev::Crash { hash, outcome });
            })
            .with_pauses(pauses);
        let issuer: SharedIssuer = Arc::new(std::sync::Mutex::new(issuer));
        let mut bodies: Vec<Box<dyn FnOnce() + Send + 'static>> = Vec::new();
        let mut proc: Proc = 0;
        for role in &sc.roles {
            for _ in 0..role.count {
                proc += 1;
                let p = Process {
                    life: Cell::new(0),
                    plan: WorkerPlan {
                        proc,
                        role: role.clone(),
                        strategy: self.plan.strategy,
                        dir: PathBuf::from(DIR),
                        issuer_url: String::new(),
                        seed: worker_seed(self.plan.seed, proc),
                        incarnation: 0,
                    },
                    world: self.clone(),
                    kernel: kernel.clone(),
                    rec: rec.clone(),
                    issuer: issuer.clone(),
                };
                bodies.push(Box::new(move || p.run()));
            }
        }
        F::run_threads(bodies);
        kernel.crash_at_end();

        let final_bytes = kernel.call(|k| k.contents(&store_path()));
        let (hash, outcome) = self.stores.state(final_bytes.as_deref());
        rec.push(0, Ev::FinalStore { hash, outcome });
        let steps = kernel.steps();
        let mut records = rec.take();
        self.records.store(records.len(), Ordering::Relaxed);
        normalize_ops(&mut records);
        (History::from_records(records), steps)
    }
}

/// The simulated store's path.
fn store_path() -> PathBuf {
    Path::new(DIR).join("auth.json")
}

/// Operation ids come from a process-wide counter, which keeps counting across executions;
/// renumber them per process in order of appearance so that equal schedules give equal
/// histories.
pub fn normalize_ops(records: &mut [Record]) {
    let mut map: foldhash::HashMap<(Proc, u64), u64> = foldhash::HashMap::default();
    let mut next: foldhash::HashMap<Proc, u64> = foldhash::HashMap::default();
    for r in records.iter_mut() {
        if r.proc == 0 {
            continue;
        }
        let Ev::Pool { event } = &mut r.ev else {
            continue;
        };
        let op = match event {
            Event::OpBegin { op, .. }
            | Event::OpEnd { op, .. }
            | Event::Read { op, .. }
            | Event::WriteBegin { op, .. }
            | Event::Write { op, .. }
            | Event::Refresh { op, .. } => op,
        };
        let proc = r.proc;
        *op = *map.entry((proc, *op)).or_insert_with(|| {
            let n = next.entry(proc).or_insert(0);
            *n += 1;
            *n
        });
    }
}

/// One simulated process.
struct Process<F: Facade> {
    /// The machine's life its current start belongs to.
    life: Cell<u64>,
    plan: WorkerPlan,
    world: Arc<World>,
    kernel: Arc<SharedKernel<F>>,
    rec: Arc<Recorder>,
    issuer: SharedIssuer,
}

impl<F: Facade> Process<F> {
    /// Play the role; if a crash killed this life, start again in the machine's new life.
    fn run(mut self) {
        let proc = self.plan.proc;
        loop {
            self.push(Ev::ProcStart {
                role: self.plan.role.label(),
            });
            self.play();
            if self.kernel.exit(proc, self.life.get()) {
                self.push(Ev::ProcExit {
                    status: "exit 0".into(),
                    crashed: false,
                });
                return;
            }
            // Killed by the crash (the only one of the execution): a supervisor restarts it.
            self.life.set(self.kernel.life());
            self.plan.incarnation += 1;
        }
    }

    /// Append to the history, unless this life of the process is over.
    fn push(&self, ev: Ev) {
        if self.kernel.alive(self.life.get()) {
            self.rec.push(self.plan.proc, ev);
        }
    }

    fn os(&self) -> SimOs<F> {
        SimOs::new(
            self.plan.proc,
            self.life.get(),
            self.kernel.clone(),
            self.rec.clone(),
        )
    }

    fn issuer(&self) -> SimIssuer<F> {
        SimIssuer {
            proc: self.plan.proc,
            life: self.life.get(),
            kernel: self.kernel.clone(),
            state: self.issuer.clone(),
            clock: self.clock(),
        }
    }

    fn clock(&self) -> LogicalClock {
        LogicalClock {
            start_ms: START_MS,
            rec: self.rec.clone(),
        }
    }

    /// The role loop every driver plays ([`play_role`]), on the simulated world.
    fn play(&self) {
        let cfg = pool_config(&self.world.plan.scenario, &self.plan);
        let new_pool = || {
            Pool::new(self.os(), self.issuer(), self.clock(), cfg.clone())
                .with_versions(self.world.versions.clone())
        };
        let role: &RoleSpec = &self.plan.role;
        let external = role
            .source
            .as_deref()
            .and_then(|s| Some((external_format(s)?, external_path(Path::new(DIR), s))));
        // Pool-core is never broken: its errors are in the history.
        let _ = play_role(
            role,
            self.plan.proc,
            self.plan.seed,
            &mut CorePool::new(new_pool),
            || (),
            || {
                if let Some((format, path)) = &external {
                    self.external_refresh(path, *format, cfg.refresh_margin_ms);
                }
            },
        );
    }

    /// The external CLI's refresh of its own file (temp + rename, no lock), on the kernel.
    fn external_refresh(&self, path: &Path, format: ExternalFormat, margin_ms: u64) {
        let os = self.os();
        let clock = self.clock();
        let Ok(Some(old)) = os.read(path) else { return };
        let Some(creds) = format.parse(&old) else {
            return;
        };
        let now = clock.now_ms();
        if creds.expires_at_ms.is_some_and(|t| t > now + margin_ms) {
            return;
        }
        os.pause(Pause::BeforeRedeem);
        let reply = self.issuer().redeem(&creds.refresh_token);
        os.pause(Pause::AfterRedeem);
        let Ok(g) = reply else { return };
        let new = ExternalCreds {
            access_token: g.access_token,
            refresh_token: g.refresh_token,
            expires_at_ms: Some(clock.now_ms() + g.expires_in_s * 1000),
        };
        let bytes = format.render(Some(&old), &new, now);
        let Ok((mut f, tmp)) = os.create_temp(path) else {
            return;
        };
        let (begin, end) = setup::external_write(format.source(), &bytes);
        self.push(begin);
        let written = os
            .write(&mut f, &bytes)
            .and_then(|()| os.sync(&mut f))
            .and_then(|()| os.close(f))
            .and_then(|()| os.rename(&tmp, path));
        if written.is_ok() {
            self.push(end);
            self.push(Ev::ExternalWrite {
                path: path.display().to_string(),
                refresh: tag(&new.refresh_token),
            });
        }
    }
}

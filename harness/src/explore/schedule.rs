//! A shuttle scheduler driven by a vector of choices, so that a schedule is plain data that
//! proptest generates and shrinks together with the workload.
//!
//! At every scheduling decision with more than one runnable task, the next choice `c` picks
//! `runnable[(base + c) % len]`, where `base` is the running task (or, when it yields, the
//! task after it). So choice 0 means "no context switch" (and "the next one" at a yield), and
//! a choice vector that shrinks toward zeros and toward shorter shrinks toward fewer
//! preemptions. When the choices run out, every further decision is 0. Decisions with one
//! runnable task take no choice.
//!
//! Every decision is also recorded as a shuttle `Schedule` (seed 0), encoded with shuttle's
//! serializer: the same replay handle `poolcheck model --replay` takes, run there by shuttle's
//! own `ReplayScheduler`.

use std::sync::{Arc, Mutex};

use shuttle::scheduler::{DataSource, RandomDataSource, Schedule, Scheduler, Task, TaskId};
use shuttle::Runner;
use shuttle_engine::scheduler::serialization::serialize_schedule;

use crate::drive::shuttle::{config, keeping_panic_hook};
use crate::history::History;
use crate::sim::{execute, ModelPlan, Shuttle};

/// Seed of the recorded schedule and of the random draws (shuttle's replay reseeds from it).
const SEED: u64 = 0;

/// One execution, scheduled by `choices`.
pub struct ChoiceScheduler {
    choices: Vec<u8>,
    pos: usize,
    started: bool,
    data: RandomDataSource,
    recorded: Arc<Mutex<Schedule>>,
}

impl ChoiceScheduler {
    pub fn new(choices: &[u8], recorded: Arc<Mutex<Schedule>>) -> Self {
        ChoiceScheduler {
            choices: choices.to_vec(),
            pos: 0,
            started: false,
            data: RandomDataSource::initialize(SEED),
            recorded,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scheduler for ChoiceScheduler {
    fn new_execution(&mut self) -> Option<Schedule> {
        if self.started {
            return None;
        }
        self.started = true;
        let seed = self.data.reinitialize();
        *lock(&self.recorded) = Schedule::new(seed);
        Some(Schedule::new(seed))
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let len = runnable.len();
        if len == 0 {
            return None;
        }
        let pick = if len == 1 {
            runnable[0].id()
        } else {
            let base = match current.and_then(|c| runnable.iter().position(|t| t.id() == c)) {
                Some(i) if is_yielding => (i + 1) % len,
                Some(i) => i,
                None => 0,
            };
            let c = self.choices.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            runnable[(base + usize::from(c)) % len].id()
        };
        lock(&self.recorded).push_task(pick);
        Some(pick)
    }

    fn next_u64(&mut self) -> u64 {
        lock(&self.recorded).push_random();
        self.data.next_u64()
    }
}

/// One case's execution.
pub struct CaseRun {
    pub history: History,
    /// shuttle's schedule string of the execution (a `--replay` handle).
    pub handle: String,
}

/// Run `plan` once under the schedule `choices`. `Err` when the execution panicked (a shuttle
/// deadlock report or a bug in the harness).
pub fn run_case(plan: Arc<ModelPlan>, choices: &[u8]) -> Result<CaseRun, String> {
    let recorded = Arc::new(Mutex::new(Schedule::new(SEED)));
    let out: Arc<Mutex<Option<History>>> = Arc::default();
    let runner = Runner::new(ChoiceScheduler::new(choices, recorded.clone()), config());
    let o = out.clone();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        keeping_panic_hook(|| {
            runner.run(move || {
                let h = execute::<Shuttle>(&plan);
                *lock(&o) = Some(h);
            })
        })
    }));
    if let Err(p) = run {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        return Err(format!("the execution panicked: {msg}"));
    }
    let history = lock(&out).take().ok_or("the execution ran no model")?;
    let handle = serialize_schedule(&lock(&recorded))
        .split_whitespace()
        .collect::<String>();
    Ok(CaseRun { history, handle })
}

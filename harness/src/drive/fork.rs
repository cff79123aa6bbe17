//! The fork driver: one run of a scenario under a strategy on real processes.
//!
//! The parent (single-threaded when it forks: a precondition of forking safely) prepares the
//! run directory, starts the issuer in its own process, forks one worker per role instance,
//! opens the start gate, and reaps them. Each worker writes its own event log; the parent
//! then merges the logs and the issuer's ledger into one [`History`] and adds the final
//! store. A worker that crashes or hangs is reported in the history, never fatal to the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use pool_core::real::SystemClock;
use pool_core::world::{Clock, Pause};
use pool_core::Strategy;

use super::hooks::{KillSpec, Rule, WorkerHooks};
use super::log::EventLog;
use super::rendezvous::Coordination;
use super::setup::prepare;
use crate::history::{Ev, History};
use crate::plan::{first_op_id, worker_seed, WorkerPlan};
use crate::scenario::Scenario;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Overrides the count of the scenario's first role.
    pub procs: Option<u32>,
    /// Run in this directory (kept afterwards) instead of a temp directory.
    pub dir: Option<PathBuf>,
    /// Kill workers still running after this long.
    pub deadline: Duration,
    /// Start from a copy of this store (a user's own `auth.json`; only ever read).
    pub store: Option<PathBuf>,
    /// Play the pool roles with this external subject instead of pool-core (`subject.rs`).
    pub subject: Option<super::subject::SubjectSpec>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: None,
            procs: None,
            dir: None,
            deadline: Duration::from_secs(60),
            store: None,
            subject: None,
        }
    }
}

/// A finished run: its history and some counts.
pub struct RunRecord {
    pub history: History,
    pub seed: u64,
    pub processes: u32,
    pub crashed: u32,
    /// Workers the nemesis killed (each was restarted while it had kills left).
    pub killed: u32,
    pub operations: u64,
    pub seconds: f64,
    /// Where the run's files are, if they were kept.
    pub kept: Option<PathBuf>,
}

impl RunRecord {
    /// The run's counts, as a report states them.
    pub fn stats(&self) -> crate::report::Stats {
        crate::report::Stats {
            processes: self.processes,
            operations: self.operations,
            seconds: (self.seconds * 1000.0).round() / 1000.0,
            seed: self.seed,
            crashed: self.crashed,
            killed: self.killed,
            model: None,
        }
    }
}

/// Why a run could not be carried out (as opposed to a run that found anomalies).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriveError(pub String);

fn io<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DriveError + 'a {
    let what = what.to_string();
    move |e| DriveError(format!("{what} {}: {e}", path.display()))
}

/// Run `sc` under `strategy` on real processes.
pub fn run(sc: &Scenario, strategy: Strategy, opts: &RunOptions) -> Result<RunRecord, DriveError> {
    let started = Instant::now();
    let seed = opts.seed.unwrap_or(sc.seed);
    let mut sc = sc.clone();
    if let (Some(n), Some(first)) = (opts.procs, sc.roles.first_mut()) {
        first.count = n.max(1);
    }
    sc.check_process_total().map_err(DriveError)?;
    let now = SystemClock.now_ms();
    let user = match &opts.store {
        None => None,
        Some(path) => {
            let user = super::user_store::load(path).map_err(DriveError)?;
            let provider = &sc.pool.provider;
            if user.entries(provider).is_empty() {
                let has: Vec<&String> = user.credential_pool.keys().collect();
                return Err(DriveError(format!(
                    "{} holds no credential_pool entries for provider '{provider}' (it has: {has:?}): the scenario's provider must be one the store uses",
                    path.display()
                )));
            }
            let external: Vec<&str> = user
                .entries(provider)
                .iter()
                .map(|e| e.source.as_str())
                .filter(|s| crate::plan::external_format(s).is_some())
                .collect();
            if let Some(dup) = external
                .iter()
                .find(|s| external.iter().filter(|t| t == s).count() > 1)
            {
                return Err(DriveError(format!(
                    "{} has more than one entry with source '{dup}'; a run models one external file per source: remove the duplicate from a copy and pass that",
                    path.display()
                )));
            }
            sc.entries =
                crate::plan::setup::user_entries(&user, provider, now, sc.pool.refresh_margin_s);
            Some(user)
        }
    };
    let tmp;
    let dir = match &opts.dir {
        Some(d) => {
            // A kept run's logs are its history: the logs of an earlier run in the same
            // directory would be judged with it (and its files overwritten).
            if std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()) {
                return Err(DriveError(format!(
                    "--keep {}: the directory is not empty (an earlier run's store and logs would be judged with this one, or overwritten); give a new or empty directory",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d).map_err(io("cannot create run directory", d))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("poolcheck-run.")
                .tempdir()
                .map_err(|e| DriveError(format!("cannot create a temp directory: {e}")))?;
            tmp.path().to_path_buf()
        }
    };
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io("cannot create", &logs))?;

    let harness_log =
        EventLog::create(&logs.join("p0.jsonl"), 0).map_err(io("cannot create", &logs))?;
    let ledger_path = logs.join("ledger.jsonl");
    let issuer = prepare(
        &sc,
        seed,
        &dir,
        now,
        &ledger_path,
        &harness_log,
        user.as_ref(),
    )
    .map_err(io("cannot prepare the run in", &dir))?
    .spawn_process()
    .map_err(|e| DriveError(format!("cannot start the issuer: {e}")))?;

    // Barriers: index and party count per name.
    let parties = sc.barrier_parties();
    let barrier_index: Vec<(String, u32)> = parties.into_iter().collect();
    let coord = Coordination::new(barrier_index.len())
        .map_err(|e| DriveError(format!("cannot map shared memory: {e}")))?;

    let world = World {
        sc: &sc,
        opts,
        logs: &logs,
        coord: &coord,
        barriers: &barrier_index,
    };
    let mut children: Vec<Child> = Vec::new();
    let mut proc = 0u32;
    for role in &sc.roles {
        for _ in 0..role.count {
            proc += 1;
            let plan = WorkerPlan {
                proc,
                role: role.clone(),
                strategy,
                dir: dir.clone(),
                issuer_url: issuer.url.clone(),
                seed: worker_seed(seed, proc),
                incarnation: 0,
            };
            match world.spawn(&plan) {
                Ok(pid) => children.push(Child { plan, pid }),
                Err(e) => {
                    for c in &children {
                        let _ = kill(c.pid, Signal::SIGKILL);
                    }
                    return Err(e);
                }
            }
        }
    }
    // Every worker is ready (a subject started and greeted) before any role begins, so a
    // subject's start-up time does not shift its roles against the harness's own.
    coord.wait_ready(proc, ready_within(opts));
    coord.open_gate();
    let ended = reap(&world, &mut children, opts.deadline, &harness_log);
    if let Err(e) = issuer.stop() {
        harness_log.push(Ev::ProcExit {
            status: format!("issuer: {e}"),
            crashed: true,
        });
    }

    // The final store.
    let final_bytes = std::fs::read(dir.join("auth.json")).ok();
    harness_log.push(Ev::final_store(final_bytes.as_deref(), &sc.pool.provider));

    let history = crate::history::read_logs(&logs).map_err(DriveError)?;
    let operations = history.operations();
    Ok(RunRecord {
        history,
        seed,
        processes: proc,
        crashed: ended.crashed,
        killed: ended.killed,
        operations,
        seconds: started.elapsed().as_secs_f64(),
        kept: opts.dir.clone(),
    })
}

/// How long the parent waits for every worker to be ready to start (a subject answers its
/// hello within its per-request timeout); a worker waits for the gate that long and 30 s more.
fn ready_within(opts: &RunOptions) -> Duration {
    opts.subject.as_ref().map_or(Duration::ZERO, |s| s.timeout) + Duration::from_secs(30)
}

/// The body of a forked worker; returns its exit code.
fn worker_main(
    sc: &Scenario,
    plan: &WorkerPlan,
    logs: &Path,
    coord: &Coordination,
    barriers: &[(String, u32)],
    opts: &RunOptions,
) -> i32 {
    // Keep workers' stray output out of the parent's terminal.
    if let Ok(f) = std::fs::File::create(logs.join(format!("p{}.stderr", plan.proc))) {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto stderr of this (child) process.
        unsafe {
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
    let Ok(log) = EventLog::create(&logs.join(format!("p{}.jsonl", plan.proc)), plan.proc) else {
        coord.ready();
        return 3;
    };
    let rules = sc
        .rules_for(&plan.role.label())
        .into_iter()
        .map(|rule| {
            let barrier = (rule.action == "rendezvous").then(|| {
                let name = rule.barrier.clone().unwrap_or_else(|| rule.point.clone());
                let i = barriers
                    .iter()
                    .position(|(n, _)| *n == name)
                    .expect("barrier counted");
                (i, barriers[i].1)
            });
            Rule {
                point: Pause::from_name(&rule.point).expect("validated"),
                op: rule.op.as_deref().and_then(crate::scenario::op_kind),
                rule,
                barrier,
            }
        })
        .collect();
    let kill = sc.nemesis.as_ref().and_then(|n| {
        let mine = n.roles.is_empty() || n.roles.contains(&plan.role.label());
        (mine && plan.incarnation < n.kills_per_process).then(|| KillSpec {
            points: n
                .kill_at
                .iter()
                .filter_map(|p| Pause::from_name(p))
                .collect(),
            probability: n.probability,
        })
    });
    // A restarted process must not reuse the dead one's operation ids.
    pool_core::pool::start_op_ids_at(first_op_id(plan.incarnation));
    let hooks = WorkerHooks::new(
        &log,
        coord,
        rules,
        kill,
        plan.seed ^ u64::from(plan.incarnation),
    );
    log.push(Ev::ProcStart {
        role: plan.role.label(),
    });
    let gate = || {
        coord.ready();
        coord.wait_gate(ready_within(opts) + Duration::from_secs(30))
    };
    match &opts.subject {
        // A subject is started (and greeted) before the gate, so its start-up time does not
        // skew the run.
        Some(spec) if super::subject::plays(plan.role.kind) => {
            let subject = super::subject::start(sc, plan, &hooks, spec, logs);
            super::worker::play(sc, plan, &hooks, subject, gate)
        }
        _ => {
            let pool = super::worker::core_pool(sc, plan, &hooks);
            super::worker::play(sc, plan, &hooks, Ok(pool), gate)
        }
    }
}

/// A running worker and the plan it was started from.
struct Child {
    plan: WorkerPlan,
    pid: Pid,
}

/// What every worker of a run shares; forks workers.
struct World<'a> {
    sc: &'a Scenario,
    opts: &'a RunOptions,
    logs: &'a Path,
    coord: &'a Coordination,
    barriers: &'a [(String, u32)],
}

impl World<'_> {
    /// Fork one worker.
    fn spawn(&self, plan: &WorkerPlan) -> Result<Pid, DriveError> {
        let parent = crate::lifeline::Parent::this_process();
        // SAFETY: the parent is single-threaded here (the issuer runs in its own process);
        // the child only runs `worker_main` and leaves through `_exit`.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                if !crate::lifeline::bind(parent, Signal::SIGKILL) {
                    // SAFETY: the parent is gone; leave without running its destructors.
                    unsafe { libc::_exit(9) }
                }
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker_main(
                        self.sc,
                        plan,
                        self.logs,
                        self.coord,
                        self.barriers,
                        self.opts,
                    )
                }))
                .unwrap_or(101);
                // A worker that panicked before its start must not hold the others back.
                self.coord.ready();
                // SAFETY: leave without running the parent's destructors (temp dir, issuer).
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => Ok(child),
            Err(e) => Err(DriveError(format!("fork failed: {e}"))),
        }
    }
}

#[derive(Default)]
struct Ended {
    crashed: u32,
    killed: u32,
}

/// Wait for every child, restarting those the nemesis killed; kill those still running at
/// the deadline.
fn reap(world: &World<'_>, children: &mut Vec<Child>, deadline: Duration, log: &EventLog) -> Ended {
    let until = Instant::now() + deadline;
    let mut ended = Ended::default();
    let nemesis = world.sc.nemesis.is_some();
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            let proc = children[i].plan.proc;
            let status = match waitpid(children[i].pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => None,
                Ok(WaitStatus::Exited(_, 0)) => Some(("exit 0".to_string(), false)),
                Ok(WaitStatus::Exited(_, c)) => Some((format!("exit {c}"), true)),
                Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) if nemesis => {
                    // The nemesis's kill: start the process again, as a supervisor would.
                    ended.killed += 1;
                    log_exit(log, proc, "killed by the nemesis".into(), false);
                    let mut plan = children[i].plan.clone();
                    plan.incarnation += 1;
                    match world.spawn(&plan) {
                        Ok(pid) => {
                            children[i] = Child { plan, pid };
                            i += 1;
                            continue;
                        }
                        Err(e) => Some((format!("not restarted: {e}"), true)),
                    }
                }
                Ok(WaitStatus::Signaled(_, s, _)) => Some((format!("killed by {s:?}"), true)),
                Ok(_) => None,
                Err(e) => Some((format!("lost: {e}"), true)),
            };
            match status {
                Some((status, bad)) => {
                    ended.crashed += u32::from(bad);
                    log_exit(log, proc, status, bad);
                    children.swap_remove(i);
                }
                None => i += 1,
            }
        }
        if children.is_empty() {
            break;
        }
        if Instant::now() >= until {
            for c in children.drain(..) {
                let _ = kill(c.pid, Signal::SIGKILL);
                let _ = waitpid(c.pid, None);
                ended.crashed += 1;
                log_exit(log, c.plan.proc, "killed at the run deadline".into(), true);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    ended
}

fn log_exit(log: &EventLog, proc: u32, status: String, crashed: bool) {
    // The exit is recorded by the harness but attributed to the worker.
    log.push_for(proc, Ev::ProcExit { status, crashed });
}

//! The syscall observer (`--observe syscalls`): judge a subject that reports nothing, from what
//! it does to its files and to the issuer's socket.
//!
//! The subject's worker starts it under `ptrace(2)` with a seccomp-bpf filter ([`filter`])
//! installed between fork and exec, so only the system calls that matter stop it: opens, reads,
//! writes, closes, dups, renames, locks, `connect` and the sends and receives on sockets. A
//! tracer thread ([`tracer`]) follows every thread and child of the subject, keeps each
//! process's descriptor table ([`files`]) and turns the calls into the history events a
//! self-reporting subject sends ([`events`]): a read of the store from its open to EOF or
//! close, hashed as the subject would hash it; a write that lands by `rename(2)` onto the store
//! (its bytes read from the renamed file while the subject is stopped at the call), or in place
//! (its bytes gathered from the write calls); every write call on the store. At the calls that
//! are pause points (`before_redeem`: the send of a token request to the issuer; `after_redeem`,
//! `mid_write`, `before_rename`, `after_rename`) the subject is held stopped until the worker
//! has applied the scenario's pause rule.
//!
//! Guarantees: bytes read from the subject's memory or files are hashed and parsed in memory and
//! dropped; only hashes and tags leave this module. Every tracee is killed if the tracer's
//! process dies (`PTRACE_O_EXITKILL`). A call the observer cannot interpret is let through
//! unchanged: the observer never alters what the subject does, only when it runs.
//!
//! Not guaranteed (docs/subjects.md, "The syscall observer"): writes through `mmap`, `io_uring`
//! or a helper process outside the subject's process tree are not seen; `base` is inferred (the
//! newest store version the subject's process tree read or wrote before the write), not told;
//! which entry a refresh was for is inferred from the refresh token's tag in the last version
//! the subject saw; pauses that are not system-call boundaries (`after_load`,
//! `between_persists`) are not announced (`op_start` is the worker's, before it sends the
//! operation).

pub mod events;
pub mod files;
pub mod filter;
pub mod tracer;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use pool_core::world::{Event, Pause};

/// What the observer watches in one subject process tree.
#[derive(Clone, Debug)]
pub struct Config {
    /// The store (`auth.json`).
    pub store: PathBuf,
    /// External credential files: (source, path).
    pub external: Vec<(String, PathBuf)>,
    /// The loopback issuer's TCP port.
    pub issuer_port: u16,
    /// The provider whose entries a write's `entries` list.
    pub provider: String,
}

/// What the tracer tells the worker.
pub enum Report {
    /// A history event of the subject, at the time the observer saw it happen.
    Event { t_ns: u64, event: Event },
    /// A lock call of the subject (on any file): `outcome` `requested` at the call, `granted`
    /// or `refused` at its return.
    Lock {
        t_ns: u64,
        path: String,
        inode: u64,
        op: &'static str,
        outcome: &'static str,
    },
    /// The subject is stopped at a pause point; send `()` (or drop the sender) to release it.
    Pause {
        point: Pause,
        resume: mpsc::Sender<()>,
    },
}

/// Where the tracer sends its reports (the worker's message loop).
pub type Sink = Box<dyn Fn(Report) + Send>;

/// A subject running under the observer.
pub struct Observer {
    op: Arc<AtomicU64>,
    exit: Arc<Mutex<Option<String>>>,
}

impl Observer {
    /// The operation the worker has in flight (0 between operations): observed events are
    /// attributed to it.
    pub fn set_op(&self, op: u64) {
        self.op.store(op, Ordering::SeqCst);
    }

    /// How the subject's first process ended, once it has (the tracer reaps it).
    pub fn exit_status(&self) -> Option<String> {
        self.exit.lock().expect("exit slot").clone()
    }
}

/// Start `cmd` under the observer. The tracer thread spawns it (a tracee's tracer is the
/// thread that forked it) and runs until every traced process has exited. The caller must not
/// wait for the returned child: the tracer reaps it ([`Observer::exit_status`]).
pub fn spawn(mut cmd: Command, cfg: Config, sink: Sink) -> std::io::Result<(Child, Observer)> {
    let program = filter::program().map_err(std::io::Error::other)?;
    let op = Arc::new(AtomicU64::new(0));
    let exit = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let (op2, exit2) = (op.clone(), exit.clone());
    std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || {
            filter::trace_me_on_exec(&mut cmd, program);
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let root = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = tx.send(Ok(child));
            tracer::run(root, cfg, sink, op2, exit2);
        })?;
    let child = rx
        .recv()
        .map_err(|_| std::io::Error::other("the observer thread died"))??;
    Ok((child, Observer { op, exit }))
}

/// Whether this machine lets the observer work: a child that asks to be traced, installs the
/// filter and execs `true` must stop at its exec and at a filtered call. `Err` says what
/// refused and what to change.
pub fn preflight() -> Result<(), String> {
    tracer::preflight()
}

/// `path` with its directory resolved (symlinks, `..`), the way the kernel names an open file
/// in `/proc/PID/fd`; the path as given when its directory does not exist.
pub fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(d), Some(f)) => std::fs::canonicalize(d)
            .map(|d| d.join(f))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

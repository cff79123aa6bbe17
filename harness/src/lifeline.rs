//! Parent-death cleanup: every process poolcheck forks (run and bench workers, the issuer) or
//! spawns (subjects) dies with the process that started it, so a killed poolcheck (a cancelled
//! CI job, `kill -9`, a closed terminal) leaves nothing behind.
//!
//! The one mechanism: the child asks the kernel for a signal when its parent dies
//! (`PR_SET_PDEATHSIG`, Linux), then checks that the parent is still the one that forked it
//! (it may have died between the fork and the request). Forked children call [`bind`] first
//! thing; spawned commands get the same through [`bind_command`] (in the child, before exec).
//! A forked child also gets back the `SIGPIPE` disposition Rust programs run with (ignored:
//! a write to a closed pipe or socket is an error, not a death), which `poolcheck` itself
//! resets to the default so that a closed stdout ends it quietly.
//!
//! A spawned command whose own children must go too (a subject: `sh -c CMD`, whose shell may
//! fork CMD rather than exec it) runs in the process group of a [`GroupGuard`]: a small forked
//! watcher, bound to the spawning process like any child, made before the command and leader
//! of the group the command joins, that kills the whole group when the spawning process dies.
//! Because the group exists before the command does, there is no moment in which the command
//! (or a child it forked) is outside a watched group.
//!
//! Not guaranteed: a descendant that leaves the group (`setsid`) is its own business.
//! Elsewhere than Linux only the parent check is made.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getpid, getppid, setpgid, ForkResult, Pid};

/// The process about to fork: take this before `fork()` and hand it to [`bind`] in the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent(Pid);

impl Parent {
    pub fn this_process() -> Parent {
        Parent(getpid())
    }
}

/// In a freshly forked child: die by `signal` when the parent dies, and restore the ignored
/// `SIGPIPE`. Returns false when the parent is already gone: the child must leave at once.
pub fn bind(parent: Parent, signal: Signal) -> bool {
    // SAFETY: signal() with a valid signal and SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    request_death_signal(signal) && getppid() == parent.0
}

/// Make the command's process die by `SIGKILL` when the process that spawns it dies.
pub fn bind_command(cmd: &mut Command) -> &mut Command {
    let parent = Parent::this_process();
    // SAFETY: the closure runs in the child between fork and exec and only makes two system
    // calls (prctl, getppid), both async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if request_death_signal(Signal::SIGKILL) && getppid() == parent.0 {
                Ok(())
            } else {
                Err(std::io::Error::other("the spawning process died"))
            }
        })
    }
}

/// Kills a process group when the process that made the guard dies; dropping the guard ends
/// the watch (and kills nothing).
#[derive(Debug)]
pub struct GroupGuard {
    watcher: Pid,
}

/// Fork a watcher that leads a new process group and waits for the caller's death (`SIGTERM`
/// by [`bind`]), then sends `SIGKILL` to its group. Spawn the command to guard with
/// `process_group(guard.pgid())`.
pub fn group_guard() -> std::io::Result<GroupGuard> {
    let parent = Parent::this_process();
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    // SAFETY: the child makes only async-signal-safe system calls (close_range, setpgid,
    // sigprocmask, signal, prctl, getppid, sigwait, kill) and leaves through `_exit`, so
    // forking is sound even when the caller has other threads.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            // Hold none of the caller's files: a copy of the subject's stdin pipe here would
            // keep it from ever seeing EOF.
            // SAFETY: close_range on every descriptor of this (child) process.
            if unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) } != 0 {
                for fd in 0..4096 {
                    // SAFETY: closing descriptors of this child only.
                    unsafe { libc::close(fd) };
                }
            }
            let me = getpid();
            let _ = setpgid(me, me);
            let _ = term.thread_block();
            if bind(parent, Signal::SIGTERM) {
                let _ = term.wait();
            }
            let _ = kill(Pid::from_raw(-me.as_raw()), Signal::SIGKILL);
            // SAFETY: leave without running the caller's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            // Both sides set the group, so it exists before the caller spawns into it,
            // whichever runs first (as shells do for their jobs).
            let _ = setpgid(child, child);
            Ok(GroupGuard { watcher: child })
        }
    }
}

impl GroupGuard {
    /// The process group to spawn the guarded command into.
    pub fn pgid(&self) -> i32 {
        self.watcher.as_raw()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = kill(self.watcher, Signal::SIGKILL);
        let _ = waitpid(self.watcher, None);
    }
}

#[cfg(target_os = "linux")]
fn request_death_signal(signal: Signal) -> bool {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn request_death_signal(_signal: Signal) -> bool {
    true
}

/// For `poolcheck` itself: a closed stdout (`poolcheck ... | head`) ends the program as it
/// ends any Unix filter, by `SIGPIPE`, instead of a panic in `print!`. Forked children undo
/// this in [`bind`]; spawned commands get the default anyway.
pub fn default_sigpipe() {
    // SAFETY: signal() with a valid signal and SIG_DFL.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

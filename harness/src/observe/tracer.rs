//! The ptrace loop: follow every thread and child of the subject, decode each call the filter
//! stops, hand it to the interpreter ([`super::events`]), and let it run (to its return when
//! the interpreter needs the result). Signals are delivered as they came; nothing is changed.
//!
//! x86_64 register conventions (`orig_rax` the call, `rdi rsi rdx r10 r8 r9` its arguments,
//! `rax` its return).

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::events::{Call, Iov, LockCall, Observed, Pending, Tracee};
use super::{Config, Sink};

const SECCOMP: i32 = ptrace::Event::PTRACE_EVENT_SECCOMP as i32;
const FORK: i32 = ptrace::Event::PTRACE_EVENT_FORK as i32;
const VFORK: i32 = ptrace::Event::PTRACE_EVENT_VFORK as i32;
const CLONE: i32 = ptrace::Event::PTRACE_EVENT_CLONE as i32;
const EXEC: i32 = ptrace::Event::PTRACE_EVENT_EXEC as i32;

fn options() -> Options {
    Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_EXITKILL
}

struct Thread {
    tgid: i32,
    /// Auto-attached and not yet past its first `SIGSTOP`.
    fresh: bool,
    pending: Option<Pending>,
}

struct T {
    tid: i32,
    tgid: i32,
}

impl Tracee for T {
    fn tid(&self) -> i32 {
        self.tid
    }
    fn tgid(&self) -> i32 {
        self.tgid
    }
    fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        if len == 0 || addr == 0 {
            return Vec::new();
        }
        // A range that runs into an unmapped page reads up to it (a path near the end of a
        // mapping); a range that starts in one reads nothing.
        let pid = Pid::from_raw(self.tid);
        let to_page_end = 4096 - (addr as usize % 4096);
        let mut buf = vec![0u8; len];
        let mut got = 0;
        for want in [len, to_page_end.min(len)] {
            let remote = [RemoteIoVec {
                base: addr as usize,
                len: want,
            }];
            let mut local = [IoSliceMut::new(&mut buf[..want])];
            if let Ok(n) = process_vm_readv(pid, &mut local, &remote) {
                got = n;
                break;
            }
        }
        buf.truncate(got);
        buf
    }
}

/// The thread group of `tid`, from `/proc`.
fn tgid_of(tid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

/// The call a seccomp stop stopped at.
fn decode(r: &libc::user_regs_struct) -> Call {
    let (a0, a1, a2, a3) = (r.rdi, r.rsi, r.rdx, r.r10);
    let fd = a0 as i32;
    let off = |v: u64| (v as i64 >= 0).then_some(v);
    match r.orig_rax as i64 {
        libc::SYS_open => Call::Open {
            dirfd: libc::AT_FDCWD,
            path: a0,
            flags: a1 as i32,
        },
        libc::SYS_creat => Call::Open {
            dirfd: libc::AT_FDCWD,
            path: a0,
            flags: libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
        },
        libc::SYS_openat => Call::Open {
            dirfd: a0 as i32,
            path: a1,
            flags: a2 as i32,
        },
        // openat2's flags are the first field of its `open_how`: read at the entry.
        libc::SYS_openat2 => Call::Other,
        libc::SYS_read | libc::SYS_recvfrom => Call::Read {
            fd,
            iov: Iov::Buf(a1, a2),
            offset: None,
        },
        libc::SYS_pread64 => Call::Read {
            fd,
            iov: Iov::Buf(a1, a2),
            offset: Some(a3),
        },
        libc::SYS_readv => Call::Read {
            fd,
            iov: Iov::Vec(a1, a2),
            offset: None,
        },
        libc::SYS_preadv | libc::SYS_preadv2 => Call::Read {
            fd,
            iov: Iov::Vec(a1, a2),
            offset: off(a3),
        },
        libc::SYS_write | libc::SYS_sendto => Call::Write {
            fd,
            iov: Iov::Buf(a1, a2),
            offset: None,
        },
        libc::SYS_pwrite64 => Call::Write {
            fd,
            iov: Iov::Buf(a1, a2),
            offset: Some(a3),
        },
        libc::SYS_writev => Call::Write {
            fd,
            iov: Iov::Vec(a1, a2),
            offset: None,
        },
        libc::SYS_pwritev | libc::SYS_pwritev2 => Call::Write {
            fd,
            iov: Iov::Vec(a1, a2),
            offset: off(a3),
        },
        // msghdr: msg_iov at offset 16, msg_iovlen at 24; decoded at the entry (below).
        libc::SYS_sendmsg | libc::SYS_recvmsg => Call::Other,
        libc::SYS_close => Call::Close { fd },
        libc::SYS_dup => Call::Dup { fd, onto: None },
        libc::SYS_dup2 | libc::SYS_dup3 => Call::Dup {
            fd,
            onto: Some(a1 as i32),
        },
        libc::SYS_fcntl if matches!(a1 as i32, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) => {
            Call::Dup { fd, onto: None }
        }
        libc::SYS_ftruncate => Call::Truncate { fd, len: a1 },
        libc::SYS_sendfile => Call::Copy {
            src: a1 as i32,
            src_off: (a2 != 0).then_some(a2),
            dst: fd,
            dst_off: None,
            len: a3,
        },
        libc::SYS_copy_file_range | libc::SYS_splice => Call::Copy {
            src: fd,
            src_off: (a1 != 0).then_some(a1),
            dst: a2 as i32,
            dst_off: (a3 != 0).then_some(a3),
            len: r.r8,
        },
        libc::SYS_flock => Call::Lock {
            fd,
            kind: LockCall::Flock(a1 as i32),
        },
        libc::SYS_fcntl
            if matches!(
                a1 as i32,
                libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
            ) =>
        {
            Call::Lock {
                fd,
                kind: LockCall::Fcntl(a2),
            }
        }
        libc::SYS_rename => Call::Rename {
            olddir: libc::AT_FDCWD,
            old: a0,
            newdir: libc::AT_FDCWD,
            new: a1,
        },
        libc::SYS_renameat | libc::SYS_renameat2 => Call::Rename {
            olddir: a0 as i32,
            old: a1,
            newdir: a2 as i32,
            new: a3,
        },
        libc::SYS_connect => Call::Connect {
            fd,
            addr: a1,
            len: a2,
        },
        _ => Call::Other,
    }
}

/// Calls whose arguments live in the tracee's memory (`openat2`'s flags, a `msghdr`'s iovec).
fn decode_indirect(t: &T, r: &libc::user_regs_struct) -> Call {
    let word = |addr: u64| {
        let b = t.read_mem(addr, 8);
        (b.len() == 8).then(|| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    };
    match r.orig_rax as i64 {
        libc::SYS_openat2 => match word(r.rdx) {
            Some(flags) => Call::Open {
                dirfd: r.rdi as i32,
                path: r.rsi,
                flags: flags as i32,
            },
            None => Call::Other,
        },
        n @ (libc::SYS_sendmsg | libc::SYS_recvmsg) => match (word(r.rsi + 16), word(r.rsi + 24)) {
            (Some(iov), Some(len)) => {
                let iov = Iov::Vec(iov, len);
                let fd = r.rdi as i32;
                if n == libc::SYS_sendmsg {
                    Call::Write {
                        fd,
                        iov,
                        offset: None,
                    }
                } else {
                    Call::Read {
                        fd,
                        iov,
                        offset: None,
                    }
                }
            }
            _ => Call::Other,
        },
        _ => decode(r),
    }
}

/// Trace `root` (stopped, or about to stop, at its exec) and everything it starts, until all
/// have exited. `exit` gets how `root` ended.
pub fn run(
    root: Pid,
    cfg: Config,
    sink: Sink,
    op: Arc<AtomicU64>,
    exit: Arc<Mutex<Option<String>>>,
) {
    let set_exit = |s: String| *exit.lock().expect("exit slot") = Some(s);
    match waitpid(root, Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {}
        Ok(WaitStatus::Exited(_, code)) => return set_exit(format!("exit status: {code}")),
        Ok(WaitStatus::Signaled(_, sig, _)) => return set_exit(format!("signal: {sig}")),
        other => {
            return set_exit(format!(
                "it did not stop at its exec under the observer: {other:?}"
            ))
        }
    }
    if let Err(e) = ptrace::setoptions(root, options()) {
        let _ = nix::sys::signal::kill(root, Signal::SIGKILL);
        let _ = waitpid(root, Some(WaitPidFlag::__WALL));
        return set_exit(format!(
            "the observer could not set its ptrace options: {e}"
        ));
    }
    let _ = ptrace::cont(root, None);
    let mut obs = Observed::new(cfg, sink, op);
    let mut threads: HashMap<i32, Thread> = HashMap::new();
    threads.insert(
        root.as_raw(),
        Thread {
            tgid: root.as_raw(),
            fresh: false,
            pending: None,
        },
    );
    loop {
        let status = match waitpid(None::<Pid>, Some(WaitPidFlag::__WALL)) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: every tracee is gone
        };
        match status {
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                let tid = pid.as_raw();
                if let Some(t) = threads.remove(&tid) {
                    if t.tgid == tid {
                        obs.process_gone(tid);
                    }
                }
                if pid == root {
                    set_exit(match status {
                        WaitStatus::Exited(_, code) => format!("exit status: {code}"),
                        WaitStatus::Signaled(_, sig, _) => format!("signal: {sig}"),
                        _ => unreachable!(),
                    });
                }
            }
            WaitStatus::PtraceEvent(pid, _, ev) => {
                let tid = pid.as_raw();
                let tgid = threads
                    .get(&tid)
                    .map(|t| t.tgid)
                    .unwrap_or_else(|| tgid_of(tid));
                match ev {
                    SECCOMP => {
                        let pending = ptrace::getregs(pid).ok().and_then(|regs| {
                            let t = T { tid, tgid };
                            let call = decode_indirect(&t, &regs);
                            obs.entry(&t, call)
                        });
                        let th = threads.entry(tid).or_insert(Thread {
                            tgid,
                            fresh: false,
                            pending: None,
                        });
                        if pending.is_some() {
                            th.pending = pending;
                            let _ = ptrace::syscall(pid, None);
                        } else {
                            let _ = ptrace::cont(pid, None);
                        }
                    }
                    FORK | VFORK | CLONE => {
                        if let Ok(new) = ptrace::getevent(pid) {
                            let new = new as i32;
                            let new_tgid = if ev == CLONE { tgid_of(new) } else { new };
                            if new_tgid != tgid {
                                obs.tables.fork(tgid, new_tgid);
                            }
                            threads.entry(new).or_insert(Thread {
                                tgid: new_tgid,
                                fresh: true,
                                pending: None,
                            });
                        }
                        let _ = ptrace::cont(pid, None);
                    }
                    EXEC => {
                        // The exec'd image starts with the close-on-exec descriptors gone;
                        // other threads of the group are gone too.
                        obs.process_gone(tgid);
                        threads.retain(|&t, th| th.tgid != tgid || t == tid);
                        let _ = ptrace::cont(pid, None);
                    }
                    _ => {
                        let _ = ptrace::cont(pid, None);
                    }
                }
            }
            WaitStatus::PtraceSyscall(pid) => {
                let tid = pid.as_raw();
                if let Some(th) = threads.get_mut(&tid) {
                    if let Some(p) = th.pending.take() {
                        let t = T { tid, tgid: th.tgid };
                        if let Ok(regs) = ptrace::getregs(pid) {
                            obs.exit(&t, p, regs.rax as i64);
                        }
                    }
                }
                let _ = ptrace::cont(pid, None);
            }
            WaitStatus::Stopped(pid, sig) => {
                let tid = pid.as_raw();
                let th = threads.entry(tid).or_insert_with(|| Thread {
                    tgid: tgid_of(tid),
                    fresh: true,
                    pending: None,
                });
                if th.fresh && sig == Signal::SIGSTOP {
                    th.fresh = false;
                    let _ = ptrace::cont(pid, None);
                } else {
                    let _ = ptrace::cont(pid, Some(sig));
                }
            }
            _ => {}
        }
    }
}

/// What to change when the observer is refused.
const ADVICE: &str = "allow ptrace and seccomp for poolcheck: `sysctl kernel.yama.ptrace_scope` \
must be 0, 1 or 2 (3 forbids ptrace), and a container needs ptrace and seccomp(2) allowed \
(e.g. `docker run --cap-add SYS_PTRACE --security-opt seccomp=unconfined`), and poolcheck must \
not itself run under a tracer (strace -f, a debugger); or run without `--observe syscalls`";

/// Which step refused, when a child could not start traced under the filter (`e`): a child
/// that only asks to be traced tells ptrace's refusal from the filter's.
fn refused(e: std::io::Error) -> String {
    let mut probe = std::process::Command::new("true");
    probe
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec the closure makes one async-signal-safe call (ptrace).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut probe, || {
            ptrace::traceme().map_err(std::io::Error::from)
        });
    }
    match probe.spawn() {
        Err(p) => format!("ptrace(PTRACE_TRACEME) was refused ({p})"),
        Ok(child) => {
            // Stopped at its exec, traced by this thread: kill and reap it.
            let pid = Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
            format!("installing the seccomp filter (prctl PR_SET_NO_NEW_PRIVS, seccomp SECCOMP_SET_MODE_FILTER) was refused ({e})")
        }
    }
}

/// Whether this machine lets the observer work (see [`super::preflight`]).
pub fn preflight() -> Result<(), String> {
    let program = super::filter::program()?;
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "exec 3</dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    super::filter::trace_me_on_exec(&mut cmd, program);
    let child = cmd
        .spawn()
        .map_err(|e| format!("--observe syscalls: {}: {ADVICE}", refused(e)))?;
    let pid = Pid::from_raw(child.id() as i32);
    let fail = |what: String| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
        Err(format!("--observe syscalls: {what}: {ADVICE}"))
    };
    match waitpid(pid, Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {}
        other => {
            return fail(format!(
                "the traced child did not stop at its exec ({other:?})"
            ))
        }
    }
    if let Err(e) = ptrace::setoptions(pid, options()) {
        return fail(format!("PTRACE_SETOPTIONS failed ({e})"));
    }
    let _ = ptrace::cont(pid, None);
    let mut stopped = false;
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(_, _, SECCOMP)) => {
                stopped = true;
                let _ = ptrace::cont(pid, None);
            }
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => break,
            Ok(WaitStatus::Stopped(_, sig)) => {
                let _ = ptrace::cont(pid, Some(sig));
            }
            Ok(_) => {
                let _ = ptrace::cont(pid, None);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return fail(format!("waiting for the traced child failed ({e})")),
        }
    }
    if stopped {
        Ok(())
    } else {
        Err(format!(
            "--observe syscalls: the seccomp filter never stopped a traced child at an open(2): {ADVICE}"
        ))
    }
}

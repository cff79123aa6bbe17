//! The seccomp-bpf filter a subject runs under (built with `seccompiler`): the system calls the
//! observer interprets stop the tracee (`SECCOMP_RET_TRACE`), every other call runs without a
//! stop. Reads and writes of descriptors 0 to 2 (the protocol's pipes) do not stop.
//!
//! x86_64 only: the filter's syscall numbers and the tracer's argument registers are that ABI's.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::Command;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Calls that stop whatever their arguments.
#[cfg(target_arch = "x86_64")]
const ALWAYS: &[i64] = &[
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_ftruncate,
    libc::SYS_sendfile,
    libc::SYS_copy_file_range,
    libc::SYS_splice,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_connect,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
];

/// Calls that stop unless their descriptor (first argument) is 0, 1 or 2.
#[cfg(target_arch = "x86_64")]
const ON_FILES: &[i64] = &[
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_readv,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_write,
    libc::SYS_pwrite64,
    libc::SYS_writev,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
];

/// The compiled filter.
#[cfg(target_arch = "x86_64")]
pub fn program() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in ALWAYS {
        rules.insert(nr, vec![]);
    }
    for &nr in ON_FILES {
        let above_stdio = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Gt, 2)
            .map_err(|e| e.to_string())?;
        let rule = SeccompRule::new(vec![above_stdio]).map_err(|e| e.to_string())?;
        rules.insert(nr, vec![rule]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Trace(0),
        seccompiler::TargetArch::x86_64,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

#[cfg(not(target_arch = "x86_64"))]
pub fn program() -> Result<BpfProgram, String> {
    Err("the syscall observer supports x86_64 Linux only".into())
}

/// Make the child of `cmd` ask to be traced by the spawning thread and install the filter
/// (with `PR_SET_NO_NEW_PRIVS`, which `seccompiler` sets) right before its exec.
pub fn trace_me_on_exec(cmd: &mut Command, program: BpfProgram) {
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
    // (ptrace, prctl, seccomp) on memory the parent built before forking.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::ptrace::traceme().map_err(std::io::Error::from)?;
            seccompiler::apply_filter(&program).map_err(|e| match e {
                seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => io,
                _ => std::io::Error::from_raw_os_error(libc::EINVAL),
            })
        });
    }
}

//! A killed poolcheck takes its workers, subjects and issuer with it, and a closed stdout ends
//! it quietly.
//!
//! The kill test makes this test process a child subreaper (`PR_SET_CHILD_SUBREAPER`): every
//! process orphaned by the SIGKILLed poolcheck is then re-parented here instead of to init, so
//! "nothing survived" is checked by looking for our children. One test per kill scenario, run
//! one after the other (the subreaper and the reaping are process-wide).

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The subreaper state and `waitpid(-1)` are per process: run the kill tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Pids whose parent is `ppid`, from /proc.
fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let mut f = rest.split(' ');
        let state = f.next().unwrap_or("");
        let parent: u32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if parent == ppid && state != "Z" {
            out.push(pid);
        }
    }
    out
}

fn reap_zombies() {
    while let Ok(s) = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(-1),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    ) {
        if s == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// Start poolcheck, wait until it has at least `want` children, SIGKILL it, and return the
/// processes still alive (re-parented to us) a few seconds later.
fn kill_mid_run(mut cmd: Command, want: usize) -> Vec<String> {
    // SAFETY: prctl with integer arguments.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("poolcheck starts");
    let pc = child.id();
    let until = Instant::now() + Duration::from_secs(60);
    while children_of(pc).len() < want {
        assert!(
            Instant::now() < until,
            "poolcheck never had {want} children"
        );
        assert!(child.try_wait().unwrap().is_none(), "poolcheck ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let me = std::process::id();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        reap_zombies();
        let left = children_of(me);
        if left.is_empty() || Instant::now() > until {
            let left: Vec<String> = left
                .iter()
                .map(|p| {
                    let cmd = std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .unwrap_or_default()
                        .replace('\0', " ");
                    // Do not leave them behind ourselves.
                    // SAFETY: kill with a pid we found as our own child.
                    unsafe { libc::kill(*p as i32, libc::SIGKILL) };
                    format!("{p}: {cmd}")
                })
                .collect();
            reap_zombies();
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scenario whose workers stay busy for a long time (many iterations with think time).
fn long_scenario(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/refresh-race.toml"
    ))
    .unwrap()
    .replace(
        "count = 4\nops = 2\n",
        "count = 4\nops = 1000\nthink_ms = 50\n",
    );
    let path = dir.join("long.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_killed_run_leaves_no_worker_or_issuer_behind() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poolcheck"));
    cmd.args(["run", "--strategy", "flock-txn", "--procs", "24"])
        .args(["--scenario", &long_scenario(dir.path())]);
    // The issuer and 24 workers: killed while they start or run.
    let left = kill_mid_run(cmd, 25);
    assert!(left.is_empty(), "survivors: {left:#?}");
}

#[test]
fn a_killed_subject_run_leaves_no_subject_behind() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poolcheck"));
    // A subject that never answers: its workers wait for its greeting when poolcheck dies.
    cmd.args(["run", "--subject", "sleep 300", "--procs", "6"])
        .args(["--scenario", &long_scenario(dir.path())]);
    let left = kill_mid_run(cmd, 7);
    assert!(left.is_empty(), "survivors: {left:#?}");
}

#[test]
fn a_closed_stdout_ends_poolcheck_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args([
            "run",
            "--scenario",
            "refresh-race",
            "--strategy",
            "none",
            "--quick",
        ])
        .args(["--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before poolcheck writes its report: the write meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {err}",
        out.status
    );
}

//! Lock waits on the real OS: a long wait is announced cargo-style with the holder's pid, a
//! wait past the deadline fails with a clear error, and a holder killed while holding the lock
//! releases it (the kernel does; nothing in our code is needed for that).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pool_core::real::{waiting_message, Hooks, LockWaits, RealOs};
use pool_core::world::{LockKind, Os};

#[derive(Default)]
struct Told(Mutex<Vec<(PathBuf, Option<u32>)>>);

impl Hooks for Told {
    fn waiting(&self, path: &Path, holder: Option<u32>) {
        self.0.lock().unwrap().push((path.to_path_buf(), holder));
    }
}

fn os(notice_ms: u64, deadline_ms: u64) -> RealOs<Told> {
    RealOs::with_hooks(Told::default()).with_lock_waits(LockWaits {
        notice: Duration::from_millis(notice_ms),
        deadline: Duration::from_millis(deadline_ms),
    })
}

fn open(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

#[test]
fn a_long_wait_is_announced_with_the_holder_pid_then_granted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.lock");
    let holder = open(&path);
    holder.lock().unwrap();
    let os = os(100, 10_000);
    let released = std::thread::scope(|s| {
        let t = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(400));
            // Taken before the unlock: the waiter can be granted the lock (and stamp its own
            // time) before this thread returns from `unlock`.
            let unlocking = Instant::now();
            holder.unlock().unwrap();
            unlocking
        });
        let held = os
            .lock(LockKind::Flock, &path)
            .expect("granted once released");
        let got = Instant::now();
        os.unlock(held).unwrap();
        (t.join().unwrap(), got)
    });
    assert!(
        released.1 >= released.0,
        "the lock was granted only after the holder let go"
    );
    let told = os.hooks().0.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "announced once: {told:?}");
    assert_eq!(told[0].0, path);
    assert_eq!(
        told[0].1,
        Some(std::process::id()),
        "the holder is this process"
    );
    assert_eq!(
        waiting_message(&path, told[0].1),
        format!(
            "Blocking waiting for file lock on {} (held by pid {})",
            path.display(),
            std::process::id()
        )
    );
}

#[test]
fn a_short_wait_is_not_announced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.lock");
    let os = os(1_000, 10_000);
    let held = os.lock(LockKind::Flock, &path).unwrap();
    os.unlock(held).unwrap();
    assert!(os.hooks().0.lock().unwrap().is_empty());
}

#[test]
fn a_wait_past_the_deadline_fails_naming_the_file_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, name) in [
        (LockKind::Flock, "auth.lock"),
        (LockKind::Fcntl, "auth.json"),
    ] {
        let path = dir.path().join(name);
        // Hold the lock from another process (a record lock is per process).
        let mut holder = match kind {
            LockKind::Fcntl => hold_fcntl(&path),
            _ => hold_flock(&path),
        };
        let pid = holder.id();
        let os = os(50, 300);
        let err = os.lock(kind, &path).expect_err("the holder never lets go");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{kind:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("held by pid {pid}")),
            "{kind:?}: {msg}"
        );
        assert!(msg.contains("stop it"), "{msg}");
        holder.kill().unwrap();
        holder.wait().unwrap();
    }
}

/// A process (util-linux `flock`) holding an exclusive flock on `path` until killed.
fn hold_flock(path: &Path) -> Child {
    let child = Command::new("flock")
        .args(["--exclusive", "--no-fork"])
        .arg(path)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_locked(path);
    child
}

/// A process (python3) holding a POSIX record lock on `path` until killed.
fn hold_fcntl(path: &Path) -> Child {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
        ])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    child
}

fn wait_until_locked(path: &Path) {
    let probe = open(path);
    let until = Instant::now() + Duration::from_secs(10);
    while probe.try_lock().is_ok() {
        probe.unlock().unwrap();
        assert!(Instant::now() < until, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_holder_killed_while_holding_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.lock");
    let mut child = hold_flock(&path);
    child.kill().unwrap(); // SIGKILL: the holder runs no cleanup of any kind
    child.wait().unwrap();
    let os = os(5_000, 5_000);
    let held = os
        .lock(LockKind::Flock, &path)
        .expect("the kernel released the dead holder's lock");
    os.unlock(held).unwrap();
}

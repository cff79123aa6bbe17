//! lock=fcntl: a POSIX record lock belongs to the (process, inode) pair and is dropped when the
//! process closes ANY descriptor of that file, such as the one the pool's own re-read opens.
//!
//! Record locks never conflict within one process, so the lock can only be observed from
//! another process. Rather than fork inside a multi-threaded test harness (fragile), the test
//! re-runs its own test binary as a child (`current_exe()` filtered to `probe_child`, with the
//! path in an environment variable); the child asks `fcntl(F_GETLK)` whether a write lock on
//! the whole file would conflict and prints `LOCKED` or `UNLOCKED`. Without the variable the
//! probe test does nothing.

mod common;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use pool_core::real::RealOs;
use pool_core::store::Store;
use pool_core::world::{LockKind, Os, Pause};

const PROBE_ENV: &str = "POOLCORE_FCNTL_PROBE";

#[test]
fn probe_child() {
    let Ok(path) = std::env::var(PROBE_ENV) else {
        return;
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: zeroed flock is valid; the fd is open during the call.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    assert_eq!(r, 0, "F_GETLK: {}", std::io::Error::last_os_error());
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        println!("PROBE:UNLOCKED");
    } else {
        println!("PROBE:LOCKED:{}", fl.l_pid);
    }
}

/// Whether another process sees a record lock on `path`.
fn locked_from_another_process(path: &Path) -> bool {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("PROBE:LOCKED") {
        assert!(
            text.contains(&format!("PROBE:LOCKED:{}", std::process::id())),
            "{text}"
        );
        true
    } else {
        assert!(
            text.contains("PROBE:UNLOCKED"),
            "probe said nothing: {text}"
        );
        false
    }
}

#[test]
fn a_plain_read_drops_the_record_lock() {
    let dir = tempdir();
    let path = dir.path().join("auth.json");
    std::fs::write(&path, Store::default().to_bytes()).unwrap();
    let os = RealOs::new();
    let held = os.lock(LockKind::Fcntl, &path).unwrap();
    assert!(
        locked_from_another_process(&path),
        "the record lock is visible to others"
    );
    // What the pool's `Os::read` does: open, read, close a second descriptor.
    os.read(&path).unwrap().unwrap();
    assert!(
        !locked_from_another_process(&path),
        "closing any descriptor drops it"
    );
    os.unlock(held).unwrap();
}

#[test]
fn fcntl_preset_loses_its_lock_at_its_own_reread() {
    let dir = tempdir();
    let store = dir.path().join("auth.json");
    std::fs::write(&store, Store::default().to_bytes()).unwrap();
    // The fcntl preset: scope=op, persist=txn (re-read at op start), rename.
    let p = proc(dir.path(), "fcntl");
    p.pool.load_pool().unwrap();
    let id = p.pool.add_entry(api_key("a")).unwrap();
    let seen: Arc<Mutex<Vec<(Pause, bool)>>> = Arc::default();
    let (s, path) = (seen.clone(), store.clone());
    p.hooks.on_pause(move |pt| {
        if pt == Pause::BeforeRename {
            s.lock()
                .unwrap()
                .push((pt, locked_from_another_process(&path)));
        }
    });
    p.pool
        .mark_exhausted_and_rotate(&id, 429, "x", None)
        .unwrap();
    // The operation still believes it holds the lock, but after its txn re-read another
    // process sees no lock at all, right before the write lands.
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![(Pause::BeforeRename, false)]
    );
}

const HOLD_ENV: &str = "POOLCORE_FCNTL_HOLD";

/// Child mode: take a record lock on the file, say `HELD`, and keep it until stdin closes.
#[test]
fn hold_child() {
    let Ok(path) = std::env::var(HOLD_ENV) else {
        return;
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: zeroed flock is valid; the fd is open during the call.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl) };
    assert_eq!(r, 0, "F_SETLKW: {}", std::io::Error::last_os_error());
    println!("HOLD:HELD");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
}

/// A record lock granted after a wait (another process held it) is still held once granted:
/// the wait must not close a descriptor of the file, which would drop the lock it just got.
#[test]
fn a_contended_record_lock_is_held_once_granted() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempdir();
    let path = dir.path().join("auth.json");
    std::fs::write(&path, Store::default().to_bytes()).unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hold_child", "--nocapture", "--test-threads=1"])
        .env(HOLD_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("HOLD:HELD") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "holder ended early");
    }
    assert!(locked_from_another_process_by(&path, holder.id()));
    let os = Arc::new(RealOs::new());
    let (os2, p2) = (os.clone(), path.clone());
    let waiter = std::thread::spawn(move || os2.lock(LockKind::Fcntl, &p2).unwrap());
    // Let the waiter find the lock taken (so it waits) before the holder lets go: wait until
    // the kernel lists it as blocked on the file.
    while !waiter.is_finished()
        && !std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.contains("->") && l.contains(&format!(" {} ", std::process::id())))
    {
        std::thread::yield_now();
    }
    drop(holder.stdin.take()); // the holder exits, its lock goes
    holder.wait().unwrap();
    let held = waiter.join().unwrap();
    assert!(
        locked_from_another_process(&path),
        "the granted lock must still be held by this process"
    );
    os.unlock(held).unwrap();
    assert!(!locked_from_another_process(&path));
}

/// Whether another process sees a record lock on `path` held by `pid`.
fn locked_from_another_process_by(path: &Path, pid: u32) -> bool {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("PROBE:LOCKED:{pid}"))
}

//! Crash states of one persist on the simulated kernel (ALICE/CrashMonkey style): run a write
//! path one syscall at a time, take the state a power loss would leave after every step, and
//! classify it. A good write path leaves either the old store or, once it has reported success,
//! the new one; never anything else, and never the old one after success.

use std::path::Path;

use harness::sim::kernel::KernelState;

const OLD: &[u8] = b"{\"version\":1,\"old\":true}";
const NEW: &[u8] = b"{\"version\":1,\"new\":true,\"padding\":\"..............\"}";

#[derive(Debug, PartialEq)]
enum After {
    Old,
    New,
    /// Neither version whole: empty, partial or missing.
    Torn,
}

/// A write path in progress: the kernel, its open descriptions and temp files.
struct Run {
    k: KernelState,
    fds: Vec<u64>,
    tmps: Vec<std::path::PathBuf>,
}

impl Run {
    fn fd(&self) -> u64 {
        *self.fds.last().expect("a file is open")
    }
}

/// One syscall of a write path.
type Step = fn(&mut Run);

fn store() -> &'static Path {
    Path::new("/sim/auth.json")
}

/// The bad crash states of a write path: (step index, what a crash there leaves, whether the
/// write had already been acknowledged).
fn bad_states(steps: &[Step]) -> Vec<(usize, After, bool)> {
    let mut r = Run {
        k: KernelState::new(),
        fds: Vec::new(),
        tmps: Vec::new(),
    };
    r.k.install(store(), OLD);
    r.k.fsync_dir(Path::new("/sim"));
    let mut bad = Vec::new();
    for i in 0..=steps.len() {
        let acknowledged = i == steps.len();
        let after = match r.k.crash().contents(store()) {
            Some(b) if b == OLD => After::Old,
            Some(b) if b == NEW => After::New,
            _ => After::Torn,
        };
        let ok = match after {
            After::Old => !acknowledged,
            After::New => true,
            After::Torn => false,
        };
        if !ok {
            bad.push((i, after, acknowledged));
        }
        if let Some(step) = steps.get(i) {
            step(&mut r);
        }
    }
    bad
}

fn open_temp(r: &mut Run) {
    let (fd, tmp) = r.k.create_temp(1, store());
    r.fds.push(fd);
    r.tmps.push(tmp);
}
fn write_all(r: &mut Run) {
    r.k.write(r.fd(), NEW).unwrap();
}
fn write_half(r: &mut Run) {
    r.k.write(r.fd(), &NEW[..NEW.len() / 2]).unwrap();
}
fn write_rest(r: &mut Run) {
    r.k.write(r.fd(), &NEW[NEW.len() / 2..]).unwrap();
}
fn fsync(r: &mut Run) {
    r.k.fsync(r.fd()).unwrap();
}
fn close(r: &mut Run) {
    r.k.close(r.fd()).unwrap();
}
fn rename(r: &mut Run) {
    let tmp = r.tmps.last().unwrap().clone();
    r.k.rename(&tmp, store()).unwrap();
}
fn fsync_dir(r: &mut Run) {
    r.k.fsync_dir(Path::new("/sim"));
}
fn open_trunc(r: &mut Run) {
    let fd = r.k.open(1, store(), true, true).unwrap();
    r.fds.push(fd);
}

#[test]
fn rename_with_both_fsyncs_has_no_bad_crash_state() {
    let steps: &[Step] = &[open_temp, write_all, fsync, close, rename, fsync_dir];
    assert_eq!(bad_states(steps), vec![]);
}

#[test]
fn dropping_the_file_fsync_can_leave_a_torn_store() {
    let steps: &[Step] = &[open_temp, write_all, close, rename, fsync_dir];
    let bad = bad_states(steps);
    assert!(bad.iter().any(|(_, a, _)| *a == After::Torn), "{bad:?}");
}

#[test]
fn dropping_the_directory_fsync_can_lose_an_acknowledged_write() {
    let steps: &[Step] = &[open_temp, write_all, fsync, close, rename];
    let bad = bad_states(steps);
    assert_eq!(
        bad,
        vec![(5, After::Old, true)],
        "only the acknowledged write can be lost"
    );
}

#[test]
fn writing_in_place_can_lose_an_acknowledged_write() {
    // pool-core's in-place path: O_TRUNC, chunked writes, close; no fsync.
    let steps: &[Step] = &[open_trunc, write_half, write_rest, close];
    let bad = bad_states(steps);
    assert!(bad.iter().any(|(_, _, acked)| *acked), "{bad:?}");
}

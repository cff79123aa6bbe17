//! Measuring: the timed [`Os`] wrapper that counts time spent waiting for the lock, the
//! per-worker sample file, latency histograms, and forking N timed workers behind one start
//! gate.
//!
//! A worker records every operation's latency (nanoseconds) in memory and writes them, with
//! its counters, to one binary file when its time is up; the parent merges the files into one
//! [`hdrhistogram::Histogram`]. Nothing is written while the clock runs.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use pool_core::world::{Event, LockKind, Os, Pause};
use serde::{Deserialize, Serialize};

use crate::drive::rendezvous::Coordination;

/// An [`Os`] that adds up the time spent inside [`Os::lock`] (blocked on the lock, plus the
/// `open` of the lock file) and counts the locks taken.
pub struct TimedOs<O> {
    inner: O,
    wait_ns: Cell<u64>,
    locks: Cell<u64>,
}

impl<O> TimedOs<O> {
    pub fn new(inner: O) -> Self {
        TimedOs {
            inner,
            wait_ns: Cell::new(0),
            locks: Cell::new(0),
        }
    }
    /// Nanoseconds spent in `lock` so far.
    pub fn wait_ns(&self) -> u64 {
        self.wait_ns.get()
    }
    /// Locks taken so far.
    pub fn locks(&self) -> u64 {
        self.locks.get()
    }
    pub fn inner(&self) -> &O {
        &self.inner
    }
}

impl<O: Os> Os for TimedOs<O> {
    type File = O::File;
    type Held = O::Held;

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }
    fn create(&self, path: &Path) -> io::Result<O::File> {
        self.inner.create(path)
    }
    fn create_temp(&self, beside: &Path) -> io::Result<(O::File, PathBuf)> {
        self.inner.create_temp(beside)
    }
    fn write(&self, file: &mut O::File, bytes: &[u8]) -> io::Result<()> {
        self.inner.write(file, bytes)
    }
    fn sync(&self, file: &mut O::File) -> io::Result<()> {
        self.inner.sync(file)
    }
    fn close(&self, file: O::File) -> io::Result<()> {
        self.inner.close(file)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn lock(&self, kind: LockKind, path: &Path) -> io::Result<O::Held> {
        let t = Instant::now();
        let held = self.inner.lock(kind, path);
        self.wait_ns
            .set(self.wait_ns.get() + t.elapsed().as_nanos() as u64);
        self.locks.set(self.locks.get() + 1);
        held
    }
    fn unlock(&self, held: O::Held) -> io::Result<()> {
        self.inner.unlock(held)
    }
    fn pause(&self, point: Pause) {
        self.inner.pause(point)
    }
    fn record(&self, event: Event) {
        self.inner.record(event)
    }
}

/// What one worker measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Samples {
    /// Operations that succeeded (one latency each). Failed ones are only in `errors`: a
    /// failure is often fast, and counted as throughput it would make a broken subject win.
    pub ops: u64,
    /// Nanoseconds spent waiting for the lock.
    pub lock_wait_ns: u64,
    /// Locks taken.
    pub locks: u64,
    /// Refresh grants the worker's pool sent (0 for the references).
    pub refreshes: u64,
    /// Operations that returned an error.
    pub errors: u64,
    /// Wall time the worker ran its loop, in nanoseconds.
    pub elapsed_ns: u64,
    /// One latency per operation, in nanoseconds.
    pub latencies_ns: Vec<u64>,
}

const MAGIC: &[u8; 8] = b"PCBENCH1";

impl Samples {
    /// Time one operation: a success adds one to `ops` and its latency, a failure one to
    /// `errors` (and no latency).
    pub fn time<T, E>(&mut self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let t = Instant::now();
        let r = f();
        match r {
            Ok(_) => {
                self.latencies_ns.push(t.elapsed().as_nanos() as u64);
                self.ops += 1;
            }
            Err(_) => self.errors += 1,
        }
        r
    }

    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 + 8 * self.latencies_ns.len());
        buf.extend_from_slice(MAGIC);
        for v in [
            self.ops,
            self.lock_wait_ns,
            self.locks,
            self.refreshes,
            self.errors,
            self.elapsed_ns,
            self.latencies_ns.len() as u64,
        ] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.latencies_ns {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let mut f = std::fs::File::create(path)?;
        f.write_all(&buf)
    }

    pub fn read_from(path: &Path) -> io::Result<Samples> {
        let mut buf = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut buf)?;
        let bad = || io::Error::other(format!("{} is not a bench sample file", path.display()));
        if buf.len() < 64 || &buf[..8] != MAGIC {
            return Err(bad());
        }
        let word = |i: usize| u64::from_le_bytes(buf[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let n = word(6) as usize;
        if buf.len() != 64 + 8 * n {
            return Err(bad());
        }
        Ok(Samples {
            ops: word(0),
            lock_wait_ns: word(1),
            locks: word(2),
            refreshes: word(3),
            errors: word(4),
            elapsed_ns: word(5),
            latencies_ns: (0..n).map(|i| word(7 + i)).collect(),
        })
    }
}

/// The merged measurements of one cell (all its workers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub ops: u64,
    pub ops_per_s: f64,
    pub latency_us: Percentiles,
    /// Seconds all workers together spent waiting for the lock.
    pub lock_wait_s: f64,
    /// `lock_wait_s` over the workers' total run time.
    pub lock_wait_share: f64,
    pub locks: u64,
    pub refreshes: u64,
    pub errors: u64,
    /// Latency CDF: (microseconds, fraction of operations at or below).
    pub cdf: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// A histogram of nanosecond latencies (1 ns .. 100 s, 3 significant digits).
pub fn histogram(latencies_ns: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    for v in latencies_ns {
        h.saturating_record(v.max(1));
    }
    h
}

/// Percentiles of a nanosecond histogram, in microseconds.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let us = |ns: u64| ns as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles {
            mean: 0.0,
            p50: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
        };
    }
    Percentiles {
        mean: h.mean() / 1000.0,
        p50: us(h.value_at_quantile(0.5)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
    }
}

/// At most `points` points of the CDF, at evenly spaced quantiles (plus the max).
pub fn cdf(h: &Histogram<u64>, points: usize) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(f64, f64)> = (1..=points)
        .map(|i| {
            let q = i as f64 / (points + 1) as f64;
            (h.value_at_quantile(q) as f64 / 1000.0, q)
        })
        .collect();
    out.push((h.max() as f64 / 1000.0, 1.0));
    out
}

/// Merge the workers' samples into the figures of one cell.
pub fn figures(workers: &[Samples]) -> Figures {
    let h = histogram(workers.iter().flat_map(|w| w.latencies_ns.iter().copied()));
    let ops: u64 = workers.iter().map(|w| w.ops).sum();
    let ops_per_s = workers
        .iter()
        .filter(|w| w.elapsed_ns > 0)
        .map(|w| w.ops as f64 / (w.elapsed_ns as f64 / 1e9))
        .sum();
    let wait: u64 = workers.iter().map(|w| w.lock_wait_ns).sum();
    let run: u64 = workers.iter().map(|w| w.elapsed_ns).sum();
    Figures {
        ops,
        ops_per_s,
        latency_us: percentiles(&h),
        lock_wait_s: wait as f64 / 1e9,
        lock_wait_share: if run > 0 {
            wait as f64 / run as f64
        } else {
            0.0
        },
        locks: workers.iter().map(|w| w.locks).sum(),
        refreshes: workers.iter().map(|w| w.refreshes).sum(),
        errors: workers.iter().map(|w| w.errors).sum(),
        cdf: cdf(&h, 40),
    }
}

/// Why a cell could not be measured.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> Self {
        BenchError(e.to_string())
    }
}

/// One forked worker of a cell: built in the child before the start gate (untimed), then
/// stepped until its time is up, then finished (untimed: flush logs, copy counters).
pub trait Worker {
    /// One turn of the loop: one or more timed operations.
    fn step(&mut self, s: &mut Samples);
    /// After the last step.
    fn finish(self, _s: &mut Samples) -> io::Result<()>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// Fork `procs` workers from this (single-threaded) process, open the start gate, and collect
/// their samples. Worker `p` (1-based) is built by `setup(p)` in the child, then stepped until
/// `seconds` have passed since it left the gate.
///
/// Every worker leaves through `_exit`; one that panics, fails or outlives `deadline` makes the
/// cell an error naming it.
pub fn fork_timed<S, W>(
    procs: u32,
    seconds: f64,
    dir: &Path,
    setup: S,
    deadline: Duration,
) -> Result<Vec<Samples>, BenchError>
where
    S: Fn(u32) -> io::Result<W>,
    W: Worker,
{
    let coord =
        Coordination::new(0).map_err(|e| BenchError(format!("cannot map shared memory: {e}")))?;
    let run_for = Duration::from_secs_f64(seconds);
    let mut children: Vec<(u32, Pid)> = Vec::new();
    let parent = crate::lifeline::Parent::this_process();
    for p in 1..=procs {
        let out = dir.join(format!("samples.p{p}.bin"));
        // SAFETY: the caller is single-threaded (the issuer, if any, runs in its own process);
        // the child only runs the worker and leaves through `_exit`.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if !crate::lifeline::bind(parent, Signal::SIGKILL) {
                        return 9;
                    }
                    let Ok(mut worker) = setup(p) else { return 3 };
                    let mut s = Samples {
                        latencies_ns: Vec::with_capacity(1 << 16),
                        ..Samples::default()
                    };
                    if !coord.wait_gate(Duration::from_secs(30)) {
                        return 4;
                    }
                    let t = Instant::now();
                    while t.elapsed() < run_for {
                        worker.step(&mut s);
                    }
                    s.elapsed_ns = t.elapsed().as_nanos() as u64;
                    if worker.finish(&mut s).is_err() {
                        return 6;
                    }
                    i32::from(s.write_to(&out).is_err()) * 5
                }))
                .unwrap_or(101);
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => children.push((p, child)),
            Err(e) => {
                for (_, pid) in &children {
                    let _ = kill(*pid, Signal::SIGKILL);
                    let _ = waitpid(*pid, None);
                }
                return Err(BenchError(format!("fork failed: {e}")));
            }
        }
    }
    coord.open_gate();
    let until = Instant::now() + deadline + run_for;
    let mut failed = Vec::new();
    for (p, pid) in &children {
        loop {
            match waitpid(*pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = kill(*pid, Signal::SIGKILL);
                    let _ = waitpid(*pid, None);
                    failed.push(format!("worker {p} outlived the deadline"));
                    break;
                }
                Ok(WaitStatus::Exited(_, 0)) => break,
                Ok(WaitStatus::Exited(_, c)) => {
                    failed.push(format!("worker {p} exited {c}"));
                    break;
                }
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    failed.push(format!("worker {p} killed by {s:?}"));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    failed.push(format!("worker {p} lost: {e}"));
                    break;
                }
            }
        }
    }
    if !failed.is_empty() {
        return Err(BenchError(failed.join("; ")));
    }
    (1..=procs)
        .map(|p| Samples::read_from(&dir.join(format!("samples.p{p}.bin"))).map_err(Into::into))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_and_close_to_the_samples() {
        // 1..=10_000 microseconds: p50 ~ 5 ms, p99 ~ 9.9 ms, p999 ~ 9.99 ms.
        let h = histogram((1..=10_000u64).map(|us| us * 1000));
        let p = percentiles(&h);
        assert!(
            p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max,
            "{p:?}"
        );
        assert!((p.p50 - 5000.0).abs() < 10.0, "{p:?}");
        assert!((p.p99 - 9900.0).abs() < 20.0, "{p:?}");
        assert!((p.p999 - 9990.0).abs() < 20.0, "{p:?}");
        assert!((p.max - 10_000.0).abs() < 10.0, "{p:?}");
        let c = cdf(&h, 10);
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }

    #[test]
    fn samples_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let s = Samples {
            ops: 3,
            lock_wait_ns: 7,
            locks: 3,
            refreshes: 1,
            errors: 0,
            elapsed_ns: 99,
            latencies_ns: vec![5, 6, 7],
        };
        let p = dir.path().join("s.bin");
        s.write_to(&p).unwrap();
        assert_eq!(Samples::read_from(&p).unwrap(), s);
        std::fs::write(&p, b"nonsense").unwrap();
        assert!(Samples::read_from(&p).is_err());
    }

    #[test]
    fn figures_add_up_the_workers() {
        let w = |ops: u64, secs: u64| Samples {
            ops,
            elapsed_ns: secs * 1_000_000_000,
            lock_wait_ns: 500_000_000,
            latencies_ns: vec![1000; ops as usize],
            ..Samples::default()
        };
        let f = figures(&[w(100, 1), w(300, 1)]);
        assert_eq!(f.ops, 400);
        assert!((f.ops_per_s - 400.0).abs() < 1e-9);
        assert!((f.lock_wait_share - 0.5).abs() < 1e-9);
        assert!((f.latency_us.p50 - 1.0).abs() < 0.01);
    }
}

//! Cross-process coordination for forked workers: a start gate (with a count of the workers
//! ready to start, so the parent opens it only once every worker, and the subject it started,
//! is ready) and rendezvous barriers, kept in one anonymous `MAP_SHARED` mapping created by the
//! parent before it forks.
//!
//! A rendezvous makes an unsafe interleaving reproducible on real processes: each process
//! waits at its pause point until every party of the barrier has arrived, then all go on
//! together. It never makes a safe strategy fail: when a lock keeps the other parties from
//! arriving, the waiter gives up after its timeout and simply proceeds.
//!
//! Guarantee: a barrier's k-th arrival of a process waits until the barrier has seen
//! k x parties arrivals or the timeout passes. Not guaranteed: any order among the released.

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// Shared counters, inherited by every process forked after it was made.
pub struct SharedSlots {
    ptr: NonNull<AtomicU32>,
    len: usize,
}

// SAFETY: the slots are atomics in memory that lives until Drop; sharing them is their purpose.
unsafe impl Send for SharedSlots {}
unsafe impl Sync for SharedSlots {}

impl SharedSlots {
    /// `len` zeroed counters in shared memory.
    pub fn new(len: usize) -> std::io::Result<SharedSlots> {
        let bytes =
            NonZeroUsize::new(len.max(1) * std::mem::size_of::<AtomicU32>()).expect("non-zero");
        // SAFETY: a fresh anonymous mapping; zero-filled by the kernel, which is a valid AtomicU32.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(SharedSlots {
            ptr: ptr.cast(),
            len: len.max(1),
        })
    }

    pub fn slot(&self, i: usize) -> &AtomicU32 {
        assert!(i < self.len, "slot {i} out of {}", self.len);
        // SAFETY: in bounds of a live mapping of `len` atomics.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }
}

impl Drop for SharedSlots {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this size and is not used after drop.
        unsafe {
            let _ = munmap(self.ptr.cast(), self.len * std::mem::size_of::<AtomicU32>());
        }
    }
}

/// Slot 0 is the start gate; slot 1 counts the workers ready to start; slot 2 + i is barrier i.
pub struct Coordination {
    slots: SharedSlots,
    /// Whether this process counted itself ready: process-local memory (each forked worker
    /// has its own copy, false as the parent, which never counts itself, left it).
    counted: std::sync::atomic::AtomicBool,
}

/// Slots before the barriers' own.
const FIRST_BARRIER: usize = 2;

impl Coordination {
    pub fn new(barriers: usize) -> std::io::Result<Coordination> {
        Ok(Coordination {
            slots: SharedSlots::new(FIRST_BARRIER + barriers)?,
            counted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Worker: count this process as ready to start (or as done trying: a worker that failed
    /// before its start counts too, so the parent does not wait for it). Once per process.
    pub fn ready(&self) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            self.slots.slot(1).fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Parent: wait until `workers` workers are ready (false after `timeout`).
    pub fn wait_ready(&self, workers: u32, timeout: Duration) -> bool {
        self.wait_until(1, workers, timeout)
    }

    /// Parent: release every worker waiting at the start gate.
    pub fn open_gate(&self) {
        self.slots.slot(0).store(1, Ordering::SeqCst);
    }

    /// Worker: wait for the start gate (gives up after `timeout`, returning false).
    pub fn wait_gate(&self, timeout: Duration) -> bool {
        self.wait_until(0, 1, timeout)
    }

    /// Arrive at barrier `b` for the `generation`-th time (from 1) with `parties` parties;
    /// true when all arrived, false on timeout.
    pub fn rendezvous(&self, b: usize, generation: u32, parties: u32, timeout: Duration) -> bool {
        let slot = FIRST_BARRIER + b;
        self.slots.slot(slot).fetch_add(1, Ordering::SeqCst);
        self.wait_until(slot, generation.saturating_mul(parties), timeout)
    }

    fn wait_until(&self, slot: usize, target: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut spin = 0u32;
        while self.slots.slot(slot).load(Ordering::SeqCst) < target {
            if Instant::now() >= deadline {
                return false;
            }
            spin += 1;
            if spin < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_barrier_releases_when_all_parties_arrive_and_times_out_otherwise() {
        let c = Arc::new(Coordination::new(2).unwrap());
        let c2 = c.clone();
        let t = std::thread::spawn(move || c2.rendezvous(0, 1, 2, Duration::from_secs(10)));
        assert!(c.rendezvous(0, 1, 2, Duration::from_secs(10)));
        assert!(t.join().unwrap());
        // Barrier 1 has two parties but only one arrives.
        assert!(!c.rendezvous(1, 1, 2, Duration::from_millis(20)));
    }

    #[test]
    fn the_parent_sees_ready_workers_and_a_process_counts_once() {
        let c = Coordination::new(0).unwrap();
        assert!(!c.wait_ready(1, Duration::from_millis(5)));
        c.ready();
        c.ready();
        assert!(c.wait_ready(1, Duration::from_millis(5)));
        assert!(!c.wait_ready(2, Duration::from_millis(5)));
    }

    #[test]
    fn the_gate_opens_for_waiters() {
        let c = Coordination::new(0).unwrap();
        assert!(!c.wait_gate(Duration::from_millis(5)));
        c.open_gate();
        assert!(c.wait_gate(Duration::from_millis(5)));
    }
}

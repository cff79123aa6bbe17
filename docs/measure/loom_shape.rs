//! A stand-alone loom model of the shape of `flock-txn` x `refresh-race` in the simulated
//! kernel, to count where loom's executions go (docs/model.md, "Gates and names"). Not part of
//! the workspace: to run it, make a crate with `loom = "=0.7.3"` as its only dependency, this
//! file as `src/main.rs`, and `cargo run --release -- K OPEN`.
//!
//! Two threads, each K critical sections under one `loom::sync::Mutex` (the gate), each with a
//! read of a "store" mutex, a request on an "issuer" mutex and a write of the store inside, and
//! an open of the lock file before it, which OPEN says how to model:
//! - `none`: no open;
//! - `mutex`: a step on the lock file's lane (a mutex: every two opens are ordered);
//! - `load`: a load of the path's name word (two opens commute);
//! - `create`: the same, but the first open creates the file (a change of the word, on the
//!   lane); the word settled with a sequentially consistent store before the threads start;
//! - `unsettled`: `create` without that store.
//!
//! Every interleaving (no preemption bound); prints the executions loom explored.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize as Word;
use loom::sync::Mutex;

struct Shared {
    gate: Mutex<()>,
    lock_lane: Mutex<()>,
    name: Word,
    store: Mutex<()>,
    issuer: Mutex<()>,
    created: AtomicBool,
}

fn step(lane: &Mutex<()>) {
    drop(lane.lock().unwrap());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let k: usize = args.get(1).and_then(|a| a.parse().ok()).expect("K: critical sections per thread");
    let open = args.get(2).cloned().unwrap_or_else(|| "none".into());
    assert!(
        ["none", "mutex", "load", "create", "unsettled"].contains(&open.as_str()),
        "OPEN: none | mutex | load | create | unsettled"
    );
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = None;
    b.max_branches = 1_000_000;
    let started = std::time::Instant::now();
    b.check(move || {
        counted.fetch_add(1, SeqCst);
        let shared = Arc::new(Shared {
            gate: Mutex::new(()),
            lock_lane: Mutex::new(()),
            name: Word::new(0),
            store: Mutex::new(()),
            issuer: Mutex::new(()),
            created: AtomicBool::new(false),
        });
        if open != "unsettled" {
            shared.name.store(0, SeqCst);
        }
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (s, open) = (shared.clone(), open.clone());
                loom::thread::spawn(move || {
                    for _ in 0..k {
                        match open.as_str() {
                            "none" => {}
                            "mutex" => step(&s.lock_lane),
                            "load" => {
                                s.name.load(SeqCst);
                            }
                            _ if s.created.swap(true, SeqCst) => {
                                s.name.load(SeqCst);
                            }
                            _ => {
                                let _lane = s.lock_lane.lock().unwrap();
                                s.name.fetch_add(1, SeqCst);
                            }
                        }
                        let held = s.gate.lock().unwrap();
                        step(&s.store);
                        step(&s.issuer);
                        step(&s.store);
                        drop(held);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
    println!(
        "k={k} open={}: {} executions, {:.2} s",
        args.get(2).map_or("none", |s| s.as_str()),
        executions.load(SeqCst),
        started.elapsed().as_secs_f64()
    );
}

//! A loop of one pool operation for profiling (e.g. `valgrind --tool=callgrind`):
//! `op_loop STRATEGY DIR N [select|select_refresh|mark]`, one process, an instant in-process
//! issuer, the same 4-entry store as the criterion benches.

use pool_benches::{initial_store, InstantIssuer};
use pool_core::real::{RealOs, SystemClock};
use pool_core::world::Clock;
use pool_core::{Config, Pool, Selection, Strategy};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: op_loop STRATEGY DIR N [select|select_refresh|mark]";
    let strategy = Strategy::parse(args.get(1).expect(usage)).expect("strategy");
    let dir = std::path::PathBuf::from(args.get(2).expect(usage));
    let n: u64 = args.get(3).expect(usage).parse().expect("N");
    let op = args.get(4).map_or("select", String::as_str);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("auth.json"), initial_store()).expect("store");
    let mut cfg = Config::new(&dir, strategy);
    cfg.selection = Selection::RoundRobin;
    if op == "select_refresh" {
        cfg.refresh_margin_ms = u64::MAX / 4;
    }
    let p = Pool::new(RealOs::new(), InstantIssuer::default(), SystemClock, cfg);
    p.load_pool().expect("load");
    let t = std::time::Instant::now();
    for _ in 0..n {
        if op == "mark" {
            let id = p.snapshot().entries("anthropic")[0].id.clone();
            p.mark_exhausted_and_rotate(&id, 429, "x", Some(SystemClock.now_ms()))
                .expect("mark");
        } else {
            p.select().expect("select");
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    eprintln!("{op} x {n}: {us:.1} us/op");
}

//! Uncontended latency of one pool operation, per strategy preset and write path, on tmpfs
//! (/dev/shm) and on the disk temp dir: one process, one thread, an in-process issuer that
//! answers at once.
//!
//! - `select`: the `available_entries` pass and a round-robin pick (which writes the store);
//! - `select_refresh`: the same, but the OAuth entry is always due for a refresh;
//! - `mark_exhausted`: mark the next entry exhausted (its cooldown already over) and rotate;
//! - `add_entry`: append an API key to a fresh 4-entry store and persist it.
//!
//! Short measurement times keep `cargo bench` under about two minutes.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use pool_benches::{initial_store, InstantIssuer};
use pool_core::real::{RealOs, SystemClock};
use pool_core::strategy::WritePath;
use pool_core::world::Clock;
use pool_core::{AuthType, Config, NewEntry, Pool, Selection, Strategy, PRESETS};

type BenchPool = Pool<RealOs, InstantIssuer, SystemClock>;

fn pool(dir: &Path, strategy: Strategy, always_refresh: bool) -> BenchPool {
    std::fs::write(dir.join("auth.json"), initial_store()).expect("write the store");
    let mut cfg = Config::new(dir, strategy);
    cfg.selection = Selection::RoundRobin;
    if always_refresh {
        cfg.refresh_margin_ms = u64::MAX / 4;
    }
    let p = Pool::new(RealOs::new(), InstantIssuer::default(), SystemClock, cfg);
    p.load_pool().expect("load");
    p
}

/// Every preset on its own write path and on the other one.
fn strategies() -> Vec<(String, Strategy)> {
    let mut out = Vec::new();
    for p in PRESETS {
        let s = Strategy::parse(p.name).expect("preset");
        for w in WritePath::ALL {
            let v = Strategy { write: *w, ..s };
            let name = if *w == s.write {
                p.name.to_string()
            } else {
                format!("{}+write={}", p.name, w)
            };
            out.push((name, v));
        }
    }
    out
}

fn file_systems() -> Vec<(&'static str, tempfile::TempDir)> {
    let mut v = Vec::new();
    if let Ok(d) = tempfile::Builder::new()
        .prefix("pool-benches.")
        .tempdir_in("/dev/shm")
    {
        v.push(("shm", d));
    }
    v.push(("disk", tempfile::tempdir().expect("temp dir")));
    v
}

fn ops(c: &mut Criterion) {
    for (fs, root) in file_systems() {
        for op in ["select", "select_refresh", "mark_exhausted", "add_entry"] {
            let mut g = c.benchmark_group(format!("{op}/{fs}"));
            for (name, s) in strategies() {
                let dir = root.path().join(name.replace(['=', '+'], "_"));
                std::fs::create_dir_all(&dir).expect("bench dir");
                let id = BenchmarkId::from_parameter(&name);
                match op {
                    "select" | "select_refresh" => {
                        let p = pool(&dir, s, op == "select_refresh");
                        g.bench_function(id, |b| b.iter(|| p.select().expect("select")));
                    }
                    "mark_exhausted" => {
                        let p = pool(&dir, s, false);
                        g.bench_function(id, |b| {
                            b.iter(|| {
                                // The entry next in line, its cooldown already over: the pass
                                // clears it again, so the pool never runs dry.
                                let next = p.snapshot().entries("anthropic")[0].id.clone();
                                let now = SystemClock.now_ms();
                                p.mark_exhausted_and_rotate(&next, 429, "bench", Some(now))
                                    .expect("mark")
                            })
                        });
                    }
                    _ => {
                        g.bench_function(id, |b| {
                            b.iter_batched(
                                || pool(&dir, s, false),
                                |p| {
                                    p.add_entry(NewEntry {
                                        label: "added".into(),
                                        auth_type: AuthType::ApiKey,
                                        source: "manual".into(),
                                        access_token: Some("sk-bench-added".into()),
                                        refresh_token: None,
                                        expires_at_ms: None,
                                    })
                                    .expect("add")
                                },
                                BatchSize::PerIteration,
                            )
                        });
                    }
                }
            }
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(40))
        .measurement_time(Duration::from_millis(150))
        .sample_size(10)
        .without_plots();
    targets = ops
}
criterion_main!(benches);

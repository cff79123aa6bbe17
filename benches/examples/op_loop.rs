//! A loop of one pool operation for profiling (e.g. `valgrind --tool=callgrind`):
//! `op_loop STRATEGY DIR N [select|select_refresh|mark]`, one process, an instant in-process
//! issuer, the same 4-entry store as the criterion benches.

use std::cell::Cell;

use pool_core::real::{RealOs, SystemClock};
use pool_core::world::{Clock, Grant, Issuer, RedeemError, UseOutcome};
use pool_core::{AuthType, Config, Entry, Pool, Selection, Store, Strategy};

struct InstantIssuer(Cell<u64>);

impl Issuer for InstantIssuer {
    fn redeem(&self, _: &str) -> Result<Grant, RedeemError> {
        self.0.set(self.0.get() + 1);
        Ok(Grant {
            access_token: format!("at-{:016x}", self.0.get()),
            refresh_token: format!("rt-{:016x}", self.0.get()),
            expires_in_s: 3600,
        })
    }
    fn use_credential(&self, _: &str) -> UseOutcome {
        UseOutcome::Accepted
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: op_loop STRATEGY DIR N [select|select_refresh|mark]";
    let strategy = Strategy::parse(args.get(1).expect(usage)).expect("strategy");
    let dir = std::path::PathBuf::from(args.get(2).expect(usage));
    let n: u64 = args.get(3).expect(usage).parse().expect("N");
    let op = args.get(4).map_or("select", String::as_str);
    let now = SystemClock.now_ms();
    let mut s = Store::default();
    let list = s.entries_mut("anthropic");
    let mut e = Entry::new("0a0a0a", "oauth", AuthType::Oauth, "manual");
    e.access_token = Some("at-initial".into());
    e.refresh_token = Some("rt-initial".into());
    e.expires_at_ms = Some(now + 3_600_000);
    list.push(e);
    for i in 1..4 {
        let mut e = Entry::new(
            &format!("{i:06x}"),
            &format!("key-{i}"),
            AuthType::ApiKey,
            "manual",
        );
        e.priority = i;
        e.access_token = Some(format!("sk-{i:032x}"));
        list.push(e);
    }
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("auth.json"), s.to_bytes()).expect("store");
    let mut cfg = Config::new(&dir, strategy);
    cfg.selection = Selection::RoundRobin;
    if op == "select_refresh" {
        cfg.refresh_margin_ms = u64::MAX / 4;
    }
    let p = Pool::new(RealOs::new(), InstantIssuer(Cell::new(0)), SystemClock, cfg);
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

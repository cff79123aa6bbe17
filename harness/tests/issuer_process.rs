//! `Issuer::spawn_process` forks, so this test binary has no libtest harness (`harness = false`
//! in Cargo.toml): `main` runs on the only thread, as the fork driver's parent does. It speaks
//! enough of libtest's command line for `cargo test` filters and cargo-nextest (`--list`,
//! `--exact`).

use std::time::{Duration, Instant};

use harness::history::{read_jsonl, Ev, RedeemVerdict};
use harness::issuer::{HttpIssuer, Issuer, IssuerConfig};
use pool_core::world::{Issuer as _, RedeemError, UseOutcome};

const TIMEOUT: Duration = Duration::from_secs(10);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// The parent mints, forks the issuer, round-trips through it, stops it; the ledger holds the
/// parent's setup lines and the child's lines.
fn spawn_process_round_trip() {
    assert_eq!(threads(), 1, "this test must run single-threaded");
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let config = IssuerConfig {
        latency_ms: (1, 5),
        ..IssuerConfig::default()
    };
    let mut issuer = Issuer::new(config, &ledger).unwrap();
    let a = issuer.mint_family();
    let b = issuer.mint_family();
    let server = issuer.spawn_process().expect("fork the issuer");
    let pid = server.pid.expect("a process");
    assert_ne!(pid, nix::unistd::getpid());

    let client = HttpIssuer::new(server.url.clone(), 5, TIMEOUT);
    let a1 = client
        .redeem(&a.refresh)
        .expect("the child knows the parent's families");
    assert_eq!(
        client.use_credential(&a1.access_token),
        UseOutcome::Accepted
    );
    assert_eq!(client.use_credential(&b.access), UseOutcome::Accepted);
    assert_eq!(
        client.redeem(&a.refresh).err(),
        Some(RedeemError::Refused {
            error: "invalid_grant".into()
        })
    );
    assert_eq!(
        threads(),
        1,
        "the client must not leave the parent multi-threaded"
    );
    server.stop().expect("the issuer stops cleanly on SIGTERM");
    assert!(
        matches!(client.redeem(&b.refresh), Err(RedeemError::Unavailable(_))),
        "nobody serves any more"
    );

    let records = read_jsonl(&ledger).expect("the ledger parses");
    let story: Vec<(u32, String)> = records
        .iter()
        .map(|r| {
            let what = match &r.ev {
                Ev::Issued {
                    family, generation, ..
                } => format!("issued f{family}g{generation}"),
                Ev::Redeemed { outcome, .. } => format!("{outcome:?}"),
                Ev::Used { outcome, .. } => format!("used {outcome:?}"),
                Ev::FamilyRevoked { family, .. } => format!("revoked f{family}"),
                other => format!("{other:?}"),
            };
            (r.proc, what)
        })
        .collect();
    let expect = [
        (0, "IssuerRules { grace_ms: 0 }"),
        (0, "issued f0g0"),
        (0, "issued f1g0"),
        (5, "Rotated"),
        (5, "issued f0g1"),
        (5, "used Accepted"),
        (5, "used Accepted"),
        (5, "Reused"),
        (5, "revoked f0"),
    ];
    assert_eq!(story, expect.map(|(p, s)| (p, s.to_string())).to_vec());
    assert!(records.iter().any(|r| matches!(
        r.ev,
        Ev::Redeemed {
            outcome: RedeemVerdict::Reused,
            ..
        }
    )));
    let text = std::fs::read_to_string(&ledger).unwrap();
    for secret in [
        &a.refresh,
        &a.access,
        &b.refresh,
        &b.access,
        &a1.refresh_token,
        &a1.access_token,
    ] {
        assert!(!text.contains(secret.as_str()), "the ledger leaks a token");
    }
}

/// Dropping the handle stops and reaps the child too.
fn dropping_the_handle_reaps_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(IssuerConfig::default(), &dir.path().join("ledger.jsonl")).unwrap();
    let server = issuer.spawn_process().unwrap();
    let pid = server.pid.unwrap();
    drop(server);
    // Reaped: the pid no longer names a child of ours.
    assert_eq!(
        nix::sys::wait::waitpid(pid, None),
        Err(nix::errno::Errno::ECHILD)
    );
}

/// A multi-threaded caller is refused instead of forked.
fn spawn_process_refuses_a_multithreaded_caller() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(IssuerConfig::default(), &dir.path().join("ledger.jsonl")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let err = issuer.spawn_process().err().expect("refused");
    assert!(err.to_string().contains("single-threaded"), "{err}");
    drop(tx);
    let _ = other.join();
}

fn main() {
    let tests: [(&str, fn()); 3] = [
        ("spawn_process_round_trip", spawn_process_round_trip),
        (
            "dropping_the_handle_reaps_the_child",
            dropping_the_handle_reaps_the_child,
        ),
        // Last: it makes the process multi-threaded for a moment.
        (
            "spawn_process_refuses_a_multithreaded_caller",
            spawn_process_refuses_a_multithreaded_caller,
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    // libtest options that take a value; the value is not a filter.
    const VALUED: [&str; 6] = [
        "--format",
        "--test-threads",
        "--color",
        "--logfile",
        "--skip",
        "-Z",
    ];
    let mut filter = None;
    let mut skip = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if VALUED.contains(&a) {
            if a == "--skip" {
                skip.extend(args.get(i + 1).cloned());
            }
            i += 2;
            continue;
        }
        if !a.starts_with('-') && filter.is_none() {
            filter = Some(args[i].clone());
        }
        i += 1;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| !skip.iter().any(|s| name.contains(s.as_str())))
        .filter(|(name, _)| match &filter {
            None => true,
            Some(f) if exact => name == f,
            Some(f) => name.contains(f.as_str()),
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            for (name, _) in &selected {
                println!("{name}: test");
            }
        }
        return;
    }
    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        tests.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

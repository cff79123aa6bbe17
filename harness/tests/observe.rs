//! `--observe syscalls` (issue 16): pools that report nothing, judged from their system calls.
//!
//! - The Python pool in its silent mode (no events, no pauses) finds, under the observer, the
//!   same anomaly kinds its self-reporting run finds in `seed-8040`, `refresh-race`,
//!   `lost-update` and `cooldown-erasure` as of #8040, and is clean with its fixes on.
//! - The Node.js pool (`subjects/node/pool.js`, no instrumentation at all) shows its torn reads
//!   and its double redeem; its fixed mode is clean.
//!
//! Which kinds a catalog run shows depends on its interleaving (the rendezvous have timeouts):
//! for the Python pool the two sides are compared over a few runs by `common::compare_kinds`
//! (at most six per side at the scenario's timing, six more with the release order of its
//! rendezvous shuffled). The Node pool's torn
//! reads and double redeem are forced by two scenarios of this directory's `scenarios/`, whose
//! rendezvous hold the writer mid-write, or both refreshers before their POST, until the others
//! arrive. Nothing here is timed.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{compare_kinds, first_run, kinds, poolcheck, require, root, run_subject, Compared};
use serde_json::Value;

const PY: &str = "python3 subjects/python/pool_subject.py";
const PY_FIXED: &str =
    "python3 subjects/python/pool_subject.py --merge --batched --serialized-refresh";
const SCENARIOS: [&str; 4] = [
    "seed-8040",
    "refresh-race",
    "lost-update",
    "cooldown-erasure",
];

/// `poolcheck run --format json --scenario SC --subject CMD [extra]`: the run's report.
fn run(cmd: &str, scenario: &str, extra: &[&str]) -> Value {
    let out = run_subject(cmd, scenario, extra);
    first_run(&out, &format!("{scenario} with {cmd} {extra:?}"))
}

/// The kinds one run found (never an errored run).
fn run_kinds(cmd: &str, scenario: &str, extra: &[&str]) -> BTreeSet<String> {
    let r = run(cmd, scenario, extra);
    assert_ne!(r["verdict"], "error", "{scenario} with {cmd}: {r}");
    kinds(&r)
}

const OBSERVE: [&str; 2] = ["--observe", "syscalls"];

/// `extra`, then `--seed SEED` when a seed is given.
fn seed_args<'a>(seed: Option<&'a str>, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = extra.to_vec();
    if let Some(seed) = seed {
        args.extend_from_slice(&["--seed", seed]);
    }
    args
}

#[test]
fn the_silent_python_pool_observed_finds_what_it_reports_itself() {
    // Which kinds one run shows depends on the interleaving (a torn read needs a reader to
    // catch an in-place write half done), and a process under ptrace is slower than one that
    // is not: `compare_kinds` fails only a kind in every run of one side and in no run of the
    // other, at the scenario's timing and with the release order of its rendezvous shuffled.
    let silent = format!("{PY} --silent");
    for sc in SCENARIOS {
        let Compared {
            differ,
            a: told,
            said,
            ..
        } = compare_kinds(
            sc,
            |sc, seed| run_kinds(PY, sc, &seed_args(seed, &[])),
            |sc, seed| run_kinds(&silent, sc, &seed_args(seed, &OBSERVE)),
        );
        assert!(
            told.iter().any(|k| !k.is_empty()),
            "{sc}: the self-reporting pool found nothing ({said})"
        );
        assert!(
            differ.is_empty(),
            "{sc}: kinds in every run of one side and none of the other (self-reported vs observed): {differ:?} ({said})"
        );
    }
}

#[test]
fn the_silent_python_pool_with_its_fixes_is_clean_observed() {
    for sc in SCENARIOS {
        let r = run(&format!("{PY_FIXED} --silent"), sc, &OBSERVE);
        assert_eq!(r["verdict"], "clean", "{sc}: {r}");
    }
}

/// A bench ends when the run's cooldown does (`[pool] cooldown_s`, told to the subject in its
/// hello), not after upstream's hour: the fixed pool clearing its own 1 s cooldown 1.5 s later
/// is no lost update, though its observed writes tell no base (it was one, judged from content
/// against an hour).
#[test]
fn a_cooldown_cleared_once_the_runs_cooldown_has_ended_is_no_lost_update() {
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("run");
    let mut args = OBSERVE.to_vec();
    args.extend(["--keep", dir.to_str().unwrap()]);
    let r = run(&format!("{PY_FIXED} --silent"), COOLDOWN_ENDS, &args);
    assert_eq!(r["verdict"], "clean", "{r}");
    // The observer saw the pool bench the key and then clear it: there was a judgement.
    let log = std::fs::read_to_string(dir.join("logs/p1.jsonl")).unwrap();
    let statuses: Vec<bool> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"]["ev"] == "write")
        .map(|v| {
            v["event"]["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["status"] == "exhausted")
        })
        .collect();
    let benched = statuses.iter().position(|&b| b);
    assert!(
        benched.is_some_and(|i| statuses[i..].contains(&false)),
        "writes benched: {statuses:?}"
    );
}

#[test]
fn a_silent_pool_without_the_observer_shows_none_of_it() {
    // The same silent pool, not observed: no reads or writes reach the history, so its lost
    // update is "not observed" (finding it above is the observer's doing). A torn read may
    // still show: an operation that fails on an unparseable store says so in its reply.
    let r = run(&format!("{PY} --silent"), "lost-update", &[]);
    assert!(!kinds(&r).contains("lost_update"), "{r}");
}

#[test]
fn observe_is_for_subjects() {
    let out = poolcheck(&[
        "run",
        "--scenario",
        "refresh-race",
        "--strategy",
        "none",
        "--observe",
        "syscalls",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--observe syscalls watches an external subject"),
        "{err}"
    );
}

const NODE: &str = "node subjects/node/pool.js";

/// `node` must be installed: the Node.js subject is part of this test suite, not optional.
fn require_node() {
    require("node", "Node.js 18 or later");
}

/// A scenario that holds an `auth add` between two write calls on the store until both CLIs
/// have started a load: a torn read of a pool that writes in place is forced by the schedule.
const READ_DURING_WRITE: &str = "harness/tests/scenarios/read-during-write.toml";
/// One gateway benches a key for the run's 1 s cooldown and clears it 1.5 s later.
const COOLDOWN_ENDS: &str = "harness/tests/scenarios/cooldown-ends.toml";
/// refresh-race with both processes held before their POST until both have arrived.
const REDEEM_TOGETHER: &str = "harness/tests/scenarios/redeem-together.toml";

#[test]
fn the_uninstrumented_node_pool_shows_its_torn_reads_and_double_redeem() {
    require_node();
    // The observer holds the auth-add at its second write call (`mid_write`) while both CLIs
    // read: each reads the half-written file. One the observer saw (the bytes' hash, which
    // does not parse), not the harness's fallback for a pool that only answers `read_failed`.
    let r = run(NODE, READ_DURING_WRITE, &OBSERVE);
    assert_eq!(r["anomalies"]["torn_read"], 2, "{r}");
    let torn: Vec<String> = r["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.to_string())
        .filter(|w| w.contains("\"torn_read\""))
        .collect();
    assert!(
        !torn.is_empty() && torn.iter().all(|w| !w.contains("the subject reported")),
        "{torn:?}"
    );
    // The double redeem: the rendezvous before each POST holds both processes there until
    // both have arrived, and this pool takes no lock, so both spend the same refresh token.
    let r = run(NODE, REDEEM_TOGETHER, &OBSERVE);
    assert!(kinds(&r).contains("double_redeem"), "{r}");
}

#[test]
fn the_fixed_node_pool_is_clean_observed() {
    require_node();
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("run");
    let r = run(
        &format!("{NODE} --fixed"),
        "refresh-race",
        &["--observe", "syscalls", "--keep", keep.to_str().unwrap()],
    );
    assert_eq!(r["verdict"], "clean", "{r}");
    // It writes by rename: never held mid-write, its readers wait out the timeout and read a
    // whole store.
    let r = run(&format!("{NODE} --fixed"), READ_DURING_WRITE, &OBSERVE);
    assert_eq!(r["verdict"], "clean", "read-during-write: {r}");
    // seed-8040: the Codex CLI rotated the Codex entry's pair in its own file. The fixed pool
    // adopts it from there; as shipped it never reads that file and keeps a dead credential.
    let r = run(&format!("{NODE} --fixed"), "seed-8040", &OBSERVE);
    assert_eq!(r["verdict"], "clean", "seed-8040: {r}");
    let r = run(NODE, "seed-8040", &OBSERVE);
    assert!(
        kinds(&r).contains("dead_credential"),
        "seed-8040 as shipped: {r}"
    );
    // Clean because its reads, writes and refreshes were seen and are sound, not because none
    // were seen.
    let mut evs = std::collections::BTreeMap::<String, usize>::new();
    for f in std::fs::read_dir(keep.join("logs")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") && p.file_name().unwrap() != "p0.jsonl" {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                if let Some(ev) = v["event"]["ev"].as_str() {
                    *evs.entry(ev.to_string()).or_default() += 1;
                }
            }
        }
    }
    for ev in ["read", "write_begin", "write", "refresh"] {
        assert!(
            evs.get(ev).copied().unwrap_or(0) > 0,
            "no {ev} observed: {evs:?}"
        );
    }
}

/// A correct pool that keeps one `O_RDWR` descriptor on the store for its life: every
/// operation under an exclusive flock, a read is one `pread` of exactly the file's size, a write
/// `ftruncate(fd, 0)` + `pwrite` chunks + `fsync` through that descriptor.
const KEEPFD: &str = "python3 subjects/python/keepfd_pool.py";

#[test]
fn a_pool_that_keeps_its_store_descriptor_open_is_clean_observed() {
    for sc in ["refresh-race", "lost-update"] {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("run");
        let r = run(
            KEEPFD,
            sc,
            &["--observe", "syscalls", "--keep", keep.to_str().unwrap()],
        );
        // Each of a process's in-place writes is a write of its own (not merged into its last
        // one), so a peer's read of an earlier one is a read of a written version.
        assert_eq!(r["verdict"], "clean", "{sc}: {r}");
        // Clean because its reads and writes were seen: every operation's one read (none
        // reads EOF), and some process's several writes through its one descriptor.
        let mut most_writes = 0;
        for evs in events_by_process(&keep) {
            let n = |ev: &str| -> usize {
                evs.iter()
                    .filter(|((kind, _), _)| kind == ev)
                    .map(|(_, count)| count)
                    .sum()
            };
            assert!(
                n("op_begin") > 0 && n("read") == n("op_begin"),
                "{sc}: {evs:?}"
            );
            most_writes = most_writes.max(n("write"));
        }
        assert!(most_writes >= 2, "{sc}: no process wrote twice");
    }
}

/// A correct pool (`keepfd_pool.py`'s logic under its flock) with switches for I/O the observer
/// once mistook: `--sniff` peeks at the store's first 16 bytes before each read, `--copyfile`
/// writes by `shutil.copyfile` (`sendfile(2)`), `--watcher` re-reads the store lock-free from a
/// thread that the process's exit cuts off mid-read.
const COPYIO: &str = "python3 subjects/python/copyio_pool.py";

/// Per subject process of a kept run: (event kind, hash) -> count.
fn events_by_process(
    keep: &std::path::Path,
) -> Vec<std::collections::BTreeMap<(String, String), usize>> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(keep.join("logs")).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap();
        let proc = name
            .strip_prefix('p')
            .and_then(|n| n.strip_suffix(".jsonl"));
        if proc.is_none_or(|n| n == "0" || n.parse::<u32>().is_err()) {
            continue;
        }
        let mut evs = std::collections::BTreeMap::new();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(ev) = v["event"]["ev"].as_str() {
                let hash = v["event"]["hash"].as_str().unwrap_or("").to_string();
                *evs.entry((ev.to_string(), hash)).or_default() += 1;
            }
        }
        out.push(evs);
    }
    out
}

#[test]
fn prefix_peeks_reads_cut_off_at_exit_and_sendfile_copies_are_judged_clean_observed() {
    const EMPTY: &str = "e3b0c44298fc1c14";
    for mode in ["--sniff", "--copyfile", "--watcher"] {
        for sc in ["refresh-race", "lost-update"] {
            let dir = tempfile::tempdir().unwrap();
            let keep = dir.path().join("run");
            let r = run(
                &format!("{COPYIO} {mode}"),
                sc,
                &["--observe", "syscalls", "--keep", keep.to_str().unwrap()],
            );
            // A 16-byte peek, or a read the exit cut off, is no read of the store; a copy's
            // bytes are the source's, not the empty file the truncating open left.
            assert_eq!(r["verdict"], "clean", "{mode} {sc}: {r}");
            // Clean because the reads and writes were seen: every operation's whole read
            // (the watcher's whole reads come on top), and the copies as writes.
            let mut writes = 0;
            for evs in events_by_process(&keep) {
                let n = |ev: &str| -> usize {
                    evs.iter()
                        .filter(|((e, _), _)| e == ev)
                        .map(|(_, c)| c)
                        .sum()
                };
                let ops = n("op_begin");
                assert!(ops > 0, "{mode} {sc}: {evs:?}");
                if mode == "--watcher" {
                    assert!(n("read") >= ops, "{mode} {sc}: {evs:?}");
                } else {
                    assert_eq!(n("read"), ops, "{mode} {sc}: {evs:?}");
                }
                assert!(
                    !evs.contains_key(&("write".into(), EMPTY.into())),
                    "{mode} {sc}: {evs:?}"
                );
                writes += n("write");
            }
            assert!(writes > 0, "{mode} {sc}: no write seen");
        }
    }
}

#[test]
fn observed_locks_are_in_the_history_with_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("run");
    let r = run(
        &format!("{PY_FIXED} --silent"),
        "refresh-race",
        &["--observe", "syscalls", "--keep", keep.to_str().unwrap()],
    );
    assert_ne!(r["verdict"], "error", "{r}");
    let log = std::fs::read_to_string(keep.join("logs/p1.jsonl")).unwrap();
    let locks: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "lock")
        .collect();
    let has = |op: &str, outcome: &str| {
        locks.iter().any(|v| {
            v["op"] == op
                && v["outcome"] == outcome
                && v["path"].as_str().unwrap().ends_with("auth.lock")
                && v["inode"].as_u64().unwrap() > 0
        })
    };
    assert!(
        has("exclusive", "requested") && has("exclusive", "granted") && has("unlock", "granted"),
        "{locks:?}"
    );
}

/// Whether `s` is `read HASH` / `write HASH` with a 16-hex-digit content hash (or `(missing)`)
/// or `refresh t:TAG OUTCOME`: the self-check names hashes and tags only, never bytes or tokens.
fn hash_item(s: &str) -> bool {
    let hex = |h: &str, n: usize| h.len() == n && h.chars().all(|c| c.is_ascii_hexdigit());
    match s.split(' ').collect::<Vec<_>>()[..] {
        ["read" | "write", "(missing)"] => true,
        ["read" | "write", hash] => hex(hash, 16),
        ["refresh", tag, "rotated" | "refused" | "unavailable"] => {
            tag.strip_prefix("t:").is_some_and(|t| hex(t, 8))
        }
        _ => false,
    }
}

/// The disagreements a run's report lists, each checked: process, op and kind named, hashes
/// and tags only, and at least one `kind ...` item on each side.
fn disagreements(r: &Value, kind: &str) -> usize {
    assert_ne!(r["verdict"], "error", "{r}");
    let s = &r["self_check"];
    assert!(
        s["about"]
            .as_str()
            .unwrap_or_else(|| panic!("no self_check in {r}"))
            .contains("not an anomaly of the pool"),
        "{s}"
    );
    let listed = s["listed"].as_array().unwrap();
    assert!(!listed.is_empty() && s["disagreements"].as_u64() >= Some(listed.len() as u64));
    for d in listed {
        let items = |k: &str| -> Vec<String> {
            d[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let (told, seen) = (
            items("reported_not_observed"),
            items("observed_not_reported"),
        );
        // Told wrong: the told item was never seen, the seen one never told.
        let prefix = format!("{kind} ");
        assert!(
            told.iter().any(|t| t.starts_with(&prefix))
                && seen.iter().any(|t| t.starts_with(&prefix)),
            "{d}"
        );
        assert!(told.iter().chain(&seen).all(|t| hash_item(t)), "{d}");
        assert!(
            d["process"].as_u64() > Some(0) && d["op"].as_u64() > Some(0),
            "{d}"
        );
        assert!(
            ["load_pool", "select", "mark_exhausted", "add_entry"]
                .contains(&d["op_kind"].as_str().unwrap()),
            "{d}"
        );
    }
    listed.len()
}

#[test]
fn an_adapter_that_misreports_shows_in_the_report_self_check() {
    // `--misreport-writes` sends a wrong hash in every `write` event, `--misreport-refreshes` a
    // wrong token tag in every `refresh` (the pool is unchanged): under the observer each is a
    // disagreement the run's report lists.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("html");
    let r = run(
        &format!("{PY} --misreport-writes"),
        "lost-update",
        &["--observe", "syscalls", "--html", html.to_str().unwrap()],
    );
    disagreements(&r, "write");
    let page = std::fs::read_to_string(html.join("index.html")).unwrap();
    assert!(
        page.contains("Adapter self-check"),
        "no self-check in the HTML report"
    );
    let r = run(
        &format!("{PY} --misreport-refreshes"),
        "refresh-race",
        &OBSERVE,
    );
    disagreements(&r, "refresh");
    // The same adapter reporting truthfully agrees with the observer: no section at all.
    for sc in ["lost-update", "refresh-race"] {
        let r = run(PY, sc, &OBSERVE);
        assert_ne!(r["verdict"], "error", "{r}");
        assert!(r.get("self_check").is_none(), "{sc}: {}", r["self_check"]);
    }
}

/// `poolcheck ARGS` started under a seccomp filter (inherited by everything it starts) that
/// makes system call `nr` fail with `errno`, as a container's seccomp profile would: its exit
/// code and stderr, once it has exited (it must, within a minute: a hang fails), and whether
/// a process of its process group outlived it.
fn under_refusal(nr: i64, errno: u32, args: &[&str]) -> (Option<i32>, String, bool) {
    use std::os::unix::process::CommandExt;
    let filter = seccompiler::SeccompFilter::new(
        std::collections::BTreeMap::from([(nr, vec![])]),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(errno),
        seccompiler::TargetArch::x86_64,
    )
    .unwrap();
    let program: seccompiler::BpfProgram = filter.try_into().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poolcheck"));
    cmd.current_dir(root())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec the closure makes only prctl and seccomp calls on a
    // program built before the fork (`apply_filter` sets PR_SET_NO_NEW_PRIVS itself).
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
        });
    }
    let mut child = cmd.spawn().expect("poolcheck starts under the filter");
    let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let mut stderr = String::new();
    let reader = {
        let mut e = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("poolcheck {args:?} hung under the refusal");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    stderr.push_str(&reader.join().unwrap());
    let left = nix::sys::signal::kill(pgid, None).is_ok();
    if left {
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
    }
    (status.code(), stderr, left)
}

#[test]
fn refused_ptrace_or_seccomp_exits_2_saying_what_refused_and_what_to_change() {
    let subject = format!("{PY} --silent");
    let run = [
        "run",
        "--scenario",
        "lost-update",
        "--subject",
        &subject,
        "--observe",
        "syscalls",
    ];
    let gate = [
        "gate",
        "--quick",
        "--subject",
        &subject,
        "--observe",
        "syscalls",
    ];
    let cases: [(i64, u32, &[&str], &str); 4] = [
        (libc::SYS_ptrace, libc::EPERM as u32, &run, "ptrace(PTRACE_TRACEME) was refused (Operation not permitted"),
        (libc::SYS_ptrace, libc::EPERM as u32, &gate, "ptrace(PTRACE_TRACEME) was refused (Operation not permitted"),
        (libc::SYS_seccomp, libc::EPERM as u32, &run, "installing the seccomp filter (prctl PR_SET_NO_NEW_PRIVS, seccomp SECCOMP_SET_MODE_FILTER) was refused (Operation not permitted"),
        (libc::SYS_seccomp, libc::EINVAL as u32, &run, "installing the seccomp filter (prctl PR_SET_NO_NEW_PRIVS, seccomp SECCOMP_SET_MODE_FILTER) was refused (Invalid argument"),
    ];
    for (nr, errno, args, reason) in cases {
        let (code, err, left) = under_refusal(nr, errno, args);
        let what = format!("{args:?} with syscall {nr} failing with errno {errno}");
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(
            err.contains(reason),
            "{what}: no reason {reason:?} in: {err}"
        );
        assert!(
            err.contains("kernel.yama.ptrace_scope") && err.contains("seccomp=unconfined"),
            "{what}: no fix in: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(!left, "{what}: a process of poolcheck's group outlived it");
    }
}

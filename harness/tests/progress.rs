//! Progress when stderr is not a terminal (a CI log): one plain line per finished cell, naming
//! the cell, its verdict and the time; `-q` silences it; stdout (the report) is the same
//! either way.

use std::process::{Command, Output};

fn poolcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("poolcheck runs")
}

fn lines(o: &Output, prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// The report with its numbers (counts, times) blanked and its padding collapsed: real
/// processes race differently from run to run (a count of 1 or 12, a run of 9.8 s or 10.2 s,
/// and the table's columns widen with them), the report's shape does not.
fn shape(o: &Output) -> String {
    let text = String::from_utf8_lossy(&o.stdout);
    let mut out = String::new();
    for c in text.chars() {
        let c = match c {
            '0'..='9' => '#',
            '.' if out.ends_with('#') => '#',
            ' ' | '-' if out.ends_with(c) => continue,
            c => c,
        };
        if c == '#' && out.ends_with('#') {
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn matrix_prints_one_line_per_finished_cell_and_quiet_none() {
    let args = [
        "matrix",
        "--quick",
        "--strategies",
        "none,flock-txn",
        "--scenarios",
        "lost-update,cooldown-erasure",
    ];
    let o = poolcheck(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = lines(&o, "matrix [");
    assert_eq!(got.len(), 4, "{got:#?}");
    // (cell, what its verdict shows): `none`'s lost update is forced by the rendezvous; a torn
    // read of its in-place write may come before it by chance.
    for (i, (cell, shows)) in [
        ("none x lost-update", "lost:"),
        ("none x cooldown-erasure", "lost:"),
        ("flock-txn x lost-update", "clean"),
        ("flock-txn x cooldown-erasure", "clean"),
    ]
    .iter()
    .enumerate()
    {
        let l = &got[i];
        let head = format!("matrix [{}/4] {cell}: ", i + 1);
        assert!(
            l.starts_with(&head) && l.split(" (").next().unwrap().contains(shows),
            "{l}"
        );
        assert!(l.ends_with(" s elapsed)"), "{l}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("matrix ["), "progress on stdout: {stdout}");

    let mut quiet = vec!["-q"];
    quiet.extend(args);
    let q = poolcheck(&quiet);
    assert_eq!(q.status.code(), Some(0));
    assert!(
        q.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&q.stderr)
    );
    assert_eq!(shape(&q), shape(&o), "-q changed the report");
}

#[test]
fn gate_crash_and_explore_report_progress_in_lines_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.toml");
    std::fs::write(
        &file,
        "[[expect]]\nstrategy = \"flock-txn\"\nscenarios = [\"lost-update\"]\nsafe = true\n",
    )
    .unwrap();
    let o = poolcheck(&[
        "gate",
        "--quick",
        "--seeds",
        "2",
        "--expect",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let got = lines(&o, "gate [");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].starts_with("gate [2/2] flock-txn x lost-update seed 2: clean"),
        "{got:#?}"
    );

    let o = poolcheck(&["crash", "--kills", "1", "--strategies", "flock-txn,none"]);
    assert_eq!(o.status.code(), Some(0));
    let got = lines(&o, "crash [");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("crash [1/2] flock-txn x crash-mid-persist: ")
            && got[0].contains(" kills in 1 runs; corrupt 0,"),
        "{got:#?}"
    );

    let out = dir.path().join("w.toml");
    let args = [
        "explore",
        "--strategy",
        "thread-lock",
        "--out",
        out.to_str().unwrap(),
        "--force",
    ];
    let o = poolcheck(&args);
    assert_eq!(o.status.code(), Some(1));
    let got = lines(&o, "explore [");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("explore [1/2] search: "), "{got:#?}");
    assert!(
        got[1].starts_with("explore [2/2] shrink: shrunk in "),
        "{got:#?}"
    );
    let mut quiet = vec!["--quiet"];
    quiet.extend(args);
    let q = poolcheck(&quiet);
    assert!(
        q.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&q.stderr)
    );
    assert_eq!(shape(&q), shape(&o), "--quiet changed the report");
}

/// On a terminal (a pseudo-terminal from util-linux `script`) the bar is drawn with its ETA,
/// and drawing it starts no thread: the fork driver, which refuses to fork from a
/// multi-threaded process, still runs every cell.
#[test]
fn on_a_terminal_the_bar_is_drawn_and_the_cells_still_fork() {
    let cmd = format!(
        "{} matrix --quick --strategies none,flock-txn --scenarios lost-update",
        env!("CARGO_BIN_EXE_poolcheck")
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("util-linux `script` runs (it gives the command a terminal)");
    let all = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(all.contains("ETA"), "no bar: {all}");
    assert!(all.contains("flock-txn  clean (expected)"), "{all}");
    assert!(!all.contains("single-threaded"), "{all}");
}

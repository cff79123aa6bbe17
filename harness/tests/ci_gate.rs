//! `ci/gate.sh` adopted by another repository, end to end and offline: a fresh git repository
//! holding only the small pool of docs/subjects.md, its adapter, the expectations file (all
//! three taken from the doc's code blocks, so the doc's example is what is tested), the Python
//! protocol helper and the script. The gate passes for the fixed pool and fails, with the
//! witness, once a commit removes the pool's lock. The script is told to use this build's
//! binary (`POOLCHECK_BIN`), so nothing is compiled here.
//!
//! Needs `python3`, `git` and `bash`; without them it fails saying which is missing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{require, root};

/// The code blocks of a Markdown file whose fence names a file: "```python tinypool.py".
fn named_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        match &mut current {
            Some((name, text)) => {
                if line.starts_with("```") {
                    out.push((std::mem::take(name), std::mem::take(text)));
                    current = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let mut words = info.split_whitespace();
                    if let (Some(_lang), Some(name)) = (words.next(), words.next()) {
                        current = Some((name.to_string(), String::new()));
                    }
                }
            }
        }
    }
    out
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.invalid"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gate(dir: &Path) -> (Output, String) {
    let out = Command::new("bash")
        .current_dir(dir)
        .env("POOLCHECK_BIN", env!("CARGO_BIN_EXE_poolcheck"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("POOLCHECK_SRC")
        .env_remove("POOLCHECK_GIT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .args(["ci/gate.sh", "--quick"])
        .output()
        .expect("bash runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn an_adopting_repository_gates_its_pool_and_catches_the_regression() {
    for (tool, what) in [("python3", "Python 3"), ("git", "git"), ("bash", "bash")] {
        require(tool, what);
    }
    let doc = std::fs::read_to_string(root().join("docs/subjects.md")).unwrap();
    let blocks = named_blocks(&doc);
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["tinypool.py", "tinypool_adapter.py", "poolcheck.toml"] {
        assert!(
            names.contains(&want),
            "docs/subjects.md has no ```... {want} block: {names:?}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    for (name, text) in &blocks {
        std::fs::write(repo.join(name), text).unwrap();
    }
    std::fs::copy(
        root().join("subjects/python/poolcheck_adapter.py"),
        repo.join("poolcheck_adapter.py"),
    )
    .unwrap();
    std::fs::create_dir(repo.join("ci")).unwrap();
    std::fs::copy(root().join("ci/gate.sh"), repo.join("ci/gate.sh")).unwrap();
    git(repo, &["init", "-q"]);
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "our pool, its adapter, its gate"]);

    // The fixed pool: every expectation holds (the unlocked mode is found double-redeeming).
    let (out, text) = gate(repo);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("using poolcheck {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let junit = std::fs::read_to_string(repo.join("poolcheck-out/junit.xml")).unwrap();
    assert_eq!(junit_counts(&junit), (2, 0), "{junit}");
    for f in ["report.json", "summary.md"] {
        assert!(
            repo.join("poolcheck-out").join(f).is_file(),
            "no {f}: {text}"
        );
    }

    // A commit drops the lock: the gate fails with the double spend's witness.
    let pool = repo.join("tinypool.py");
    let src = std::fs::read_to_string(&pool).unwrap();
    assert!(src.contains("LOCKED = True"), "{src}");
    std::fs::write(&pool, src.replace("LOCKED = True", "LOCKED = False")).unwrap();
    git(repo, &["commit", "-qam", "a regression: no lock"]);
    let (out, text) = gate(repo);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED: tinypool in refresh-race: safe"),
        "{text}"
    );
    assert!(text.contains("first witness ("), "no witness story: {text}");
    assert!(
        text.contains("replay: `poolcheck run --scenario refresh-race --subject 'tinypool="),
        "{text}"
    );
    let junit = std::fs::read_to_string(repo.join("poolcheck-out/junit.xml")).unwrap();
    assert_eq!(junit_counts(&junit), (2, 1), "{junit}");
    assert!(
        junit.contains("first witness") && junit.contains("redeemed t:"),
        "{junit}"
    );
}

/// The workflow template's placeholders (`OWNER` URL, all-zero revision) are refused with the
/// fix, before anything is built.
#[test]
fn the_templates_placeholders_are_refused_with_the_fix() {
    require("bash", "bash");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ci")).unwrap();
    std::fs::copy(root().join("ci/gate.sh"), dir.path().join("ci/gate.sh")).unwrap();
    for (url, rev, says) in [
        (
            "https://github.com/OWNER/poolcheck",
            "0123456789abcdef0123456789abcdef01234567",
            "POOLCHECK_GIT=https://github.com/OWNER/poolcheck is the template's placeholder",
        ),
        (
            "https://example.invalid/poolcheck",
            "0000000000000000000000000000000000000000",
            "is the template's placeholder: set it to the poolcheck commit",
        ),
    ] {
        let out = Command::new("bash")
            .current_dir(dir.path())
            .env_remove("POOLCHECK_BIN")
            .env_remove("POOLCHECK_SRC")
            .env("POOLCHECK_GIT", url)
            .env("POOLCHECK_REV", rev)
            .env("POOLCHECK_CACHE", dir.path().join("cache"))
            .args(["ci/gate.sh", "--quick"])
            .output()
            .expect("bash runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(
            !dir.path().join("cache").exists(),
            "it tried to install: {err}"
        );
    }
}

/// (tests, failures) of a JUnit document's `<testsuites>`.
fn junit_counts(xml: &str) -> (u32, u32) {
    let doc = roxmltree::Document::parse(xml).expect("JUnit is well-formed XML");
    let root = doc.root_element();
    let n = |a: &str| root.attribute(a).unwrap_or("0").parse().unwrap();
    (n("tests"), n("failures"))
}

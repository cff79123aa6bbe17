//! Test support shared by unit tests.

/// Forking from libtest's multi-threaded runner can leave a child blocked on a lock another
/// thread held at the fork. A test that forks calls this first: in the runner it re-runs itself
/// alone in a fresh test process with one test thread (where forking is safe), asserts that
/// run passed, and returns false; in that fresh process it returns true and the test goes on.
pub fn in_single_threaded_process(test: &str) -> bool {
    const MARK: &str = "POOLCHECK_SINGLE_THREADED_TEST";
    if std::env::var_os(MARK).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(MARK, "1")
        .output()
        .expect("the test binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{test} did not run in its own process:\n{text}"
    );
    false
}

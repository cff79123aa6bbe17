//! Bad input gets exit code 2 and a message naming the file, the problem and what to do; the
//! user's file is never modified; an unparsable store gets a quarantine copy.

use std::path::Path;
use std::process::{Command, Output};

fn run_store(store: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args([
            "run",
            "--scenario",
            "refresh-race",
            "--strategy",
            "flock-txn",
            "--quick",
            "--store",
        ])
        .arg(store)
        .output()
        .expect("poolcheck runs")
}

const VALID: &str = r#"{"version": 1, "updated_at": null, "active_provider": "anthropic",
  "providers": {"anthropic": {"access_token": "user-secret-access-0123456789abcdefghijklmnop",
                              "refresh_token": "user-secret-refresh-0123456789abcdefghijklmn",
                              "last_refresh": null}},
  "credential_pool": {"anthropic": [
    {"id": "a1b2c3", "label": "work", "auth_type": "oauth", "priority": 0, "source": "device_code",
     "access_token": "user-secret-access-0123456789abcdefghijklmnop",
     "refresh_token": "user-secret-refresh-0123456789abcdefghijklmn", "expires_at_ms": 1,
     "request_count": 7, "last_status": null, "last_status_at": null, "last_error_code": null,
     "last_error_reason": null, "last_error_message": null, "last_error_reset_at": null,
     "base_url": "https://example.invalid"},
    {"id": "d4e5f6", "label": "spare", "auth_type": "api_key", "priority": 1, "source": "manual",
     "access_token": "sk-user-secret-key-0123456789abcdefghijklmnopq", "refresh_token": null,
     "expires_at_ms": null, "request_count": 0, "last_status": "exhausted",
     "last_status_at": 1, "last_error_code": 429, "last_error_reason": "rate_limited",
     "last_error_message": null, "last_error_reset_at": null}]},
  "suppressed_sources": {}, "another_tool": {"keep": true}}"#;

#[test]
fn a_run_from_a_users_store_keeps_its_shape_never_writes_it_and_never_shows_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("auth.json");
    std::fs::write(&store, VALID).unwrap();
    let out = run_store(&store);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        std::fs::read_to_string(&store).unwrap(),
        VALID,
        "the original is untouched"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing was added beside it"
    );
    assert!(!text.contains("user-secret"), "{text}");
    // The run really used the store's shape: its OAuth entry is the one that refreshes.
    let keep = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args([
            "run",
            "--scenario",
            "refresh-race",
            "--strategy",
            "none",
            "--quick",
            "--store",
        ])
        .arg(&store)
        .arg("--keep")
        .arg(&keep)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["runs"][0]["anomalies"]["double_redeem"]
            .as_u64()
            .unwrap()
            > 0
    );
    let final_store = std::fs::read_to_string(keep.join("auth.json")).unwrap();
    assert!(!final_store.contains("user-secret"));
    let v: serde_json::Value = serde_json::from_str(&final_store).unwrap();
    assert_eq!(v["another_tool"]["keep"], true);
    let entries = v["credential_pool"]["anthropic"].as_array().unwrap();
    assert_eq!(entries[0]["id"], "a1b2c3");
    assert_eq!(entries[0]["base_url"], "https://example.invalid");
    assert_eq!(entries[1]["id"], "d4e5f6");
}

fn refused(store: &Path, wants: &[&str]) -> String {
    let before = std::fs::symlink_metadata(store)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| std::fs::read(store).unwrap());
    let out = run_store(store);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}: {err}", store.display());
    assert!(
        err.contains(&store.display().to_string()),
        "names the file: {err}"
    );
    for w in wants {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
    if let Some(b) = before {
        assert_eq!(
            std::fs::read(store).unwrap(),
            b,
            "the original is untouched"
        );
    }
    err
}

/// For stores that do not parse: the error names a quarantine copy holding the same bytes.
fn quarantined(err: &str, bytes: &[u8]) {
    let at = err
        .find("a copy is kept at ")
        .expect("names the quarantine copy")
        + "a copy is kept at ".len();
    let path = err[at..].split(')').next().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn each_kind_of_broken_store_is_refused_clearly_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "is empty"),
        (
            "truncated",
            VALID.as_bytes()[..VALID.len() / 2].to_vec(),
            "is truncated",
        ),
        (
            "not-utf8",
            b"{\"version\": 1, \"x\": \"\xff\xfe\"}".to_vec(),
            "is not UTF-8",
        ),
        ("not-json", b"version = 1\n".to_vec(), "is not valid JSON"),
        (
            "wrong-types",
            br#"{"version": "one"}"#.to_vec(),
            "is JSON but not a credential store",
        ),
        (
            // Fields upstream defaults (label, auth_type, priority, source) may be absent; an
            // entry without an id is not a pool entry.
            "entry-without-id",
            br#"{"version": 1, "credential_pool": {"anthropic": [{"label": "x"}]}}"#.to_vec(),
            "an entry has no `id`",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = dir.path().join(format!("{name}.json"));
        std::fs::write(&p, &bytes).unwrap();
        let err = refused(
            &p,
            &[want, "the original was not modified", "fix or restore it"],
        );
        quarantined(&err, &bytes);
    }
}

#[test]
fn stores_that_are_not_what_they_seem_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let future = dir.path().join("future.json");
    std::fs::write(
        &future,
        VALID.replacen("\"version\": 1", "\"version\": 2", 1),
    )
    .unwrap();
    refused(&future, &["store version 2", "use a newer poolcheck"]);

    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    refused(&big, &["100 MB", "is it the right file"]);

    let real = dir.path().join("real.json");
    std::fs::write(&real, VALID).unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    refused(&link, &["symbolic link", "pass the file it points to"]);

    let sub = dir.path().join("profile");
    std::fs::create_dir(&sub).unwrap();
    refused(
        &sub,
        &["is a directory", "pass the auth.json file inside it"],
    );

    refused(&dir.path().join("absent.json"), &["no such file"]);

    let other = dir.path().join("other-provider.json");
    std::fs::write(&other, VALID.replace("\"anthropic\": [", "\"openai\": [")).unwrap();
    refused(
        &other,
        &[
            "no credential_pool entries for provider 'anthropic'",
            "openai",
        ],
    );
}

#[test]
fn a_store_in_a_read_only_directory_runs_and_nothing_is_written_there() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let store = ro.join("auth.json");
    std::fs::write(&store, VALID).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = run_store(&store);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(&store).unwrap(), VALID);
}

/// `--keep DIR` on a directory that already holds a run is refused: its logs would be judged
/// with the new run's (two runs' histories as one: false lost updates), and its files
/// overwritten. The earlier run is left as it was.
#[test]
fn keeping_a_run_in_a_directory_that_holds_another_is_refused_and_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("run");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_poolcheck"))
            .args([
                "run",
                "-q",
                "--scenario",
                "lost-update",
                "--strategy",
                "flock-txn",
            ])
            .args(["--format", "json", "--keep", keep.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(0));
    let store = std::fs::read(keep.join("auth.json")).unwrap();
    let p0 = std::fs::read(keep.join("logs/p0.jsonl")).unwrap();
    let again = run();
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(keep.to_str().unwrap()) && err.contains("not empty"),
        "{err}"
    );
    assert_eq!(std::fs::read(keep.join("auth.json")).unwrap(), store);
    assert_eq!(std::fs::read(keep.join("logs/p0.jsonl")).unwrap(), p0);
}

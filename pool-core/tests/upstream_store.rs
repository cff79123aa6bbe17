//! Stores shaped as upstream writes them (fixtures/README.md): each parses, keeps what this
//! model does not know, writes times back as upstream does (float epoch seconds), and reads
//! back to itself. Stores written by earlier poolcheck versions (integer ms) still read.

use pool_core::store::{parse_iso8601_ms, Entry, Status, Store};
use serde_json::Value;

const V39: &str = include_str!("fixtures/upstream-39cd5708.json");
const V88: &str = include_str!("fixtures/upstream-88d1d620.json");
const OLD: &str = include_str!("fixtures/poolcheck-0.1.json");

fn parse(text: &str) -> Store {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("does not parse: {e}"))
}

/// Write, read back, write again: the same store and the same bytes.
fn round_trip(s: &Store) -> Value {
    let bytes = s.to_bytes();
    let back: Store = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&back, s);
    assert_eq!(back.to_bytes(), bytes);
    serde_json::from_slice(&bytes).unwrap()
}

fn entry<'a>(s: &'a Store, provider: &str, id: &str) -> &'a Entry {
    s.entries(provider).iter().find(|e| e.id == id).unwrap()
}

#[test]
fn a_store_as_upstream_wrote_it_at_39cd5708_round_trips() {
    let s = parse(V39);
    let a = entry(&s, "openai-codex", "3fa2c1");
    assert_eq!(a.last_status, Some(Status::Exhausted));
    assert_eq!(a.last_status_at, Some(1_775_898_902_319));
    assert_eq!(a.last_error_reset_at, Some(1_775_902_502_500));
    assert_eq!(a.request_count, 17);
    let v = round_trip(&s);
    let a = &v["credential_pool"]["openai-codex"][0];
    // Float epoch seconds, as upstream writes them (kept to the millisecond).
    assert_eq!(a["last_status_at"], serde_json::json!(1_775_898_902.319));
    assert_eq!(a["last_error_reset_at"], serde_json::json!(1_775_902_502.5));
    assert_eq!(a["base_url"], "https://chatgpt.com/backend-api/codex");
    assert_eq!(a["last_refresh"], "2026-04-11T09:00:00.000000Z");
    assert_eq!(
        v["providers"]["openai-codex"]["tokens"]["refresh_token"],
        "rt_codex_provider_record"
    );
    assert_eq!(v["providers"]["openai-codex"]["auth_mode"], "chatgpt");
    assert_eq!(v["credential_pool"]["anthropic"][0]["id"], "c0ffee");
}

#[test]
fn a_store_as_upstream_wrote_it_at_88d1d620_round_trips_with_reset_times_normalised() {
    let s = parse(V88);
    let a = entry(&s, "anthropic", "a1b2c3");
    // A provider reset time left as epoch ms is read as such.
    assert_eq!(a.last_error_reset_at, Some(1_783_017_600_000));
    assert_eq!(a.last_status_at, Some(1_783_017_000_250));
    let b = entry(&s, "anthropic", "d4e5f6");
    // ISO-8601 times, with an offset or `Z`.
    assert_eq!(b.last_status_at, Some(1_783_017_000_000));
    assert_eq!(b.last_error_reset_at, Some(1_783_020_600_000));
    assert_eq!(
        entry(&s, "anthropic", "0a0b0c").last_status,
        Some(Status::Dead)
    );
    let v = round_trip(&s);
    let a = &v["credential_pool"]["anthropic"][0];
    assert_eq!(a["last_error_reset_at"], serde_json::json!(1_783_017_600.0));
    assert_eq!(a["failure_reason"], "rate_limit");
    let b = &v["credential_pool"]["anthropic"][1];
    assert_eq!(b["last_status_at"], serde_json::json!(1_783_017_000.0));
    assert_eq!(
        v["suppressed_sources"]["anthropic"][0],
        "env:ANTHROPIC_API_KEY"
    );
    assert_eq!(
        v["providers"]["anthropic"]["expires_at_ms"],
        1_783_017_611_000u64
    );
}

#[test]
fn a_store_written_by_an_earlier_poolcheck_still_reads() {
    let s = parse(OLD);
    let a = entry(&s, "anthropic", "abc123");
    assert_eq!(a.last_status_at, Some(1_795_867_200_123));
    assert_eq!(a.last_error_reset_at, Some(1_795_870_800_123));
    assert_eq!(a.cooldown_until(0), Some(1_795_870_800_123));
    round_trip(&s);
}

/// A known field in a shape the model does not use is carried, not fatal; once the pool sets
/// the field itself, its own value is written.
#[test]
fn unknown_shapes_of_known_fields_are_carried() {
    let text = r#"{"version":1,"credential_pool":{"p":[{"id":"a1b2c3","label":7,
        "auth_type":"bearer","priority":"high","source":"manual","access_token":"k",
        "request_count":3.0,"last_status":"frozen","last_status_at":{"t":1},
        "last_error_code":"E429","last_error_reason":null,"last_error_message":null,
        "last_error_reset_at":"soon"}]}}"#;
    let s = parse(text);
    let e = &s.entries("p")[0];
    assert_eq!(
        (e.last_status, e.last_status_at, e.last_error_code),
        (None, None, None)
    );
    assert_eq!(e.request_count, 3);
    let v = round_trip(&s);
    let w = &v["credential_pool"]["p"][0];
    for (k, want) in [
        ("label", serde_json::json!(7)),
        ("auth_type", serde_json::json!("bearer")),
        ("priority", serde_json::json!("high")),
        ("last_status", serde_json::json!("frozen")),
        ("last_status_at", serde_json::json!({"t": 1})),
        ("last_error_code", serde_json::json!("E429")),
        ("last_error_reset_at", serde_json::json!("soon")),
    ] {
        assert_eq!(w[k], want, "{k}");
    }
    let mut s2 = s.clone();
    let e = &mut s2.entries_mut("p")[0];
    e.clear_status();
    e.last_status = Some(Status::Exhausted);
    e.last_status_at = Some(1_000);
    let v = round_trip(&s2);
    let w = &v["credential_pool"]["p"][0];
    assert_eq!(w["last_status"], "exhausted");
    assert_eq!(w["last_status_at"], serde_json::json!(1.0));
    assert_eq!(w["last_error_reset_at"], Value::Null);
}

#[test]
fn bytes_that_are_not_a_credential_store_still_fail() {
    for bad in [
        "not json",
        "[]",
        r#"{"credential_pool":{}}"#,
        r#"{"version":1,"credential_pool":{"p":[{"label":"no id"}]}}"#,
        r#"{"version":1,"credential_pool":{"p":[{"id":5}]}}"#,
        r#"{"version":1,"credential_pool":{"p":{"id":"a"}}}"#,
    ] {
        assert!(serde_json::from_str::<Store>(bad).is_err(), "{bad}");
    }
}

#[test]
fn iso8601_times_as_python_writes_them() {
    assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_iso8601_ms("2026-11-28T12:00:00.123Z"),
        Some(1_795_867_200_123)
    );
    assert_eq!(
        parse_iso8601_ms("2026-11-28T12:00:00.123456"),
        Some(1_795_867_200_123)
    );
    assert_eq!(
        parse_iso8601_ms("2026-11-28 13:00:00+01:00"),
        Some(1_795_867_200_000)
    );
    assert_eq!(
        parse_iso8601_ms("2026-11-28T11:30-00:30"),
        Some(1_795_867_200_000)
    );
    for bad in [
        "",
        "2026-13-01T00:00:00Z",
        "2026-11-28",
        "soon",
        "2026-11-28T12:00:00+0100",
    ] {
        assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
    }
}

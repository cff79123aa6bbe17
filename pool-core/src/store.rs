//! The on-disk store schema (`auth.json`), as the upstream pool writes it.
//!
//! Guarantees: every field the upstream pool writes is typed here; fields this model does not
//! know (the store belongs to other tools too) are kept in `extra` maps and written back
//! unchanged, so a load/save round trip preserves them. The six status fields of an entry are
//! written even when null, as upstream does. Times are Unix milliseconds.
//!
//! Not guaranteed: key order of maps other than entries' own fields (maps are sorted).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The store format version this model reads and writes.
pub const STORE_VERSION: u64 = 1;

/// The whole `auth.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub version: u64,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub active_provider: Option<String>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderRecord>,
    #[serde(default)]
    pub credential_pool: BTreeMap<String, Vec<Entry>>,
    #[serde(default)]
    pub suppressed_sources: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            version: STORE_VERSION,
            updated_at: None,
            active_provider: None,
            providers: BTreeMap::new(),
            credential_pool: BTreeMap::new(),
            suppressed_sources: Value::Object(Map::new()),
            extra: Map::new(),
        }
    }
}

impl Store {
    /// The ordered entries of `provider` (empty if none).
    pub fn entries(&self, provider: &str) -> &[Entry] {
        self.credential_pool
            .get(provider)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Mutable entries of `provider`, creating the list if absent.
    pub fn entries_mut(&mut self, provider: &str) -> &mut Vec<Entry> {
        self.credential_pool
            .entry(provider.to_string())
            .or_default()
    }

    /// Serialize as upstream does: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a Store always serializes");
        v.push(b'\n');
        v
    }
}

/// The per-provider OAuth record (`providers.<id>`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ProviderRecord {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub last_refresh: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Oauth,
    ApiKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Exhausted,
    Dead,
}

/// One credential in a provider's pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub label: String,
    pub auth_type: AuthType,
    pub priority: i64,
    pub source: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    #[serde(default)]
    pub request_count: u64,
    #[serde(default)]
    pub last_status: Option<Status>,
    #[serde(default)]
    pub last_status_at: Option<u64>,
    #[serde(default)]
    pub last_error_code: Option<u16>,
    #[serde(default)]
    pub last_error_reason: Option<String>,
    #[serde(default)]
    pub last_error_message: Option<String>,
    #[serde(default)]
    pub last_error_reset_at: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Entry {
    /// A fresh entry with every status field null.
    pub fn new(id: &str, label: &str, auth_type: AuthType, source: &str) -> Entry {
        Entry {
            id: id.to_string(),
            label: label.to_string(),
            auth_type,
            priority: 0,
            source: source.to_string(),
            access_token: None,
            refresh_token: None,
            expires_at_ms: None,
            request_count: 0,
            last_status: None,
            last_status_at: None,
            last_error_code: None,
            last_error_reason: None,
            last_error_message: None,
            last_error_reset_at: None,
            extra: Map::new(),
        }
    }

    pub fn is_exhausted(&self) -> bool {
        self.last_status == Some(Status::Exhausted)
    }

    /// When the cooldown of an exhausted entry ends: `last_error_reset_at`, else
    /// `last_status_at` plus `default_cooldown_ms`.
    pub fn cooldown_until(&self, default_cooldown_ms: u64) -> Option<u64> {
        if !self.is_exhausted() {
            return None;
        }
        self.last_error_reset_at.or(self
            .last_status_at
            .map(|t| t.saturating_add(default_cooldown_ms)))
    }

    /// Clear the six status fields.
    pub fn clear_status(&mut self) {
        self.last_status = None;
        self.last_status_at = None;
        self.last_error_code = None;
        self.last_error_reason = None;
        self.last_error_message = None;
        self.last_error_reset_at = None;
    }

    /// Copy the six status fields from `other`.
    pub fn copy_status_from(&mut self, other: &Entry) {
        self.last_status = other.last_status;
        self.last_status_at = other.last_status_at;
        self.last_error_code = other.last_error_code;
        self.last_error_reason = other.last_error_reason.clone();
        self.last_error_message = other.last_error_message.clone();
        self.last_error_reset_at = other.last_error_reset_at;
    }
}

/// Format Unix milliseconds as an RFC 3339 UTC timestamp (`updated_at`, `last_refresh`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant), valid for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"version":1,"updated_at":null,"active_provider":"anthropic",
            "providers":{"anthropic":{"access_token":"a","refresh_token":"r","last_refresh":null,"scope":"x"}},
            "credential_pool":{"anthropic":[{"id":"a1b2c3","label":"A","auth_type":"oauth","priority":0,
              "source":"manual","access_token":"a","refresh_token":"r","expires_at_ms":5,"request_count":2,
              "last_status":null,"last_status_at":null,"last_error_code":null,"last_error_reason":null,
              "last_error_message":null,"last_error_reset_at":null,"base_url":"https://x","weight":3}]},
            "suppressed_sources":{},"other_tool":{"keep":[1,2]}}"#;
        let s: Store = serde_json::from_str(text).unwrap();
        let back: Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(back["other_tool"]["keep"][1], 2);
        assert_eq!(back["providers"]["anthropic"]["scope"], "x");
        let e = &back["credential_pool"]["anthropic"][0];
        assert_eq!(e["base_url"], "https://x");
        assert_eq!(e["weight"], 3);
        // The six status fields are written even when null.
        for f in [
            "last_status",
            "last_status_at",
            "last_error_code",
            "last_error_reason",
            "last_error_message",
            "last_error_reset_at",
        ] {
            assert!(e.as_object().unwrap().contains_key(f), "{f} missing");
        }
    }

    /// The pool trusts this when it reads back bytes it wrote (it keeps the store it serialized
    /// instead of parsing them again): a store parses back to itself, extras, statuses and all.
    #[test]
    fn a_store_parses_back_to_the_store_it_was_serialized_from() {
        let text = r#"{"version":1,"updated_at":"x","active_provider":"anthropic",
            "providers":{"anthropic":{"access_token":"a","refresh_token":"r","last_refresh":null,"scope":"x"}},
            "credential_pool":{"anthropic":[{"id":"a1b2c3","label":"A\u00e9\n","auth_type":"oauth","priority":-1,
              "source":"env:X","access_token":"a","refresh_token":"r","expires_at_ms":18446744073709551615,"request_count":2,
              "last_status":"exhausted","last_status_at":7,"last_error_code":429,"last_error_reason":"rate",
              "last_error_message":"m","last_error_reset_at":null,"base_url":"https://x","weight":3.25,"z":{"b":1,"a":[true,null]}}],
              "openai":[]},
            "suppressed_sources":{"b":1,"a":2},"other_tool":{"keep":[1,2.5e-7]}}"#;
        let s: Store = serde_json::from_str(text).unwrap();
        let mut s2 = s.clone();
        s2.entries_mut("anthropic")
            .push(Entry::new("d4e5f6", "B", AuthType::ApiKey, "manual"));
        for store in [s, s2, Store::default()] {
            let back: Store = serde_json::from_slice(&store.to_bytes()).unwrap();
            assert_eq!(back, store);
            assert_eq!(back.to_bytes(), store.to_bytes());
        }
    }

    #[test]
    fn cooldown_prefers_reset_at() {
        let mut e = Entry::new("a", "A", AuthType::ApiKey, "manual");
        assert_eq!(e.cooldown_until(10), None);
        e.last_status = Some(Status::Exhausted);
        e.last_status_at = Some(100);
        assert_eq!(e.cooldown_until(10), Some(110));
        e.last_error_reset_at = Some(500);
        assert_eq!(e.cooldown_until(10), Some(500));
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_867_200_123), "2026-11-28T12:00:00.123Z");
    }
}

//! The on-disk store schema (`auth.json`), as the upstream pool writes it.
//!
//! Guarantees:
//! - Every field the upstream pool writes is typed here; fields this model does not know (the
//!   store belongs to other tools too) are kept in `extra` maps and written back unchanged, so
//!   a load/save round trip preserves them.
//! - A known field whose value has a shape this model does not use (a string `priority`, an
//!   unknown `last_status`, a numeric `updated_at`, a `providers` that is not a map) is not an
//!   error: the typed field reads as unset and the value is
//!   carried in `extra` under its own name and written back in place of the unset field, until
//!   the pool sets that field itself. Only bytes that are not a credential store at all (not
//!   JSON, no `version`, an entry without a string `id`, a pool that is not a map of lists)
//!   fail to parse.
//! - The six status fields of an entry are written even when null, as upstream does.
//! - Times are Unix milliseconds in memory. `last_status_at` and `last_error_reset_at` are
//!   written as float epoch seconds (upstream's `time.time()`), and read from float or integer
//!   epoch seconds, epoch milliseconds (any number above 10^12, upstream's own rule for
//!   provider reset times, and what earlier poolcheck versions wrote), numeric strings and
//!   ISO-8601 strings. `expires_at_ms` stays integer milliseconds, as its name says.
//!
//! Not guaranteed: key order of maps other than entries' own fields (maps are sorted); a
//! carried value moves to the end of its entry.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The store format version this model reads and writes.
pub const STORE_VERSION: u64 = 1;

/// The whole `auth.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    pub version: u64,
    pub updated_at: Option<String>,
    pub active_provider: Option<String>,
    pub providers: BTreeMap<String, ProviderRecord>,
    pub credential_pool: BTreeMap<String, Vec<Entry>>,
    pub suppressed_sources: Value,
    /// Every other field, and known fields of an unused shape (see the module docs): a
    /// numeric `updated_at`, a `providers` that is not a map of maps.
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Store {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        let version = match m.shift_remove("version") {
            Some(v) => u64::deserialize(&v).map_err(D::Error::custom)?,
            None => return Err(D::Error::missing_field("version")),
        };
        let mut carried = Map::new();
        let updated_at = take(&mut m, &mut carried, "updated_at");
        let active_provider = take(&mut m, &mut carried, "active_provider");
        let providers = take(&mut m, &mut carried, "providers").unwrap_or_default();
        // Not a map of lists of entries: not a credential store (the module docs).
        let credential_pool = match m.shift_remove("credential_pool") {
            None => BTreeMap::new(),
            Some(v) => BTreeMap::deserialize(&v).map_err(D::Error::custom)?,
        };
        let suppressed_sources = m.shift_remove("suppressed_sources").unwrap_or(Value::Null);
        m.extend(carried);
        Ok(Store {
            version,
            updated_at,
            active_provider,
            providers,
            credential_pool,
            suppressed_sources,
            extra: m,
        })
    }
}

impl Serialize for Store {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut skip = Vec::new();
        m.serialize_entry("version", &self.version)?;
        let x = &self.extra;
        emit(&mut m, x, &mut skip, "updated_at", &self.updated_at, true)?;
        emit(
            &mut m,
            x,
            &mut skip,
            "active_provider",
            &self.active_provider,
            true,
        )?;
        // A carried `providers` stands until the pool records a provider itself.
        let providers =
            (!x.contains_key("providers") || !self.providers.is_empty()).then_some(&self.providers);
        emit(&mut m, x, &mut skip, "providers", &providers, true)?;
        m.serialize_entry("credential_pool", &self.credential_pool)?;
        m.serialize_entry("suppressed_sources", &self.suppressed_sources)?;
        emit_rest(&mut m, x, &skip)?;
        m.end()
    }
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
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ProviderRecord {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub last_refresh: Option<String>,
    /// Every other field, and known fields of an unused shape (see the module docs).
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for ProviderRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        let mut carried = Map::new();
        let access_token = take(&mut m, &mut carried, "access_token");
        let refresh_token = take(&mut m, &mut carried, "refresh_token");
        let last_refresh = take(&mut m, &mut carried, "last_refresh");
        m.extend(carried);
        Ok(ProviderRecord {
            access_token,
            refresh_token,
            last_refresh,
            extra: m,
        })
    }
}

impl Serialize for ProviderRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut skip = Vec::new();
        emit(
            &mut m,
            &self.extra,
            &mut skip,
            "access_token",
            &self.access_token,
            true,
        )?;
        emit(
            &mut m,
            &self.extra,
            &mut skip,
            "refresh_token",
            &self.refresh_token,
            true,
        )?;
        emit(
            &mut m,
            &self.extra,
            &mut skip,
            "last_refresh",
            &self.last_refresh,
            true,
        )?;
        emit_rest(&mut m, &self.extra, &skip)?;
        m.end()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Oauth,
    ApiKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Exhausted,
    Dead,
}

/// The six status fields, written even when null.
pub const STATUS_FIELDS: [&str; 6] = [
    "last_status",
    "last_status_at",
    "last_error_code",
    "last_error_reason",
    "last_error_message",
    "last_error_reset_at",
];

/// One credential in a provider's pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: String,
    pub label: String,
    pub auth_type: AuthType,
    pub priority: i64,
    pub source: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at_ms: Option<u64>,
    pub request_count: u64,
    pub last_status: Option<Status>,
    /// Unix ms (float epoch seconds on disk).
    pub last_status_at: Option<u64>,
    pub last_error_code: Option<u16>,
    pub last_error_reason: Option<String>,
    pub last_error_message: Option<String>,
    /// Unix ms (float epoch seconds on disk).
    pub last_error_reset_at: Option<u64>,
    /// Every other field, and known fields of an unused shape (see the module docs).
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        let mut c = Map::new();
        let id = match m.shift_remove("id") {
            Some(Value::String(id)) => id,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "an entry's `id` must be a string, not {other}"
                )))
            }
            None => return Err(D::Error::custom("an entry has no `id`")),
        };
        let source: String = take(&mut m, &mut c, "source").unwrap_or_else(|| "manual".to_string());
        let e = Entry {
            label: take(&mut m, &mut c, "label").unwrap_or_else(|| source.clone()),
            // Upstream's default, too.
            auth_type: take(&mut m, &mut c, "auth_type").unwrap_or(AuthType::ApiKey),
            priority: take_int(&mut m, &mut c, "priority").unwrap_or(0),
            access_token: take(&mut m, &mut c, "access_token"),
            refresh_token: take(&mut m, &mut c, "refresh_token"),
            expires_at_ms: take_int(&mut m, &mut c, "expires_at_ms"),
            request_count: take_int(&mut m, &mut c, "request_count").unwrap_or(0),
            last_status: take(&mut m, &mut c, "last_status"),
            last_status_at: take_time(&mut m, &mut c, "last_status_at"),
            last_error_code: take_int(&mut m, &mut c, "last_error_code"),
            last_error_reason: take(&mut m, &mut c, "last_error_reason"),
            last_error_message: take(&mut m, &mut c, "last_error_message"),
            last_error_reset_at: take_time(&mut m, &mut c, "last_error_reset_at"),
            id,
            source,
            extra: m,
        };
        let mut e = e;
        e.extra.extend(c);
        Ok(e)
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let x = &self.extra;
        let mut skip = Vec::new();
        m.serialize_entry("id", &self.id)?;
        emit_kept(&mut m, x, &mut skip, "label", &self.label)?;
        emit_kept(&mut m, x, &mut skip, "auth_type", &self.auth_type)?;
        emit_kept(&mut m, x, &mut skip, "priority", &self.priority)?;
        emit_kept(&mut m, x, &mut skip, "source", &self.source)?;
        emit(
            &mut m,
            x,
            &mut skip,
            "access_token",
            &self.access_token,
            true,
        )?;
        emit(
            &mut m,
            x,
            &mut skip,
            "refresh_token",
            &self.refresh_token,
            true,
        )?;
        emit(
            &mut m,
            x,
            &mut skip,
            "expires_at_ms",
            &self.expires_at_ms,
            true,
        )?;
        emit_kept(&mut m, x, &mut skip, "request_count", &self.request_count)?;
        emit(&mut m, x, &mut skip, "last_status", &self.last_status, true)?;
        let at = self.last_status_at.map(epoch_seconds);
        emit(&mut m, x, &mut skip, "last_status_at", &at, true)?;
        emit(
            &mut m,
            x,
            &mut skip,
            "last_error_code",
            &self.last_error_code,
            true,
        )?;
        emit(
            &mut m,
            x,
            &mut skip,
            "last_error_reason",
            &self.last_error_reason,
            true,
        )?;
        emit(
            &mut m,
            x,
            &mut skip,
            "last_error_message",
            &self.last_error_message,
            true,
        )?;
        let reset = self.last_error_reset_at.map(epoch_seconds);
        emit(&mut m, x, &mut skip, "last_error_reset_at", &reset, true)?;
        emit_rest(&mut m, x, &skip)?;
        m.end()
    }
}

/// Remove `key` from `m` as a `T`: absent or null is `None`; a value of another shape is
/// moved to `carried` (written back as it was) and reads as `None`.
fn take<T: DeserializeOwned>(
    m: &mut Map<String, Value>,
    carried: &mut Map<String, Value>,
    key: &str,
) -> Option<T> {
    match m.shift_remove(key)? {
        Value::Null => None,
        v => match T::deserialize(&v) {
            Ok(t) => Some(t),
            Err(_) => {
                carried.insert(key.to_string(), v);
                None
            }
        },
    }
}

/// [`take`] for integers, which upstream (Python) may also write as integral floats.
fn take_int<T: TryFrom<i64> + DeserializeOwned>(
    m: &mut Map<String, Value>,
    carried: &mut Map<String, Value>,
    key: &str,
) -> Option<T> {
    if let Some(f) = m
        .get(key)
        .and_then(|v| v.as_f64())
        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
    {
        if let Ok(t) = T::try_from(f as i64) {
            m.shift_remove(key);
            return Some(t);
        }
    }
    take(m, carried, key)
}

/// [`take`] for a time field (see the module docs for the shapes read).
fn take_time(
    m: &mut Map<String, Value>,
    carried: &mut Map<String, Value>,
    key: &str,
) -> Option<u64> {
    let v = m.shift_remove(key)?;
    if v.is_null() {
        return None;
    }
    let ms = time_ms(&v);
    if ms.is_none() {
        carried.insert(key.to_string(), v);
    }
    ms
}

/// Unix ms of a time value in any shape upstream reads (see the module docs).
pub fn time_ms(v: &Value) -> Option<u64> {
    let number = |x: f64| -> Option<u64> {
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        // Upstream's own rule: a number above 10^12 is epoch milliseconds.
        let ms = if x > 1e12 { x } else { x * 1000.0 };
        (ms < 1.8e19).then(|| ms.round() as u64)
    };
    match v {
        Value::Number(n) => number(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(x) => number(x),
                Err(_) => parse_iso8601_ms(s),
            }
        }
        _ => None,
    }
}

/// Unix ms as float epoch seconds, as upstream writes times.
fn epoch_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Emit an optional known field: its typed value when set (a carried value of another shape
/// is then out of date: skipped, so the key is written once); else a carried value if there
/// is one (marked in `skip`); else null when `always`.
fn emit<M: SerializeMap, T: Serialize>(
    m: &mut M,
    extra: &Map<String, Value>,
    skip: &mut Vec<&'static str>,
    key: &'static str,
    v: &Option<T>,
    always: bool,
) -> Result<(), M::Error> {
    match (v, extra.get(key)) {
        (Some(v), carried) => {
            if carried.is_some() {
                skip.push(key);
            }
            m.serialize_entry(key, v)
        }
        (None, Some(c)) => {
            skip.push(key);
            m.serialize_entry(key, c)
        }
        (None, None) if always => m.serialize_entry(key, &Value::Null),
        (None, None) => Ok(()),
    }
}

/// Emit a required known field: a carried value of another shape wins (the typed value is
/// then only the default it was read as), else the typed value.
fn emit_kept<M: SerializeMap, T: Serialize>(
    m: &mut M,
    extra: &Map<String, Value>,
    skip: &mut Vec<&'static str>,
    key: &'static str,
    v: &T,
) -> Result<(), M::Error> {
    match extra.get(key) {
        Some(c) => {
            skip.push(key);
            m.serialize_entry(key, c)
        }
        None => m.serialize_entry(key, v),
    }
}

fn emit_rest<M: SerializeMap>(
    m: &mut M,
    extra: &Map<String, Value>,
    skip: &[&'static str],
) -> Result<(), M::Error> {
    for (k, v) in extra {
        if !skip.contains(&k.as_str()) {
            m.serialize_entry(k, v)?;
        }
    }
    Ok(())
}

/// Unix ms of an ISO-8601 date-time as Python's `datetime.fromisoformat` writes it:
/// `YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|-HH:MM]` (no offset: UTC).
pub fn parse_iso8601_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 16
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
    );
    let mut i = 16;
    let mut sec = 0i64;
    let mut frac_ms = 0f64;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1..i + 3)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            frac_ms = format!("0.{}", s.get(start..i)?).parse::<f64>().ok()? * 1000.0;
        }
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if c == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    let ms = secs as f64 * 1000.0 + frac_ms;
    (ms >= 0.0).then(|| ms.round() as u64)
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
        for f in STATUS_FIELDS {
            self.extra.shift_remove(f);
        }
        self.last_status = None;
        self.last_status_at = None;
        self.last_error_code = None;
        self.last_error_reason = None;
        self.last_error_message = None;
        self.last_error_reset_at = None;
    }

    /// Copy the six status fields from `other`.
    pub fn copy_status_from(&mut self, other: &Entry) {
        for f in STATUS_FIELDS {
            match other.extra.get(f) {
                Some(v) => self.extra.insert(f.to_string(), v.clone()),
                None => self.extra.shift_remove(f),
            };
        }
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

    /// A store other tools wrote with top-level fields of shapes this model does not use (a
    /// numeric `updated_at`, a `providers` list) is still a credential store: it parses, its
    /// entries are read, and those values are written back in place, once each.
    #[test]
    fn top_level_fields_of_another_shape_are_carried_not_fatal() {
        let text = r#"{"version":1,"updated_at":1796611487.959,"active_provider":7,
            "providers":["x"],"credential_pool":{"anthropic":[{"id":"a1b2c3","label":"A",
              "auth_type":"api_key","priority":0,"source":"manual","access_token":"k"}]}}"#;
        let s: Store = serde_json::from_str(text).unwrap();
        assert_eq!(s.entries("anthropic")[0].id, "a1b2c3");
        assert_eq!(
            (s.updated_at.as_deref(), s.active_provider.as_deref()),
            (None, None)
        );
        let back: Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(back["updated_at"], 1796611487.959);
        assert_eq!(back["active_provider"], 7);
        assert_eq!(back["providers"][0], "x");
        let again: Store = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(again, s);
        // Once the pool stamps the store itself, its value replaces the carried one, once.
        let mut s = s;
        s.updated_at = Some("2026-12-07T00:00:00Z".into());
        let bytes = s.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches("\"updated_at\"").count(), 1, "{text}");
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back["updated_at"], "2026-12-07T00:00:00Z");
        // Not a credential store: no version, or a pool that is not a map of lists.
        assert!(serde_json::from_str::<Store>(r#"{"credential_pool":{}}"#).is_err());
        assert!(serde_json::from_str::<Store>(r#"{"version":1,"credential_pool":[1]}"#).is_err());
        assert!(serde_json::from_str::<Store>(r#"{"version":1,"credential_pool":null}"#).is_err());
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

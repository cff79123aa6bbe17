//! External credential files written by other CLIs that share a token family with the pool:
//! Claude Code's `~/.claude/.credentials.json` and the Codex CLI's `~/.codex/auth.json`.
//!
//! Reading extracts the token pair; writing replaces only the token fields and keeps every
//! other field the owning tool put there.
//!
//! Which pool syncs from which file follows upstream: the Codex file serves the
//! `openai-codex` pool, where every OAuth entry with a refresh token re-syncs from it
//! (`_sync_codex_entry_from_cli`), and the Claude Code file serves the `anthropic` pool, where
//! only `claude_code` entries do. No other pool reads either file.

use serde_json::{json, Value};

/// The layout of an external credential file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalFormat {
    /// `{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt"}}`
    ClaudeCode,
    /// `{"tokens": {"access_token", "refresh_token"}, "last_refresh"}`
    Codex,
}

impl ExternalFormat {
    /// The one provider whose pool reads this kind of file.
    pub fn provider(self) -> &'static str {
        match self {
            ExternalFormat::ClaudeCode => "anthropic",
            ExternalFormat::Codex => "openai-codex",
        }
    }

    /// Whether `provider`'s pool syncs the entry (`source`, holding a refresh token or not)
    /// from this kind of file.
    pub fn syncs(self, provider: &str, source: &str, has_refresh_token: bool) -> bool {
        provider == self.provider()
            && match self {
                ExternalFormat::ClaudeCode => source == self.source(),
                ExternalFormat::Codex => has_refresh_token,
            }
    }

    /// Whether this provider's clients decide expiry from the access token's JWT `exp` claim
    /// (upstream's Codex path) instead of the stored `expires_at_ms` (its Anthropic path).
    pub fn expiry_from_jwt(provider: &str) -> bool {
        provider == ExternalFormat::Codex.provider()
    }

    /// The pool's `source` name for entries seeded from this kind of file.
    pub fn source(self) -> &'static str {
        match self {
            ExternalFormat::ClaudeCode => "claude_code",
            ExternalFormat::Codex => "codex",
        }
    }
}

/// The token pair an external file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalCreds {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: Option<u64>,
}

impl ExternalFormat {
    /// Parse the file's bytes; `None` when they hold no token pair.
    pub fn parse(self, bytes: &[u8]) -> Option<ExternalCreds> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let (obj, a, r, e) = match self {
            ExternalFormat::ClaudeCode => (
                &v["claudeAiOauth"],
                "accessToken",
                "refreshToken",
                "expiresAt",
            ),
            ExternalFormat::Codex => (
                &v["tokens"],
                "access_token",
                "refresh_token",
                "expires_at_ms",
            ),
        };
        Some(ExternalCreds {
            access_token: obj[a].as_str()?.to_string(),
            refresh_token: obj[r].as_str()?.to_string(),
            expires_at_ms: obj[e].as_u64(),
        })
    }

    /// New bytes for the file: `old` (if it parsed as JSON) with the token fields replaced.
    pub fn render(self, old: Option<&[u8]>, creds: &ExternalCreds, now_ms: u64) -> Vec<u8> {
        let mut v: Value = old
            .and_then(|b| serde_json::from_slice(b).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        match self {
            ExternalFormat::ClaudeCode => {
                let o = &mut v["claudeAiOauth"];
                if !o.is_object() {
                    *o = json!({});
                }
                o["accessToken"] = json!(creds.access_token);
                o["refreshToken"] = json!(creds.refresh_token);
                o["expiresAt"] = json!(creds.expires_at_ms);
            }
            ExternalFormat::Codex => {
                let o = &mut v["tokens"];
                if !o.is_object() {
                    *o = json!({});
                }
                o["access_token"] = json!(creds.access_token);
                o["refresh_token"] = json!(creds.refresh_token);
                o["expires_at_ms"] = json!(creds.expires_at_ms);
                v["last_refresh"] = json!(crate::store::rfc3339(now_ms));
            }
        }
        let mut out = serde_json::to_vec_pretty(&v).expect("JSON values serialize");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_keeps_foreign_fields_and_parse_reads_them_back() {
        let creds = ExternalCreds {
            access_token: "acc".into(),
            refresh_token: "ref".into(),
            expires_at_ms: Some(9),
        };
        for f in [ExternalFormat::ClaudeCode, ExternalFormat::Codex] {
            let old = br#"{"claudeAiOauth":{"scopes":["x"]},"tokens":{"id_token":"i"},"mine":1}"#;
            let out = f.render(Some(old), &creds, 0);
            assert_eq!(f.parse(&out), Some(creds.clone()));
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["mine"], 1);
        }
        assert_eq!(ExternalFormat::Codex.parse(b"not json"), None);
        assert_eq!(ExternalFormat::ClaudeCode.parse(b"{}"), None);
    }

    #[test]
    fn each_file_serves_only_its_provider_pool() {
        use ExternalFormat::*;
        assert!(Codex.syncs("openai-codex", "device_code", true));
        assert!(!Codex.syncs("openai-codex", "device_code", false));
        assert!(!Codex.syncs("anthropic", "codex", true));
        assert!(ClaudeCode.syncs("anthropic", "claude_code", true));
        assert!(!ClaudeCode.syncs("anthropic", "manual", true));
        assert!(!ClaudeCode.syncs("openai-codex", "claude_code", true));
    }
}

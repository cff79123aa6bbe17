//! [`HttpIssuer`]: pool-core's [`Issuer`] over HTTP, talking to [`super::server`] (or any
//! RFC 6749 token endpoint with the same paths).
//!
//! Guarantees:
//! - `redeem` is one `POST {base}/oauth/token` (form `grant_type=refresh_token`); 200 with a
//!   well-formed body is a [`Grant`], 400 or 401 is [`RedeemError::Refused`] carrying the OAuth
//!   `error` code, anything else (no connection, timeout, 5xx, a 200 that does not parse) is
//!   [`RedeemError::Unavailable`].
//! - `use_credential` is one `GET {base}/v1/use` with `Authorization: Bearer`; 200 Accepted,
//!   401 Rejected, 429 RateLimited (with `reset_at_ms` when the body has it), anything else
//!   Unavailable.
//! - Every request names its worker in `X-Poolcheck-Proc`.
//! - Safe in forked children: no global runtime, no resolver threads (only per-phase timeouts
//!   are set, and ureq spawns a resolver thread only for a resolve timeout), no proxy from the
//!   environment, and pooled connections are never shared across a fork (the agent is rebuilt
//!   when the process id changes).
//! - Error messages never contain a token (they name the status and the OAuth error code).
//!
//! Not guaranteed: retries (none: the pool decides what to do with `Unavailable`), or that an
//! `Unavailable` redeem did not spend the token on the server.

use std::sync::Mutex;
use std::time::Duration;

use pool_core::world::{Grant, Issuer, RedeemError, UseOutcome};
use serde::Deserialize;

use crate::history::ProcId;

/// The token endpoint and resource API at `base_url`, as seen by worker `proc`.
pub struct HttpIssuer {
    /// `http://127.0.0.1:PORT` (a trailing slash is tolerated).
    pub base_url: String,
    /// Sent as `X-Poolcheck-Proc`.
    pub proc: ProcId,
    /// Limit for each phase of a request (connect, send, wait for the response, read the body).
    pub timeout: Duration,
    agent: Mutex<Option<(u32, ureq::Agent)>>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
    token_type: String,
}

#[derive(Deserialize, Default)]
struct ErrorReply {
    error: Option<String>,
    reset_at_ms: Option<u64>,
}

impl HttpIssuer {
    pub fn new(base_url: impl Into<String>, proc: ProcId, timeout: Duration) -> HttpIssuer {
        HttpIssuer {
            base_url: base_url.into(),
            proc,
            timeout,
            agent: Mutex::new(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }

    /// This process's agent (a forked child builds its own instead of sharing the parent's
    /// pooled connections).
    fn agent(&self) -> ureq::Agent {
        let pid = std::process::id();
        let mut slot = self.agent.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some((owner, agent)) if *owner == pid => agent.clone(),
            _ => {
                let t = Some(self.timeout);
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .proxy(None)
                    .max_redirects(0)
                    .timeout_connect(t)
                    .timeout_send_request(t)
                    .timeout_send_body(t)
                    .timeout_recv_response(t)
                    .timeout_recv_body(t)
                    .build()
                    .into();
                *slot = Some((pid, agent.clone()));
                agent
            }
        }
    }
}

fn body_of(response: &mut ureq::http::Response<ureq::Body>) -> String {
    response.body_mut().read_to_string().unwrap_or_default()
}

impl Issuer for HttpIssuer {
    fn redeem(&self, refresh_token: &str) -> Result<Grant, RedeemError> {
        let sent = self
            .agent()
            .post(self.url("/oauth/token"))
            .header("X-Poolcheck-Proc", self.proc.to_string())
            .send_form([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ]);
        let mut response =
            sent.map_err(|e| RedeemError::Unavailable(format!("token endpoint: {e}")))?;
        let status = response.status().as_u16();
        let body = body_of(&mut response);
        match status {
            200 => {
                let reply: TokenReply = serde_json::from_str(&body).map_err(|e| {
                    RedeemError::Unavailable(format!(
                        "token endpoint: HTTP 200 with a malformed body: {e}"
                    ))
                })?;
                if !reply.token_type.eq_ignore_ascii_case("bearer") {
                    return Err(RedeemError::Unavailable(format!(
                        "token endpoint: unexpected token_type {:?}",
                        reply.token_type
                    )));
                }
                Ok(Grant {
                    access_token: reply.access_token,
                    refresh_token: reply.refresh_token,
                    expires_in_s: reply.expires_in,
                })
            }
            400 | 401 => {
                let reply: ErrorReply = serde_json::from_str(&body).unwrap_or_default();
                Err(RedeemError::Refused {
                    error: reply.error.unwrap_or_else(|| format!("http_{status}")),
                })
            }
            _ => Err(RedeemError::Unavailable(format!(
                "token endpoint: HTTP {status}"
            ))),
        }
    }

    fn use_credential(&self, credential: &str) -> UseOutcome {
        let sent = self
            .agent()
            .get(self.url("/v1/use"))
            .header("X-Poolcheck-Proc", self.proc.to_string())
            .header("Authorization", format!("Bearer {credential}"))
            .call();
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return UseOutcome::Unavailable(format!("resource API: {e}")),
        };
        let status = response.status().as_u16();
        let body = body_of(&mut response);
        match status {
            200 => UseOutcome::Accepted,
            401 => UseOutcome::Rejected,
            429 => {
                let reply: ErrorReply = serde_json::from_str(&body).unwrap_or_default();
                UseOutcome::RateLimited {
                    reset_at_ms: reply.reset_at_ms,
                }
            }
            _ => {
                let reply: ErrorReply = serde_json::from_str(&body).unwrap_or_default();
                let error = reply.error.unwrap_or_default();
                UseOutcome::Unavailable(
                    format!("resource API: HTTP {status} {error}")
                        .trim_end()
                        .to_string(),
                )
            }
        }
    }
}

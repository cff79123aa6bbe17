//! JSON Web Tokens as far as a token client reads them: base64url header and payload, and the
//! `exp` claim (upstream's Codex client decides expiry from it). No signature is checked: a
//! client does not verify its own access token, it only reads when it expires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// The payload claims of a JWT, if `token` is three dot-separated base64url parts whose
/// middle part is a JSON object.
pub fn claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Unix ms of the `exp` claim (seconds, integer or float), if the token is a JWT with one.
pub fn exp_ms(token: &str) -> Option<u64> {
    let exp = claims(token)?.get("exp")?.as_f64()?;
    (exp.is_finite() && exp >= 0.0).then(|| (exp * 1000.0).round() as u64)
}

/// A JWT with header `{"alg":"RS256","typ":"JWT"}`, claims `exp` and `iat` (Unix seconds) and
/// `sub`, and `signature` (any base64url text) as its third part.
pub fn encode(sub: &str, iat_s: u64, exp_s: u64, signature: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(json!({"exp": exp_s, "iat": iat_s, "sub": sub}).to_string());
    format!("{header}.{payload}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_token_reads_back_its_claims() {
        let t = encode("family-3", 1_795_867_200, 1_795_867_260, "c2lnbmF0dXJl");
        assert_eq!(t.split('.').count(), 3);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(exp_ms(&t), Some(1_795_867_260_000));
        assert_eq!(claims(&t).unwrap()["sub"], "family-3");
    }

    #[test]
    fn tokens_that_are_not_jwts_have_no_exp() {
        for t in [
            "opaque-43-chars",
            "a.b",
            "a.b.c.d",
            "e30.e30.x",
            "x.WzFd.y",
            "",
        ] {
            assert_eq!(exp_ms(t), None, "{t}");
        }
        // Padding and float `exp` are tolerated.
        let t = format!("e30.{}.s", URL_SAFE_NO_PAD.encode(r#"{"exp":1.5}"#));
        assert_eq!(exp_ms(&t), Some(1_500));
    }
}

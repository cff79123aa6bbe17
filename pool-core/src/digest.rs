//! Short, stable digests: content hashes for histories and redacted tags for secrets.
//!
//! A token is never printed whole anywhere in this project: outputs show [`tag`], the first
//! eight hex digits of its SHA-256, which identifies a token across a run without revealing it.

use sha2::{Digest, Sha256};

/// Hex digest prefix of `bytes` (16 hex digits), used to identify store contents in histories.
pub fn content_hash(bytes: &[u8]) -> String {
    hex_prefix(bytes, 16)
}

/// The redacted form of a secret token: `t:` plus 8 hex digits of its SHA-256.
pub fn tag(token: &str) -> String {
    let mut s = String::with_capacity(10);
    s.push_str("t:");
    s.push_str(&hex_prefix(token.as_bytes(), 8));
    s
}

fn hex_prefix(bytes: &[u8], digits: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(digits + 1);
    for b in d.iter().take(digits.div_ceil(2)) {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s.truncate(digits);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_hides_the_token_and_is_stable() {
        let t = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let a = tag(t);
        assert_eq!(a, tag(t));
        assert_eq!(a.len(), 10);
        assert!(!a.contains("abcdef"));
        assert_ne!(a, tag("another-token-entirely-0123456789abcdef"));
    }

    #[test]
    fn hex_prefix_is_the_lowercase_hex_of_the_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea");
        assert_eq!(tag("abc"), "t:ba7816bf");
        assert_eq!(hex_prefix(b"abc", 3), "ba7");
    }

    #[test]
    fn content_hash_distinguishes_bytes() {
        assert_eq!(content_hash(b"x").len(), 16);
        assert_ne!(content_hash(b"x"), content_hash(b"y"));
    }
}

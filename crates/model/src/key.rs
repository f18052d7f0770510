//! API keys (X1): a public id to look a key up by, a secret shown once and
//! stored only as its SHA-256, scopes, expiry, revocation and last use.

use serde::{Deserialize, Serialize};

use crate::{Actor, Digest, Namespace, Timestamp};

crate::artifact::word_enum!(
    /// What a key may do at most (grants narrow it further).
    Scope { Read = "read", Write = "write", Admin = "admin", Export = "export" } default Read
);

/// Recognisable prefix of every key token: `kx_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "kx_";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id (16 hex digits): safe to log and to show.
    pub id: String,
    pub name: String,
    pub namespace: Namespace,
    /// The actor requests made with this key act as.
    pub actor: Actor,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// Coalesced: updated at most about once a minute per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// SHA-256 of the secret; never serialized.
    #[serde(skip)]
    pub secret_hash: Option<Digest>,
}

impl ApiKey {
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// Splits a token into its key id and secret; `None` if it is not shaped
/// like one of ours.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

/// Compares two digests in constant time.
pub fn digests_match(a: &Digest, b: &Digest) -> bool {
    let (x, y) = (a.bytes(), b.bytes());
    x.len() == y.len()
        && x.iter()
            .zip(y.iter())
            .fold(0u8, |acc, (p, q)| acc | (p ^ q))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x1_tokens_parse_only_in_their_shape() {
        let t = format!("kx_{}_{}", "0123456789abcdef", "a".repeat(64));
        assert_eq!(
            parse_token(&t),
            Some(("0123456789abcdef", "a".repeat(64).as_str()))
        );
        assert!(parse_token("kx_short_x").is_none());
        assert!(parse_token(&t.replace("kx_", "xx_")).is_none());
        assert!(parse_token(&format!("{t}0")).is_none());
        let d = Digest::of(b"x");
        assert!(digests_match(&d, &Digest::of(b"x")));
        assert!(!digests_match(&d, &Digest::of(b"y")));
    }
}

/// The state of an idempotency key when a request reserves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Idempotency {
    /// New: this request owns it and must finish or abandon it.
    Started,
    /// Done before with the same request: replay this answer.
    Replay {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Used before with a different request.
    Mismatch,
    /// Another request with this key has not finished.
    InFlight,
}

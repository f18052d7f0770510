//! Standard Webhooks 1.0 signatures: `whsec_` secrets, `v1` HMAC-SHA256 over
//! `{msg_id}.{timestamp}.{body}`, the `webhook-id` / `webhook-timestamp` /
//! `webhook-signature` headers, and verification (constant-time, with a
//! ±5-minute tolerance against replays).
//!
//! Rotation: while an endpoint has an old and a new secret, [`Headers::sign`]
//! puts one `v1,` signature per secret into `webhook-signature`, separated by
//! spaces, so receivers holding either secret verify.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Error;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";
/// Bytes of randomness in a generated secret.
const GENERATED_LEN: usize = 32;
/// Standard Webhooks: at least 24 bytes (192 bits) …
const MIN_LEN: usize = 24;
/// … and at most 64 bytes (512 bits).
const MAX_LEN: usize = 64;

/// How far a timestamp may be from the verifier's clock, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The header names, as Standard Webhooks spells them.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds of this attempt.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A symmetric signing secret (the HMAC key). It never prints: `Debug`
/// shows `Secret(redacted)` and there is no `Display`; [`Secret::expose`] is
/// the one way to the `whsec_` text, for showing it to its owner once and
/// for storing it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// A new secret: 32 bytes from the operating system's RNG.
    pub fn generate() -> Result<Secret, Error> {
        let mut key = vec![0u8; GENERATED_LEN];
        getrandom::fill(&mut key).map_err(|e| Error::Rng(e.to_string()))?;
        Ok(Secret { key })
    }

    /// Parses `whsec_<base64>` (standard alphabet, padded), 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Secret, Error> {
        let b64 = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(Error::SecretPrefix)?;
        let key = STANDARD.decode(b64).map_err(|_| Error::SecretBase64)?;
        if !(MIN_LEN..=MAX_LEN).contains(&key.len()) {
            return Err(Error::SecretLength(key.len()));
        }
        Ok(Secret { key })
    }

    /// The secret as `whsec_<base64>`: the form to show its owner (once, at
    /// creation) and to store. Never log it.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail here.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// The `v1,<base64>` signature of one message with one secret: HMAC-SHA256
/// of `{msg_id}.{timestamp}.{body}`. Sign the exact bytes you send.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Verifies a message as a receiver does: the timestamp within
/// [`TOLERANCE`] of `now` (Unix seconds) either way, and at least one of the
/// space-separated signatures in `signatures` a valid `v1` signature with
/// `secret`. Tags are compared in constant time, lengths first (an empty or
/// truncated signature never verifies).
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signatures: &str,
    now: i64,
) -> Result<(), Error> {
    let tolerance = TOLERANCE.as_secs() as i64;
    if timestamp.abs_diff(now) > tolerance as u64 {
        return Err(Error::Timestamp { timestamp, now });
    }
    let expected = secret.mac(msg_id, timestamp, body);
    for candidate in signatures.split(' ') {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            continue;
        };
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(Error::SignatureMismatch)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The three Standard Webhooks headers of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// `webhook-id`: the same on every retry of a message (the receiver's
    /// idempotency key).
    pub id: String,
    /// `webhook-timestamp`: Unix seconds of this attempt.
    pub timestamp: i64,
    /// `webhook-signature`: one `v1,<base64>` per secret, space-separated.
    pub signature: String,
}

impl Headers {
    /// Signs `body` for message `msg_id` at `timestamp` with every secret
    /// (the current one first, then any still being rotated out). The id
    /// must be 1–255 printable ASCII characters without `.`.
    pub fn sign(
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        secrets: &[&Secret],
    ) -> Result<Headers, Error> {
        let valid_id = !msg_id.is_empty()
            && msg_id.len() <= 255
            && msg_id.bytes().all(|b| b.is_ascii_graphic() && b != b'.');
        if !valid_id {
            return Err(Error::MessageId);
        }
        if secrets.is_empty() {
            return Err(Error::NoSecret);
        }
        let signature = secrets
            .iter()
            .map(|s| sign(s, msg_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Headers {
            id: msg_id.to_owned(),
            timestamp,
            signature,
        })
    }

    /// The headers as (name, value) pairs, to put on a request.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_ID, self.id.clone()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KAT_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const KAT_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const KAT_TS: i64 = 1649367553;
    const KAT_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const KAT_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn o5_known_answer_from_the_reference_library() {
        let secret = Secret::parse(KAT_SECRET).unwrap();
        assert_eq!(sign(&secret, KAT_ID, KAT_TS, KAT_BODY), KAT_SIG);
        verify(&secret, KAT_ID, KAT_TS, KAT_BODY, KAT_SIG, KAT_TS).unwrap();
    }

    #[test]
    fn o5_empty_or_truncated_signature_never_verifies() {
        // The svix/standard-webhooks bug (PR #115 / #1190): comparing up to the
        // shorter length made `v1,` verify.
        let secret = Secret::parse(KAT_SECRET).unwrap();
        for bad in [
            "v1,",
            "v1,tZ1I4/hD",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw",
            "",
            " ",
            "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ] {
            assert_eq!(
                verify(&secret, KAT_ID, KAT_TS, KAT_BODY, bad, KAT_TS),
                Err(Error::SignatureMismatch),
                "{bad:?} verified"
            );
        }
    }

    #[test]
    fn o5_any_of_several_signatures_verifies() {
        let old = Secret::parse(KAT_SECRET).unwrap();
        let new = Secret::generate().unwrap();
        let h = Headers::sign(KAT_ID, KAT_TS, KAT_BODY, &[&new, &old]).unwrap();
        assert_eq!(h.signature.split(' ').count(), 2);
        assert!(h.signature.ends_with(KAT_SIG));
        for s in [&old, &new] {
            verify(s, KAT_ID, KAT_TS, KAT_BODY, &h.signature, KAT_TS).unwrap();
        }
        let stranger = Secret::generate().unwrap();
        assert_eq!(
            verify(&stranger, KAT_ID, KAT_TS, KAT_BODY, &h.signature, KAT_TS),
            Err(Error::SignatureMismatch)
        );
    }

    #[test]
    fn o5_timestamp_tolerance_both_ways() {
        let s = Secret::parse(KAT_SECRET).unwrap();
        let ok = |now| verify(&s, KAT_ID, KAT_TS, KAT_BODY, KAT_SIG, now);
        ok(KAT_TS + 300).unwrap();
        ok(KAT_TS - 300).unwrap();
        assert!(matches!(ok(KAT_TS + 301), Err(Error::Timestamp { .. })));
        assert!(matches!(ok(KAT_TS - 301), Err(Error::Timestamp { .. })));
        // extreme values do not overflow
        assert!(ok(i64::MIN).is_err());
        assert!(ok(i64::MAX).is_err());
    }

    #[test]
    fn o5_secret_parse_names_the_problem() {
        assert_eq!(
            Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            Err(Error::SecretPrefix)
        );
        assert_eq!(Secret::parse("whsec_not base64!"), Err(Error::SecretBase64));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(Error::SecretLength(5)));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(Secret::parse(&long), Err(Error::SecretLength(65)));
        let msg = Secret::parse("whsec_c2hvcnQ=").unwrap_err().to_string();
        assert!(msg.contains("24 to 64 bytes") && msg.contains('5'), "{msg}");
    }

    #[test]
    fn o5_generated_secrets_roundtrip_and_differ() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_ne!(a, b);
        let text = a.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&text[6..]).unwrap().len(), 32);
        assert_eq!(Secret::parse(&text).unwrap(), a);
    }

    #[test]
    fn o5_secret_never_prints() {
        let s = Secret::parse(KAT_SECRET).unwrap();
        let shown = format!("{s:?} {:?} {:#?}", Some(&s), vec![&s]);
        assert!(!shown.contains("C2FVsBQ"), "{shown}");
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
    }

    #[test]
    fn o5_headers_refuse_bad_ids_and_no_secret() {
        let s = Secret::parse(KAT_SECRET).unwrap();
        for id in ["", "a.b", "with space", "é", &"x".repeat(256)] {
            assert_eq!(
                Headers::sign(id, 1, b"{}", &[&s]),
                Err(Error::MessageId),
                "{id:?}"
            );
        }
        assert_eq!(Headers::sign("msg_1", 1, b"{}", &[]), Err(Error::NoSecret));
        let h = Headers::sign(KAT_ID, KAT_TS, KAT_BODY, &[&s]).unwrap();
        assert_eq!(
            h.pairs(),
            [
                ("webhook-id", KAT_ID.to_owned()),
                ("webhook-timestamp", KAT_TS.to_string()),
                ("webhook-signature", KAT_SIG.to_owned()),
            ]
        );
    }

    proptest! {
        /// sign → verify roundtrips; flipping any byte of the body, the id or
        /// the signature makes it fail.
        #[test]
        fn o5_sign_verify_roundtrip_and_any_flip_fails(
            key in proptest::collection::vec(any::<u8>(), 24..=64),
            id in "[A-Za-z0-9_-]{1,40}",
            ts in 0i64..4_000_000_000,
            body in proptest::collection::vec(any::<u8>(), 0..512),
            pick in any::<usize>(),
            bit in 0u8..8,
        ) {
            let secret = Secret::parse(&format!("whsec_{}", STANDARD.encode(&key))).unwrap();
            let h = Headers::sign(&id, ts, &body, &[&secret]).unwrap();
            prop_assert!(verify(&secret, &id, ts, &body, &h.signature, ts).is_ok());

            if !body.is_empty() {
                let mut flipped = body.clone();
                flipped[pick % body.len()] ^= 1 << bit;
                prop_assert!(verify(&secret, &id, ts, &flipped, &h.signature, ts).is_err());
            }
            let mut sig = STANDARD.decode(&h.signature[3..]).unwrap();
            let i = pick % sig.len();
            sig[i] ^= 1 << bit;
            let forged = format!("v1,{}", STANDARD.encode(&sig));
            prop_assert!(verify(&secret, &id, ts, &body, &forged, ts).is_err());

            let mut id_bytes = id.clone().into_bytes();
            let j = pick % id_bytes.len();
            id_bytes[j] = if id_bytes[j] == b'a' { b'b' } else { b'a' };
            let other_id = String::from_utf8(id_bytes).unwrap();
            prop_assert!(verify(&secret, &other_id, ts, &body, &h.signature, ts).is_err());
            prop_assert!(verify(&secret, &id, ts + 1, &body, &h.signature, ts).is_err());
        }
    }
}

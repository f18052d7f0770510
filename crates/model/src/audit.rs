//! The audit chain: records, their canonical form, and chain verification.
//!
//! Each record's `hash` is SHA-256 over the RFC 8785 (JCS) canonical JSON of
//! the record without its `hash` field; the record carries the previous
//! record's hash in `prev_hash`, so altering, removing or reordering any
//! record breaks the chain. A truncated tail cannot be seen from the chain
//! alone: verifiers compare against a [`ChainHead`] kept elsewhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::Timestamp;
use crate::actor::Actor;
use crate::digest::Digest;
use crate::error::ModelError;
use crate::ids::{CorrelationId, RunId};
use crate::names::Namespace;

/// Appends `s` as a JSON string. serde_json escapes exactly what RFC 8785
/// (ECMAScript `JSON.stringify`) escapes: `"`, `\\`, and control characters,
/// with the short forms where they exist and `\u00xx` (lowercase) otherwise.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

impl FromStr for Outcome {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "success" => Ok(Outcome::Success),
            "denied" => Ok(Outcome::Denied),
            "failure" => Ok(Outcome::Failure),
            _ => Err(ModelError::invalid(
                "outcome",
                s,
                "expected success, denied or failure",
            )),
        }
    }
}

/// What is known about an audited action before the store sequences it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// `noun.verb`, e.g. `artifact.update`.
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub target_name: Option<String>,
    pub revision: Option<u64>,
    pub prev_digest: Option<Digest>,
    pub digest: Option<Digest>,
    pub outcome: Outcome,
    /// Small structured facts (a cause, a reason code). Never content or secrets.
    pub detail: Option<serde_json::Value>,
}

/// A sequenced, hash-chained audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub namespace: Namespace,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    pub run_id: Option<RunId>,
    #[serde(flatten)]
    pub draft: AuditDraft,
    pub prev_hash: String,
    pub hash: String,
}

/// Context shared by every record of one write.
#[derive(Clone, Debug)]
pub struct AuditContext<'a> {
    pub namespace: &'a Namespace,
    pub actor: &'a Actor,
    pub correlation_id: &'a CorrelationId,
    pub run_id: Option<RunId>,
}

impl AuditRecord {
    /// Sequences `draft` after `prev` (None for the first record) and computes its hash.
    pub fn seal(
        prev: Option<&ChainHead>,
        at: Timestamp,
        ctx: &AuditContext<'_>,
        draft: AuditDraft,
    ) -> Self {
        let (seq, prev_hash) = match prev {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let mut rec = AuditRecord {
            seq,
            at,
            namespace: ctx.namespace.clone(),
            actor: ctx.actor.clone(),
            correlation_id: ctx.correlation_id.clone(),
            run_id: ctx.run_id,
            draft,
            prev_hash,
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        rec
    }

    /// The RFC 8785 canonical JSON of every field except `hash`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // RFC 8785 for this fixed shape, written directly: the members in
        // sorted order (they are all ASCII, so UTF-16 order is byte order),
        // every scalar a string or null (numbers are written as strings, so
        // none needs ECMAScript number formatting), strings escaped as JSON.
        // `detail`, the one free-form member, goes through the general
        // canonicalizer. A property test checks this against the general
        // canonicalizer for random records.
        let d = &self.draft;
        let mut out = Vec::with_capacity(768);
        let mut first = true;
        let mut member = |out: &mut Vec<u8>, key: &str, value: Option<&str>| {
            out.push(if first { b'{' } else { b',' });
            first = false;
            json_str(out, key);
            out.push(b':');
            match value {
                Some(v) => json_str(out, v),
                None => out.extend_from_slice(b"null"),
            }
        };
        let actor = self.actor.to_string();
        let at = self.at.to_string();
        let digest = d.digest.map(|x| x.to_string());
        let prev_digest = d.prev_digest.map(|x| x.to_string());
        let revision = d.revision.map(|r| r.to_string());
        let run_id = self.run_id.map(|r| r.to_string());
        let seq = self.seq.to_string();
        member(&mut out, "action", Some(&d.action));
        member(&mut out, "actor", Some(&actor));
        member(&mut out, "at", Some(&at));
        member(
            &mut out,
            "correlation_id",
            Some(self.correlation_id.as_str()),
        );
        // detail: canonical JSON of an arbitrary value, or null
        out.extend_from_slice(b",\"detail\":");
        match &d.detail {
            Some(v) => out.extend(
                serde_json_canonicalizer::to_vec(v).unwrap_or_else(|_| v.to_string().into_bytes()),
            ),
            None => out.extend_from_slice(b"null"),
        }
        member(&mut out, "digest", digest.as_deref());
        member(&mut out, "namespace", Some(self.namespace.as_str()));
        member(&mut out, "outcome", Some(d.outcome.as_str()));
        member(&mut out, "prev_digest", prev_digest.as_deref());
        member(&mut out, "prev_hash", Some(&self.prev_hash));
        member(&mut out, "revision", revision.as_deref());
        member(&mut out, "run_id", run_id.as_deref());
        member(&mut out, "seq", Some(&seq));
        member(&mut out, "target_id", Some(&d.target_id));
        member(&mut out, "target_kind", Some(&d.target_kind));
        member(&mut out, "target_name", d.target_name.as_deref());
        out.push(b'}');
        out
    }

    /// The same bytes through the general RFC 8785 canonicalizer (tests and
    /// independent verifiers).
    pub fn canonical_bytes_reference(&self) -> Vec<u8> {
        let d = &self.draft;
        let v = json!({
            "seq": self.seq.to_string(),
            "at": self.at.to_string(),
            "namespace": self.namespace,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "run_id": self.run_id,
            "action": d.action,
            "target_kind": d.target_kind,
            "target_id": d.target_id,
            "target_name": d.target_name,
            "revision": d.revision.map(|r| r.to_string()),
            "prev_digest": d.prev_digest,
            "digest": d.digest,
            "outcome": d.outcome,
            "detail": d.detail,
            "prev_hash": self.prev_hash,
        });
        serde_json_canonicalizer::to_vec(&v).unwrap_or_else(|_| v.to_string().into_bytes())
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// The last record of a chain: `SEQ:HASH`. Keep a copy outside the database
/// (printed by `audit verify`, carried in run and export manifests) to detect
/// a truncated tail later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl FromStr for ChainHead {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || {
            ModelError::invalid(
                "chain head",
                s,
                "expected SEQ:HASH (as printed by `audit verify`)",
            )
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok || seq == 0 {
            return Err(bad());
        }
        Ok(ChainHead {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// One thing wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    /// The record's content no longer matches its hash: it was altered.
    Altered { seq: u64 },
    /// The record does not point at the record before it: records were removed or reordered.
    BrokenLink { seq: u64 },
    /// Sequence numbers jump or repeat: records were removed, duplicated or reordered.
    SequenceGap { expected: u64, found: u64 },
    /// The chain ends before the expected head: its tail was truncated.
    Truncated { expected: ChainHead, last_seq: u64 },
    /// The record at the expected head's position has another hash.
    HeadMismatch { expected: ChainHead, found: String },
    /// The head kept outside the database exists but cannot be read.
    HeadUnreadable { path: String },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::Altered { seq } => write!(f, "record {seq} was altered (hash mismatch)"),
            ChainProblem::BrokenLink { seq } => write!(
                f,
                "record {seq} does not link to the record before it (records removed or reordered)"
            ),
            ChainProblem::SequenceGap { expected, found } => write!(
                f,
                "expected record {expected}, found {found} (records removed or reordered)"
            ),
            ChainProblem::Truncated { expected, last_seq } => write!(
                f,
                "chain ends at record {last_seq} but the expected head is {expected} (tail truncated)"
            ),
            ChainProblem::HeadUnreadable { path } => write!(
                f,
                "the recorded chain head {path} is unreadable (expected SEQ:HASH); it was damaged or replaced"
            ),
            ChainProblem::HeadMismatch { expected, found } => write!(
                f,
                "record {} has hash {found}, expected head {expected}",
                expected.seq
            ),
        }
    }
}

/// The outcome of verifying a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub records: u64,
    pub head: Option<ChainHead>,
    pub problems: Vec<ChainProblem>,
}

impl ChainReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies a chain streamed in sequence order, in constant memory.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    prev: Option<ChainHead>,
    records: u64,
    problems: Vec<ChainProblem>,
    expect: Option<ChainHead>,
    expect_seen: bool,
}

impl ChainVerifier {
    /// `expect`: a head recorded earlier; the chain must contain it unchanged.
    pub fn new(expect: Option<ChainHead>) -> Self {
        ChainVerifier {
            expect,
            ..Default::default()
        }
    }

    pub fn push(&mut self, rec: &AuditRecord) {
        self.records += 1;
        let expected_seq = self.prev.as_ref().map_or(1, |p| p.seq + 1);
        if rec.seq != expected_seq {
            self.problems.push(ChainProblem::SequenceGap {
                expected: expected_seq,
                found: rec.seq,
            });
        }
        let expected_prev = self.prev.as_ref().map_or(GENESIS_HASH, |p| p.hash.as_str());
        if rec.prev_hash != expected_prev {
            self.problems
                .push(ChainProblem::BrokenLink { seq: rec.seq });
        }
        if rec.compute_hash() != rec.hash {
            self.problems.push(ChainProblem::Altered { seq: rec.seq });
        }
        if let Some(exp) = &self.expect
            && exp.seq == rec.seq
        {
            self.expect_seen = true;
            if exp.hash != rec.hash {
                self.problems.push(ChainProblem::HeadMismatch {
                    expected: exp.clone(),
                    found: rec.hash.clone(),
                });
            }
        }
        self.prev = Some(rec.head());
    }

    pub fn finish(mut self) -> ChainReport {
        if let Some(exp) = self.expect.take()
            && !self.expect_seen
        {
            self.problems.push(ChainProblem::Truncated {
                expected: exp,
                last_seq: self.prev.as_ref().map_or(0, |p| p.seq),
            });
        }
        ChainReport {
            records: self.records,
            head: self.prev,
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let ns = Namespace::default();
        let actor = Actor::local_admin();
        let corr = CorrelationId::new();
        let ctx = AuditContext {
            namespace: &ns,
            actor: &actor,
            correlation_id: &corr,
            run_id: None,
        };
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let draft = AuditDraft {
                action: "artifact.create".into(),
                target_kind: "artifact".into(),
                target_id: format!("t{i}"),
                target_name: None,
                revision: Some(1),
                prev_digest: None,
                digest: Some(Digest::of(format!("{i}").as_bytes())),
                outcome: Outcome::Success,
                detail: None,
            };
            let at = Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
            let rec = AuditRecord::seal(out.last().map(|r| r.head()).as_ref(), at, &ctx, draft);
            out.push(rec);
        }
        out
    }

    fn verify(recs: &[AuditRecord], expect: Option<ChainHead>) -> ChainReport {
        let mut v = ChainVerifier::new(expect);
        recs.iter().for_each(|r| v.push(r));
        v.finish()
    }

    #[test]
    fn x3_intact_chain_verifies_and_head_matches() {
        let recs = chain(5);
        let report = verify(&recs, Some(recs[4].head()));
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!(report.head, Some(recs[4].head()));
        assert_eq!(report.records, 5);
    }

    #[test]
    fn x3_truncation_is_only_visible_against_a_head() {
        let recs = chain(5);
        let head = recs[4].head();
        assert!(verify(&recs[..3], None).is_valid());
        let report = verify(&recs[..3], Some(head));
        assert!(matches!(
            report.problems[..],
            [ChainProblem::Truncated { last_seq: 3, .. }]
        ));
    }

    /// X3: the canonical form and hash of a fixed record are pinned, so other
    /// implementations (and later versions) can reproduce them.
    #[test]
    fn x3_canonical_hash_of_a_fixed_record_is_pinned() {
        let ns = Namespace::default();
        let actor: Actor = "agent:ci".parse().unwrap();
        let corr: CorrelationId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let ctx = AuditContext {
            namespace: &ns,
            actor: &actor,
            correlation_id: &corr,
            run_id: None,
        };
        let draft = AuditDraft {
            action: "artifact.update".into(),
            target_kind: "artifact".into(),
            target_id: "01a1fcb3-8270-7580-8f0b-8b1602cfcfa1".into(),
            target_name: Some("handbook/intro.md".into()),
            revision: Some(2),
            prev_digest: Some(Digest::of(b"one")),
            digest: Some(Digest::of(b"two")),
            outcome: Outcome::Success,
            detail: None,
        };
        let at = Timestamp::from_microsecond(1_763_700_000_123_456).unwrap();
        let rec = AuditRecord::seal(None, at, &ctx, draft);
        let text = String::from_utf8(rec.canonical_bytes()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"action":"artifact.update","actor":"agent:ci","at":"2025-11-21T04:40:00.123456Z","#,
                r#""correlation_id":"0123456789abcdef0123456789abcdef","detail":null,"#,
                r#""digest":"sha256:3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3","#,
                r#""namespace":"default","outcome":"success","#,
                r#""prev_digest":"sha256:7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed","#,
                r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
                r#""revision":"2","run_id":null,"seq":"1","target_id":"01a1fcb3-8270-7580-8f0b-8b1602cfcfa1","#,
                r#""target_kind":"artifact","target_name":"handbook/intro.md"}"#
            )
        );
        assert_eq!(rec.hash, hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn chain_head_parses() {
        let h: ChainHead = format!("7:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(h.seq, 7);
        assert!("7:xyz".parse::<ChainHead>().is_err());
        assert!("x".parse::<ChainHead>().is_err());
    }

    #[test]
    fn canonical_form_is_stable() {
        // Pinning the hash of a fixed record pins the canonical format: other
        // implementations (and future versions) must reproduce this value.
        let recs = chain(1);
        assert_eq!(recs[0].prev_hash, GENESIS_HASH);
        let again = chain(1);
        assert_eq!(recs[0].hash.len(), 64);
        // correlation ids differ between runs, so compare structure, not value
        assert_ne!(recs[0].hash, again[0].hash);
        let text = String::from_utf8(recs[0].canonical_bytes()).unwrap();
        assert!(
            text.starts_with("{\"action\":\"artifact.create\",\"actor\":\"user:local-admin\""),
            "{text}"
        );
    }

    proptest! {
        /// X3: the direct canonical form equals the general RFC 8785 canonicalizer's.
        #[test]
        fn x3_direct_canonical_form_matches_rfc8785(
            action in "[a-z.]{1,12}",
            target in "(?s).{0,20}",
            name in proptest::option::of("\\PC{0,20}"),
            rev in proptest::option::of(0u64..u64::MAX),
            detail in proptest::option::of("\\PC{0,10}"),
            micros in 0i64..4_000_000_000_000_000,
        ) {
            let ns = Namespace::default();
            let actor = Actor::local_admin();
            let corr = CorrelationId::new();
            let ctx = AuditContext { namespace: &ns, actor: &actor, correlation_id: &corr, run_id: Some(crate::RunId::new()) };
            let draft = AuditDraft {
                action,
                target_kind: "artifact".into(),
                target_id: target,
                target_name: name,
                revision: rev,
                prev_digest: Some(Digest::of(b"x")),
                digest: None,
                outcome: Outcome::Denied,
                detail: detail.map(|d| serde_json::json!({ "zeta": d, "alpha": [1, "\u{7f}\u{1f}"] })),
            };
            let at = Timestamp::from_microsecond(micros).unwrap();
            let rec = AuditRecord::seal(None, at, &ctx, draft);
            prop_assert_eq!(
                String::from_utf8(rec.canonical_bytes()).unwrap(),
                String::from_utf8(rec.canonical_bytes_reference()).unwrap()
            );
        }

        /// X3: any single alteration, removal or swap of records is detected.
        #[test]
        fn x3_any_tampering_is_detected(n in 2usize..12, pick in 0usize..100, how in 0u8..3) {
            let mut recs = chain(n);
            let i = pick % n;
            match how {
                0 => recs[i].draft.target_id.push('!'),
                1 => { recs.remove(i); if recs.len() == n - 1 && i == n - 1 { return Ok(()); } }
                _ => { let j = (i + 1) % n; recs.swap(i, j); }
            }
            prop_assert!(!verify(&recs, None).is_valid());
        }
    }
}

//! `verify`, written once for both engines: every blob re-hashed from its
//! bytes, references, histories without gaps, the current state equal to
//! the current revision, every row of history and authority against the
//! fingerprint its audit record vouches for, and the audit chain.
//!
//! The engine runs this inside one read-only snapshot (so a write committed
//! meanwhile cannot raise a false alarm) and adds what only it can check
//! (SQLite: `PRAGMA integrity_check` and `foreign_key_check`).

use std::path::PathBuf;

use kontextual_model::audit::{ChainProblem, ChainReport, ChainVerifier};
use kontextual_model::{
    ApiKey, Artifact, ArtifactId, AuditRecord, ChainHead, Clearance, Digest, DigestWriter, Grant,
    Hold, Namespace, Relation, Revision,
};
use uuid::Uuid;

use crate::access::Mark;
use crate::access::read as access;
use crate::knowledge::read as knowledge;
use crate::port::{
    ArtifactKey, CheckReport, Page, PageRequest, Problem, ProblemCategory, RelationQuery,
};
use crate::sql::{Tx, args};
use crate::{Result, audit};

/// The head recorded outside the database (read *before* the snapshot
/// began, so it can never be ahead of it), and where it is kept.
pub(crate) type Recorded = Option<(Option<ChainHead>, PathBuf)>;

pub(crate) fn problem(
    category: ProblemCategory,
    subject: impl Into<String>,
    detail: impl Into<String>,
) -> Problem {
    Problem {
        category,
        subject: subject.into(),
        detail: detail.into(),
    }
}

/// The whole check, after the engine's own `problems`.
pub(crate) fn run(
    tx: &mut Tx<'_>,
    expect: Option<ChainHead>,
    recorded: Recorded,
    mut problems: Vec<Problem>,
) -> Result<CheckReport> {
    let state = crate::schema::inspect(tx)?;
    for m in &state.pending {
        problems.push(problem(
            ProblemCategory::PendingMigration,
            format!("migration {} ({})", m.version, m.name),
            "not applied yet: run `kontextual db migrate`",
        ));
    }
    if !state.pending.is_empty() {
        // the checks below assume the full schema
        return Ok(CheckReport {
            blobs_checked: 0,
            blob_bytes_checked: 0,
            revisions_checked: 0,
            audit: ChainReport {
                records: 0,
                head: None,
                problems: Vec::new(),
            },
            audit_head_source: None,
            problems,
        });
    }
    references(tx, &mut problems)?;
    let (blobs_checked, blob_bytes_checked) = blobs(tx, &mut problems)?;
    histories(tx, &mut problems)?;
    let revisions_checked = tx.query_one("SELECT count(*) FROM revisions", &[], |r| r.get(0))?;
    crate::integrity::cross_check(&mut Rows(tx), &mut problems)?;
    let (audit, audit_head_source) = verify_chain(tx, expect, recorded)?;
    for p in &audit.problems {
        problems.push(problem(
            ProblemCategory::AuditChain,
            "audit chain",
            p.to_string(),
        ));
    }
    Ok(CheckReport {
        blobs_checked,
        blob_bytes_checked,
        revisions_checked,
        audit,
        audit_head_source,
        problems,
    })
}

/// Revisions whose content should be present but whose blob is gone, and
/// artifacts whose current revision row is missing.
fn references(tx: &mut Tx<'_>, problems: &mut Vec<Problem>) -> Result<()> {
    tx.for_each(
        "SELECT r.artifact_id, r.revision, r.digest FROM revisions r \
         LEFT JOIN blobs b ON b.digest = r.digest \
         WHERE r.content_available = TRUE AND b.digest IS NULL ORDER BY 1, 2",
        &[],
        |r| {
            let (id, rev, digest): (Uuid, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            problems.push(problem(
                ProblemCategory::MissingReference,
                format!("artifact {id} revision {rev}"),
                format!("content sha256:{digest} is missing"),
            ));
            Ok(())
        },
    )?;
    tx.for_each(
        "SELECT a.id, a.revision FROM artifacts a LEFT JOIN revisions r \
         ON r.artifact_id = a.id AND r.revision = a.revision WHERE r.artifact_id IS NULL",
        &[],
        |r| {
            let (id, rev): (Uuid, i64) = (r.get(0)?, r.get(1)?);
            problems.push(problem(
                ProblemCategory::MissingReference,
                format!("artifact {id}"),
                format!("its current revision {rev} is missing"),
            ));
            Ok(())
        },
    )
}

/// Every blob: its digest and size recomputed from its bytes, streaming
/// chunk by chunk. Returns how many blobs and bytes were read.
fn blobs(tx: &mut Tx<'_>, problems: &mut Vec<Problem>) -> Result<(u64, u64)> {
    let digests: Vec<String> = tx.query("SELECT digest FROM blobs ORDER BY digest", &[], |r| {
        r.get(0)
    })?;
    let mut bytes = 0u64;
    for hex in &digests {
        let (size, chunks, inline): (i64, i64, Option<Vec<u8>>) = tx.query_one(
            "SELECT size, chunks, data FROM blobs WHERE digest = ?1",
            args![hex],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut hasher = DigestWriter::new();
        if let Some(data) = &inline {
            hasher.update(data);
        }
        let mut missing_chunk = None;
        for idx in 0..chunks {
            let data: Option<Vec<u8>> = tx.query_opt(
                "SELECT data FROM blob_chunks WHERE digest = ?1 AND idx = ?2",
                args![hex, idx],
                |r| r.get(0),
            )?;
            match data {
                Some(d) => hasher.update(&d),
                None => {
                    missing_chunk = Some(idx);
                    break;
                }
            }
        }
        let subject = format!("content sha256:{hex}");
        if let Some(idx) = missing_chunk {
            problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!("chunk {idx} is missing"),
            ));
            continue;
        }
        let (actual, len) = hasher.finish();
        bytes += len;
        if Digest::from_hex(hex).ok() != Some(actual) {
            problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!("digest mismatch: the stored bytes hash to {actual}"),
            ));
        } else if i64::try_from(len).ok() != Some(size) {
            problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!("size mismatch: recorded {size} bytes, stored {len}"),
            ));
        }
    }
    Ok((digests.len() as u64, bytes))
}

/// Artifact rows against their revisions: a history without gaps, and the
/// denormalized current state equal to the current revision.
fn histories(tx: &mut Tx<'_>, problems: &mut Vec<Problem>) -> Result<()> {
    tx.for_each(
        "SELECT a.id, a.revision, (SELECT count(*) FROM revisions r WHERE r.artifact_id = a.id) \
         FROM artifacts a WHERE a.revision <> (SELECT count(*) FROM revisions r WHERE r.artifact_id = a.id) \
         OR a.revision <> (SELECT max(revision) FROM revisions r WHERE r.artifact_id = a.id)",
        &[],
        |r| {
            let (id, rev, n): (Uuid, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            problems.push(problem(
                ProblemCategory::MissingReference,
                format!("artifact {id}"),
                format!(
                    "history has {n} revision rows for revisions 1 to {rev}: revisions are missing"
                ),
            ));
            Ok(())
        },
    )?;
    tx.for_each(
        "SELECT a.id, a.revision FROM artifacts a JOIN revisions r \
         ON r.artifact_id = a.id AND r.revision = a.revision \
         WHERE a.digest <> r.digest OR a.size <> r.size OR a.metadata <> r.metadata \
            OR a.media_type <> r.media_type OR a.lifecycle <> r.lifecycle \
            OR a.classification <> r.classification OR a.provenance <> r.provenance \
            OR a.title IS DISTINCT FROM r.title",
        &[],
        |r| {
            let (id, rev): (Uuid, i64) = (r.get(0)?, r.get(1)?);
            problems.push(problem(
                ProblemCategory::Corruption,
                format!("artifact {id}"),
                format!(
                    "its current state differs from its revision {rev} (edited outside Kontextual)"
                ),
            ));
            Ok(())
        },
    )
}

/// Streams the chain through the verifier, against `expect` (`verify
/// --expect-head`) or else the head recorded outside the database.
pub(crate) fn verify_chain(
    tx: &mut Tx<'_>,
    expect: Option<ChainHead>,
    recorded: Recorded,
) -> Result<(ChainReport, Option<String>)> {
    let (expect, source, unreadable) = crate::head_copy::expectation(expect, recorded);
    let mut verifier = ChainVerifier::new(expect);
    let mut after = 0;
    loop {
        let page = audit::records(tx, after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for rec in &page {
            verifier.push(rec);
        }
    }
    let mut report = verifier.finish();
    if let Some(path) = unreadable {
        report.problems.push(ChainProblem::HeadUnreadable { path });
    }
    Ok((report, source))
}

/// The snapshot as [`crate::integrity::AuditedRows`]: each method one of
/// the store's ordinary reads.
struct Rows<'t, 'c>(&'t mut Tx<'c>);

impl crate::integrity::AuditedRows for Rows<'_, '_> {
    fn audit_page(&mut self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        audit::records(self.0, after, limit)
    }
    fn revision(&mut self, ns: &Namespace, id: ArtifactId, rev: u64) -> Result<Option<Revision>> {
        knowledge::revision(self.0, ns, id, rev)
    }
    fn artifact(&mut self, ns: &Namespace, id: ArtifactId) -> Result<Option<Artifact>> {
        knowledge::artifact(self.0, ns, &ArtifactKey::Id(id))
    }
    fn revision_count(&mut self) -> Result<u64> {
        self.0
            .query_one("SELECT count(*) FROM revisions", &[], |r| r.get(0))
    }
    fn namespaces(&mut self) -> Result<Vec<Namespace>> {
        self.0
            .query(crate::integrity::NAMESPACES_SQL, &[], |r| r.parsed(0))
    }
    fn relations(&mut self, ns: &Namespace, page: &PageRequest) -> Result<Page<Relation>> {
        let q = RelationQuery {
            include_deleted: true,
            ..Default::default()
        };
        knowledge::relations(self.0, ns, &q, page)
    }
    fn keys(&mut self, ns: &Namespace, page: &PageRequest) -> Result<Page<ApiKey>> {
        access::api_keys(self.0, ns, page)
    }
    fn key(&mut self, id: &str) -> Result<Option<ApiKey>> {
        access::api_key(self.0, id)
    }
    fn grants(&mut self, ns: &Namespace) -> Result<Vec<Grant>> {
        access::grants(self.0, ns, None)
    }
    fn clearances(&mut self, ns: &Namespace) -> Result<Vec<Clearance>> {
        access::clearances(self.0, ns, None)
    }
    fn holds(&mut self, ns: &Namespace) -> Result<Vec<Hold>> {
        access::marks(self.0, Mark::Hold, ns, None)
    }
    fn quarantines(&mut self, ns: &Namespace) -> Result<Vec<Hold>> {
        access::marks(self.0, Mark::Quarantine, ns, None)
    }
}

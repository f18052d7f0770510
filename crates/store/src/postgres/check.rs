//! `verify` on PostgreSQL: one read-only snapshot (REPEATABLE READ), then
//! the same checks as the SQLite store — every blob re-hashed, references,
//! histories without gaps, current state equal to the current revision,
//! every revision against the fingerprint its audit record vouches for, and
//! the audit chain.

use crate::{ArtifactKey, CheckReport, Problem, ProblemCategory, Result};
use kontextual_model::audit::{ChainReport, ChainVerifier};
use kontextual_model::{ChainHead, Digest, DigestWriter, Namespace};

use crate::access::Mark;
use crate::access::read as access;
use crate::postgres::conn::Conn;
use crate::postgres::{pg_err, read, rows};
use crate::sql::Tx;

/// The snapshot as [`crate::integrity::AuditedRows`]: each method
/// one of the store's ordinary reads.
struct Rows<'a>(&'a mut Conn);

impl crate::integrity::AuditedRows for Rows<'_> {
    fn audit_page(&mut self, after: u64, limit: u32) -> Result<Vec<kontextual_model::AuditRecord>> {
        read::audit(self.0, after, limit)
    }
    fn revision(
        &mut self,
        ns: &Namespace,
        id: kontextual_model::ArtifactId,
        rev: u64,
    ) -> Result<Option<kontextual_model::Revision>> {
        read::revision(self.0, ns, id, rev)
    }
    fn artifact(
        &mut self,
        ns: &Namespace,
        id: kontextual_model::ArtifactId,
    ) -> Result<Option<kontextual_model::Artifact>> {
        read::artifact(self.0, ns, &ArtifactKey::Id(id))
    }
    fn revision_count(&mut self) -> Result<u64> {
        read::count(self.0, "SELECT count(*) FROM revisions")
    }
    fn namespaces(&mut self) -> Result<Vec<Namespace>> {
        self.0
            .query(crate::integrity::NAMESPACES_SQL, &[])
            .map_err(pg_err)?
            .iter()
            .map(|r| rows::parsed(r, 0))
            .collect()
    }
    fn relations(
        &mut self,
        ns: &Namespace,
        page: &crate::PageRequest,
    ) -> Result<crate::Page<kontextual_model::Relation>> {
        let q = crate::RelationQuery {
            include_deleted: true,
            ..Default::default()
        };
        read::relations(self.0, ns, &q, page)
    }
    fn keys(
        &mut self,
        ns: &Namespace,
        page: &crate::PageRequest,
    ) -> Result<crate::Page<kontextual_model::ApiKey>> {
        access::api_keys(&mut Tx::Postgres(self.0), ns, page)
    }
    fn key(&mut self, id: &str) -> Result<Option<kontextual_model::ApiKey>> {
        access::api_key(&mut Tx::Postgres(self.0), id)
    }
    fn grants(&mut self, ns: &Namespace) -> Result<Vec<kontextual_model::Grant>> {
        access::grants(&mut Tx::Postgres(self.0), ns, None)
    }
    fn clearances(&mut self, ns: &Namespace) -> Result<Vec<kontextual_model::Clearance>> {
        access::clearances(&mut Tx::Postgres(self.0), ns, None)
    }
    fn holds(&mut self, ns: &Namespace) -> Result<Vec<kontextual_model::Hold>> {
        access::marks(&mut Tx::Postgres(self.0), Mark::Hold, ns, None)
    }
    fn quarantines(&mut self, ns: &Namespace) -> Result<Vec<kontextual_model::Hold>> {
        access::marks(&mut Tx::Postgres(self.0), Mark::Quarantine, ns, None)
    }
}

fn problem(
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

/// Runs `f` in a read-only snapshot.
pub(crate) fn in_snapshot<T>(c: &mut Conn, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
    c.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", f)
}

/// Streams the chain through the verifier, against `--expect-head` or
/// else the head this process recorded (read before the snapshot began).
pub(crate) fn verify_chain(
    c: &mut Conn,
    expect: Option<ChainHead>,
    recorded: Option<(Option<ChainHead>, std::path::PathBuf)>,
) -> Result<(ChainReport, Option<String>)> {
    let (expect, source, unreadable) = crate::head_copy::expectation(expect, recorded);
    let mut verifier = ChainVerifier::new(expect);
    let mut after = 0;
    loop {
        let page = read::audit(c, after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for rec in &page {
            verifier.push(rec);
        }
    }
    let mut report = verifier.finish();
    if let Some(path) = unreadable {
        report
            .problems
            .push(kontextual_model::audit::ChainProblem::HeadUnreadable { path });
    }
    Ok((report, source))
}

pub(crate) fn run(
    c: &mut Conn,
    expect: Option<ChainHead>,
    recorded: Option<(Option<ChainHead>, std::path::PathBuf)>,
) -> Result<CheckReport> {
    let mut problems = Vec::new();
    // Revisions whose content should be present but whose blob is gone.
    for r in c
        .query(
            "SELECT r.artifact_id, r.revision, r.digest FROM revisions r \
             LEFT JOIN blobs b ON b.digest = r.digest \
             WHERE r.content_available AND b.digest IS NULL ORDER BY 1, 2",
            &[],
        )
        .map_err(pg_err)?
    {
        let id: uuid::Uuid = rows::get(&r, 0)?;
        let rev: i64 = rows::get(&r, 1)?;
        let d: String = rows::get(&r, 2)?;
        problems.push(problem(
            ProblemCategory::MissingReference,
            format!("artifact {id} revision {rev}"),
            format!("content sha256:{d} is missing"),
        ));
    }
    for r in c
        .query(
            "SELECT a.id, a.revision FROM artifacts a LEFT JOIN revisions r \
             ON r.artifact_id = a.id AND r.revision = a.revision WHERE r.artifact_id IS NULL",
            &[],
        )
        .map_err(pg_err)?
    {
        let id: uuid::Uuid = rows::get(&r, 0)?;
        let rev: i64 = rows::get(&r, 1)?;
        problems.push(problem(
            ProblemCategory::MissingReference,
            format!("artifact {id}"),
            format!("its current revision {rev} is missing"),
        ));
    }
    // Every blob, re-hashed from its bytes.
    let digests: Vec<String> = c
        .query("SELECT digest FROM blobs ORDER BY digest", &[])
        .map_err(pg_err)?
        .iter()
        .map(|r| rows::get(r, 0))
        .collect::<Result<_>>()?;
    let mut blob_bytes = 0u64;
    for hex in &digests {
        let row = c
            .query_one(
                "SELECT size, chunks, data FROM blobs WHERE digest = $1",
                &[hex],
            )
            .map_err(pg_err)?;
        let (size, chunks, inline): (i64, i64, Option<Vec<u8>>) = (
            rows::get(&row, 0)?,
            rows::get(&row, 1)?,
            rows::get(&row, 2)?,
        );
        let mut hasher = DigestWriter::new();
        if let Some(d) = &inline {
            hasher.update(d);
        }
        let mut missing = None;
        for idx in 0..chunks {
            match c
                .query_opt(
                    "SELECT data FROM blob_chunks WHERE digest = $1 AND idx = $2",
                    &[hex, &idx],
                )
                .map_err(pg_err)?
            {
                Some(r) => hasher.update(&rows::get::<Vec<u8>>(&r, 0)?),
                None => {
                    missing = Some(idx);
                    break;
                }
            }
        }
        let subject = format!("content sha256:{hex}");
        if let Some(idx) = missing {
            problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!("chunk {idx} is missing"),
            ));
            continue;
        }
        let (actual, len) = hasher.finish();
        blob_bytes += len;
        if Digest::from_hex(hex).ok() != Some(actual) {
            problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!("digest mismatch: the stored bytes hash to {actual}"),
            ));
        } else if len != size as u64 {
            problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!("size mismatch: recorded {size} bytes, stored {len}"),
            ));
        }
    }
    // Histories without gaps; the current state equal to its revision.
    for r in c
        .query(
            "SELECT a.id, a.revision, (SELECT count(*) FROM revisions r WHERE r.artifact_id = a.id) \
             FROM artifacts a WHERE a.revision <> (SELECT count(*) FROM revisions r WHERE r.artifact_id = a.id) \
             OR a.revision <> (SELECT max(revision) FROM revisions r WHERE r.artifact_id = a.id)",
            &[],
        )
        .map_err(pg_err)?
    {
        let id: uuid::Uuid = rows::get(&r, 0)?;
        let rev: i64 = rows::get(&r, 1)?;
        let n: i64 = rows::get(&r, 2)?;
        problems.push(problem(
            ProblemCategory::MissingReference,
            format!("artifact {id}"),
            format!("history has {n} revision rows for revisions 1 to {rev}: revisions are missing"),
        ));
    }
    for r in c
        .query(
            "SELECT a.id, a.revision FROM artifacts a JOIN revisions r \
             ON r.artifact_id = a.id AND r.revision = a.revision \
             WHERE a.digest <> r.digest OR a.size <> r.size OR a.metadata <> r.metadata \
                OR a.media_type <> r.media_type OR a.lifecycle <> r.lifecycle \
                OR a.classification <> r.classification OR a.provenance <> r.provenance \
                OR a.title IS DISTINCT FROM r.title",
            &[],
        )
        .map_err(pg_err)?
    {
        let id: uuid::Uuid = rows::get(&r, 0)?;
        let rev: i64 = rows::get(&r, 1)?;
        problems.push(problem(
            ProblemCategory::Corruption,
            format!("artifact {id}"),
            format!(
                "its current state differs from its revision {rev} (edited outside Kontextual)"
            ),
        ));
    }
    // Every revision and every row of authority against the audit chain.
    let revisions_checked = read::count(c, "SELECT count(*) FROM revisions")?;
    crate::integrity::cross_check(&mut Rows(c), &mut problems)?;
    let (audit, source) = verify_chain(c, expect, recorded)?;
    for p in &audit.problems {
        problems.push(problem(
            ProblemCategory::AuditChain,
            "audit chain",
            p.to_string(),
        ));
    }
    Ok(CheckReport {
        blobs_checked: digests.len() as u64,
        blob_bytes_checked: blob_bytes,
        revisions_checked,
        audit,
        audit_head_source: source,
        problems,
    })
}

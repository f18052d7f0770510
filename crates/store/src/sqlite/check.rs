//! `verify`: integrity of the engine, blobs, references, schema and audit chain.

use kontextual_model::audit::ChainVerifier;
use kontextual_model::{ChainHead, Digest, DigestWriter};
use rusqlite::{Connection, params};

use super::{SqliteBackend, read, schema, sql_err};
use crate::Result;
use crate::access::Mark;
use crate::access::read as access;
use crate::port::{CheckReport, Problem, ProblemCategory};
use crate::sql::Tx;

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

fn strings(conn: &Connection, sql: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(sql).map_err(sql_err)?;
    stmt.query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)
}

/// One read transaction: every check sees the same snapshot, so a purge or
/// write committed meanwhile cannot produce a false alarm.
struct Snap<'a> {
    conn: &'a Connection,
    /// The head kept outside the database, read *before* the snapshot began:
    /// it is written after each commit, so it can never be ahead of the
    /// snapshot (reading it later could see a newer head than the snapshot
    /// and cry "truncated" while writers run).
    recorded: Option<(Option<ChainHead>, std::path::PathBuf)>,
}

impl Snap<'_> {
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(self.conn)
    }
}

/// Runs `f` inside one read transaction (a consistent snapshot).
fn in_snapshot<T>(backend: &SqliteBackend, f: impl FnOnce(&Snap<'_>) -> Result<T>) -> Result<T> {
    let recorded = crate::head_copy::recorded(backend.head_file().as_deref());
    backend.read(|conn| {
        conn.execute_batch("BEGIN").map_err(sql_err)?;
        // a first read pins the snapshot now, after the head file was read
        let _ = read::audit_head(conn);
        let out = f(&Snap { conn, recorded });
        let _ = conn.execute_batch("COMMIT");
        out
    })
}

pub(super) fn run(backend: &SqliteBackend, expect_head: Option<ChainHead>) -> Result<CheckReport> {
    in_snapshot(backend, |snap| run_in(snap, expect_head))
}

pub(super) fn verify_audit(
    backend: &SqliteBackend,
    expect_head: Option<ChainHead>,
) -> Result<(kontextual_model::audit::ChainReport, Option<String>)> {
    in_snapshot(backend, |snap| verify_chain(snap, expect_head))
}

fn run_in(backend: &Snap<'_>, expect_head: Option<ChainHead>) -> Result<CheckReport> {
    let mut problems = Vec::new();

    backend.read(|conn| {
        for line in strings(conn, "PRAGMA integrity_check")? {
            if line != "ok" {
                problems.push(problem(ProblemCategory::Corruption, "database", line));
            }
        }
        let mut stmt = conn.prepare("PRAGMA foreign_key_check").map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql_err)?;
        for row in rows {
            let (table, rowid, parent) = row.map_err(sql_err)?;
            problems.push(problem(
                ProblemCategory::MissingReference,
                format!(
                    "{table} row {}",
                    rowid.map_or("?".to_owned(), |r| r.to_string())
                ),
                format!("points at a missing {parent} record"),
            ));
        }
        let state = schema::inspect(conn)?;
        for m in &state.pending {
            problems.push(problem(
                ProblemCategory::PendingMigration,
                format!("migration {} ({})", m.version, m.name),
                "not applied yet: run `kontextual db migrate`",
            ));
        }
        if !state.pending.is_empty() {
            return Ok(()); // later checks assume the full schema
        }
        // Revisions whose content should be present but whose blob is gone.
        let mut stmt = conn
            .prepare(
                "SELECT hex(r.artifact_id), r.revision, r.digest FROM revisions r \
                 LEFT JOIN blobs b ON b.digest = r.digest \
                 WHERE r.content_available = 1 AND b.digest IS NULL ORDER BY 1, 2",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql_err)?;
        for row in rows {
            let (id, rev, digest) = row.map_err(sql_err)?;
            problems.push(problem(
                ProblemCategory::MissingReference,
                format!("artifact {} revision {rev}", uuid_from_hex(&id)),
                format!("content sha256:{digest} is missing"),
            ));
        }
        // Artifacts whose current revision row is missing.
        for_artifact_rows(
            conn,
            "SELECT hex(a.id), a.revision FROM artifacts a LEFT JOIN revisions r \
             ON r.artifact_id = a.id AND r.revision = a.revision WHERE r.artifact_id IS NULL",
            |id, rev| {
                problems.push(problem(
                    ProblemCategory::MissingReference,
                    format!("artifact {id}"),
                    format!("its current revision {rev} is missing"),
                ))
            },
        )?;
        Ok(())
    })?;

    if problems
        .iter()
        .any(|p| p.category == ProblemCategory::PendingMigration)
    {
        return Ok(CheckReport {
            blobs_checked: 0,
            blob_bytes_checked: 0,
            revisions_checked: 0,
            audit: kontextual_model::audit::ChainReport {
                records: 0,
                head: None,
                problems: Vec::new(),
            },
            audit_head_source: None,
            problems,
        });
    }

    // Every blob: recompute its digest and size from its chunks, streaming.
    let digests = backend.read(|c| strings(c, "SELECT digest FROM blobs ORDER BY digest"))?;
    let mut blob_bytes = 0u64;
    for hex in &digests {
        let (size, chunks, inline): (i64, i64, Option<Vec<u8>>) = backend.read(|c| {
            c.query_row(
                "SELECT size, chunks, data FROM blobs WHERE digest = ?1",
                [hex],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(sql_err)
        })?;
        let mut hasher = DigestWriter::new();
        if let Some(data) = &inline {
            hasher.update(data);
        }
        let mut missing_chunk = None;
        for idx in 0..chunks {
            let data: Option<Vec<u8>> = backend.read(|c| {
                use rusqlite::OptionalExtension;
                c.query_row(
                    "SELECT data FROM blob_chunks WHERE digest = ?1 AND idx = ?2",
                    params![hex, idx],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err)
            })?;
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
    let revisions_checked = backend.read(|c| read::count(c, "SELECT count(*) FROM revisions"))?;
    cross_check_rows(backend, &mut problems)?;
    backend.read(|c| crate::integrity::cross_check(&mut Rows(c), &mut problems))?;

    let (audit, source) = verify_chain(backend, expect_head)?;
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

/// Artifact rows against their revisions: history without gaps, and the
/// denormalized current state equal to the current revision.
fn cross_check_rows(backend: &Snap<'_>, problems: &mut Vec<Problem>) -> Result<()> {
    backend.read(|c| {
        let mut stmt = c
            .prepare(
                "SELECT hex(a.id), a.revision, (SELECT count(*) FROM revisions r WHERE r.artifact_id = a.id) \
                 FROM artifacts a WHERE a.revision != (SELECT count(*) FROM revisions r WHERE r.artifact_id = a.id) \
                 OR a.revision != (SELECT max(revision) FROM revisions r WHERE r.artifact_id = a.id)",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
            .map_err(sql_err)?;
        for row in rows {
            let (id, rev, n) = row.map_err(sql_err)?;
            problems.push(problem(
                ProblemCategory::MissingReference,
                format!("artifact {}", uuid_from_hex(&id)),
                format!("history has {n} revision rows for revisions 1 to {rev}: revisions are missing"),
            ));
        }
        for_artifact_rows(
            c,
            "SELECT hex(a.id), a.revision FROM artifacts a JOIN revisions r \
             ON r.artifact_id = a.id AND r.revision = a.revision \
             WHERE a.digest != r.digest OR a.size != r.size OR a.metadata != r.metadata \
                OR a.media_type != r.media_type OR a.lifecycle != r.lifecycle \
                OR a.classification != r.classification OR a.provenance != r.provenance \
                OR a.title IS NOT r.title",
            |id, rev| {
                problems.push(problem(
                    ProblemCategory::Corruption,
                    format!("artifact {id}"),
                    format!("its current state differs from its revision {rev} (edited outside Kontextual)"),
                ))
            },
        )?;
        Ok(())
    })
}

/// The snapshot as [`crate::integrity::AuditedRows`]: each method one of
/// the store's ordinary reads.
struct Rows<'a>(&'a Connection);

impl crate::integrity::AuditedRows for Rows<'_> {
    fn audit_page(&mut self, after: u64, limit: u32) -> Result<Vec<kontextual_model::AuditRecord>> {
        read::audit(self.0, after, limit)
    }
    fn revision(
        &mut self,
        ns: &kontextual_model::Namespace,
        id: kontextual_model::ArtifactId,
        rev: u64,
    ) -> Result<Option<kontextual_model::Revision>> {
        read::revision(self.0, ns, id, rev)
    }
    fn artifact(
        &mut self,
        ns: &kontextual_model::Namespace,
        id: kontextual_model::ArtifactId,
    ) -> Result<Option<kontextual_model::Artifact>> {
        read::load_artifact(self.0, ns, &crate::ArtifactKey::Id(id))
    }
    fn revision_count(&mut self) -> Result<u64> {
        read::count(self.0, "SELECT count(*) FROM revisions")
    }
    fn namespaces(&mut self) -> Result<Vec<kontextual_model::Namespace>> {
        let mut stmt = self
            .0
            .prepare(crate::integrity::NAMESPACES_SQL)
            .map_err(sql_err)?;
        stmt.query_map([], |r| read::parsed(r, 0))
            .map_err(sql_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_err)
    }
    fn relations(
        &mut self,
        ns: &kontextual_model::Namespace,
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
        ns: &kontextual_model::Namespace,
        page: &crate::PageRequest,
    ) -> Result<crate::Page<kontextual_model::ApiKey>> {
        access::api_keys(&mut Tx::Sqlite(self.0), ns, page)
    }
    fn key(&mut self, id: &str) -> Result<Option<kontextual_model::ApiKey>> {
        access::api_key(&mut Tx::Sqlite(self.0), id)
    }
    fn grants(&mut self, ns: &kontextual_model::Namespace) -> Result<Vec<kontextual_model::Grant>> {
        access::grants(&mut Tx::Sqlite(self.0), ns, None)
    }
    fn clearances(
        &mut self,
        ns: &kontextual_model::Namespace,
    ) -> Result<Vec<kontextual_model::Clearance>> {
        access::clearances(&mut Tx::Sqlite(self.0), ns, None)
    }
    fn holds(&mut self, ns: &kontextual_model::Namespace) -> Result<Vec<kontextual_model::Hold>> {
        access::marks(&mut Tx::Sqlite(self.0), Mark::Hold, ns, None)
    }
    fn quarantines(
        &mut self,
        ns: &kontextual_model::Namespace,
    ) -> Result<Vec<kontextual_model::Hold>> {
        access::marks(&mut Tx::Sqlite(self.0), Mark::Quarantine, ns, None)
    }
}

/// Streams the audit chain in pages through the verifier.
fn verify_chain(
    backend: &Snap<'_>,
    expect_head: Option<ChainHead>,
) -> Result<(kontextual_model::audit::ChainReport, Option<String>)> {
    let (expect, source, unreadable) =
        crate::head_copy::expectation(expect_head, backend.recorded.clone());
    let mut verifier = ChainVerifier::new(expect);
    let mut after = 0;
    loop {
        let page = backend.read(|c| read::audit(c, after, 1000))?;
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

/// Runs a query yielding `(hex(artifact id), revision)` rows and hands each
/// row to `found` with the id spelled as a UUID.
fn for_artifact_rows(
    conn: &Connection,
    sql: &str,
    mut found: impl FnMut(String, i64),
) -> Result<()> {
    let mut stmt = conn.prepare(sql).map_err(sql_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sql_err)?;
    for row in rows {
        let (id, rev) = row.map_err(sql_err)?;
        found(uuid_from_hex(&id), rev);
    }
    Ok(())
}

fn uuid_from_hex(h: &str) -> String {
    hex::decode(h)
        .ok()
        .and_then(|b| uuid::Uuid::from_slice(&b).ok())
        .map_or_else(|| h.to_owned(), |u| u.to_string())
}

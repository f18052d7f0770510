//! Row mapping and queries. Listings use keyset cursors over their sort key.

use std::str::FromStr;

use kontextual_model::{
    Artifact, ArtifactId, AuditDraft, AuditRecord, ChainHead, Collection, CollectionId, Digest,
    EventDraft, Metadata, Namespace, OutboxEvent, Relation, RelationId, Revision, RunId,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use uuid::Uuid;

use super::{from_micros, sql_err};
use crate::port::{ArtifactKey, ArtifactQuery, Cursor, Page, PageRequest, RelationQuery};
use crate::{Result, StoreError};

pub(super) fn conv<E: std::error::Error + Send + Sync + 'static>(
    idx: usize,
    e: E,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

/// Reads a text column and parses it.
pub(super) fn parsed<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let s: String = r.get(idx)?;
    s.parse().map_err(|e| conv(idx, e))
}

fn digest(r: &Row<'_>, idx: usize) -> rusqlite::Result<Digest> {
    let s: String = r.get(idx)?;
    Digest::from_hex(&s).map_err(|e| conv(idx, e))
}

fn opt_digest(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Digest>> {
    let s: Option<String> = r.get(idx)?;
    s.map(|s| Digest::from_hex(&s).map_err(|e| conv(idx, e)))
        .transpose()
}

fn metadata(r: &Row<'_>, idx: usize) -> rusqlite::Result<Metadata> {
    let s: String = r.get(idx)?;
    Ok(Metadata::from_stored(s))
}

pub(super) fn json<T: serde::de::DeserializeOwned>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = r.get(idx)?;
    serde_json::from_str(&s).map_err(|e| conv(idx, e))
}

pub(super) fn ts(r: &Row<'_>, idx: usize) -> rusqlite::Result<kontextual_model::Timestamp> {
    from_micros(r.get(idx)?)
}

pub(super) fn u64_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(idx)? as u64)
}

pub(crate) const ARTIFACT_COLS: &str = "a.id, a.namespace, a.collection_id, c.name, a.name, a.artifact_type, \
     a.media_type, a.digest, a.size, a.metadata, a.lifecycle, a.classification, a.source_system, \
     a.provenance, a.state, a.revision, a.run_id, a.created_at, a.updated_at, a.title";

/// Hot statements, built once (their text is also their cache key).
static ARTIFACT_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM artifacts a WHERE a.id = ?1",
        ARTIFACT_COLS.replace(
            "c.name",
            "(SELECT c.name FROM collections c WHERE c.id = a.collection_id)"
        )
    )
});
static ARTIFACT_BY_NAME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM artifacts a WHERE a.namespace = ?1 AND a.collection_id = ?2 AND a.name = ?3",
        ARTIFACT_COLS.replacen("c.name", "?4", 1)
    )
});

pub(crate) fn artifact_row(r: &Row<'_>) -> rusqlite::Result<Artifact> {
    Ok(Artifact {
        id: ArtifactId(r.get(0)?),
        namespace: parsed(r, 1)?,
        collection_id: CollectionId(r.get(2)?),
        collection: parsed(r, 3)?,
        name: parsed(r, 4)?,
        artifact_type: r.get(5)?,
        media_type: r.get(6)?,
        digest: digest(r, 7)?,
        size: u64_col(r, 8)?,
        metadata: metadata(r, 9)?,
        lifecycle: parsed(r, 10)?,
        classification: parsed(r, 11)?,
        source_system: r.get(12)?,
        provenance: json(r, 13)?,
        state: parsed(r, 14)?,
        revision: u64_col(r, 15)?,
        run_id: r.get::<_, Option<Uuid>>(16)?.map(RunId),
        created_at: ts(r, 17)?,
        updated_at: ts(r, 18)?,
        title: r.get(19)?,
    })
}

pub(crate) fn load_artifact(
    conn: &Connection,
    ns: &Namespace,
    key: &ArtifactKey,
) -> Result<Option<Artifact>> {
    let row = match key {
        // By primary key alone, the collection name by a correlated
        // subquery: a join (or a second constraint) lets a STAT4 build mark
        // the statement for re-preparation on every bind, which profiling
        // showed as SQL parsing on every read.
        ArtifactKey::Id(id) => conn
            .prepare_cached(&ARTIFACT_BY_ID)
            .map_err(sql_err)?
            .query_row(params![id.0], artifact_row)
            .optional()
            .map(|a| a.filter(|a| &a.namespace == ns)),
        ArtifactKey::Name { collection, name } => {
            // Two simple lookups instead of one join: a parameter used twice
            // in one statement makes SQLite (with STAT4) re-prepare it on every bind.
            let Some(cid) = collection_id(conn, ns, collection.as_str())? else {
                return Ok(None);
            };
            return load_artifact_in(conn, ns, cid, collection.as_str(), name.as_str());
        }
    };
    row.map_err(sql_err)
}

const COLLECTION_COLS: &str = "c.id, c.namespace, c.name, c.description, c.created_at, \
     (SELECT count(*) FROM artifacts a WHERE a.collection_id = c.id AND a.state = 'live')";

fn collection_row(r: &Row<'_>) -> rusqlite::Result<Collection> {
    Ok(Collection {
        id: CollectionId(r.get(0)?),
        namespace: parsed(r, 1)?,
        name: parsed(r, 2)?,
        description: r.get(3)?,
        created_at: ts(r, 4)?,
        artifact_count: u64_col(r, 5)?,
    })
}

pub(crate) fn load_collection(
    conn: &Connection,
    ns: &Namespace,
    name: &str,
) -> Result<Option<Collection>> {
    conn.prepare_cached(&format!(
        "SELECT {COLLECTION_COLS} FROM collections c WHERE c.namespace = ?1 AND c.name = ?2"
    ))
    .map_err(sql_err)?
    .query_row(params![ns.as_str(), name], collection_row)
    .optional()
    .map_err(sql_err)
}

/// An artifact by collection id and name. No join: with a join, SQLite
/// derives a transitive constraint on the bound id and then re-prepares the
/// statement on every execution (STAT4 expmask), which dominated the write path.
pub(crate) fn load_artifact_in(
    conn: &Connection,
    ns: &Namespace,
    cid: CollectionId,
    collection: &str,
    name: &str,
) -> Result<Option<Artifact>> {
    conn.prepare_cached(&ARTIFACT_BY_NAME)
        .map_err(sql_err)?
        .query_row(params![ns.as_str(), cid.0, name, collection], artifact_row)
        .optional()
        .map_err(sql_err)
}

/// The id of a collection, without the artifact count (the write path).
pub(crate) fn collection_id(
    conn: &Connection,
    ns: &Namespace,
    name: &str,
) -> Result<Option<CollectionId>> {
    conn.prepare_cached("SELECT id FROM collections WHERE namespace = ?1 AND name = ?2")
        .map_err(sql_err)?
        .query_row(params![ns.as_str(), name], |r| Ok(CollectionId(r.get(0)?)))
        .optional()
        .map_err(sql_err)
}

/// Runs a listing query that fetches `limit + 1` rows to know whether more follow.
///
/// Every `LIMIT` here is written `LIMIT (SELECT ?N)`: with a plain bound
/// `LIMIT ?N` the bundled SQLite (STAT4) marks the statement for
/// re-preparation whenever the bound value changes — in practice on every
/// execution (measured with `SQLITE_STMTSTATUS_REPREPARE`); a scalar
/// subquery is evaluated once per execution and leaves the plan alone.
pub(super) fn page<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    limit: u32,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Result<Page<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
    let mut items: Vec<T> = stmt
        .query_map(args, map)
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(cursor_of)
    } else {
        None
    };
    Ok(Page { items, next })
}

pub(super) fn bad_cursor() -> StoreError {
    StoreError::InvalidInput(
        "the page cursor is malformed or belongs to another listing".to_owned(),
    )
}

pub(crate) fn collections(
    conn: &Connection,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<Collection>> {
    let limit = req.effective_limit();
    let after = req.after.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    page(
        conn,
        &format!(
            "SELECT {COLLECTION_COLS} FROM collections c WHERE c.namespace = ?1 AND c.name > ?2 \
             ORDER BY c.name LIMIT (SELECT ?3)"
        ),
        &[&ns.as_str(), &after, &(limit as i64 + 1)],
        limit,
        collection_row,
        |c| Cursor(c.name.to_string()),
    )
}

fn encode_pair(a: &str, b: &str) -> Cursor {
    Cursor(format!("{}:{}", hex::encode(a), hex::encode(b)))
}

fn decode_pair(c: &Cursor) -> Result<(String, String)> {
    let (a, b) = c.0.split_once(':').ok_or_else(bad_cursor)?;
    let dec = |s: &str| -> Result<String> {
        String::from_utf8(hex::decode(s).map_err(|_| bad_cursor())?).map_err(|_| bad_cursor())
    };
    Ok((dec(a)?, dec(b)?))
}

/// Lists artifacts in (collection name, artifact name) order with a keyset
/// cursor. Two index-ordered range scans instead of one filtered scan, so a
/// page costs O(log n + page) however deep the cursor: first the rest of the
/// cursor's collection, then the collections after it.
/// The listing filters of [`ArtifactQuery`]: `?4` collection, `?5` digest,
/// `?6` include deleted, `?8` allowed classifications, `?9` no quarantined.
const ARTIFACT_FILTERS: &str = "AND (?4 IS NULL OR c.name = ?4) AND (?5 IS NULL OR a.digest = ?5) \
     AND (?6 OR a.state = 'live') \
     AND (?8 IS NULL OR instr(?8, ',' || a.classification || ',') > 0) \
     AND (NOT ?9 OR NOT EXISTS (SELECT 1 FROM quarantines q WHERE q.artifact_id = a.id))";

pub(crate) fn count_artifacts(conn: &Connection, ns: &Namespace, q: &ArtifactQuery) -> Result<u64> {
    let sql = format!(
        "SELECT count(*) FROM collections c JOIN artifacts a \
           ON a.namespace = c.namespace AND a.collection_id = c.id \
         WHERE c.namespace = ?1 AND ?2 = ?2 AND ?3 = ?3 AND ?7 = ?7 {ARTIFACT_FILTERS}"
    );
    let n: i64 = conn
        .prepare_cached(&sql)
        .map_err(sql_err)?
        .query_row(
            params![
                ns.as_str(),
                "",
                "",
                q.collection.as_ref().map(|c| c.as_str()),
                q.digest.map(|d| d.hex()),
                q.include_deleted,
                0i64,
                q.classification_set(),
                q.exclude_quarantined
            ],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    Ok(n as u64)
}

pub(crate) fn artifacts(
    conn: &Connection,
    ns: &Namespace,
    q: &ArtifactQuery,
    req: &PageRequest,
) -> Result<Page<Artifact>> {
    let limit = req.effective_limit() as usize;
    let (after_c, after_n) = match &req.after {
        Some(c) => decode_pair(c)?,
        None => (String::new(), String::new()),
    };
    let coll = q.collection.as_ref().map(|c| c.as_str().to_owned());
    let dig = q.digest.map(|d| d.hex());
    let classes = q.classification_set();
    let filters = ARTIFACT_FILTERS;
    let mut items: Vec<Artifact> = Vec::with_capacity(limit + 1);
    let run = |sql: String,
               c_name: &str,
               a_name: &str,
               want: usize,
               items: &mut Vec<Artifact>|
     -> Result<()> {
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let rows = stmt
            .query_map(
                params![
                    ns.as_str(),
                    c_name,
                    a_name,
                    coll,
                    dig,
                    q.include_deleted,
                    want as i64,
                    classes,
                    q.exclude_quarantined
                ],
                artifact_row,
            )
            .map_err(sql_err)?;
        for row in rows {
            items.push(row.map_err(sql_err)?);
        }
        Ok(())
    };
    if req.after.is_some() {
        run(
            format!(
                "SELECT {ARTIFACT_COLS} FROM collections c JOIN artifacts a \
                   ON a.namespace = c.namespace AND a.collection_id = c.id \
                 WHERE c.namespace = ?1 AND c.name = ?2 AND a.name > ?3 {filters} \
                 ORDER BY a.name LIMIT (SELECT ?7)"
            ),
            &after_c,
            &after_n,
            limit + 1,
            &mut items,
        )?;
    }
    if items.len() <= limit {
        let want = limit + 1 - items.len();
        run(
            format!(
                "SELECT {ARTIFACT_COLS} FROM collections c JOIN artifacts a \
                   ON a.namespace = c.namespace AND a.collection_id = c.id \
                 WHERE c.namespace = ?1 AND c.name > ?2 AND ?3 = ?3 {filters} \
                 ORDER BY c.name, a.name LIMIT (SELECT ?7)"
            ),
            &after_c,
            "",
            want,
            &mut items,
        )?;
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|a| encode_pair(a.collection.as_str(), a.name.as_str()))
    } else {
        None
    };
    Ok(Page { items, next })
}

const REVISION_COLS: &str = "r.artifact_id, r.revision, r.change, r.prev_digest, r.digest, r.size, \
     r.media_type, r.metadata, r.lifecycle, r.classification, r.provenance, r.content_available, \
     r.actor, r.correlation_id, r.run_id, r.created_at, r.title";

fn revision_row(r: &Row<'_>) -> rusqlite::Result<Revision> {
    Ok(Revision {
        artifact_id: ArtifactId(r.get(0)?),
        revision: u64_col(r, 1)?,
        change: parsed(r, 2)?,
        prev_digest: opt_digest(r, 3)?,
        digest: digest(r, 4)?,
        size: u64_col(r, 5)?,
        media_type: r.get(6)?,
        metadata: metadata(r, 7)?,
        lifecycle: parsed(r, 8)?,
        classification: parsed(r, 9)?,
        provenance: json(r, 10)?,
        content_available: r.get(11)?,
        actor: parsed(r, 12)?,
        correlation_id: parsed(r, 13)?,
        run_id: r.get::<_, Option<Uuid>>(14)?.map(RunId),
        created_at: ts(r, 15)?,
        title: r.get(16)?,
    })
}

pub(crate) fn revisions(
    conn: &Connection,
    ns: &Namespace,
    id: ArtifactId,
    req: &PageRequest,
) -> Result<Page<Revision>> {
    let limit = req.effective_limit();
    let after: i64 = match &req.after {
        Some(c) => c.0.parse().map_err(|_| bad_cursor())?,
        None => 0,
    };
    page(
        conn,
        &format!(
            "SELECT {REVISION_COLS} FROM revisions r JOIN artifacts a ON a.id = r.artifact_id \
             WHERE r.artifact_id = ?1 AND a.namespace = ?2 AND r.revision > ?3 \
             ORDER BY r.revision LIMIT (SELECT ?4)"
        ),
        &[&id.0, &ns.as_str(), &after, &(limit as i64 + 1)],
        limit,
        revision_row,
        |r| Cursor(r.revision.to_string()),
    )
}

pub(crate) fn revision(
    conn: &Connection,
    ns: &Namespace,
    id: ArtifactId,
    rev: u64,
) -> Result<Option<Revision>> {
    conn.prepare_cached(&format!(
        "SELECT {REVISION_COLS} FROM revisions r JOIN artifacts a ON a.id = r.artifact_id \
         WHERE r.artifact_id = ?1 AND a.namespace = ?2 AND r.revision = ?3"
    ))
    .map_err(sql_err)?
    .query_row(params![id.0, ns.as_str(), rev as i64], revision_row)
    .optional()
    .map_err(sql_err)
}

const RELATION_COLS: &str = "id, namespace, rel_type, source_id, target_id, properties, revision, \
     deleted, created_at, updated_at";

fn relation_row(r: &Row<'_>) -> rusqlite::Result<Relation> {
    Ok(Relation {
        id: RelationId(r.get(0)?),
        namespace: parsed(r, 1)?,
        rel_type: parsed(r, 2)?,
        source: ArtifactId(r.get(3)?),
        target: ArtifactId(r.get(4)?),
        properties: metadata(r, 5)?,
        revision: u64_col(r, 6)?,
        deleted: r.get(7)?,
        created_at: ts(r, 8)?,
        updated_at: ts(r, 9)?,
    })
}

pub(crate) fn relation(
    conn: &Connection,
    ns: &Namespace,
    id: RelationId,
) -> Result<Option<Relation>> {
    conn.prepare_cached(&format!(
        "SELECT {RELATION_COLS} FROM relations WHERE id = ?1 AND namespace = ?2"
    ))
    .map_err(sql_err)?
    .query_row(params![id.0, ns.as_str()], relation_row)
    .optional()
    .map_err(sql_err)
}

pub(crate) fn relations(
    conn: &Connection,
    ns: &Namespace,
    q: &RelationQuery,
    req: &PageRequest,
) -> Result<Page<Relation>> {
    let limit = req.effective_limit();
    let after: Uuid = match &req.after {
        Some(c) => Uuid::parse_str(&c.0).map_err(|_| bad_cursor())?,
        None => Uuid::nil(),
    };
    let art = q.artifact.map(|a| a.0);
    let ty = q.rel_type.as_ref().map(|t| t.as_str().to_owned());
    // With an artifact, look it up through the source and target indexes
    // (then order the few matches); without, walk the primary key in order.
    let endpoint = if art.is_some() {
        "AND (source_id = ?3 OR target_id = ?3)"
    } else {
        "AND ?3 IS NULL"
    };
    page(
        conn,
        &format!(
            "SELECT {RELATION_COLS} FROM relations WHERE namespace = ?1 AND id > ?2 {endpoint} \
               AND (?4 IS NULL OR rel_type = ?4) AND (?5 OR deleted = 0) \
             ORDER BY id LIMIT (SELECT ?6)"
        ),
        &[
            &ns.as_str(),
            &after,
            &art,
            &ty,
            &q.include_deleted,
            &(limit as i64 + 1),
        ],
        limit,
        relation_row,
        |r| Cursor(r.id.to_string()),
    )
}

/// Live relations touching an artifact (for cascades).
pub(crate) fn live_relations_of(conn: &Connection, id: ArtifactId) -> Result<Vec<Relation>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {RELATION_COLS} FROM relations \
             WHERE (source_id = ?1 OR target_id = ?1) AND deleted = 0 ORDER BY id"
        ))
        .map_err(sql_err)?;
    stmt.query_map([id.0], relation_row)
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)
}

const AUDIT_COLS: &str = "seq, at, namespace, actor, correlation_id, run_id, action, target_kind, \
     target_id, target_name, revision, prev_digest, digest, outcome, detail, prev_hash, hash";

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let detail: Option<String> = r.get(14)?;
    Ok(AuditRecord {
        seq: u64_col(r, 0)?,
        at: ts(r, 1)?,
        namespace: parsed(r, 2)?,
        actor: parsed(r, 3)?,
        correlation_id: parsed(r, 4)?,
        run_id: r.get::<_, Option<Uuid>>(5)?.map(RunId),
        draft: AuditDraft {
            action: r.get(6)?,
            target_kind: r.get(7)?,
            target_id: r.get(8)?,
            target_name: r.get(9)?,
            revision: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
            prev_digest: opt_digest(r, 11)?,
            digest: opt_digest(r, 12)?,
            outcome: parsed(r, 13)?,
            detail: detail
                .map(|d| serde_json::from_str(&d).map_err(|e| conv(14, e)))
                .transpose()?,
        },
        prev_hash: r.get(15)?,
        hash: r.get(16)?,
    })
}

pub(crate) fn audit(conn: &Connection, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT (SELECT ?2)"
        ))
        .map_err(sql_err)?;
    stmt.query_map(
        params![crate::rules::seq_cursor(after), limit as i64],
        audit_row,
    )
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn audit_query(
    conn: &Connection,
    q: &crate::AuditQuery,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE seq > ?1 \
               AND (?2 IS NULL OR namespace = ?2) AND (?3 IS NULL OR actor = ?3) \
               AND (?4 IS NULL OR action = ?4 OR substr(action, 1, length(?4) + 1) = ?4 || '.') \
               AND (?5 IS NULL OR target_id = ?5 OR target_name = ?5) \
               AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) \
               AND (?9 IS NULL OR correlation_id = ?9) \
             ORDER BY seq LIMIT (SELECT ?8)"
        ))
        .map_err(sql_err)?;
    stmt.query_map(
        params![
            crate::rules::seq_cursor(after),
            q.namespace.as_ref().map(|n| n.as_str()),
            q.actor,
            q.action,
            q.target,
            q.since.map(super::micros),
            q.until.map(super::micros),
            limit as i64,
            q.correlation_id
        ],
        audit_row,
    )
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn audit_head(conn: &Connection) -> Result<Option<ChainHead>> {
    conn.prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .map_err(sql_err)?
        .query_row([], |r| {
            Ok(ChainHead {
                seq: u64_col(r, 0)?,
                hash: r.get(1)?,
            })
        })
        .optional()
        .map_err(sql_err)
}

pub(crate) fn outbox(conn: &Connection, after: u64, limit: u32) -> Result<Vec<OutboxEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, namespace, correlation_id, audit_seq, kind, subject, payload \
             FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT (SELECT ?2)",
        )
        .map_err(sql_err)?;
    stmt.query_map(
        params![crate::rules::seq_cursor(after), limit as i64],
        |r| {
            Ok(OutboxEvent {
                seq: u64_col(r, 0)?,
                at: ts(r, 1)?,
                namespace: parsed(r, 2)?,
                correlation_id: parsed(r, 3)?,
                audit_seq: u64_col(r, 4)?,
                draft: EventDraft {
                    kind: r.get(5)?,
                    subject: r.get(6)?,
                    payload: json(r, 7)?,
                },
            })
        },
    )
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn count(conn: &Connection, sql: &str) -> Result<u64> {
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(sql_err)
}

const PACKAGE_COLS: &str =
    "id, namespace, name, version, digest, manifest, actor, correlation_id, created_at";

fn package_row(r: &Row<'_>) -> rusqlite::Result<kontextual_model::ContextPackage> {
    Ok(kontextual_model::ContextPackage {
        id: r.get(0)?,
        namespace: parsed(r, 1)?,
        name: parsed(r, 2)?,
        version: u64_col(r, 3)?,
        digest: digest(r, 4)?,
        manifest: json(r, 5)?,
        actor: parsed(r, 6)?,
        correlation_id: parsed(r, 7)?,
        created_at: ts(r, 8)?,
    })
}

pub(crate) fn context_package(
    conn: &Connection,
    ns: &Namespace,
    name: &str,
    version: Option<u64>,
) -> Result<Option<kontextual_model::ContextPackage>> {
    let sql = format!(
        "SELECT {PACKAGE_COLS} FROM context_packages WHERE namespace = ?1 AND name = ?2 \
         AND (?3 IS NULL OR version = ?3) ORDER BY version DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)
        .map_err(sql_err)?
        .query_row(
            params![ns.as_str(), name, version.map(|v| v as i64)],
            package_row,
        )
        .optional()
        .map_err(sql_err)
}

pub(crate) fn context_packages(
    conn: &Connection,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<kontextual_model::ContextPackage>> {
    let limit = req.effective_limit();
    let after = req.after.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    page(
        conn,
        &format!(
            "SELECT {PACKAGE_COLS} FROM context_packages p WHERE namespace = ?1 AND name > ?2 \
             AND version = (SELECT max(version) FROM context_packages q \
                            WHERE q.namespace = p.namespace AND q.name = p.name) \
             ORDER BY name LIMIT (SELECT ?3)"
        ),
        &[&ns.as_str(), &after, &(limit as i64 + 1)],
        limit,
        package_row,
        |p| Cursor(p.name.to_string()),
    )
}

pub(crate) fn namespaces(conn: &Connection) -> Result<Vec<Namespace>> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT namespace FROM collections ORDER BY namespace")
        .map_err(sql_err)?;
    stmt.query_map([], |r| parsed(r, 0))
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)
}

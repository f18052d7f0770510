//! Reads: the same queries and orders as the SQLite store, keyset cursors
//! encoded the same way.

use crate::postgres::conn::Conn;
use crate::{
    ArtifactKey, ArtifactQuery, AuditQuery, Cursor, Page, PageRequest, RelationQuery, Result,
    StoreError,
};
use kontextual_model::{
    Artifact, ArtifactId, AuditRecord, ChainHead, Collection, CollectionId, Namespace, OutboxEvent,
    Relation, RelationId, Revision,
};
use uuid::Uuid;

use crate::postgres::pg_err;
use crate::postgres::rows::{
    self, ARTIFACT_COLS, AUDIT_COLS, COLLECTION_COLS, RELATION_COLS, REVISION_COLS,
};

fn bad_cursor() -> StoreError {
    StoreError::InvalidInput(
        "the page cursor is malformed or belongs to another listing".to_owned(),
    )
}

pub(crate) fn collection_id(
    c: &mut Conn,
    ns: &Namespace,
    name: &str,
) -> Result<Option<CollectionId>> {
    c.query_opt(
        "SELECT id FROM collections WHERE namespace = $1 AND name = $2",
        &[&ns.as_str(), &name],
    )
    .map_err(pg_err)?
    .map(|r| rows::get(&r, 0).map(CollectionId))
    .transpose()
}

pub(crate) fn collection(c: &mut Conn, ns: &Namespace, name: &str) -> Result<Option<Collection>> {
    c.query_opt(
        &format!(
            "SELECT {COLLECTION_COLS} FROM collections c WHERE c.namespace = $1 AND c.name = $2"
        ),
        &[&ns.as_str(), &name],
    )
    .map_err(pg_err)?
    .map(|r| rows::collection(&r))
    .transpose()
}

pub(crate) fn collections(
    c: &mut Conn,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<Collection>> {
    let limit = req.effective_limit();
    let after = req.after.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    let rs = c
        .query(
            &format!(
                "SELECT {COLLECTION_COLS} FROM collections c WHERE c.namespace = $1 AND c.name > $2 \
                 ORDER BY c.name LIMIT $3"
            ),
            &[&ns.as_str(), &after, &(limit as i64 + 1)],
        )
        .map_err(pg_err)?;
    let items = rs
        .iter()
        .map(rows::collection)
        .collect::<Result<Vec<_>>>()?;
    Ok(paged(items, limit as usize, |c| Cursor(c.name.to_string())))
}

fn paged<T>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}

pub(crate) fn artifact(
    c: &mut Conn,
    ns: &Namespace,
    key: &ArtifactKey,
) -> Result<Option<Artifact>> {
    let row = match key {
        ArtifactKey::Id(id) => c.query_opt(
            &format!(
                "SELECT {ARTIFACT_COLS} FROM artifacts a JOIN collections c ON c.id = a.collection_id \
                 WHERE a.id = $1 AND a.namespace = $2"
            ),
            &[&id.0, &ns.as_str()],
        ),
        ArtifactKey::Name { collection, name } => c.query_opt(
            &format!(
                "SELECT {ARTIFACT_COLS} FROM artifacts a JOIN collections c ON c.id = a.collection_id \
                 WHERE c.namespace = $1 AND c.name = $2 AND a.name = $3"
            ),
            &[&ns.as_str(), &collection.as_str(), &name.as_str()],
        ),
    }
    .map_err(pg_err)?;
    row.map(|r| rows::artifact(&r)).transpose()
}

pub(crate) fn encode_pair(a: &str, b: &str) -> Cursor {
    Cursor(format!("{}:{}", hex::encode(a), hex::encode(b)))
}

pub(crate) fn decode_pair(c: &Cursor) -> Result<(String, String)> {
    let (a, b) = c.0.split_once(':').ok_or_else(bad_cursor)?;
    let dec = |s: &str| -> Result<String> {
        String::from_utf8(hex::decode(s).map_err(|_| bad_cursor())?).map_err(|_| bad_cursor())
    };
    Ok((dec(a)?, dec(b)?))
}

/// Artifacts in (collection name, artifact name) byte order — `COLLATE "C"`,
/// as SQLite compares — with the same keyset cursor as SQLite.
/// The visibility filters of [`ArtifactQuery`]: `$8` allowed
/// classifications, `$9` no quarantined artifacts.
const ARTIFACT_FILTERS: &str = "AND ($8::text IS NULL OR strpos($8, ',' || a.classification || ',') > 0) \
     AND (NOT $9 OR NOT EXISTS (SELECT 1 FROM quarantines q WHERE q.artifact_id = a.id))";

pub(crate) fn count_artifacts(c: &mut Conn, ns: &Namespace, q: &ArtifactQuery) -> Result<u64> {
    let coll = q.collection.as_ref().map(|c| c.as_str().to_owned());
    let dig = q.digest.map(|d| d.hex());
    let row = c
        .query_one(
            &format!(
                "SELECT count(*) FROM collections c JOIN artifacts a \
                   ON a.namespace = c.namespace AND a.collection_id = c.id \
                 WHERE c.namespace = $1 AND $2::text = $2 AND $3::text = $3 \
                   AND ($4::text IS NULL OR c.name = $4) AND ($5::text IS NULL OR a.digest = $5) \
                   AND ($6 OR a.state = 'live') AND $7::bigint = $7 {ARTIFACT_FILTERS}"
            ),
            &[
                &ns.as_str(),
                &"",
                &"",
                &coll,
                &dig,
                &q.include_deleted,
                &0i64,
                &q.classification_set(),
                &q.exclude_quarantined,
            ],
        )
        .map_err(pg_err)?;
    let n: i64 = row.try_get(0).map_err(pg_err)?;
    Ok(n as u64)
}

pub(crate) fn artifacts(
    c: &mut Conn,
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
    let rs = c
        .query(
            &format!(
                "SELECT {ARTIFACT_COLS} FROM collections c JOIN artifacts a \
                   ON a.namespace = c.namespace AND a.collection_id = c.id \
                 WHERE c.namespace = $1 \
                   AND (c.name, a.name) > ($2, $3) \
                   AND ($4::text IS NULL OR c.name = $4) AND ($5::text IS NULL OR a.digest = $5) \
                   AND ($6 OR a.state = 'live') {ARTIFACT_FILTERS} \
                 ORDER BY c.name, a.name LIMIT $7"
            ),
            &[
                &ns.as_str(),
                &after_c,
                &after_n,
                &coll,
                &dig,
                &q.include_deleted,
                &(limit as i64 + 1),
                &q.classification_set(),
                &q.exclude_quarantined,
            ],
        )
        .map_err(pg_err)?;
    let items = rs.iter().map(rows::artifact).collect::<Result<Vec<_>>>()?;
    Ok(paged(items, limit, |a| {
        encode_pair(a.collection.as_str(), a.name.as_str())
    }))
}

pub(crate) fn revisions(
    c: &mut Conn,
    ns: &Namespace,
    id: ArtifactId,
    req: &PageRequest,
) -> Result<Page<Revision>> {
    let limit = req.effective_limit();
    let after: i64 = match &req.after {
        Some(c) => c.0.parse().map_err(|_| bad_cursor())?,
        None => 0,
    };
    let rs = c
        .query(
            &format!(
                "SELECT {REVISION_COLS} FROM revisions r JOIN artifacts a ON a.id = r.artifact_id \
                 WHERE r.artifact_id = $1 AND a.namespace = $2 AND r.revision > $3 \
                 ORDER BY r.revision LIMIT $4"
            ),
            &[&id.0, &ns.as_str(), &after, &(limit as i64 + 1)],
        )
        .map_err(pg_err)?;
    let items = rs.iter().map(rows::revision).collect::<Result<Vec<_>>>()?;
    Ok(paged(items, limit as usize, |r| {
        Cursor(r.revision.to_string())
    }))
}

pub(crate) fn revision(
    c: &mut Conn,
    ns: &Namespace,
    id: ArtifactId,
    rev: u64,
) -> Result<Option<Revision>> {
    c.query_opt(
        &format!(
            "SELECT {REVISION_COLS} FROM revisions r JOIN artifacts a ON a.id = r.artifact_id \
             WHERE r.artifact_id = $1 AND a.namespace = $2 AND r.revision = $3"
        ),
        &[&id.0, &ns.as_str(), &(rev as i64)],
    )
    .map_err(pg_err)?
    .map(|r| rows::revision(&r))
    .transpose()
}

pub(crate) fn relation(c: &mut Conn, ns: &Namespace, id: RelationId) -> Result<Option<Relation>> {
    c.query_opt(
        &format!("SELECT {RELATION_COLS} FROM relations WHERE id = $1 AND namespace = $2"),
        &[&id.0, &ns.as_str()],
    )
    .map_err(pg_err)?
    .map(|r| rows::relation(&r))
    .transpose()
}

pub(crate) fn relations(
    c: &mut Conn,
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
    let rs = c
        .query(
            &format!(
                "SELECT {RELATION_COLS} FROM relations WHERE namespace = $1 AND id > $2 \
                   AND ($3::uuid IS NULL OR source_id = $3 OR target_id = $3) \
                   AND ($4::text IS NULL OR rel_type = $4) AND ($5 OR NOT deleted) \
                 ORDER BY id LIMIT $6"
            ),
            &[
                &ns.as_str(),
                &after,
                &art,
                &ty,
                &q.include_deleted,
                &(limit as i64 + 1),
            ],
        )
        .map_err(pg_err)?;
    let items = rs.iter().map(rows::relation).collect::<Result<Vec<_>>>()?;
    Ok(paged(items, limit as usize, |r| Cursor(r.id.to_string())))
}

pub(crate) fn live_relations_of(c: &mut Conn, id: ArtifactId) -> Result<Vec<Relation>> {
    c.query(
        &format!(
            "SELECT {RELATION_COLS} FROM relations \
             WHERE (source_id = $1 OR target_id = $1) AND NOT deleted ORDER BY id"
        ),
        &[&id.0],
    )
    .map_err(pg_err)?
    .iter()
    .map(rows::relation)
    .collect()
}

pub(crate) fn audit(c: &mut Conn, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
    c.query(
        &format!("SELECT {AUDIT_COLS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[&crate::rules::seq_cursor(after), &(limit as i64)],
    )
    .map_err(pg_err)?
    .iter()
    .map(rows::audit)
    .collect()
}

pub(crate) fn audit_query(
    c: &mut Conn,
    q: &AuditQuery,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>> {
    c.query(
        &format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE seq > $1 \
               AND ($2::text IS NULL OR namespace = $2) AND ($3::text IS NULL OR actor = $3) \
               AND ($4::text IS NULL OR action = $4 OR left(action, length($4) + 1) = $4 || '.') \
               AND ($5::text IS NULL OR target_id = $5 OR target_name = $5) \
               AND ($6::bigint IS NULL OR at >= $6) AND ($7::bigint IS NULL OR at < $7) \
               AND ($9::text IS NULL OR correlation_id = $9) \
             ORDER BY seq LIMIT $8"
        ),
        &[
            &crate::rules::seq_cursor(after),
            &q.namespace.as_ref().map(|n| n.as_str()),
            &q.actor,
            &q.action,
            &q.target,
            &q.since.map(|t| t.as_microsecond()),
            &q.until.map(|t| t.as_microsecond()),
            &(limit as i64),
            &q.correlation_id,
        ],
    )
    .map_err(pg_err)?
    .iter()
    .map(rows::audit)
    .collect()
}

pub(crate) fn audit_head(c: &mut Conn) -> Result<Option<ChainHead>> {
    c.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )
    .map_err(pg_err)?
    .map(|r| {
        Ok(ChainHead {
            seq: rows::u64c(&r, 0)?,
            hash: rows::get(&r, 1)?,
        })
    })
    .transpose()
}

pub(crate) fn outbox(c: &mut Conn, after: u64, limit: u32) -> Result<Vec<OutboxEvent>> {
    c.query(
        "SELECT seq, at, namespace, correlation_id, audit_seq, kind, subject, payload \
         FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&crate::rules::seq_cursor(after), &(limit as i64)],
    )
    .map_err(pg_err)?
    .iter()
    .map(rows::outbox)
    .collect()
}

pub(crate) fn count(c: &mut Conn, sql: &str) -> Result<u64> {
    let r = c.query_one(sql, &[]).map_err(pg_err)?;
    Ok(rows::get::<Option<i64>>(&r, 0)?.unwrap_or(0) as u64)
}

pub(crate) fn context_package(
    c: &mut Conn,
    ns: &Namespace,
    name: &str,
    version: Option<u64>,
) -> Result<Option<kontextual_model::ContextPackage>> {
    c.query_opt(
        &format!(
            "SELECT {} FROM context_packages WHERE namespace = $1 AND name = $2 \
             AND ($3::bigint IS NULL OR version = $3) ORDER BY version DESC LIMIT 1",
            rows::PACKAGE_COLS
        ),
        &[&ns.as_str(), &name, &version.map(|v| v as i64)],
    )
    .map_err(pg_err)?
    .map(|r| rows::package(&r))
    .transpose()
}

pub(crate) fn context_packages(
    c: &mut Conn,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<kontextual_model::ContextPackage>> {
    let limit = req.effective_limit();
    let after = req.after.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    let rs = c
        .query(
            &format!(
                "SELECT {} FROM context_packages p WHERE namespace = $1 AND name > $2 \
                 AND version = (SELECT max(version) FROM context_packages q \
                                WHERE q.namespace = p.namespace AND q.name = p.name) \
                 ORDER BY name LIMIT $3",
                rows::PACKAGE_COLS
            ),
            &[&ns.as_str(), &after, &(limit as i64 + 1)],
        )
        .map_err(pg_err)?;
    let items = rs.iter().map(rows::package).collect::<Result<Vec<_>>>()?;
    Ok(paged(items, limit as usize, |p| Cursor(p.name.to_string())))
}

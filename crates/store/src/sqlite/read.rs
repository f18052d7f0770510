//! Row mapping and queries. Listings use keyset cursors over their sort key.

use std::str::FromStr;

use kontextual_model::{
    Artifact, ArtifactId, AuditRecord, ChainHead, CollectionId, Digest, Namespace, Relation,
    Revision, RunId,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use uuid::Uuid;

use super::{from_micros, sql_err};
use crate::port::{ArtifactKey, Cursor, Page, PageRequest, RelationQuery};
use crate::sql::Tx;
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

pub(crate) fn count(conn: &Connection, sql: &str) -> Result<u64> {
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(sql_err)
}

const RUN_COLS: &str =
    "id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id";

fn run_row(r: &Row<'_>) -> rusqlite::Result<kontextual_model::Run> {
    let manifest: Option<String> = r.get(6)?;
    Ok(kontextual_model::Run {
        id: RunId(r.get(0)?),
        namespace: parsed(r, 1)?,
        kind: r.get(2)?,
        status: parsed(r, 3)?,
        actor: parsed(r, 4)?,
        input: json(r, 5)?,
        manifest: manifest
            .map(|m| serde_json::from_str(&m).map_err(|e| conv(6, e)))
            .transpose()?,
        owner: r.get(7)?,
        started_at: ts(r, 8)?,
        finished_at: r.get::<_, Option<i64>>(9)?.map(from_micros).transpose()?,
        job_id: r.get::<_, Option<Uuid>>(10)?.map(kontextual_model::JobId),
    })
}

pub(crate) fn run(
    conn: &Connection,
    ns: &Namespace,
    id: RunId,
) -> Result<Option<kontextual_model::Run>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM runs WHERE id = ?1 AND namespace = ?2"
    ))
    .map_err(sql_err)?
    .query_row(params![id.0, ns.as_str()], run_row)
    .optional()
    .map_err(sql_err)
}

pub(crate) fn run_summary(
    conn: &Connection,
    ns: &Namespace,
    id: RunId,
) -> Result<Option<kontextual_model::RunSummary>> {
    conn.prepare_cached(
        "SELECT id, kind, status, started_at, finished_at FROM runs WHERE id = ?1 AND namespace = ?2",
    )
    .map_err(sql_err)?
    .query_row(params![id.0, ns.as_str()], |r| {
        Ok(kontextual_model::RunSummary {
            id: RunId(r.get(0)?),
            kind: r.get(1)?,
            status: parsed(r, 2)?,
            started_at: ts(r, 3)?,
            finished_at: r.get::<_, Option<i64>>(4)?.map(from_micros).transpose()?,
        })
    })
    .optional()
    .map_err(sql_err)
}

pub(crate) fn runs(
    conn: &Connection,
    ns: &Namespace,
    status: Option<kontextual_model::RunStatus>,
    req: &PageRequest,
) -> Result<Page<kontextual_model::Run>> {
    let limit = req.effective_limit();
    let before: Uuid = match &req.after {
        Some(c) => Uuid::parse_str(&c.0).map_err(|_| bad_cursor())?,
        None => Uuid::max(),
    };
    let status = status.map(|s| s.as_str());
    page(
        conn,
        &format!(
            "SELECT {RUN_COLS} FROM runs WHERE namespace = ?1 AND id < ?2 AND (?3 IS NULL OR status = ?3) \
             ORDER BY id DESC LIMIT (SELECT ?4)"
        ),
        &[&ns.as_str(), &before, &status, &(limit as i64 + 1)],
        limit,
        run_row,
        |r| Cursor(r.id.to_string()),
    )
}

pub(crate) fn running_runs(conn: &Connection) -> Result<Vec<kontextual_model::Run>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLS} FROM runs WHERE status = 'running' ORDER BY id"
        ))
        .map_err(sql_err)?;
    stmt.query_map([], run_row)
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)
}

pub(crate) fn run_steps(
    conn: &Connection,
    ns: &Namespace,
    id: RunId,
) -> Result<Vec<kontextual_model::RunStep>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT s.run_id, s.seq, s.name, s.status, s.detail, s.at FROM run_steps s \
             JOIN runs r ON r.id = s.run_id WHERE s.run_id = ?1 AND r.namespace = ?2 ORDER BY s.seq",
        )
        .map_err(sql_err)?;
    stmt.query_map(params![id.0, ns.as_str()], |r| {
        Ok(kontextual_model::RunStep {
            run_id: RunId(r.get(0)?),
            seq: u64_col(r, 1)?,
            name: r.get(2)?,
            status: parsed(r, 3)?,
            detail: json(r, 4)?,
            at: ts(r, 5)?,
        })
    })
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

const KEY_COLS: &str = "id, namespace, name, actor, scopes, secret_hash, created_at, expires_at, revoked_at, last_used_at";

fn key_row(r: &Row<'_>) -> rusqlite::Result<kontextual_model::ApiKey> {
    let opt_ts = |i: usize| -> rusqlite::Result<Option<kontextual_model::Timestamp>> {
        r.get::<_, Option<i64>>(i)?.map(from_micros).transpose()
    };
    Ok(kontextual_model::ApiKey {
        id: r.get(0)?,
        namespace: parsed(r, 1)?,
        name: r.get(2)?,
        actor: parsed(r, 3)?,
        scopes: json(r, 4)?,
        secret_hash: Some(digest(r, 5)?),
        created_at: ts(r, 6)?,
        expires_at: opt_ts(7)?,
        revoked_at: opt_ts(8)?,
        last_used_at: opt_ts(9)?,
    })
}

pub(crate) fn api_key(conn: &Connection, id: &str) -> Result<Option<kontextual_model::ApiKey>> {
    conn.prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"))
        .map_err(sql_err)?
        .query_row(params![id], key_row)
        .optional()
        .map_err(sql_err)
}

pub(crate) fn api_keys(
    conn: &Connection,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<kontextual_model::ApiKey>> {
    let limit = req.effective_limit();
    let (after_name, after_id) = match &req.after {
        Some(c) => decode_pair(c)?,
        None => (String::new(), String::new()),
    };
    let mut page = page(
        conn,
        &format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE namespace = ?1 AND (name, id) > (?2, ?3) \
             ORDER BY name, id LIMIT (SELECT ?4)"
        ),
        &[&ns.as_str(), &after_name, &after_id, &(limit as i64 + 1)],
        limit,
        key_row,
        |k| encode_pair(&k.name, &k.id),
    )?;
    for k in &mut page.items {
        k.secret_hash = None;
    }
    Ok(page)
}

pub(crate) fn grants(
    conn: &Connection,
    ns: &Namespace,
    actor: Option<&kontextual_model::Actor>,
) -> Result<Vec<kontextual_model::Grant>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, namespace, actor, permission, scope_kind, scope_name, created_at FROM grants \
             WHERE namespace = ?1 AND (?2 IS NULL OR actor = ?2) ORDER BY id",
        )
        .map_err(sql_err)?;
    stmt.query_map(params![ns.as_str(), actor.map(|a| a.to_string())], |r| {
        let kind: String = r.get(4)?;
        let name: String = r.get(5)?;
        // An unknown kind is an error, never a wider grant.
        let scope = match kind.as_str() {
            "namespace" => kontextual_model::GrantScope::Namespace,
            "collection" => {
                kontextual_model::GrantScope::Collection(name.parse().map_err(|e| conv(5, e))?)
            }
            "artifact" => {
                let (c, n) = name.split_once('/').unwrap_or((&name, ""));
                kontextual_model::GrantScope::Artifact(
                    c.parse().map_err(|e| conv(5, e))?,
                    n.parse().map_err(|e| conv(5, e))?,
                )
            }
            other => {
                return Err(conv(
                    4,
                    StoreError::Corrupted(format!("unknown grant scope {other:?}")),
                ));
            }
        };
        Ok(kontextual_model::Grant {
            id: r.get(0)?,
            namespace: parsed(r, 1)?,
            actor: parsed(r, 2)?,
            permission: parsed(r, 3)?,
            scope,
            created_at: ts(r, 6)?,
        })
    })
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn holds(
    conn: &Connection,
    ns: &Namespace,
    artifact: Option<ArtifactId>,
) -> Result<Vec<kontextual_model::Hold>> {
    marks(
        conn,
        "SELECT h.artifact_id, h.namespace, c.name, a.name, h.reason, h.actor, h.created_at \
         FROM holds h JOIN artifacts a ON a.id = h.artifact_id \
         JOIN collections c ON c.id = a.collection_id \
         WHERE h.namespace = ?1 AND (?2 IS NULL OR h.artifact_id = ?2) ORDER BY h.artifact_id",
        ns,
        artifact,
    )
}

pub(crate) fn quarantines(
    conn: &Connection,
    ns: &Namespace,
    artifact: Option<ArtifactId>,
) -> Result<Vec<kontextual_model::Hold>> {
    marks(
        conn,
        "SELECT q.artifact_id, q.namespace, c.name, a.name, q.reason, q.actor, q.created_at \
         FROM quarantines q JOIN artifacts a ON a.id = q.artifact_id \
         JOIN collections c ON c.id = a.collection_id \
         WHERE q.namespace = ?1 AND (?2 IS NULL OR q.artifact_id = ?2) ORDER BY q.artifact_id",
        ns,
        artifact,
    )
}

/// Rows that mark artifacts (holds, quarantines), with the artifact's names.
fn marks(
    conn: &Connection,
    sql: &str,
    ns: &Namespace,
    artifact: Option<ArtifactId>,
) -> Result<Vec<kontextual_model::Hold>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
    stmt.query_map(params![ns.as_str(), artifact.map(|a| a.0)], |r| {
        Ok(kontextual_model::Hold {
            artifact_id: ArtifactId(r.get(0)?),
            namespace: parsed(r, 1)?,
            collection: parsed(r, 2)?,
            name: parsed(r, 3)?,
            reason: r.get(4)?,
            actor: parsed(r, 5)?,
            created_at: ts(r, 6)?,
        })
    })
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn clearances(
    conn: &Connection,
    ns: &Namespace,
    actor: Option<&kontextual_model::Actor>,
) -> Result<Vec<kontextual_model::Clearance>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT namespace, actor, level, set_at FROM clearances \
             WHERE namespace = ?1 AND (?2 IS NULL OR actor = ?2) ORDER BY actor",
        )
        .map_err(sql_err)?;
    stmt.query_map(params![ns.as_str(), actor.map(|a| a.to_string())], |r| {
        Ok(kontextual_model::Clearance {
            namespace: parsed(r, 0)?,
            actor: parsed(r, 1)?,
            level: parsed(r, 2)?,
            set_at: ts(r, 3)?,
        })
    })
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn access_log(
    conn: &Connection,
    ns: &Namespace,
    actor: Option<&kontextual_model::Actor>,
    since: Option<kontextual_model::Timestamp>,
    after: u64,
    limit: u32,
) -> Result<Vec<kontextual_model::AccessEntry>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, namespace, actor, key_id, action, target, correlation_id FROM access_log \
             WHERE namespace = ?1 AND seq > ?2 AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR at >= ?4) \
             ORDER BY seq LIMIT (SELECT ?5)",
        )
        .map_err(sql_err)?;
    stmt.query_map(
        params![
            ns.as_str(),
            crate::rules::seq_cursor(after),
            actor.map(|a| a.to_string()),
            since.map(super::micros),
            limit as i64
        ],
        |r| {
            Ok(kontextual_model::AccessEntry {
                seq: u64_col(r, 0)?,
                at: ts(r, 1)?,
                namespace: parsed(r, 2)?,
                actor: parsed(r, 3)?,
                key_id: r.get(4)?,
                action: r.get(5)?,
                target: r.get(6)?,
                correlation_id: r.get(7)?,
            })
        },
    )
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

// Shared reads, for the SQLite code of other domains that still takes a
// `&Connection` (they go once those domains move onto `crate::sql`).

pub(crate) fn load_artifact(
    conn: &Connection,
    ns: &Namespace,
    key: &ArtifactKey,
) -> Result<Option<Artifact>> {
    crate::knowledge::read::artifact(&mut Tx::Sqlite(conn), ns, key)
}

pub(crate) fn collection_id(
    conn: &Connection,
    ns: &Namespace,
    name: &str,
) -> Result<Option<CollectionId>> {
    crate::knowledge::read::collection_id(&mut Tx::Sqlite(conn), ns, name)
}

pub(crate) fn audit(conn: &Connection, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
    crate::audit::records(&mut Tx::Sqlite(conn), after, limit)
}

pub(crate) fn audit_head(conn: &Connection) -> Result<Option<ChainHead>> {
    crate::audit::head(&mut Tx::Sqlite(conn))
}

pub(crate) fn revision(
    conn: &Connection,
    ns: &Namespace,
    id: ArtifactId,
    rev: u64,
) -> Result<Option<Revision>> {
    crate::knowledge::read::revision(&mut Tx::Sqlite(conn), ns, id, rev)
}

pub(crate) fn relations(
    conn: &Connection,
    ns: &Namespace,
    q: &RelationQuery,
    req: &PageRequest,
) -> Result<Page<Relation>> {
    crate::knowledge::read::relations(&mut Tx::Sqlite(conn), ns, q, req)
}

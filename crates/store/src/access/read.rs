//! Access reads and their row mapping.

use kontextual_model::{
    AccessEntry, Actor, ApiKey, ArtifactId, Clearance, Digest, Grant, GrantScope, Hold, Namespace,
    Timestamp,
};

use super::Mark;
use crate::knowledge::read::{decode_pair, encode_pair};
use crate::port::{Page, PageRequest};
use crate::sql::{Dialect, Row, Tx, args};
use crate::{Result, StoreError};

/// The columns [`key_row`] reads, as a literal so statements are `concat!`ed
/// once at compile time (the PostgreSQL statement cache is keyed by text).
macro_rules! key_cols {
    () => {
        "id, namespace, name, actor, scopes, secret_hash, created_at, expires_at, revoked_at, last_used_at"
    };
}

fn key_row(r: &Row<'_>) -> Result<ApiKey> {
    let scopes: String = r.get(4)?;
    let secret_hash: String = r.get(5)?;
    Ok(ApiKey {
        id: r.get(0)?,
        namespace: r.parsed(1)?,
        name: r.get(2)?,
        actor: r.parsed(3)?,
        scopes: serde_json::from_str(&scopes)
            .map_err(|e| StoreError::Corrupted(format!("unreadable key scopes: {e}")))?,
        // the stored form is bare hex: no prefix is accepted here
        secret_hash: Some(
            Digest::from_hex(&secret_hash)
                .map_err(|e| StoreError::Corrupted(format!("unreadable key secret hash: {e}")))?,
        ),
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        last_used_at: r.get(9)?,
    })
}

/// A key with its secret's hash (for authentication and the audit
/// fingerprint); any namespace.
pub(crate) fn api_key(tx: &mut Tx<'_>, id: &str) -> Result<Option<ApiKey>> {
    tx.query_opt(
        concat!("SELECT ", key_cols!(), " FROM api_keys WHERE id = ?1"),
        args![id],
        key_row,
    )
}

/// A namespace's keys by (name, id), without their hashes.
pub(crate) fn api_keys(tx: &mut Tx<'_>, ns: &Namespace, req: &PageRequest) -> Result<Page<ApiKey>> {
    let limit = req.effective_limit();
    let (after_name, after_id) = match &req.after {
        Some(cursor) => decode_pair(cursor)?,
        None => (String::new(), String::new()),
    };
    // Both engines order bytewise: SQLite's default collation is, and
    // PostgreSQL's `name` column is declared `COLLATE "C"` but `id` is not.
    // `LIMIT (SELECT ?4)`: see `sqlite::read::page` (a plain bound limit
    // makes SQLite re-prepare the statement on every execution).
    let sql = match tx.dialect() {
        Dialect::Sqlite => concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE namespace = ?1 AND (name, id) > (?2, ?3) \
             ORDER BY name, id LIMIT (SELECT ?4)"
        ),
        Dialect::Postgres => concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE namespace = ?1 AND (name, id COLLATE \"C\") > (?2, ?3) \
             ORDER BY name, id COLLATE \"C\" LIMIT ?4"
        ),
    };
    let mut items = tx.query(
        sql,
        args![ns.as_str(), after_name, after_id, u64::from(limit) + 1],
        key_row,
    )?;
    for k in &mut items {
        k.secret_hash = None;
    }
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|k| encode_pair(&k.name, &k.id))
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Whether any key is unrevoked (authentication is required once one is).
pub(crate) fn has_api_keys(tx: &mut Tx<'_>) -> Result<bool> {
    tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)",
        &[],
        |r| r.get(0),
    )
}

/// A grant's scope as stored: a kind and a name (`collection/name` for an
/// artifact, empty for the namespace).
pub(crate) fn scope_parts(scope: &GrantScope) -> (&'static str, String) {
    match scope {
        GrantScope::Namespace => ("namespace", String::new()),
        GrantScope::Collection(c) => ("collection", c.to_string()),
        GrantScope::Artifact(c, n) => ("artifact", format!("{c}/{n}")),
    }
}

fn grant_scope(kind: &str, name: &str) -> Result<GrantScope> {
    let bad = |e: kontextual_model::ModelError| {
        StoreError::Corrupted(format!("grant scope {name:?}: {e}"))
    };
    // An unknown kind is an error, never a wider grant.
    Ok(match kind {
        "namespace" => GrantScope::Namespace,
        "collection" => GrantScope::Collection(name.parse().map_err(bad)?),
        "artifact" => {
            let (collection, artifact) = name.split_once('/').unwrap_or((name, ""));
            GrantScope::Artifact(
                collection.parse().map_err(bad)?,
                artifact.parse().map_err(bad)?,
            )
        }
        other => {
            return Err(StoreError::Corrupted(format!(
                "unknown grant scope {other:?}"
            )));
        }
    })
}

/// A namespace's grants (of one actor, if given), in id order.
pub(crate) fn grants(tx: &mut Tx<'_>, ns: &Namespace, actor: Option<&Actor>) -> Result<Vec<Grant>> {
    // `CAST(?2 AS TEXT)`: PostgreSQL cannot type a parameter that is only
    // tested for NULL; the cast is a no-op on SQLite.
    tx.query(
        "SELECT id, namespace, actor, permission, scope_kind, scope_name, created_at FROM grants \
         WHERE namespace = ?1 AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2) ORDER BY id",
        args![ns.as_str(), actor.map(|a| a.to_string())],
        |r| {
            let kind: String = r.get(4)?;
            let name: String = r.get(5)?;
            Ok(Grant {
                id: r.get(0)?,
                namespace: r.parsed(1)?,
                actor: r.parsed(2)?,
                permission: r.parsed(3)?,
                scope: grant_scope(&kind, &name)?,
                created_at: r.get(6)?,
            })
        },
    )
}

/// A namespace's clearances (of one actor, if given), by actor.
pub(crate) fn clearances(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    actor: Option<&Actor>,
) -> Result<Vec<Clearance>> {
    // Actors in byte order on both engines (PostgreSQL's column has the
    // database's collation).
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "SELECT namespace, actor, level, set_at FROM clearances \
             WHERE namespace = ?1 AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2) ORDER BY actor"
        }
        Dialect::Postgres => {
            "SELECT namespace, actor, level, set_at FROM clearances \
             WHERE namespace = ?1 AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2) ORDER BY actor COLLATE \"C\""
        }
    };
    tx.query(sql, args![ns.as_str(), actor.map(|a| a.to_string())], |r| {
        Ok(Clearance {
            namespace: r.parsed(0)?,
            actor: r.parsed(1)?,
            level: r.parsed(2)?,
            set_at: r.get(3)?,
        })
    })
}

/// The listing of one mark table, with each marked artifact's names.
macro_rules! marks_sql {
    ($table:literal) => {
        // `m.artifact_id = ?2` comes before `?2 IS NULL` so PostgreSQL
        // types the parameter (uuid) from its first use.
        concat!(
            "SELECT m.artifact_id, m.namespace, c.name, a.name, m.reason, m.actor, m.created_at \
             FROM ",
            $table,
            " m JOIN artifacts a ON a.id = m.artifact_id \
             JOIN collections c ON c.id = a.collection_id \
             WHERE m.namespace = ?1 AND (m.artifact_id = ?2 OR ?2 IS NULL) ORDER BY m.artifact_id"
        )
    };
}

/// A namespace's holds or quarantines (of one artifact, if given), in
/// artifact id order.
pub(crate) fn marks(
    tx: &mut Tx<'_>,
    mark: Mark,
    ns: &Namespace,
    artifact: Option<ArtifactId>,
) -> Result<Vec<Hold>> {
    let sql = match mark {
        Mark::Hold => marks_sql!("holds"),
        Mark::Quarantine => marks_sql!("quarantines"),
    };
    tx.query(sql, args![ns.as_str(), artifact.map(|a| a.0)], |r| {
        Ok(Hold {
            artifact_id: ArtifactId(r.get(0)?),
            namespace: r.parsed(1)?,
            collection: r.parsed(2)?,
            name: r.parsed(3)?,
            reason: r.get(4)?,
            actor: r.parsed(5)?,
            created_at: r.get(6)?,
        })
    })
}

/// The most a single access-log page returns.
const ACCESS_LOG_PAGE_MAX: u32 = 10_000;

/// A namespace's access log after `after`, in sequence order; `limit` is
/// clamped to 1..=10,000.
pub(crate) fn access_log(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    actor: Option<&Actor>,
    since: Option<Timestamp>,
    after: u64,
    limit: u32,
) -> Result<Vec<AccessEntry>> {
    let limit = limit.clamp(1, ACCESS_LOG_PAGE_MAX);
    // CASTs type the NULL-tested parameters for PostgreSQL; `LIMIT (SELECT
    // …)` keeps SQLite from re-preparing (see `api_keys`).
    tx.query(
        "SELECT seq, at, namespace, actor, key_id, action, target, correlation_id FROM access_log \
         WHERE namespace = ?1 AND seq > ?2 AND (CAST(?3 AS TEXT) IS NULL OR actor = ?3) \
         AND (CAST(?4 AS BIGINT) IS NULL OR at >= ?4) \
         ORDER BY seq LIMIT (SELECT CAST(?5 AS BIGINT))",
        args![
            ns.as_str(),
            crate::rules::seq_cursor(after),
            actor.map(|a| a.to_string()),
            since,
            limit
        ],
        |r| {
            Ok(AccessEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                namespace: r.parsed(2)?,
                actor: r.parsed(3)?,
                key_id: r.get(4)?,
                action: r.get(5)?,
                target: r.get(6)?,
                correlation_id: r.get(7)?,
            })
        },
    )
}

//! Access control records on PostgreSQL: API keys, grants, clearances,
//! legal holds and quarantines ("marks"), idempotency reservations and the
//! read access log — the same rules as the SQLite store.

use crate::{ArtifactKey, Page, PageRequest, Result, StoreError, WriteContext};
use kontextual_model::{
    Actor, ArtifactId, Change, Digest, GrantPermission, GrantScope, Namespace, Timestamp,
};
use postgres::Row;

use crate::postgres::conn::Conn;

use crate::postgres::{pg_err, read, rows};

const KEY_COLS: &str = "id, namespace, name, actor, scopes, secret_hash, created_at, expires_at, revoked_at, last_used_at";

fn key_row(r: &Row) -> Result<kontextual_model::ApiKey> {
    Ok(kontextual_model::ApiKey {
        id: rows::get(r, 0)?,
        namespace: rows::parsed(r, 1)?,
        name: rows::get(r, 2)?,
        actor: rows::parsed(r, 3)?,
        scopes: rows::json(r, 4)?,
        secret_hash: Some(rows::digest(r, 5)?),
        created_at: rows::ts(r, 6)?,
        expires_at: rows::opt_ts(r, 7)?,
        revoked_at: rows::opt_ts(r, 8)?,
        last_used_at: rows::opt_ts(r, 9)?,
    })
}

pub(crate) fn api_key(c: &mut Conn, id: &str) -> Result<Option<kontextual_model::ApiKey>> {
    c.query_opt(
        &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1"),
        &[&id],
    )
    .map_err(pg_err)?
    .map(|r| key_row(&r))
    .transpose()
}

pub(crate) fn api_keys(
    c: &mut Conn,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<kontextual_model::ApiKey>> {
    let limit = req.effective_limit() as usize;
    let (after_name, after_id) = match &req.after {
        Some(cur) => read::decode_pair(cur)?,
        None => (String::new(), String::new()),
    };
    let mut items = c
        .query(
            &format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE namespace = $1 AND (name, id COLLATE \"C\") > ($2, $3) \
                 ORDER BY name, id COLLATE \"C\" LIMIT $4"
            ),
            &[&ns.as_str(), &after_name, &after_id, &(limit as i64 + 1)],
        )
        .map_err(pg_err)?
        .iter()
        .map(key_row)
        .collect::<Result<Vec<_>>>()?;
    for k in &mut items {
        k.secret_hash = None;
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|k| read::encode_pair(&k.name, &k.id))
    } else {
        None
    };
    Ok(Page { items, next })
}

pub(crate) fn create_key(
    c: &mut Conn,
    ctx: &WriteContext,
    mut key: kontextual_model::ApiKey,
    now: Timestamp,
) -> Result<Change> {
    let hash = key.secret_hash.ok_or_else(|| {
        StoreError::InvalidInput("an API key needs the hash of its secret".to_owned())
    })?;
    if api_key(c, &key.id)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: format!("API key {}", key.id),
        });
    }
    key.namespace = ctx.namespace.clone();
    key.created_at = now;
    key.revoked_at = None;
    key.last_used_at = None;
    c.execute(
        "INSERT INTO api_keys (id, namespace, name, actor, scopes, secret_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &key.id,
            &key.namespace.as_str(),
            &key.name,
            &key.actor.to_string(),
            &serde_json::to_string(&key.scopes).unwrap_or_else(|_| "[]".into()),
            &hash.hex(),
            &now.as_microsecond(),
            &key.expires_at.map(|t| t.as_microsecond()),
        ],
    )
    .map_err(pg_err)?;
    let row_hash = kontextual_model::change::key_fingerprint(&key, Some(&hash));
    key.secret_hash = None;
    Ok(Change::KeyCreated { key, row_hash })
}

pub(crate) fn revoke_key(
    c: &mut Conn,
    ctx: &WriteContext,
    id: &str,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let Some(mut key) = api_key(c, id)?.filter(|k| k.namespace == ctx.namespace) else {
        return Err(StoreError::NotFound {
            what: format!("API key {id}"),
        });
    };
    let secret_hash = key.secret_hash.take();
    if key.revoked_at.is_some() {
        return Ok(Vec::new());
    }
    c.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1",
        &[&id, &now.as_microsecond()],
    )
    .map_err(pg_err)?;
    key.revoked_at = Some(now);
    let row_hash = kontextual_model::change::key_fingerprint(&key, secret_hash.as_ref());
    Ok(vec![Change::KeyRevoked { key, row_hash }])
}

pub(crate) fn touch_keys(c: &mut Conn, uses: &[(String, Timestamp)]) -> Result<()> {
    for (id, at) in uses {
        c.execute(
            "UPDATE api_keys SET last_used_at = greatest(coalesce(last_used_at, 0), $2) WHERE id = $1",
            &[id, &at.as_microsecond()],
        )
        .map_err(pg_err)?;
    }
    Ok(())
}

fn scope_parts(scope: &GrantScope) -> (&'static str, String) {
    match scope {
        GrantScope::Namespace => ("namespace", String::new()),
        GrantScope::Collection(c) => ("collection", c.to_string()),
        GrantScope::Artifact(c, n) => ("artifact", format!("{c}/{n}")),
    }
}

pub(crate) fn grants(
    c: &mut Conn,
    ns: &Namespace,
    actor: Option<&Actor>,
) -> Result<Vec<kontextual_model::Grant>> {
    c.query(
        "SELECT id, namespace, actor, permission, scope_kind, scope_name, created_at FROM grants \
         WHERE namespace = $1 AND ($2::text IS NULL OR actor = $2) ORDER BY id",
        &[&ns.as_str(), &actor.map(|a| a.to_string())],
    )
    .map_err(pg_err)?
    .iter()
    .map(|r| {
        let kind: String = rows::get(r, 4)?;
        let name: String = rows::get(r, 5)?;
        let bad = |e: String| StoreError::Corrupted(format!("grant scope {name:?}: {e}"));
        // An unknown kind is an error, never a wider grant.
        let scope = match kind.as_str() {
            "namespace" => GrantScope::Namespace,
            "collection" => GrantScope::Collection(
                name.parse()
                    .map_err(|e: kontextual_model::ModelError| bad(e.to_string()))?,
            ),
            "artifact" => {
                let (cn, n) = name.split_once('/').unwrap_or((&name, ""));
                GrantScope::Artifact(
                    cn.parse()
                        .map_err(|e: kontextual_model::ModelError| bad(e.to_string()))?,
                    n.parse()
                        .map_err(|e: kontextual_model::ModelError| bad(e.to_string()))?,
                )
            }
            other => {
                return Err(StoreError::Corrupted(format!(
                    "unknown grant scope {other:?}"
                )));
            }
        };
        Ok(kontextual_model::Grant {
            id: rows::get(r, 0)?,
            namespace: rows::parsed(r, 1)?,
            actor: rows::parsed(r, 2)?,
            permission: rows::parsed(r, 3)?,
            scope,
            created_at: rows::ts(r, 6)?,
        })
    })
    .collect()
}

pub(crate) fn create_grant(
    c: &mut Conn,
    ctx: &WriteContext,
    actor: Actor,
    permission: GrantPermission,
    scope: GrantScope,
    now: Timestamp,
) -> Result<Change> {
    let (kind, name) = scope_parts(&scope);
    match &scope {
        GrantScope::Collection(cn)
            if read::collection_id(c, &ctx.namespace, cn.as_str())?.is_none() =>
        {
            return Err(StoreError::NotFound {
                what: format!("collection {cn}"),
            });
        }
        GrantScope::Artifact(cn, n) => {
            let key = ArtifactKey::Name {
                collection: cn.clone(),
                name: n.clone(),
            };
            read::artifact(c, &ctx.namespace, &key)?
                .ok_or_else(|| StoreError::not_found(key.to_string()))?;
        }
        _ => {}
    }
    let grant = kontextual_model::Grant {
        id: uuid::Uuid::now_v7(),
        namespace: ctx.namespace.clone(),
        actor,
        permission,
        scope,
        created_at: now,
    };
    let n = c
        .execute(
            "INSERT INTO grants (id, namespace, actor, permission, scope_kind, scope_name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &grant.id,
                &grant.namespace.as_str(),
                &grant.actor.to_string(),
                &grant.permission.as_str(),
                &kind,
                &name,
                &now.as_microsecond(),
            ],
        )
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::AlreadyExists {
            what: format!(
                "grant of {} {} on {}",
                grant.actor, grant.permission, grant.scope
            ),
        });
    }
    Ok(Change::GrantCreated { grant })
}

pub(crate) fn delete_grant(
    c: &mut Conn,
    ctx: &WriteContext,
    actor: &Actor,
    permission: GrantPermission,
    scope: &GrantScope,
) -> Result<Change> {
    let found = grants(c, &ctx.namespace, Some(actor))?
        .into_iter()
        .find(|g| g.permission == permission && &g.scope == scope)
        .ok_or_else(|| StoreError::NotFound {
            what: format!("grant of {actor} {permission} on {scope}"),
        })?;
    c.execute("DELETE FROM grants WHERE id = $1", &[&found.id])
        .map_err(pg_err)?;
    Ok(Change::GrantDeleted { grant: found })
}

pub(crate) fn clearances(
    c: &mut Conn,
    ns: &Namespace,
    actor: Option<&Actor>,
) -> Result<Vec<kontextual_model::Clearance>> {
    c.query(
        "SELECT namespace, actor, level, set_at FROM clearances \
         WHERE namespace = $1 AND ($2::text IS NULL OR actor = $2) ORDER BY actor COLLATE \"C\"",
        &[&ns.as_str(), &actor.map(|a| a.to_string())],
    )
    .map_err(pg_err)?
    .iter()
    .map(|r| {
        Ok(kontextual_model::Clearance {
            namespace: rows::parsed(r, 0)?,
            actor: rows::parsed(r, 1)?,
            level: rows::parsed(r, 2)?,
            set_at: rows::ts(r, 3)?,
        })
    })
    .collect()
}

pub(crate) fn set_clearance(
    c: &mut Conn,
    ctx: &WriteContext,
    actor: Actor,
    level: kontextual_model::Classification,
    now: Timestamp,
) -> Result<Change> {
    c.execute(
        "INSERT INTO clearances (namespace, actor, level, set_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (namespace, actor) DO UPDATE SET level = excluded.level, set_at = excluded.set_at",
        &[&ctx.namespace.as_str(), &actor.to_string(), &level.as_str(), &now.as_microsecond()],
    )
    .map_err(pg_err)?;
    Ok(Change::ClearanceSet {
        clearance: kontextual_model::Clearance {
            namespace: ctx.namespace.clone(),
            actor,
            level,
            set_at: now,
        },
    })
}

/// Marks an artifact can carry: a legal hold or a quarantine.
#[derive(Clone, Copy)]
pub(crate) enum Mark {
    Hold,
    Quarantine,
}

impl Mark {
    fn table(self) -> &'static str {
        match self {
            Mark::Hold => "holds",
            Mark::Quarantine => "quarantines",
        }
    }

    fn describe(self, a: &kontextual_model::Artifact) -> String {
        match self {
            Mark::Hold => format!("a legal hold on {}/{}", a.collection, a.name),
            Mark::Quarantine => format!("a quarantine of {}/{}", a.collection, a.name),
        }
    }
}

pub(crate) fn marks(
    c: &mut Conn,
    mark: Mark,
    ns: &Namespace,
    artifact: Option<ArtifactId>,
) -> Result<Vec<kontextual_model::Hold>> {
    c.query(
        &format!(
            "SELECT m.artifact_id, m.namespace, c.name, a.name, m.reason, m.actor, m.created_at \
             FROM {} m JOIN artifacts a ON a.id = m.artifact_id \
             JOIN collections c ON c.id = a.collection_id \
             WHERE m.namespace = $1 AND ($2::uuid IS NULL OR m.artifact_id = $2) ORDER BY m.artifact_id",
            mark.table()
        ),
        &[&ns.as_str(), &artifact.map(|a| a.0)],
    )
    .map_err(pg_err)?
    .iter()
    .map(|r| {
        Ok(kontextual_model::Hold {
            artifact_id: ArtifactId(rows::get(r, 0)?),
            namespace: rows::parsed(r, 1)?,
            collection: rows::parsed(r, 2)?,
            name: rows::parsed(r, 3)?,
            reason: rows::get(r, 4)?,
            actor: rows::parsed(r, 5)?,
            created_at: rows::ts(r, 6)?,
        })
    })
    .collect()
}

pub(crate) fn set_mark(
    c: &mut Conn,
    ctx: &WriteContext,
    key: &ArtifactKey,
    reason: String,
    mark: Mark,
    now: Timestamp,
) -> Result<kontextual_model::Hold> {
    let a = read::artifact(c, &ctx.namespace, key)?
        .ok_or_else(|| StoreError::not_found(key.to_string()))?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(StoreError::InvalidInput(format!(
            "{} needs a reason of 1-1000 characters",
            mark.describe(&a)
        )));
    }
    if marks(c, mark, &ctx.namespace, Some(a.id))?.pop().is_some() {
        return Err(StoreError::AlreadyExists {
            what: mark.describe(&a),
        });
    }
    c.execute(
        &format!(
            "INSERT INTO {} (artifact_id, namespace, reason, actor, created_at) VALUES ($1, $2, $3, $4, $5)",
            mark.table()
        ),
        &[&a.id.0, &ctx.namespace.as_str(), &reason, &ctx.actor.to_string(), &now.as_microsecond()],
    )
    .map_err(pg_err)?;
    marks(c, mark, &ctx.namespace, Some(a.id))?
        .pop()
        .ok_or_else(|| {
            StoreError::Internal(format!("{} vanished while it was set", mark.describe(&a)))
        })
}

pub(crate) fn release_mark(
    c: &mut Conn,
    ctx: &WriteContext,
    key: &ArtifactKey,
    mark: Mark,
) -> Result<kontextual_model::Hold> {
    let a = read::artifact(c, &ctx.namespace, key)?
        .ok_or_else(|| StoreError::not_found(key.to_string()))?;
    let found = marks(c, mark, &ctx.namespace, Some(a.id))?
        .pop()
        .ok_or_else(|| StoreError::not_found(mark.describe(&a)))?;
    c.execute(
        &format!("DELETE FROM {} WHERE artifact_id = $1", mark.table()),
        &[&a.id.0],
    )
    .map_err(pg_err)?;
    Ok(found)
}

pub(crate) fn begin_idempotent(
    c: &mut Conn,
    scope: &str,
    key: &str,
    request_hash: Digest,
    expire_before: Timestamp,
    now: Timestamp,
) -> Result<Change> {
    use kontextual_model::Idempotency;
    c.execute(
        "DELETE FROM idempotency WHERE created_at < $1",
        &[&expire_before.as_microsecond()],
    )
    .map_err(pg_err)?;
    let found = c
        .query_opt(
            "SELECT request_hash, status, content_type, body FROM idempotency WHERE scope = $1 AND key = $2",
            &[&scope, &key],
        )
        .map_err(pg_err)?;
    let state = match found {
        None => {
            c.execute(
                "INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4)",
                &[&scope, &key, &request_hash.hex(), &now.as_microsecond()],
            )
            .map_err(pg_err)?;
            Idempotency::Started
        }
        Some(r) => {
            let hash: String = rows::get(&r, 0)?;
            let status: Option<i64> = rows::get(&r, 1)?;
            if hash != request_hash.hex() {
                Idempotency::Mismatch
            } else {
                match status {
                    None => Idempotency::InFlight,
                    Some(status) => Idempotency::Replay {
                        status: status as u16,
                        content_type: rows::get::<Option<String>>(&r, 2)?.unwrap_or_default(),
                        body: rows::get::<Option<Vec<u8>>>(&r, 3)?.unwrap_or_default(),
                    },
                }
            }
        }
    };
    Ok(Change::Idempotency(state))
}

pub(crate) fn finish_idempotent(
    c: &mut Conn,
    scope: &str,
    key: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<()> {
    c.execute(
        "UPDATE idempotency SET status = $3, content_type = $4, body = $5 WHERE scope = $1 AND key = $2",
        &[&scope, &key, &(status as i64), &content_type, &body],
    )
    .map_err(pg_err)?;
    Ok(())
}

pub(crate) fn abandon_idempotent(c: &mut Conn, scope: &str, key: &str) -> Result<()> {
    c.execute(
        "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND status IS NULL",
        &[&scope, &key],
    )
    .map_err(pg_err)?;
    Ok(())
}

pub(crate) fn record_access(c: &mut Conn, entries: &[kontextual_model::AccessEntry]) -> Result<()> {
    for e in entries {
        c.execute(
            "INSERT INTO access_log (at, namespace, actor, key_id, action, target, correlation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &e.at.as_microsecond(),
                &e.namespace.as_str(),
                &e.actor.to_string(),
                &e.key_id,
                &e.action,
                &e.target,
                &e.correlation_id,
            ],
        )
        .map_err(pg_err)?;
    }
    Ok(())
}

pub(crate) fn access_log(
    c: &mut Conn,
    ns: &Namespace,
    actor: Option<&Actor>,
    since: Option<Timestamp>,
    after: u64,
    limit: u32,
) -> Result<Vec<kontextual_model::AccessEntry>> {
    c.query(
        "SELECT seq, at, namespace, actor, key_id, action, target, correlation_id FROM access_log \
         WHERE namespace = $1 AND seq > $2 AND ($3::text IS NULL OR actor = $3) AND ($4::bigint IS NULL OR at >= $4) \
         ORDER BY seq LIMIT $5",
        &[
            &ns.as_str(),
            &crate::rules::seq_cursor(after),
            &actor.map(|a| a.to_string()),
            &since.map(|t| t.as_microsecond()),
            &(limit as i64),
        ],
    )
    .map_err(pg_err)?
    .iter()
    .map(|r| {
        Ok(kontextual_model::AccessEntry {
            seq: rows::u64c(r, 0)?,
            at: rows::ts(r, 1)?,
            namespace: rows::parsed(r, 2)?,
            actor: rows::parsed(r, 3)?,
            key_id: rows::get(r, 4)?,
            action: rows::get(r, 5)?,
            target: rows::get(r, 6)?,
            correlation_id: rows::get(r, 7)?,
        })
    })
    .collect()
}

pub(crate) fn prune_access_log(c: &mut Conn, older_than: Timestamp) -> Result<()> {
    c.execute(
        "DELETE FROM access_log WHERE at < $1",
        &[&older_than.as_microsecond()],
    )
    .map_err(pg_err)?;
    Ok(())
}

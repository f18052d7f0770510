//! Access writes: each applies one operation inside the engine's
//! transaction and returns the changes it made (the caller appends their
//! audit records and events). Bookkeeping writes (key use, the access log,
//! idempotency answers) return nothing: they are never audited.

use kontextual_model::{
    AccessEntry, Actor, ApiKey, Artifact, Change, Classification, Clearance, Digest, Grant,
    GrantPermission, GrantScope, Hold, Idempotency, Timestamp,
};

use super::{Mark, read};
use crate::port::{ArtifactKey, WriteContext};
use crate::sql::{Tx, args};
use crate::{Result, StoreError};

/// The artifact `key` names in the batch's namespace, or `NotFound`.
fn existing(tx: &mut Tx<'_>, ctx: &WriteContext, key: &ArtifactKey) -> Result<Artifact> {
    crate::knowledge::read::artifact(tx, &ctx.namespace, key)?
        .ok_or_else(|| StoreError::not_found(key.to_string()))
}

/// Creates a key in the batch's namespace; `AlreadyExists` if its id is taken.
pub(crate) fn create_key(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    mut key: ApiKey,
    now: Timestamp,
) -> Result<Change> {
    let hash = key.secret_hash.ok_or_else(|| {
        StoreError::InvalidInput("an API key needs the hash of its secret".to_owned())
    })?;
    // ids are global (a key authenticates before its namespace is known)
    if read::api_key(tx, &key.id)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: format!("API key {}", key.id),
        });
    }
    key.namespace = ctx.namespace.clone();
    key.created_at = now;
    key.revoked_at = None;
    key.last_used_at = None;
    let scopes = serde_json::to_string(&key.scopes)
        .map_err(|e| StoreError::Internal(format!("API key scopes as JSON: {e}")))?;
    tx.execute(
        "INSERT INTO api_keys (id, namespace, name, actor, scopes, secret_hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        args![
            &key.id,
            key.namespace.as_str(),
            &key.name,
            key.actor.to_string(),
            scopes,
            hash.hex(),
            now,
            key.expires_at
        ],
    )?;
    let row_hash = kontextual_model::change::key_fingerprint(&key, Some(&hash));
    key.secret_hash = None;
    Ok(Change::KeyCreated { key, row_hash })
}

/// Revokes a key of the batch's namespace; revoking it again changes nothing.
pub(crate) fn revoke_key(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: &str,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let Some(mut key) = read::api_key(tx, id)?.filter(|k| k.namespace == ctx.namespace) else {
        return Err(StoreError::NotFound {
            what: format!("API key {id}"),
        });
    };
    let secret_hash = key.secret_hash.take();
    if key.revoked_at.is_some() {
        return Ok(Vec::new());
    }
    tx.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
        args![id, now],
    )?;
    key.revoked_at = Some(now);
    let row_hash = kontextual_model::change::key_fingerprint(&key, secret_hash.as_ref());
    Ok(vec![Change::KeyRevoked { key, row_hash }])
}

/// Records when keys were last used; a use never moves the time back.
pub(crate) fn touch_keys(tx: &mut Tx<'_>, uses: &[(String, Timestamp)]) -> Result<()> {
    // A guarded update instead of max()/greatest(), which the two dialects
    // spell differently; rows already newer are left alone.
    for (id, at) in uses {
        tx.execute(
            "UPDATE api_keys SET last_used_at = ?2 \
             WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            args![id, *at],
        )?;
    }
    Ok(())
}

pub(crate) fn record_access(tx: &mut Tx<'_>, entries: &[AccessEntry]) -> Result<()> {
    for e in entries {
        tx.execute(
            "INSERT INTO access_log (at, namespace, actor, key_id, action, target, correlation_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                e.at,
                e.namespace.as_str(),
                e.actor.to_string(),
                &e.key_id,
                &e.action,
                &e.target,
                &e.correlation_id
            ],
        )?;
    }
    Ok(())
}

pub(crate) fn prune_access_log(tx: &mut Tx<'_>, older_than: Timestamp) -> Result<()> {
    tx.execute("DELETE FROM access_log WHERE at < ?1", args![older_than])?;
    Ok(())
}

/// Sets (or replaces) an actor's clearance in the batch's namespace.
pub(crate) fn set_clearance(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    actor: Actor,
    level: Classification,
    now: Timestamp,
) -> Result<Change> {
    tx.execute(
        "INSERT INTO clearances (namespace, actor, level, set_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (namespace, actor) DO UPDATE SET level = excluded.level, set_at = excluded.set_at",
        args![ctx.namespace.as_str(), actor.to_string(), level.as_str(), now],
    )?;
    Ok(Change::ClearanceSet {
        clearance: Clearance {
            namespace: ctx.namespace.clone(),
            actor,
            level,
            set_at: now,
        },
    })
}

/// Refuses to delete or purge an artifact under legal hold (`Held`, with
/// the hold's reason); `what` names the refused operation.
pub(crate) fn refuse_if_held(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    a: &Artifact,
    what: &str,
) -> Result<()> {
    let reason: Option<String> = tx.query_opt(
        "SELECT reason FROM holds WHERE artifact_id = ?1 AND namespace = ?2",
        args![a.id.0, ctx.namespace.as_str()],
        |r| r.get(0),
    )?;
    match reason {
        Some(reason) => Err(StoreError::Held {
            what: what.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The longest reason a hold or quarantine may carry, in bytes.
const MARK_REASON_MAX: usize = 1000;

fn current_mark(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    mark: Mark,
    a: &Artifact,
) -> Result<Option<Hold>> {
    Ok(read::marks(tx, mark, &ctx.namespace, Some(a.id))?.pop())
}

/// Marks an artifact; `AlreadyExists` if it is marked so already.
pub(crate) fn set_mark(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    key: &ArtifactKey,
    reason: String,
    mark: Mark,
    now: Timestamp,
) -> Result<Hold> {
    let a = existing(tx, ctx, key)?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.len() > MARK_REASON_MAX {
        return Err(StoreError::InvalidInput(format!(
            "{} needs a reason of 1-1000 characters",
            mark.describe(&a)
        )));
    }
    if current_mark(tx, ctx, mark, &a)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: mark.describe(&a),
        });
    }
    let sql = match mark {
        Mark::Hold => {
            "INSERT INTO holds (artifact_id, namespace, reason, actor, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)"
        }
        Mark::Quarantine => {
            "INSERT INTO quarantines (artifact_id, namespace, reason, actor, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)"
        }
    };
    tx.execute(
        sql,
        args![
            a.id.0,
            ctx.namespace.as_str(),
            reason,
            ctx.actor.to_string(),
            now
        ],
    )?;
    // read back, so the change carries the names exactly as a listing shows them
    current_mark(tx, ctx, mark, &a)?.ok_or_else(|| {
        StoreError::Internal(format!("{} vanished while it was set", mark.describe(&a)))
    })
}

/// Removes a mark; `NotFound` if the artifact does not carry it.
pub(crate) fn release_mark(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    key: &ArtifactKey,
    mark: Mark,
) -> Result<Hold> {
    let a = existing(tx, ctx, key)?;
    let found =
        current_mark(tx, ctx, mark, &a)?.ok_or_else(|| StoreError::not_found(mark.describe(&a)))?;
    let sql = match mark {
        Mark::Hold => "DELETE FROM holds WHERE artifact_id = ?1",
        Mark::Quarantine => "DELETE FROM quarantines WHERE artifact_id = ?1",
    };
    tx.execute(sql, args![a.id.0])?;
    Ok(found)
}

/// Gives a grant in the batch's namespace. The scope's collection or
/// artifact must exist; an identical grant is `AlreadyExists`.
pub(crate) fn create_grant(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    actor: Actor,
    permission: GrantPermission,
    scope: GrantScope,
    now: Timestamp,
) -> Result<Change> {
    match &scope {
        GrantScope::Collection(c)
            if crate::knowledge::read::collection_id(tx, &ctx.namespace, c.as_str())?.is_none() =>
        {
            return Err(StoreError::NotFound {
                what: format!("collection {c}"),
            });
        }
        GrantScope::Artifact(c, n) => {
            let key = ArtifactKey::Name {
                collection: c.clone(),
                name: n.clone(),
            };
            existing(tx, ctx, &key)?;
        }
        _ => {}
    }
    let (kind, name) = read::scope_parts(&scope);
    let grant = Grant {
        id: uuid::Uuid::now_v7(),
        namespace: ctx.namespace.clone(),
        actor,
        permission,
        scope,
        created_at: now,
    };
    // The table's unique key (namespace, actor, permission, scope) decides:
    // an identical grant inserts nothing, on both engines alike.
    let inserted = tx.execute(
        "INSERT INTO grants (id, namespace, actor, permission, scope_kind, scope_name, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        args![
            grant.id,
            grant.namespace.as_str(),
            grant.actor.to_string(),
            grant.permission.as_str(),
            kind,
            name,
            now
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists {
            what: format!(
                "grant of {} {} on {}",
                grant.actor, grant.permission, grant.scope
            ),
        });
    }
    Ok(Change::GrantCreated { grant })
}

/// Takes a grant back; `NotFound` if the actor has no such grant.
pub(crate) fn delete_grant(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    actor: &Actor,
    permission: GrantPermission,
    scope: &GrantScope,
) -> Result<Change> {
    let found = read::grants(tx, &ctx.namespace, Some(actor))?
        .into_iter()
        .find(|g| g.permission == permission && &g.scope == scope)
        .ok_or_else(|| StoreError::NotFound {
            what: format!("grant of {actor} {permission} on {scope}"),
        })?;
    tx.execute("DELETE FROM grants WHERE id = ?1", args![found.id])?;
    Ok(Change::GrantDeleted { grant: found })
}

/// An idempotency row: the request's hash, and the answer once there is one.
struct StoredAnswer {
    request_hash: String,
    status: Option<i64>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

/// Reserves `(scope, key)` for a request, or says what became of an earlier
/// request with that key. Reservations older than `expire_before` are
/// forgotten first.
pub(crate) fn begin_idempotent(
    tx: &mut Tx<'_>,
    scope: &str,
    key: &str,
    request_hash: Digest,
    expire_before: Timestamp,
    now: Timestamp,
) -> Result<Change> {
    tx.execute(
        "DELETE FROM idempotency WHERE created_at < ?1",
        args![expire_before],
    )?;
    let found = tx.query_opt(
        "SELECT request_hash, status, content_type, body FROM idempotency \
         WHERE scope = ?1 AND key = ?2",
        args![scope, key],
        |r| {
            Ok(StoredAnswer {
                request_hash: r.get(0)?,
                status: r.get(1)?,
                content_type: r.get(2)?,
                body: r.get(3)?,
            })
        },
    )?;
    let state = match found {
        None => {
            tx.execute(
                "INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                args![scope, key, request_hash.hex(), now],
            )?;
            Idempotency::Started
        }
        Some(row) if row.request_hash != request_hash.hex() => Idempotency::Mismatch,
        Some(StoredAnswer { status: None, .. }) => Idempotency::InFlight,
        Some(StoredAnswer {
            status: Some(status),
            content_type,
            body,
            ..
        }) => Idempotency::Replay {
            status: u16::try_from(status).map_err(|_| {
                StoreError::Corrupted(format!("an idempotency answer has status {status}"))
            })?,
            content_type: content_type.unwrap_or_default(),
            body: body.unwrap_or_default(),
        },
    };
    Ok(Change::Idempotency(state))
}

/// Stores the answer to a reserved request, for replays.
pub(crate) fn finish_idempotent(
    tx: &mut Tx<'_>,
    scope: &str,
    key: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<()> {
    tx.execute(
        "UPDATE idempotency SET status = ?3, content_type = ?4, body = ?5 \
         WHERE scope = ?1 AND key = ?2",
        args![scope, key, u32::from(status), content_type, body],
    )?;
    Ok(())
}

/// Drops a reservation that never got an answer (the request failed), so
/// the key can be used again.
pub(crate) fn abandon_idempotent(tx: &mut Tx<'_>, scope: &str, key: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND status IS NULL",
        args![scope, key],
    )?;
    Ok(())
}

/// Applies one access operation inside the engine's transaction and
/// returns the changes it made (`crate::apply` appends their audit records).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    op: crate::port::AccessOp,
    now: Timestamp,
) -> Result<Vec<Change>> {
    use crate::port::AccessOp;
    Ok(match op {
        AccessOp::CreateKey(key) => vec![create_key(tx, ctx, key, now)?],
        AccessOp::RevokeKey { id } => revoke_key(tx, ctx, &id, now)?,
        AccessOp::TouchKeys { uses } => {
            touch_keys(tx, &uses)?;
            Vec::new()
        }
        AccessOp::RecordAccess { entries } => {
            record_access(tx, &entries)?;
            Vec::new()
        }
        AccessOp::PruneAccessLog { older_than } => {
            prune_access_log(tx, older_than)?;
            Vec::new()
        }
        AccessOp::SetClearance { actor, level } => {
            vec![set_clearance(tx, ctx, actor, level, now)?]
        }
        AccessOp::SetHold { key, reason } => vec![Change::HoldSet {
            hold: set_mark(tx, ctx, &key, reason, Mark::Hold, now)?,
        }],
        AccessOp::ReleaseHold { key } => vec![Change::HoldReleased {
            hold: release_mark(tx, ctx, &key, Mark::Hold)?,
        }],
        AccessOp::QuarantineArtifact { key, reason } => {
            vec![Change::ArtifactQuarantined {
                quarantine: set_mark(tx, ctx, &key, reason, Mark::Quarantine, now)?,
            }]
        }
        AccessOp::ReleaseArtifact { key } => vec![Change::ArtifactReleased {
            quarantine: release_mark(tx, ctx, &key, Mark::Quarantine)?,
        }],
        AccessOp::CreateGrant {
            actor,
            permission,
            scope,
        } => vec![create_grant(tx, ctx, actor, permission, scope, now)?],
        AccessOp::DeleteGrant {
            actor,
            permission,
            scope,
        } => vec![delete_grant(tx, ctx, &actor, permission, &scope)?],
        AccessOp::BeginIdempotent {
            scope,
            key,
            request_hash,
            expire_before,
        } => vec![begin_idempotent(
            tx,
            &scope,
            &key,
            request_hash,
            expire_before,
            now,
        )?],
        AccessOp::FinishIdempotent {
            scope,
            key,
            status,
            content_type,
            body,
        } => {
            finish_idempotent(tx, &scope, &key, status, &content_type, &body)?;
            Vec::new()
        }
        AccessOp::AbandonIdempotent { scope, key } => {
            abandon_idempotent(tx, &scope, &key)?;
            Vec::new()
        }
    })
}

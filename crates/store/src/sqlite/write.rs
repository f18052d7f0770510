//! Applying write batches: group commit, ops, and the audit/outbox append
//! that accompanies every change in the same transaction.

use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{Artifact, ArtifactId, ChainHead, Change, ChangeKind, Digest, Timestamp};
use std::sync::mpsc::SyncSender;

/// Where a caller waits for its batch's outcome.
type Reply = SyncSender<Result<Vec<Change>>>;

use rusqlite::{Connection, OptionalExtension, params};

use super::read::{self};
use super::{WriteJob, micros, sql_err};
use crate::audit;
use crate::knowledge::write as knowledge;
use crate::port::{ArtifactKey, Op, WriteBatch, WriteContext};
use crate::sql::Tx;
use crate::{Result, StoreError};

/// [`commit_group_anchored`] without an anchor.
#[cfg(test)]
pub(super) fn commit_group(
    conn: &Connection,
    jobs: Vec<WriteJob>,
    busy_ms: u64,
    wipe_pending: &mut bool,
) -> Option<ChainHead> {
    commit_group_anchored(conn, jobs, busy_ms, wipe_pending, None).0
}

/// Commits a group of jobs in one transaction and answers each caller.
/// Returns the new audit head if anything was committed, and whether the
/// chain still held `anchor` (the head recorded outside the database) when
/// the group began. `wipe_pending` says a purge's WAL truncation has not
/// happened yet (readers were active); it is retried after every commit
/// until it succeeds.
pub(super) fn commit_group_anchored(
    conn: &Connection,
    jobs: Vec<WriteJob>,
    busy_ms: u64,
    wipe_pending: &mut bool,
    anchor: Option<&ChainHead>,
) -> (Option<ChainHead>, bool) {
    let mut jobs = jobs.into_iter();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = match sql_err(e) {
            StoreError::Locked { .. } => StoreError::Locked { waited_ms: busy_ms },
            other => other,
        };
        abort(conn, Vec::new(), jobs, e);
        return (None, true);
    }
    let mut head = match read::audit_head(conn) {
        Ok(h) => h,
        Err(e) => {
            abort(conn, Vec::new(), jobs, e);
            return (None, true);
        }
    };
    let start_head = head.clone();
    let anchor_held = match anchor {
        Some(a) => crate::head_copy::chain_holds(a, start_head.as_ref(), |seq| {
            crate::audit::hash_at(&mut Tx::Sqlite(conn), seq)
        })
        .unwrap_or(true),
        None => true,
    };
    let now = kontextual_model::now();
    // A lone batch needs no savepoint: if it fails, the whole transaction
    // rolls back (savepoints cost a sub-journal write per touched page).
    let isolate = jobs.len() > 1;
    let mut done: Vec<(Reply, Result<Vec<Change>>)> = Vec::new();
    while let Some(job) = jobs.next() {
        let saved = head.clone();
        let outcome = if isolate {
            conn.execute_batch("SAVEPOINT batch")
                .map_err(sql_err)
                .and_then(|_| apply_batch(conn, job.batch, &mut head, now))
        } else {
            apply_batch(conn, job.batch, &mut head, now)
        };
        match outcome {
            Ok(changes) => {
                if isolate && let Err(e) = conn.execute_batch("RELEASE batch") {
                    done.push((job.reply, Err(sql_err(e))));
                    let e = StoreError::Internal("releasing a savepoint failed".to_owned());
                    abort_all(conn, done, jobs, e);
                    return (None, true);
                }
                done.push((job.reply, Ok(changes)));
            }
            // SQLite itself rolled back the whole transaction (disk full, I/O
            // error, out of memory), or this was the only batch: nothing of
            // this group is committed, and every caller must hear so.
            Err(e) if !isolate || conn.is_autocommit() => {
                abort(
                    conn,
                    done.into_iter().map(|(r, _)| r).collect(),
                    jobs,
                    e.duplicate(),
                );
                let _ = job.reply.send(Err(e));
                return (None, true);
            }
            Err(e) => {
                if let Err(e2) = conn.execute_batch("ROLLBACK TO batch; RELEASE batch") {
                    done.push((job.reply, Err(e)));
                    abort_all(conn, done, jobs, sql_err(e2));
                    return (None, true);
                }
                head = saved;
                done.push((job.reply, Err(e)));
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        abort_all(conn, done, jobs, sql_err(e));
        return (None, true);
    }
    let purged = done.iter().any(|(_, r)| {
        r.as_ref().is_ok_and(|cs| {
            cs.iter().any(|c| {
                matches!(
                    c,
                    Change::Artifact {
                        kind: ChangeKind::Purged,
                        ..
                    }
                )
            })
        })
    });
    if purged || *wipe_pending {
        // Old WAL frames may still hold purged bytes (secure_delete zeroes the
        // pages, not their earlier copies): checkpoint and truncate the WAL
        // before the caller hears that the content is gone. A reader holding
        // an old snapshot prevents that; then it is retried after later commits.
        match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(0) => *wipe_pending = false,
            Ok(_) => {
                *wipe_pending = true;
                tracing::warn!(
                    "purged content may remain in the WAL until active readers finish; retrying after the next commit"
                );
            }
            Err(e) => {
                *wipe_pending = true;
                tracing::warn!(error = %e, "WAL checkpoint after purge failed");
            }
        }
    }
    for (reply, result) in done {
        let _ = reply.send(result);
    }
    (if head != start_head { head } else { None }, anchor_held)
}

/// Rolls back whatever is open and fails every caller of the group: those
/// already applied (their work is undone) and those not reached yet.
fn abort(
    conn: &Connection,
    applied: Vec<Reply>,
    rest: std::vec::IntoIter<WriteJob>,
    e: StoreError,
) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for r in applied {
        let _ = r.send(Err(e.duplicate()));
    }
    for j in rest {
        let _ = j.reply.send(Err(e.duplicate()));
    }
}

/// Like [`abort`], keeping a failed batch's own error for its caller.
fn abort_all(
    conn: &Connection,
    done: Vec<(Reply, Result<Vec<Change>>)>,
    rest: std::vec::IntoIter<WriteJob>,
    e: StoreError,
) {
    let mut applied = Vec::new();
    for (reply, result) in done {
        match result {
            Err(own) => {
                let _ = reply.send(Err(own));
            }
            Ok(_) => applied.push(reply),
        }
    }
    abort(conn, applied, rest, e);
}

fn apply_batch(
    conn: &Connection,
    batch: WriteBatch,
    head: &mut Option<ChainHead>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let WriteBatch { ctx, ops } = batch;
    let mut out = Vec::with_capacity(ops.len());
    let mut collections = knowledge::CollectionIds::default();
    for op in ops {
        if !matches!(op, Op::PutArtifact(_)) {
            collections.forget();
        }
        let changes = match op {
            Op::CreateCollection {
                name,
                description,
                if_absent,
            } => crate::knowledge::write::create_collection(
                &mut Tx::Sqlite(conn),
                &ctx,
                name.as_str(),
                &description,
                if_absent,
                now,
            )?,
            Op::PutArtifact(put) => vec![knowledge::put_artifact(
                &mut Tx::Sqlite(conn),
                &ctx,
                put,
                now,
                &mut collections,
            )?],
            Op::DeleteArtifact { key, expect } => {
                knowledge::delete_artifact(&mut Tx::Sqlite(conn), &ctx, &key, expect, now)?
            }
            Op::PurgeArtifact { key, expect } => {
                knowledge::purge_artifact(&mut Tx::Sqlite(conn), &ctx, &key, expect, now)?
            }
            Op::CreateRelation {
                source,
                rel_type,
                target,
                properties,
            } => vec![knowledge::create_relation(
                &mut Tx::Sqlite(conn),
                &ctx,
                &source,
                rel_type,
                &target,
                properties,
                now,
            )?],
            Op::UpdateRelation {
                id,
                rel_type,
                properties,
                expect,
            } => vec![knowledge::update_relation(
                &mut Tx::Sqlite(conn),
                &ctx,
                id,
                rel_type,
                properties,
                expect,
                now,
            )?],
            Op::DeleteRelation { id, expect } => {
                let mut tx = Tx::Sqlite(conn);
                let rel = knowledge::live_relation(&mut tx, &ctx, id, expect)?;
                vec![knowledge::delete_relation(
                    &mut tx,
                    rel,
                    RelationDeleteCause::Requested,
                    now,
                )?]
            }
            Op::PruneOutbox { older_than } => audit::prune(&mut Tx::Sqlite(conn), older_than)?,
            Op::StartRun {
                id,
                kind,
                input,
                owner,
                job,
            } => vec![start_run(conn, &ctx, id, kind, input, owner, job, now)?],
            Op::RunStep {
                id,
                name,
                status,
                detail,
            } => {
                run_step(conn, &ctx, id, &name, status, &detail, now)?;
                continue;
            }
            Op::FinishRun {
                id,
                status,
                manifest,
            } => vec![finish_run(conn, &ctx, id, status, manifest, now)?],
            Op::AckOutbox { consumer, seq } => {
                audit::ack(&mut Tx::Sqlite(conn), &consumer, seq, now)?;
                continue;
            }
            Op::SaveContextPackage {
                name,
                digest,
                manifest,
            } => vec![knowledge::save_context_package(
                &mut Tx::Sqlite(conn),
                &ctx,
                name,
                digest,
                manifest,
                now,
            )?],
            Op::CreateKey(key) => vec![create_key(conn, &ctx, key, now)?],
            Op::RevokeKey { id } => revoke_key(conn, &ctx, &id, now)?,
            Op::RecordAccess { entries } => {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO access_log (at, namespace, actor, key_id, action, target, correlation_id) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(sql_err)?;
                for e in entries {
                    stmt.execute(params![
                        micros(e.at),
                        e.namespace.as_str(),
                        e.actor.to_string(),
                        e.key_id,
                        e.action,
                        e.target,
                        e.correlation_id
                    ])
                    .map_err(sql_err)?;
                }
                continue;
            }
            Op::SetClearance { actor, level } => {
                conn.execute(
                    "INSERT INTO clearances (namespace, actor, level, set_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (namespace, actor) DO UPDATE SET level = excluded.level, set_at = excluded.set_at",
                    params![ctx.namespace.as_str(), actor.to_string(), level.as_str(), micros(now)],
                )
                .map_err(sql_err)?;
                vec![Change::ClearanceSet {
                    clearance: kontextual_model::Clearance {
                        namespace: ctx.namespace.clone(),
                        actor,
                        level,
                        set_at: now,
                    },
                }]
            }
            Op::SetHold { key, reason } => vec![Change::HoldSet {
                hold: set_mark(conn, &ctx, &key, reason, Mark::Hold, now)?,
            }],
            Op::ReleaseHold { key } => vec![Change::HoldReleased {
                hold: release_mark(conn, &ctx, &key, Mark::Hold)?,
            }],
            Op::CreateGrant {
                actor,
                permission,
                scope,
            } => vec![create_grant(conn, &ctx, actor, permission, scope, now)?],
            Op::DeleteGrant {
                actor,
                permission,
                scope,
            } => vec![delete_grant(conn, &ctx, &actor, permission, &scope)?],
            Op::BeginIdempotent {
                scope,
                key,
                request_hash,
                expire_before,
            } => vec![begin_idempotent(
                conn,
                &scope,
                &key,
                request_hash,
                expire_before,
                now,
            )?],
            Op::FinishIdempotent {
                scope,
                key,
                status,
                content_type,
                body,
            } => {
                conn.prepare_cached(
                    "UPDATE idempotency SET status = ?3, content_type = ?4, body = ?5 \
                     WHERE scope = ?1 AND key = ?2",
                )
                .map_err(sql_err)?
                .execute(params![scope, key, status, content_type, body])
                .map_err(sql_err)?;
                continue;
            }
            Op::AbandonIdempotent { scope, key } => {
                conn.prepare_cached(
                    "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND status IS NULL",
                )
                .map_err(sql_err)?
                .execute(params![scope, key])
                .map_err(sql_err)?;
                continue;
            }
            Op::EnqueueJob(new) => vec![super::jobs::enqueue(conn, &ctx, new, now)?],
            Op::ClaimJobs {
                worker,
                kinds,
                limit,
                lease,
            } => vec![super::jobs::claim(
                conn, &worker, &kinds, limit, lease, now,
            )?],
            Op::HeartbeatJob { id, attempt, lease } => {
                vec![super::jobs::heartbeat(conn, id, attempt, lease, now)?]
            }
            Op::FinishJob {
                id,
                attempt,
                result,
                report,
            } => vec![super::jobs::finish(conn, id, attempt, result, report, now)?],
            Op::ActOnJob { id, action } => vec![super::jobs::act(conn, &ctx, id, action, now)?],
            Op::PruneJobs { finished_before } => super::jobs::prune(conn, finished_before)?,
            Op::PruneAccessLog { older_than } => {
                conn.prepare_cached("DELETE FROM access_log WHERE at < ?1")
                    .map_err(sql_err)?
                    .execute(params![micros(older_than)])
                    .map_err(sql_err)?;
                continue;
            }
            Op::QuarantineArtifact { key, reason } => vec![Change::ArtifactQuarantined {
                quarantine: set_mark(conn, &ctx, &key, reason, Mark::Quarantine, now)?,
            }],
            Op::ReleaseArtifact { key } => vec![Change::ArtifactReleased {
                quarantine: release_mark(conn, &ctx, &key, Mark::Quarantine)?,
            }],
            Op::ImportRecords(rec) => {
                crate::import::import(&mut Tx::Sqlite(conn), &ctx, *rec, now)?
            }
            Op::TouchKeys { uses } => {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
                    )
                    .map_err(sql_err)?;
                for (id, at) in uses {
                    stmt.execute(params![id, micros(at)]).map_err(sql_err)?;
                }
                continue;
            }
            Op::Audit(draft) => audit::record_only(&mut Tx::Sqlite(conn), &ctx, head, now, draft)?,
        };
        for change in &changes {
            audit::record_change(&mut Tx::Sqlite(conn), &ctx, head, now, change)?;
        }
        out.extend(changes);
    }
    Ok(out)
}

fn create_key(
    conn: &Connection,
    ctx: &WriteContext,
    mut key: kontextual_model::ApiKey,
    now: Timestamp,
) -> Result<Change> {
    let hash = key.secret_hash.ok_or_else(|| {
        StoreError::InvalidInput("an API key needs the hash of its secret".to_owned())
    })?;
    if read::api_key(conn, &key.id)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: format!("API key {}", key.id),
        });
    }
    key.namespace = ctx.namespace.clone();
    key.created_at = now;
    key.revoked_at = None;
    key.last_used_at = None;
    conn.execute(
        "INSERT INTO api_keys (id, namespace, name, actor, scopes, secret_hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            key.id,
            key.namespace.as_str(),
            key.name,
            key.actor.to_string(),
            serde_json::to_string(&key.scopes).unwrap_or_else(|_| "[]".into()),
            hash.hex(),
            micros(now),
            key.expires_at.map(micros),
        ],
    )
    .map_err(sql_err)?;
    let row_hash = kontextual_model::change::key_fingerprint(&key, Some(&hash));
    key.secret_hash = None;
    Ok(Change::KeyCreated { key, row_hash })
}

fn revoke_key(
    conn: &Connection,
    ctx: &WriteContext,
    id: &str,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let Some(mut key) = read::api_key(conn, id)?.filter(|k| k.namespace == ctx.namespace) else {
        return Err(StoreError::NotFound {
            what: format!("API key {id}"),
        });
    };
    let secret_hash = key.secret_hash.take();
    if key.revoked_at.is_some() {
        return Ok(Vec::new());
    }
    conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
        params![id, micros(now)],
    )
    .map_err(sql_err)?;
    key.revoked_at = Some(now);
    let row_hash = kontextual_model::change::key_fingerprint(&key, secret_hash.as_ref());
    Ok(vec![Change::KeyRevoked { key, row_hash }])
}

/// An artifact that must exist (for marks and grants).
fn existing(conn: &Connection, ctx: &WriteContext, key: &ArtifactKey) -> Result<Artifact> {
    crate::knowledge::read::artifact(&mut Tx::Sqlite(conn), &ctx.namespace, key)?
        .ok_or_else(|| StoreError::not_found(key.to_string()))
}

/// Marks an artifact can carry: a legal hold or a quarantine. Each is a
/// row per marked artifact (history is in the audit chain).
#[derive(Clone, Copy)]
enum Mark {
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

    /// `a legal hold on h/a.md`, `a quarantine of h/a.md`.
    fn describe(self, a: &Artifact) -> String {
        match self {
            Mark::Hold => format!("a legal hold on {}/{}", a.collection, a.name),
            Mark::Quarantine => format!("a quarantine of {}/{}", a.collection, a.name),
        }
    }

    fn read(
        self,
        conn: &Connection,
        ns: &kontextual_model::Namespace,
        id: ArtifactId,
    ) -> Result<Option<kontextual_model::Hold>> {
        Ok(match self {
            Mark::Hold => read::holds(conn, ns, Some(id))?,
            Mark::Quarantine => read::quarantines(conn, ns, Some(id))?,
        }
        .pop())
    }
}

/// Marks an artifact; `AlreadyExists` if it is marked so already.
fn set_mark(
    conn: &Connection,
    ctx: &WriteContext,
    key: &ArtifactKey,
    reason: String,
    mark: Mark,
    now: Timestamp,
) -> Result<kontextual_model::Hold> {
    let a = existing(conn, ctx, key)?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(StoreError::InvalidInput(format!(
            "{} needs a reason of 1-1000 characters",
            mark.describe(&a)
        )));
    }
    if mark.read(conn, &ctx.namespace, a.id)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: mark.describe(&a),
        });
    }
    conn.execute(
        &format!(
            "INSERT INTO {} (artifact_id, namespace, reason, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            mark.table()
        ),
        params![a.id.0, ctx.namespace.as_str(), reason, ctx.actor.to_string(), micros(now)],
    )
    .map_err(sql_err)?;
    mark.read(conn, &ctx.namespace, a.id)?.ok_or_else(|| {
        StoreError::Internal(format!("{} vanished while it was set", mark.describe(&a)))
    })
}

/// Removes a mark; `NotFound` if the artifact does not carry it.
fn release_mark(
    conn: &Connection,
    ctx: &WriteContext,
    key: &ArtifactKey,
    mark: Mark,
) -> Result<kontextual_model::Hold> {
    let a = existing(conn, ctx, key)?;
    let found = mark
        .read(conn, &ctx.namespace, a.id)?
        .ok_or_else(|| StoreError::not_found(mark.describe(&a)))?;
    conn.execute(
        &format!("DELETE FROM {} WHERE artifact_id = ?1", mark.table()),
        params![a.id.0],
    )
    .map_err(sql_err)?;
    Ok(found)
}

fn scope_parts(scope: &kontextual_model::GrantScope) -> (&'static str, String) {
    match scope {
        kontextual_model::GrantScope::Namespace => ("namespace", String::new()),
        kontextual_model::GrantScope::Collection(c) => ("collection", c.to_string()),
        kontextual_model::GrantScope::Artifact(c, n) => ("artifact", format!("{c}/{n}")),
    }
}

fn create_grant(
    conn: &Connection,
    ctx: &WriteContext,
    actor: kontextual_model::Actor,
    permission: kontextual_model::GrantPermission,
    scope: kontextual_model::GrantScope,
    now: Timestamp,
) -> Result<Change> {
    let (kind, name) = scope_parts(&scope);
    match &scope {
        kontextual_model::GrantScope::Collection(c)
            if read::collection_id(conn, &ctx.namespace, c.as_str())?.is_none() =>
        {
            return Err(StoreError::NotFound {
                what: format!("collection {c}"),
            });
        }
        kontextual_model::GrantScope::Artifact(c, n) => {
            let key = ArtifactKey::Name {
                collection: c.clone(),
                name: n.clone(),
            };
            existing(conn, ctx, &key)?;
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
    let n = conn
        .execute(
            "INSERT INTO grants (id, namespace, actor, permission, scope_kind, scope_name, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            params![
                grant.id,
                grant.namespace.as_str(),
                grant.actor.to_string(),
                grant.permission.as_str(),
                kind,
                name,
                micros(now)
            ],
        )
        .map_err(sql_err)?;
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

fn delete_grant(
    conn: &Connection,
    ctx: &WriteContext,
    actor: &kontextual_model::Actor,
    permission: kontextual_model::GrantPermission,
    scope: &kontextual_model::GrantScope,
) -> Result<Change> {
    let found = read::grants(conn, &ctx.namespace, Some(actor))?
        .into_iter()
        .find(|g| g.permission == permission && &g.scope == scope)
        .ok_or_else(|| StoreError::NotFound {
            what: format!("grant of {actor} {permission} on {scope}"),
        })?;
    conn.execute("DELETE FROM grants WHERE id = ?1", params![found.id])
        .map_err(sql_err)?;
    Ok(Change::GrantDeleted { grant: found })
}

/// An idempotency row: request hash, and the answer once there is one.
type StoredAnswer = (String, Option<i64>, Option<String>, Option<Vec<u8>>);

fn begin_idempotent(
    conn: &Connection,
    scope: &str,
    key: &str,
    request_hash: Digest,
    expire_before: Timestamp,
    now: Timestamp,
) -> Result<Change> {
    use kontextual_model::Idempotency;
    conn.prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")
        .map_err(sql_err)?
        .execute(params![micros(expire_before)])
        .map_err(sql_err)?;
    let found: Option<StoredAnswer> = conn
        .prepare_cached(
            "SELECT request_hash, status, content_type, body FROM idempotency \
             WHERE scope = ?1 AND key = ?2",
        )
        .map_err(sql_err)?
        .query_row(params![scope, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(sql_err)?;
    let state = match found {
        None => {
            conn.prepare_cached(
                "INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql_err)?
            .execute(params![scope, key, request_hash.hex(), micros(now)])
            .map_err(sql_err)?;
            Idempotency::Started
        }
        Some((hash, _, _, _)) if hash != request_hash.hex() => Idempotency::Mismatch,
        Some((_, None, _, _)) => Idempotency::InFlight,
        Some((_, Some(status), content_type, body)) => Idempotency::Replay {
            status: status as u16,
            content_type: content_type.unwrap_or_default(),
            body: body.unwrap_or_default(),
        },
    };
    Ok(Change::Idempotency(state))
}

#[allow(clippy::too_many_arguments)]
fn start_run(
    conn: &Connection,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
    kind: String,
    input: serde_json::Value,
    owner: String,
    job: Option<(kontextual_model::JobId, u32)>,
    now: Timestamp,
) -> Result<Change> {
    let run = kontextual_model::Run {
        id,
        namespace: ctx.namespace.clone(),
        kind,
        status: kontextual_model::RunStatus::Running,
        actor: ctx.actor.clone(),
        input,
        manifest: None,
        owner,
        started_at: now,
        finished_at: None,
        job_id: job.map(|(j, _)| j),
    };
    conn.prepare_cached(
        "INSERT INTO runs (id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, NULL, ?9)",
    )
    .map_err(sql_err)?
    .execute(params![
        run.id.0,
        run.namespace.as_str(),
        run.kind,
        run.status.as_str(),
        run.actor.to_string(),
        run.input.to_string(),
        run.owner,
        micros(now),
        run.job_id.map(|j| j.0),
    ])
    .map_err(|e| match sql_err(e) {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists { what: format!("run {id}") },
        other => other,
    })?;
    if let Some((job, attempt)) = job {
        super::jobs::link_run(conn, job, attempt, id)?;
    }
    Ok(Change::Run { run })
}

fn running(
    conn: &Connection,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
) -> Result<kontextual_model::Run> {
    let run = read::run(conn, &ctx.namespace, id)?
        .ok_or_else(|| StoreError::not_found(format!("run {id}")))?;
    if run.status.is_final() {
        return Err(StoreError::Conflict {
            what: format!("run {id}"),
            expected: 0,
            actual: format!("{} (the run is no longer running)", run.status),
        });
    }
    Ok(run)
}

fn run_step(
    conn: &Connection,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
    name: &str,
    status: kontextual_model::RunStatus,
    detail: &serde_json::Value,
    now: Timestamp,
) -> Result<()> {
    running(conn, ctx, id)?;
    conn.prepare_cached(
        "INSERT INTO run_steps (run_id, seq, name, status, detail, at) \
         VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM run_steps WHERE run_id = ?1), ?2, ?3, ?4, ?5)",
    )
    .map_err(sql_err)?
    .execute(params![id.0, name, status.as_str(), detail.to_string(), micros(now)])
    .map_err(sql_err)?;
    Ok(())
}

fn finish_run(
    conn: &Connection,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
    status: kontextual_model::RunStatus,
    manifest: serde_json::Value,
    now: Timestamp,
) -> Result<Change> {
    if !status.is_final() {
        return Err(StoreError::InvalidInput(
            "a run finishes in a final status".to_owned(),
        ));
    }
    let mut run = running(conn, ctx, id)?;
    run.status = status;
    run.manifest = Some(manifest);
    run.finished_at = Some(now);
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, manifest = ?3, finished_at = ?4 WHERE id = ?1",
    )
    .map_err(sql_err)?
    .execute(params![
        id.0,
        status.as_str(),
        run.manifest.as_ref().map(|m| m.to_string()),
        micros(now)
    ])
    .map_err(sql_err)?;
    Ok(Change::Run { run })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::ErrorKind;
    use crate::port::{Content, PutArtifact};
    use kontextual_model::{Actor, ArtifactName, CollectionName, CorrelationId, Namespace};

    fn ctx() -> WriteContext {
        WriteContext {
            namespace: Namespace::default(),
            actor: Actor::local_admin(),
            correlation_id: CorrelationId::new(),
            run_id: None,
        }
    }

    fn job(ops: Vec<Op>) -> (WriteJob, mpsc::Receiver<Result<Vec<Change>>>) {
        let (reply, rx) = mpsc::sync_channel(1);
        (
            WriteJob {
                batch: WriteBatch { ctx: ctx(), ops },
                reply,
            },
            rx,
        )
    }

    fn put(name: &str, bytes: Vec<u8>) -> Op {
        Op::PutArtifact(PutArtifact::new(
            CollectionName::new("h").unwrap(),
            ArtifactName::new(name).unwrap(),
            Content::Bytes(bytes),
        ))
    }

    /// K2: when SQLite rolls back the whole transaction (here: the disk is
    /// full), no batch of the group is committed and every caller is told so.
    #[test]
    fn k2_a_whole_group_rollback_fails_every_caller() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, None, true).unwrap();
        let mut wipe = false;
        let (j, rx) = job(vec![Op::CreateCollection {
            name: CollectionName::new("h").unwrap(),
            description: String::new(),
            if_absent: false,
        }]);
        let head = commit_group(&conn, vec![j], 0, &mut wipe);
        assert!(rx.recv().unwrap().is_ok());
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 40))
            .unwrap();
        let (a, ra) = job(vec![put("a.md", b"small a".to_vec())]);
        let (b, rb) = job(vec![put("b.bin", vec![7u8; 4 << 20])]);
        let (c, rc) = job(vec![put("c.md", b"small c".to_vec())]);
        assert_eq!(commit_group(&conn, vec![a, b, c], 0, &mut wipe), None);
        let eb = rb.recv().unwrap().unwrap_err();
        assert_eq!(eb.kind(), ErrorKind::Io, "{eb}");
        assert!(eb.to_string().contains("disk is full"), "{eb}");
        assert!(
            ra.recv().unwrap().is_err(),
            "a was rolled back with the group"
        );
        assert!(rc.recv().unwrap().is_err(), "c never ran in a transaction");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM artifacts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "nothing of the group is visible");
        assert_eq!(read::audit_head(&conn).unwrap(), head);
        assert!(conn.is_autocommit());
        // the writer carries on afterwards
        let (d, rd) = job(vec![put("d.md", b"d".to_vec())]);
        commit_group(&conn, vec![d], 0, &mut wipe);
        assert!(rd.recv().unwrap().is_ok());
    }
}

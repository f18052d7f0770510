//! Applying write batches: group commit, ops, and the audit/outbox append
//! that accompanies every change in the same transaction.

use kontextual_model::audit::AuditContext;
use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{
    Artifact, ArtifactId, ArtifactState, AuditDraft, AuditRecord, ChainHead, Change, ChangeKind,
    Digest, Metadata, Provenance, Relation, RelationId, Timestamp,
};
use std::sync::mpsc::SyncSender;

/// Where a caller waits for its batch's outcome.
type Reply = SyncSender<Result<Vec<Change>>>;

use rusqlite::{Connection, OptionalExtension, params};

use super::read::{self, load_artifact};
use super::{WriteJob, blobs, micros, sql_err};
use crate::access::Mark;
use crate::access::write as access;
use crate::jobs::write as jobs;
use crate::port::{ArtifactKey, Content, Op, PutArtifact, WriteBatch, WriteContext};
use crate::rules;
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
            conn.query_row(
                "SELECT hash FROM audit_log WHERE seq = ?1",
                [seq as i64],
                |r| r.get::<_, String>(0),
            )
            .optional()
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
    for op in ops {
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
            Op::PutArtifact(put) => vec![put_artifact(conn, &ctx, put, now)?],
            Op::DeleteArtifact { key, expect } => delete_artifact(conn, &ctx, &key, expect, now)?,
            Op::PurgeArtifact { key, expect } => purge_artifact(conn, &ctx, &key, expect, now)?,
            Op::CreateRelation {
                source,
                rel_type,
                target,
                properties,
            } => vec![create_relation(
                conn, &ctx, &source, rel_type, &target, properties, now,
            )?],
            Op::UpdateRelation {
                id,
                rel_type,
                properties,
                expect,
            } => vec![update_relation(
                conn, &ctx, id, rel_type, properties, expect, now,
            )?],
            Op::DeleteRelation { id, expect } => {
                let rel = live_relation(conn, &ctx, id, expect)?;
                vec![delete_relation(
                    conn,
                    rel,
                    RelationDeleteCause::Requested,
                    now,
                )?]
            }
            Op::PruneOutbox { older_than } => prune_outbox(conn, older_than)?,
            Op::StartRun {
                id,
                kind,
                input,
                owner,
                job,
            } => vec![crate::runs::write::start_run(
                &mut Tx::Sqlite(conn),
                &ctx,
                id,
                kind,
                input,
                owner,
                job,
                now,
            )?],
            Op::RunStep {
                id,
                name,
                status,
                detail,
            } => {
                crate::runs::write::run_step(
                    &mut Tx::Sqlite(conn),
                    &ctx,
                    id,
                    &name,
                    status,
                    &detail,
                    now,
                )?;
                continue;
            }
            Op::FinishRun {
                id,
                status,
                manifest,
            } => vec![crate::runs::write::finish_run(
                &mut Tx::Sqlite(conn),
                &ctx,
                id,
                status,
                manifest,
                now,
            )?],
            Op::AckOutbox { consumer, seq } => {
                ack_outbox(conn, &consumer, seq, now)?;
                continue;
            }
            Op::SaveContextPackage {
                name,
                digest,
                manifest,
            } => vec![save_context_package(
                conn, &ctx, name, digest, manifest, now,
            )?],
            Op::CreateKey(key) => vec![access::create_key(&mut Tx::Sqlite(conn), &ctx, key, now)?],
            Op::RevokeKey { id } => access::revoke_key(&mut Tx::Sqlite(conn), &ctx, &id, now)?,
            Op::RecordAccess { entries } => {
                access::record_access(&mut Tx::Sqlite(conn), &entries)?;
                continue;
            }
            Op::SetClearance { actor, level } => vec![access::set_clearance(
                &mut Tx::Sqlite(conn),
                &ctx,
                actor,
                level,
                now,
            )?],
            Op::SetHold { key, reason } => vec![Change::HoldSet {
                hold: access::set_mark(&mut Tx::Sqlite(conn), &ctx, &key, reason, Mark::Hold, now)?,
            }],
            Op::ReleaseHold { key } => vec![Change::HoldReleased {
                hold: access::release_mark(&mut Tx::Sqlite(conn), &ctx, &key, Mark::Hold)?,
            }],
            Op::CreateGrant {
                actor,
                permission,
                scope,
            } => vec![access::create_grant(
                &mut Tx::Sqlite(conn),
                &ctx,
                actor,
                permission,
                scope,
                now,
            )?],
            Op::DeleteGrant {
                actor,
                permission,
                scope,
            } => vec![access::delete_grant(
                &mut Tx::Sqlite(conn),
                &ctx,
                &actor,
                permission,
                &scope,
            )?],
            Op::BeginIdempotent {
                scope,
                key,
                request_hash,
                expire_before,
            } => vec![access::begin_idempotent(
                &mut Tx::Sqlite(conn),
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
                access::finish_idempotent(
                    &mut Tx::Sqlite(conn),
                    &scope,
                    &key,
                    status,
                    &content_type,
                    &body,
                )?;
                continue;
            }
            Op::AbandonIdempotent { scope, key } => {
                access::abandon_idempotent(&mut Tx::Sqlite(conn), &scope, &key)?;
                continue;
            }
            Op::EnqueueJob(new) => vec![jobs::enqueue(&mut Tx::Sqlite(conn), &ctx, new, now)?],
            Op::ClaimJobs {
                worker,
                kinds,
                limit,
                lease,
            } => vec![jobs::claim(
                &mut Tx::Sqlite(conn),
                &worker,
                &kinds,
                limit,
                lease,
                now,
            )?],
            Op::HeartbeatJob { id, attempt, lease } => {
                vec![jobs::heartbeat(
                    &mut Tx::Sqlite(conn),
                    id,
                    attempt,
                    lease,
                    now,
                )?]
            }
            Op::FinishJob {
                id,
                attempt,
                result,
                report,
            } => vec![jobs::finish(
                &mut Tx::Sqlite(conn),
                id,
                attempt,
                result,
                report,
                now,
            )?],
            Op::ActOnJob { id, action } => {
                vec![jobs::act(&mut Tx::Sqlite(conn), &ctx, id, action, now)?]
            }
            Op::PruneJobs { finished_before } => {
                jobs::prune(&mut Tx::Sqlite(conn), finished_before)?
            }
            Op::PruneAccessLog { older_than } => {
                access::prune_access_log(&mut Tx::Sqlite(conn), older_than)?;
                continue;
            }
            Op::QuarantineArtifact { key, reason } => vec![Change::ArtifactQuarantined {
                quarantine: access::set_mark(
                    &mut Tx::Sqlite(conn),
                    &ctx,
                    &key,
                    reason,
                    Mark::Quarantine,
                    now,
                )?,
            }],
            Op::ReleaseArtifact { key } => vec![Change::ArtifactReleased {
                quarantine: access::release_mark(
                    &mut Tx::Sqlite(conn),
                    &ctx,
                    &key,
                    Mark::Quarantine,
                )?,
            }],
            Op::TouchKeys { uses } => {
                access::touch_keys(&mut Tx::Sqlite(conn), &uses)?;
                continue;
            }
            Op::ImportRecords(rec) => super::import::import(conn, &ctx, *rec, now)?,
            Op::Audit(draft) => {
                append_audit(conn, &ctx, head, now, draft)?;
                out.push(Change::Audited {
                    action: String::new(),
                });
                continue;
            }
        };
        for change in &changes {
            if let Some(draft) = change.audit_draft() {
                let seq = append_audit(conn, &ctx, head, now, draft)?;
                if let Some(ev) = change.event() {
                    append_event(conn, &ctx, now, seq, &ev)?;
                }
            }
        }
        out.extend(changes);
    }
    Ok(out)
}

fn append_audit(
    conn: &Connection,
    ctx: &WriteContext,
    head: &mut Option<ChainHead>,
    now: Timestamp,
    draft: AuditDraft,
) -> Result<u64> {
    let actx = AuditContext {
        namespace: &ctx.namespace,
        actor: &ctx.actor,
        correlation_id: &ctx.correlation_id,
        run_id: ctx.run_id,
    };
    let rec = AuditRecord::seal(head.as_ref(), now, &actx, draft);
    let d = &rec.draft;
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, at, namespace, actor, correlation_id, run_id, action, target_kind, \
         target_id, target_name, revision, prev_digest, digest, outcome, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .map_err(sql_err)?
    .execute(params![
        rec.seq as i64,
        micros(rec.at),
        rec.namespace.as_str(),
        rec.actor.to_string(),
        rec.correlation_id.as_str(),
        rec.run_id.map(|r| r.0),
        d.action,
        d.target_kind,
        d.target_id,
        d.target_name,
        d.revision.map(|r| r as i64),
        d.prev_digest.map(|x| x.hex()),
        d.digest.map(|x| x.hex()),
        d.outcome.as_str(),
        d.detail.as_ref().map(|v| v.to_string()),
        rec.prev_hash,
        rec.hash,
    ])
    .map_err(sql_err)?;
    *head = Some(rec.head());
    Ok(rec.seq)
}

fn append_event(
    conn: &Connection,
    ctx: &WriteContext,
    now: Timestamp,
    audit_seq: u64,
    ev: &kontextual_model::EventDraft,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (at, namespace, correlation_id, audit_seq, kind, subject, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(sql_err)?
    .execute(params![
        micros(now),
        ctx.namespace.as_str(),
        ctx.correlation_id.as_str(),
        audit_seq as i64,
        ev.kind,
        ev.subject,
        ev.payload.to_string(),
    ])
    .map_err(sql_err)?;
    Ok(())
}

fn check_derived_from(conn: &Connection, ctx: &WriteContext, p: &Provenance) -> Result<()> {
    for id in &p.derived_from {
        match load_artifact(conn, &ctx.namespace, &ArtifactKey::Id(*id))? {
            Some(a) if a.is_live() => {}
            _ => {
                return Err(StoreError::DanglingReference {
                    what: format!("derived_from artifact {id} does not exist or is deleted"),
                });
            }
        }
    }
    Ok(())
}

fn put_artifact(
    conn: &Connection,
    ctx: &WriteContext,
    put: PutArtifact,
    now: Timestamp,
) -> Result<Change> {
    let what = format!("artifact {}/{}", put.collection, put.name);
    let coll_id = read::collection_id(conn, &ctx.namespace, put.collection.as_str())?
        .ok_or_else(|| StoreError::not_found(format!("collection {}", put.collection)))?;
    let current = load_artifact(
        conn,
        &ctx.namespace,
        &ArtifactKey::Name {
            collection: put.collection.clone(),
            name: put.name.clone(),
        },
    )?;
    rules::check_expect(&what, current.as_ref(), put.expect)?;
    rules::check_put(&put)?;
    if let Some(p) = &put.provenance {
        check_derived_from(conn, ctx, p)?;
    }
    let mut put = put;
    let content = std::mem::replace(&mut put.content, Content::Keep);
    let keep = matches!(content, Content::Keep);
    let (digest, size) = match (content, &current) {
        (Content::Keep, Some(cur)) if cur.state != ArtifactState::Purged => (cur.digest, cur.size),
        (Content::Keep, _) => {
            return Err(StoreError::InvalidInput(format!(
                "{what} has no content to keep: provide content"
            )));
        }
        (content, _) => blobs::store(conn, content, now)?,
    };
    let plan = rules::plan_put(ctx, put, coll_id, current.as_ref(), digest, size, keep, now);
    if let rules::PutPlan::Write {
        next,
        kind,
        prev_digest,
    } = &plan
    {
        write_artifact(conn, next, current.is_none())?;
        insert_revision(conn, ctx, next, *kind, *prev_digest, true)?;
    }
    Ok(rules::put_change(plan))
}

pub(super) fn write_artifact(conn: &Connection, a: &Artifact, insert: bool) -> Result<()> {
    let provenance = serde_json::to_string(&a.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    let sql = if insert {
        "INSERT INTO artifacts (id, namespace, collection_id, name, artifact_type, media_type, digest, size, \
         metadata, lifecycle, classification, source_system, provenance, state, revision, run_id, created_at, updated_at, title) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    } else {
        "UPDATE artifacts SET namespace = ?2, collection_id = ?3, name = ?4, artifact_type = ?5, media_type = ?6, \
         digest = ?7, size = ?8, metadata = ?9, lifecycle = ?10, classification = ?11, source_system = ?12, \
         provenance = ?13, state = ?14, revision = ?15, run_id = ?16, created_at = ?17, updated_at = ?18, title = ?19 WHERE id = ?1"
    };
    conn.prepare_cached(sql)
        .map_err(sql_err)?
        .execute(params![
            a.id.0,
            a.namespace.as_str(),
            a.collection_id.0,
            a.name.as_str(),
            a.artifact_type,
            a.media_type,
            a.digest.hex(),
            a.size as i64,
            a.metadata.as_str(),
            a.lifecycle.as_str(),
            a.classification.as_str(),
            a.source_system,
            provenance,
            a.state.as_str(),
            a.revision as i64,
            a.run_id.map(|r| r.0),
            micros(a.created_at),
            micros(a.updated_at),
            a.title,
        ])
        .map_err(|e| match sql_err(e) {
            StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
                what: format!("artifact {}/{}", a.collection, a.name),
            },
            other => other,
        })?;
    Ok(())
}

fn insert_revision(
    conn: &Connection,
    ctx: &WriteContext,
    a: &Artifact,
    kind: ChangeKind,
    prev_digest: Option<Digest>,
    content_available: bool,
) -> Result<()> {
    let provenance = serde_json::to_string(&a.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO revisions (artifact_id, revision, change, prev_digest, digest, size, media_type, metadata, \
         lifecycle, classification, provenance, content_available, actor, correlation_id, run_id, created_at, title) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .map_err(sql_err)?
    .execute(params![
        a.id.0,
        a.revision as i64,
        kind.as_str(),
        prev_digest.map(|d| d.hex()),
        a.digest.hex(),
        a.size as i64,
        a.media_type,
        a.metadata.as_str(),
        a.lifecycle.as_str(),
        a.classification.as_str(),
        provenance,
        content_available,
        ctx.actor.to_string(),
        ctx.correlation_id.as_str(),
        ctx.run_id.map(|r| r.0),
        micros(a.updated_at),
        a.title,
    ])
    .map_err(sql_err)?;
    Ok(())
}

fn existing(conn: &Connection, ctx: &WriteContext, key: &ArtifactKey) -> Result<Artifact> {
    load_artifact(conn, &ctx.namespace, key)?.ok_or_else(|| StoreError::not_found(key.to_string()))
}

fn check_rev(what: &str, current: u64, expect: Option<u64>) -> Result<()> {
    match expect {
        Some(e) if e != current => Err(StoreError::Conflict {
            what: what.to_owned(),
            expected: e,
            actual: current.to_string(),
        }),
        _ => Ok(()),
    }
}

fn cascade_relations(conn: &Connection, id: ArtifactId, now: Timestamp) -> Result<Vec<Change>> {
    read::live_relations_of(conn, id)?
        .into_iter()
        .map(|r| delete_relation(conn, r, RelationDeleteCause::EndpointDeleted, now))
        .collect()
}

fn delete_artifact(
    conn: &Connection,
    ctx: &WriteContext,
    key: &ArtifactKey,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let cur = existing(conn, ctx, key)?;
    let what = format!("artifact {}/{}", cur.collection, cur.name);
    if !cur.is_live() {
        return Err(StoreError::not_found(format!(
            "{what} (already {})",
            cur.state
        )));
    }
    check_rev(&what, cur.revision, expect)?;
    access::refuse_if_held(&mut Tx::Sqlite(conn), ctx, &cur, &what)?;
    let mut changes = cascade_relations(conn, cur.id, now)?;
    changes.push(tombstone(conn, ctx, &cur, ChangeKind::Deleted, now)?);
    Ok(changes)
}

/// Appends the revision that ends an artifact's life (deleted or purged):
/// same content record, new state, one revision up.
fn tombstone(
    conn: &Connection,
    ctx: &WriteContext,
    cur: &Artifact,
    kind: ChangeKind,
    now: Timestamp,
) -> Result<Change> {
    let (state, content_available) = match kind {
        ChangeKind::Purged => (ArtifactState::Purged, false),
        _ => (ArtifactState::Deleted, true),
    };
    let next = Artifact {
        state,
        revision: cur.revision + 1,
        run_id: ctx.run_id,
        updated_at: now,
        ..cur.clone()
    };
    write_artifact(conn, &next, false)?;
    insert_revision(conn, ctx, &next, kind, Some(cur.digest), content_available)?;
    Ok(Change::Artifact {
        kind,
        artifact: next,
        prev_digest: Some(cur.digest),
    })
}

fn purge_artifact(
    conn: &Connection,
    ctx: &WriteContext,
    key: &ArtifactKey,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let cur = existing(conn, ctx, key)?;
    let what = format!("artifact {}/{}", cur.collection, cur.name);
    if cur.state == ArtifactState::Purged {
        return Err(StoreError::not_found(format!(
            "content of {what} (already purged)"
        )));
    }
    check_rev(&what, cur.revision, expect)?;
    access::refuse_if_held(&mut Tx::Sqlite(conn), ctx, &cur, &what)?;
    let mut changes = cascade_relations(conn, cur.id, now)?;
    let digests: Vec<Digest> = {
        let mut stmt = conn
            .prepare("SELECT DISTINCT digest FROM revisions WHERE artifact_id = ?1 AND content_available = 1")
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([cur.id.0], |r| r.get::<_, String>(0))
            .map_err(sql_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err)?;
        rows.iter()
            .map(|h| Digest::from_hex(h))
            .collect::<Result<_, _>>()?
    };
    conn.execute(
        "UPDATE revisions SET content_available = 0 WHERE artifact_id = ?1",
        [cur.id.0],
    )
    .map_err(sql_err)?;
    let change = tombstone(conn, ctx, &cur, ChangeKind::Purged, now)?;
    blobs::collect(conn, &digests)?;
    changes.push(change);
    Ok(changes)
}

fn endpoint(
    conn: &Connection,
    ctx: &WriteContext,
    role: &str,
    key: &ArtifactKey,
) -> Result<Artifact> {
    match load_artifact(conn, &ctx.namespace, key)? {
        Some(a) if a.is_live() => Ok(a),
        Some(a) => Err(StoreError::DanglingReference {
            what: format!("relation {role} {key} is {}", a.state),
        }),
        None => Err(StoreError::DanglingReference {
            what: format!("relation {role} {key} does not exist"),
        }),
    }
}

pub(super) fn write_relation(conn: &Connection, r: &Relation, insert: bool) -> Result<()> {
    let sql = if insert {
        "INSERT INTO relations (id, namespace, rel_type, source_id, target_id, properties, revision, deleted, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    } else {
        "UPDATE relations SET namespace = ?2, rel_type = ?3, source_id = ?4, target_id = ?5, properties = ?6, \
         revision = ?7, deleted = ?8, created_at = ?9, updated_at = ?10 WHERE id = ?1"
    };
    conn.prepare_cached(sql)
        .map_err(sql_err)?
        .execute(params![
            r.id.0,
            r.namespace.as_str(),
            r.rel_type.as_str(),
            r.source.0,
            r.target.0,
            r.properties.as_str(),
            r.revision as i64,
            r.deleted,
            micros(r.created_at),
            micros(r.updated_at),
        ])
        .map_err(|e| match sql_err(e) {
            StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
                what: format!("relation {} {} {}", r.source, r.rel_type, r.target),
            },
            other => other,
        })?;
    Ok(())
}

fn create_relation(
    conn: &Connection,
    ctx: &WriteContext,
    source: &ArtifactKey,
    rel_type: kontextual_model::RelationType,
    target: &ArtifactKey,
    properties: Metadata,
    now: Timestamp,
) -> Result<Change> {
    let s = endpoint(conn, ctx, "source", source)?;
    let t = endpoint(conn, ctx, "target", target)?;
    if s.id == t.id {
        return Err(StoreError::InvalidInput(format!(
            "artifact {}/{} cannot be related to itself",
            s.collection, s.name
        )));
    }
    let r = Relation {
        id: RelationId::new(),
        namespace: ctx.namespace.clone(),
        rel_type,
        source: s.id,
        target: t.id,
        properties,
        revision: 1,
        deleted: false,
        created_at: now,
        updated_at: now,
    };
    write_relation(conn, &r, true).map_err(|e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!(
                "relation {}/{} {} {}/{}",
                s.collection, s.name, r.rel_type, t.collection, t.name
            ),
        },
        other => other,
    })?;
    Ok(Change::RelationCreated { relation: r })
}

fn live_relation(
    conn: &Connection,
    ctx: &WriteContext,
    id: RelationId,
    expect: Option<u64>,
) -> Result<Relation> {
    let r = read::relation(conn, &ctx.namespace, id)?
        .filter(|r| !r.deleted)
        .ok_or_else(|| StoreError::not_found(format!("relation {id}")))?;
    check_rev(&format!("relation {id}"), r.revision, expect)?;
    Ok(r)
}

fn update_relation(
    conn: &Connection,
    ctx: &WriteContext,
    id: RelationId,
    rel_type: Option<kontextual_model::RelationType>,
    properties: Option<Metadata>,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Change> {
    let cur = live_relation(conn, ctx, id, expect)?;
    let next = Relation {
        rel_type: rel_type.unwrap_or_else(|| cur.rel_type.clone()),
        properties: properties.unwrap_or_else(|| cur.properties.clone()),
        revision: cur.revision + 1,
        updated_at: now,
        ..cur
    };
    write_relation(conn, &next, false)?;
    Ok(Change::RelationUpdated { relation: next })
}

fn delete_relation(
    conn: &Connection,
    cur: Relation,
    cause: RelationDeleteCause,
    now: Timestamp,
) -> Result<Change> {
    let next = Relation {
        deleted: true,
        revision: cur.revision + 1,
        updated_at: now,
        ..cur
    };
    write_relation(conn, &next, false)?;
    Ok(Change::RelationDeleted {
        relation: next,
        cause,
    })
}

fn prune_outbox(conn: &Connection, older_than: Timestamp) -> Result<Vec<Change>> {
    let min_cursor: Option<i64> = conn
        .query_row("SELECT min(cursor) FROM outbox_consumers", [], |r| r.get(0))
        .map_err(sql_err)?;
    let Some(min_cursor) = min_cursor else {
        return Ok(Vec::new());
    };
    let (count, through): (i64, Option<i64>) = conn
        .query_row(
            "SELECT count(*), max(seq) FROM outbox WHERE seq <= ?1 AND at < ?2",
            params![min_cursor, micros(older_than)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql_err)?;
    let Some(through) = through else {
        return Ok(Vec::new());
    };
    conn.execute(
        "DELETE FROM outbox WHERE seq <= ?1 AND at < ?2",
        params![min_cursor, micros(older_than)],
    )
    .map_err(sql_err)?;
    Ok(vec![Change::OutboxPruned {
        through_seq: through as u64,
        count: count as u64,
    }])
}

fn save_context_package(
    conn: &Connection,
    ctx: &WriteContext,
    name: kontextual_model::PackageName,
    digest: Digest,
    manifest: serde_json::Value,
    now: Timestamp,
) -> Result<Change> {
    let latest = read::context_package(conn, &ctx.namespace, name.as_str(), None)?;
    if let Some(p) = latest.as_ref().filter(|p| p.digest == digest) {
        return Ok(Change::ContextPackageUnchanged { package: p.clone() });
    }
    let package = kontextual_model::ContextPackage {
        id: uuid::Uuid::now_v7(),
        namespace: ctx.namespace.clone(),
        name,
        version: latest.map_or(1, |p| p.version + 1),
        digest,
        manifest,
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        created_at: now,
    };
    conn.execute(
        "INSERT INTO context_packages (namespace, name, version, id, digest, manifest, actor, \
         correlation_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            package.namespace.as_str(),
            package.name.as_str(),
            package.version as i64,
            package.id,
            package.digest.hex(),
            package.manifest.to_string(),
            package.actor.to_string(),
            package.correlation_id.as_str(),
            micros(now),
        ],
    )
    .map_err(sql_err)?;
    Ok(Change::ContextPackageSaved { package })
}

fn ack_outbox(conn: &Connection, consumer: &str, seq: u64, now: Timestamp) -> Result<()> {
    if consumer.is_empty() || consumer.len() > 128 || consumer.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput(format!(
            "outbox consumer name {consumer:?} must be 1-128 printable characters"
        )));
    }
    let last = read::count(
        conn,
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
    )?;
    if seq > last {
        return Err(StoreError::InvalidInput(format!(
            "cannot acknowledge outbox event {seq}: the last event is {last}"
        )));
    }
    conn.execute(
        "INSERT INTO outbox_consumers (name, cursor, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET cursor = max(cursor, excluded.cursor), updated_at = excluded.updated_at",
        params![consumer, seq as i64, micros(now)],
    )
    .map_err(sql_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::ErrorKind;
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

//! Applying a write batch in one transaction, after taking the store's
//! writer lock (`pg_advisory_xact_lock`): the audit head is read and every
//! audit and outbox sequence number drawn under it, so sequence order is
//! commit order across processes (ADR 0007). The decisions are the shared
//! rules of `crate::rules`.

use crate::postgres::conn::Conn;
use crate::sql::Tx;
use crate::{
    ArtifactKey, Content, Op, PutArtifact, Result, StoreError, WriteBatch, WriteContext, rules,
};
use kontextual_model::audit::AuditContext;
use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{
    Artifact, ArtifactState, AuditDraft, AuditRecord, ChainHead, Change, ChangeKind, CollectionId,
    Digest, Metadata, Relation, RelationId, Timestamp,
};

use crate::access::Mark;
use crate::access::write as access;
use crate::jobs::write as jobs;
use crate::postgres::{blobs, pg_err, read};

/// `pg_advisory_xact_lock` key of the store's writer lock ("KNTX" + 2).
pub(crate) const WRITER_LOCK: i64 = 0x4B4E_5458_0000_0002;

/// What a batch did: its changes, the new head when it extended the audit
/// chain, and whether the chain still held this process's recorded head
/// (`anchor`) when the batch began.
pub(crate) struct Applied {
    pub changes: Vec<Change>,
    pub head: Option<ChainHead>,
    pub anchor_held: bool,
}

/// Applies the batch.
pub(crate) fn apply(
    tx: &mut Conn,
    batch: WriteBatch,
    anchor: Option<&ChainHead>,
) -> Result<Applied> {
    // Bookkeeping needs no writer lock (job claims lock their rows with
    // `SKIP LOCKED` instead, run steps their run's row), so workers in many
    // processes do not queue behind each other or behind content writes.
    let locked = !batch.ops.iter().all(Op::is_bookkeeping);
    if locked {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
            .map_err(pg_err)?;
    }
    let mut head = if locked { read::audit_head(tx)? } else { None };
    let start_seq = head.as_ref().map(|h| h.seq);
    let anchor_held = match anchor {
        Some(a) if locked => crate::head_copy::chain_holds(a, head.as_ref(), |seq| {
            Ok::<_, StoreError>(
                tx.query_opt(
                    "SELECT hash FROM audit_log WHERE seq = $1",
                    &[&(seq as i64)],
                )
                .map_err(pg_err)?
                .map(|r| r.get::<_, String>(0)),
            )
        })?,
        _ => true,
    };
    let now = kontextual_model::now();
    let WriteBatch { ctx, ops } = batch;
    let mut out = Vec::with_capacity(ops.len());
    // Collection ids looked up by this batch's puts (an ingest batch puts
    // many files into one collection); forgotten at any other operation.
    let mut collections: std::collections::HashMap<String, CollectionId> = Default::default();
    for op in ops {
        if !matches!(op, Op::PutArtifact(_)) {
            collections.clear();
        }
        let changes = match op {
            Op::CreateCollection {
                name,
                description,
                if_absent,
            } => crate::knowledge::write::create_collection(
                &mut Tx::Postgres(tx),
                &ctx,
                name.as_str(),
                &description,
                if_absent,
                now,
            )?,
            Op::PutArtifact(put) => vec![put_artifact(tx, &ctx, put, now, &mut collections)?],
            Op::DeleteArtifact { key, expect } => delete_artifact(tx, &ctx, &key, expect, now)?,
            Op::PurgeArtifact { key, expect } => purge_artifact(tx, &ctx, &key, expect, now)?,
            Op::CreateRelation {
                source,
                rel_type,
                target,
                properties,
            } => vec![create_relation(
                tx, &ctx, &source, rel_type, &target, properties, now,
            )?],
            Op::UpdateRelation {
                id,
                rel_type,
                properties,
                expect,
            } => vec![update_relation(
                tx, &ctx, id, rel_type, properties, expect, now,
            )?],
            Op::DeleteRelation { id, expect } => {
                let cur = live_relation(tx, &ctx, id, expect)?;
                vec![delete_relation(
                    tx,
                    cur,
                    RelationDeleteCause::Requested,
                    now,
                )?]
            }
            Op::PruneOutbox { older_than } => prune_outbox(tx, older_than)?,
            Op::AckOutbox { consumer, seq } => {
                ack_outbox(tx, &consumer, seq, now)?;
                Vec::new()
            }
            Op::Audit(draft) => {
                append_audit(tx, &ctx, &mut head, now, draft, None)?;
                Vec::new()
            }
            Op::StartRun {
                id,
                kind,
                input,
                owner,
                job,
            } => vec![crate::runs::write::start_run(
                &mut Tx::Postgres(tx),
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
                    &mut Tx::Postgres(tx),
                    &ctx,
                    id,
                    &name,
                    status,
                    &detail,
                    now,
                )?;
                Vec::new()
            }
            Op::FinishRun {
                id,
                status,
                manifest,
            } => vec![crate::runs::write::finish_run(
                &mut Tx::Postgres(tx),
                &ctx,
                id,
                status,
                manifest,
                now,
            )?],
            Op::SaveContextPackage {
                name,
                digest,
                manifest,
            } => vec![save_context_package(tx, &ctx, name, digest, manifest, now)?],
            Op::ImportRecords(rec) => crate::postgres::import::import(tx, &ctx, *rec, now)?,
            Op::EnqueueJob(new) => vec![jobs::enqueue(&mut Tx::Postgres(tx), &ctx, new, now)?],
            Op::ClaimJobs {
                worker,
                kinds,
                limit,
                lease,
            } => vec![jobs::claim(
                &mut Tx::Postgres(tx),
                &worker,
                &kinds,
                limit,
                lease,
                now,
            )?],
            Op::HeartbeatJob { id, attempt, lease } => {
                vec![jobs::heartbeat(
                    &mut Tx::Postgres(tx),
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
                &mut Tx::Postgres(tx),
                id,
                attempt,
                result,
                report,
                now,
            )?],
            Op::ActOnJob { id, action } => {
                vec![jobs::act(&mut Tx::Postgres(tx), &ctx, id, action, now)?]
            }
            Op::PruneJobs { finished_before } => {
                jobs::prune(&mut Tx::Postgres(tx), finished_before)?
            }
            Op::CreateKey(key) => vec![access::create_key(&mut Tx::Postgres(tx), &ctx, key, now)?],
            Op::RevokeKey { id } => access::revoke_key(&mut Tx::Postgres(tx), &ctx, &id, now)?,
            Op::TouchKeys { uses } => {
                access::touch_keys(&mut Tx::Postgres(tx), &uses)?;
                Vec::new()
            }
            Op::RecordAccess { entries } => {
                access::record_access(&mut Tx::Postgres(tx), &entries)?;
                Vec::new()
            }
            Op::PruneAccessLog { older_than } => {
                access::prune_access_log(&mut Tx::Postgres(tx), older_than)?;
                Vec::new()
            }
            Op::SetClearance { actor, level } => {
                vec![access::set_clearance(
                    &mut Tx::Postgres(tx),
                    &ctx,
                    actor,
                    level,
                    now,
                )?]
            }
            Op::SetHold { key, reason } => vec![Change::HoldSet {
                hold: access::set_mark(&mut Tx::Postgres(tx), &ctx, &key, reason, Mark::Hold, now)?,
            }],
            Op::ReleaseHold { key } => vec![Change::HoldReleased {
                hold: access::release_mark(&mut Tx::Postgres(tx), &ctx, &key, Mark::Hold)?,
            }],
            Op::QuarantineArtifact { key, reason } => vec![Change::ArtifactQuarantined {
                quarantine: access::set_mark(
                    &mut Tx::Postgres(tx),
                    &ctx,
                    &key,
                    reason,
                    Mark::Quarantine,
                    now,
                )?,
            }],
            Op::ReleaseArtifact { key } => vec![Change::ArtifactReleased {
                quarantine: access::release_mark(
                    &mut Tx::Postgres(tx),
                    &ctx,
                    &key,
                    Mark::Quarantine,
                )?,
            }],
            Op::CreateGrant {
                actor,
                permission,
                scope,
            } => vec![access::create_grant(
                &mut Tx::Postgres(tx),
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
                &mut Tx::Postgres(tx),
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
                &mut Tx::Postgres(tx),
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
                    &mut Tx::Postgres(tx),
                    &scope,
                    &key,
                    status,
                    &content_type,
                    &body,
                )?;
                Vec::new()
            }
            Op::AbandonIdempotent { scope, key } => {
                access::abandon_idempotent(&mut Tx::Postgres(tx), &scope, &key)?;
                Vec::new()
            }
        };
        for change in &changes {
            if let Some(draft) = change.audit_draft() {
                if !locked {
                    return Err(StoreError::Internal(
                        "an audited change in a batch without the writer lock".to_owned(),
                    ));
                }
                append_audit(tx, &ctx, &mut head, now, draft, change.event())?;
            }
        }
        out.extend(changes);
    }
    Ok(Applied {
        changes: out,
        head: head.filter(|h| Some(h.seq) != start_seq),
        anchor_held,
    })
}

/// Appends an audit record and, when the change has one, its event: one
/// statement (one round trip) for both.
fn append_audit(
    tx: &mut Conn,
    ctx: &WriteContext,
    head: &mut Option<ChainHead>,
    now: Timestamp,
    draft: AuditDraft,
    event: Option<kontextual_model::EventDraft>,
) -> Result<u64> {
    let actx = AuditContext {
        namespace: &ctx.namespace,
        actor: &ctx.actor,
        correlation_id: &ctx.correlation_id,
        run_id: ctx.run_id,
    };
    let rec = AuditRecord::seal(head.as_ref(), now, &actx, draft);
    let d = &rec.draft;
    const AUDIT: &str = "INSERT INTO audit_log (seq, at, namespace, actor, correlation_id, run_id, action, target_kind, \
         target_id, target_name, revision, prev_digest, digest, outcome, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
    // The event's seq is drawn in the same statement; the last one is kept
    // beside the events (the sequence also counts draws of rolled-back
    // transactions, and pruning may delete every event).
    const AUDIT_AND_EVENT: &str = "WITH a AS (INSERT INTO audit_log (seq, at, namespace, actor, correlation_id, run_id, \
         action, target_kind, target_id, target_name, revision, prev_digest, digest, outcome, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)), \
         e AS (INSERT INTO outbox (at, namespace, correlation_id, audit_seq, kind, subject, payload) \
         VALUES ($2, $3, $5, $1, $18, $19, $20) RETURNING seq) \
         INSERT INTO store_meta (key, value) SELECT 'outbox_last', seq::text FROM e \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    let seq = rec.seq as i64;
    let at = rec.at.as_microsecond();
    let actor = rec.actor.to_string();
    let run = rec.run_id.map(|r| r.0);
    let revision = d.revision.map(|r| r as i64);
    let prev_digest = d.prev_digest.map(|x| x.hex());
    let digest = d.digest.map(|x| x.hex());
    let detail = d.detail.as_ref().map(|v| v.to_string());
    let (ns, correlation, outcome) = (
        rec.namespace.as_str(),
        rec.correlation_id.as_str(),
        d.outcome.as_str(),
    );
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
        &seq,
        &at,
        &ns,
        &actor,
        &correlation,
        &run,
        &d.action,
        &d.target_kind,
        &d.target_id,
        &d.target_name,
        &revision,
        &prev_digest,
        &digest,
        &outcome,
        &detail,
        &rec.prev_hash,
        &rec.hash,
    ];
    let payload = event.as_ref().map(|e| e.payload.to_string());
    let sql = match (&event, &payload) {
        (Some(ev), Some(payload)) => {
            params.extend_from_slice(&[&ev.kind, &ev.subject, payload]);
            AUDIT_AND_EVENT
        }
        _ => AUDIT,
    };
    tx.execute(sql, &params).map_err(pg_err)?;
    *head = Some(rec.head());
    Ok(rec.seq)
}

fn check_derived_from(
    tx: &mut Conn,
    ctx: &WriteContext,
    p: &kontextual_model::Provenance,
) -> Result<()> {
    for id in &p.derived_from {
        match read::artifact(tx, &ctx.namespace, &ArtifactKey::Id(*id))? {
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
    tx: &mut Conn,
    ctx: &WriteContext,
    mut put: PutArtifact,
    now: Timestamp,
    collections: &mut std::collections::HashMap<String, CollectionId>,
) -> Result<Change> {
    let what = format!("artifact {}/{}", put.collection, put.name);
    let coll_id = match collections.get(put.collection.as_str()) {
        Some(id) => *id,
        None => {
            let id = read::collection_id(tx, &ctx.namespace, put.collection.as_str())?
                .ok_or_else(|| StoreError::not_found(format!("collection {}", put.collection)))?;
            collections.insert(put.collection.as_str().to_owned(), id);
            id
        }
    };
    let current = read::artifact(
        tx,
        &ctx.namespace,
        &ArtifactKey::Name {
            collection: put.collection.clone(),
            name: put.name.clone(),
        },
    )?;
    rules::check_expect(&what, current.as_ref(), put.expect)?;
    rules::check_put(&put)?;
    if let Some(p) = &put.provenance {
        check_derived_from(tx, ctx, p)?;
    }
    let content = std::mem::replace(&mut put.content, Content::Keep);
    let keep = matches!(content, Content::Keep);
    let (digest, size) = match (content, &current) {
        (Content::Keep, Some(cur)) if cur.state != ArtifactState::Purged => (cur.digest, cur.size),
        (Content::Keep, _) => {
            return Err(StoreError::InvalidInput(format!(
                "{what} has no content to keep: provide content"
            )));
        }
        (content, _) => blobs::store(tx, content, now)?,
    };
    let plan = rules::plan_put(ctx, put, coll_id, current.as_ref(), digest, size, keep, now);
    if let rules::PutPlan::Write {
        next,
        kind,
        prev_digest,
    } = &plan
    {
        write_artifact(tx, next, current.is_none())?;
        insert_revision(tx, ctx, next, *kind, *prev_digest, true)?;
    }
    Ok(rules::put_change(plan))
}

pub(crate) fn write_artifact(tx: &mut Conn, a: &Artifact, insert: bool) -> Result<()> {
    let provenance = serde_json::to_string(&a.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    let sql = if insert {
        "INSERT INTO artifacts (id, namespace, collection_id, name, artifact_type, media_type, digest, size, \
         metadata, lifecycle, classification, source_system, provenance, state, revision, run_id, created_at, updated_at, title) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    } else {
        "UPDATE artifacts SET namespace = $2, collection_id = $3, name = $4, artifact_type = $5, media_type = $6, \
         digest = $7, size = $8, metadata = $9, lifecycle = $10, classification = $11, source_system = $12, \
         provenance = $13, state = $14, revision = $15, run_id = $16, created_at = $17, updated_at = $18, title = $19 WHERE id = $1"
    };
    tx.execute(
        sql,
        &[
            &a.id.0,
            &a.namespace.as_str(),
            &a.collection_id.0,
            &a.name.as_str(),
            &a.artifact_type,
            &a.media_type,
            &a.digest.hex(),
            &(a.size as i64),
            &a.metadata.as_str(),
            &a.lifecycle.as_str(),
            &a.classification.as_str(),
            &a.source_system,
            &provenance,
            &a.state.as_str(),
            &(a.revision as i64),
            &a.run_id.map(|r| r.0),
            &a.created_at.as_microsecond(),
            &a.updated_at.as_microsecond(),
            &a.title,
        ],
    )
    .map_err(|e| match pg_err(e) {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("artifact {}/{}", a.collection, a.name),
        },
        other => other,
    })?;
    Ok(())
}

fn insert_revision(
    tx: &mut Conn,
    ctx: &WriteContext,
    a: &Artifact,
    kind: ChangeKind,
    prev_digest: Option<Digest>,
    content_available: bool,
) -> Result<()> {
    let provenance = serde_json::to_string(&a.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    tx.execute(
        "INSERT INTO revisions (artifact_id, revision, change, prev_digest, digest, size, media_type, metadata, \
         lifecycle, classification, provenance, content_available, actor, correlation_id, run_id, created_at, title) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &[
            &a.id.0,
            &(a.revision as i64),
            &kind.as_str(),
            &prev_digest.map(|d| d.hex()),
            &a.digest.hex(),
            &(a.size as i64),
            &a.media_type,
            &a.metadata.as_str(),
            &a.lifecycle.as_str(),
            &a.classification.as_str(),
            &provenance,
            &content_available,
            &ctx.actor.to_string(),
            &ctx.correlation_id.as_str(),
            &ctx.run_id.map(|r| r.0),
            &a.updated_at.as_microsecond(),
            &a.title,
        ],
    )
    .map_err(pg_err)?;
    Ok(())
}

fn existing(tx: &mut Conn, ctx: &WriteContext, key: &ArtifactKey) -> Result<Artifact> {
    read::artifact(tx, &ctx.namespace, key)?.ok_or_else(|| StoreError::not_found(key.to_string()))
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

fn cascade_relations(
    tx: &mut Conn,
    id: kontextual_model::ArtifactId,
    now: Timestamp,
) -> Result<Vec<Change>> {
    read::live_relations_of(tx, id)?
        .into_iter()
        .map(|r| delete_relation(tx, r, RelationDeleteCause::EndpointDeleted, now))
        .collect()
}

fn delete_artifact(
    tx: &mut Conn,
    ctx: &WriteContext,
    key: &ArtifactKey,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let cur = existing(tx, ctx, key)?;
    let what = format!("artifact {}/{}", cur.collection, cur.name);
    if !cur.is_live() {
        return Err(StoreError::not_found(format!(
            "{what} (already {})",
            cur.state
        )));
    }
    check_rev(&what, cur.revision, expect)?;
    access::refuse_if_held(&mut Tx::Postgres(tx), ctx, &cur, &what)?;
    let mut changes = cascade_relations(tx, cur.id, now)?;
    changes.push(tombstone(tx, ctx, &cur, ChangeKind::Deleted, now)?);
    Ok(changes)
}

fn tombstone(
    tx: &mut Conn,
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
    write_artifact(tx, &next, false)?;
    insert_revision(tx, ctx, &next, kind, Some(cur.digest), content_available)?;
    Ok(Change::Artifact {
        kind,
        artifact: next,
        prev_digest: Some(cur.digest),
    })
}

fn purge_artifact(
    tx: &mut Conn,
    ctx: &WriteContext,
    key: &ArtifactKey,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let cur = existing(tx, ctx, key)?;
    let what = format!("artifact {}/{}", cur.collection, cur.name);
    if cur.state == ArtifactState::Purged {
        return Err(StoreError::not_found(format!(
            "content of {what} (already purged)"
        )));
    }
    check_rev(&what, cur.revision, expect)?;
    access::refuse_if_held(&mut Tx::Postgres(tx), ctx, &cur, &what)?;
    let mut changes = cascade_relations(tx, cur.id, now)?;
    let digests = tx
        .query(
            "SELECT DISTINCT digest FROM revisions WHERE artifact_id = $1 AND content_available",
            &[&cur.id.0],
        )
        .map_err(pg_err)?
        .iter()
        .map(|r| crate::postgres::rows::digest(r, 0))
        .collect::<Result<Vec<Digest>>>()?;
    tx.execute(
        "UPDATE revisions SET content_available = FALSE WHERE artifact_id = $1",
        &[&cur.id.0],
    )
    .map_err(pg_err)?;
    let change = tombstone(tx, ctx, &cur, ChangeKind::Purged, now)?;
    blobs::collect(tx, &digests)?;
    changes.push(change);
    Ok(changes)
}

fn endpoint(tx: &mut Conn, ctx: &WriteContext, role: &str, key: &ArtifactKey) -> Result<Artifact> {
    match read::artifact(tx, &ctx.namespace, key)? {
        Some(a) if a.is_live() => Ok(a),
        Some(a) => Err(StoreError::DanglingReference {
            what: format!("relation {role} {key} is {}", a.state),
        }),
        None => Err(StoreError::DanglingReference {
            what: format!("relation {role} {key} does not exist"),
        }),
    }
}

pub(crate) fn write_relation(tx: &mut Conn, r: &Relation, insert: bool) -> Result<()> {
    let sql = if insert {
        "INSERT INTO relations (id, namespace, rel_type, source_id, target_id, properties, revision, deleted, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    } else {
        "UPDATE relations SET namespace = $2, rel_type = $3, source_id = $4, target_id = $5, properties = $6, \
         revision = $7, deleted = $8, created_at = $9, updated_at = $10 WHERE id = $1"
    };
    tx.execute(
        sql,
        &[
            &r.id.0,
            &r.namespace.as_str(),
            &r.rel_type.as_str(),
            &r.source.0,
            &r.target.0,
            &r.properties.as_str(),
            &(r.revision as i64),
            &r.deleted,
            &r.created_at.as_microsecond(),
            &r.updated_at.as_microsecond(),
        ],
    )
    .map_err(|e| match pg_err(e) {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("relation {} {} {}", r.source, r.rel_type, r.target),
        },
        other => other,
    })?;
    Ok(())
}

fn create_relation(
    tx: &mut Conn,
    ctx: &WriteContext,
    source: &ArtifactKey,
    rel_type: kontextual_model::RelationType,
    target: &ArtifactKey,
    properties: Metadata,
    now: Timestamp,
) -> Result<Change> {
    let s = endpoint(tx, ctx, "source", source)?;
    let t = endpoint(tx, ctx, "target", target)?;
    if s.id == t.id {
        return Err(StoreError::InvalidInput(format!(
            "artifact {}/{} cannot be related to itself",
            s.collection, s.name
        )));
    }
    // Checked first: a failed statement would abort the whole transaction.
    let live = tx
        .query_opt(
            "SELECT 1 FROM relations WHERE namespace = $1 AND source_id = $2 AND rel_type = $3 \
             AND target_id = $4 AND NOT deleted",
            &[
                &ctx.namespace.as_str(),
                &s.id.0,
                &rel_type.as_str(),
                &t.id.0,
            ],
        )
        .map_err(pg_err)?;
    if live.is_some() {
        return Err(StoreError::AlreadyExists {
            what: format!(
                "relation {}/{} {} {}/{}",
                s.collection, s.name, rel_type, t.collection, t.name
            ),
        });
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
    write_relation(tx, &r, true)?;
    Ok(Change::RelationCreated { relation: r })
}

fn live_relation(
    tx: &mut Conn,
    ctx: &WriteContext,
    id: RelationId,
    expect: Option<u64>,
) -> Result<Relation> {
    let r = read::relation(tx, &ctx.namespace, id)?
        .filter(|r| !r.deleted)
        .ok_or_else(|| StoreError::not_found(format!("relation {id}")))?;
    check_rev(&format!("relation {id}"), r.revision, expect)?;
    Ok(r)
}

fn update_relation(
    tx: &mut Conn,
    ctx: &WriteContext,
    id: RelationId,
    rel_type: Option<kontextual_model::RelationType>,
    properties: Option<Metadata>,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Change> {
    let cur = live_relation(tx, ctx, id, expect)?;
    let next = Relation {
        rel_type: rel_type.unwrap_or_else(|| cur.rel_type.clone()),
        properties: properties.unwrap_or_else(|| cur.properties.clone()),
        revision: cur.revision + 1,
        updated_at: now,
        ..cur
    };
    if next.rel_type != cur.rel_type {
        let clash = tx
            .query_opt(
                "SELECT 1 FROM relations WHERE namespace = $1 AND source_id = $2 AND rel_type = $3 \
                 AND target_id = $4 AND NOT deleted AND id <> $5",
                &[
                    &ctx.namespace.as_str(),
                    &next.source.0,
                    &next.rel_type.as_str(),
                    &next.target.0,
                    &next.id.0,
                ],
            )
            .map_err(pg_err)?;
        if clash.is_some() {
            return Err(StoreError::AlreadyExists {
                what: format!("relation {} {} {}", next.source, next.rel_type, next.target),
            });
        }
    }
    write_relation(tx, &next, false)?;
    Ok(Change::RelationUpdated { relation: next })
}

fn delete_relation(
    tx: &mut Conn,
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
    write_relation(tx, &next, false)?;
    Ok(Change::RelationDeleted {
        relation: next,
        cause,
    })
}

fn prune_outbox(tx: &mut Conn, older_than: Timestamp) -> Result<Vec<Change>> {
    let min_cursor: Option<i64> = tx
        .query_one("SELECT min(cursor) FROM outbox_consumers", &[])
        .map_err(pg_err)?
        .get(0);
    let Some(min_cursor) = min_cursor else {
        return Ok(Vec::new());
    };
    let row = tx
        .query_one(
            "SELECT count(*), max(seq) FROM outbox WHERE seq <= $1 AND at < $2",
            &[&min_cursor, &older_than.as_microsecond()],
        )
        .map_err(pg_err)?;
    let (count, through): (i64, Option<i64>) = (row.get(0), row.get(1));
    let Some(through) = through else {
        return Ok(Vec::new());
    };
    tx.execute(
        "DELETE FROM outbox WHERE seq <= $1 AND at < $2",
        &[&min_cursor, &older_than.as_microsecond()],
    )
    .map_err(pg_err)?;
    Ok(vec![Change::OutboxPruned {
        through_seq: through as u64,
        count: count as u64,
    }])
}

fn ack_outbox(tx: &mut Conn, consumer: &str, seq: u64, now: Timestamp) -> Result<()> {
    if consumer.is_empty() || consumer.len() > 128 || consumer.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput(format!(
            "outbox consumer name {consumer:?} must be 1-128 printable characters"
        )));
    }
    let last = crate::postgres::feed_last_seq(tx)?;
    if seq > last {
        return Err(StoreError::InvalidInput(format!(
            "cannot acknowledge outbox event {seq}: the last event is {last}"
        )));
    }
    tx.execute(
        "INSERT INTO outbox_consumers (name, cursor, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET cursor = greatest(outbox_consumers.cursor, excluded.cursor), \
         updated_at = excluded.updated_at",
        &[&consumer, &(seq as i64), &now.as_microsecond()],
    )
    .map_err(pg_err)?;
    Ok(())
}

fn save_context_package(
    tx: &mut Conn,
    ctx: &WriteContext,
    name: kontextual_model::PackageName,
    digest: Digest,
    manifest: serde_json::Value,
    now: Timestamp,
) -> Result<Change> {
    let latest = read::context_package(tx, &ctx.namespace, name.as_str(), None)?;
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
    tx.execute(
        "INSERT INTO context_packages (namespace, name, version, id, digest, manifest, actor, \
         correlation_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &package.namespace.as_str(),
            &package.name.as_str(),
            &(package.version as i64),
            &package.id,
            &package.digest.hex(),
            &package.manifest.to_string(),
            &package.actor.to_string(),
            &package.correlation_id.as_str(),
            &now.as_microsecond(),
        ],
    )
    .map_err(pg_err)?;
    Ok(Change::ContextPackageSaved { package })
}

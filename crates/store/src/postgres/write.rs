//! Applying a write batch in one transaction, after taking the store's
//! writer lock (`pg_advisory_xact_lock`): the audit head is read and every
//! audit and outbox sequence number drawn under it, so sequence order is
//! commit order across processes (ADR 0007). The decisions are the shared
//! rules of `crate::rules`.

use crate::audit;
use crate::knowledge::write as knowledge;
use crate::postgres::conn::Conn;
use crate::sql::Tx;
use crate::{Op, Result, StoreError, WriteBatch, WriteContext};
use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{ChainHead, Change, Timestamp};

use crate::postgres::access::{self, Mark};
use crate::postgres::{jobs, pg_err};

/// `pg_advisory_xact_lock` key of the store's writer lock ("KNTX" + 2).
pub(crate) const WRITER_LOCK: i64 = 0x4B4E_5458_0000_0002;

/// Bookkeeping that is never audited: it needs no writer lock (job claims
/// lock their rows with `SKIP LOCKED` instead), so workers in many
/// processes do not queue behind each other or behind content writes.
fn bookkeeping(op: &Op) -> bool {
    matches!(
        op,
        Op::ClaimJobs { .. }
            | Op::HeartbeatJob { .. }
            | Op::FinishJob { .. }
            | Op::TouchKeys { .. }
            | Op::RecordAccess { .. }
    )
}

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
    let locked = !batch.ops.iter().all(bookkeeping);
    if locked {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
            .map_err(pg_err)?;
    }
    let mut head = if locked {
        audit::head(&mut Tx::Postgres(tx))?
    } else {
        None
    };
    let start_seq = head.as_ref().map(|h| h.seq);
    let anchor_held = match anchor {
        Some(a) if locked => crate::head_copy::chain_holds(a, head.as_ref(), |seq| {
            audit::hash_at(&mut Tx::Postgres(tx), seq)
        })?,
        _ => true,
    };
    let now = kontextual_model::now();
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
                &mut Tx::Postgres(tx),
                &ctx,
                name.as_str(),
                &description,
                if_absent,
                now,
            )?,
            Op::PutArtifact(put) => vec![knowledge::put_artifact(
                &mut Tx::Postgres(tx),
                &ctx,
                put,
                now,
                &mut collections,
            )?],
            Op::DeleteArtifact { key, expect } => {
                knowledge::delete_artifact(&mut Tx::Postgres(tx), &ctx, &key, expect, now)?
            }
            Op::PurgeArtifact { key, expect } => {
                knowledge::purge_artifact(&mut Tx::Postgres(tx), &ctx, &key, expect, now)?
            }
            Op::CreateRelation {
                source,
                rel_type,
                target,
                properties,
            } => vec![knowledge::create_relation(
                &mut Tx::Postgres(tx),
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
                &mut Tx::Postgres(tx),
                &ctx,
                id,
                rel_type,
                properties,
                expect,
                now,
            )?],
            Op::DeleteRelation { id, expect } => {
                let mut tx = Tx::Postgres(tx);
                let cur = knowledge::live_relation(&mut tx, &ctx, id, expect)?;
                vec![knowledge::delete_relation(
                    &mut tx,
                    cur,
                    RelationDeleteCause::Requested,
                    now,
                )?]
            }
            Op::PruneOutbox { older_than } => audit::prune(&mut Tx::Postgres(tx), older_than)?,
            Op::AckOutbox { consumer, seq } => {
                audit::ack(&mut Tx::Postgres(tx), &consumer, seq, now)?;
                Vec::new()
            }
            Op::Audit(draft) => {
                audit::record_only(&mut Tx::Postgres(tx), &ctx, &mut head, now, draft)?
            }
            Op::StartRun {
                id,
                kind,
                input,
                owner,
                job,
            } => {
                let change = start_run(tx, &ctx, id, kind, input, owner, job.map(|(j, _)| j), now)?;
                if let Some((job, attempt)) = job {
                    jobs::link_run(tx, job, attempt, id)?;
                }
                vec![change]
            }
            Op::RunStep {
                id,
                name,
                status,
                detail,
            } => {
                run_step(tx, &ctx, id, &name, status, &detail, now)?;
                Vec::new()
            }
            Op::FinishRun {
                id,
                status,
                manifest,
            } => vec![finish_run(tx, &ctx, id, status, manifest, now)?],
            Op::SaveContextPackage {
                name,
                digest,
                manifest,
            } => vec![knowledge::save_context_package(
                &mut Tx::Postgres(tx),
                &ctx,
                name,
                digest,
                manifest,
                now,
            )?],
            Op::ImportRecords(rec) => {
                crate::import::import(&mut Tx::Postgres(tx), &ctx, *rec, now)?
            }
            Op::EnqueueJob(new) => vec![jobs::enqueue(tx, &ctx, new, now)?],
            Op::ClaimJobs {
                worker,
                kinds,
                limit,
                lease,
            } => vec![jobs::claim(tx, &worker, &kinds, limit, lease, now)?],
            Op::HeartbeatJob { id, attempt, lease } => {
                vec![jobs::heartbeat(tx, id, attempt, lease, now)?]
            }
            Op::FinishJob {
                id,
                attempt,
                result,
                report,
            } => vec![jobs::finish(tx, id, attempt, result, report, now)?],
            Op::ActOnJob { id, action } => vec![jobs::act(tx, &ctx, id, action, now)?],
            Op::PruneJobs { finished_before } => jobs::prune(tx, finished_before)?,
            Op::CreateKey(key) => vec![access::create_key(tx, &ctx, key, now)?],
            Op::RevokeKey { id } => access::revoke_key(tx, &ctx, &id, now)?,
            Op::TouchKeys { uses } => {
                access::touch_keys(tx, &uses)?;
                Vec::new()
            }
            Op::RecordAccess { entries } => {
                access::record_access(tx, &entries)?;
                Vec::new()
            }
            Op::PruneAccessLog { older_than } => {
                access::prune_access_log(tx, older_than)?;
                Vec::new()
            }
            Op::SetClearance { actor, level } => {
                vec![access::set_clearance(tx, &ctx, actor, level, now)?]
            }
            Op::SetHold { key, reason } => vec![Change::HoldSet {
                hold: access::set_mark(tx, &ctx, &key, reason, Mark::Hold, now)?,
            }],
            Op::ReleaseHold { key } => vec![Change::HoldReleased {
                hold: access::release_mark(tx, &ctx, &key, Mark::Hold)?,
            }],
            Op::QuarantineArtifact { key, reason } => vec![Change::ArtifactQuarantined {
                quarantine: access::set_mark(tx, &ctx, &key, reason, Mark::Quarantine, now)?,
            }],
            Op::ReleaseArtifact { key } => vec![Change::ArtifactReleased {
                quarantine: access::release_mark(tx, &ctx, &key, Mark::Quarantine)?,
            }],
            Op::CreateGrant {
                actor,
                permission,
                scope,
            } => vec![access::create_grant(
                tx, &ctx, actor, permission, scope, now,
            )?],
            Op::DeleteGrant {
                actor,
                permission,
                scope,
            } => vec![access::delete_grant(tx, &ctx, &actor, permission, &scope)?],
            Op::BeginIdempotent {
                scope,
                key,
                request_hash,
                expire_before,
            } => vec![access::begin_idempotent(
                tx,
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
                access::finish_idempotent(tx, &scope, &key, status, &content_type, &body)?;
                Vec::new()
            }
            Op::AbandonIdempotent { scope, key } => {
                access::abandon_idempotent(tx, &scope, &key)?;
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
                audit::append(
                    &mut Tx::Postgres(tx),
                    &ctx,
                    &mut head,
                    now,
                    draft,
                    change.event(),
                )?;
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

#[allow(clippy::too_many_arguments)]
fn start_run(
    tx: &mut Conn,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
    kind: String,
    input: serde_json::Value,
    owner: String,
    job: Option<kontextual_model::JobId>,
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
        job_id: job,
    };
    if tx
        .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&id.0])
        .map_err(pg_err)?
        .is_some()
    {
        return Err(StoreError::AlreadyExists {
            what: format!("run {id}"),
        });
    }
    tx.execute(
        "INSERT INTO runs (id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, NULL, $9)",
        &[
            &run.id.0,
            &run.namespace.as_str(),
            &run.kind,
            &run.status.as_str(),
            &run.actor.to_string(),
            &run.input.to_string(),
            &run.owner,
            &now.as_microsecond(),
            &run.job_id.map(|j| j.0),
        ],
    )
    .map_err(pg_err)?;
    Ok(Change::Run { run })
}

fn running(
    tx: &mut Conn,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
) -> Result<kontextual_model::Run> {
    let run = tx
        .query_opt(
            &format!(
                "SELECT {} FROM runs WHERE id = $1 AND namespace = $2",
                crate::postgres::rows::RUN_COLS
            ),
            &[&id.0, &ctx.namespace.as_str()],
        )
        .map_err(pg_err)?
        .map(|r| crate::postgres::rows::run(&r))
        .transpose()?
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

#[allow(clippy::too_many_arguments)]
fn run_step(
    tx: &mut Conn,
    ctx: &WriteContext,
    id: kontextual_model::RunId,
    name: &str,
    status: kontextual_model::RunStatus,
    detail: &serde_json::Value,
    now: Timestamp,
) -> Result<()> {
    running(tx, ctx, id)?;
    tx.execute(
        "INSERT INTO run_steps (run_id, seq, name, status, detail, at) \
         VALUES ($1, (SELECT coalesce(max(seq), 0) + 1 FROM run_steps WHERE run_id = $1), $2, $3, $4, $5)",
        &[&id.0, &name, &status.as_str(), &detail.to_string(), &now.as_microsecond()],
    )
    .map_err(pg_err)?;
    Ok(())
}

fn finish_run(
    tx: &mut Conn,
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
    let mut run = running(tx, ctx, id)?;
    run.status = status;
    run.manifest = Some(manifest);
    run.finished_at = Some(now);
    tx.execute(
        "UPDATE runs SET status = $2, manifest = $3, finished_at = $4 WHERE id = $1",
        &[
            &id.0,
            &status.as_str(),
            &run.manifest.as_ref().map(|m| m.to_string()),
            &now.as_microsecond(),
        ],
    )
    .map_err(pg_err)?;
    Ok(Change::Run { run })
}

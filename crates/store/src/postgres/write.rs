//! Applying a write batch in one transaction, after taking the store's
//! writer lock (`pg_advisory_xact_lock`): the audit head is read and every
//! audit and outbox sequence number drawn under it, so sequence order is
//! commit order across processes (ADR 0007). The decisions are the shared
//! rules of `crate::rules`.

use crate::audit;
use crate::knowledge::write as knowledge;
use crate::postgres::conn::Conn;
use crate::sql::Tx;
use crate::{Op, Result, StoreError, WriteBatch};
use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{ChainHead, Change};

use crate::access::Mark;
use crate::access::write as access;
use crate::jobs::write as jobs;
use crate::postgres::pg_err;

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

//! Applying a batch's operations: one dispatcher for both engines.
//!
//! The engine owns the transaction and its locks (SQLite: the writer
//! thread's `BEGIN IMMEDIATE`; PostgreSQL: the writer advisory lock unless
//! every operation is bookkeeping) and calls [`apply`] inside it. Each
//! operation is applied by its domain's store module and returns the
//! changes it made; the audit record and outbox event of every change are
//! appended here, in the same transaction.

use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{ChainHead, Change, Timestamp};

use crate::access::Mark;
use crate::access::write as access;
use crate::jobs::write as jobs;
use crate::knowledge::write as knowledge;
use crate::runs::write as runs;
use crate::sql::Tx;
use crate::{Op, Result, StoreError, WriteBatch, audit, import};

/// Applies `batch` after `head` and moves `head` to the last record it
/// appended. `may_audit` is false when the engine took no writer lock (a
/// batch of bookkeeping only): an audited change then is a bug, refused.
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    batch: WriteBatch,
    head: &mut Option<ChainHead>,
    now: Timestamp,
    may_audit: bool,
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
            } => {
                knowledge::create_collection(tx, &ctx, name.as_str(), &description, if_absent, now)?
            }
            Op::PutArtifact(put) => vec![knowledge::put_artifact(
                tx,
                &ctx,
                put,
                now,
                &mut collections,
            )?],
            Op::DeleteArtifact { key, expect } => {
                knowledge::delete_artifact(tx, &ctx, &key, expect, now)?
            }
            Op::PurgeArtifact { key, expect } => {
                knowledge::purge_artifact(tx, &ctx, &key, expect, now)?
            }
            Op::CreateRelation {
                source,
                rel_type,
                target,
                properties,
            } => vec![knowledge::create_relation(
                tx, &ctx, &source, rel_type, &target, properties, now,
            )?],
            Op::UpdateRelation {
                id,
                rel_type,
                properties,
                expect,
            } => vec![knowledge::update_relation(
                tx, &ctx, id, rel_type, properties, expect, now,
            )?],
            Op::DeleteRelation { id, expect } => {
                let cur = knowledge::live_relation(tx, &ctx, id, expect)?;
                vec![knowledge::delete_relation(
                    tx,
                    cur,
                    RelationDeleteCause::Requested,
                    now,
                )?]
            }
            Op::PruneOutbox { older_than } => audit::prune(tx, older_than)?,
            Op::AckOutbox { consumer, seq } => {
                audit::ack(tx, &consumer, seq, now)?;
                Vec::new()
            }
            Op::Audit(draft) => audit::record_only(tx, &ctx, head, now, draft)?,
            Op::StartRun {
                id,
                kind,
                input,
                owner,
                job,
            } => vec![runs::start_run(tx, &ctx, id, kind, input, owner, job, now)?],
            Op::RunStep {
                id,
                name,
                status,
                detail,
            } => {
                runs::run_step(tx, &ctx, id, &name, status, &detail, now)?;
                Vec::new()
            }
            Op::FinishRun {
                id,
                status,
                manifest,
            } => vec![runs::finish_run(tx, &ctx, id, status, manifest, now)?],
            Op::SaveContextPackage {
                name,
                digest,
                manifest,
            } => vec![knowledge::save_context_package(
                tx, &ctx, name, digest, manifest, now,
            )?],
            Op::ImportRecords(rec) => import::import(tx, &ctx, *rec, now)?,
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
            Op::ActOnJob { id, action } => {
                vec![jobs::act(tx, &ctx, id, action, now)?]
            }
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
                if !may_audit {
                    return Err(StoreError::Internal(
                        "an audited change in a batch without the writer lock".to_owned(),
                    ));
                }
                audit::append(tx, &ctx, head, now, draft, change.event())?;
            }
        }
        out.extend(changes);
    }
    Ok(out)
}

//! Applying a batch's operations: one dispatcher for both engines.
//!
//! The engine owns the transaction and its locks (SQLite: the writer
//! thread's `BEGIN IMMEDIATE`; PostgreSQL: the writer advisory lock unless
//! every operation is bookkeeping) and calls [`apply`] inside it. Each
//! operation is applied by its domain's store module and returns the
//! changes it made; the audit record and outbox event of every change are
//! appended here, in the same transaction.

use kontextual_model::{ChainHead, Change, JobResult, Timestamp};

use crate::access::write as access;
use crate::jobs::write as jobs;
use crate::knowledge::write as knowledge;
use crate::runs::write as runs;
use crate::sql::Tx;
use crate::webhooks::write as webhooks;
use crate::{JobOp, KnowledgeOp, Op, Result, StoreError, WebhookOp, WriteBatch, audit};

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
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        if !matches!(op, Op::Knowledge(KnowledgeOp::PutArtifact(_))) {
            collections.forget();
        }
        let changes = match op {
            // A run of one kind of bookkeeping (a worker's batch) in a few
            // statements instead of a few per operation.
            Op::Jobs(JobOp::FinishJob {
                id,
                attempt,
                result: JobResult::Succeeded,
                report,
            }) if is_success(ops.peek()) => {
                let mut run = vec![(id, attempt, report)];
                while is_success(ops.peek()) {
                    if let Some(Op::Jobs(JobOp::FinishJob {
                        id,
                        attempt,
                        report,
                        ..
                    })) = ops.next()
                    {
                        run.push((id, attempt, report));
                    }
                }
                jobs::finish_succeeded(tx, &run, now)?
            }
            Op::Webhooks(WebhookOp::RecordAttempt(first)) if is_attempt(ops.peek()) => {
                let mut run = vec![first];
                while is_attempt(ops.peek()) {
                    if let Some(Op::Webhooks(WebhookOp::RecordAttempt(o))) = ops.next() {
                        run.push(o);
                    }
                }
                webhooks::record_attempts(tx, run, now)?
            }
            Op::Knowledge(op) => knowledge::apply(tx, &ctx, op, now, &mut collections)?,
            Op::Feed(op) => audit::apply(tx, &ctx, op, now)?,
            Op::Runs(op) => runs::apply(tx, &ctx, op, now)?,
            Op::Jobs(op) => jobs::apply(tx, &ctx, op, now)?,
            Op::Access(op) => access::apply(tx, &ctx, op, now)?,
            Op::Webhooks(op) => webhooks::apply(tx, &ctx, op, now)?,
            Op::Audit(draft) => audit::record_only(tx, &ctx, head, now, draft)?,
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

fn is_success(op: Option<&Op>) -> bool {
    matches!(
        op,
        Some(Op::Jobs(JobOp::FinishJob {
            result: JobResult::Succeeded,
            ..
        }))
    )
}

fn is_attempt(op: Option<&Op>) -> bool {
    matches!(op, Some(Op::Webhooks(WebhookOp::RecordAttempt(_))))
}

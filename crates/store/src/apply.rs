//! Applying a batch's operations: one dispatcher for both engines.
//!
//! The engine owns the transaction and its locks (SQLite: the writer
//! thread's `BEGIN IMMEDIATE`; PostgreSQL: the writer advisory lock unless
//! every operation is bookkeeping) and calls [`apply`] inside it. Each
//! operation is applied by its domain's store module and returns the
//! changes it made; the audit record and outbox event of every change are
//! appended here, in the same transaction.

use kontextual_model::{ChainHead, Change, Timestamp};

use crate::access::write as access;
use crate::jobs::write as jobs;
use crate::knowledge::write as knowledge;
use crate::runs::write as runs;
use crate::sql::Tx;
use crate::webhooks::write as webhooks;
use crate::{KnowledgeOp, Op, Result, StoreError, WriteBatch, audit};

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
        if !matches!(op, Op::Knowledge(KnowledgeOp::PutArtifact(_))) {
            collections.forget();
        }
        let changes = match op {
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

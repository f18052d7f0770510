//! Applying a write batch in one transaction, after taking the store's
//! writer lock (`pg_advisory_xact_lock`): the audit head is read and every
//! audit and outbox sequence number drawn under it, so sequence order is
//! commit order across processes (ADR 0007). The decisions are the shared
//! rules of `crate::rules`.

use crate::audit;
use crate::postgres::conn::Conn;
use crate::sql::Tx;
use crate::{Op, Result, WriteBatch};
use kontextual_model::{ChainHead, Change};

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
    let changes = crate::apply::apply(&mut Tx::Postgres(tx), batch, &mut head, now, locked)?;
    Ok(Applied {
        changes,
        head: head.filter(|h| Some(h.seq) != start_seq),
        anchor_held,
    })
}

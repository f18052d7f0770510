//! Kernel storage written once for both engines: the audit chain and the
//! outbox — appending a record (and its event) for every change, reading
//! them back, consumer cursors and pruning.

use kontextual_model::audit::AuditContext;
use kontextual_model::{
    AuditDraft, AuditRecord, ChainHead, Change, EventDraft, OutboxEvent, Timestamp,
};

use crate::knowledge::rows::{opt_digest, opt_json, parsed};
use crate::port::{AuditQuery, WriteContext};
use crate::sql::{Dialect, Row, Tx, args};
use crate::{Result, StoreError};

/// The most records or events one read returns (and at least one).
const MAX_PAGE: u32 = 10_000;

const AUDIT_COLS: &str = "seq, at, namespace, actor, correlation_id, run_id, action, target_kind, \
     target_id, target_name, revision, prev_digest, digest, outcome, detail, prev_hash, hash";

const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at, namespace, actor, correlation_id, run_id, \
     action, target_kind, target_id, target_name, revision, prev_digest, digest, outcome, detail, \
     prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

const INSERT_EVENT: &str = "INSERT INTO outbox (at, namespace, correlation_id, audit_seq, kind, subject, payload) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// PostgreSQL: the record, its event and the event's seq in one statement
/// (one round trip). The last seq is kept beside the events because a
/// PostgreSQL sequence also counts draws of rolled-back transactions and
/// pruning may delete every event; SQLite's `sqlite_sequence` already is
/// that record.
const INSERT_AUDIT_AND_EVENT_PG: &str = "WITH a AS (INSERT INTO audit_log (seq, at, namespace, actor, \
     correlation_id, run_id, action, target_kind, target_id, target_name, revision, prev_digest, \
     digest, outcome, detail, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)), \
     e AS (INSERT INTO outbox (at, namespace, correlation_id, audit_seq, kind, subject, payload) \
     VALUES (?2, ?3, ?5, ?1, ?18, ?19, ?20) RETURNING seq) \
     INSERT INTO store_meta (key, value) SELECT 'outbox_last', seq::text FROM e \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// `Op::Audit`: a record with no state change behind it (a denial, a
/// recovery action). Its change says so, and appends nothing more.
pub(crate) fn record_only(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    head: &mut Option<ChainHead>,
    now: Timestamp,
    draft: AuditDraft,
) -> Result<Vec<Change>> {
    let action = draft.action.clone();
    let event = Change::audit_only_event(&draft);
    append(tx, ctx, head, now, draft, event)?;
    Ok(vec![Change::Audited { action }])
}

/// Seals `draft` onto the chain after `head`, appends it (with `event`,
/// which shares its instant, namespace and correlation) and moves `head`.
/// Returns the record's seq.
pub(crate) fn append(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    head: &mut Option<ChainHead>,
    now: Timestamp,
    draft: AuditDraft,
    event: Option<EventDraft>,
) -> Result<u64> {
    let actx = AuditContext {
        namespace: &ctx.namespace,
        actor: &ctx.actor,
        correlation_id: &ctx.correlation_id,
        run_id: ctx.run_id,
    };
    let rec = AuditRecord::seal(head.as_ref(), now, &actx, draft);
    let d = &rec.draft;
    // one list, so PostgreSQL's combined statement can extend it
    let mut record = args![
        rec.seq,
        rec.at,
        rec.namespace.as_str(),
        rec.actor.to_string(),
        rec.correlation_id.as_str(),
        rec.run_id.map(|r| r.0),
        d.action.as_str(),
        d.target_kind.as_str(),
        d.target_id.as_str(),
        d.target_name.as_deref(),
        d.revision,
        d.prev_digest.map(|x| x.hex()),
        d.digest.map(|x| x.hex()),
        d.outcome.as_str(),
        d.detail.as_ref().map(|v| v.to_string()),
        rec.prev_hash.as_str(),
        rec.hash.as_str(),
    ]
    .to_vec();
    match (event, tx.dialect()) {
        (None, _) => {
            tx.execute(INSERT_AUDIT, &record)?;
        }
        (Some(ev), Dialect::Sqlite) => {
            tx.execute(INSERT_AUDIT, &record)?;
            tx.execute(
                INSERT_EVENT,
                args![
                    rec.at,
                    rec.namespace.as_str(),
                    rec.correlation_id.as_str(),
                    rec.seq,
                    ev.kind,
                    ev.subject,
                    ev.payload.to_string()
                ],
            )?;
        }
        (Some(ev), Dialect::Postgres) => {
            record.extend_from_slice(args![ev.kind, ev.subject, ev.payload.to_string()]);
            tx.execute(INSERT_AUDIT_AND_EVENT_PG, &record)?;
        }
    }
    *head = Some(rec.head());
    Ok(rec.seq)
}

fn audit_row(r: &Row<'_>) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        at: r.get(1)?,
        namespace: parsed(r, 2)?,
        actor: parsed(r, 3)?,
        correlation_id: parsed(r, 4)?,
        run_id: r.get::<Option<uuid::Uuid>>(5)?.map(kontextual_model::RunId),
        draft: AuditDraft {
            action: r.get(6)?,
            target_kind: r.get(7)?,
            target_id: r.get(8)?,
            target_name: r.get(9)?,
            revision: r.get(10)?,
            prev_digest: opt_digest(r, 11)?,
            digest: opt_digest(r, 12)?,
            outcome: parsed(r, 13)?,
            detail: opt_json(r, 14)?,
        },
        prev_hash: r.get(15)?,
        hash: r.get(16)?,
    })
}

/// Records after `after`, in chain order.
pub(crate) fn records(tx: &mut Tx<'_>, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
    let limit = limit.clamp(1, MAX_PAGE);
    tx.query(
        &format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE seq > ?1 ORDER BY seq \
             LIMIT (SELECT CAST(?2 AS BIGINT))"
        ),
        args![crate::rules::seq_cursor(after), limit],
        audit_row,
    )
}

/// Records after `after` that match `q`, in chain order. An action matches
/// itself and the actions under it (`artifact` matches `artifact.put`).
pub(crate) fn query(
    tx: &mut Tx<'_>,
    q: &AuditQuery,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>> {
    let limit = limit.clamp(1, MAX_PAGE);
    tx.query(
        &format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE seq > ?1 \
               AND (CAST(?2 AS TEXT) IS NULL OR namespace = ?2) \
               AND (CAST(?3 AS TEXT) IS NULL OR actor = ?3) \
               AND (CAST(?4 AS TEXT) IS NULL OR action = ?4 OR substr(action, 1, length(?4) + 1) = ?4 || '.') \
               AND (CAST(?5 AS TEXT) IS NULL OR target_id = ?5 OR target_name = ?5) \
               AND (CAST(?6 AS BIGINT) IS NULL OR at >= ?6) AND (CAST(?7 AS BIGINT) IS NULL OR at < ?7) \
               AND (CAST(?9 AS TEXT) IS NULL OR correlation_id = ?9) \
             ORDER BY seq LIMIT (SELECT CAST(?8 AS BIGINT))"
        ),
        args![
            crate::rules::seq_cursor(after),
            q.namespace.as_ref().map(|n| n.as_str()),
            q.actor.as_deref(),
            q.action.as_deref(),
            q.target.as_deref(),
            q.since,
            q.until,
            limit,
            q.correlation_id.as_deref()
        ],
        audit_row,
    )
}

/// The chain's last record, if any.
pub(crate) fn head(tx: &mut Tx<'_>) -> Result<Option<ChainHead>> {
    tx.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
        |r| {
            Ok(ChainHead {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        },
    )
}

/// The hash of the record at `seq`, if the chain holds it.
pub(crate) fn hash_at(tx: &mut Tx<'_>, seq: u64) -> Result<Option<String>> {
    tx.query_opt(
        "SELECT hash FROM audit_log WHERE seq = ?1",
        args![seq],
        |r| r.get(0),
    )
}

/// Events after `after`, in order.
pub(crate) fn events(tx: &mut Tx<'_>, after: u64, limit: u32) -> Result<Vec<OutboxEvent>> {
    let limit = limit.clamp(1, MAX_PAGE);
    tx.query(
        "SELECT seq, at, namespace, correlation_id, audit_seq, kind, subject, payload \
         FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT (SELECT CAST(?2 AS BIGINT))",
        args![crate::rules::seq_cursor(after), limit],
        |r| {
            Ok(OutboxEvent {
                seq: r.get(0)?,
                at: r.get(1)?,
                namespace: parsed(r, 2)?,
                correlation_id: parsed(r, 3)?,
                audit_seq: r.get(4)?,
                draft: EventDraft {
                    kind: r.get(5)?,
                    subject: r.get(6)?,
                    payload: crate::knowledge::rows::json(r, 7)?,
                },
            })
        },
    )
}

/// The seq of the last event ever appended (0 before the first), pruned
/// or not.
pub(crate) fn last_event_seq(tx: &mut Tx<'_>) -> Result<u64> {
    match tx.dialect() {
        Dialect::Sqlite => tx.query_one(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
            &[],
            |r| r.get(0),
        ),
        // A value that does not parse is left as 0, as it always was.
        Dialect::Postgres => Ok(tx
            .query_opt(
                "SELECT value FROM store_meta WHERE key = 'outbox_last'",
                &[],
                |r| r.get::<String>(0),
            )?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)),
    }
}

/// The highest event seq retention has deleted (0 when none was).
pub(crate) fn pruned_through(tx: &mut Tx<'_>) -> Result<u64> {
    Ok(tx
        .query_opt(
            "SELECT value FROM store_meta WHERE key = 'outbox_pruned_through'",
            &[],
            |r| r.get::<String>(0),
        )?
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0))
}

/// Every consumer's cursor, by name.
/// The store's id (set at `init`).
pub(crate) fn store_id(tx: &mut Tx<'_>) -> Result<String> {
    tx.query_opt(
        "SELECT value FROM store_meta WHERE key = 'store_id'",
        &[],
        |r| r.get(0),
    )?
    .ok_or_else(|| StoreError::Corrupted("the store has no store id".to_owned()))
}

pub(crate) fn cursors(tx: &mut Tx<'_>) -> Result<Vec<(String, u64)>> {
    tx.query(
        "SELECT name, cursor FROM outbox_consumers ORDER BY name",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Moves a consumer's cursor forward to `seq` (never back).
pub(crate) fn ack(tx: &mut Tx<'_>, consumer: &str, seq: u64, now: Timestamp) -> Result<()> {
    if consumer.is_empty() || consumer.len() > 128 || consumer.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput(format!(
            "outbox consumer name {consumer:?} must be 1-128 printable characters"
        )));
    }
    let last = last_event_seq(tx)?;
    if seq > last {
        return Err(StoreError::InvalidInput(format!(
            "cannot acknowledge outbox event {seq}: the last event is {last}"
        )));
    }
    tx.execute(
        "INSERT INTO outbox_consumers (name, cursor, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET \
           cursor = CASE WHEN excluded.cursor > outbox_consumers.cursor \
                         THEN excluded.cursor ELSE outbox_consumers.cursor END, \
           updated_at = excluded.updated_at",
        args![consumer, seq, now],
    )?;
    Ok(())
}

/// Deletes events older than `older_than` that every consumer has seen.
/// Without consumers nothing is pruned: nobody has said what they saw.
pub(crate) fn prune(tx: &mut Tx<'_>, older_than: Timestamp) -> Result<Vec<Change>> {
    let min_cursor: Option<i64> =
        tx.query_one("SELECT min(cursor) FROM outbox_consumers", &[], |r| {
            r.get(0)
        })?;
    let Some(min_cursor) = min_cursor else {
        return Ok(Vec::new());
    };
    let (count, through): (u64, Option<u64>) = tx.query_one(
        "SELECT count(*), max(seq) FROM outbox WHERE seq <= ?1 AND at < ?2",
        args![min_cursor, older_than],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some(through) = through else {
        return Ok(Vec::new());
    };
    tx.execute(
        "DELETE FROM outbox WHERE seq <= ?1 AND at < ?2",
        args![min_cursor, older_than],
    )?;
    // What a reader after an older cursor has lost (`pruned_through`).
    tx.execute(
        "INSERT INTO store_meta (key, value) VALUES ('outbox_pruned_through', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        args![through.to_string()],
    )?;
    Ok(vec![Change::OutboxPruned {
        through_seq: through,
        count,
    }])
}

/// Applies one feed operation inside the engine's transaction and
/// returns the changes it made (`crate::apply` appends their audit records).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    _ctx: &WriteContext,
    op: crate::port::FeedOp,
    now: Timestamp,
) -> Result<Vec<Change>> {
    use crate::port::FeedOp;
    Ok(match op {
        FeedOp::PruneOutbox { older_than } => prune(tx, older_than)?,
        FeedOp::AckOutbox { consumer, seq } => {
            ack(tx, &consumer, seq, now)?;
            Vec::new()
        }
    })
}

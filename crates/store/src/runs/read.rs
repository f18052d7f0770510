//! Run reads: one run, listings, steps and the figures `status` shows.

use kontextual_model::{Namespace, Run, RunId, RunStatus, RunStep, RunSummary};

use crate::Result;
use crate::port::{Cursor, Page, PageRequest};
use crate::sql::{Dialect, Row, Tx, args};

/// The columns [`run_row`] reads, in its order.
pub(super) const RUN_COLS: &str =
    "id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id";

pub(super) fn run_row(r: &Row<'_>) -> Result<Run> {
    Ok(Run {
        id: RunId(r.get(0)?),
        namespace: r.parsed(1)?,
        kind: r.get(2)?,
        status: r.parsed(3)?,
        actor: r.parsed(4)?,
        input: r.json(5)?,
        manifest: r.json_opt(6)?,
        owner: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
        job_id: r
            .get::<Option<uuid::Uuid>>(10)?
            .map(kontextual_model::JobId),
    })
}

pub(crate) fn run(tx: &mut Tx<'_>, ns: &Namespace, id: RunId) -> Result<Option<Run>> {
    tx.query_opt(
        &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1 AND namespace = ?2"),
        args![id.0, ns.as_str()],
        run_row,
    )
}

/// A running run of the namespace, locked until the transaction ends on
/// PostgreSQL: steps are bookkeeping and take no writer lock, so the row
/// lock is what orders a run's steps (their numbers) and its finish.
pub(super) fn run_for_update(tx: &mut Tx<'_>, ns: &Namespace, id: RunId) -> Result<Option<Run>> {
    let sql = match tx.dialect() {
        // one writer at a time
        Dialect::Sqlite => format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1 AND namespace = ?2"),
        Dialect::Postgres => {
            format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1 AND namespace = ?2 FOR UPDATE")
        }
    };
    tx.query_opt(&sql, args![id.0, ns.as_str()], run_row)
}

pub(crate) fn run_summary(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: RunId,
) -> Result<Option<RunSummary>> {
    tx.query_opt(
        "SELECT id, kind, status, started_at, finished_at FROM runs WHERE id = ?1 AND namespace = ?2",
        args![id.0, ns.as_str()],
        |r| {
            Ok(RunSummary {
                id: RunId(r.get(0)?),
                kind: r.get(1)?,
                status: r.parsed(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
            })
        },
    )
}

/// Newest first. `LIMIT (SELECT …)` and the casts: see `jobs::read::jobs`.
pub(crate) fn runs(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    status: Option<RunStatus>,
    req: &PageRequest,
) -> Result<Page<Run>> {
    let limit = req.effective_limit();
    let before = req.before_id()?;
    tx.page(
        &format!(
            "SELECT {RUN_COLS} FROM runs WHERE namespace = ?1 AND id < ?2 \
             AND (CAST(?3 AS TEXT) IS NULL OR status = ?3) \
             ORDER BY id DESC LIMIT (SELECT CAST(?4 AS BIGINT))"
        ),
        args![
            ns.as_str(),
            before,
            status.map(|s| s.as_str()),
            u64::from(limit) + 1
        ],
        limit,
        run_row,
        |r| Cursor(r.id.to_string()),
    )
}

/// Every running run, in any namespace (to find those whose owner died).
pub(crate) fn running_runs(tx: &mut Tx<'_>) -> Result<Vec<Run>> {
    tx.query(
        &format!("SELECT {RUN_COLS} FROM runs WHERE status = 'running' ORDER BY id"),
        &[],
        run_row,
    )
}

pub(crate) fn run_steps(tx: &mut Tx<'_>, ns: &Namespace, id: RunId) -> Result<Vec<RunStep>> {
    tx.query(
        "SELECT s.run_id, s.seq, s.name, s.status, s.detail, s.at FROM run_steps s \
         JOIN runs r ON r.id = s.run_id WHERE s.run_id = ?1 AND r.namespace = ?2 ORDER BY s.seq",
        args![id.0, ns.as_str()],
        |r| {
            Ok(RunStep {
                run_id: RunId(r.get(0)?),
                seq: r.get(1)?,
                name: r.get(2)?,
                status: r.parsed(3)?,
                detail: r.json(4)?,
                at: r.get(5)?,
            })
        },
    )
}

/// Runs counted by (kind, status).
pub(crate) fn run_stats(tx: &mut Tx<'_>) -> Result<Vec<(String, String, u64)>> {
    tx.query(
        "SELECT kind, status, count(*) FROM runs GROUP BY kind, status ORDER BY kind, status",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Files ingested (new, updated or unchanged) and input bytes read, summed
/// over every finished ingest run's manifest.
pub(crate) fn ingest_totals(tx: &mut Tx<'_>) -> Result<(u64, u64)> {
    // the engines' JSON functions differ
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "SELECT coalesce(sum(coalesce(json_extract(manifest, '$.counts.new'), 0) \
               + coalesce(json_extract(manifest, '$.counts.updated'), 0) \
               + coalesce(json_extract(manifest, '$.counts.unchanged'), 0)), 0), \
             coalesce(sum(coalesce(json_extract(manifest, '$.inputs.bytes'), 0)), 0) \
             FROM runs WHERE kind = 'ingest' AND json_valid(manifest)"
        }
        Dialect::Postgres => {
            "SELECT coalesce(sum(coalesce((m #>> '{counts,new}')::bigint, 0) \
               + coalesce((m #>> '{counts,updated}')::bigint, 0) \
               + coalesce((m #>> '{counts,unchanged}')::bigint, 0)), 0)::bigint, \
             coalesce(sum(coalesce((m #>> '{inputs,bytes}')::bigint, 0)), 0)::bigint \
             FROM (SELECT manifest::jsonb AS m FROM runs \
                   WHERE kind = 'ingest' AND manifest IS NOT NULL) AS ingests"
        }
    };
    tx.query_one(sql, &[], |r| Ok((r.get(0)?, r.get(1)?)))
}

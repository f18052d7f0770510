//! Job reads: one job, listings, attempts and queue statistics.

use kontextual_model::{Job, JobAttempt, JobId, JobState, JobStats, Namespace, RunId};

use crate::Result;
use crate::port::{Cursor, JobQuery, Page, PageRequest};
use crate::sql::{Row, Tx, args};

/// The columns [`job_row`] reads, in its order.
pub(super) const JOB_COLS: &str = "id, namespace, kind, payload, state, attempt, max_attempts, run_at, unique_key, \
     worker, lease_expires_at, stop_requested, last_error, report, actor, correlation_id, \
     created_at, updated_at, finished_at, key_id, scopes";

pub(super) fn job_row(r: &Row<'_>) -> Result<Job> {
    Ok(Job {
        id: JobId(r.get(0)?),
        namespace: r.parsed(1)?,
        kind: r.get(2)?,
        payload: r.json(3)?,
        state: r.parsed(4)?,
        attempt: r.get(5)?,
        max_attempts: r.get(6)?,
        run_at: r.get(7)?,
        unique_key: r.get(8)?,
        worker: r.get(9)?,
        lease_expires_at: r.get(10)?,
        stop_requested: r.parsed_opt(11)?,
        last_error: r.get(12)?,
        report: r.json_opt(13)?,
        actor: r.parsed(14)?,
        correlation_id: r.parsed(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        finished_at: r.get(18)?,
        key_id: r.get(19)?,
        scopes: r.json_opt(20)?,
    })
}

/// The job with this id, in any namespace (workers claim across them).
pub(crate) fn job_by_id(tx: &mut Tx<'_>, id: JobId) -> Result<Option<Job>> {
    tx.query_opt(
        &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
        args![id.0],
        job_row,
    )
}

pub(crate) fn job(tx: &mut Tx<'_>, ns: &Namespace, id: JobId) -> Result<Option<Job>> {
    Ok(job_by_id(tx, id)?.filter(|j| &j.namespace == ns))
}

/// Newest first. `LIMIT (SELECT …)`: a bound `LIMIT ?` makes SQLite
/// re-prepare the statement whenever its value changes (see
/// `sqlite/read.rs`); the casts give PostgreSQL the parameters' types.
pub(crate) fn jobs(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    q: &JobQuery,
    req: &PageRequest,
) -> Result<Page<Job>> {
    let limit = req.effective_limit();
    let before = req.before_id()?;
    tx.page(
        &format!(
            "SELECT {JOB_COLS} FROM jobs WHERE namespace = ?1 AND id < ?2 \
             AND (CAST(?3 AS TEXT) IS NULL OR state = ?3) AND (CAST(?4 AS TEXT) IS NULL OR kind = ?4) \
             ORDER BY id DESC LIMIT (SELECT CAST(?5 AS BIGINT))"
        ),
        args![
            ns.as_str(),
            before,
            q.state.map(|s| s.as_str()),
            q.kind.as_deref(),
            u64::from(limit) + 1
        ],
        limit,
        job_row,
        |j| Cursor(j.id.to_string()),
    )
}

/// Every attempt of a job: the ended ones from `job_attempts`, and the
/// latest from the job row itself while it runs or once it succeeded (a
/// successful attempt writes no attempt row).
pub(crate) fn attempts(tx: &mut Tx<'_>, ns: &Namespace, id: JobId) -> Result<Vec<JobAttempt>> {
    if job(tx, ns, id)?.is_none() {
        return Ok(Vec::new());
    }
    tx.query(
        "SELECT job_id, attempt, worker, started_at, finished_at, outcome, error, run_id \
         FROM job_attempts WHERE job_id = ?1 \
         UNION ALL \
         SELECT id, attempt, coalesce(worker, '?'), coalesce(started_at, updated_at), \
           CASE WHEN state = 'succeeded' THEN finished_at END, state, NULL, run_id \
         FROM jobs j WHERE id = ?1 AND state IN ('running', 'succeeded') AND attempt > 0 \
           AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.id AND a.attempt = j.attempt) \
         ORDER BY 2",
        args![id.0],
        |r| {
            Ok(JobAttempt {
                job_id: JobId(r.get(0)?),
                attempt: r.get(1)?,
                worker: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                outcome: r.parsed(5)?,
                error: r.get(6)?,
                run_id: r.get::<Option<uuid::Uuid>>(7)?.map(RunId),
            })
        },
    )
}

pub(crate) fn stats(tx: &mut Tx<'_>) -> Result<JobStats> {
    let counts = tx.query(
        "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
        &[],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.parsed::<JobState>(1)?,
                r.get::<u64>(2)?,
            ))
        },
    )?;
    let oldest_due = tx.query_one(
        "SELECT min(run_at) FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= ?1",
        args![kontextual_model::now()],
        |r| r.get(0),
    )?;
    Ok(JobStats { counts, oldest_due })
}

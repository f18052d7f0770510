//! The job queue on SQLite (O1, O2). Every state change runs on the single
//! writer inside the group-commit transaction, so a claim is one
//! `UPDATE … RETURNING` and a completion one fenced `UPDATE` — many of them
//! share one commit.

use std::time::Duration;

use kontextual_model::{
    AttemptOutcome, Change, Job, JobAttempt, JobId, JobResult, JobState, JobStats, JobTransition,
    Namespace, RunId, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::read::{bad_cursor, json, page, parsed, ts};
use super::{from_micros, micros, sql_err};
use crate::port::{Cursor, JobAction, JobQuery, NewJob, Page, PageRequest, WriteContext};
use crate::rules as rules_mod;
use crate::{Result, StoreError};

/// Most jobs one claim takes, whatever the caller asks.
pub const MAX_CLAIM: u32 = 1000;
/// Expired leases rescued per claim (the rest on the next claims).
const RESCUE_BATCH: i64 = 256;

const JOB_COLS: &str = "id, namespace, kind, payload, state, attempt, max_attempts, run_at, unique_key, \
     worker, lease_expires_at, stop_requested, last_error, report, actor, correlation_id, \
     created_at, updated_at, finished_at, key_id, scopes";

fn opt_ts(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    r.get::<_, Option<i64>>(idx)?.map(from_micros).transpose()
}

fn job_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let stop: Option<String> = r.get(11)?;
    let report: Option<String> = r.get(13)?;
    Ok(Job {
        id: JobId(r.get(0)?),
        namespace: parsed(r, 1)?,
        kind: r.get(2)?,
        payload: json(r, 3)?,
        state: parsed(r, 4)?,
        attempt: r.get(5)?,
        max_attempts: r.get(6)?,
        run_at: ts(r, 7)?,
        unique_key: r.get(8)?,
        worker: r.get(9)?,
        lease_expires_at: opt_ts(r, 10)?,
        stop_requested: stop
            .map(|s| s.parse().map_err(|e| super::read::conv(11, e)))
            .transpose()?,
        last_error: r.get(12)?,
        report: report
            .map(|s| serde_json::from_str(&s).map_err(|e| super::read::conv(13, e)))
            .transpose()?,
        actor: parsed(r, 14)?,
        correlation_id: parsed(r, 15)?,
        created_at: ts(r, 16)?,
        updated_at: ts(r, 17)?,
        finished_at: opt_ts(r, 18)?,
        key_id: r.get(19)?,
        scopes: r
            .get::<_, Option<String>>(20)?
            .map(|s| serde_json::from_str(&s).map_err(|e| super::read::conv(20, e)))
            .transpose()?,
    })
}

fn lease_until(now: Timestamp, lease: Duration) -> Result<i64> {
    let lease = lease.clamp(Duration::from_millis(10), Duration::from_secs(24 * 3600));
    Ok(micros(now) + lease.as_micros() as i64)
}

pub(crate) fn job_by_id(conn: &Connection, id: JobId) -> Result<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))
        .map_err(sql_err)?
        .query_row(params![id.0], job_row)
        .optional()
        .map_err(sql_err)
}

pub(crate) fn job(conn: &Connection, ns: &Namespace, id: JobId) -> Result<Option<Job>> {
    Ok(job_by_id(conn, id)?.filter(|j| &j.namespace == ns))
}

fn job_in(conn: &Connection, ctx: &WriteContext, id: JobId) -> Result<Job> {
    job(conn, &ctx.namespace, id)?.ok_or_else(|| StoreError::not_found(format!("job {id}")))
}

pub(crate) fn enqueue(
    conn: &Connection,
    ctx: &WriteContext,
    new: NewJob,
    now: Timestamp,
) -> Result<Change> {
    if new.kind.is_empty()
        || new.kind.len() > 64
        || !new
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(StoreError::InvalidInput(format!(
            "job kind {:?}: use 1-64 lowercase letters, digits, '-' or '_'",
            new.kind
        )));
    }
    if new.max_attempts == 0 || new.max_attempts > 1000 {
        return Err(StoreError::InvalidInput(
            "max attempts must be between 1 and 1000".to_owned(),
        ));
    }
    if let Some(key) = &new.unique_key {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLS} FROM jobs WHERE namespace = ?1 AND unique_key = ?2 \
                 AND state IN ('queued', 'failed') ORDER BY id LIMIT 1"
            ))
            .map_err(sql_err)?
            .query_row(params![ctx.namespace.as_str(), key], job_row)
            .optional()
            .map_err(sql_err)?;
        if let Some(job) = existing {
            return Ok(Change::JobUnchanged { job });
        }
    }
    let job = Job {
        id: new.id,
        namespace: ctx.namespace.clone(),
        kind: new.kind,
        payload: new.payload,
        state: JobState::Queued,
        attempt: 0,
        max_attempts: new.max_attempts,
        run_at: new.run_at.unwrap_or(now),
        unique_key: new.unique_key,
        worker: None,
        lease_expires_at: None,
        stop_requested: None,
        last_error: None,
        report: None,
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        created_at: now,
        updated_at: now,
        finished_at: None,
        key_id: new.key_id,
        scopes: new.scopes,
    };
    let scopes = job
        .scopes
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO jobs (id, namespace, kind, payload, state, attempt, max_attempts, run_at, unique_key, \
         actor, correlation_id, created_at, updated_at, key_id, scopes) \
         VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)",
    )
    .map_err(sql_err)?
    .execute(params![
        job.id.0,
        job.namespace.as_str(),
        job.kind,
        job.payload.to_string(),
        job.max_attempts,
        micros(job.run_at),
        job.unique_key,
        job.actor.to_string(),
        job.correlation_id.as_str(),
        micros(now),
        job.key_id,
        scopes,
    ])
    .map_err(|e| match sql_err(e) {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("job {}", job.id),
        },
        other => other,
    })?;
    Ok(Change::JobEnqueued { job })
}

/// Jobs whose lease expired: their worker died or lost touch. The attempt
/// is recorded as lost; the job waits for its next attempt, or is dead when
/// it has none left, or takes the state an operator asked it to stop for.
fn rescue_expired(conn: &Connection, now: Timestamp) -> Result<()> {
    let t = micros(now);
    let expired: Vec<(Uuid, u32, Option<String>)> = conn
        .prepare_cached(
            // `LIMIT (SELECT ?)`, not `LIMIT ?`: a bound LIMIT makes SQLite
            // re-prepare the statement on every execution (see read.rs)
            "SELECT id, attempt, worker FROM jobs WHERE state = 'running' AND lease_expires_at < ?1 \
             ORDER BY lease_expires_at LIMIT (SELECT ?2)",
        )
        .map_err(sql_err)?
        .query_map(params![t, RESCUE_BATCH], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    for (id, attempt, worker) in expired {
        let error = format!(
            "lease expired: worker {} stopped answering",
            worker.as_deref().unwrap_or("?")
        );
        end_attempt(
            conn,
            JobId(id),
            attempt,
            AttemptOutcome::Lost,
            Some(&error),
            now,
        )?;
        conn.prepare_cached(
            "UPDATE jobs SET \
               state = CASE WHEN stop_requested IS NOT NULL THEN stop_requested \
                            WHEN attempt >= max_attempts THEN 'dead' ELSE 'failed' END, \
               finished_at = CASE WHEN stop_requested IS NOT NULL OR attempt >= max_attempts THEN ?2 END, \
               run_at = ?2, worker = NULL, lease_expires_at = NULL, stop_requested = NULL, \
               last_error = ?3, updated_at = ?2 \
             WHERE id = ?1 AND state = 'running' AND attempt = ?4",
        )
        .map_err(sql_err)?
        .execute(params![id, t, error, attempt])
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Records the attempt the job row holds (worker, start, run) as ended.
/// Call before the job row leaves that attempt.
fn end_attempt(
    conn: &Connection,
    id: JobId,
    attempt: u32,
    outcome: AttemptOutcome,
    error: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error, run_id) \
         SELECT id, attempt, coalesce(worker, '?'), coalesce(started_at, ?3), ?3, ?4, ?5, run_id \
         FROM jobs WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
    )
    .map_err(sql_err)?
    .execute(params![id.0, attempt, micros(now), outcome.as_str(), error])
    .map_err(sql_err)?;
    Ok(())
}

fn claim_sql() -> String {
    format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker = ?1, lease_expires_at = ?2, \
           updated_at = ?3, started_at = ?3, run_id = NULL \
         WHERE id IN (SELECT id FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= ?3 \
           AND (?4 IS NULL OR kind IN (SELECT value FROM json_each(?4))) ORDER BY run_at, id LIMIT (SELECT ?5)) \
         RETURNING {JOB_COLS}"
    )
}

pub(crate) fn claim(
    conn: &Connection,
    worker: &str,
    kinds: &[String],
    limit: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Change> {
    rescue_expired(conn, now)?;
    let limit = limit.clamp(1, MAX_CLAIM);
    let t = micros(now);
    let until = lease_until(now, lease)?;
    let kinds_json = if kinds.is_empty() {
        None
    } else {
        Some(serde_json::to_string(kinds).map_err(|e| StoreError::Internal(e.to_string()))?)
    };
    let mut jobs: Vec<Job> = conn
        .prepare_cached(&claim_sql())
        .map_err(sql_err)?
        .query_map(params![worker, until, t, kinds_json, limit], job_row)
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    jobs.sort_by_key(|j| (j.run_at, j.id));
    Ok(Change::JobsClaimed { jobs })
}

fn lease_lost(conn: &Connection, id: JobId, attempt: u32) -> Result<StoreError> {
    let why = match job_by_id(conn, id)? {
        None => "the job no longer exists".to_owned(),
        Some(j) if j.attempt != attempt => format!(
            "the lease was lost: the job is {} at attempt {} (this worker held attempt {attempt})",
            j.state, j.attempt
        ),
        Some(j) => format!("the lease was lost: the job is {}", j.state),
    };
    Ok(StoreError::Refused {
        what: format!("job {id} attempt {attempt}"),
        why,
    })
}

pub(crate) fn heartbeat(
    conn: &Connection,
    id: JobId,
    attempt: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Change> {
    let until = lease_until(now, lease)?;
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET lease_expires_at = ?3, updated_at = ?4 \
             WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
        )
        .map_err(sql_err)?
        .execute(params![id.0, attempt, until, micros(now)])
        .map_err(sql_err)?;
    if n == 0 {
        return Err(lease_lost(conn, id, attempt)?);
    }
    let job =
        job_by_id(conn, id)?.ok_or_else(|| StoreError::Internal(format!("job {id} vanished")))?;
    Ok(Change::JobLeased { job })
}

pub(crate) fn finish(
    conn: &Connection,
    id: JobId,
    attempt: u32,
    result: JobResult,
    report: Option<serde_json::Value>,
    now: Timestamp,
) -> Result<Change> {
    let t = micros(now);
    // The common case in one statement.
    if matches!(result, JobResult::Succeeded) {
        // the job row keeps this attempt's worker, start and run
        let n = conn
            .prepare_cached(
                "UPDATE jobs SET state = 'succeeded', lease_expires_at = NULL, last_error = NULL, \
                   stop_requested = NULL, report = coalesce(?3, report), finished_at = ?4, updated_at = ?4 \
                 WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
            )
            .map_err(sql_err)?
            .execute(params![id.0, attempt, report.map(|r| r.to_string()), t])
            .map_err(sql_err)?;
        if n == 0 {
            return Err(lease_lost(conn, id, attempt)?);
        }
        return Ok(Change::JobFinished {
            id,
            state: JobState::Succeeded,
        });
    }
    let current: Option<(u32, Option<String>)> = conn
        .prepare_cached(
            "SELECT max_attempts, stop_requested FROM jobs WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
        )
        .map_err(sql_err)?
        .query_row(params![id.0, attempt], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(sql_err)?;
    let Some((max_attempts, stop)) = current else {
        return Err(lease_lost(conn, id, attempt)?);
    };
    let stop: Option<JobState> = stop.and_then(|s| s.parse().ok());
    let (state, outcome, error, run_at) =
        rules_mod::attempt_end(&result, attempt, max_attempts, stop, now);
    let finished = state.is_final().then_some(t);
    let returned = matches!(result, JobResult::Returned) && state == JobState::Queued;
    let update = |state: JobState, finished: Option<i64>| {
        conn.prepare_cached(
            "UPDATE jobs SET state = ?3, worker = NULL, lease_expires_at = NULL, stop_requested = NULL, \
               last_error = coalesce(?4, last_error), report = coalesce(?5, report), \
               run_at = coalesce(?6, run_at), finished_at = ?7, updated_at = ?8, \
               max_attempts = CASE WHEN ?9 THEN max(max_attempts, attempt + 1) ELSE max_attempts END \
             WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
        )?
        .execute(params![
            id.0,
            attempt,
            state.as_str(),
            error,
            report.as_ref().map(|r| r.to_string()),
            run_at.map(micros),
            finished,
            t,
            returned
        ])
    };
    end_attempt(conn, id, attempt, outcome, error.as_deref(), now)?;
    let state = match update(state, finished) {
        Ok(_) => state,
        // A returned unique job whose key another queued job now holds:
        // that one will do the work.
        Err(rusqlite::Error::SqliteFailure(f, _))
            if returned && f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            update(JobState::Cancelled, Some(t)).map_err(sql_err)?;
            JobState::Cancelled
        }
        Err(e) => return Err(sql_err(e)),
    };
    Ok(Change::JobFinished { id, state })
}

pub(crate) fn act(
    conn: &Connection,
    ctx: &WriteContext,
    id: JobId,
    action: JobAction,
    now: Timestamp,
) -> Result<Change> {
    use JobState as S;
    let job = job_in(conn, ctx, id)?;
    let from = job.state;
    let refuse = |why: String| StoreError::Refused {
        what: format!("{} job {id}", action.as_str()),
        why,
    };
    // (new state, stop request) — None: nothing to do.
    let target = rules_mod::job_action_target(action, &job)?;
    let Some((to, stop)) = target else {
        return Ok(Change::JobActed(JobTransition {
            action: action.as_str().to_owned(),
            job,
            from,
            changed: false,
        }));
    };
    let t = micros(now);
    let requeue = to == S::Queued;
    let res = conn
        .prepare_cached(
            "UPDATE jobs SET state = ?2, stop_requested = ?3, updated_at = ?4, \
               finished_at = CASE WHEN ?2 IN ('succeeded', 'dead', 'cancelled', 'quarantined') THEN ?4 END, \
               run_at = CASE WHEN ?5 THEN ?4 ELSE run_at END, \
               max_attempts = CASE WHEN ?5 THEN max(max_attempts, attempt + 1) ELSE max_attempts END \
             WHERE id = ?1",
        )
        .map_err(sql_err)?
        .execute(params![id.0, to.as_str(), stop.map(|s| s.as_str()), t, requeue]);
    match res {
        Ok(_) => {}
        Err(e) => {
            return Err(match sql_err(e) {
                StoreError::AlreadyExists { .. } => refuse(format!(
                    "another job with unique key {:?} is already queued",
                    job.unique_key.as_deref().unwrap_or("")
                )),
                other => other,
            });
        }
    }
    let job =
        job_by_id(conn, id)?.ok_or_else(|| StoreError::Internal(format!("job {id} vanished")))?;
    Ok(Change::JobActed(JobTransition {
        action: action.as_str().to_owned(),
        job,
        from,
        changed: true,
    }))
}

pub(crate) fn prune(conn: &Connection, finished_before: Timestamp) -> Result<Vec<Change>> {
    // A job finished before the cutoff was created before it too, and ids
    // are UUIDv7 (creation time first): the candidates are an id range.
    let ms = u64::try_from(finished_before.as_millisecond()).unwrap_or(0);
    let below =
        uuid::Builder::from_unix_timestamp_millis(ms.saturating_add(1), &[0xff; 10]).into_uuid();
    let count = conn
        .prepare_cached(
            "DELETE FROM jobs WHERE id < ?1 AND finished_at < ?2 \
             AND state IN ('succeeded', 'dead', 'cancelled')",
        )
        .map_err(sql_err)?
        .execute(params![below, micros(finished_before)])
        .map_err(sql_err)? as u64;
    Ok(if count == 0 {
        Vec::new()
    } else {
        vec![Change::JobsPruned { count }]
    })
}

pub(crate) fn link_run(conn: &Connection, job: JobId, attempt: u32, run: RunId) -> Result<()> {
    conn.prepare_cached("UPDATE jobs SET run_id = ?3 WHERE id = ?1 AND attempt = ?2")
        .map_err(sql_err)?
        .execute(params![job.0, attempt, run.0])
        .map_err(sql_err)?;
    Ok(())
}

pub(crate) fn jobs(
    conn: &Connection,
    ns: &Namespace,
    q: &JobQuery,
    req: &PageRequest,
) -> Result<Page<Job>> {
    let limit = req.effective_limit();
    let before: Uuid = match &req.after {
        Some(c) => Uuid::parse_str(&c.0).map_err(|_| bad_cursor())?,
        None => Uuid::max(),
    };
    let state = q.state.map(|s| s.as_str());
    page(
        conn,
        &format!(
            "SELECT {JOB_COLS} FROM jobs WHERE namespace = ?1 AND id < ?2 AND (?3 IS NULL OR state = ?3) \
             AND (?4 IS NULL OR kind = ?4) ORDER BY id DESC LIMIT (SELECT ?5)"
        ),
        &[
            &ns.as_str(),
            &before,
            &state,
            &q.kind.as_deref(),
            &(limit as i64 + 1),
        ],
        limit,
        job_row,
        |j| Cursor(j.id.to_string()),
    )
}

pub(crate) fn attempts(conn: &Connection, ns: &Namespace, id: JobId) -> Result<Vec<JobAttempt>> {
    if job(conn, ns, id)?.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT job_id, attempt, worker, started_at, finished_at, outcome, error, run_id \
             FROM job_attempts WHERE job_id = ?1 \
             UNION ALL \
             SELECT id, attempt, coalesce(worker, '?'), coalesce(started_at, updated_at), \
               CASE WHEN state = 'succeeded' THEN finished_at END, state, NULL, run_id \
             FROM jobs j WHERE id = ?1 AND state IN ('running', 'succeeded') AND attempt > 0 \
               AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.id AND a.attempt = j.attempt) \
             ORDER BY 2",
        )
        .map_err(sql_err)?;
    stmt.query_map(params![id.0], |r| {
        Ok(JobAttempt {
            job_id: JobId(r.get(0)?),
            attempt: r.get(1)?,
            worker: r.get(2)?,
            started_at: ts(r, 3)?,
            finished_at: opt_ts(r, 4)?,
            outcome: parsed(r, 5)?,
            error: r.get(6)?,
            run_id: r.get::<_, Option<Uuid>>(7)?.map(RunId),
        })
    })
    .map_err(sql_err)?
    .collect::<rusqlite::Result<_>>()
    .map_err(sql_err)
}

pub(crate) fn stats(conn: &Connection) -> Result<JobStats> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
        )
        .map_err(sql_err)?;
    let counts = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                parsed::<JobState>(r, 1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    let oldest_due = conn
        .prepare_cached(
            "SELECT min(run_at) FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= ?1",
        )
        .map_err(sql_err)?
        .query_row(params![micros(kontextual_model::now())], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map_err(sql_err)?
        .map(from_micros)
        .transpose()
        .map_err(sql_err)?;
    Ok(JobStats { counts, oldest_due })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim runs thousands of times a second: its statement must be
    /// prepared once, not on every execution (a bound `LIMIT ?` would make
    /// SQLite re-prepare it each time its value changes).
    #[test]
    fn o1_the_claim_statement_is_never_re_prepared() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate(&mut conn, None, true).unwrap();
        for limit in [1, 2, 4, 8, 3] {
            claim(
                &conn,
                "w",
                &[],
                limit,
                Duration::from_secs(60),
                kontextual_model::now(),
            )
            .unwrap();
        }
        let stmt = conn.prepare_cached(&claim_sql()).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }
}

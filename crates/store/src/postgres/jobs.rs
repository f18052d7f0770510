//! The job queue on PostgreSQL (O1, O2; ADR 0007). Claims lock rows with
//! `FOR UPDATE SKIP LOCKED`, so workers in several processes never take the
//! same job and never wait for each other; completion is fenced on
//! (id, attempt, state) exactly as on SQLite. Claims, heartbeats and
//! completions are bookkeeping: they do not take the store's writer lock.

use std::time::Duration;

use crate::{
    Cursor, JobAction, JobQuery, NewJob, Page, PageRequest, Result, StoreError, WriteContext,
};
use kontextual_model::{
    AttemptOutcome, Change, Job, JobAttempt, JobId, JobResult, JobState, JobStats, JobTransition,
    Namespace, RunId, Timestamp,
};
use postgres::Row;

use crate::postgres::conn::Conn;
use uuid::Uuid;

use crate::postgres::{pg_err, rows};
use crate::rules as rules_mod;

/// Most jobs one claim takes, whatever the caller asks.
const MAX_CLAIM: u32 = 1000;
/// Expired leases rescued per claim (the rest on the next claims).
const RESCUE_BATCH: i64 = 256;

const JOB_COLS: &str = "id, namespace, kind, payload, state, attempt, max_attempts, run_at, unique_key, \
     worker, lease_expires_at, stop_requested, last_error, report, actor, correlation_id, \
     created_at, updated_at, finished_at, key_id, scopes";

fn job_row(r: &Row) -> Result<Job> {
    let stop: Option<&str> = rows::get(r, 11)?;
    let report: Option<&str> = rows::get(r, 13)?;
    let scopes: Option<&str> = rows::get(r, 20)?;
    let bad =
        |i: usize, e: String| StoreError::Corrupted(format!("unreadable value in column {i}: {e}"));
    Ok(Job {
        id: JobId(rows::get(r, 0)?),
        namespace: rows::parsed(r, 1)?,
        kind: rows::get(r, 2)?,
        payload: rows::json(r, 3)?,
        state: rows::parsed(r, 4)?,
        attempt: rows::get::<i64>(r, 5)? as u32,
        max_attempts: rows::get::<i64>(r, 6)? as u32,
        run_at: rows::ts(r, 7)?,
        unique_key: rows::get(r, 8)?,
        worker: rows::get(r, 9)?,
        lease_expires_at: rows::opt_ts(r, 10)?,
        stop_requested: stop
            .map(|s| {
                s.parse()
                    .map_err(|e: kontextual_model::ModelError| bad(11, e.to_string()))
            })
            .transpose()?,
        last_error: rows::get(r, 12)?,
        report: report
            .map(|s| serde_json::from_str(s).map_err(|e| bad(13, e.to_string())))
            .transpose()?,
        actor: rows::parsed(r, 14)?,
        correlation_id: rows::parsed(r, 15)?,
        created_at: rows::ts(r, 16)?,
        updated_at: rows::ts(r, 17)?,
        finished_at: rows::opt_ts(r, 18)?,
        key_id: rows::get(r, 19)?,
        scopes: scopes
            .map(|s| serde_json::from_str(s).map_err(|e| bad(20, e.to_string())))
            .transpose()?,
    })
}

fn lease_until(now: Timestamp, lease: Duration) -> i64 {
    let lease = lease.clamp(Duration::from_millis(10), Duration::from_secs(24 * 3600));
    now.as_microsecond() + lease.as_micros() as i64
}

pub(crate) fn job_by_id(c: &mut Conn, id: JobId) -> Result<Option<Job>> {
    c.query_opt(
        &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
        &[&id.0],
    )
    .map_err(pg_err)?
    .map(|r| job_row(&r))
    .transpose()
}

pub(crate) fn job(c: &mut Conn, ns: &Namespace, id: JobId) -> Result<Option<Job>> {
    Ok(job_by_id(c, id)?.filter(|j| &j.namespace == ns))
}

pub(crate) fn enqueue(
    c: &mut Conn,
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
        let existing = c
            .query_opt(
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE namespace = $1 AND unique_key = $2 \
                     AND state IN ('queued', 'failed') ORDER BY id LIMIT 1"
                ),
                &[&ctx.namespace.as_str(), key],
            )
            .map_err(pg_err)?;
        if let Some(r) = existing {
            return Ok(Change::JobUnchanged { job: job_row(&r)? });
        }
    }
    if job_by_id(c, new.id)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: format!("job {}", new.id),
        });
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
    c.execute(
        "INSERT INTO jobs (id, namespace, kind, payload, state, attempt, max_attempts, run_at, unique_key, \
         actor, correlation_id, created_at, updated_at, key_id, scopes) \
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $8, $9, $10, $10, $11, $12)",
        &[
            &job.id.0,
            &job.namespace.as_str(),
            &job.kind,
            &job.payload.to_string(),
            &(job.max_attempts as i64),
            &job.run_at.as_microsecond(),
            &job.unique_key,
            &job.actor.to_string(),
            &job.correlation_id.as_str(),
            &now.as_microsecond(),
            &job.key_id,
            &scopes,
        ],
    )
    .map_err(pg_err)?;
    // Delivered when the transaction commits: idle workers wake up.
    c.execute("SELECT pg_notify('kontextual_jobs', $1)", &[&job.kind])
        .map_err(pg_err)?;
    Ok(Change::JobEnqueued { job })
}

/// Records the attempt the job row holds as ended (before the row leaves it).
fn end_attempt(
    c: &mut Conn,
    id: JobId,
    attempt: u32,
    outcome: AttemptOutcome,
    error: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    c.execute(
        "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error, run_id) \
         SELECT id, attempt, coalesce(worker, '?'), coalesce(started_at, $3), $3, $4, $5, run_id \
         FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'running' \
         ON CONFLICT (job_id, attempt) DO UPDATE SET worker = excluded.worker, started_at = excluded.started_at, \
           finished_at = excluded.finished_at, outcome = excluded.outcome, error = excluded.error, run_id = excluded.run_id",
        &[&id.0, &(attempt as i64), &now.as_microsecond(), &outcome.as_str(), &error],
    )
    .map_err(pg_err)?;
    Ok(())
}

/// Jobs whose lease expired are rescued (their attempt recorded as lost).
fn rescue_expired(c: &mut Conn, now: Timestamp) -> Result<()> {
    let t = now.as_microsecond();
    let expired = c
        .query(
            "SELECT id, attempt, worker FROM jobs WHERE state = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&t, &RESCUE_BATCH],
        )
        .map_err(pg_err)?;
    for r in expired {
        let id: Uuid = rows::get(&r, 0)?;
        let attempt = rows::get::<i64>(&r, 1)? as u32;
        let worker: Option<String> = rows::get(&r, 2)?;
        let error = format!(
            "lease expired: worker {} stopped answering",
            worker.as_deref().unwrap_or("?")
        );
        end_attempt(
            c,
            JobId(id),
            attempt,
            AttemptOutcome::Lost,
            Some(&error),
            now,
        )?;
        c.execute(
            "UPDATE jobs SET \
               state = CASE WHEN stop_requested IS NOT NULL THEN stop_requested \
                            WHEN attempt >= max_attempts THEN 'dead' ELSE 'failed' END, \
               finished_at = CASE WHEN stop_requested IS NOT NULL OR attempt >= max_attempts THEN $2::bigint END, \
               run_at = $2::bigint, worker = NULL, lease_expires_at = NULL, stop_requested = NULL, \
               last_error = $3, updated_at = $2::bigint \
             WHERE id = $1 AND state = 'running' AND attempt = $4",
            &[&id, &t, &error, &(attempt as i64)],
        )
        .map_err(pg_err)?;
    }
    Ok(())
}

pub(crate) fn claim(
    c: &mut Conn,
    worker: &str,
    kinds: &[String],
    limit: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Change> {
    rescue_expired(c, now)?;
    let limit = limit.clamp(1, MAX_CLAIM) as i64;
    let t = now.as_microsecond();
    let until = lease_until(now, lease);
    let kinds: Option<Vec<String>> = (!kinds.is_empty()).then(|| kinds.to_vec());
    let mut jobs = c
        .query(
            &format!(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker = $1, lease_expires_at = $2, \
                   updated_at = $3, started_at = $3, run_id = NULL \
                 WHERE id IN (SELECT id FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= $3 \
                   AND ($4::text[] IS NULL OR kind = ANY($4)) ORDER BY run_at, id LIMIT $5 \
                   FOR UPDATE SKIP LOCKED) \
                 RETURNING {JOB_COLS}"
            ),
            &[&worker, &until, &t, &kinds, &limit],
        )
        .map_err(pg_err)?
        .iter()
        .map(job_row)
        .collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.run_at, j.id));
    Ok(Change::JobsClaimed { jobs })
}

fn lease_lost(c: &mut Conn, id: JobId, attempt: u32) -> Result<StoreError> {
    let why = match job_by_id(c, id)? {
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
    c: &mut Conn,
    id: JobId,
    attempt: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Change> {
    let n = c
        .execute(
            "UPDATE jobs SET lease_expires_at = $3, updated_at = $4 \
             WHERE id = $1 AND attempt = $2 AND state = 'running'",
            &[
                &id.0,
                &(attempt as i64),
                &lease_until(now, lease),
                &now.as_microsecond(),
            ],
        )
        .map_err(pg_err)?;
    if n == 0 {
        return Err(lease_lost(c, id, attempt)?);
    }
    let job =
        job_by_id(c, id)?.ok_or_else(|| StoreError::Internal(format!("job {id} vanished")))?;
    Ok(Change::JobLeased { job })
}

pub(crate) fn finish(
    c: &mut Conn,
    id: JobId,
    attempt: u32,
    result: JobResult,
    report: Option<serde_json::Value>,
    now: Timestamp,
) -> Result<Change> {
    let t = now.as_microsecond();
    let att = attempt as i64;
    if matches!(result, JobResult::Succeeded) {
        let n = c
            .execute(
                "UPDATE jobs SET state = 'succeeded', lease_expires_at = NULL, last_error = NULL, \
                   stop_requested = NULL, report = coalesce($3, report), finished_at = $4, updated_at = $4 \
                 WHERE id = $1 AND attempt = $2 AND state = 'running'",
                &[&id.0, &att, &report.map(|r| r.to_string()), &t],
            )
            .map_err(pg_err)?;
        if n == 0 {
            return Err(lease_lost(c, id, attempt)?);
        }
        return Ok(Change::JobFinished {
            id,
            state: JobState::Succeeded,
        });
    }
    let current = c
        .query_opt(
            "SELECT max_attempts, stop_requested FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'running'",
            &[&id.0, &att],
        )
        .map_err(pg_err)?;
    let Some(row) = current else {
        return Err(lease_lost(c, id, attempt)?);
    };
    let max_attempts = rows::get::<i64>(&row, 0)? as u32;
    let stop: Option<JobState> = rows::get::<Option<String>>(&row, 1)?.and_then(|s| s.parse().ok());
    let (state, outcome, error, run_at) =
        rules_mod::attempt_end(&result, attempt, max_attempts, stop, now);
    let returned = matches!(result, JobResult::Returned) && state == JobState::Queued;
    end_attempt(c, id, attempt, outcome, error.as_deref(), now)?;
    let report = report.as_ref().map(|r| r.to_string());
    let sql = "UPDATE jobs SET state = $3, worker = NULL, lease_expires_at = NULL, stop_requested = NULL, \
               last_error = coalesce($4, last_error), report = coalesce($5, report), \
               run_at = coalesce($6, run_at), finished_at = $7, updated_at = $8, \
               max_attempts = CASE WHEN $9 THEN greatest(max_attempts, attempt + 1) ELSE max_attempts END \
             WHERE id = $1 AND attempt = $2 AND state = 'running'";
    // A returned unique job whose key another queued job now holds is
    // cancelled (that one will do the work): tried in a savepoint, since a
    // failed statement would abort the whole transaction.
    let first = c.execute_in_savepoint(
        sql,
        &[
            &id.0,
            &att,
            &state.as_str(),
            &error,
            &report,
            &run_at.map(|r| r.as_microsecond()),
            &state.is_final().then_some(t),
            &t,
            &returned,
        ],
    );
    let state = match first? {
        Ok(_) => state,
        Err(e) if returned && e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            c.execute(
                sql,
                &[
                    &id.0,
                    &att,
                    &JobState::Cancelled.as_str(),
                    &error,
                    &report,
                    &run_at.map(|r| r.as_microsecond()),
                    &Some(t),
                    &t,
                    &returned,
                ],
            )
            .map_err(pg_err)?;
            JobState::Cancelled
        }
        Err(e) => return Err(pg_err(e)),
    };
    Ok(Change::JobFinished { id, state })
}

pub(crate) fn act(
    c: &mut Conn,
    ctx: &WriteContext,
    id: JobId,
    action: JobAction,
    now: Timestamp,
) -> Result<Change> {
    use JobState as S;
    let job =
        job(c, &ctx.namespace, id)?.ok_or_else(|| StoreError::not_found(format!("job {id}")))?;
    let from = job.state;
    let refuse = |why: String| StoreError::Refused {
        what: format!("{} job {id}", action.as_str()),
        why,
    };
    let target = rules_mod::job_action_target(action, &job)?;
    let Some((to, stop)) = target else {
        return Ok(Change::JobActed(JobTransition {
            action: action.as_str().to_owned(),
            job,
            from,
            changed: false,
        }));
    };
    let t = now.as_microsecond();
    let requeue = to == S::Queued;
    let res = c.execute_in_savepoint(
        "UPDATE jobs SET state = $2::text, stop_requested = $3, updated_at = $4::bigint, \
           finished_at = CASE WHEN $2::text IN ('succeeded', 'dead', 'cancelled', 'quarantined') THEN $4::bigint END, \
           run_at = CASE WHEN $5 THEN $4::bigint ELSE run_at END, \
           max_attempts = CASE WHEN $5 THEN greatest(max_attempts, attempt + 1) ELSE max_attempts END \
         WHERE id = $1",
        &[&id.0, &to.as_str(), &stop.map(|s| s.as_str()), &t, &requeue],
    );
    match res? {
        Ok(_) => {}
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Err(refuse(format!(
                "another job with unique key {:?} is already queued",
                job.unique_key.as_deref().unwrap_or("")
            )));
        }
        Err(e) => return Err(pg_err(e)),
    }
    if requeue {
        c.execute("SELECT pg_notify('kontextual_jobs', $1)", &[&job.kind])
            .map_err(pg_err)?;
    }
    let job =
        job_by_id(c, id)?.ok_or_else(|| StoreError::Internal(format!("job {id} vanished")))?;
    Ok(Change::JobActed(JobTransition {
        action: action.as_str().to_owned(),
        job,
        from,
        changed: true,
    }))
}

pub(crate) fn prune(c: &mut Conn, finished_before: Timestamp) -> Result<Vec<Change>> {
    let ms = u64::try_from(finished_before.as_millisecond()).unwrap_or(0);
    let below =
        uuid::Builder::from_unix_timestamp_millis(ms.saturating_add(1), &[0xff; 10]).into_uuid();
    let count = c
        .execute(
            "DELETE FROM jobs WHERE id < $1 AND finished_at < $2 AND state IN ('succeeded', 'dead', 'cancelled')",
            &[&below, &finished_before.as_microsecond()],
        )
        .map_err(pg_err)?;
    Ok(if count == 0 {
        Vec::new()
    } else {
        vec![Change::JobsPruned { count }]
    })
}

pub(crate) fn link_run(c: &mut Conn, job: JobId, attempt: u32, run: RunId) -> Result<()> {
    c.execute(
        "UPDATE jobs SET run_id = $3 WHERE id = $1 AND attempt = $2",
        &[&job.0, &(attempt as i64), &run.0],
    )
    .map_err(pg_err)?;
    Ok(())
}

pub(crate) fn jobs(
    c: &mut Conn,
    ns: &Namespace,
    q: &JobQuery,
    req: &PageRequest,
) -> Result<Page<Job>> {
    let limit = req.effective_limit() as usize;
    let before: Uuid = match &req.after {
        Some(cur) => Uuid::parse_str(&cur.0).map_err(|_| {
            StoreError::InvalidInput(
                "the page cursor is malformed or belongs to another listing".to_owned(),
            )
        })?,
        None => Uuid::max(),
    };
    let state = q.state.map(|s| s.as_str());
    let mut items = c
        .query(
            &format!(
                "SELECT {JOB_COLS} FROM jobs WHERE namespace = $1 AND id < $2 AND ($3::text IS NULL OR state = $3) \
                 AND ($4::text IS NULL OR kind = $4) ORDER BY id DESC LIMIT $5"
            ),
            &[&ns.as_str(), &before, &state, &q.kind.as_deref(), &(limit as i64 + 1)],
        )
        .map_err(pg_err)?
        .iter()
        .map(job_row)
        .collect::<Result<Vec<_>>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|j| Cursor(j.id.to_string()))
    } else {
        None
    };
    Ok(Page { items, next })
}

pub(crate) fn attempts(c: &mut Conn, ns: &Namespace, id: JobId) -> Result<Vec<JobAttempt>> {
    if job(c, ns, id)?.is_none() {
        return Ok(Vec::new());
    }
    c.query(
        "SELECT job_id, attempt, worker, started_at, finished_at, outcome, error, run_id \
         FROM job_attempts WHERE job_id = $1 \
         UNION ALL \
         SELECT id, attempt, coalesce(worker, '?'), coalesce(started_at, updated_at), \
           CASE WHEN state = 'succeeded' THEN finished_at END, state, NULL, run_id \
         FROM jobs j WHERE id = $1 AND state IN ('running', 'succeeded') AND attempt > 0 \
           AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.id AND a.attempt = j.attempt) \
         ORDER BY 2",
        &[&id.0],
    )
    .map_err(pg_err)?
    .iter()
    .map(|r| {
        Ok(JobAttempt {
            job_id: JobId(rows::get(r, 0)?),
            attempt: rows::get::<i64>(r, 1)? as u32,
            worker: rows::get(r, 2)?,
            started_at: rows::ts(r, 3)?,
            finished_at: rows::opt_ts(r, 4)?,
            outcome: rows::parsed(r, 5)?,
            error: rows::get(r, 6)?,
            run_id: rows::opt_run(r, 7)?,
        })
    })
    .collect()
}

pub(crate) fn stats(c: &mut Conn) -> Result<JobStats> {
    let counts = c
        .query(
            "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
            &[],
        )
        .map_err(pg_err)?
        .iter()
        .map(|r| {
            Ok((
                rows::get(r, 0)?,
                rows::parsed::<JobState>(r, 1)?,
                rows::u64c(r, 2)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let row = c
        .query_one(
            "SELECT min(run_at) FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= $1",
            &[&kontextual_model::now().as_microsecond()],
        )
        .map_err(pg_err)?;
    Ok(JobStats {
        counts,
        oldest_due: rows::opt_ts(&row, 0)?,
    })
}

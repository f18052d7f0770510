//! Job writes: each runs inside the engine's transaction and returns the
//! change it made (the caller audits the audited ones).

use std::time::Duration;

use kontextual_model::{
    AttemptOutcome, Change, Job, JobId, JobResult, JobState, JobTransition, RunId, Timestamp,
};

use super::read::{JOB_COLS, job, job_by_id, job_row};
use crate::port::{JobAction, NewJob, WriteContext};
use crate::sql::{Array, Dialect, Tx, args};
use crate::{Result, StoreError, rules};

/// Most jobs one claim takes, whatever the caller asks.
pub(crate) const MAX_CLAIM: u32 = 1000;
/// Expired leases rescued per claim (the rest on the next claims).
const RESCUE_BATCH: i64 = 256;

/// The instant (micros) a lease taken now for `lease` ends; absurd leases
/// are clamped to between 10 ms and a day.
fn lease_until(now: Timestamp, lease: Duration) -> i64 {
    let lease = lease.clamp(Duration::from_millis(10), Duration::from_secs(24 * 3600));
    // at most a day: fits an i64 of microseconds
    now.as_microsecond() + lease.as_micros() as i64
}

/// Wakes idle workers on PostgreSQL (delivered when the transaction
/// commits; `listen_for_jobs`). SQLite workers share the process and poll.
pub(crate) fn notify_workers(tx: &mut Tx<'_>, kind: &str) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        tx.execute("SELECT pg_notify('kontextual_jobs', ?1)", args![kind])?;
    }
    Ok(())
}

fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

pub(crate) fn enqueue(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    new: NewJob,
    now: Timestamp,
) -> Result<Change> {
    enqueue_checked(tx, ctx, new, now)
}

/// Enqueues several jobs, each in its namespace (a dispatcher's batch of
/// deliveries): one statement on PostgreSQL (one round trip instead of one
/// per job), a cached statement per job on SQLite. Their unique keys (if any) are new by construction —
/// they name things created in this same transaction — so nothing looks
/// for an existing job under them, and no worker is woken: the caller
/// calls [`notify_workers`] once. Returns their ids, in order.
pub(crate) fn enqueue_new_many(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    jobs: Vec<(kontextual_model::Namespace, NewJob)>,
    now: Timestamp,
) -> Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(jobs.len());
    for (_, new) in &jobs {
        check_new(new)?;
        ids.push(new.id);
    }
    if jobs.is_empty() {
        return Ok(ids);
    }
    let scopes_of = |new: &NewJob| {
        new.scopes
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))
    };
    let actor = ctx.actor.to_string();
    let already = |e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: "a job id of the batch".to_owned(),
        },
        other => other,
    };
    let n = match tx.dialect() {
        // In process, a cached statement per row costs less than encoding
        // the batch as JSON and decoding it again.
        Dialect::Sqlite => {
            let mut n = 0;
            for (ns, new) in &jobs {
                let payload = new.payload.to_string();
                n += tx
                    .execute(
                        INSERT_JOB,
                        args![
                            new.id.0,
                            ns.as_str(),
                            new.kind.as_str(),
                            payload,
                            new.max_attempts,
                            new.run_at.unwrap_or(now),
                            &new.unique_key,
                            actor.as_str(),
                            ctx.correlation_id.as_str(),
                            now,
                            &new.key_id,
                            scopes_of(new)?
                        ],
                    )
                    .map_err(already)?;
            }
            n
        }
        // One round trip: the batch as one array per column.
        Dialect::Postgres => {
            let payloads: Vec<String> = jobs
                .iter()
                .map(|(_, new)| new.payload.to_string())
                .collect();
            let scopes = jobs
                .iter()
                .map(|(_, new)| scopes_of(new))
                .collect::<Result<Vec<Option<String>>>>()?;
            let texts = |f: fn(&(kontextual_model::Namespace, NewJob)) -> Option<&str>| {
                Array::Text(jobs.iter().map(f).collect())
            };
            tx.execute(
                ENQUEUE_MANY_PG,
                args![
                    Array::Uuid(jobs.iter().map(|(_, new)| new.id.0).collect()),
                    texts(|(ns, _)| Some(ns.as_str())),
                    texts(|(_, new)| Some(new.kind.as_str())),
                    Array::Text(payloads.iter().map(|p| Some(p.as_str())).collect()),
                    Array::I64(
                        jobs.iter()
                            .map(|(_, new)| Some(i64::from(new.max_attempts)))
                            .collect()
                    ),
                    Array::I64(
                        jobs.iter()
                            .map(|(_, new)| Some(new.run_at.unwrap_or(now).as_microsecond()))
                            .collect()
                    ),
                    texts(|(_, new)| new.unique_key.as_deref()),
                    texts(|(_, new)| new.key_id.as_deref()),
                    Array::Text(scopes.iter().map(Option::as_deref).collect()),
                    actor.as_str(),
                    ctx.correlation_id.as_str(),
                    now
                ],
            )
            .map_err(already)?
        }
    };
    if n != ids.len() as u64 {
        return Err(StoreError::Internal(format!(
            "enqueued {n} of {} jobs",
            ids.len()
        )));
    }
    Ok(ids)
}

/// One new job: id, namespace, kind, payload, max attempts, run at,
/// unique key, actor, correlation id, now, key id, scopes.
const INSERT_JOB: &str = "INSERT INTO jobs (id, namespace, kind, payload, state, attempt, \
    max_attempts, run_at, unique_key, actor, correlation_id, created_at, updated_at, key_id, scopes) \
    VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)";

/// A batch of new jobs, one array per column (?1-?9: id, namespace, kind,
/// payload, max attempts, run at, unique key, key id, scopes); the actor,
/// correlation id and now (?10-?12) shared.
const ENQUEUE_MANY_PG: &str = "INSERT INTO jobs (id, namespace, kind, payload, state, attempt, \
    max_attempts, run_at, unique_key, actor, correlation_id, created_at, updated_at, key_id, scopes) \
    SELECT v.k_id, v.k_ns, v.k_kind, v.k_payload, 'queued', 0, v.k_max, v.k_run_at, v.k_unique, \
      ?10, ?11, ?12, ?12, v.k_key_id, v.k_scopes \
    FROM unnest(CAST(?1 AS uuid[]), CAST(?2 AS text[]), CAST(?3 AS text[]), CAST(?4 AS text[]), \
      CAST(?5 AS bigint[]), CAST(?6 AS bigint[]), CAST(?7 AS text[]), CAST(?8 AS text[]), \
      CAST(?9 AS text[])) \
      AS v(k_id, k_ns, k_kind, k_payload, k_max, k_run_at, k_unique, k_key_id, k_scopes)";

/// A new job's kind and attempts are within bounds.
fn check_new(new: &NewJob) -> Result<()> {
    if !valid_kind(&new.kind) {
        return Err(StoreError::InvalidInput(format!(
            "job kind {:?}: use 1-64 lowercase letters, digits, '-', '_' or '.'",
            new.kind
        )));
    }
    if new.max_attempts == 0 || new.max_attempts > 1000 {
        return Err(StoreError::InvalidInput(
            "max attempts must be between 1 and 1000".to_owned(),
        ));
    }
    Ok(())
}

fn enqueue_checked(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    new: NewJob,
    now: Timestamp,
) -> Result<Change> {
    check_new(&new)?;
    if let Some(key) = new.unique_key.as_ref() {
        let existing = tx.query_opt(
            &format!(
                "SELECT {JOB_COLS} FROM jobs WHERE namespace = ?1 AND unique_key = ?2 \
                 AND state IN ('queued', 'failed') ORDER BY id LIMIT 1"
            ),
            args![ctx.namespace.as_str(), key],
            job_row,
        )?;
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
    // A taken id fails the batch, so the failed statement needs no
    // savepoint on PostgreSQL.
    tx.execute(
        INSERT_JOB,
        args![
            job.id.0,
            job.namespace.as_str(),
            &job.kind,
            job.payload.to_string(),
            job.max_attempts,
            job.run_at,
            &job.unique_key,
            job.actor.to_string(),
            job.correlation_id.as_str(),
            now,
            &job.key_id,
            scopes,
        ],
    )
    .map_err(|e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("job {}", job.id),
        },
        other => other,
    })?;
    notify_workers(tx, &job.kind)?;
    Ok(Change::JobEnqueued { job })
}

/// Records the attempt the job row holds (worker, start, run) as ended.
/// Call before the job row leaves that attempt.
fn end_attempt(
    tx: &mut Tx<'_>,
    id: JobId,
    attempt: u32,
    outcome: AttemptOutcome,
    error: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    tx.execute(
        "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error, run_id) \
         SELECT id, attempt, coalesce(worker, '?'), coalesce(started_at, ?3), ?3, ?4, ?5, run_id \
         FROM jobs WHERE id = ?1 AND attempt = ?2 AND state = 'running' \
         ON CONFLICT (job_id, attempt) DO UPDATE SET worker = excluded.worker, started_at = excluded.started_at, \
           finished_at = excluded.finished_at, outcome = excluded.outcome, error = excluded.error, \
           run_id = excluded.run_id",
        args![id.0, attempt, now, outcome.as_str(), error],
    )?;
    Ok(())
}

/// Jobs whose lease expired: their worker died or lost touch. The attempt
/// is recorded as lost; the job waits for its next attempt, or is dead when
/// it has none left, or takes the state an operator asked it to stop for.
fn rescue_expired(tx: &mut Tx<'_>, now: Timestamp) -> Result<()> {
    let expired_sql = match tx.dialect() {
        // `LIMIT (SELECT ?)`: see `read::jobs`
        Dialect::Sqlite => {
            "SELECT id, attempt, worker FROM jobs WHERE state = 'running' AND lease_expires_at < ?1 \
             ORDER BY lease_expires_at LIMIT (SELECT ?2)"
        }
        // another process may be rescuing (or finishing) the same jobs
        Dialect::Postgres => {
            "SELECT id, attempt, worker FROM jobs WHERE state = 'running' AND lease_expires_at < ?1 \
             ORDER BY lease_expires_at LIMIT ?2 FOR UPDATE SKIP LOCKED"
        }
    };
    let expired = tx.query(expired_sql, args![now, RESCUE_BATCH], |r| {
        Ok((
            JobId(r.get(0)?),
            r.get::<u32>(1)?,
            r.get::<Option<String>>(2)?,
        ))
    })?;
    for (id, attempt, worker) in expired {
        let error = format!(
            "lease expired: worker {} stopped answering",
            worker.as_deref().unwrap_or("?")
        );
        end_attempt(tx, id, attempt, AttemptOutcome::Lost, Some(&error), now)?;
        tx.execute(
            "UPDATE jobs SET \
               state = CASE WHEN stop_requested IS NOT NULL THEN stop_requested \
                            WHEN attempt >= max_attempts THEN 'dead' ELSE 'failed' END, \
               finished_at = CASE WHEN stop_requested IS NOT NULL OR attempt >= max_attempts \
                             THEN CAST(?2 AS BIGINT) END, \
               run_at = CAST(?2 AS BIGINT), worker = NULL, lease_expires_at = NULL, stop_requested = NULL, \
               last_error = ?3, updated_at = CAST(?2 AS BIGINT) \
             WHERE id = ?1 AND state = 'running' AND attempt = ?4",
            args![id.0, now, &error, attempt],
        )?;
    }
    Ok(())
}

/// The claim statement: due jobs, oldest first, optionally of some kinds
/// (`?4`, a JSON array, or NULL for any).
pub(crate) fn claim_sql(dialect: Dialect) -> String {
    match dialect {
        // `LIMIT (SELECT ?)`: see `read::jobs`
        Dialect::Sqlite => format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker = ?1, lease_expires_at = ?2, \
               updated_at = ?3, started_at = ?3, run_id = NULL \
             WHERE id IN (SELECT id FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= ?3 \
               AND (?4 IS NULL OR kind IN (SELECT value FROM json_each(?4))) \
               ORDER BY run_at, id LIMIT (SELECT ?5)) \
             RETURNING {JOB_COLS}"
        ),
        // the rows taken are locked, and rows another claim holds skipped
        Dialect::Postgres => format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker = ?1, lease_expires_at = ?2, \
               updated_at = ?3, started_at = ?3, run_id = NULL \
             WHERE id IN (SELECT id FROM jobs WHERE state IN ('queued', 'failed') AND run_at <= ?3 \
               AND (?4::text IS NULL OR kind IN (SELECT jsonb_array_elements_text(?4::text::jsonb))) \
               ORDER BY run_at, id LIMIT ?5 FOR UPDATE SKIP LOCKED) \
             RETURNING {JOB_COLS}"
        ),
    }
}

pub(crate) fn claim(
    tx: &mut Tx<'_>,
    worker: &str,
    kinds: &[String],
    limit: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Change> {
    rescue_expired(tx, now)?;
    let limit = limit.clamp(1, MAX_CLAIM);
    let kinds_json = if kinds.is_empty() {
        None
    } else {
        Some(serde_json::to_string(kinds).map_err(|e| StoreError::Internal(e.to_string()))?)
    };
    let mut jobs = tx.query(
        &claim_sql(tx.dialect()),
        args![worker, lease_until(now, lease), now, kinds_json, limit],
        job_row,
    )?;
    // RETURNING gives no order
    jobs.sort_by_key(|j| (j.run_at, j.id));
    Ok(Change::JobsClaimed { jobs })
}

/// Why a worker's attempt no longer counts: the job moved on without it.
fn lease_lost(tx: &mut Tx<'_>, id: JobId, attempt: u32) -> Result<StoreError> {
    let why = match job_by_id(tx, id)? {
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
    tx: &mut Tx<'_>,
    id: JobId,
    attempt: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Change> {
    let n = tx.execute(
        "UPDATE jobs SET lease_expires_at = ?3, updated_at = ?4 \
         WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
        args![id.0, attempt, lease_until(now, lease), now],
    )?;
    if n == 0 {
        return Err(lease_lost(tx, id, attempt)?);
    }
    let job =
        job_by_id(tx, id)?.ok_or_else(|| StoreError::Internal(format!("job {id} vanished")))?;
    Ok(Change::JobLeased { job })
}

/// [`finish`]'s statement for a job that succeeded.
const FINISH_SUCCEEDED: &str = "UPDATE jobs SET state = 'succeeded', lease_expires_at = NULL, last_error = NULL, \
       stop_requested = NULL, report = coalesce(?3, report), finished_at = ?4, updated_at = ?4 \
     WHERE id = ?1 AND attempt = ?2 AND state = 'running'";

/// Finishes several succeeded jobs (a worker's batch of quick jobs). The
/// outcome is [`finish`]'s for each, in order; if a lease was lost the
/// first such job's error fails the batch, as one by one it would.
/// PostgreSQL takes the batch as one statement over a JSON array (one
/// round trip instead of one per job); SQLite, in process, runs the one
/// job's cached statement per job — parsing the JSON cost its single
/// writer more than the statements.
pub(crate) fn finish_succeeded(
    tx: &mut Tx<'_>,
    jobs: &[(JobId, u32, Option<serde_json::Value>)],
    now: Timestamp,
) -> Result<Vec<Change>> {
    let finished = match tx.dialect() {
        Dialect::Sqlite => {
            let mut finished = std::collections::HashSet::with_capacity(jobs.len());
            for (id, attempt, report) in jobs {
                let report = report.as_ref().map(|r| r.to_string());
                if tx.execute(FINISH_SUCCEEDED, args![id.0, *attempt, report, now])? == 1 {
                    finished.insert(*id);
                }
            }
            finished
        }
        Dialect::Postgres => finish_succeeded_pg(tx, jobs, now)?,
    };
    let mut out = Vec::with_capacity(jobs.len());
    for (id, attempt, _) in jobs {
        if !finished.contains(id) {
            return Err(lease_lost(tx, *id, *attempt)?);
        }
        out.push(Change::JobFinished {
            id: *id,
            state: JobState::Succeeded,
        });
    }
    Ok(out)
}

/// [`finish_succeeded`] on PostgreSQL; returns the jobs finished.
fn finish_succeeded_pg(
    tx: &mut Tx<'_>,
    jobs: &[(JobId, u32, Option<serde_json::Value>)],
    now: Timestamp,
) -> Result<std::collections::HashSet<JobId>> {
    let reports: Vec<Option<String>> = jobs
        .iter()
        .map(|(_, _, report)| report.as_ref().map(|r| r.to_string()))
        .collect();
    let columns = args![
        Array::Uuid(jobs.iter().map(|(id, _, _)| id.0).collect()),
        Array::I64(jobs.iter().map(|(_, a, _)| Some(i64::from(*a))).collect()),
        Array::Text(reports.iter().map(Option::as_deref).collect()),
        now
    ];
    tx.query(FINISH_SUCCEEDED_MANY_PG, columns, |r| Ok(JobId(r.get(0)?)))
        .map(|ids| ids.into_iter().collect())
}

/// [`FINISH_SUCCEEDED`] for a batch, one array per column (?1-?3: id,
/// attempt, report). No id range is needed: the plan reads the partial
/// index of running jobs (see `sql_statements::ALLOWED_FILTERS`), bounded
/// by how many jobs run at once.
const FINISH_SUCCEEDED_MANY_PG: &str = "UPDATE jobs SET state = 'succeeded', lease_expires_at = NULL, \
       last_error = NULL, stop_requested = NULL, report = coalesce(v.k_report, report), \
       finished_at = ?4, updated_at = ?4 \
     FROM unnest(CAST(?1 AS uuid[]), CAST(?2 AS bigint[]), CAST(?3 AS text[])) \
       AS v(k_id, k_attempt, k_report) \
     WHERE id = v.k_id AND attempt = v.k_attempt AND state = 'running' \
     RETURNING id";

pub(crate) fn finish(
    tx: &mut Tx<'_>,
    id: JobId,
    attempt: u32,
    result: JobResult,
    report: Option<serde_json::Value>,
    now: Timestamp,
) -> Result<Change> {
    let report = report.map(|r| r.to_string());
    // The common case in one statement: the job row keeps this attempt's
    // worker, start and run.
    if matches!(result, JobResult::Succeeded) {
        let n = tx.execute(FINISH_SUCCEEDED, args![id.0, attempt, report, now])?;
        if n == 0 {
            return Err(lease_lost(tx, id, attempt)?);
        }
        return Ok(Change::JobFinished {
            id,
            state: JobState::Succeeded,
        });
    }
    let current = tx.query_opt(
        "SELECT max_attempts, stop_requested FROM jobs WHERE id = ?1 AND attempt = ?2 AND state = 'running'",
        args![id.0, attempt],
        |r| Ok((r.get::<u32>(0)?, r.get::<Option<String>>(1)?)),
    )?;
    let Some((max_attempts, stop)) = current else {
        return Err(lease_lost(tx, id, attempt)?);
    };
    let stop: Option<JobState> = stop.and_then(|s| s.parse().ok());
    let (state, outcome, error, run_at) =
        rules::attempt_end(&result, attempt, max_attempts, stop, now);
    // a returned job gets its attempt back
    let returned = matches!(result, JobResult::Returned) && state == JobState::Queued;
    end_attempt(tx, id, attempt, outcome, error.as_deref(), now)?;
    const UPDATE: &str = "UPDATE jobs SET state = ?3, worker = NULL, lease_expires_at = NULL, stop_requested = NULL, \
           last_error = coalesce(?4, last_error), report = coalesce(?5, report), \
           run_at = coalesce(?6, run_at), finished_at = ?7, updated_at = ?8, \
           max_attempts = CASE WHEN ?9 AND max_attempts <= attempt THEN attempt + 1 ELSE max_attempts END \
         WHERE id = ?1 AND attempt = ?2 AND state = 'running'";
    let finished = state.is_final().then_some(now);
    let first = tx.try_execute(
        UPDATE,
        args![
            id.0,
            attempt,
            state.as_str(),
            &error,
            &report,
            run_at,
            finished,
            now,
            returned
        ],
    )?;
    let state = match first {
        Ok(_) => state,
        // A returned unique job whose key another queued job now holds:
        // that one will do the work.
        Err(StoreError::AlreadyExists { .. }) if returned => {
            tx.execute(
                UPDATE,
                args![
                    id.0,
                    attempt,
                    JobState::Cancelled.as_str(),
                    &error,
                    &report,
                    run_at,
                    now,
                    now,
                    returned
                ],
            )?;
            JobState::Cancelled
        }
        Err(e) => return Err(e),
    };
    Ok(Change::JobFinished { id, state })
}

pub(crate) fn act(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: JobId,
    action: JobAction,
    now: Timestamp,
) -> Result<Change> {
    let job =
        job(tx, &ctx.namespace, id)?.ok_or_else(|| StoreError::not_found(format!("job {id}")))?;
    let from = job.state;
    // (new state, stop request) — None: nothing to do.
    let Some((to, stop)) = rules::job_action_target(action, &job)? else {
        return Ok(Change::JobActed(JobTransition {
            action: action.as_str().to_owned(),
            job,
            from,
            changed: false,
        }));
    };
    let requeue = to == JobState::Queued;
    let res = tx.try_execute(
        "UPDATE jobs SET state = ?2, stop_requested = ?3, updated_at = CAST(?4 AS BIGINT), \
           finished_at = CASE WHEN CAST(?2 AS TEXT) IN ('succeeded', 'dead', 'cancelled', 'quarantined') \
                         THEN CAST(?4 AS BIGINT) END, \
           run_at = CASE WHEN ?5 THEN CAST(?4 AS BIGINT) ELSE run_at END, \
           max_attempts = CASE WHEN ?5 AND max_attempts <= attempt THEN attempt + 1 ELSE max_attempts END \
         WHERE id = ?1",
        args![id.0, to.as_str(), stop.map(|s| s.as_str()), now, requeue],
    )?;
    match res {
        Ok(_) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(StoreError::Refused {
                what: format!("{} job {id}", action.as_str()),
                why: format!(
                    "another job with unique key {:?} is already queued",
                    job.unique_key.as_deref().unwrap_or("")
                ),
            });
        }
        Err(e) => return Err(e),
    }
    if requeue {
        notify_workers(tx, &job.kind)?;
    }
    let job =
        job_by_id(tx, id)?.ok_or_else(|| StoreError::Internal(format!("job {id} vanished")))?;
    Ok(Change::JobActed(JobTransition {
        action: action.as_str().to_owned(),
        job,
        from,
        changed: true,
    }))
}

pub(crate) fn prune(tx: &mut Tx<'_>, finished_before: Timestamp) -> Result<Vec<Change>> {
    // A job finished before the cutoff was created before it too, and ids
    // are UUIDv7 (creation time first): the candidates are an id range.
    let ms = u64::try_from(finished_before.as_millisecond()).unwrap_or(0);
    let below =
        uuid::Builder::from_unix_timestamp_millis(ms.saturating_add(1), &[0xff; 10]).into_uuid();
    let count = tx.execute(
        "DELETE FROM jobs WHERE id < ?1 AND finished_at < ?2 \
         AND state IN ('succeeded', 'dead', 'cancelled')",
        args![below, finished_before],
    )?;
    Ok(if count == 0 {
        Vec::new()
    } else {
        vec![Change::JobsPruned { count }]
    })
}

/// Points a job's current attempt at the run it started.
pub(crate) fn link_run(tx: &mut Tx<'_>, job: JobId, attempt: u32, run: RunId) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET run_id = ?3 WHERE id = ?1 AND attempt = ?2",
        args![job.0, attempt, run.0],
    )?;
    Ok(())
}

/// Applies one jobs operation inside the engine's transaction and
/// returns the changes it made (`crate::apply` appends their audit records).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    op: crate::port::JobOp,
    now: Timestamp,
) -> Result<Vec<Change>> {
    use crate::port::JobOp;
    Ok(match op {
        JobOp::EnqueueJob(new) => vec![enqueue(tx, ctx, new, now)?],
        JobOp::ClaimJobs {
            worker,
            kinds,
            limit,
            lease,
        } => vec![claim(tx, &worker, &kinds, limit, lease, now)?],
        JobOp::HeartbeatJob { id, attempt, lease } => {
            vec![heartbeat(tx, id, attempt, lease, now)?]
        }
        JobOp::FinishJob {
            id,
            attempt,
            result,
            report,
        } => vec![finish(tx, id, attempt, result, report, now)?],
        JobOp::ActOnJob { id, action } => {
            vec![act(tx, ctx, id, action, now)?]
        }
        JobOp::PruneJobs { finished_before } => prune(tx, finished_before)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim runs thousands of times a second: its statement must be
    /// prepared once, not on every execution (a bound `LIMIT ?` would make
    /// SQLite re-prepare it each time its value changes).
    #[test]
    fn o1_the_claim_statement_is_never_re_prepared() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate(&mut conn, None, true).unwrap();
        for limit in [1, 2, 4, 8, 3] {
            claim(
                &mut Tx::Sqlite(&conn),
                "w",
                &[],
                limit,
                Duration::from_secs(60),
                kontextual_model::now(),
            )
            .unwrap();
        }
        let stmt = conn.prepare_cached(&claim_sql(Dialect::Sqlite)).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// A worker's batch of successes runs the one-job statement per job on
    /// SQLite: prepared once, whatever the ids and attempts bound.
    #[test]
    fn o1_finishing_a_batch_never_re_prepares() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate(&mut conn, None, true).unwrap();
        let ctx = WriteContext {
            namespace: kontextual_model::Namespace::default(),
            actor: kontextual_model::Actor::system(),
            correlation_id: kontextual_model::CorrelationId::new(),
            run_id: None,
        };
        let now = kontextual_model::now();
        let tx = &mut Tx::Sqlite(&conn);
        let new = (0..6)
            .map(|i| {
                let job = NewJob {
                    id: JobId::new(),
                    kind: "test.quick".to_owned(),
                    payload: serde_json::json!({ "i": i }),
                    max_attempts: 3,
                    run_at: None,
                    unique_key: None,
                    key_id: None,
                    scopes: None,
                };
                (ctx.namespace.clone(), job)
            })
            .collect();
        enqueue_new_many(tx, &ctx, new, now).unwrap();
        let Change::JobsClaimed { jobs } =
            claim(tx, "w", &[], 6, Duration::from_secs(60), now).unwrap()
        else {
            panic!("a claim answers JobsClaimed");
        };
        assert_eq!(jobs.len(), 6);
        for batch in jobs.chunks(3) {
            let run: Vec<_> = batch
                .iter()
                .map(|j| (j.id, j.attempt, Some(serde_json::json!({ "ok": true }))))
                .collect();
            let changes = finish_succeeded(tx, &run, now).unwrap();
            assert_eq!(changes.len(), 3);
        }
        let stmt = conn.prepare_cached(FINISH_SUCCEEDED).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
        // a lost lease still fails the batch
        let again = [(jobs[0].id, jobs[0].attempt, None)];
        assert!(finish_succeeded(tx, &again, now).is_err());
    }
}

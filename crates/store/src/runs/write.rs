//! Run writes: start (audited as `run.start`), steps (bookkeeping) and
//! finish (audited with its final status).

use kontextual_model::{Change, JobId, Run, RunId, RunStatus, Timestamp};

use super::read;
use crate::port::WriteContext;
use crate::sql::{Tx, args};
use crate::{Result, StoreError};

/// Starts a run; when a job attempt runs it, the run points at the job and
/// the attempt at the run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_run(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: RunId,
    kind: String,
    input: serde_json::Value,
    owner: String,
    job: Option<(JobId, u32)>,
    now: Timestamp,
) -> Result<Change> {
    let run = Run {
        id,
        namespace: ctx.namespace.clone(),
        kind,
        status: RunStatus::Running,
        actor: ctx.actor.clone(),
        input,
        manifest: None,
        owner,
        started_at: now,
        finished_at: None,
        job_id: job.map(|(j, _)| j),
    };
    // A taken id fails the batch, so the failed statement needs no
    // savepoint on PostgreSQL.
    tx.execute(
        "INSERT INTO runs (id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, NULL, ?9)",
        args![
            run.id.0,
            run.namespace.as_str(),
            &run.kind,
            run.status.as_str(),
            run.actor.to_string(),
            run.input.to_string(),
            &run.owner,
            now,
            run.job_id.map(|j| j.0),
        ],
    )
    .map_err(|e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("run {id}"),
        },
        other => other,
    })?;
    if let Some((job, attempt)) = job {
        crate::jobs::write::link_run(tx, job, attempt, id)?;
    }
    Ok(Change::Run { run })
}

/// The run, which must still be running (`Conflict` once it finished).
fn running(tx: &mut Tx<'_>, ctx: &WriteContext, id: RunId) -> Result<Run> {
    let run = read::run_for_update(tx, &ctx.namespace, id)?
        .ok_or_else(|| StoreError::not_found(format!("run {id}")))?;
    if run.status.is_final() {
        return Err(StoreError::Conflict {
            what: format!("run {id}"),
            expected: 0,
            actual: format!("{} (the run is no longer running)", run.status),
        });
    }
    Ok(run)
}

/// Appends a step to a running run: bookkeeping, no change.
pub(crate) fn run_step(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: RunId,
    name: &str,
    status: RunStatus,
    detail: &serde_json::Value,
    now: Timestamp,
) -> Result<()> {
    running(tx, ctx, id)?;
    tx.execute(
        "INSERT INTO run_steps (run_id, seq, name, status, detail, at) \
         VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM run_steps WHERE run_id = ?1), ?2, ?3, ?4, ?5)",
        args![id.0, name, status.as_str(), detail.to_string(), now],
    )?;
    Ok(())
}

pub(crate) fn finish_run(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: RunId,
    status: RunStatus,
    manifest: serde_json::Value,
    now: Timestamp,
) -> Result<Change> {
    if !status.is_final() {
        return Err(StoreError::InvalidInput(
            "a run finishes in a final status".to_owned(),
        ));
    }
    let mut run = running(tx, ctx, id)?;
    run.status = status;
    run.manifest = Some(manifest);
    run.finished_at = Some(now);
    tx.execute(
        "UPDATE runs SET status = ?2, manifest = ?3, finished_at = ?4 WHERE id = ?1",
        args![
            id.0,
            status.as_str(),
            run.manifest.as_ref().map(|m| m.to_string()),
            now
        ],
    )?;
    Ok(Change::Run { run })
}

/// Applies one runs operation inside the engine's transaction and
/// returns the changes it made (`crate::apply` appends their audit records).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    op: crate::port::RunOp,
    now: Timestamp,
) -> Result<Vec<Change>> {
    use crate::port::RunOp;
    Ok(match op {
        RunOp::StartRun {
            id,
            kind,
            input,
            owner,
            job,
        } => vec![start_run(tx, ctx, id, kind, input, owner, job, now)?],
        RunOp::RunStep {
            id,
            name,
            status,
            detail,
        } => {
            run_step(tx, ctx, id, &name, status, &detail, now)?;
            Vec::new()
        }
        RunOp::FinishRun {
            id,
            status,
            manifest,
        } => vec![finish_run(tx, ctx, id, status, manifest, now)?],
    })
}

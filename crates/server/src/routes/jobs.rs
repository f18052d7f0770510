//! Jobs and recovery over HTTP (O1, O2): the same services as the CLI's
//! `job`, `rerun`, `reindex`, `repair` and `quarantine`; all admin-scoped.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontextual_app::{EnqueueOptions, JobAction};
use kontextual_model::{JobId, JobState, RunId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::dto::{self, wire};
use crate::extract::{Json, Path, Query, run};
use crate::problem::Problem;
use crate::request::Call;
use crate::routes::artifacts::{PageParams, page};

fn job_id(s: &str) -> Result<JobId, Problem> {
    s.parse()
        .map_err(|_| Problem::bad_request(format!("{s:?} is not a job id")))
}

pub(crate) fn enqueued(e: kontextual_app::Enqueued) -> Response {
    // 202: accepted for processing; 200 when a waiting job was returned instead
    let status = if e.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(wire::<dto::Enqueued, _>(e))).into_response()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobParams {
    #[param(inline, value_type = Option<crate::wire::JobState>)]
    pub state: Option<String>,
    #[param(inline, value_type = Option<crate::wire::JobKind>)]
    pub kind: Option<String>,
    /// Items per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobParams),
    responses((status = 200, description = "Jobs, newest first", body = dto::Page<dto::Job>, content_type = "application/json")))]
pub async fn list_jobs(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<JobParams>,
) -> Result<Response, Problem> {
    let state = p.state.as_deref().map(str::parse::<JobState>).transpose()?;
    let pg = page(&PageParams {
        limit: p.limit,
        after: p.after,
    })?;
    let kind = p.kind;
    let v = run(&s, call, false, move |svc, c| {
        svc.job_list(c, state, kind.as_deref(), &pg)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Page<dto::Job>, _>(v)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    #[schema(inline, value_type = crate::wire::JobKind)]
    pub kind: String,
    /// The kind's input (`{}` when omitted).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::extract::integral::opt_u32")]
    pub max_attempts: Option<u32>,
    /// Not before this instant (RFC 3339).
    #[schema(format = DateTime)]
    pub run_at: Option<String>,
    /// While a job with this key waits, enqueueing returns it.
    pub unique_key: Option<String>,
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = EnqueueBody,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe")),
    responses((status = 202, description = "Queued", body = dto::Enqueued, content_type = "application/json"),
        (status = 200, description = "A waiting job with the same unique key", body = dto::Enqueued, content_type = "application/json")))]
pub async fn enqueue_job(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<EnqueueBody>,
) -> Result<Response, Problem> {
    let run_at = b
        .run_at
        .as_deref()
        .map(|t| {
            t.parse::<kontextual_model::Timestamp>()
                .map_err(|e| Problem::bad_request(format!("run_at {t:?}: {e}")))
        })
        .transpose()?;
    if b.max_attempts.is_some_and(|n| !(1..=1000).contains(&n)) {
        return Err(Problem::bad_request("max_attempts must be 1-1000"));
    }
    let opts = EnqueueOptions {
        max_attempts: b.max_attempts,
        run_at,
        unique_key: b.unique_key,
    };
    let payload = b.payload.unwrap_or_else(|| serde_json::json!({}));
    let kind = b.kind;
    let e = run(&s, call, false, move |svc, c| {
        svc.job_enqueue(c, &kind, payload, opts)
    })
    .await?;
    Ok(enqueued(e))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, description = "The job, its attempts and runs", body = dto::JobView, content_type = "application/json")))]
pub async fn get_job(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let v = run(&s, call, false, move |svc, c| svc.job_show(c, id)).await?;
    Ok(axum::Json(wire::<dto::JobView, _>(v)).into_response())
}

#[utoipa::path(post, path = "/v1/jobs/{id}/{action}", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Job id"),
        ("action" = inline(crate::wire::JobAction), Path, description = "What to do")),
    responses((status = 200, description = "The job after the action; `changed` is false when it already was there", body = dto::JobTransition, content_type = "application/json")))]
pub async fn act_on_job(
    State(s): State<AppState>,
    call: Call,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let action = match action.as_str() {
        "retry" => JobAction::Retry,
        "cancel" => JobAction::Cancel,
        "quarantine" => JobAction::Quarantine,
        "release" => JobAction::Release,
        other => {
            return Err(Problem::not_found(format!(
                "no job action {other:?}: use retry, cancel, quarantine or release"
            )));
        }
    };
    let v = run(&s, call, false, move |svc, c| svc.job_act(c, id, action)).await?;
    Ok(axum::Json(wire::<dto::JobTransition, _>(v)).into_response())
}

#[utoipa::path(post, path = "/v1/runs/{id}/rerun", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Run id")),
    responses((status = 202, description = "A job that runs the run's input bundle again", body = dto::Enqueued, content_type = "application/json"),
        (status = 200, description = "The same job, still waiting", body = dto::Enqueued, content_type = "application/json")))]
pub async fn rerun(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id: RunId = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a run id")))?;
    let e = run(&s, call, false, move |svc, c| svc.rerun(c, id)).await?;
    Ok(enqueued(e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReindexBody {
    /// Only this collection; omitted: everything.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub collection: Option<String>,
}

#[utoipa::path(post, path = "/v1/reindex", tag = "jobs", request_body = ReindexBody,
    responses((status = 202, description = "A re-index job (one per scope while queued)", body = dto::Enqueued, content_type = "application/json"),
        (status = 200, description = "The re-index job of this scope already waiting", body = dto::Enqueued, content_type = "application/json")))]
pub async fn reindex(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<ReindexBody>,
) -> Result<Response, Problem> {
    let e = run(&s, call, false, move |svc, c| {
        svc.reindex_enqueue(c, b.collection.as_deref())
    })
    .await?;
    Ok(enqueued(e))
}

#[utoipa::path(post, path = "/v1/repair", tag = "jobs",
    responses((status = 202, description = "A repair job", body = dto::Enqueued, content_type = "application/json"),
        (status = 200, description = "The repair job already waiting", body = dto::Enqueued, content_type = "application/json")))]
pub async fn repair(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let e = run(&s, call, false, move |svc, c| {
        svc.job_enqueue(
            c,
            "repair",
            serde_json::json!({}),
            EnqueueOptions {
                unique_key: Some("repair".to_owned()),
                ..Default::default()
            },
        )
    })
    .await?;
    Ok(enqueued(e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineBody {
    /// Artifact id or `COLLECTION/NAME`.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub artifact: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/quarantines", tag = "jobs", request_body = QuarantineBody,
    responses((status = 201, description = "The quarantine", body = dto::Hold, content_type = "application/json")))]
pub async fn quarantine(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<QuarantineBody>,
) -> Result<Response, Problem> {
    let r: kontextual_model::ArtifactRef = b.artifact.parse()?;
    let q = run(&s, call, false, move |svc, c| {
        svc.artifact_quarantine(c, &r, &b.reason)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(wire::<dto::Hold, _>(q))).into_response())
}

#[utoipa::path(get, path = "/v1/quarantines", tag = "jobs",
    responses((status = 200, description = "Quarantined artifacts", body = dto::List<dto::Hold>, content_type = "application/json")))]
pub async fn list_quarantines(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let v = run(&s, call, false, |svc, c| svc.quarantine_list(c)).await?;
    Ok(axum::Json(wire::<dto::List<dto::Hold>, _>(v)).into_response())
}

#[utoipa::path(delete, path = "/v1/quarantines/{artifact}", tag = "jobs",
    params(("artifact" = String, Path, pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$", description = "Artifact id or COLLECTION/NAME (URL-encoded)")),
    responses((status = 200, description = "The released quarantine", body = dto::Hold, content_type = "application/json")))]
pub async fn release_quarantine(
    State(s): State<AppState>,
    call: Call,
    Path(artifact): Path<String>,
) -> Result<Response, Problem> {
    let r: kontextual_model::ArtifactRef = artifact.parse()?;
    let q = run(&s, call, false, move |svc, c| svc.artifact_release(c, &r)).await?;
    Ok(axum::Json(wire::<dto::Hold, _>(q)).into_response())
}

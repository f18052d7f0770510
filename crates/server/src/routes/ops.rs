//! Health, readiness, runs, the audit log and the search index.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontextual_app::{AuditFilter, ErrorKind};
use kontextual_model::{ChainHead, RunId};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::dto::{self, wire};
use crate::extract::{Path, Query, run};
use crate::problem::{Problem, ProblemBody};
use crate::request::Call;
use crate::routes::artifacts::page;

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = dto::Status, content_type = "application/json")))]
pub async fn healthz() -> Response {
    axum::Json(dto::Status { status: "ok" }).into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Store and index reachable", body = dto::Status, content_type = "application/json"),
        (status = 503, description = "Not ready", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn readyz(State(s): State<AppState>) -> Result<Response, Problem> {
    // Probes carry no key: readiness reveals nothing but up or down.
    let svc = s.services.clone();
    match tokio::task::spawn_blocking(move || svc.ready()).await {
        Ok(Ok(())) => Ok(axum::Json(dto::Status { status: "ready" }).into_response()),
        Ok(Err(e)) => {
            if !kontextual_app::store_unavailable(&e, "readiness probe") {
                tracing::warn!(error = %e, "not ready");
            }
            Err(Problem::of(
                ErrorKind::Unavailable,
                "the store or the search index is not reachable",
            ))
        }
        Err(_) => Err(Problem::of(
            ErrorKind::Unavailable,
            "readiness check failed",
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    #[param(inline, value_type = Option<crate::wire::RunStatus>)]
    pub status: Option<String>,
    /// Items per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunParams),
    responses((status = 200, description = "Runs, newest first", body = dto::Page<dto::Run>, content_type = "application/json")))]
pub async fn list_runs(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<RunParams>,
) -> Result<Response, Problem> {
    let status = p.status.as_deref().map(str::parse).transpose()?;
    let page = page(&crate::routes::artifacts::PageParams {
        limit: p.limit,
        after: p.after,
    })?;
    let v = run(&s, call, false, move |svc, c| {
        svc.run_list(c, status, &page)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Page<dto::Run>, _>(v)).into_response())
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, format = Uuid, description = "Run id")),
    responses((status = 200, description = "The run and its steps", body = dto::RunWithSteps, content_type = "application/json")))]
pub async fn get_run(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id: RunId = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a run id")))?;
    let shown = run(&s, call, false, move |svc, c| svc.run_show(c, id)).await?;
    // through a JSON value, as before the wire type: the keys stay in the
    // order clients have seen
    let body = serde_json::to_value(dto::RunWithSteps::from(shown)).unwrap_or_default();
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Actor `KIND:NAME`.
    pub by: Option<String>,
    /// An action (`artifact.update`) or family (`artifact`).
    pub action: Option<String>,
    /// A target id or name.
    pub target: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Only records of one request (its correlation id).
    pub correlation_id: Option<String>,
    /// Records after this sequence number.
    pub after: Option<u64>,
    /// 1–10000, default 100.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, description = "Audit records in sequence order", body = dto::List<dto::AuditRecord>, content_type = "application/json")))]
pub async fn list_audit(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<AuditParams>,
) -> Result<Response, Problem> {
    let ts =
        |v: &Option<String>, what: &str| -> Result<Option<kontextual_model::Timestamp>, Problem> {
            v.as_deref()
                .map(|t| {
                    t.parse().map_err(|_| {
                        Problem::bad_request(format!("{what} {t:?}: expected an RFC 3339 time"))
                    })
                })
                .transpose()
        };
    let limit = p.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} is out of range: use 1 to 10000"
        )));
    }
    let filter = AuditFilter {
        actor: p.by,
        action: p.action,
        target: p.target,
        since: ts(&p.since, "since")?,
        until: ts(&p.until, "until")?,
        correlation_id: p.correlation_id,
    };
    let after = p.after.unwrap_or(0);
    let v = run(&s, call, false, move |svc, c| {
        svc.audit_list(c, &filter, after, limit)
    })
    .await?;
    Ok(axum::Json(wire::<dto::List<dto::AuditRecord>, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// A head recorded earlier, `SEQ:HASH`.
    #[param(pattern = r"^[1-9][0-9]{0,18}:[0-9a-fA-F]{64}$")]
    pub expect_head: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", params(VerifyParams),
    responses((status = 200, description = "The chain verified; the body has its head", body = dto::AuditVerification, content_type = "application/json"),
        (status = 409, description = "The chain does not verify; the body says where", body = dto::AuditVerification, content_type = "application/json")))]
pub async fn verify_audit(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<VerifyParams>,
) -> Result<Response, Problem> {
    let head: Option<ChainHead> = p.expect_head.as_deref().map(str::parse).transpose()?;
    let v = run(&s, call, false, move |svc, c| svc.audit_verify(c, head)).await?;
    let verified = dto::AuditVerification::from(v);
    let valid = verified.valid;
    // through a JSON value, as before the wire type: the keys stay in the
    // order clients have seen
    let body = serde_json::to_value(&verified).unwrap_or_default();
    let status = if valid {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, axum::Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/index", tag = "operations",
    responses((status = 200, description = "Index health: documents vs store, lag, last commit, size", body = dto::IndexStatus, content_type = "application/json")))]
pub async fn index_status(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let v = run(&s, call, false, |svc, c| svc.index_status(c)).await?;
    Ok(axum::Json(wire::<dto::IndexStatus, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessParams {
    /// Only reads by this actor (`KIND:NAME`).
    #[param(pattern = r"^(user|agent|application|service):[A-Za-z0-9._@-]{1,128}$")]
    pub by: Option<String>,
    /// Only reads at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Entries after this sequence number.
    pub after: Option<u64>,
    /// Entries per page: 1–10000, default 100 (a larger or smaller value is clamped).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/access", tag = "audit", params(AccessParams),
    responses((status = 200, description = "Who read what, oldest first", body = dto::List<dto::AccessEntry>, content_type = "application/json")))]
pub async fn access_log(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<AccessParams>,
) -> Result<Response, Problem> {
    let by: Option<kontextual_model::Actor> = p.by.as_deref().map(str::parse).transpose()?;
    let since = p
        .since
        .as_deref()
        .map(|t| {
            t.parse::<kontextual_model::Timestamp>().map_err(|_| {
                Problem::bad_request(format!("since {t:?}: expected an RFC 3339 time"))
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(100).clamp(1, 10_000);
    let after = p.after.unwrap_or(0);
    let v = run(&s, call, false, move |svc, c| {
        svc.access_list(c, by.as_ref(), since, after, limit)
    })
    .await?;
    Ok(axum::Json(wire::<dto::List<dto::AccessEntry>, _>(v)).into_response())
}

//! Webhooks (O5, admin): subscriptions, their deliveries, resend and
//! recover (docs/webhooks.md). Thin handlers over the webhooks service, so
//! policy and audit are the same as from the CLI.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontextual_app::{DeliveryQuery, NewWebhook, WebhookChange};
use kontextual_model::{DeliveryId, DeliveryState, Timestamp, WebhookId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::dto;
use crate::extract::{Json, Path, Query, run};
use crate::problem::{Problem, ProblemBody};
use crate::request::Call;
use crate::routes::artifacts::{PageParams, page};

fn webhook_id(s: &str) -> Result<WebhookId, Problem> {
    s.trim()
        .parse()
        .map_err(|_| Problem::bad_request(format!("{s:?} is not a webhook id")))
}

fn delivery_id(s: &str) -> Result<DeliveryId, Problem> {
    s.trim()
        .parse()
        .map_err(|_| Problem::bad_request(format!("{s:?} is not a delivery id")))
}

fn with_secret(status: StatusCode, w: kontextual_app::WebhookWithSecret) -> Response {
    let mut r = (status, axum::Json(dto::WebhookWithSecret::from(w))).into_response();
    // the secret is shown once: an Idempotency-Key replay answers without it
    r.extensions_mut()
        .insert(crate::idempotency::SecretFields(&["secret"]));
    r
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// `https://…` (or `http://` to an address the operator allowed).
    /// Private, loopback and link-local addresses are refused unless
    /// `[webhooks] allow` lists them.
    #[schema(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$", max_length = 2048)]
    pub url: String,
    /// Event type patterns; absent: every type. An empty list is refused
    /// (a client that built no patterns would otherwise get every event);
    /// `["*"]` asks for every type.
    #[serde(default)]
    #[schema(inline, value_type = Option<Vec<String>>, min_items = 1, pattern = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")]
    pub types: Option<Vec<String>>,
    /// Only events about these collections; absent or empty: every one.
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub collections: Vec<String>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again (without the secret)")),
    request_body = NewWebhookBody,
    responses((status = 201, description = "The webhook and its signing secret (shown once)", body = dto::WebhookWithSecret, content_type = "application/json"),
        (status = 400, description = "The URL, a type pattern or a collection is refused; the detail says why", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin scope", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn create_webhook(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<NewWebhookBody>,
) -> Result<Response, Problem> {
    let types = match b.types {
        Some(t) if t.is_empty() => {
            return Err(Problem::bad_request(
                "types is empty: give at least one event type pattern (`*` for every type), or leave types out",
            ));
        }
        t => t.unwrap_or_default(),
    };
    let new = NewWebhook {
        url: b.url,
        types,
        collections: b.collections,
        description: b.description,
    };
    let w = run(&s, call, false, move |svc, c| svc.webhooks().create(c, new)).await?;
    Ok(with_secret(StatusCode::CREATED, w))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageParams),
    responses((status = 200, description = "Webhooks of the namespace, oldest first (never their secrets)", body = dto::Page<dto::Webhook>, content_type = "application/json")))]
pub async fn list_webhooks(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<PageParams>,
) -> Result<Response, Problem> {
    let page = page(&p)?;
    let v = run(&s, call, false, move |svc, c| svc.webhooks().list(c, &page)).await?;
    Ok(axum::Json(dto::Page::<dto::Webhook>::from(v)).into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id")),
    responses((status = 200, description = "The webhook and its deliveries counted by state", body = dto::WebhookDetail, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_webhook(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let v = run(&s, call, false, move |svc, c| svc.webhooks().get(c, id)).await?;
    Ok(axum::Json(dto::WebhookDetail::from(v)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$", max_length = 2048)]
    pub url: Option<String>,
    /// Replaces the type patterns; an empty list is refused (`["*"]` for
    /// every type).
    #[schema(inline, value_type = Option<Vec<String>>, pattern = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")]
    pub types: Option<Vec<String>>,
    /// Replaces the collections; empty: every collection.
    #[schema(inline, value_type = Option<Vec<String>>, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub collections: Option<Vec<String>>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id")),
    request_body = WebhookPatch,
    responses((status = 200, description = "The webhook after the change (absent fields are kept)", body = dto::Webhook, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn update_webhook(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Json(b): Json<WebhookPatch>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let change = WebhookChange {
        url: b.url,
        types: b.types,
        collections: b.collections,
        description: b.description,
    };
    let v = run(&s, call, false, move |svc, c| {
        svc.webhooks().update(c, id, change)
    })
    .await?;
    Ok(axum::Json(dto::Webhook::from(v)).into_response())
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id")),
    responses((status = 200, description = "Deleted; deliveries still waiting were cancelled", body = dto::WebhookDeleted, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let n = run(&s, call, false, move |svc, c| svc.webhooks().delete(c, id)).await?;
    Ok(axum::Json(dto::WebhookDeleted {
        id,
        cancelled_deliveries: n,
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id")),
    responses((status = 200, description = "The webhook, enabled (its failure streak cleared)", body = dto::Webhook, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn enable_webhook(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.webhooks().set_enabled(c, id, true, None)
    })
    .await?;
    Ok(axum::Json(dto::Webhook::from(v)).into_response())
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    /// Why (shown by `GET /v1/webhooks/{id}`).
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/disable", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id")),
    request_body(content = Option<DisableBody>, description = "Optional: why", content_type = "application/json"),
    responses((status = 200, description = "The webhook, disabled: events are no longer delivered to it", body = dto::Webhook, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn disable_webhook(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    // the body is optional: none, `null`, or `{"reason": …}`
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<DisableBody>>(&body)
            .map_err(|e| Problem::bad_request(format!("the body: {e}")))?
            .and_then(|b| b.reason)
    };
    let v = run(&s, call, false, move |svc, c| {
        svc.webhooks().set_enabled(c, id, false, reason)
    })
    .await?;
    Ok(axum::Json(dto::Webhook::from(v)).into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe (the replay answers without the secret)")),
    responses((status = 200, description = "The new secret (shown once); the previous one keeps signing until `previous_secret_expires_at`", body = dto::WebhookWithSecret, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let w = run(&s, call, false, move |svc, c| {
        svc.webhooks().rotate_secret(c, id)
    })
    .await?;
    Ok(with_secret(StatusCode::OK, w))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Comma-separated states (pending, delivering, succeeded, failed,
    /// dead, cancelled); absent: every state.
    #[param(
        pattern = r"^(pending|delivering|succeeded|failed|dead|cancelled)(,(pending|delivering|succeeded|failed|dead|cancelled))*$"
    )]
    pub state: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Items per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

fn time(what: &str, t: &str) -> Result<Timestamp, Problem> {
    t.parse()
        .map_err(|_| Problem::bad_request(format!("{what} {t:?}: expected an RFC 3339 time")))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id"), DeliveryParams),
    responses((status = 200, description = "The webhook's deliveries, newest event first", body = dto::Page<dto::Delivery>, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Query(p): Query<DeliveryParams>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let states = p
        .state
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<DeliveryState>().map_err(|_| {
                Problem::bad_request(format!(
                    "state {s:?}: use pending, delivering, succeeded, failed, dead or cancelled"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = DeliveryQuery {
        states,
        since: p.since.as_deref().map(|t| time("since", t)).transpose()?,
    };
    let page = page(&PageParams {
        limit: p.limit,
        after: p.after,
    })?;
    let v = run(&s, call, false, move |svc, c| {
        svc.webhooks().deliveries(c, id, &query, &page)
    })
    .await?;
    Ok(axum::Json(dto::Page::<dto::Delivery>::from(v)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    /// Resend every failed or dead delivery created at or after this time.
    #[schema(format = DateTime)]
    pub since: String,
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/recover", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Webhook id")),
    request_body = RecoverBody,
    responses((status = 202, description = "A job that resends the failed and dead deliveries since the time", body = dto::Enqueued, content_type = "application/json"),
        (status = 200, description = "The same recovery, still waiting", body = dto::Enqueued, content_type = "application/json"),
        (status = 404, description = "No such webhook", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn recover(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Json(b): Json<RecoverBody>,
) -> Result<Response, Problem> {
    let id = webhook_id(&id)?;
    let since = time("since", &b.since)?;
    let e = run(&s, call, false, move |svc, c| {
        svc.webhook_recover(c, id, since)
    })
    .await?;
    Ok(crate::routes::jobs::enqueued(e))
}

#[utoipa::path(get, path = "/v1/webhook-deliveries/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Delivery id (the `webhook-id` header the receiver saw)")),
    responses((status = 200, description = "The delivery, the body it sends and every attempt", body = dto::DeliveryDetail, content_type = "application/json"),
        (status = 404, description = "No such delivery", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_delivery(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = delivery_id(&id)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.webhooks().delivery(c, id)
    })
    .await?;
    Ok(axum::Json(dto::DeliveryDetail::from(v)).into_response())
}

#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/resend", tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "Delivery id")),
    responses((status = 202, description = "Queued again: a fresh run of the retry schedule, the same `webhook-id`", body = dto::Delivery, content_type = "application/json"),
        (status = 400, description = "The delivery is still on its way", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn resend(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = delivery_id(&id)?;
    let v = run(&s, call, false, move |svc, c| svc.webhooks().resend(c, id)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(dto::Delivery::from(v))).into_response())
}

//! API keys (admin): create (the token is in this answer only), list, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontextual_model::{Actor, Scope};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::dto::{self, wire};
use crate::extract::{Json, Path, Query, run};
use crate::problem::{Problem, ProblemBody};
use crate::request::Call;
use crate::routes::artifacts::{PageParams, page};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Printable characters, 1–128 bytes (surrounding spaces are dropped).
    #[schema(
        pattern = r"^\s*[^\x00-\x1f\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]{0,126}[^\x00-\x1f\x7f-\x9f\s])?\s*$"
    )]
    pub name: String,
    /// `KIND:NAME`, kind one of user, agent, application, service.
    #[schema(pattern = r"^(user|agent|application|service):[A-Za-z0-9._@-]{1,128}$")]
    pub actor: String,
    #[schema(inline, value_type = Vec<crate::wire::Scope>, min_items = 1)]
    pub scopes: Vec<String>,
    /// RFC 3339 expiry.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again")), request_body = NewKey,
    responses((status = 201, description = "The key and its token (shown once)", body = dto::NewKey, content_type = "application/json"),
        (status = 403, description = "Needs the admin scope", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn create_key(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<NewKey>,
) -> Result<Response, Problem> {
    let actor: Actor = b.actor.parse()?;
    let scopes = b
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()?;
    let expires = b
        .expires_at
        .as_deref()
        .map(|t| {
            t.parse::<kontextual_model::Timestamp>().map_err(|_| {
                Problem::bad_request(format!("expires_at {t:?}: expected an RFC 3339 time"))
            })
        })
        .transpose()?;
    let k = run(&s, call, false, move |svc, c| {
        svc.key_create(c, &b.name, actor, scopes, expires)
    })
    .await?;
    let mut r = (StatusCode::CREATED, axum::Json(wire::<dto::NewKey, _>(k))).into_response();
    // the token is shown once: an Idempotency-Key replay answers without it
    r.extensions_mut()
        .insert(crate::idempotency::SecretFields(&["token"]));
    Ok(r)
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(PageParams),
    responses((status = 200, description = "Keys of the namespace (never their secrets)", body = dto::Page<dto::ApiKey>, content_type = "application/json")))]
pub async fn list_keys(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<PageParams>,
) -> Result<Response, Problem> {
    let page = page(&p)?;
    let v = run(&s, call, false, move |svc, c| svc.key_list(c, &page)).await?;
    Ok(axum::Json(wire::<dto::Page<dto::ApiKey>, _>(v)).into_response())
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Public key id")),
    responses((status = 200, description = "The revoked key", body = dto::ApiKey, content_type = "application/json")))]
pub async fn revoke_key(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let v = run(&s, call, false, move |svc, c| svc.key_revoke(c, &id)).await?;
    Ok(axum::Json(wire::<dto::ApiKey, _>(v)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// `KIND:NAME`.
    #[schema(pattern = r"^(user|agent|application|service):[A-Za-z0-9._@-]{1,128}$")]
    pub actor: String,
    #[schema(inline, value_type = crate::wire::Scope)]
    pub permission: String,
    /// A collection; absent (with `artifact`) for the whole namespace.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub collection: Option<String>,
    /// One artifact, `COLLECTION/NAME` (not with `collection`; not an id:
    /// a grant follows the name).
    #[schema(
        pattern = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub artifact: Option<String>,
}

fn grant_on(b: &GrantBody) -> Result<kontextual_app::GrantOn<'_>, Problem> {
    Ok(match (&b.collection, &b.artifact) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "give a collection or an artifact, not both",
            ));
        }
        (Some(c), None) => kontextual_app::GrantOn::Collection(c),
        (None, Some(a)) => kontextual_app::GrantOn::Artifact(a),
        (None, None) => kontextual_app::GrantOn::Namespace,
    })
}

fn parse_grant(b: &GrantBody) -> Result<(Actor, kontextual_model::GrantPermission), Problem> {
    Ok((b.actor.parse()?, b.permission.parse()?))
}

#[utoipa::path(post, path = "/v1/grants", tag = "keys",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again")), request_body = GrantBody,
    responses((status = 201, description = "The grant", body = dto::Grant, content_type = "application/json")))]
pub async fn create_grant(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<GrantBody>,
) -> Result<Response, Problem> {
    let (actor, permission) = parse_grant(&b)?;
    grant_on(&b)?;
    let g = run(&s, call, false, move |svc, c| {
        let on = grant_on(&b).map_err(|p| kontextual_app::Error::InvalidInput(p.detail))?;
        svc.grant(c, actor, permission, on)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(wire::<dto::Grant, _>(g))).into_response())
}

#[utoipa::path(get, path = "/v1/grants", tag = "keys",
    responses((status = 200, description = "Grants of the namespace", body = dto::List<dto::Grant>, content_type = "application/json")))]
pub async fn list_grants(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let v = run(&s, call, false, |svc, c| svc.grant_list(c, None)).await?;
    Ok(axum::Json(wire::<dto::List<dto::Grant>, _>(v)).into_response())
}

#[utoipa::path(delete, path = "/v1/grants", tag = "keys", request_body = GrantBody,
    responses((status = 200, description = "The grant taken back", body = dto::Grant, content_type = "application/json")))]
pub async fn delete_grant(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<GrantBody>,
) -> Result<Response, Problem> {
    let (actor, permission) = parse_grant(&b)?;
    grant_on(&b)?;
    let g = run(&s, call, false, move |svc, c| {
        let on = grant_on(&b).map_err(|p| kontextual_app::Error::InvalidInput(p.detail))?;
        svc.revoke_grant(c, actor, permission, on)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Grant, _>(g)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Artifact id or `COLLECTION/NAME`.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub artifact: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/holds", tag = "keys",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again")), request_body = HoldBody,
    responses((status = 201, description = "The hold", body = dto::Hold, content_type = "application/json")))]
pub async fn set_hold(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<HoldBody>,
) -> Result<Response, Problem> {
    let r: kontextual_model::ArtifactRef = b.artifact.parse()?;
    let h = run(&s, call, false, move |svc, c| {
        svc.hold_set(c, &r, &b.reason)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(wire::<dto::Hold, _>(h))).into_response())
}

#[utoipa::path(get, path = "/v1/holds", tag = "keys",
    responses((status = 200, description = "Active legal holds", body = dto::List<dto::Hold>, content_type = "application/json")))]
pub async fn list_holds(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let v = run(&s, call, false, |svc, c| svc.hold_list(c)).await?;
    Ok(axum::Json(wire::<dto::List<dto::Hold>, _>(v)).into_response())
}

#[utoipa::path(delete, path = "/v1/holds/{artifact}", tag = "keys",
    params(("artifact" = String, Path, pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$", description = "Artifact id or COLLECTION/NAME (URL-encoded)")),
    responses((status = 200, description = "The released hold", body = dto::Hold, content_type = "application/json")))]
pub async fn release_hold(
    State(s): State<AppState>,
    call: Call,
    Path(artifact): Path<String>,
) -> Result<Response, Problem> {
    // the same forms as every other `{artifact}`: an id or COLLECTION/NAME
    let r: kontextual_model::ArtifactRef = artifact.parse()?;
    let v = run(&s, call, false, move |svc, c| svc.hold_release(c, &r)).await?;
    Ok(axum::Json(wire::<dto::Hold, _>(v)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearanceBody {
    /// `KIND:NAME`.
    #[schema(pattern = r"^(user|agent|application|service):[A-Za-z0-9._@-]{1,128}$")]
    pub actor: String,
    #[schema(inline, value_type = crate::wire::Classification)]
    pub level: String,
}

#[utoipa::path(put, path = "/v1/clearances", tag = "keys", request_body = ClearanceBody,
    responses((status = 200, description = "The actor's clearance", body = dto::Clearance, content_type = "application/json")))]
pub async fn set_clearance(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<ClearanceBody>,
) -> Result<Response, Problem> {
    let actor: Actor = b.actor.parse()?;
    let level: kontextual_model::Classification = b.level.parse()?;
    let v = run(&s, call, false, move |svc, c| {
        svc.clearance_set(c, actor, level)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Clearance, _>(v)).into_response())
}

#[utoipa::path(get, path = "/v1/clearances", tag = "keys",
    responses((status = 200, description = "Clearances set in the namespace", body = dto::List<dto::Clearance>, content_type = "application/json")))]
pub async fn list_clearances(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let v = run(&s, call, false, |svc, c| svc.clearance_list(c)).await?;
    Ok(axum::Json(wire::<dto::List<dto::Clearance>, _>(v)).into_response())
}

//! Collections, artifacts (by id, or by `COLLECTION/NAME` reference), their
//! revisions, content, sections and relationships.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kontextual_app::store_types::{ArtifactQuery, Cursor, PageRequest};
use kontextual_app::{ContentSource, PutRequest};
use kontextual_model::{ArtifactId, ArtifactRef, Metadata, RelationId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::dto::{self, wire};
use crate::extract::{Json, Path, Query, run};
use crate::problem::{Problem, ProblemBody};
use crate::request::Call;
use crate::upload::BodyReader;

/// Largest page any listing returns.
pub const MAX_PAGE: u32 = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

pub(crate) fn page(p: &PageParams) -> Result<PageRequest, Problem> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} is out of range: use 1 to {MAX_PAGE}"
        )));
    }
    Ok(PageRequest {
        after: p.after.clone().map(Cursor),
        limit,
    })
}

fn artifact_id(s: &str) -> Result<ArtifactId, Problem> {
    s.parse()
        .map_err(|_| Problem::bad_request(format!("{s:?} is not an artifact id")))
}

/// The artifact's revision as a strong ETag.
fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `If-Match: "N"` → expect revision N; `*` or absent → no expectation.
fn if_match(h: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(v) = h.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    s.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| {
            Problem::bad_request(format!(
                "If-Match {s:?}: expected the ETag of a revision, e.g. \"3\""
            ))
        })
}

fn with_etag(status: StatusCode, revision: u64, body: impl serde::Serialize) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(header::ETAG, etag(revision));
    r
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[utoipa::path(post, path = "/v1/collections", tag = "collections",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again")),
    request_body = NewCollection,
    responses((status = 201, description = "Created", body = dto::Collection, content_type = "application/json"),
        (status = 409, description = "Name taken", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn create_collection(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<NewCollection>,
) -> Result<Response, Problem> {
    let c = run(&s, call, false, move |svc, c| {
        svc.collection_create(c, &b.name, &b.description)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(wire::<dto::Collection, _>(c)),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/collections", tag = "collections", params(PageParams),
    responses((status = 200, description = "A page of collections", body = dto::Page<dto::Collection>, content_type = "application/json")))]
pub async fn list_collections(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<PageParams>,
) -> Result<Response, Problem> {
    let page = page(&p)?;
    let v = run(&s, call, false, move |svc, c| svc.collection_list(c, &page)).await?;
    Ok(axum::Json(wire::<dto::Page<dto::Collection>, _>(v)).into_response())
}

#[utoipa::path(get, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "Collection name")),
    responses((status = 200, description = "The collection", body = dto::Collection, content_type = "application/json"),
        (status = 404, description = "No such collection", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_collection(
    State(s): State<AppState>,
    call: Call,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let v = run(&s, call, false, move |svc, c| svc.collection_show(c, &name)).await?;
    Ok(axum::Json(wire::<dto::Collection, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub collection: Option<String>,
    /// Only artifacts whose current content has this digest (`sha256:HEX`).
    #[param(pattern = r"^sha256:[0-9a-f]{64}$")]
    pub digest: Option<String>,
    /// Include deleted and purged artifacts.
    #[serde(default)]
    pub include_deleted: bool,
    /// Items per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/artifacts", tag = "artifacts", params(ListParams),
    responses((status = 200, description = "A page of artifacts", body = dto::Page<dto::Artifact>, content_type = "application/json")))]
pub async fn list_artifacts(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<ListParams>,
) -> Result<Response, Problem> {
    let page = page(&PageParams {
        limit: p.limit,
        after: p.after.clone(),
    })?;
    let q = ArtifactQuery {
        collection: p.collection.as_deref().map(str::parse).transpose()?,
        digest: p.digest.as_deref().map(str::parse).transpose()?,
        include_deleted: p.include_deleted,
        ..ArtifactQuery::default()
    };
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_list(c, &q, &page)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Page<dto::Artifact>, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefParams {
    /// `COLLECTION/NAME` (or an id), with `#` and `%` in names escaped as `%23` and `%25`.
    #[serde(rename = "ref")]
    #[param(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub reference: String,
}

#[utoipa::path(get, path = "/v1/artifacts/by-ref", tag = "artifacts", params(RefParams),
    responses((status = 200, description = "The artifact (ETag: its revision)", body = dto::Artifact, content_type = "application/json"),
        (status = 404, description = "No such artifact", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_by_ref(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<RefParams>,
) -> Result<Response, Problem> {
    let r: ArtifactRef = p.reference.parse()?;
    if r.section().is_some() {
        return Err(Problem::bad_request(
            "a section is read with GET /v1/artifacts/{id}/sections/{selector}",
        ));
    }
    let a = run(&s, call, false, move |svc, c| svc.artifact_show(c, &r)).await?;
    Ok(with_etag(
        StatusCode::OK,
        a.revision,
        wire::<dto::Artifact, _>(a),
    ))
}

#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id")),
    responses((status = 200, description = "The artifact (ETag: its revision)", body = dto::Artifact, content_type = "application/json"),
        (status = 404, description = "No such artifact", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_artifact(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let a = run(&s, call, false, move |svc, c| {
        svc.artifact_show(c, &ArtifactRef::Id(id))
    })
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        a.revision,
        wire::<dto::Artifact, _>(a),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutParams {
    /// `COLLECTION/NAME` to create or update (or the id of one to update).
    #[serde(rename = "ref")]
    #[param(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub reference: String,
    /// Artifact type (`markdown`, `text`, …) [default: detected].
    #[serde(rename = "type")]
    #[param(pattern = r"^[a-z][a-z0-9._-]{0,63}$")]
    pub artifact_type: Option<String>,
    #[param(inline, value_type = Option<crate::wire::Lifecycle>)]
    pub lifecycle: Option<String>,
    #[param(inline, value_type = Option<crate::wire::Classification>)]
    pub classification: Option<String>,
    pub source_system: Option<String>,
    /// Metadata as a JSON object (replaces the whole object).
    pub metadata: Option<String>,
}

#[utoipa::path(put, path = "/v1/artifacts", tag = "artifacts", params(PutParams,
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"?[0-9]{1,19}"?)$"#, description = "Update only if the current revision has this ETag"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only")),
    request_body(content = String, content_type = "application/octet-stream", description = "The content; its Content-Type is the media type unless detected"),
    responses((status = 201, description = "Created (ETag: revision)", body = dto::PutOutcome, content_type = "application/json"),
        (status = 200, description = "Updated or unchanged (ETag: revision)", body = dto::PutOutcome, content_type = "application/json"),
        (status = 412, description = "If-Match is stale", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn put_artifact(
    State(s): State<AppState>,
    call: Call,
    headers: HeaderMap,
    Query(p): Query<PutParams>,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let target: ArtifactRef = p.reference.parse()?;
    // Large bodies wait for a slot, then stream to the store's spool.
    let _slot = s.uploads.admit(&headers).await;
    let (reader, _reading, cut) = BodyReader::new(body, s.uploads.max_body);
    let mut req = PutRequest::new(target, ContentSource::Reader(Box::new(reader)));
    req.size_hint = crate::upload::declared_length(&headers);
    req.artifact_type = p.artifact_type;
    req.lifecycle = p.lifecycle.as_deref().map(str::parse).transpose()?;
    req.classification = p.classification.as_deref().map(str::parse).transpose()?;
    req.source_system = p.source_system;
    req.metadata = p.metadata.as_deref().map(Metadata::parse).transpose()?;
    req.expect_revision = if_match(&headers)?;
    let precondition = req.expect_revision.is_some();
    req.create_only = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let out = run(&s, call, precondition, move |svc, c| {
        svc.artifact_put(c, req)
    })
    .await
    .map_err(|p| {
        // a body cut short is the client's problem, whatever the store said
        match cut.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(cut) => {
                let mut answer = cut.problem();
                answer.correlation_id = p.correlation_id;
                answer
            }
            None => p,
        }
    })?;
    let status = match out.change {
        Some(kontextual_model::ChangeKind::Created) => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok(with_etag(
        status,
        out.artifact.revision,
        wire::<dto::PutOutcome, _>(out),
    ))
}

#[utoipa::path(delete, path = "/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"?[0-9]{1,19}"?)$"#, description = "Delete only if the current revision has this ETag")),
    responses((status = 200, description = "The tombstone revision", body = dto::Artifact, content_type = "application/json"),
        (status = 412, description = "If-Match is stale", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn delete_artifact(
    State(s): State<AppState>,
    call: Call,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let expect = if_match(&headers)?;
    let a = run(&s, call, expect.is_some(), move |svc, c| {
        svc.artifact_delete(c, &ArtifactRef::Id(id), expect)
    })
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        a.revision,
        wire::<dto::Artifact, _>(a),
    ))
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/content", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"),
        ("revision" = Option<u64>, Query, description = "A past revision")),
    responses((status = 200, description = "The raw bytes, with the artifact's media type", body = String, content_type = "*/*")))]
pub async fn get_content(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Query(q): Query<RevisionParam>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let (rev, bytes) = run(&s, call, false, move |svc, c| {
        svc.artifact_bytes(c, &ArtifactRef::Id(id), q.revision)
    })
    .await?;
    let media = rev.media_type;
    let mut r = bytes.into_response();
    if let Ok(v) = HeaderValue::from_str(&media) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(r)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevisionParam {
    pub revision: Option<u64>,
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/revisions", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"), PageParams),
    responses((status = 200, description = "Change records, oldest first", body = dto::Page<dto::Revision>, content_type = "application/json")))]
pub async fn list_revisions(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let page = page(&p)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_history(c, &ArtifactRef::Id(id), &page)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Page<dto::Revision>, _>(v)).into_response())
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/revisions/{revision}", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"), ("revision" = u64, Path, description = "Revision number")),
    responses((status = 200, description = "One revision", body = dto::Revision, content_type = "application/json")))]
pub async fn get_revision(
    State(s): State<AppState>,
    call: Call,
    Path((id, revision)): Path<(String, u64)>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_revision(c, &ArtifactRef::Id(id), revision)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Revision, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffParams {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/diff", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"), DiffParams),
    responses((status = 200, description = "Attribute and content differences", body = dto::Diff, content_type = "application/json")))]
pub async fn diff(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Query(p): Query<DiffParams>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_diff(c, &ArtifactRef::Id(id), p.from, p.to)
    })
    .await?;
    Ok(axum::Json(wire::<dto::Diff, _>(v)).into_response())
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/sections", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"), RevisionParam),
    responses((status = 200, description = "Selectors, headings and byte ranges", body = dto::List<dto::SectionEntry>, content_type = "application/json")))]
pub async fn list_sections(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Query(q): Query<RevisionParam>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_sections(c, &ArtifactRef::Id(id), q.revision)
    })
    .await?;
    Ok(axum::Json(wire::<dto::List<dto::SectionEntry>, _>(v)).into_response())
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/sections/{selector}", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"),
        ("selector" = String, Path, description = "Heading path, `/` encoded as %2F (or a unique last part)"),
        RevisionParam),
    responses((status = 200, description = "The section: text, byte range, digest", body = dto::SectionView, content_type = "application/json"),
        (status = 404, description = "No such section", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_section(
    State(s): State<AppState>,
    call: Call,
    Path((id, selector)): Path<(String, String)>,
    Query(q): Query<RevisionParam>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_section(c, &ArtifactRef::Id(id), &selector, q.revision)
    })
    .await?;
    Ok(axum::Json(wire::<dto::SectionView, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RelatedParams {
    /// Relation types to follow, comma-separated.
    #[param(pattern = r"^[a-z][a-z0-9._-]{0,63}(,[a-z][a-z0-9._-]{0,63})*$")]
    pub expand: String,
    /// Hops: up to 5; absent or 0 means 1.
    #[param(minimum = 0, maximum = 5)]
    pub depth: Option<u32>,
}

#[utoipa::path(get, path = "/v1/artifacts/{id}/related", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "Artifact id"), RelatedParams),
    responses((status = 200, description = "Artifacts reachable over the given relation types", body = dto::List<dto::Related>, content_type = "application/json")))]
pub async fn related(
    State(s): State<AppState>,
    call: Call,
    Path(id): Path<String>,
    Query(p): Query<RelatedParams>,
) -> Result<Response, Problem> {
    let id = artifact_id(&id)?;
    let types: Vec<String> = p.expand.split(',').map(|t| t.trim().to_owned()).collect();
    let v = run(&s, call, false, move |svc, c| {
        svc.artifact_related(c, &ArtifactRef::Id(id), &types, p.depth.unwrap_or(1))
    })
    .await?;
    Ok(axum::Json(wire::<dto::List<dto::Related>, _>(v)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRelation {
    /// Source artifact: id or `COLLECTION/NAME`.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub source: String,
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z][a-z0-9._-]{0,63}$")]
    pub rel_type: String,
    /// Target artifact: id or `COLLECTION/NAME`.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub target: String,
    /// Properties (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
}

#[utoipa::path(post, path = "/v1/relations", tag = "relations",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again")), request_body = NewRelation,
    responses((status = 201, description = "Created", body = dto::Relation, content_type = "application/json")))]
pub async fn create_relation(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<NewRelation>,
) -> Result<Response, Problem> {
    let source: ArtifactRef = b.source.parse()?;
    let target: ArtifactRef = b.target.parse()?;
    let props = b
        .properties
        .map(|v| Metadata::parse(&v.to_string()))
        .transpose()?;
    let v = run(&s, call, false, move |svc, c| {
        svc.relate(c, &source, &b.rel_type, &target, props)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(wire::<dto::Relation, _>(v))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RelationParams {
    /// Relations of this artifact (id or `COLLECTION/NAME`), as source or target.
    #[param(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*(/[^\x00-\x1f\x7f-\x9f/\\#%]*[^\x00-\x1f\x7f-\x9f/\\#%.][^\x00-\x1f\x7f-\x9f/\\#%]*)*)$"
    )]
    pub artifact: Option<String>,
    #[serde(rename = "type")]
    #[param(pattern = r"^[a-z][a-z0-9._-]{0,63}$")]
    pub rel_type: Option<String>,
    #[serde(default)]
    pub include_deleted: bool,
    /// Items per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/relations", tag = "relations", params(RelationParams),
    responses((status = 200, description = "A page of relations", body = dto::Page<dto::Relation>, content_type = "application/json")))]
pub async fn list_relations(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<RelationParams>,
) -> Result<Response, Problem> {
    let page = page(&PageParams {
        limit: p.limit,
        after: p.after.clone(),
    })?;
    let artifact: Option<ArtifactRef> = p.artifact.as_deref().map(str::parse).transpose()?;
    let v = run(&s, call, false, move |svc, c| {
        svc.relation_list(
            c,
            artifact.as_ref(),
            p.rel_type.as_deref(),
            p.include_deleted,
            &page,
        )
    })
    .await?;
    Ok(axum::Json(wire::<dto::Page<dto::Relation>, _>(v)).into_response())
}

#[utoipa::path(delete, path = "/v1/relations/{id}", tag = "relations",
    params(("id" = String, Path, format = Uuid, description = "Relation id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"?[0-9]{1,19}"?)$"#, description = "Delete only at this revision")),
    responses((status = 200, description = "The deleted relation", body = dto::Relation, content_type = "application/json")))]
pub async fn delete_relation(
    State(s): State<AppState>,
    call: Call,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id: RelationId = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a relation id")))?;
    let expect = if_match(&headers)?;
    let v = run(&s, call, expect.is_some(), move |svc, c| {
        svc.relation_delete(c, id, expect)
    })
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        v.revision,
        wire::<dto::Relation, _>(v),
    ))
}

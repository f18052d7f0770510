//! Search and context packages.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kontextual_app::{ContextRequest, SearchFilters, SearchRequest};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::dto::{self, wire};
use crate::extract::{Json, Path, Query, run};
use crate::problem::{Problem, ProblemBody};
use crate::request::Call;
use crate::routes::artifacts::{PageParams, page};

/// The search index keeps times as nanoseconds in an `i64` (years 1678 to
/// 2262); a bound outside that range means "since forever" or "until
/// forever" and is clamped to it, rather than overflowing in the index.
fn within_index_range(t: jiff::Timestamp) -> jiff::Timestamp {
    let micros = t
        .as_microsecond()
        .clamp(i64::MIN / 1000 + 1, i64::MAX / 1000);
    jiff::Timestamp::from_microsecond(micros).unwrap_or(t)
}

fn time(s: &Option<String>, what: &str) -> Result<Option<jiff::Timestamp>, Problem> {
    s.as_deref()
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .or_else(|_| {
                    v.parse::<jiff::civil::Date>()
                        .map_err(|e| e.to_string())
                        .and_then(|d| {
                            d.to_zoned(jiff::tz::TimeZone::UTC)
                                .map(|z| z.timestamp())
                                .map_err(|e| e.to_string())
                        })
                })
                .map(within_index_range)
                .map_err(|_| {
                    Problem::bad_request(format!(
                        "{what} {v:?}: use RFC 3339 (2026-11-21T09:00:00Z) or a date (2026-11-21)"
                    ))
                })
        })
        .transpose()
}

fn meta_pairs(list: &[String]) -> Result<Vec<(String, String)>, Problem> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| Problem::bad_request(format!("meta {kv:?}: expected KEY=VALUE")))
        })
        .collect()
}

fn split(list: &Option<String>) -> Vec<String> {
    list.as_deref()
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The parameters of `GET /v1/search` (`meta` repeats).
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to search for: plain text, searched as words (any string; punctuation,
    /// quotes and operators are not syntax). With `syntax=true`: words, "phrases",
    /// +required, -excluded, field:term, `*` for everything. Never empty.
    #[param(min_length = 1, pattern = r"\S")]
    q: String,
    /// Read `q` as query syntax rather than plain text.
    #[serde(default, deserialize_with = "flag")]
    syntax: Option<bool>,
    /// `wait_for`: answer only once the index covers every write made before
    /// this search (read-your-writes; waits at most 5 s). Without it the
    /// server answers from its last refresh (about 250 ms old at most) and
    /// reports the lag in `index.lag`.
    #[param(value_type = Option<String>, pattern = "^(wait_for|false)$")]
    refresh: Option<String>,
    /// Collections, comma-separated (any of them).
    collection: Option<String>,
    /// Artifact types, comma-separated.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    types: Option<String>,
    /// Lifecycle states, comma-separated.
    lifecycle: Option<String>,
    /// Metadata `KEY=VALUE`; repeat the parameter for several (all must match).
    #[serde(default)]
    #[param(inline, value_type = Option<Vec<String>>, pattern = r"^[^=]*[^=\s][^=]*=[\s\S]*$")]
    meta: Vec<String>,
    /// RFC 3339 time (or a date, `2026-11-21`).
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339 time (or a date, `2026-11-21`).
    #[param(format = DateTime)]
    until: Option<String>,
    /// One hit per section.
    #[serde(default, deserialize_with = "flag")]
    sections: Option<bool>,
    /// Hits per page: up to 100; absent or 0 means 10.
    #[param(minimum = 0, maximum = 100)]
    limit: Option<u32>,
    offset: Option<u32>,
    /// Relation types to follow from each hit, comma-separated.
    #[param(pattern = r"^[a-z][a-z0-9._-]{0,63}(,[a-z][a-z0-9._-]{0,63})*$")]
    expand: Option<String>,
    /// Hops from each hit (0–5; more than 0 needs `expand`).
    #[param(minimum = 0, maximum = 5)]
    depth: Option<u32>,
}

/// A flag in a query string: `true`, `1` or bare (`?sections`) is on;
/// `false` or `0` is off.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = String::deserialize(d)?;
    match v.as_str() {
        "" | "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(serde::de::Error::custom(format!(
            "{v:?} is not a flag: use true or false"
        ))),
    }
}

#[utoipa::path(get, path = "/v1/search", tag = "search", params(SearchParams),
    responses((status = 200, description = "Ranked hits with snippets, total, next offset and index freshness", body = dto::SearchResponse, content_type = "application/json"),
        (status = 400, description = "Invalid query or filter", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn search(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<SearchParams>,
) -> Result<Response, Problem> {
    let read_your_writes = match p.refresh.as_deref() {
        None | Some("false") => false,
        Some("wait_for") => true,
        Some(v) => {
            return Err(Problem::bad_request(format!(
                "refresh={v:?}: use wait_for (see every write made before this search) or false"
            )));
        }
    };
    let req = SearchRequest {
        query: p.q,
        syntax: p.syntax.unwrap_or(false),
        filters: SearchFilters {
            collections: split(&p.collection),
            types: split(&p.types),
            lifecycles: split(&p.lifecycle),
            metadata: meta_pairs(&p.meta)?,
            since: time(&p.since, "since")?,
            until: time(&p.until, "until")?,
        },
        sections: p.sections.unwrap_or(false),
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(10),
        expand: split(&p.expand),
        depth: p.depth.unwrap_or(0),
        read_your_writes,
    };
    let v = run(&s, call, false, move |svc, c| svc.search(c, &req)).await?;
    Ok(axum::Json(wire::<dto::SearchResponse, _>(v)).into_response())
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewContext {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// Searches to fill the package from (this, `selectors`, or both).
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = r"\S")]
    pub queries: Vec<String>,
    /// The queries are query syntax (phrases, +required, -excluded,
    /// field:term) rather than plain text.
    #[serde(default)]
    pub syntax: bool,
    /// `COLLECTION/NAME[#SECTION]` or ids.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// Tokens (at least 1).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "crate::extract::integral::u32")]
    pub budget: u32,
    #[serde(default)]
    pub collections: Vec<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub lifecycles: Vec<String>,
    /// `KEY=VALUE` pairs, all must match.
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = r"^[^=]*[^=\s][^=]*=[\s\S]*$")]
    pub meta: Vec<String>,
    #[schema(format = DateTime)]
    pub since: Option<String>,
    #[schema(format = DateTime)]
    pub until: Option<String>,
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = r"^[a-z][a-z0-9._-]{0,63}$")]
    pub expand: Vec<String>,
    /// 0–5; more than 0 needs `expand`.
    #[serde(default, deserialize_with = "crate::extract::integral::u32")]
    #[schema(minimum = 0, maximum = 5)]
    pub depth: u32,
    /// Opaque memory references: objects with `source` and `id`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub memory_refs: Vec<serde_json::Value>,
    /// `cl100k_base` (default) or `o200k_base`.
    #[schema(inline, value_type = Option<crate::wire::Encoding>)]
    pub encoding: Option<String>,
}

#[utoipa::path(post, path = "/v1/context-packages", tag = "context",
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,253}[!-~])?$", description = "Makes a retry safe: the same key and request get the first answer again")), request_body = NewContext,
    responses((status = 201, description = "A new version was stored", body = dto::ContextView, content_type = "application/json"),
        (status = 200, description = "Same manifest as the latest version: nothing stored", body = dto::ContextView, content_type = "application/json")))]
pub async fn build_context(
    State(s): State<AppState>,
    call: Call,
    Json(b): Json<NewContext>,
) -> Result<Response, Problem> {
    let req = ContextRequest {
        name: b.name,
        queries: b.queries,
        syntax: b.syntax,
        selectors: b.selectors,
        budget: b.budget,
        filters: SearchFilters {
            collections: b.collections,
            types: b.types,
            lifecycles: b.lifecycles,
            metadata: meta_pairs(&b.meta)?,
            since: time(&b.since, "since")?,
            until: time(&b.until, "until")?,
        },
        expand: b.expand,
        depth: b.depth,
        memory_refs: b.memory_refs,
        encoding: b
            .encoding
            .as_deref()
            .unwrap_or("cl100k_base")
            .parse()
            .map_err(|e: kontextual_app::Error| Problem::bad_request(e.to_string()))?,
    };
    let v = run(&s, call, false, move |svc, c| svc.context_build(c, &req)).await?;
    let status = if v.new_version {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(wire::<dto::ContextView, _>(v))).into_response())
}

#[utoipa::path(get, path = "/v1/context-packages", tag = "context", params(PageParams),
    responses((status = 200, description = "Packages with their latest version", body = dto::Page<dto::ContextView>, content_type = "application/json")))]
pub async fn list_contexts(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<PageParams>,
) -> Result<Response, Problem> {
    let page = page(&p)?;
    let v = run(&s, call, false, move |svc, c| svc.context_list(c, &page)).await?;
    Ok(axum::Json(wire::<dto::Page<dto::ContextView>, _>(v)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionParam {
    /// A past version [default: the latest].
    pub version: Option<u64>,
}

#[utoipa::path(get, path = "/v1/context-packages/{name}", tag = "context",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "Package name"), VersionParam),
    responses((status = 200, description = "The package and its manifest", body = dto::ContextView, content_type = "application/json")))]
pub async fn get_context(
    State(s): State<AppState>,
    call: Call,
    Path(name): Path<String>,
    Query(v): Query<VersionParam>,
) -> Result<Response, Problem> {
    let r = run(&s, call, false, move |svc, c| {
        svc.context_show(c, &name, v.version)
    })
    .await?;
    Ok(axum::Json(wire::<dto::ContextView, _>(r)).into_response())
}

#[utoipa::path(get, path = "/v1/context-packages/{name}/markdown", tag = "context",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "Package name"), VersionParam),
    responses((status = 200, description = "The package rendered for a prompt", body = String, content_type = "text/markdown")))]
pub async fn render_context(
    State(s): State<AppState>,
    call: Call,
    Path(name): Path<String>,
    Query(v): Query<VersionParam>,
) -> Result<Response, Problem> {
    let (text, missing) = run(&s, call, false, move |svc, c| {
        let view = svc.context_show(c, &name, v.version)?;
        svc.context_render(c, &view)
    })
    .await?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    if missing > 0 {
        r.headers_mut().insert(
            "x-kontextual-missing-items",
            HeaderValue::from(missing as u64),
        );
    }
    Ok(r)
}

#[utoipa::path(get, path = "/v1/context-packages/{name}/verify", tag = "context",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "Package name"), VersionParam),
    responses((status = 200, description = "`verified` and the problems found", body = dto::ContextVerification, content_type = "application/json")))]
pub async fn verify_context(
    State(s): State<AppState>,
    call: Call,
    Path(name): Path<String>,
    Query(v): Query<VersionParam>,
) -> Result<Response, Problem> {
    let r = run(&s, call, false, move |svc, c| {
        svc.context_verify(c, &name, v.version)
    })
    .await?;
    Ok(axum::Json(wire::<dto::ContextVerification, _>(r)).into_response())
}

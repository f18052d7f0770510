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

/// The parameters of `GET /v1/search` (documentation; parsed by hand so
/// `meta` can repeat).
#[derive(IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchParams {
    /// What to search for: plain text, searched as words (any string; punctuation,
    /// quotes and operators are not syntax). With `syntax=true`: words, "phrases",
    /// +required, -excluded, field:term, `*` for everything. Never empty.
    #[param(min_length = 1, pattern = r"\S")]
    q: String,
    /// Read `q` as query syntax rather than plain text.
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
    #[param(rename = "type")]
    types: Option<String>,
    /// Lifecycle states, comma-separated.
    lifecycle: Option<String>,
    /// Metadata `KEY=VALUE`; repeat the parameter for several (all must match).
    #[param(inline, value_type = Option<Vec<String>>, pattern = r"^[^=]*[^=\s][^=]*=[\s\S]*$")]
    meta: Option<Vec<String>>,
    /// RFC 3339 time (or a date, `2026-11-21`).
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339 time (or a date, `2026-11-21`).
    #[param(format = DateTime)]
    until: Option<String>,
    /// One hit per section.
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

#[utoipa::path(get, path = "/v1/search", tag = "search", params(SearchParams),
    responses((status = 200, description = "Ranked hits with snippets, total, next offset and index freshness", body = dto::SearchResponse, content_type = "application/json"),
        (status = 400, description = "Invalid query or filter", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn search(
    State(s): State<AppState>,
    call: Call,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let mut q = None;
    let (mut collection, mut types, mut lifecycle, mut expand) = (None, None, None, None);
    let (mut since, mut until) = (None, None);
    let mut meta = Vec::new();
    let (mut sections, mut limit, mut offset, mut depth) = (false, 10u32, 0u32, 0u32);
    let mut syntax = false;
    let mut read_your_writes = false;
    let number = |k: &str, v: &str| -> Result<u32, Problem> {
        v.parse()
            .map_err(|_| Problem::bad_request(format!("{k}={v:?}: expected a whole number")))
    };
    let flag = |k: &str, v: &str| -> Result<bool, Problem> {
        match v {
            "" | "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(Problem::bad_request(format!(
                "{k}={v:?}: use true or false"
            ))),
        }
    };
    for (k, v) in form_pairs(raw.as_deref().unwrap_or(""))? {
        match k.as_str() {
            "q" => q = Some(v),
            "collection" => collection = Some(v),
            "type" => types = Some(v),
            "lifecycle" => lifecycle = Some(v),
            "meta" => meta.push(v),
            "since" => since = Some(v),
            "until" => until = Some(v),
            "expand" => expand = Some(v),
            "sections" => sections = flag(&k, &v)?,
            "syntax" => syntax = flag(&k, &v)?,
            "refresh" => {
                read_your_writes = match v.as_str() {
                    "wait_for" => true,
                    "false" => false,
                    _ => {
                        return Err(Problem::bad_request(format!(
                            "refresh={v:?}: use wait_for (see every write made before this search) or false"
                        )));
                    }
                }
            }
            "limit" => limit = number(&k, &v)?,
            "offset" => offset = number(&k, &v)?,
            "depth" => depth = number(&k, &v)?,
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter {other:?} (see /openapi.json)"
                )));
            }
        }
    }
    let q = q.ok_or_else(|| Problem::bad_request("the query parameter q is required"))?;
    let req = SearchRequest {
        query: q,
        syntax,
        filters: SearchFilters {
            collections: split(&collection),
            types: split(&types),
            lifecycles: split(&lifecycle),
            metadata: meta_pairs(&meta)?,
            since: time(&since, "since")?,
            until: time(&until, "until")?,
        },
        sections,
        offset,
        limit,
        expand: split(&expand),
        depth,
        read_your_writes,
    };
    let v = run(&s, call, false, move |svc, c| svc.search(c, &req)).await?;
    Ok(axum::Json(wire::<dto::SearchResponse, _>(v)).into_response())
}

/// The raw query string (parameters that repeat, like `meta`).
pub struct RawQuery(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RawQuery {
    type Rejection = Problem;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Problem> {
        Ok(RawQuery(parts.uri.query().map(str::to_owned)))
    }
}

fn form_pairs(q: &str) -> Result<Vec<(String, String)>, Problem> {
    let decode = |s: &str| -> Result<String, Problem> {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Problem::bad_request("malformed %-escape in the query string")
                    })?;
                out.push(hex);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| Problem::bad_request("the query string is not UTF-8"))
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
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

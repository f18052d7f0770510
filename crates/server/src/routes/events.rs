//! The event catalog and the change feed (O5): `GET /v1/event-types`,
//! `GET /v1/events` (pages after a cursor) and `GET /v1/events/stream`
//! (Server-Sent Events, resumable with `Last-Event-ID`). Every event goes
//! through the services' visibility rule: a caller sees only events about
//! what it may read.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kontextual_app::{EventQuery, TypePattern};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::dto;
use crate::extract::{Path, Query, run};
use crate::problem::Problem;
use crate::request::Call;

/// Open event streams at most, per server (beyond: 503).
pub const MAX_EVENT_STREAMS: usize = 64;
/// How often an idle stream looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/v1/event-types", tag = "events",
    responses((status = 200, description = "Every event type: name, version, description and the JSON Schema of its data", body = dto::List<dto::EventType>, content_type = "application/json")))]
pub async fn list_event_types(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    // authenticated like every route, though the catalog reads no store
    let types = run(&s, call, false, |_, _| {
        Ok(kontextual_app::Services::event_types())
    })
    .await?;
    let body: Vec<dto::EventType> = types.iter().map(dto::EventType::from).collect();
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events after this sequence number (0: from the oldest kept).
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// Comma-separated type patterns: exact names (`run.failed`),
    /// families (`artifact.*`) or `*`.
    #[param(
        pattern = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)(,(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?))*$"
    )]
    pub types: Option<String>,
    /// Only events about something in this collection.
    pub collection: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

fn query(
    after: u64,
    types: Option<&str>,
    collection: Option<String>,
    limit: Option<u32>,
) -> Result<EventQuery, Problem> {
    let types = match types {
        Some(t) => TypePattern::parse_list(t).map_err(|e| Problem::bad_request(e.to_string()))?,
        None => Vec::new(),
    };
    if let Some(l) = limit
        && !(1..=kontextual_app::MAX_EVENTS_PAGE).contains(&l)
    {
        return Err(Problem::bad_request(format!(
            "limit {l} is out of range: use 1 to 1000"
        )));
    }
    Ok(EventQuery {
        after,
        types,
        collection,
        limit: limit.unwrap_or(0),
    })
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams),
    responses((status = 200, description = "Events after the cursor that the caller may see, as CloudEvents, in sequence order", body = dto::EventPage, content_type = "application/json"),
        (status = 400, description = "A malformed type pattern, collection or limit; the detail says which", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The cursor is older than what retention deleted, or past the newest event (another store's); the detail names the cursor to continue from", body = crate::problem::ProblemBody, content_type = "application/problem+json")))]
pub async fn list_events(
    State(s): State<AppState>,
    call: Call,
    Query(p): Query<EventParams>,
) -> Result<Response, Problem> {
    let q = query(
        p.after.unwrap_or(0),
        p.types.as_deref(),
        p.collection,
        p.limit,
    )?;
    let page = run(&s, call, false, move |svc, c| svc.events(c, &q)).await?;
    Ok(axum::Json(dto::EventPage {
        items: page.events.into_iter().map(dto::CloudEvent::from).collect(),
        next_after: page.next_after,
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/events/{seq}", tag = "events",
    params(("seq" = u64, Path, description = "The event's sequence number (its CloudEvents `id`)", minimum = 1)),
    responses(
        (status = 200, description = "The event, as a CloudEvent", body = dto::CloudEvent, content_type = "application/json"),
        (status = 404, description = "No such event, or not one the caller may see", body = crate::problem::ProblemBody, content_type = "application/problem+json")))]
pub async fn get_event(
    State(s): State<AppState>,
    call: Call,
    Path(seq): Path<String>,
) -> Result<Response, Problem> {
    // Only the id as events carry it: `01` or `+1` would name event 1
    // under a second spelling.
    let seq: u64 = seq
        .parse()
        .ok()
        .filter(|n: &u64| n.to_string() == seq)
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "event {seq:?}: a sequence number is a whole number from 1, written without sign or leading zeros"
            ))
        })?;
    let event = run(&s, call, false, move |svc, c| svc.event(c, seq)).await?;
    Ok(axum::Json(dto::CloudEvent::from(event)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Events after this sequence number; `Last-Event-ID` wins when both
    /// are given. Neither: only events from now on.
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// Comma-separated type patterns, as for `GET /v1/events`.
    #[param(
        pattern = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)(,(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?))*$"
    )]
    pub types: Option<String>,
    /// Only events about something in this collection.
    pub collection: Option<String>,
}

/// What a stream carries between polls.
struct Follow {
    svc: Arc<kontextual_app::Services>,
    caller: kontextual_app::Caller,
    /// When `caller` was last checked against the store (key, grants,
    /// clearance).
    checked: std::time::Instant,
    q: EventQuery,
    buffered: std::collections::VecDeque<kontextual_app::CloudEvent>,
    stop: tokio::sync::watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

fn sse_event(e: kontextual_app::CloudEvent) -> Event {
    let id = e.id.clone();
    let ty = e.ty.clone();
    let data = serde_json::to_string(&dto::CloudEvent::from(e)).unwrap_or_default();
    Event::default().id(id).event(ty).data(data)
}

#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (its id, the sequence number)")),
    responses((status = 200, description = "Server-Sent Events: each event's `id` is its sequence number, its `event` the type, its `data` the CloudEvent (JSON); a comment line every 15 s while idle. Ends when the server shuts down, or once the caller's key is revoked.", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A malformed Last-Event-ID, cursor, type pattern or collection", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The cursor is older than what retention deleted, or past the newest event", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Too many open streams (`too_many_streams`, with Retry-After)", body = crate::problem::ProblemBody, content_type = "application/problem+json")))]
pub async fn stream_events(
    State(s): State<AppState>,
    call: Call,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Result<Response, Problem> {
    let last_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Problem::bad_request("Last-Event-ID: expected an event id (a sequence number)")
                })?,
        ),
        None => None,
    };
    let permit = s.event_streams.clone().try_acquire_owned().map_err(|_| {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "this server already serves {MAX_EVENT_STREAMS} event streams; retry later or page with GET /v1/events"
            ),
        );
        p.retry_after = Some(5);
        p
    })?;
    let mut q = query(0, p.types.as_deref(), p.collection, None)?;
    let caller = call.caller.clone();
    // the first page now: a refused cursor, pattern or key is an answer,
    // not a stream that ends at once
    let first = run(&s, call, false, move |svc, c| {
        q.after = match last_id.or(p.after) {
            Some(a) => a,
            None => svc.events_head()?,
        };
        let page = svc.events(c, &q)?;
        q.after = page.next_after;
        Ok((q, page.events))
    })
    .await?;
    let (q, events) = first;
    let follow = Follow {
        svc: s.services.clone(),
        caller,
        checked: std::time::Instant::now(),
        q,
        buffered: events.into(),
        stop: s.shutdown.subscribe(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(e) = f.buffered.pop_front() {
                return Some((Ok::<Event, Infallible>(sse_event(e)), f));
            }
            if *f.stop.borrow() {
                return None;
            }
            let svc = f.svc.clone();
            let caller = f.caller.clone();
            let q = f.q.clone();
            // A stream outlives its request's authentication: its caller is
            // checked again as often as the key cache lets new requests
            // use what it verified, so a revoked key ends the stream and a
            // revoked grant narrows it within that bound.
            let recheck = f.checked.elapsed() >= kontextual_app::AUTH_CACHE_TTL;
            let page = tokio::task::spawn_blocking(move || {
                let caller = if recheck {
                    svc.recheck(&caller)?
                } else {
                    caller
                };
                let page = svc.events(&caller, &q)?;
                Ok::<_, kontextual_app::Error>((caller, page))
            })
            .await;
            match page {
                Ok(Ok((caller, page))) => {
                    if recheck {
                        f.caller = caller;
                        f.checked = std::time::Instant::now();
                    }
                    let idle = page.events.is_empty();
                    f.q.after = page.next_after;
                    f.buffered.extend(page.events);
                    if idle {
                        tokio::select! {
                            () = tokio::time::sleep(POLL) => {}
                            _ = f.stop.changed() => return None,
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "event stream ended");
                    return None;
                }
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response())
}

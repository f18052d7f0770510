//! Per-request context: the correlation id (from a W3C `traceparent`, an
//! `X-Correlation-Id`, or new), echoed in the response and carried into the
//! caller, hence into audit records and logs; and one structured log line
//! per request.

use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use kontextual_app::Caller;
use kontextual_model::CorrelationId;

use crate::AppState;
use crate::problem::Problem;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The request's correlation id, set by [`correlate`].
#[derive(Clone, Debug)]
pub struct RequestId(pub CorrelationId);

/// The trace id of a valid `traceparent` (`00-TRACEID-PARENTID-FLAGS`, W3C
/// Trace Context): lowercase hex, version `ff` invalid, version `00` with
/// exactly four fields, and an all-zero trace id or parent id invalid — an
/// invalid header is ignored, as the recommendation says.
fn from_traceparent(h: &HeaderMap) -> Option<CorrelationId> {
    let v = h.get("traceparent")?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if version == "ff" || !hex(version, 2) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if span.bytes().all(|b| b == b'0') {
        return None;
    }
    trace.parse().ok()
}

pub async fn correlate(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = from_traceparent(req.headers())
        .or_else(|| {
            req.headers()
                .get(CORRELATION_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_default();
    req.extensions_mut().insert(RequestId(id.clone()));
    // what the log line needs, only when it will be written
    let logged = tracing::enabled!(tracing::Level::INFO)
        .then(|| (req.method().clone(), req.uri().path().to_owned()));
    let mut res = match oversized_headers(req.headers()) {
        Some(detail) => {
            // refused here, with a problem and the correlation id, and
            // counted like any answer (the route is unknown: unmatched)
            let mut p = Problem::new(
                axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_fields_too_large",
                detail,
            );
            p.correlation_id = Some(id.to_string());
            metrics::histogram!(
                "kontextual_http_request_duration_seconds",
                "method" => "OTHER",
                "route" => "unmatched",
                "status" => "431"
            )
            .record(started.elapsed().as_secs_f64());
            axum::response::IntoResponse::into_response(p)
        }
        None => next.run(req).await,
    };
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(CORRELATION_HEADER, v);
    }
    if let Some((method, path)) = logged {
        tracing::info!(
            correlation_id = id.as_str(),
            %method,
            path,
            status = res.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
    res
}

/// The header limits this server states: at most [`MAX_HEADERS`] fields and
/// [`MAX_HEADER_BYTES`] in all. Beyond them the answer is a 431 problem.
/// (The HTTP parser has hard limits of its own above these — 100 fields,
/// about 400 KB — where it answers 431 itself, without a body.)
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

fn oversized_headers(h: &HeaderMap) -> Option<String> {
    if h.len() > MAX_HEADERS {
        return Some(format!(
            "{} header fields; at most {MAX_HEADERS} are accepted",
            h.len()
        ));
    }
    let bytes: usize = h
        .iter()
        .map(|(k, v)| k.as_str().len() + v.as_bytes().len() + 4)
        .sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        format!("the header fields take {bytes} bytes; at most {MAX_HEADER_BYTES} are accepted")
    })
}

/// Who is calling, for the services: the actor of the request's API key
/// (`Authorization: Bearer kx_…`), or — only while the store has no keys at
/// all, which `serve` allows on loopback alone — the configured local actor.
pub struct Call {
    pub caller: Caller,
}

impl Call {
    pub fn id(&self) -> &str {
        self.caller.correlation_id.as_str()
    }
}

fn unauthenticated(detail: &str, id: &CorrelationId) -> Problem {
    let mut p = Problem::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthenticated",
        detail,
    );
    p.correlation_id = Some(id.to_string());
    p
}

impl FromRequestParts<AppState> for Call {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let svc = state.services.clone();
        let blocking = |r: Result<kontextual_app::Result<Caller>, tokio::task::JoinError>| {
            r.map_err(|_| unauthenticated("authentication failed", &id))?
                .map_err(|e| Problem::from_service(&e, id.as_str(), false))
        };
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let caller = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(v) => {
                // An address over its failed attempts is refused (429) —
                // unless it presents a valid key: the lockout slows down
                // guessing, it must not lock out the clients that share an
                // address with the guesser (a NAT, a proxy).
                let locked_out = state.limits.may_try(ip).err().map(|l| {
                    l.problem(
                        "too many failed authentications from this address; wait before trying again",
                        id.as_str(),
                    )
                });
                let token = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.strip_prefix("Bearer "))
                    .map(|s| s.trim().to_owned());
                let Some(token) = token else {
                    state.limits.failed(ip);
                    return Err(locked_out.unwrap_or_else(|| {
                        unauthenticated("use the header Authorization: Bearer kx_…", &id)
                    }));
                };
                // a recently verified key needs no hop to the blocking pool
                let c = match svc.authenticate_cached(&token, id.clone()) {
                    Some(c) => Ok(c),
                    None => blocking(
                        tokio::task::spawn_blocking(move || svc.authenticate(&token)).await,
                    ),
                };
                match c {
                    Ok(c) => {
                        let key = c.key_id.clone().unwrap_or_default();
                        state.limits.key_request(&key).map_err(|l| {
                            l.problem(
                                &format!("API key {key} is over its request rate"),
                                id.as_str(),
                            )
                        })?;
                        c
                    }
                    Err(p) if p.status == axum::http::StatusCode::UNAUTHORIZED => {
                        state.limits.failed(ip);
                        tracing::warn!(correlation_id = id.as_str(), %ip, "authentication refused");
                        return Err(locked_out.unwrap_or(p));
                    }
                    // not a refusal (the store is unavailable, say): the
                    // problem says what happened, and it is not a failed try
                    Err(p) => return Err(p),
                }
            }
            None => {
                let required = tokio::task::spawn_blocking(move || svc.keys_exist())
                    .await
                    .map_err(|_| unauthenticated("authentication failed", &id))?
                    .map_err(|e| Problem::from_service(&e, id.as_str(), false))?;
                if required {
                    return Err(unauthenticated(
                        "this server requires an API key: send Authorization: Bearer kx_…",
                        &id,
                    ));
                }
                Caller::new((*state.actor).clone(), (*state.namespace).clone())
            }
        };
        let mut caller = caller;
        caller.correlation_id = id;
        Ok(Call { caller })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x4_traceparent_gives_the_correlation_id() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            from_traceparent(&h).unwrap().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        assert!(from_traceparent(&h).is_none());
        h.insert("traceparent", HeaderValue::from_static("garbage"));
        assert!(from_traceparent(&h).is_none());
        // an all-zero parent id, upper-case hex and extra fields on version
        // 00 are invalid (W3C Trace Context 3.2.2): ignored
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert!(from_traceparent(&h).is_none(), "{bad}");
        }
    }
}

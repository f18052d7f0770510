//! `Idempotency-Key` on creating POSTs (IETF draft semantics): the first
//! answer to a key is stored; a retry with the same key and the same request
//! gets it again (`Idempotency-Replayed: true`), a different request with
//! that key is 422, and one still running is 409. Keys are scoped to the
//! authenticated caller; an answer the server failed to produce (5xx) is
//! not kept, so the retry runs again.
//!
//! Secrets are never stored: an answer that carries one (a new API key's
//! token) marks its fields with [`SecretFields`], and what is kept for
//! replays is the answer without them.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kontextual_model::{Digest, Idempotency};

use crate::AppState;
use crate::problem::Problem;

pub const HEADER: &str = "idempotency-key";

/// Marks top-level JSON fields of an answer that hold a secret shown once:
/// they are removed from the copy kept for `Idempotency-Key` replays.
#[derive(Clone, Copy, Debug)]
pub struct SecretFields(pub &'static [&'static str]);

/// The answer as kept for replays: without its secret fields, with
/// `secrets_withheld` naming them so a client can tell why they are missing.
fn without_secrets(body: &[u8], secret: Option<SecretFields>) -> Option<Vec<u8>> {
    let Some(SecretFields(fields)) = secret else {
        return Some(body.to_vec());
    };
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    for f in fields {
        obj.remove(*f);
    }
    obj.insert("secrets_withheld".into(), serde_json::json!(fields));
    serde_json::to_vec(&v).ok()
}

/// Stored answers are small JSON documents; larger ones are not kept.
const MAX_STORED: usize = 1024 * 1024;

/// The caller the key belongs to, or `None` when the request is not
/// authenticated (it then runs unreserved and is refused by its handler).
async fn scope(state: &AppState, auth: Option<String>) -> Option<String> {
    let svc = state.services.clone();
    let (actor, ns) = (state.actor.to_string(), state.namespace.to_string());
    tokio::task::spawn_blocking(move || match auth {
        Some(a) => {
            let token = a.strip_prefix("Bearer ")?.trim();
            let c = svc.authenticate(token).ok()?;
            Some(format!(
                "key:{}:{}:{}",
                c.key_id.unwrap_or_default(),
                c.namespace,
                c.actor
            ))
        }
        None => match svc.keys_exist() {
            Ok(false) => Some(format!("local:{ns}:{actor}")),
            _ => None,
        },
    })
    .await
    .ok()
    .flatten()
}

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // authentication first: an unauthenticated request is refused by its
    // handler (401) whatever its Idempotency-Key looks like
    let Some(scope) = scope(&state, auth).await else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
                .into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let limit = usize::try_from(state.uploads.max_body).unwrap_or(usize::MAX);
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            )
            .into_response();
        }
    };
    let mut fingerprint = Vec::with_capacity(bytes.len() + 64);
    fingerprint.extend_from_slice(parts.method.as_str().as_bytes());
    fingerprint.push(b' ');
    fingerprint.extend_from_slice(parts.uri.to_string().as_bytes());
    fingerprint.push(b'\n');
    fingerprint.extend_from_slice(&bytes);
    let hash = Digest::of(&fingerprint);
    let svc = state.services.clone();
    let begun = {
        let (scope, key) = (scope.clone(), key.clone());
        tokio::task::spawn_blocking(move || svc.idempotency_begin(&scope, &key, hash)).await
    };
    let state_now = match begun {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Problem::from_service(&e, "-", false).into_response(),
        Err(_) => {
            return Problem::of(
                kontextual_app::ErrorKind::Internal,
                "idempotency check failed",
            )
            .into_response();
        }
    };
    match state_now {
        Idempotency::Replay {
            status,
            content_type,
            body,
        } => {
            let mut r =
                (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r.headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
            r
        }
        Idempotency::Mismatch => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!("Idempotency-Key {key:?} was used for a different request"),
        )
        .into_response(),
        Idempotency::InFlight => Problem::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            format!("a request with Idempotency-Key {key:?} is still being processed; retry later"),
        )
        .into_response(),
        Idempotency::Started => {
            let res = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            finish(&state, scope, key, res).await
        }
    }
}

async fn finish(state: &AppState, scope: String, key: String, res: Response) -> Response {
    let svc = state.services.clone();
    let status = res.status();
    let (parts, body) = res.into_parts();
    let bytes = match to_bytes(body, MAX_STORED).await {
        Ok(b) => b,
        Err(_) => {
            let _ =
                tokio::task::spawn_blocking(move || svc.idempotency_abandon(&scope, &key)).await;
            return Problem::of(
                kontextual_app::ErrorKind::Internal,
                "the answer was too large to keep for Idempotency-Key replays",
            )
            .into_response();
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let stored = without_secrets(&bytes, parts.extensions.get::<SecretFields>().copied());
    let kept = tokio::task::spawn_blocking(move || {
        let Some(stored) = stored else {
            // a secret-bearing answer that is not a JSON object: keep nothing
            return svc.idempotency_abandon(&scope, &key);
        };
        if status.is_server_error() {
            svc.idempotency_abandon(&scope, &key)
        } else {
            svc.idempotency_finish(&scope, &key, status.as_u16(), &content_type, stored)
        }
    })
    .await;
    if !matches!(kept, Ok(Ok(()))) {
        tracing::warn!("could not record an Idempotency-Key answer");
    }
    Response::from_parts(parts, Body::from(bytes))
}

//! Extractors whose rejections are problem+json (axum's are plain text),
//! and the bridge from async handlers to the synchronous services.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::Problem;
use crate::request::Call;

fn rejected(status: StatusCode, text: String) -> Problem {
    let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "{text}: the body is larger than this server accepts (set by `kontextual serve --max-body-mb`)"
        )
    } else {
        text
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "invalid_input",
    };
    Problem::new(status, code, text)
}

/// A JSON body; unknown fields are refused by the target types.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e @ JsonRejection::JsonDataError(_)) => {
                Err(rejected(StatusCode::UNPROCESSABLE_ENTITY, e.body_text()))
            }
            Err(e) => Err(rejected(e.status(), e.body_text())),
        }
    }
}

pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        if let Some(q) = parts.uri.query()
            && let Some(name) = non_utf8_parameter(q)
        {
            return Err(rejected(
                StatusCode::BAD_REQUEST,
                format!(
                    "query parameter {name}: its percent-escapes decode to bytes that are not UTF-8; names, references and values must be valid UTF-8"
                ),
            ));
        }
        // serde_html_form: serde_urlencoded's rules plus repeated keys
        // into sequences (`meta=a=1&meta=b=2`)
        // into sequences (`meta=a=1&meta=b=2`); the error names the
        // parameter whose value it could not read
        let query = parts.uri.query().unwrap_or("");
        let form = serde_html_form::Deserializer::from_bytes(query.as_bytes());
        serde_path_to_error::deserialize::<_, T>(form)
            .map(Query)
            .map_err(|e| {
                let at = e.path().to_string();
                let detail = if at == "." {
                    format!("the query string: {}", e.inner())
                } else {
                    format!("query parameter {at}: {}", e.inner())
                };
                rejected(StatusCode::BAD_REQUEST, detail)
            })
    }
}

/// The first query parameter whose name or value is not UTF-8 once
/// percent-decoded. The standard form decoder replaces such bytes with
/// U+FFFD, which would silently turn `x%FF.md` and `x%FE.md` into one name:
/// they are refused instead (X8).
fn non_utf8_parameter(query: &str) -> Option<String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            let plus = s.replace('+', " ");
            percent_encoding::percent_decode_str(&plus)
                .decode_utf8()
                .map(|c| c.into_owned())
        };
        match (decode(k), decode(v)) {
            (Ok(_), Ok(_)) => {}
            (Ok(name), Err(_)) => return Some(name),
            (Err(_), _) => return Some("(a name that is not UTF-8)".to_owned()),
        }
    }
    None
}

pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| rejected(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// Runs a service call on the blocking pool (the services are synchronous:
/// SQLite, tantivy, file IO) and maps its error to a problem.
pub async fn run<T, F>(state: &AppState, call: Call, precondition: bool, f: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&kontextual_app::Services, &kontextual_app::Caller) -> kontextual_app::Result<T>
        + Send
        + 'static,
{
    let svc = state.services.clone();
    let id = call.id().to_owned();
    let caller = call.caller;
    match tokio::task::spawn_blocking(move || f(&svc, &caller)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Problem::from_service(&e, &id, precondition)),
        Err(join) => {
            tracing::error!(correlation_id = id, error = %join, "handler panicked");
            let mut p = Problem::of(
                kontextual_app::ErrorKind::Internal,
                format!(
                    "the server could not complete the request; quote correlation id {id} to its operator"
                ),
            );
            p.correlation_id = Some(id);
            Err(p)
        }
    }
}

/// JSON Schema's `integer` is the mathematical one: `2088.0` is an integer
/// as much as `2088` is. Integer fields of request bodies accept both, so a
/// client built from the OpenAPI document is never refused for writing one.
pub mod integral {
    use serde::{Deserialize, Deserializer, de::Error};

    fn whole<'de, D: Deserializer<'de>>(v: serde_json::Number) -> Result<u64, D::Error> {
        if let Some(n) = v.as_u64() {
            return Ok(n);
        }
        match v.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
            _ => Err(D::Error::custom(format!("{v} is not a whole number ≥ 0"))),
        }
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let n = whole::<D>(serde_json::Number::deserialize(d)?)?;
        u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large")))
    }

    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(None),
            Some(v) => {
                let n = whole::<D>(v)?;
                u32::try_from(n)
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("{n} is too large")))
            }
        }
    }
}

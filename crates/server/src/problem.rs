//! RFC 9457 problem details: every error answer is
//! `application/problem+json` with a stable machine-readable `code`.
//! Internal errors are logged with the correlation id and described to the
//! client only by that id.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kontextual_app::{Error, ErrorCode, ErrorKind};
use serde::Serialize;

/// One problem, as the client sees it (`type` is a stable URN per code).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    /// Stable machine-readable code (`not_found`, `conflict`, …).
    pub code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
}

/// An error answer. Small, so handlers can return it by value.
#[derive(Clone, Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub correlation_id: Option<String>,
    /// Seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            correlation_id: None,
            retry_after: None,
        }
    }

    fn body(&self) -> ProblemBody<'_> {
        ProblemBody {
            kind: format!("urn:kontextual:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            correlation_id: self.correlation_id.as_deref(),
        }
    }

    /// A problem of one of the kinds in the services' error table, with
    /// that table's code and status.
    pub fn of(kind: ErrorKind, detail: impl Into<String>) -> Problem {
        let row = kind.code();
        Problem::new(status_of(row), row.code, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::of(ErrorKind::InvalidInput, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::of(ErrorKind::NotFound, detail)
    }

    /// A service error, with the request's correlation id. `precondition`:
    /// the request carried `If-Match`, so a revision conflict is a failed
    /// precondition (412) rather than a plain conflict (409).
    pub fn from_service(e: &Error, correlation_id: &str, precondition: bool) -> Problem {
        let (status, code) = match e.kind() {
            // HTTP alone can say which revision the client expected: the
            // one refinement of the error table this surface makes.
            ErrorKind::Conflict if precondition => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            kind => {
                let row = kind.code();
                (status_of(row), row.code)
            }
        };
        // An unavailable store fails every request the same way: one
        // rate-limited line says so, not one per request (O1).
        kontextual_app::store_unavailable(e, "answering requests");
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(correlation_id, error = %e, "request failed");
            format!(
                "the server could not complete the request; quote correlation id {correlation_id} to its operator"
            )
        } else {
            e.to_string()
        };
        let mut p = Problem::new(status, code, detail);
        p.correlation_id = Some(correlation_id.to_owned());
        p
    }
}

/// The table's status as an HTTP status; the table holds only valid ones
/// (a test checks), so the fallback is never reached.
fn status_of(row: ErrorCode) -> StatusCode {
    StatusCode::from_u16(row.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Input the model refuses (a bad name, id, time, …) is a 400 that says why.
impl From<kontextual_model::ModelError> for Problem {
    fn from(e: kontextual_model::ModelError) -> Problem {
        Problem::bad_request(e.to_string())
    }
}

/// A problem answered where the request's correlation id was not at hand
/// (an extractor, a handler's input check, the router's fallbacks);
/// [`correlate_problems`] writes it again with the id.
#[derive(Clone)]
struct Uncorrelated(Problem);

/// Gives every problem answer the request's correlation id: whoever built
/// it, a client can quote the id of a refusal to the operator.
pub async fn correlate_problems(req: Request, next: Next) -> Response {
    let id = req
        .extensions()
        .get::<crate::request::RequestId>()
        .map(|r| r.0.to_string());
    let mut res = next.run(req).await;
    let (Some(id), Some(Uncorrelated(mut p))) = (id, res.extensions_mut().remove::<Uncorrelated>())
    else {
        return res;
    };
    p.correlation_id = Some(id);
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&p.body()).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let uncorrelated = self
            .correlation_id
            .is_none()
            .then(|| Uncorrelated(self.clone()));
        let mut r = (self.status, body).into_response();
        if let Some(u) = uncorrelated {
            r.extensions_mut().insert(u);
        }
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_in_the_error_table_is_an_http_error_status() {
        for kind in ErrorKind::ALL {
            let status = StatusCode::from_u16(kind.code().http_status);
            assert!(
                status.is_ok_and(|s| s.is_client_error() || s.is_server_error()),
                "{kind:?}"
            );
        }
    }

    /// Answers that withhold their detail are exactly the 500s.
    #[test]
    fn internal_failures_are_described_only_by_their_correlation_id() {
        let e = Error::internal("a broken invariant");
        let p = Problem::from_service(&e, "abc", false);
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(p.code, "internal");
        assert!(!p.detail.contains("invariant"), "{}", p.detail);
    }
}

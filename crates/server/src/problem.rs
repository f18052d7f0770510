//! RFC 9457 problem details: every error answer is
//! `application/problem+json` with a stable machine-readable `code`.
//! Internal errors are logged with the correlation id and described to the
//! client only by that id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kontextual_services::{Error, ErrorKind};
use serde::Serialize;

/// One problem. `type` is a stable URN per code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code (`not_found`, `conflict`, …).
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:kontextual:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            correlation_id: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid_input", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// A service error, with the request's correlation id. `precondition`:
    /// the request carried `If-Match`, so a revision conflict is a failed
    /// precondition (412) rather than a plain conflict (409).
    pub fn from_service(e: &Error, correlation_id: &str, precondition: bool) -> Problem {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict if precondition => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Denied => (StatusCode::FORBIDDEN, "permission_denied"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorKind::Corrupted => (StatusCode::INTERNAL_SERVER_ERROR, "corrupted"),
            ErrorKind::Io | ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
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

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

//! Export packages over HTTP (O3): the same service as `kontextual export`,
//! streamed as a `.tar.zst` while it is written — never built in memory.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kontextual_app::{ExportScope, ExportTarget};
use tokio::sync::mpsc;

use crate::AppState;
use crate::extract::{Json, run};
use crate::problem::{Problem, ProblemBody};
use crate::request::Call;

/// A blocking writer that hands full buffers to the response body; the
/// bounded channel makes a slow client slow the export down, not fill memory.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

/// What to export: `all`, or filters that combine (all must match).
// (The OpenAPI description of `ExportScope`, which the handler reads.)
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
#[allow(dead_code)]
#[derive(Default)]
pub struct ExportScopeBody {
    /// Everything in the namespace.
    all: bool,
    #[schema(value_type = Vec<String>, format = Uuid)]
    artifact_ids: Vec<String>,
    #[schema(inline, value_type = Vec<String>, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    collections: Vec<String>,
    /// Full-text query (every match, not one page).
    query: Option<String>,
    /// Artifacts with a revision written by this run.
    #[schema(value_type = Option<String>, format = Uuid)]
    run: Option<String>,
    source_systems: Vec<String>,
    #[schema(inline, value_type = Vec<crate::wire::Lifecycle>)]
    lifecycles: Vec<String>,
    #[schema(inline, value_type = Vec<crate::wire::Classification>)]
    classifications: Vec<String>,
    /// Last changed at or after (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Last changed before (RFC 3339).
    #[schema(format = DateTime)]
    until: Option<String>,
    /// Only each artifact's current revision.
    current_only: bool,
    /// Deleted and purged artifacts too (always with `all`).
    include_deleted: bool,
}

#[utoipa::path(post, path = "/v1/export", tag = "export",
    request_body(content = ExportScopeBody, description = "The scope: `all`, or any combination of the filters (at least one)"),
    responses(
        (status = 200, description = "A BagIt package as .tar.zst, streamed", body = String, content_type = "application/zstd"),
        (status = 403, description = "The key lacks the export scope", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn export(
    State(s): State<AppState>,
    call: Call,
    Json(scope): Json<ExportScope>,
) -> Result<Response, Problem> {
    // Refusals become problem responses before the stream starts.
    let check = scope.clone();
    let caller = call.caller.clone();
    run(&s, call, false, move |svc, c| {
        svc.export_preflight(c, &check)
    })
    .await?;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let svc = s.services.clone();
    tokio::task::spawn_blocking(move || {
        let target = ExportTarget::TarZst {
            out: Box::new(ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            }),
            root: "kontextual-export".into(),
        };
        if let Err(e) = svc.export(&caller, &scope, target) {
            tracing::error!(correlation_id = %caller.correlation_id, error = %e, "export failed mid-stream");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zstd"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"kontextual-export.tar.zst\""),
    );
    Ok(r)
}

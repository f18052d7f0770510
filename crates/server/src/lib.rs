//! The HTTP API (X4): `kontextual serve`. Thin axum handlers over the
//! services — every request goes through the same service calls as the CLI,
//! so policy, audit and events cannot be bypassed.
//!
//! Invariants:
//! - Handlers parse, call one service operation on the blocking pool, and
//!   shape the answer; no handler touches the store or the index.
//! - Every error is RFC 9457 problem+json with a stable `code`; internal
//!   errors are logged with the correlation id and not described.
//! - The OpenAPI document is generated from the same route registrations
//!   that serve requests (`utoipa-axum`), so it cannot list a route that
//!   does not exist or miss one that does.

pub mod contract;
mod dto;
mod extract;
mod idempotency;
pub mod limits;
mod listen;
pub mod metrics;
pub mod problem;
mod request;
mod routes;
pub mod upload;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kontextual_app::Services;
use kontextual_model::{Actor, Namespace};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use request::CORRELATION_HEADER;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    /// The actor requests without a key act as, while no key exists.
    /// (Behind `Arc`s: the state is cloned for every request.)
    pub actor: Arc<Actor>,
    pub namespace: Arc<Namespace>,
    pub limits: Arc<limits::Limits>,
    /// Open event streams (`GET /v1/events/stream`) at most: a permit each.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Set when the server shuts down: event streams end.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// The body limit and the slots for large uploads ([`router`] sets them
    /// from the [`ServeConfig`]).
    pub uploads: Arc<upload::Uploads>,
}

impl AppState {
    pub fn new(
        services: Arc<Services>,
        actor: Actor,
        namespace: Namespace,
        limits: limits::LimitConfig,
    ) -> AppState {
        AppState {
            services,
            actor: Arc::new(actor),
            namespace: Arc::new(namespace),
            limits: Arc::new(limits::Limits::new(limits)),
            event_streams: Arc::new(tokio::sync::Semaphore::new(
                routes::events::MAX_EVENT_STREAMS,
            )),
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
            uploads: Arc::new(upload::Uploads::new(
                ServeConfig::default().max_body_bytes as u64,
                upload::DEFAULT_LARGE_UPLOADS,
            )),
        }
    }
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    /// Largest request body (artifact content uploads included).
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Time for a client to send a request's headers; also the longest a
    /// kept-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Open connections at most; beyond, new ones are closed at once.
    pub max_connections: usize,
    /// Uploads larger than 1 MiB (or of unknown length) read at once; more
    /// wait for a slot (the server's memory bound for bodies).
    pub large_uploads: usize,
    /// How often the index follower applies new changes (the bound on how
    /// long a write by another process takes to become searchable here).
    pub follow_interval: Duration,
    /// Job workers run alongside the API (`None`: no workers here).
    pub workers: Option<kontextual_app::WorkerConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7700)),
            max_body_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            large_uploads: upload::DEFAULT_LARGE_UPLOADS,
            follow_interval: Duration::from_millis(250),
            workers: None,
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Kontextual",
        description = "The knowledge runtime for AI agents: collections, artifacts with revisions, sections, relationships, search, context packages, runs and the audit log."
    ),
    components(schemas(problem::ProblemBody))
)]
struct ApiDoc;

/// The routes and their OpenAPI description, from one registration.
pub fn router(state: AppState, cfg: &ServeConfig) -> (Router, utoipa::openapi::OpenApi) {
    use routes::{
        artifacts as a, events as e, jobs as j, keys as k, ops as o, retrieval as r, webhooks as w,
    };
    metrics::handle();
    metrics::register_job_kinds(&state.services.job_kinds());
    let state = AppState {
        uploads: Arc::new(upload::Uploads::new(
            cfg.max_body_bytes as u64,
            cfg.large_uploads,
        )),
        ..state
    };
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(o::healthz))
        .routes(routes!(o::readyz))
        .routes(routes!(a::list_collections, a::create_collection))
        .routes(routes!(a::get_collection))
        .routes(routes!(a::list_artifacts, a::put_artifact))
        .routes(routes!(a::get_by_ref))
        .routes(routes!(a::get_artifact, a::delete_artifact))
        .routes(routes!(a::get_content))
        .routes(routes!(a::list_revisions))
        .routes(routes!(a::get_revision))
        .routes(routes!(a::diff))
        .routes(routes!(a::list_sections))
        .routes(routes!(a::get_section))
        .routes(routes!(a::related))
        .routes(routes!(a::list_relations, a::create_relation))
        .routes(routes!(a::delete_relation))
        .routes(routes!(r::search))
        .routes(routes!(r::list_contexts, r::build_context))
        .routes(routes!(r::get_context))
        .routes(routes!(r::render_context))
        .routes(routes!(r::verify_context))
        .routes(routes!(o::list_runs))
        .routes(routes!(o::get_run))
        .routes(routes!(o::list_audit))
        .routes(routes!(o::verify_audit))
        .routes(routes!(o::index_status))
        .routes(routes!(o::access_log))
        .routes(routes!(k::list_keys, k::create_key))
        .routes(routes!(k::revoke_key))
        .routes(routes!(k::list_grants, k::create_grant, k::delete_grant))
        .routes(routes!(k::list_holds, k::set_hold))
        .routes(routes!(k::release_hold))
        .routes(routes!(k::list_clearances, k::set_clearance))
        .routes(routes!(j::list_jobs, j::enqueue_job))
        .routes(routes!(j::get_job))
        .routes(routes!(j::act_on_job))
        .routes(routes!(j::rerun))
        .routes(routes!(j::reindex))
        .routes(routes!(j::repair))
        .routes(routes!(j::list_quarantines, j::quarantine))
        .routes(routes!(j::release_quarantine))
        .routes(routes!(crate::routes::export::export))
        .routes(routes!(e::list_event_types))
        .routes(routes!(e::list_events))
        .routes(routes!(e::stream_events))
        .routes(routes!(e::get_event))
        .routes(routes!(w::list_webhooks, w::create_webhook))
        .routes(routes!(
            w::get_webhook,
            w::update_webhook,
            w::delete_webhook
        ))
        .routes(routes!(w::enable_webhook))
        .routes(routes!(w::disable_webhook))
        .routes(routes!(w::rotate_secret))
        .routes(routes!(w::list_deliveries))
        .routes(routes!(w::recover))
        .routes(routes!(w::get_delivery))
        .routes(routes!(w::resend))
        .routes(routes!(metrics::scrape))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .with_state(state)
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    contract::complete(&mut api);
    let doc = api.clone();
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .fallback(|| async {
            problem::Problem::not_found("no such route; the API is described at /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            cfg.max_body_bytes,
            refuse_declared_oversize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            cfg.request_timeout,
            answer_in_time,
        ))
        .layer(axum::middleware::from_fn(problem::correlate_problems))
        .layer(axum::middleware::from_fn(request::correlate));
    (router, api)
}

/// A body whose declared length is over the limit is refused at once with
/// a 413 that names the limit and the flag that sets it — not read, and not
/// waited for until the request times out.
async fn refuse_declared_oversize(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = upload::declared_length(req.headers());
    match declared {
        Some(n) if n > limit as u64 => {
            axum::response::IntoResponse::into_response(problem::Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is {n} bytes; this server accepts at most {limit} bytes ({} MiB, set by `kontextual serve --max-body-mb`)",
                    limit / (1024 * 1024)
                ),
            ))
        }
        _ => next.run(req).await,
    }
}

/// A request not answered within the timeout is a 408 problem (inside
/// `correlate`, so it carries the correlation id and is logged).
async fn answer_in_time(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => problem::Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "no answer within {} s; the server may still complete the request",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to bind to {0}: no API key exists, so every request would act as the local administrator; create one with `kontextual key create` or bind to 127.0.0.1"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Service(#[from] kontextual_app::Error),
}

impl ServeError {
    /// Where this failure sits in the services' error table (and so its
    /// code and exit code).
    pub fn kind(&self) -> kontextual_app::ErrorKind {
        use kontextual_app::ErrorKind;
        match self {
            ServeError::NotLoopback(_) => ErrorKind::InvalidInput,
            ServeError::Bind { .. } | ServeError::Io(_) => ErrorKind::Io,
            ServeError::Service(e) => e.kind(),
        }
    }
}

/// A blocking start-up step that panicked: a bug, not an I/O failure.
fn panicked(step: &str, e: tokio::task::JoinError) -> kontextual_app::Error {
    kontextual_app::Error::internal(format!("{step} failed: {e}"))
}

/// Serves until SIGINT or SIGTERM, then finishes in-flight requests and
/// commits pending index work. `ready` is called with the bound address.
pub async fn serve(
    state: AppState,
    cfg: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let svc = state.services.clone();
    if !cfg.bind.ip().is_loopback() {
        let keys = tokio::task::spawn_blocking({
            let svc = svc.clone();
            move || svc.keys_exist()
        })
        .await
        .map_err(|e| panicked("looking for API keys", e))??;
        if !keys {
            return Err(ServeError::NotLoopback(cfg.bind));
        }
    }
    // Own (or wait for) the index before accepting requests.
    tokio::task::spawn_blocking({
        let svc = svc.clone();
        move || svc.ready()
    })
    .await
    .map_err(|e| panicked("opening the search index", e))??;
    let listener = tokio::net::TcpListener::bind(cfg.bind)
        .await
        .map_err(|cause| ServeError::Bind {
            addr: cfg.bind,
            cause,
        })?;
    let addr = listener.local_addr()?;
    let background = svc.start_background(kontextual_app::BackgroundConfig {
        follow_interval: cfg.follow_interval,
        workers: cfg.workers.clone(),
    });
    let stop = state.shutdown.clone();
    let (app, _) = router(state, &cfg);
    tracing::info!(%addr, "serving");
    ready(addr);
    let served = listen::serve(
        listener,
        app,
        listen::ConnectionLimits {
            header_timeout: cfg.header_timeout,
            max_connections: cfg.max_connections,
        },
        async move {
            shutdown_signal().await;
            // event streams end, so the drain does not wait for them
            let _ = stop.send(true);
        },
    )
    .await;
    // Workers give back what they hold and stop at a safe point; what the
    // follower had not applied yet is committed.
    if tokio::task::spawn_blocking(move || background.stop())
        .await
        .is_err()
    {
        tracing::warn!("stopping the background work panicked");
    }
    served?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// A start-up failure met while answering a request is the server's own.
impl IntoResponse for ServeError {
    fn into_response(self) -> axum::response::Response {
        problem::Problem::of(kontextual_app::ErrorKind::Internal, self.to_string()).into_response()
    }
}

//! Prometheus metrics (O1): one process-wide recorder behind the `metrics`
//! facade, API latency per route recorded by a route layer, and `/metrics`,
//! which adds the store's and index's numbers at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kontextual_model::JobState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::extract::run;
use crate::problem::Problem;
use crate::request::Call;

/// Latency buckets (seconds): 0.5 ms to 30 s.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The recorder, installed on first use. `None` when another recorder was
/// installed first (an embedding program's): then `/metrics` says so.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    register();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "kontextual_http_request_duration_seconds",
        "API latency by method, route and status"
    );
    describe_histogram!("kontextual_query_duration_seconds", "Search latency");
    describe_counter!(
        "kontextual_http_connections_refused_total",
        "Connections closed at once because --max-connections were open"
    );
    describe_counter!(
        "kontextual_ingest_documents_total",
        "Files ingested (stored or unchanged)"
    );
    describe_counter!("kontextual_ingest_bytes_total", "Bytes ingested");
    describe_histogram!(
        "kontextual_job_duration_seconds",
        "Job attempt duration by kind and outcome"
    );
    describe_counter!(
        "kontextual_jobs_finished_total",
        "Job attempts ended by this process, by kind and resulting state (failure rate: state=failed|dead over all)"
    );
    describe_counter!(
        "kontextual_runs_finished_total",
        "Runs finished by this process, by kind and status"
    );
    describe_gauge!("kontextual_jobs", "Jobs in the store by kind and state");
    describe_gauge!(
        "kontextual_job_queue_age_seconds",
        "How long the oldest due job has waited"
    );
    describe_gauge!("kontextual_runs", "Runs in the store by kind and status");
    describe_gauge!("kontextual_store_size_bytes", "Database size");
    describe_gauge!("kontextual_store_artifacts", "Live artifacts in the store");
    describe_gauge!(
        "kontextual_index_artifacts",
        "Artifacts in the search index"
    );
    describe_gauge!(
        "kontextual_index_expected_artifacts",
        "Artifacts the search index should hold (live, not quarantined)"
    );
    describe_gauge!(
        "kontextual_index_lag_events",
        "Change-feed events the index has not applied"
    );
    describe_gauge!(
        "kontextual_audit_chain_length",
        "Audit records in the hash chain"
    );
    describe_gauge!("kontextual_outbox_events", "Events in the outbox");
    describe_counter!(
        "kontextual_export_bytes_total",
        "Payload bytes written by exports of this process"
    );
    describe_gauge!(
        "kontextual_index_healthy",
        "1 when the search index holds exactly what the store says it should and has applied every change, else 0"
    );
}

/// The job families of every registered kind exist from start-up too, with
/// zero values. Once per process: a second call would reset the counters.
pub fn register_job_kinds(kinds: &[String]) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if handle().is_none() {
        return;
    }
    ONCE.call_once(|| {
        for kind in kinds {
            for outcome in ["succeeded", "failed"] {
                let _ = metrics::histogram!("kontextual_job_duration_seconds", "kind" => kind.clone(), "outcome" => outcome);
            }
            for state in [JobState::Succeeded, JobState::Failed, JobState::Dead] {
                metrics::counter!("kontextual_jobs_finished_total", "kind" => kind.clone(), "state" => state.as_str())
                    .absolute(0);
            }
        }
    });
}

/// Every family exists from start-up, with zero values, so dashboards and
/// alerts see it before its first use.
fn register() {
    use kontextual_model::RunStatus;
    let _ = metrics::histogram!("kontextual_query_duration_seconds");
    metrics::counter!("kontextual_ingest_documents_total").absolute(0);
    metrics::counter!("kontextual_ingest_bytes_total").absolute(0);
    metrics::counter!("kontextual_export_bytes_total").absolute(0);
    // histograms appear with their first observation's labels; these are
    // the label sets known in advance
    let _ = metrics::histogram!("kontextual_http_request_duration_seconds", "method" => "GET", "route" => "/healthz", "status" => "200");
    for kind in ["ingest", "reindex", "repair", "export", "import"] {
        for status in RunStatus::ALL {
            if *status != RunStatus::Running {
                metrics::counter!("kontextual_runs_finished_total", "kind" => kind, "status" => status.as_str())
                    .absolute(0);
            }
        }
    }
    for g in [
        "kontextual_job_queue_age_seconds",
        "kontextual_store_size_bytes",
        "kontextual_store_artifacts",
        "kontextual_index_artifacts",
        "kontextual_index_expected_artifacts",
        "kontextual_index_lag_events",
        "kontextual_index_healthy",
        "kontextual_audit_chain_length",
        "kontextual_outbox_events",
    ] {
        metrics::gauge!(g).set(0.0);
    }
}

/// Route layer: API latency by matched route (never the raw path, so ids
/// do not explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = static_method(req.method());
    let res = next.run(req).await;
    metrics::histogram!(
        "kontextual_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => static_status(res.status().as_u16())
    )
    .record(started.elapsed().as_secs_f64());
    res
}

/// Label values without an allocation per request.
fn static_method(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        _ => "OTHER",
    }
}

fn static_status(s: u16) -> std::borrow::Cow<'static, str> {
    const COMMON: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (409, "409"),
        (412, "412"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    match COMMON.iter().find(|(c, _)| *c == s) {
        Some((_, t)) => std::borrow::Cow::Borrowed(t),
        None => std::borrow::Cow::Owned(s.to_string()),
    }
}

/// `GET /metrics`: Prometheus text format (admin).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub async fn scrape(State(s): State<AppState>, call: Call) -> Result<Response, Problem> {
    let snap = run(&s, call, false, |svc, c| svc.metrics_snapshot(c)).await?;
    let Some(h) = handle() else {
        return Err(Problem::of(
            kontextual_app::ErrorKind::Unavailable,
            "another metrics recorder is installed in this process",
        ));
    };
    let mut kinds: Vec<String> = s.services.job_kinds();
    for (k, _, _) in &snap.jobs.counts {
        if !kinds.contains(k) {
            kinds.push(k.clone());
        }
    }
    for kind in &kinds {
        for state in JobState::ALL {
            let n = snap
                .jobs
                .counts
                .iter()
                .find(|(k, st, _)| k == kind && st == state)
                .map_or(0, |(_, _, n)| *n);
            metrics::gauge!("kontextual_jobs", "kind" => kind.clone(), "state" => state.as_str())
                .set(n as f64);
        }
    }
    for (kind, status, n) in &snap.runs {
        metrics::gauge!("kontextual_runs", "kind" => kind.clone(), "status" => status.clone())
            .set(*n as f64);
    }
    metrics::gauge!("kontextual_job_queue_age_seconds").set(snap.queue_age_seconds);
    metrics::gauge!("kontextual_store_size_bytes").set(snap.store_size_bytes as f64);
    metrics::gauge!("kontextual_store_artifacts").set(snap.artifacts_live as f64);
    metrics::gauge!("kontextual_audit_chain_length").set(snap.audit_chain_length as f64);
    metrics::gauge!("kontextual_outbox_events").set(snap.outbox_events as f64);
    metrics::gauge!("kontextual_index_expected_artifacts")
        .set(snap.index_expected_artifacts as f64);
    if let Some(n) = snap.index_artifacts {
        metrics::gauge!("kontextual_index_artifacts").set(n as f64);
    }
    if let Some(n) = snap.index_lag_events {
        metrics::gauge!("kontextual_index_lag_events").set(n as f64);
    }
    let healthy = snap.index_lag_events == Some(0)
        && snap.index_artifacts == Some(snap.index_expected_artifacts);
    metrics::gauge!("kontextual_index_healthy").set(if healthy { 1.0 } else { 0.0 });
    metrics::counter!("kontextual_ingest_documents_total").absolute(snap.ingest_documents);
    metrics::counter!("kontextual_ingest_bytes_total").absolute(snap.ingest_bytes);
    let mut res = h.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

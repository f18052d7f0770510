//! The accept loop. `axum::serve` keeps every connection open for as long
//! as the client likes; a server facing untrusted clients needs three
//! bounds it does not offer (issue: slowloris and idle connections
//! exhausted the descriptor limit with nothing logged):
//!
//! - a header read timeout, which hyper also starts when a kept-alive
//!   connection goes idle after a response, so it is the idle timeout too;
//! - a cap on concurrent connections: beyond it a new connection is closed
//!   at once, and a warning says so (at most once per [`CAP_LOG_EVERY`]);
//! - graceful shutdown: in-flight requests finish, idle connections close.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// The cap's warning is repeated at most this often while it bites.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before it gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Connection bounds.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time for a client to send a request's headers, and the longest a
    /// kept-alive connection may sit idle between requests.
    pub header_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let refused = CapLog::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was
                    // accepted: the listener itself is fine; back off briefly.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.note(limits.max_connections);
            drop(stream);
            continue;
        };
        // Small requests and answers: do not wait to fill a segment.
        let _ = stream.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(
                move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                },
            )
            .map_err(|e: Infallible| match e {});
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts and clients that went away are routine.
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_LIMIT) => {
            tracing::warn!("shutdown: connections still open after {} s; closing", DRAIN_LIMIT.as_secs());
        }
    }
    Ok(())
}

/// Counts refused connections and logs at most once per [`CAP_LOG_EVERY`].
#[derive(Default)]
struct CapLog {
    refused: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl CapLog {
    fn note(&self, cap: usize) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("kontextual_http_connections_refused_total").increment(1);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= CAP_LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                max_connections = cap,
                refused_so_far = n,
                "connection limit reached: new connections are closed at once (raise --max-connections)"
            );
        }
    }
}

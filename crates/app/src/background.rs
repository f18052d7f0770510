//! What a serving process runs beside its requests, started and stopped
//! here (the composition root) rather than by a surface: the feed
//! follower (every registered feed consumer, on a short interval), the
//! periodic flushes of the access log and key-use times, and the job
//! workers when the process runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kontextual_kernel::{Result, WorkerConfig, WorkerSummary};

use crate::Services;

/// How often buffered access-log entries are written.
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(2);
/// After a write wakes the dispatcher, how long it lets more arrive.
const DISPATCH_GATHER: Duration = Duration::from_millis(5);
/// How often key last-use times are written.
const KEY_USE_FLUSH: Duration = Duration::from_secs(60);

/// What to run in the background.
#[derive(Clone, Debug)]
pub struct BackgroundConfig {
    /// How often the feed consumers apply new changes (the bound on how
    /// long a write by another process takes to become searchable here).
    pub follow_interval: Duration,
    /// Job workers (`None`: this process runs none).
    pub workers: Option<WorkerConfig>,
}

/// The running background threads; [`Background::stop`] ends them.
pub struct Background {
    svc: Arc<Services>,
    stop: Arc<AtomicBool>,
    follower: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    workers: Option<JoinHandle<Result<WorkerSummary>>>,
}

impl Services {
    /// Starts the follower (and workers, if configured). From here on
    /// searches read the follower's last refresh and never commit.
    pub fn start_background(self: &Arc<Self>, cfg: BackgroundConfig) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        self.refresh_in_background();
        let follower = std::thread::spawn({
            let (svc, stop, every) = (self.clone(), stop.clone(), cfg.follow_interval);
            move || {
                let mut last_flush = Instant::now();
                let mut last_touch = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    svc.follow_feeds();
                    if last_flush.elapsed() >= ACCESS_LOG_FLUSH {
                        svc.flush_access_log();
                        last_flush = Instant::now();
                    }
                    if last_touch.elapsed() >= KEY_USE_FLUSH {
                        svc.flush_key_uses();
                        last_touch = Instant::now();
                    }
                    std::thread::sleep(every);
                }
            }
        });
        // The webhook dispatcher (the feed consumers whose results live in
        // the shared store) reacts to this process's writes at once rather
        // than at the follower's next tick: event-to-delivery latency is
        // then the dispatch and delivery, not up to a whole interval.
        let dispatcher = std::thread::spawn({
            let (svc, stop, every) = (self.clone(), stop.clone(), cfg.follow_interval);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let seen = svc.kernel().writes_seen();
                    svc.follow_shared_feeds();
                    svc.kernel().wait_for_writes(seen, every);
                    // let a burst of writes gather into one pass
                    std::thread::sleep(DISPATCH_GATHER);
                }
            }
        });
        let workers = cfg.workers.map(|wcfg| {
            let (svc, stop) = (self.clone(), stop.clone());
            std::thread::spawn(move || svc.run_workers(&wcfg, stop))
        });
        Background {
            svc: self.clone(),
            stop,
            follower,
            dispatcher,
            workers,
        }
    }
}

impl Background {
    /// Stops the follower and the workers (which give back what they hold
    /// at a safe point), then applies what the follower had not applied
    /// yet and writes buffered key uses and access-log entries. Blocks.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.follower.join().is_err() {
            tracing::warn!("the feed follower panicked");
        }
        if self.dispatcher.join().is_err() {
            tracing::warn!("the webhook dispatcher panicked");
        }
        if let Some(w) = self.workers {
            match w.join() {
                Ok(Ok(summary)) => tracing::info!(?summary, "workers stopped"),
                Ok(Err(e)) => tracing::warn!(error = %e, "workers stopped with an error"),
                Err(_) => tracing::warn!("a worker thread panicked"),
            }
        }
        self.svc.flush_key_uses();
        self.svc.flush_access_log();
        self.svc.follow_feeds();
    }
}

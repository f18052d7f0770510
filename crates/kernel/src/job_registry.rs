//! The job-handler registry: every kind of background work is a
//! [`JobHandler`] registered by name. The queue and the worker ask the
//! registry what a kind needs (its payload check, its attempts, its unique
//! key, whether this process can run it) and hand each claimed job to its
//! handler; they never name a kind themselves, so a new domain adds a kind
//! by registering a handler, not by editing the worker.

use std::sync::Arc;

use kontextual_model::{Job, JobId};
use serde::de::DeserializeOwned;

use crate::worker::JobControl;
use crate::{Caller, Error, Kernel, Permission, Resource, Result};

/// What jobs run on: the kernel, the handlers of every kind this process
/// knows, and whatever domains those handlers need. The composition root
/// builds it; the queue and the worker take it.
pub trait JobHost: Sync + Sized {
    fn kernel(&self) -> &Kernel;
    fn job_handlers(&self) -> &JobRegistry<Self>;
}

/// One kind of background work, run on the host `H` that holds the domain
/// it belongs to.
pub trait JobHandler<H>: Send + Sync {
    /// The kind's name, as stored in the queue (`ingest`, `noop`, …).
    fn kind(&self) -> &str;

    /// Attempts before a job of this kind is dead, unless the enqueuer says.
    fn max_attempts(&self) -> u32;

    /// The key that deduplicates waiting jobs of this kind when the
    /// enqueuer gives none (`None`: no deduplication).
    fn unique_key(&self, _payload: &serde_json::Value) -> Option<String> {
        None
    }

    /// Why this process cannot run the kind (`None`: it can). Such kinds
    /// are left to the process that can.
    fn unavailable_here(&self, _host: &H) -> Option<String> {
        None
    }

    /// How long to wait before the attempt after a failed `attempt`
    /// (1-based) of a retryable failure. `None` (the default): the worker's
    /// exponential backoff with jitter (`WorkerConfig::retry_base`,
    /// `retry_cap`). A failure's own [`JobFailure::retry_after`] can only
    /// make the wait longer.
    fn retry_delay(&self, _attempt: u32) -> Option<std::time::Duration> {
        None
    }

    /// Whether `caller` may enqueue this work, and its payload fits the
    /// kind. Also checked again before each attempt of a job enqueued with
    /// an API key (a revoked key or grant stops queued work too).
    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()>;

    /// Reads ahead for a worker's claimed batch of this kind, before its
    /// first attempt runs (e.g. every job's input in one query); each
    /// attempt finds the result in [`JobContext::prepared`]. `None` (the
    /// default, and whenever reading ahead fails): attempts read their own.
    /// What was read ahead is at most one batch old — a few milliseconds
    /// for quick jobs — so only read what an attempt may act on that late.
    fn prepare(&self, _host: &H, _jobs: &[&Job]) -> Option<Prepared> {
        None
    }

    /// Runs one attempt; `Ok` carries the report kept with the job.
    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure>;
}

/// What [`JobHandler::prepare`] read ahead for a batch.
pub type Prepared = Box<dyn std::any::Any + Send + Sync>;

/// Makes bookkeeping ops to write with an attempt's outcome (see
/// [`JobContext::record_with_outcome`]).
pub(crate) type Deferred = Box<dyn Fn() -> Vec<kontextual_store::Op> + Send>;

/// What a running attempt knows: who it runs as, which job it is, and
/// whether it has been asked to stop.
pub struct JobContext<'a> {
    /// The enqueuer, with the job's correlation id.
    pub caller: Caller,
    pub job: &'a Job,
    control: &'a JobControl,
    /// Bookkeeping written with the attempt's outcome (see [`Self::record_with_outcome`]).
    deferred: std::sync::Mutex<Vec<Deferred>>,
    /// What the kind's handler read ahead for the batch, if anything.
    prepared: Option<&'a (dyn std::any::Any + Send + Sync)>,
}

impl<'a> JobContext<'a> {
    pub(crate) fn new(caller: Caller, job: &'a Job, control: &'a JobControl) -> Self {
        JobContext {
            caller,
            job,
            control,
            deferred: std::sync::Mutex::new(Vec::new()),
            prepared: None,
        }
    }

    /// With what the handler read ahead for this job's batch.
    pub(crate) fn with_prepared(
        mut self,
        prepared: Option<&'a (dyn std::any::Any + Send + Sync)>,
    ) -> Self {
        self.prepared = prepared;
        self
    }

    /// What this kind's [`JobHandler::prepare`] read ahead for the batch
    /// this attempt belongs to, if it did and it is a `T`.
    pub fn prepared<T: 'static>(&self) -> Option<&T> {
        self.prepared.and_then(|p| p.downcast_ref::<T>())
    }

    /// Writes the ops `make` returns in the same transaction as this
    /// attempt's outcome (with the worker's batch of quick jobs: one commit
    /// for many attempts), instead of a commit of their own now. `make` may
    /// be called more than once (if the batch is refused, each outcome is
    /// written alone). Only bookkeeping the store does not audit may be
    /// deferred — it is written as the system, not as the job's caller;
    /// anything else is refused here with `InvalidInput`, so a handler
    /// cannot slip an unaudited change in. If the attempt's outcome cannot
    /// be recorded (the lease was lost), the ops are still written on their
    /// own: they record what happened.
    pub fn record_with_outcome(
        &self,
        make: impl Fn() -> Vec<kontextual_store::Op> + Send + 'static,
    ) -> Result<()> {
        if !make().iter().all(kontextual_store::Op::is_bookkeeping) {
            return Err(Error::InvalidInput(
                "only unaudited bookkeeping (job, feed and delivery-attempt records) can be written with a job's outcome"
                    .to_owned(),
            ));
        }
        self.deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(make));
        Ok(())
    }

    /// What [`Self::record_with_outcome`] collected, for the worker.
    pub(crate) fn take_deferred(&self) -> Vec<Deferred> {
        std::mem::take(
            &mut *self
                .deferred
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The attempt, for runs that point back at it (K6).
    pub fn link(&self) -> Option<(JobId, u32)> {
        Some((self.job.id, self.job.attempt))
    }

    /// An operator asked the job to stop, its lease was lost, or the
    /// worker is shutting down: stop at the next safe point.
    pub fn should_stop(&self) -> bool {
        self.control.should_stop()
    }

    /// The payload as the kind's input type.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T> {
        parse_payload(&self.job.kind, &self.job.payload)
    }
}

/// A job payload as its kind's input type: a JSON object with the type's
/// fields (an array is refused, though serde would fill a struct from one
/// by position). A payload that does not fit is `InvalidInput`.
pub fn parse_payload<T: DeserializeOwned>(kind: &str, payload: &serde_json::Value) -> Result<T> {
    if !payload.is_object() {
        return Err(Error::InvalidInput(format!(
            "{kind} job payload: expected a JSON object"
        )));
    }
    serde_json::from_value(payload.clone())
        .map_err(|e| Error::InvalidInput(format!("{kind} job payload: {e}")))
}

/// Why an attempt failed, with the partial-failure report to keep.
pub struct JobFailure {
    pub error: Error,
    pub report: Option<serde_json::Value>,
    /// Retry no sooner than this (a `Retry-After` the handler was given);
    /// the worker waits the longer of this and the kind's retry delay.
    /// Ignored when the error is not retryable.
    pub retry_after: Option<std::time::Duration>,
}

impl From<Error> for JobFailure {
    fn from(error: Error) -> Self {
        JobFailure {
            error,
            report: None,
            retry_after: None,
        }
    }
}

/// The handlers this process knows, in registration order.
pub struct JobRegistry<H> {
    handlers: Vec<Arc<dyn JobHandler<H>>>,
}

impl<H> Default for JobRegistry<H> {
    fn default() -> Self {
        JobRegistry {
            handlers: Vec::new(),
        }
    }
}

impl<H> JobRegistry<H> {
    /// Adds a kind. A name registered twice is a wiring mistake.
    pub fn register(&mut self, handler: Arc<dyn JobHandler<H>>) -> Result<()> {
        if self.handlers.iter().any(|h| h.kind() == handler.kind()) {
            return Err(Error::InvalidInput(format!(
                "job kind {:?} is registered twice",
                handler.kind()
            )));
        }
        self.handlers.push(handler);
        Ok(())
    }

    /// The handler of `kind`, or an error naming the kinds there are.
    pub fn get(&self, kind: &str) -> Result<&Arc<dyn JobHandler<H>>> {
        self.handlers
            .iter()
            .find(|h| h.kind() == kind)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown job kind {kind:?}; known kinds: {}",
                    self.kinds().collect::<Vec<_>>().join(", ")
                ))
            })
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.handlers.iter().map(|h| h.kind())
    }

    pub fn handlers(&self) -> impl Iterator<Item = &Arc<dyn JobHandler<H>>> {
        self.handlers.iter()
    }
}

/// The input of a `noop` job.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopPayload {
    /// Work this long (checking for a stop request as it goes).
    #[serde(default)]
    pub sleep_ms: u64,
    /// Fail every attempt with this error.
    #[serde(default)]
    pub fail: Option<String>,
    /// With `fail`: the error is not worth retrying.
    #[serde(default)]
    pub permanent: bool,
}

/// `noop`: does nothing (or sleeps, or fails, as its payload says); checks
/// the queue and workers end to end, and measures them. The kernel's own
/// kind: it needs no domain.
pub struct NoopJob;

impl<H: JobHost> JobHandler<H> for NoopJob {
    fn kind(&self) -> &str {
        "noop"
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        let _: NoopPayload = parse_payload("noop", payload)?;
        host.kernel()
            .authorize(caller, Permission::Admin, &Resource::Namespace("jobs"))
    }

    fn run(
        &self,
        _host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        use std::time::{Duration, Instant};
        let p: NoopPayload = ctx.payload()?;
        let until = Instant::now() + Duration::from_millis(p.sleep_ms);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if ctx.should_stop() {
                return Err(Error::Stopped("asked to stop".to_owned()).into());
            }
            std::thread::sleep(left.min(Duration::from_millis(5)));
        }
        match p.fail {
            Some(msg) if p.permanent => Err(Error::InvalidInput(msg).into()),
            // a failure of the system, as a test of retries needs
            Some(msg) => Err(Error::internal(format!("{msg}: noop job asked to fail")).into()),
            None => Ok(None),
        }
    }
}

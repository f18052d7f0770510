//! Jobs (O1, O2): enqueueing work, inspecting it, and the operator's
//! recovery actions. The worker that executes jobs is in `worker.rs`.
//!
//! A job is authorized when it is enqueued (the enqueuer must be allowed to
//! do its work); the worker then acts for that actor, with the job's
//! correlation id, so the records it writes trace back to the request.

use kontextual_model::{
    Change, Job, JobAttempt, JobId, JobState, JobTransition, RunId, RunSummary, Timestamp,
};
use kontextual_store::{JobAction, JobOp, JobQuery, NewJob, Op, Page, PageRequest};
use serde::Serialize;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::{
    Caller, Error, JobHost, Kernel, Permission, Resource, Result, WorkerConfig, WorkerSummary,
};

/// Largest job payload (serialized JSON): jobs carry instructions, not data.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Most jobs one enqueue call takes.
pub const MAX_ENQUEUE_BATCH: usize = 10_000;

/// How to enqueue.
#[derive(Clone, Debug, Default)]
pub struct EnqueueOptions {
    pub max_attempts: Option<u32>,
    /// Not before this instant (scheduled jobs).
    pub run_at: Option<Timestamp>,
    /// Deduplicate: while a job with this key waits, enqueueing returns it.
    pub unique_key: Option<String>,
}

/// What `enqueue` did.
#[derive(Clone, Debug, Serialize)]
pub struct Enqueued {
    pub job: Job,
    /// False when a waiting job with the same unique key was returned instead.
    pub created: bool,
}

/// A job with its history, for `job show`.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: Job,
    pub attempts: Vec<JobAttempt>,
    /// The runs its attempts made (K6), oldest first.
    pub runs: Vec<RunSummary>,
}

impl Kernel {
    pub fn job_show(&self, caller: &Caller, id: JobId) -> Result<JobView> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("jobs"))?;
        let job = self
            .store()
            .jobs()
            .get(&caller.namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        let attempts = self.store().jobs().attempts(&caller.namespace, id)?;
        let mut runs = Vec::new();
        for run in attempts.iter().filter_map(|a| a.run_id) {
            if let Some(r) = self.store().runs().summary(&caller.namespace, run)? {
                runs.push(r);
            }
        }
        Ok(JobView {
            job,
            attempts,
            runs,
        })
    }

    /// retry, cancel, quarantine or release (admin; audited; idempotent).
    pub fn job_act(&self, caller: &Caller, id: JobId, action: JobAction) -> Result<JobTransition> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("jobs"))?;
        self.write_one(
            caller,
            Op::Jobs(JobOp::ActOnJob { id, action }),
            |c| match c {
                Change::JobActed(t) => Some(t),
                _ => None,
            },
        )
    }

    /// Counts by kind and state, and the oldest due job (all namespaces):
    /// for metrics.
    pub fn job_stats(&self) -> Result<kontextual_model::JobStats> {
        Ok(self.store().jobs().stats()?)
    }

    /// Whether an artifact is quarantined (kept out of search, context
    /// packages, relation expansion, ingest and export).
    pub fn is_quarantined(
        &self,
        ns: &kontextual_model::Namespace,
        id: kontextual_model::ArtifactId,
    ) -> Result<bool> {
        Ok(!self.store().access().quarantines(ns, Some(id))?.is_empty())
    }

    pub fn quarantine_list(&self, caller: &Caller) -> Result<Vec<kontextual_model::Hold>> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("quarantines"),
        )?;
        Ok(self.store().access().quarantines(&caller.namespace, None)?)
    }
}

/// The queue's entry points that need the registry of job handlers: every
/// host has them.
pub trait JobQueue: JobHost {
    /// Enqueues a job after checking that the caller may do its work, and
    /// that its payload is what its kind expects.
    fn job_enqueue(
        &self,
        caller: &Caller,
        kind: &str,
        payload: serde_json::Value,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        let mut all = self.job_enqueue_many(caller, kind, vec![payload], opts)?;
        all.pop()
            .ok_or_else(|| Error::InvalidInput("nothing was enqueued".to_owned()))
    }

    /// Enqueues many jobs of one kind atomically, in one commit (all or none).
    fn job_enqueue_many(
        &self,
        caller: &Caller,
        kind: &str,
        payloads: Vec<serde_json::Value>,
        opts: EnqueueOptions,
    ) -> Result<Vec<Enqueued>> {
        let handler = self.job_handlers().get(kind)?;
        if payloads.len() > MAX_ENQUEUE_BATCH {
            return Err(Error::InvalidInput(format!(
                "{} jobs in one batch; the most is {MAX_ENQUEUE_BATCH}",
                payloads.len()
            )));
        }
        let mut ops = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let size = payload.to_string().len();
            if size > MAX_PAYLOAD_BYTES {
                return Err(Error::InvalidInput(format!(
                    "a job payload of {size} bytes is over the limit of {MAX_PAYLOAD_BYTES}"
                )));
            }
            handler.check(self, caller, &payload)?;
            let unique_key = opts
                .unique_key
                .clone()
                .or_else(|| handler.unique_key(&payload));
            if unique_key
                .as_deref()
                .is_some_and(|k| k.is_empty() || k.len() > 200)
            {
                return Err(Error::InvalidInput(
                    "a unique key has 1-200 characters".to_owned(),
                ));
            }
            ops.push(Op::Jobs(JobOp::EnqueueJob(NewJob {
                id: JobId::new(),
                kind: handler.kind().to_owned(),
                payload,
                max_attempts: opts.max_attempts.unwrap_or(handler.max_attempts()),
                run_at: opts.run_at,
                unique_key,
                key_id: caller.key_id.clone(),
                scopes: caller.scopes.clone(),
            })));
        }
        let out: Vec<Enqueued> = self
            .kernel()
            .write(caller, ops)?
            .into_iter()
            .filter_map(|c| match c {
                Change::JobEnqueued { job } => Some(Enqueued { job, created: true }),
                Change::JobUnchanged { job } => Some(Enqueued {
                    job,
                    created: false,
                }),
                _ => None,
            })
            .collect();
        self.kernel().job_signal.notify();
        Ok(out)
    }

    /// The job kinds this process knows, in registration order.
    fn job_kinds(&self) -> Vec<String> {
        self.job_handlers().kinds().map(str::to_owned).collect()
    }

    fn job_list(
        &self,
        caller: &Caller,
        state: Option<JobState>,
        kind: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Job>> {
        self.kernel()
            .authorize(caller, Permission::Admin, &Resource::Namespace("jobs"))?;
        if let Some(k) = kind {
            self.job_handlers().get(k)?;
        }
        let q = JobQuery {
            state,
            kind: kind.map(str::to_owned),
        };
        Ok(self
            .kernel()
            .store()
            .jobs()
            .list(&caller.namespace, &q, page)?)
    }

    /// `rerun RUN`: a new run from a past run's input bundle, as a job.
    fn rerun(&self, caller: &Caller, run: RunId) -> Result<Enqueued> {
        self.kernel()
            .authorize(caller, Permission::Admin, &Resource::Namespace("runs"))?;
        let past = self
            .kernel()
            .store()
            .runs()
            .get(&caller.namespace, run)?
            .ok_or_else(|| Error::NotFound(format!("run {run}")))?;
        let kind = self.job_handlers().get(&past.kind).map_err(|_| {
            Error::InvalidInput(format!(
                "run {run} is a {} run, which cannot be re-run",
                past.kind
            ))
        })?;
        let mut payload = past.input.clone();
        if let Some(o) = payload.as_object_mut() {
            // the input bundle names its kind; the payload does not
            o.remove("kind");
        }
        let kind = kind.kind().to_owned();
        self.job_enqueue(caller, &kind, payload, EnqueueOptions::default())
    }

    /// Runs workers until `stop` is set, then gives back what was claimed
    /// but not started, asks running jobs to stop at a safe point (they
    /// return to the queue) and returns once every thread is done.
    fn run_workers(&self, cfg: &WorkerConfig, stop: Arc<AtomicBool>) -> Result<WorkerSummary> {
        self.kernel().run_workers(self, cfg, stop)
    }
}

impl<H: JobHost> JobQueue for H {}

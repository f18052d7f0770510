//! The worker (O1, O2): claims due jobs under a lease, runs them, and
//! records each attempt's outcome; a heartbeat keeps leases of running jobs
//! alive and carries operators' stop requests to them; housekeeping prunes
//! finished jobs, acknowledged outbox events and old access-log entries.
//!
//! Throughput comes from the store's group commit: a worker that finds
//! quick jobs claims more at a time (up to `max_prefetch`) and completes
//! them in one batch, so claims and completions share commits; a slow job
//! sets the prefetch back to one, so no job waits behind a long one.
//! Durability: a completion is committed before it is counted anywhere.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontextual_model::{Change, Job, JobId, JobResult, JobState};
use kontextual_store::{AccessOp, ErrorKind as StoreKind, JobOp, Op, WriteBatch, WriteContext};
use serde::Serialize;

use crate::job_registry::{JobContext, JobFailure};
use crate::{Caller, Error, JobHost, Kernel};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Names this worker in leases and attempts (`host:pid:start/wN`).
    pub name: String,
    /// Jobs run at once (one thread each).
    pub threads: usize,
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// How long to wait before looking again when nothing is due.
    pub idle_poll: Duration,
    /// Most jobs one thread claims at a time (while jobs are quick). A
    /// commit has a fixed cost (on SQLite the single writer's turn, on
    /// PostgreSQL round trips): 256 webhook deliveries per commit deliver
    /// 15–30 % more per second than 64 on the benchmark; a slow job sends
    /// the jobs claimed ahead back, so a large batch never holds work up.
    pub max_prefetch: u32,
    /// Only these kinds; empty: every kind this process can run.
    pub kinds: Vec<String>,
    /// Finished jobs are kept this long, then pruned.
    pub job_retention: Duration,
    /// Acknowledged outbox events are kept this long.
    pub outbox_retention: Duration,
    /// Access-log entries are kept this long.
    pub access_log_retention: Duration,
    /// How often housekeeping runs.
    pub housekeeping_every: Duration,
    /// The first retry's delay; each later one doubles, up to `retry_cap`,
    /// with jitter.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Stop once no job is due, instead of waiting for more.
    pub drain: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            name: crate::this_process(),
            threads: 2,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(250),
            max_prefetch: 256,
            kinds: Vec::new(),
            job_retention: Duration::from_secs(14 * 24 * 3600),
            outbox_retention: Duration::from_secs(7 * 24 * 3600),
            access_log_retention: Duration::from_secs(90 * 24 * 3600),
            housekeeping_every: Duration::from_secs(600),
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(600),
            drain: false,
        }
    }
}

/// What a worker did until it stopped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerSummary {
    pub succeeded: u64,
    pub failed: u64,
    pub stopped: u64,
    pub returned: u64,
    /// Completions refused because the lease had been lost (the job was
    /// rescued and is someone else's now).
    pub lost: u64,
    /// Kinds this worker did not take because another process owns the
    /// search index they need.
    pub not_run_here: Vec<String>,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    stopped: AtomicU64,
    returned: AtomicU64,
    lost: AtomicU64,
}

/// What a running job can ask: should it stop?
pub(crate) struct JobControl {
    /// An operator asked (cancel, quarantine), or the lease was lost.
    requested: AtomicBool,
    /// The worker is shutting down.
    shutdown: Arc<AtomicBool>,
}

impl JobControl {
    /// The control of an attempt no worker runs (the contract suites),
    /// asked to stop from the start or not.
    #[cfg(feature = "contract")]
    pub(crate) fn new(stop: bool) -> Self {
        JobControl {
            requested: AtomicBool::new(stop),
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn should_stop(&self) -> bool {
        self.requested.load(Ordering::Relaxed) || self.shutdown.load(Ordering::Relaxed)
    }
}

/// A generation counter to wait on: wakes this process's idle workers when
/// it enqueues a job (workers in other processes find it at their next
/// poll), and its feed followers when it writes.
#[derive(Default)]
pub(crate) struct JobSignal {
    generation: Mutex<u64>,
    changed: std::sync::Condvar,
}

impl JobSignal {
    pub(crate) fn notify(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        *g += 1;
        self.changed.notify_all();
    }

    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the generation moves past `seen`, or `timeout`.
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) {
        let g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .map_err(|p| p.into_inner());
    }
}

/// An attempt's end: the job, its result, its report and the bookkeeping
/// its handler deferred to the outcome's commit.
type Outcome = (
    Job,
    JobResult,
    Option<serde_json::Value>,
    Vec<crate::job_registry::Deferred>,
);

/// Jobs this process holds leases on, for the heartbeat.
type Held = Mutex<HashMap<JobId, (u32, Arc<JobControl>, kontextual_model::Namespace)>>;

/// How often running jobs are checked for a stop request (cancel, quarantine).
const STOP_POLL: Duration = Duration::from_millis(500);

/// A batch of quick jobs commits once it has run this long, even with jobs
/// of it left (they stay claimed and are the first to run after): a job
/// that is itself a batch (a webhook's deliveries) is quick, and 256 of
/// them would hold thousands of outcomes uncommitted for seconds.
const BATCH_TIME: Duration = Duration::from_millis(50);

/// The next prefetch after a batch of quick jobs that was not cut: as many
/// as fit in [`BATCH_TIME`] at the pace `ran` jobs took `took`, at least
/// the prefetch so far and at most twice it. (Doubling every time made a
/// prefetch that fits swing between right and twice too many: every other
/// batch was cut, and the jobs it did not reach were read ahead twice — a
/// third of a webhook worker's delivery reads on PostgreSQL.)
fn paced(prefetch: u32, ran: u32, took: Duration, max: u32) -> u32 {
    let per_job = took.as_nanos() / u128::from(ran.max(1));
    let fit = BATCH_TIME.as_nanos() / per_job.max(1);
    let fit = u32::try_from(fit).unwrap_or(u32::MAX);
    fit.clamp(prefetch.max(1), prefetch.max(1).saturating_mul(2))
        .min(max.max(1))
}

fn system_ctx() -> WriteContext {
    WriteContext {
        namespace: kontextual_model::Namespace::default(),
        actor: kontextual_model::Actor::system(),
        correlation_id: kontextual_model::CorrelationId::new(),
        run_id: None,
    }
}

/// A uniform draw in [0, 1) for jitter, without a random-number crate.
fn unit_random(seed: JobId) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(seed.0.as_bytes());
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Sleeps up to `d`, waking early when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The longest wait before a retry, whatever a kind or a failure asks.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a job waits after a failed attempt: its kind's delay for the
/// attempt (else the configured backoff with jitter), but never less than
/// what the failure asked for.
fn retry_delay<H: JobHost>(
    host: &H,
    cfg: &WorkerConfig,
    job: &Job,
    retry_after: Option<Duration>,
) -> Duration {
    let kind = host
        .job_handlers()
        .get(&job.kind)
        .ok()
        .and_then(|h| h.retry_delay(job.attempt));
    let delay = kind.unwrap_or_else(|| {
        kontextual_model::job::backoff(
            job.attempt,
            cfg.retry_base,
            cfg.retry_cap,
            unit_random(job.id),
        )
    });
    retry_after
        .map_or(delay, |after| delay.max(after))
        .min(MAX_RETRY_DELAY)
}

impl Kernel {
    /// Runs workers until `stop` is set, then gives back what was claimed
    /// but not started, asks running jobs to stop at a safe point (they
    /// return to the queue) and returns once every thread is done.
    pub(crate) fn run_workers<H: JobHost>(
        &self,
        host: &H,
        cfg: &WorkerConfig,
        stop: Arc<AtomicBool>,
    ) -> Result<WorkerSummary, Error> {
        let kinds = self.runnable_kinds(host, cfg)?;
        tracing::info!(worker = %cfg.name, threads = cfg.threads, kinds = ?kinds, "workers started");
        // Where the store can say when another process enqueues (PostgreSQL
        // NOTIFY), idle workers wait for that and poll only now and then
        // (scheduled jobs, expired leases).
        let signal = self.job_signal.clone();
        let listening = match self
            .store()
            .jobs()
            .listen(Arc::new(move || signal.notify()), stop.clone())
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for new jobs; polling");
                false
            }
        };
        let idle_cfg;
        let cfg = if listening {
            idle_cfg = WorkerConfig {
                idle_poll: cfg.idle_poll.max(Duration::from_secs(2)),
                ..cfg.clone()
            };
            &idle_cfg
        } else {
            cfg
        };
        let held: Held = Mutex::new(HashMap::new());
        let counters = Counters::default();
        std::thread::scope(|scope| {
            let mut workers = Vec::new();
            for n in 0..cfg.threads.max(1) {
                let (held, counters, stop, kinds) = (&held, &counters, stop.clone(), kinds.clone());
                let name = format!("{}/w{n}", cfg.name);
                workers.push(scope.spawn(move || {
                    Kernel::work_loop(host, cfg, &name, &kinds, held, counters, stop)
                }));
            }
            scope.spawn(|| self.heartbeat_loop(cfg, &held, &stop));
            scope.spawn(|| self.housekeeping_loop(cfg, &stop));
            for w in workers {
                let _ = w.join();
            }
            // drained (or stopping anyway): end the heartbeat and housekeeping
            stop.store(true, Ordering::Relaxed);
        });
        tracing::info!(worker = %cfg.name, "workers stopped");
        let not_run_here = host
            .job_handlers()
            .kinds()
            .filter(|k| {
                !kinds.iter().any(|x| x == k)
                    && (cfg.kinds.is_empty() || cfg.kinds.iter().any(|x| x == k))
            })
            .map(str::to_owned)
            .collect();
        Ok(WorkerSummary {
            not_run_here,
            succeeded: counters.succeeded.into_inner(),
            failed: counters.failed.into_inner(),
            stopped: counters.stopped.into_inner(),
            returned: counters.returned.into_inner(),
            lost: counters.lost.into_inner(),
        })
    }

    /// The kinds this process can run: some need what only another
    /// process has (the search index's owner runs re-index and repair).
    fn runnable_kinds<H: JobHost>(
        &self,
        host: &H,
        cfg: &WorkerConfig,
    ) -> Result<Vec<String>, Error> {
        for k in &cfg.kinds {
            host.job_handlers().get(k)?;
        }
        let mut elsewhere: Vec<(String, String)> = Vec::new();
        let mut kinds: Vec<String> = Vec::new();
        for h in host.job_handlers().handlers() {
            if !cfg.kinds.is_empty() && !cfg.kinds.iter().any(|k| k == h.kind()) {
                continue;
            }
            match h.unavailable_here(host) {
                None => kinds.push(h.kind().to_owned()),
                Some(why) => elsewhere.push((h.kind().to_owned(), why)),
            }
        }
        if kinds.is_empty() {
            let why = elsewhere
                .iter()
                .map(|(k, why)| format!("{k} needs {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::InvalidInput(format!(
                "this worker can run none of the requested kinds ({why})"
            )));
        }
        Ok(kinds)
    }

    /// One worker thread. While jobs are quick, a batch's completions (and
    /// the next claim) are committed by a companion thread while the next
    /// batch already runs: the commit is off the critical path. Jobs claimed
    /// ahead are held (heartbeats extend their leases) from the moment
    /// they are claimed, and given back if the worker stops first.
    fn work_loop<H: JobHost>(
        host: &H,
        cfg: &WorkerConfig,
        name: &str,
        kinds: &[String],
        held: &Held,
        counters: &Counters,
        stop: Arc<AtomicBool>,
    ) {
        let this = host.kernel();
        let claim = |limit: u32| {
            Op::Jobs(JobOp::ClaimJobs {
                worker: name.to_owned(),
                kinds: kinds.to_vec(),
                limit,
                lease: cfg.lease,
            })
        };
        let hold = |jobs: &[Job]| -> Vec<Arc<JobControl>> {
            let mut h = held.lock().unwrap_or_else(|p| p.into_inner());
            jobs.iter()
                .map(|j| {
                    let c = Arc::new(JobControl {
                        requested: AtomicBool::new(false),
                        shutdown: stop.clone(),
                    });
                    h.insert(j.id, (j.attempt, c.clone(), j.namespace.clone()));
                    c
                })
                .collect()
        };
        // claimed jobs not started yet, each with its control (held)
        type Queue = std::collections::VecDeque<(Job, Arc<JobControl>)>;
        let queue_up = |queue: &mut Queue, jobs: Vec<Job>| {
            let controls = hold(&jobs);
            queue.extend(jobs.into_iter().zip(controls));
        };
        std::thread::scope(|s| {
            // the companion: commits completions with the next claim
            let (to_commit, commits) = std::sync::mpsc::channel::<(Vec<Outcome>, Op)>();
            let (to_worker, committed) = std::sync::mpsc::channel::<Vec<Job>>();
            s.spawn(move || {
                for (mut pending, then_claim) in commits {
                    let claimed = this
                        .complete(&mut pending, held, counters, Some(then_claim))
                        .unwrap_or_default();
                    if to_worker.send(claimed).is_err() {
                        return;
                    }
                }
            });
            let mut in_flight = false;
            let mut queue = Queue::new();
            // waits for the commit in flight and queues what it claimed
            let settle = |in_flight: &mut bool, queue: &mut Queue| {
                if std::mem::take(in_flight)
                    && let Ok(jobs) = committed.recv()
                {
                    queue_up(queue, jobs);
                }
            };
            let mut prefetch = 1u32;
            while !stop.load(Ordering::Relaxed) {
                let seen = this.job_signal.generation();
                if queue.is_empty() {
                    settle(&mut in_flight, &mut queue);
                }
                if queue.is_empty() {
                    let claimed = this.store().write(WriteBatch {
                        ctx: system_ctx(),
                        ops: vec![claim(prefetch)],
                    });
                    let jobs = match claimed.map(|mut c| c.pop()) {
                        Ok(Some(Change::JobsClaimed { jobs })) => jobs,
                        Ok(_) => Vec::new(),
                        Err(e) => {
                            let e = crate::Error::from(e);
                            if !crate::store_unavailable(&e, "claiming jobs") {
                                tracing::warn!(error = %e, "claiming jobs failed; retrying");
                            }
                            nap(cfg.idle_poll.max(Duration::from_millis(500)), &stop);
                            continue;
                        }
                    };
                    if jobs.is_empty() {
                        if cfg.drain {
                            break;
                        }
                        prefetch = 1;
                        this.job_signal.wait(seen, cfg.idle_poll);
                        continue;
                    }
                    queue_up(&mut queue, jobs);
                }
                let take = queue.len().min(prefetch.max(1) as usize);
                let batch: Vec<(Job, Arc<JobControl>)> = queue.drain(..take).collect();
                let prepared = {
                    let jobs: Vec<&Job> = batch.iter().map(|(j, _)| j).collect();
                    Self::prepare(host, &jobs)
                };
                let mut pending: Vec<Outcome> = Vec::new();
                let mut quick = true;
                let started = Instant::now();
                // jobs run before the batch was cut at BATCH_TIME, if it was
                let mut cut_at = None;
                let mut batch = batch.into_iter();
                let mut ran = 0u32;
                while let Some((job, ctl)) = batch.next() {
                    if stop.load(Ordering::Relaxed) {
                        // claimed but not started: give it back
                        pending.push((job, JobResult::Returned, None, Vec::new()));
                        continue;
                    }
                    let t = Instant::now();
                    let ahead_read = prepared.get(job.kind.as_str()).map(|p| &**p);
                    let (result, report, deferred) =
                        this.execute(host, cfg, &job, &ctl, ahead_read);
                    let elapsed = t.elapsed();
                    let result = match result {
                        JobResult::Stopped if !ctl.requested.load(Ordering::Relaxed) => {
                            JobResult::Returned
                        }
                        r => r,
                    };
                    let outcome = match &result {
                        JobResult::Succeeded => "succeeded",
                        JobResult::Failed { .. } => "failed",
                        JobResult::Stopped => "stopped",
                        JobResult::Returned => "returned",
                    };
                    metrics::histogram!("kontextual_job_duration_seconds", "kind" => job.kind.clone(), "outcome" => outcome)
                        .record(elapsed.as_secs_f64());
                    tracing::info!(
                        job = %job.id, kind = %job.kind, attempt = job.attempt, outcome,
                        correlation_id = %job.correlation_id, ms = elapsed.as_millis() as u64,
                        "job attempt ended"
                    );
                    pending.push((job, result, report, deferred));
                    if elapsed > Duration::from_millis(20) {
                        // A slow job: jobs claimed ahead go back to the
                        // queue for other workers rather than wait behind
                        // the next slow one.
                        quick = false;
                        settle(&mut in_flight, &mut queue);
                        pending.extend(
                            queue
                                .drain(..)
                                .map(|(job, _)| (job, JobResult::Returned, None, Vec::new())),
                        );
                        this.complete(&mut pending, held, counters, None);
                    }
                    ran += 1;
                    if quick && started.elapsed() >= BATCH_TIME {
                        // the rest run next, first; this batch commits now
                        let rest: Vec<_> = batch.by_ref().collect();
                        for item in rest.into_iter().rev() {
                            queue.push_front(item);
                        }
                        cut_at = Some(ran);
                    }
                }
                let go_on = quick && !stop.load(Ordering::Relaxed);
                prefetch = match cut_at {
                    // as many as fit in the time: claims keep pace with runs
                    Some(ran) if go_on => ran.clamp(1, cfg.max_prefetch.max(1)),
                    _ if go_on => paced(prefetch, ran, started.elapsed(), cfg.max_prefetch),
                    _ => 1,
                };
                // the previous batch's commit ran while this batch ran
                settle(&mut in_flight, &mut queue);
                if !go_on {
                    this.complete(&mut pending, held, counters, None);
                } else if !queue.is_empty() {
                    // the next batch is in hand: commit this one beside it
                    match to_commit.send((pending, claim(prefetch))) {
                        Ok(()) => in_flight = true,
                        Err(std::sync::mpsc::SendError((mut pending, _))) => {
                            this.complete(&mut pending, held, counters, None);
                        }
                    }
                } else {
                    // nothing in hand: complete and claim two batches' worth
                    // in one commit, so the next commit can run beside one
                    let jobs = this
                        .complete(&mut pending, held, counters, Some(claim(prefetch * 2)))
                        .unwrap_or_default();
                    queue_up(&mut queue, jobs);
                }
            }
            // Stopping (or drained): wait for the commit in flight, and give
            // back what was claimed and never started.
            settle(&mut in_flight, &mut queue);
            if !queue.is_empty() {
                let mut back: Vec<Outcome> = queue
                    .drain(..)
                    .map(|(job, _)| (job, JobResult::Returned, None, Vec::new()))
                    .collect();
                this.complete(&mut back, held, counters, None);
            }
            drop(to_commit);
        });
    }

    /// Each kind's read-ahead for a claimed batch (see
    /// [`crate::JobHandler::prepare`]); a handler that panics reading ahead
    /// gets none, and its attempts read their own.
    fn prepare<H: JobHost>(
        host: &H,
        jobs: &[&Job],
    ) -> HashMap<String, crate::job_registry::Prepared> {
        let mut by_kind: Vec<(&str, Vec<&Job>)> = Vec::new();
        for job in jobs {
            match by_kind.iter_mut().find(|(k, _)| *k == job.kind) {
                Some((_, list)) => list.push(job),
                None => by_kind.push((job.kind.as_str(), vec![job])),
            }
        }
        let mut out = HashMap::new();
        for (kind, list) in by_kind {
            let Ok(handler) = host.job_handlers().get(kind) else {
                continue;
            };
            let ahead = std::panic::catch_unwind(AssertUnwindSafe(|| handler.prepare(host, &list)));
            match ahead {
                Ok(Some(p)) => {
                    out.insert(kind.to_owned(), p);
                }
                Ok(None) => {}
                Err(_) => tracing::warn!(
                    kind,
                    "reading ahead for a batch panicked; each job reads its own"
                ),
            }
        }
        out
    }

    /// Commits the completions in one batch — with `then_claim`, the claim
    /// of the next jobs in the same commit, whose jobs are returned. If the
    /// store refuses the batch (one lease was lost), each completion is
    /// committed alone so the others still count, and nothing is claimed.
    fn complete(
        &self,
        pending: &mut Vec<Outcome>,
        held: &Held,
        counters: &Counters,
        then_claim: Option<Op>,
    ) -> Option<Vec<Job>> {
        if pending.is_empty() {
            return None;
        }
        let batch: Vec<Outcome> = std::mem::take(pending);
        let count = |job: &Job, r: Option<JobState>| {
            let c = match r {
                Some(JobState::Succeeded) => &counters.succeeded,
                Some(JobState::Failed | JobState::Dead) => &counters.failed,
                Some(JobState::Queued) => &counters.returned,
                Some(_) => &counters.stopped,
                None => &counters.lost,
            };
            c.fetch_add(1, Ordering::Relaxed);
            let state = r.map_or("lost", |s| s.as_str());
            metrics::counter!("kontextual_jobs_finished_total", "kind" => job.kind.clone(), "state" => state)
                .increment(1);
        };
        let finish = |(job, result, report, _): &Outcome| {
            Op::Jobs(JobOp::FinishJob {
                id: job.id,
                attempt: job.attempt,
                result: result.clone(),
                report: report.clone(),
            })
        };
        let deferred = |(_, _, _, deferred): &Outcome| -> Vec<Op> {
            deferred.iter().flat_map(|make| make()).collect()
        };
        // Every job's bookkeeping, then every outcome: runs of one kind,
        // which the store writes in a few statements.
        let mut ops: Vec<Op> = Vec::with_capacity(batch.len() * 2 + 1);
        for outcome in &batch {
            ops.extend(deferred(outcome));
        }
        ops.extend(batch.iter().map(finish));
        ops.extend(then_claim);
        let mut claimed = None;
        match self.store().write(WriteBatch {
            ctx: system_ctx(),
            ops,
        }) {
            Ok(changes) => {
                let mut finished = HashMap::new();
                for change in changes {
                    match change {
                        Change::JobFinished { id, state } => {
                            finished.insert(id, state);
                        }
                        Change::JobsClaimed { jobs } => claimed = Some(jobs),
                        _ => {}
                    }
                }
                for (job, _, _, _) in &batch {
                    count(job, finished.get(&job.id).copied());
                }
            }
            Err(_) => {
                for outcome in &batch {
                    let job = &outcome.0;
                    let mut ops = deferred(outcome);
                    let own = ops.len();
                    ops.push(finish(outcome));
                    let r = self.store().write(WriteBatch {
                        ctx: system_ctx(),
                        ops,
                    });
                    match r.map(|mut c| c.pop()) {
                        Ok(Some(Change::JobFinished { state, .. })) => count(job, Some(state)),
                        Ok(_) => count(job, None),
                        Err(e) => {
                            if e.kind() != StoreKind::Conflict {
                                tracing::warn!(job = %job.id, error = %e, "could not record a job's outcome; its lease will expire and it will run again");
                            } else {
                                tracing::warn!(job = %job.id, error = %e, "the job was rescued by another worker; this result is dropped");
                            }
                            // what the attempt did still happened: record it
                            if own > 0
                                && let Err(e) = self.store().write(WriteBatch {
                                    ctx: system_ctx(),
                                    ops: deferred(outcome),
                                })
                            {
                                tracing::warn!(job = %job.id, error = %e, "could not record what a job's attempt did");
                            }
                            count(job, None);
                        }
                    }
                }
            }
        }
        let mut h = held.lock().unwrap_or_else(|p| p.into_inner());
        for (j, _, _, _) in &batch {
            h.remove(&j.id);
        }
        claimed
    }

    /// Renews the leases of running jobs every lease/3 and, in between,
    /// looks for stop requests every `STOP_POLL`, so a cancel reaches a
    /// running job within about half a second (a read, not a write).
    fn heartbeat_loop(&self, cfg: &WorkerConfig, held: &Held, stop: &AtomicBool) {
        let renew_every = (cfg.lease / 3).max(Duration::from_millis(10));
        let tick = renew_every.min(STOP_POLL);
        let mut renewed = Instant::now();
        loop {
            nap(tick, stop);
            let now: Vec<(JobId, u32, Arc<JobControl>, kontextual_model::Namespace)> = held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(id, (a, c, ns))| (*id, *a, c.clone(), ns.clone()))
                .collect();
            let renew = renewed.elapsed() >= renew_every;
            if renew {
                renewed = Instant::now();
            }
            for (id, attempt, ctl, ns) in now {
                if !renew {
                    // a read: has an operator asked it to stop, or was it rescued?
                    if let Ok(Some(j)) = self.store().jobs().get(&ns, id)
                        && (j.stop_requested.is_some()
                            || j.state != JobState::Running
                            || j.attempt != attempt)
                    {
                        ctl.requested.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
                let r = self.store().write(WriteBatch {
                    ctx: system_ctx(),
                    ops: vec![Op::Jobs(JobOp::HeartbeatJob {
                        id,
                        attempt,
                        lease: cfg.lease,
                    })],
                });
                match r.map(|mut c| c.pop()) {
                    Ok(Some(Change::JobLeased { job })) if job.stop_requested.is_some() => {
                        ctl.requested.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    // finished or given back meanwhile: nothing to keep alive
                    Err(_)
                        if !held
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .contains_key(&id) => {}
                    Err(e) if e.kind() == StoreKind::Conflict => {
                        tracing::warn!(job = %id, error = %e, "lost the lease; stopping the job");
                        ctl.requested.store(true, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
                }
            }
            // keep beating until every held job is done, even when stopping
            if stop.load(Ordering::Relaxed)
                && held.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
            {
                return;
            }
        }
    }

    fn housekeeping_loop(&self, cfg: &WorkerConfig, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.housekeeping(cfg) {
                tracing::warn!(error = %e, "housekeeping failed");
            }
            nap(cfg.housekeeping_every, stop);
        }
    }

    /// Retention: finished jobs, acknowledged outbox events, old access-log
    /// entries; and runs left running by a dead process or a rescued job
    /// attempt are marked interrupted (so a cluster heals without anyone
    /// running `repair`). Safe to run from several processes at once.
    pub fn housekeeping(&self, cfg: &WorkerConfig) -> Result<(), Error> {
        let interrupted = self.recover_interrupted_runs()?;
        if !interrupted.is_empty() {
            tracing::info!(runs = ?interrupted, "marked runs of gone workers interrupted");
        }
        let now = kontextual_model::now();
        let ago = |d: Duration| {
            now.checked_sub(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
                .unwrap_or(now)
        };
        self.store().write(WriteBatch {
            ctx: system_ctx(),
            ops: vec![
                Op::Jobs(JobOp::PruneJobs {
                    finished_before: ago(cfg.job_retention),
                }),
                crate::feed::prune_op(ago(cfg.outbox_retention)),
                Op::Access(AccessOp::PruneAccessLog {
                    older_than: ago(cfg.access_log_retention),
                }),
            ],
        })?;
        Ok(())
    }

    /// Runs one attempt of a job as its enqueuer, with its correlation id.
    fn execute<H: JobHost>(
        &self,
        host: &H,
        cfg: &WorkerConfig,
        job: &Job,
        ctl: &JobControl,
        prepared: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> (
        JobResult,
        Option<serde_json::Value>,
        Vec<crate::job_registry::Deferred>,
    ) {
        let mut deferred = Vec::new();
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.attempt(host, job, ctl, prepared, &mut deferred)
        }));
        let outcome = run.unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(JobFailure::from(Error::internal(format!(
                "the job panicked: {msg}"
            ))))
        });
        let (result, report) = match outcome {
            Ok(report) => (JobResult::Succeeded, report),
            Err(JobFailure {
                error: Error::Stopped(_),
                report,
                ..
            }) => (JobResult::Stopped, report),
            Err(JobFailure {
                error,
                report,
                retry_after,
            }) => {
                // Bad input, a missing or forbidden target, and conflicts
                // (the output already exists, a legal hold, a stale
                // revision) fail the same way every time: no retry; an
                // operator fixes the cause and runs `job retry`.
                let retry_at = error.retryable().then(|| {
                    let delay = retry_delay(host, cfg, job, retry_after);
                    kontextual_model::now()
                        + jiff::SignedDuration::try_from(delay)
                            .unwrap_or(jiff::SignedDuration::ZERO)
                });
                (
                    JobResult::Failed {
                        error: error.to_string(),
                        retry_at,
                    },
                    report,
                )
            }
        };
        (result, report, deferred)
    }

    /// Hands the job to its kind's handler, as its enqueuer.
    fn attempt<H: JobHost>(
        &self,
        host: &H,
        job: &Job,
        ctl: &JobControl,
        prepared: Option<&(dyn std::any::Any + Send + Sync)>,
        deferred: &mut Vec<crate::job_registry::Deferred>,
    ) -> Result<Option<serde_json::Value>, JobFailure> {
        let caller = self.job_caller(job)?;
        let handler = host.job_handlers().get(&job.kind)?;
        // Whoever enqueued it must still be allowed to (a revoked key or
        // grant stops queued and retried work too).
        if caller.scopes.is_some() {
            handler.check(host, &caller, &job.payload)?;
        }
        let ctx = JobContext::new(caller, job, ctl).with_prepared(prepared);
        let result = handler.run(host, &ctx);
        *deferred = ctx.take_deferred();
        result
    }
}

impl Kernel {
    /// The caller a job runs as: its enqueuer, with the job's correlation id
    /// — and, for a job enqueued with an API key, that key (still valid),
    /// its scopes, and the actor's grants and clearance as they are now.
    fn job_caller(&self, job: &Job) -> Result<Caller, Error> {
        let mut caller = Caller {
            correlation_id: job.correlation_id.clone(),
            ..Caller::new(job.actor.clone(), job.namespace.clone())
        };
        let Some(scopes) = &job.scopes else {
            return Ok(caller);
        };
        let denied = |why: String| Error::Denied {
            actor: job.actor.to_string(),
            permission: "run",
            target: format!("job {}: {why}", job.id),
        };
        if let Some(id) = &job.key_id {
            let key = self
                .store()
                .access()
                .key(id)?
                .ok_or_else(|| denied(format!("its API key {id} no longer exists")))?;
            if key.revoked_at.is_some() {
                return Err(denied(format!("its API key {id} was revoked")));
            }
            if key.expires_at.is_some_and(|e| kontextual_model::now() >= e) {
                return Err(denied(format!("its API key {id} has expired")));
            }
        }
        caller.scopes = Some(scopes.clone());
        caller.key_id = job.key_id.clone();
        caller.grants = Some(Arc::new(
            self.store()
                .access()
                .grants(&job.namespace, Some(&job.actor))?,
        ));
        caller.clearance = Some(
            self.store()
                .access()
                .clearances(&job.namespace, Some(&job.actor))?
                .pop()
                .map_or(kontextual_model::Classification::Internal, |c| c.level),
        );
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kontextual_store::Store;
    use kontextual_store::sqlite::SqliteBackend;

    use super::*;
    use crate::job_registry::{JobHandler, JobRegistry, NoopJob};

    struct Host {
        kernel: Kernel,
        jobs: JobRegistry<Host>,
    }

    impl JobHost for Host {
        fn kernel(&self) -> &Kernel {
            &self.kernel
        }
        fn job_handlers(&self) -> &JobRegistry<Self> {
            &self.jobs
        }
    }

    /// A host on an in-memory store with these job handlers.
    fn host(handlers: Vec<Arc<dyn JobHandler<Host>>>) -> Host {
        let mut jobs = JobRegistry::default();
        for h in handlers {
            jobs.register(h).unwrap();
        }
        Host {
            kernel: Kernel::new(
                Store::new(SqliteBackend::memory().unwrap()),
                Box::new(crate::AllowAll),
            ),
            jobs,
        }
    }

    /// Runs `threads` workers until no job is due.
    fn drain(host: &Host, threads: usize) -> WorkerSummary {
        let cfg = WorkerConfig {
            threads,
            drain: true,
            ..WorkerConfig::default()
        };
        host.kernel
            .run_workers(host, &cfg, Arc::new(AtomicBool::new(false)))
            .unwrap()
    }

    /// A kind with its own schedule: 7 s per attempt.
    struct Paced;

    impl JobHandler<Host> for Paced {
        fn kind(&self) -> &str {
            "paced.kind"
        }
        fn max_attempts(&self) -> u32 {
            5
        }
        fn retry_delay(&self, attempt: u32) -> Option<Duration> {
            Some(Duration::from_secs(7 * u64::from(attempt)))
        }
        fn check(&self, _: &Host, _: &crate::Caller, _: &serde_json::Value) -> crate::Result<()> {
            Ok(())
        }
        fn run(
            &self,
            _: &Host,
            _: &JobContext<'_>,
        ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
            Ok(None)
        }
    }

    /// Defers an outbox acknowledgement to its outcome's commit, after
    /// checking that an audited op cannot be deferred.
    struct Deferring;

    impl JobHandler<Host> for Deferring {
        fn kind(&self) -> &str {
            "deferring.kind"
        }
        fn max_attempts(&self) -> u32 {
            1
        }
        fn check(&self, _: &Host, _: &crate::Caller, _: &serde_json::Value) -> crate::Result<()> {
            Ok(())
        }
        fn run(
            &self,
            host: &Host,
            ctx: &JobContext<'_>,
        ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
            let id = ctx.job.id;
            let refused = ctx.record_with_outcome(move || {
                vec![Op::Jobs(JobOp::ActOnJob {
                    id,
                    action: kontextual_store::JobAction::Cancel,
                })]
            });
            assert!(
                matches!(refused, Err(Error::InvalidInput(_))),
                "an audited op is refused"
            );
            let seq = host
                .kernel
                .store()
                .feed()
                .position()
                .map_err(Error::from)?
                .last_seq;
            ctx.record_with_outcome(move || {
                vec![Op::Feed(kontextual_store::FeedOp::AckOutbox {
                    consumer: "probe".to_owned(),
                    seq,
                })]
            })?;
            // not written yet: it goes with the outcome
            let cursors = host.kernel.store().feed().cursors().map_err(Error::from)?;
            assert!(!cursors.iter().any(|(name, _)| name == "probe"));
            Ok(Some(serde_json::json!({ "acked": seq })))
        }
    }

    /// O5/O2: what a handler defers with `record_with_outcome` is written
    /// in the commit that records the job's outcome, and only unaudited
    /// bookkeeping may be deferred.
    #[test]
    fn o5_deferred_bookkeeping_is_written_with_the_outcome() {
        let host = host(vec![Arc::new(Deferring)]);
        let admin = crate::Caller::new(kontextual_model::Actor::system(), Default::default());
        let enqueued = crate::JobQueue::job_enqueue(
            &host,
            &admin,
            "deferring.kind",
            serde_json::json!({}),
            Default::default(),
        )
        .unwrap();
        let summary = drain(&host, 1);
        assert_eq!(summary.succeeded, 1, "{summary:?}");
        let view = host.kernel.job_show(&admin, enqueued.job.id).unwrap();
        let acked = view.job.report.as_ref().unwrap()["acked"].as_u64().unwrap();
        assert!(acked > 0);
        let cursors = host.kernel.store().feed().cursors().unwrap();
        assert!(
            cursors.contains(&("probe".to_owned(), acked)),
            "{cursors:?}"
        );
    }

    /// Reads ahead for its batch (the batch's job ids), counting the calls;
    /// each attempt reports whether its id was read ahead.
    #[derive(Default)]
    struct ReadsAhead {
        batches: std::sync::atomic::AtomicUsize,
    }

    struct Ahead(Vec<JobId>);

    impl JobHandler<Host> for ReadsAhead {
        fn kind(&self) -> &str {
            "ahead.kind"
        }
        fn max_attempts(&self) -> u32 {
            1
        }
        fn check(&self, _: &Host, _: &crate::Caller, _: &serde_json::Value) -> crate::Result<()> {
            Ok(())
        }
        fn prepare(&self, _: &Host, jobs: &[&Job]) -> Option<crate::Prepared> {
            self.batches.fetch_add(1, Ordering::Relaxed);
            assert!(jobs.iter().all(|j| j.kind == "ahead.kind"), "only its kind");
            Some(Box::new(Ahead(jobs.iter().map(|j| j.id).collect())))
        }
        fn run(
            &self,
            _: &Host,
            ctx: &JobContext<'_>,
        ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
            if let Some(ms) = ctx.job.payload.get("sleep_ms").and_then(|v| v.as_u64()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
            let ahead = ctx
                .prepared::<Ahead>()
                .is_some_and(|a| a.0.contains(&ctx.job.id));
            assert!(
                ctx.prepared::<String>().is_none(),
                "typed: a wrong type is none"
            );
            Ok(Some(serde_json::json!({ "ahead": ahead })))
        }
    }

    fn every_job_found_its_read_ahead(host: &Host, admin: &crate::Caller, ids: &[JobId]) {
        for id in ids {
            let view = host.kernel.job_show(admin, *id).unwrap();
            assert_eq!(
                view.job.report,
                Some(serde_json::json!({ "ahead": true })),
                "job {id}"
            );
        }
    }

    /// O1: a kind's handler reads ahead once per claimed batch, and every
    /// attempt of the batch finds what was read; other kinds in the batch
    /// are not given it.
    #[test]
    fn o1_a_handler_reads_ahead_once_per_batch() {
        let ahead = Arc::new(ReadsAhead::default());
        let host = host(vec![ahead.clone(), Arc::new(NoopJob)]);
        let admin = crate::Caller::new(kontextual_model::Actor::system(), Default::default());
        let mut ids = Vec::new();
        for i in 0..20 {
            let kind = if i % 5 == 4 { "noop" } else { "ahead.kind" };
            let payload = if kind == "noop" {
                serde_json::json!({})
            } else {
                serde_json::json!({ "i": i })
            };
            let e = crate::JobQueue::job_enqueue(&host, &admin, kind, payload, Default::default())
                .unwrap();
            if kind == "ahead.kind" {
                ids.push(e.job.id);
            }
        }
        let summary = drain(&host, 1);
        assert_eq!(summary.succeeded, 20, "{summary:?}");
        every_job_found_its_read_ahead(&host, &admin, &ids);
        // batches of 1, 2, 4, 8, 16 (the prefetch grows while jobs are quick)
        let batches = ahead.batches.load(Ordering::Relaxed);
        assert!(
            (2..=6).contains(&batches),
            "{batches} read-aheads for 16 jobs"
        );
    }

    /// O1: after a batch that was not cut, the prefetch is what fits in
    /// BATCH_TIME at that batch's pace — doubling while jobs are instant,
    /// never more than fits, never less than before.
    #[test]
    fn o1_the_prefetch_follows_the_pace_of_quick_jobs() {
        let ms = Duration::from_millis;
        // instant jobs: doubles, up to the maximum
        assert_eq!(paced(8, 8, Duration::from_micros(80), 256), 16);
        assert_eq!(paced(200, 200, ms(1), 256), 256);
        // 4 jobs of 8 ms: about six fit in 50 ms
        assert_eq!(paced(4, 4, ms(32), 256), 6);
        // the prefetch that fits stays where it is
        assert_eq!(paced(24, 24, ms(48), 256), 25);
        assert_eq!(paced(24, 24, ms(49), 256), 24);
        // a batch slower than the time but not cut (too few to cut) keeps it
        assert_eq!(paced(6, 6, ms(60), 256), 6);
        // nothing ran, or took no time: no division by zero
        assert_eq!(paced(1, 0, Duration::ZERO, 256), 2);
        assert_eq!(paced(0, 0, Duration::ZERO, 0), 1);
    }

    /// O1: a batch of quick jobs commits once it has run for BATCH_TIME;
    /// the jobs it did not reach run next, read ahead again with their
    /// new batch, and the prefetch follows what fits in the time.
    #[test]
    fn o1_a_long_batch_of_quick_jobs_commits_in_time() {
        let ahead = Arc::new(ReadsAhead::default());
        let host = host(vec![ahead.clone()]);
        let admin = crate::Caller::new(kontextual_model::Actor::system(), Default::default());
        let mut ids = Vec::new();
        for i in 0..40 {
            // quick (under 20 ms) each, slow together
            let payload = serde_json::json!({ "i": i, "sleep_ms": 8 });
            let e = crate::JobQueue::job_enqueue(
                &host,
                &admin,
                "ahead.kind",
                payload,
                Default::default(),
            )
            .unwrap();
            ids.push(e.job.id);
        }
        let summary = drain(&host, 1);
        assert_eq!(summary.succeeded, 40, "{summary:?}");
        every_job_found_its_read_ahead(&host, &admin, &ids);
        // uncut, batches of 1, 2, 4, 8, 16 and 9 (six); cut at 50 ms, at
        // most about six jobs of 8 ms each
        let batches = ahead.batches.load(Ordering::Relaxed);
        assert!(batches >= 8, "{batches} batches for 40 jobs of 8 ms");
    }

    /// O1/O2: quick jobs claimed ahead while a batch runs are all run
    /// once; after a slow job they go back to the queue, and a drained
    /// worker leaves nothing claimed.
    #[test]
    fn o1_jobs_claimed_ahead_run_once_or_go_back() {
        let host = host(vec![Arc::new(NoopJob)]);
        let admin = crate::Caller::new(kontextual_model::Actor::system(), Default::default());
        let mut ids = Vec::new();
        for i in 0..300 {
            // a slow job now and then, among quick ones
            let sleep_ms = if i % 97 == 50 { 40 } else { 0 };
            let e = crate::JobQueue::job_enqueue(
                &host,
                &admin,
                "noop",
                serde_json::json!({ "sleep_ms": sleep_ms }),
                Default::default(),
            )
            .unwrap();
            ids.push(e.job.id);
        }
        let summary = drain(&host, 2);
        assert_eq!(summary.succeeded, 300, "{summary:?}");
        for id in ids {
            let view = host.kernel.job_show(&admin, id).unwrap();
            assert_eq!(view.job.state, kontextual_model::JobState::Succeeded);
            // given back unstarted at most; run (and succeeded) once
            let attempts = host
                .kernel
                .store()
                .jobs()
                .attempts(&Default::default(), id)
                .unwrap();
            let ran: Vec<_> = attempts
                .iter()
                .filter(|a| {
                    matches!(
                        a.outcome,
                        kontextual_model::AttemptOutcome::Succeeded
                            | kontextual_model::AttemptOutcome::Failed
                            | kontextual_model::AttemptOutcome::Lost
                    )
                })
                .map(|a| a.outcome)
                .collect();
            assert_eq!(
                ran,
                [kontextual_model::AttemptOutcome::Succeeded],
                "job {id}: {attempts:?}"
            );
        }
    }

    fn job(kind: &str, attempt: u32) -> Job {
        let now = kontextual_model::now();
        Job {
            id: JobId::new(),
            namespace: Default::default(),
            kind: kind.to_owned(),
            payload: serde_json::json!({}),
            state: JobState::Running,
            attempt,
            max_attempts: 5,
            run_at: now,
            unique_key: None,
            worker: None,
            lease_expires_at: None,
            stop_requested: None,
            last_error: None,
            report: None,
            actor: kontextual_model::Actor::system(),
            correlation_id: Default::default(),
            created_at: now,
            updated_at: now,
            finished_at: None,
            key_id: None,
            scopes: None,
        }
    }

    /// O5/O2: a kind may set its own retry delay, a failure may ask for a
    /// longer one (`Retry-After`), and other kinds keep the backoff.
    #[test]
    fn o5_retry_delays_come_from_the_kind_and_the_failure() {
        let host = host(vec![Arc::new(NoopJob), Arc::new(Paced)]);
        let cfg = WorkerConfig::default();
        let paced = job("paced.kind", 2);
        assert_eq!(
            retry_delay(&host, &cfg, &paced, None),
            Duration::from_secs(14)
        );
        assert_eq!(
            retry_delay(&host, &cfg, &paced, Some(Duration::from_secs(60))),
            Duration::from_secs(60),
            "a failure's retry-after is a lower bound"
        );
        assert_eq!(
            retry_delay(&host, &cfg, &paced, Some(Duration::from_secs(1))),
            Duration::from_secs(14)
        );
        assert_eq!(
            retry_delay(&host, &cfg, &paced, Some(Duration::from_secs(u64::MAX))),
            MAX_RETRY_DELAY
        );
        // the default: exponential backoff with jitter, within its bounds
        let noop = job("noop", 3);
        let d = retry_delay(&host, &cfg, &noop, None);
        assert!(d >= cfg.retry_base * 2 && d <= cfg.retry_base * 4, "{d:?}");
    }
}

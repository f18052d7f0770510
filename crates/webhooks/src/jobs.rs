//! The webhooks' job kinds: `webhook.deliver_batch` (the first attempts of
//! a webhook's fresh deliveries, the dispatcher's fast path),
//! `webhook.deliver` (one delivery, one attempt per job attempt, on the
//! Standard Webhooks schedule) and `webhook.recover` (resend what failed
//! since a time). All run on any process with workers; the worker's claims
//! (`SKIP LOCKED` on PostgreSQL) make each attempt run once.
//!
//! A batch is only a fast path: a delivery whose first attempt fails goes
//! on as its own `webhook.deliver` at its retry time, and once one attempt
//! fails (or the batch has run for [`HAND_ON_AFTER`]) the deliveries not
//! tried yet go on as their own jobs at once — so a failing endpoint is
//! tried delivery by delivery, as before, and a slow one is shared out
//! among the worker threads. A batch makes first attempts only: run again
//! (after a crash or a lost lease), it hands a delivery already tried on
//! to the job that has it and tries the others. A batch keeps up to
//! `in_flight` attempts in flight at once (scoped threads taking the next
//! delivery in turn, one keep-alive connection each) when they can help
//! (see [`LANES_AFTER`]); a failure stops the taking, and the attempts
//! already in flight finish and are recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kontextual_kernel::{
    Caller, DomainError, EnqueueOptions, Enqueued, Error, ErrorKind, JobContext, JobFailure,
    JobHandler, JobHost, JobQueue, Permission, Prepared, Result, parse_payload,
};
use kontextual_model::{
    DELIVER_BATCH_JOB, DELIVER_JOB, DeliveryDetail, DeliveryId, DeliveryState, Timestamp, Webhook,
    WebhookId, WebhookSecrets, WebhookState,
};
use kontextual_store::{DeliveryOutcome, DeliveryToSend, Op, WebhookOp, WebhookToSend};
use serde::{Deserialize, Serialize};

use crate::service::RESOURCE;
use crate::{
    Attempt, DELAYS, Destination, Headers, MAX_ATTEMPTS, Secret, Webhooks, next_delay, seed_of,
    should_disable, unix_now,
};

/// The job kind that resends a webhook's failed deliveries.
pub const RECOVER_JOB: &str = "webhook.recover";

/// After this long, a batch hands the deliveries it has not tried on to
/// jobs of their own, which the other worker threads share.
pub const HAND_ON_AFTER: Duration = Duration::from_millis(500);

/// A batch's other lanes start once its attempts have all taken at least
/// this long, over [`SLOW_AFTER_ATTEMPTS`] of them or more: a receiver
/// that answers sooner (on the same machine or the same rack) leaves the
/// thread little time to wait, and every lane costs a thread and a
/// connection — on a busy machine, more CPU than the waiting it saves. A
/// receiver a network away, or one that works before it answers, takes
/// longer every time, and then the lanes keep `in_flight` attempts going.
/// (The fastest attempt, not any one: on a machine whose cores are all
/// busy, a quick receiver's answer now and then waits for a core longer.)
/// A batch also starts them at once while fewer batches are sending than
/// the process has cores (the lanes keep the spare one busy while the
/// thread waits), and for a webhook whose last batch found it slow.
pub const LANES_AFTER: Duration = Duration::from_millis(2);

/// How many attempts of a batch judge its receiver (see [`LANES_AFTER`]).
pub const SLOW_AFTER_ATTEMPTS: usize = 2;

/// Whether a batch's attempts say its receiver is slow: `tried` attempts,
/// the fastest of them `fastest`.
fn receiver_is_slow(tried: usize, fastest: Duration) -> bool {
    tried >= SLOW_AFTER_ATTEMPTS && fastest >= LANES_AFTER
}

/// A batch counted in [`Webhooks::batches_running`] while it sends.
struct RunningBatch<'a> {
    webhooks: &'a Webhooks,
    /// Fewer batches were sending, this one included, than there are cores.
    spare_core: bool,
}

impl<'a> RunningBatch<'a> {
    fn enter(webhooks: &'a Webhooks) -> RunningBatch<'a> {
        let running = webhooks.batches_running.fetch_add(1, Ordering::Relaxed) + 1;
        RunningBatch {
            webhooks,
            spare_core: running < webhooks.cores,
        }
    }
}

impl Drop for RunningBatch<'_> {
    fn drop(&mut self) {
        self.webhooks
            .batches_running
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the webhooks' jobs run on: a job host that holds the domain.
pub trait WebhooksHost: JobHost {
    fn webhooks(&self) -> &Webhooks;
    /// Whether `caller` may see `event` on the feed (the kernel's read rule
    /// with every domain's say): a webhook is sent only what its creator
    /// may read.
    fn event_visible(&self, caller: &Caller, event: &kontextual_model::OutboxEvent) -> bool;
}

/// The webhooks' job handlers, to register with the job registry.
pub fn job_handlers<H: WebhooksHost>() -> Vec<Arc<dyn JobHandler<H>>> {
    vec![
        Arc::new(DeliverJob),
        Arc::new(DeliverBatchJob),
        Arc::new(RecoverJob),
    ]
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverPayload {
    delivery: DeliveryId,
    /// Attempts made before this job (by a batch): the schedule goes on
    /// from there.
    #[serde(default, skip_serializing_if = "is_zero")]
    tried: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverBatchPayload {
    deliveries: Vec<DeliveryId>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverPayload {
    webhook: WebhookId,
    since: Timestamp,
}

/// The check both kinds make at enqueue time: the payload has the kind's
/// shape and the caller administers webhooks.
fn check_admin<H: WebhooksHost, P: serde::de::DeserializeOwned>(
    host: &H,
    caller: &Caller,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<()> {
    parse_payload::<P>(kind, payload)?;
    host.kernel()
        .authorize(caller, Permission::Admin, &RESOURCE)
}

/// A delivery attempt that did not succeed, for the job's last error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotDelivered(String);

/// Delivers one delivery: one HTTP attempt per job attempt.
struct DeliverJob;

impl<H: WebhooksHost> JobHandler<H> for DeliverJob {
    fn kind(&self) -> &str {
        DELIVER_JOB
    }

    fn max_attempts(&self) -> u32 {
        MAX_ATTEMPTS
    }

    /// A floor only: the schedule's first wait less the jitter. A failed
    /// attempt's own delay — the schedule's at [`schedule_position`], or a
    /// longer `Retry-After` — arrives as the failure's `retry_after` and
    /// wins. (The job's attempt number alone is no guide: a job given back
    /// unstarted, or rescued after a lost lease, counts an attempt that
    /// sent nothing.)
    fn retry_delay(&self, _attempt: u32) -> Option<Duration> {
        Some(DELAYS[1].mul_f64(0.8))
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        check_admin::<H, DeliverPayload>(host, caller, DELIVER_JOB, payload)
    }

    /// Every delivery of the worker's batch of jobs with its webhook and
    /// secrets in one read (one round trip on PostgreSQL instead of one per
    /// delivery).
    fn prepare(&self, host: &H, jobs: &[&kontextual_model::Job]) -> Option<Prepared> {
        let ids: Vec<DeliveryId> = jobs
            .iter()
            .filter_map(|j| parse_payload::<DeliverPayload>(DELIVER_JOB, &j.payload).ok())
            .map(|p| p.delivery)
            .collect();
        read_ahead(host, &ids)
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: DeliverPayload = ctx.payload()?;
        host.webhooks().deliver(ctx, p.delivery, p.tried)
    }
}

/// The first attempts of a webhook's fresh deliveries (see the module docs).
struct DeliverBatchJob;

impl<H: WebhooksHost> JobHandler<H> for DeliverBatchJob {
    fn kind(&self) -> &str {
        DELIVER_BATCH_JOB
    }

    /// A batch job is run again only after a crash, a lost lease or a
    /// refused commit; keep trying on the schedule.
    fn max_attempts(&self) -> u32 {
        MAX_ATTEMPTS
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        check_admin::<H, DeliverBatchPayload>(host, caller, DELIVER_BATCH_JOB, payload)
    }

    fn prepare(&self, host: &H, jobs: &[&kontextual_model::Job]) -> Option<Prepared> {
        let ids: Vec<DeliveryId> = jobs
            .iter()
            .filter_map(|j| {
                parse_payload::<DeliverBatchPayload>(DELIVER_BATCH_JOB, &j.payload).ok()
            })
            .flat_map(|p| p.deliveries)
            .collect();
        read_ahead(host, &ids)
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: DeliverBatchPayload = ctx.payload()?;
        Ok(Some(host.webhooks().deliver_batch(ctx, &p.deliveries)))
    }
}

/// Deliveries with their webhook and secrets, read in one go. At most a
/// batch old when sent: a webhook disabled or a secret rotated meanwhile
/// shows from the next batch on (a rotated-out secret stays valid for its
/// grace period anyway).
fn read_ahead<H: WebhooksHost>(host: &H, ids: &[DeliveryId]) -> Option<Prepared> {
    match host.webhooks().kernel.store().webhooks().to_send_many(ids) {
        Ok(found) => Some(Box::new(ReadAhead(std::sync::Mutex::new(
            found.into_iter().map(|f| (f.delivery.id, f)).collect(),
        )))),
        Err(e) => {
            tracing::debug!(error = %e, "reading a batch of deliveries ahead failed; each reads its own");
            None
        }
    }
}

/// A batch's deliveries read ahead by [`read_ahead`], any namespace; each
/// taken (not copied) by the attempt that sends it — the batch's lanes
/// take them at once, hence the lock.
struct ReadAhead(std::sync::Mutex<std::collections::HashMap<DeliveryId, DeliveryToSend>>);

/// Resends a webhook's failed and dead deliveries since a time.
struct RecoverJob;

impl<H: WebhooksHost> JobHandler<H> for RecoverJob {
    fn kind(&self) -> &str {
        RECOVER_JOB
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        check_admin::<H, RecoverPayload>(host, caller, RECOVER_JOB, payload)
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: RecoverPayload = ctx.payload()?;
        let resent = host
            .webhooks()
            .recover_now(&ctx.caller, p.webhook, p.since)?;
        Ok(Some(serde_json::json!({ "resent": resent })))
    }
}

/// Enqueues `webhook.recover` (checked now: the webhook must exist).
pub fn recover<H: WebhooksHost>(
    host: &H,
    caller: &Caller,
    webhook: WebhookId,
    since: Timestamp,
) -> Result<Enqueued> {
    crate::service::refuse_if_disabled(&host.webhooks().get(caller, webhook)?.webhook)?;
    let payload = serde_json::to_value(RecoverPayload { webhook, since })
        .map_err(|e| Error::internal(e.to_string()))?;
    host.job_enqueue(caller, RECOVER_JOB, payload, EnqueueOptions::default())
}

/// How an attempt ends the delivery.
struct Ending {
    state: DeliveryState,
    status: Option<u16>,
    latency: Option<Duration>,
    error: Option<String>,
    response: Option<String>,
    /// Wait this long before the next attempt (a failure with attempts left).
    retry_in: Option<Duration>,
    /// Disable the webhook, for this reason.
    disable: Option<String>,
}

impl Ending {
    fn dead(error: String) -> Ending {
        Ending {
            state: DeliveryState::Dead,
            status: None,
            latency: None,
            error: Some(error),
            response: None,
            retry_in: None,
            disable: None,
        }
    }
}

/// Which attempt of its delivery an attempt is, on the whole schedule.
#[derive(Clone, Copy, Debug)]
struct Nth {
    /// 1 for the first attempt.
    number: u32,
    /// No attempt follows this one, whatever its outcome.
    last: bool,
}

/// What one delivery comes to before it is sent: sent, or not (and why).
enum Found {
    /// Send it (its webhook is enabled) or end it unsent (disabled).
    Open(Box<(DeliveryDetail, Arc<WebhookToSend>)>),
    /// Nothing to do: the report's reason.
    Skip(String),
}

/// A batch's shared state while its lanes send (see
/// [`Webhooks::deliver_batch`]).
struct Batch<'a> {
    ids: &'a [DeliveryId],
    /// The index of the next delivery a lane takes.
    next: AtomicUsize,
    /// False once an attempt failed or could not be made, or the batch has
    /// run for [`HAND_ON_AFTER`]: the deliveries not taken yet are handed on.
    sending: AtomicBool,
    started: Instant,
    /// Attempts made, and the fastest of them (µs): see [`LANES_AFTER`].
    tried: AtomicUsize,
    fastest_us: std::sync::atomic::AtomicU64,
}

impl Batch<'_> {
    fn stop(&self) {
        self.sending.store(false, Ordering::Relaxed);
    }

    /// Counts an attempt that took `took`; says whether the batch's
    /// receiver is slow now.
    fn attempted(&self, took: Duration) -> bool {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let fastest = self.fastest_us.fetch_min(us, Ordering::Relaxed).min(us);
        let tried = self.tried.fetch_add(1, Ordering::Relaxed) + 1;
        receiver_is_slow(tried, Duration::from_micros(fastest))
    }

    /// What the batch's attempts say of its receiver: slow, quick, or
    /// (fewer than [`SLOW_AFTER_ATTEMPTS`]) nothing.
    fn verdict(&self) -> Option<bool> {
        let tried = self.tried.load(Ordering::Relaxed);
        let fastest = Duration::from_micros(self.fastest_us.load(Ordering::Relaxed));
        (tried >= SLOW_AFTER_ATTEMPTS).then(|| receiver_is_slow(tried, fastest))
    }
}

/// What a batch did with one of its deliveries.
enum Step {
    /// Nothing to do (finished, deleted).
    Skipped,
    /// Not tried: on to a job of its own, at once.
    HandOn(DeliveryId),
    /// Tried once; disable the webhook if the attempt says so.
    Tried {
        outcome: DeliveryOutcome,
        disable: Option<Box<(Webhook, String)>>,
    },
}

impl Webhooks {
    /// A delivery with its webhook and secrets, as the job's namespace
    /// sees it: read ahead with the worker's batch, or now.
    fn find(&self, ctx: &JobContext<'_>, id: DeliveryId) -> Result<Found> {
        let ns = &ctx.job.namespace;
        let ahead = ctx
            .prepared::<ReadAhead>()
            .and_then(|a| {
                a.0.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id)
            })
            .map(|f| f.scoped(ns));
        let found = match ahead {
            Some(found) => found,
            None => self.kernel.store().webhooks().to_send(ns, id)?,
        };
        let Some(found) = found else {
            return Ok(Found::Skip("the delivery no longer exists".into()));
        };
        let DeliveryToSend {
            delivery,
            body,
            webhook,
        } = found;
        if delivery.state.is_final() {
            return Ok(Found::Skip(format!("the delivery is {}", delivery.state)));
        }
        let Some(webhook) = webhook else {
            return Ok(Found::Skip("the webhook was deleted".into()));
        };
        let detail = DeliveryDetail {
            delivery,
            body,
            attempts: Vec::new(),
        };
        Ok(Found::Open(Box::new((detail, webhook))))
    }

    /// Sends the delivery once — or, its webhook disabled, ends it unsent.
    fn try_once(
        &self,
        nth: Nth,
        webhook: &Webhook,
        secrets: &WebhookSecrets,
        detail: &DeliveryDetail,
    ) -> Result<Ending> {
        if webhook.state == WebhookState::Disabled {
            return Ok(Ending::dead("not sent: the webhook is disabled".into()));
        }
        self.attempt(nth, webhook, secrets, detail)
    }

    /// One attempt of a delivery job (see [`DeliverJob`]); `tried`
    /// attempts were made before the job.
    fn deliver(
        &self,
        ctx: &JobContext<'_>,
        id: DeliveryId,
        tried: u32,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let (detail, hook) = match self.find(ctx, id)? {
            Found::Open(open) => *open,
            Found::Skip(why) => return Ok(Some(serde_json::json!({ "skipped": why }))),
        };
        let (webhook, secrets) = &*hook;
        let number = schedule_position(tried, ctx.job.attempt, detail.delivery.attempts);
        let nth = Nth {
            number,
            last: number >= MAX_ATTEMPTS || ctx.job.attempt >= ctx.job.max_attempts,
        };
        let ending = self.try_once(nth, webhook, secrets, &detail)?;
        let outcome = outcome_of(&detail, &ending);
        // The attempt is recorded in the commit that records the job's
        // outcome: one commit for a worker's whole batch of jobs.
        ctx.record_with_outcome(move || {
            vec![Op::Webhooks(WebhookOp::RecordAttempt(outcome.clone()))]
        })?;
        if let Some(reason) = &ending.disable {
            self.disable(webhook, reason)?;
        }
        let report = report_of(&detail, &ending);
        match ending.retry_in {
            None => Ok(Some(report)),
            Some(wait) => Err(JobFailure {
                error: Error::Domain(DomainError::new(
                    ErrorKind::Unavailable,
                    NotDelivered(format!(
                        "delivery {} attempt {} failed: {}",
                        detail.delivery.id,
                        nth.number,
                        ending.error.as_deref().unwrap_or("no 2xx answer")
                    )),
                )),
                report: Some(report),
                retry_after: Some(wait),
            }),
        }
    }

    /// The first attempts of a batch of fresh deliveries (see
    /// [`DeliverBatchJob`] and the module docs). When the receiver is slow
    /// (see [`LANES_AFTER`]) or a core is spare, up to
    /// [`WebhooksConfig::in_flight`] attempts are in flight at once (one
    /// connection each): a worker thread would otherwise spend most of a
    /// batch waiting on one receiver's answer at a time. Every attempt, and
    /// every hand-on, is recorded in the commit that finishes the job; a
    /// batch never fails as a whole.
    fn deliver_batch(&self, ctx: &JobContext<'_>, ids: &[DeliveryId]) -> serde_json::Value {
        let lanes = self.config.in_flight.clamp(1, ids.len().max(1));
        let batch = Batch {
            ids,
            next: AtomicUsize::new(0),
            sending: AtomicBool::new(true),
            started: Instant::now(),
            tried: AtomicUsize::new(0),
            fastest_us: std::sync::atomic::AtomicU64::new(u64::MAX),
        };
        // the batch's webhook (a batch is one webhook's), if read ahead
        let webhook = ctx.prepared::<ReadAhead>().and_then(|a| {
            let ahead =
                a.0.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            ids.first()
                .and_then(|id| ahead.get(id))
                .map(|f| f.delivery.webhook)
        });
        let slow_receivers = || {
            self.slow_receivers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        // A core no other batch is using: the lanes keep it busy while
        // this thread waits, however quick the receiver.
        let running = RunningBatch::enter(self);
        let eager = running.spare_core || webhook.is_some_and(|w| slow_receivers().contains(&w));
        let steps: Vec<Step> = if lanes == 1 {
            self.lane(ctx, &batch, &mut || {})
        } else {
            // the lanes log within the job's span, as the job's own thread does
            let span = tracing::Span::current();
            std::thread::scope(|s| {
                // The other lanes start once the batch's attempts find the
                // receiver slow (see [`LANES_AFTER`]) — at once if a core
                // is spare or the webhook's last batch found it slow; a
                // lane the OS will not start is one fewer: the others take
                // its share.
                let mut others = Vec::new();
                let mut started = false;
                let mut start_others = || {
                    if std::mem::replace(&mut started, true) {
                        return;
                    }
                    others = (1..lanes)
                        .filter_map(|_| {
                            std::thread::Builder::new()
                                .name("kx-webhook-lane".into())
                                .spawn_scoped(s, || {
                                    span.in_scope(|| self.lane(ctx, &batch, &mut || {}))
                                })
                                .map_err(
                                    |e| tracing::warn!(error = %e, "could not start a delivery lane"),
                                )
                                .ok()
                        })
                        .collect();
                };
                if eager {
                    start_others();
                }
                let mut steps = self.lane(ctx, &batch, &mut start_others);
                for lane in others {
                    match lane.join() {
                        Ok(more) => steps.extend(more),
                        // the job fails and runs again: what was tried is
                        // handed on then (see the module docs)
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                steps
            })
        };
        if let (Some(w), Some(verdict)) = (webhook, batch.verdict()) {
            let mut slow = slow_receivers();
            if verdict {
                // bounded by the webhooks this process has served
                if slow.len() >= 4096 {
                    slow.clear();
                }
                slow.insert(w);
            } else {
                slow.remove(&w);
            }
        }
        let mut outcomes = Vec::new();
        let mut hand_on: Vec<(DeliveryId, Option<Timestamp>)> = Vec::new();
        let mut disable: Option<(Webhook, String)> = None;
        let (mut delivered, mut not_delivered, mut skipped) = (0u32, 0u32, 0u32);
        for step in steps {
            match step {
                Step::Skipped => skipped += 1,
                Step::HandOn(id) => hand_on.push((id, None)),
                Step::Tried {
                    outcome,
                    disable: reason,
                } => {
                    if outcome.state == DeliveryState::Succeeded {
                        delivered += 1;
                    } else {
                        not_delivered += 1;
                    }
                    if let Some(at) = outcome.next_attempt_at {
                        hand_on.push((outcome.delivery, Some(at)));
                    }
                    if let Some(reason) = reason {
                        disable = Some(*reason);
                    }
                    outcomes.push(outcome);
                }
            }
        }
        let handed_on = hand_on.len();
        ctx.record_with_outcome(move || {
            let mut ops: Vec<Op> = outcomes
                .iter()
                .map(|o| Op::Webhooks(WebhookOp::RecordAttempt(o.clone())))
                .collect();
            if !hand_on.is_empty() {
                ops.push(Op::Webhooks(WebhookOp::ContinueDeliveries {
                    deliveries: hand_on.clone(),
                    max_attempts: MAX_ATTEMPTS,
                }));
            }
            ops
        })
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "a batch's attempts could not be deferred to its outcome");
        });
        if let Some((webhook, reason)) = &disable
            && let Err(e) = self.disable(webhook, reason)
        {
            tracing::warn!(webhook = %webhook.id, error = %e, "could not disable a webhook");
        }
        serde_json::json!({
            "delivered": delivered,
            "not_delivered": not_delivered,
            "handed_on": handed_on,
            "skipped": skipped,
        })
    }

    /// One lane of a batch: takes the batch's next delivery until none is
    /// left, sending it while the batch is still sending and handing it on
    /// otherwise. `slow` is called after each attempt once the batch's
    /// receiver is found slow (see [`LANES_AFTER`]).
    fn lane(&self, ctx: &JobContext<'_>, batch: &Batch<'_>, slow: &mut dyn FnMut()) -> Vec<Step> {
        let mut steps = Vec::new();
        loop {
            let i = batch.next.fetch_add(1, Ordering::Relaxed);
            let Some(&id) = batch.ids.get(i) else {
                return steps;
            };
            let step = if batch.sending.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let step = self.first_attempt(ctx, id, batch);
                if batch.attempted(sent.elapsed()) {
                    slow();
                }
                step
            } else {
                // the store skips it if it is finished meanwhile
                Step::HandOn(id)
            };
            steps.push(step);
            if batch.started.elapsed() >= HAND_ON_AFTER {
                batch.stop();
            }
        }
    }

    /// A batch's first attempt of one delivery.
    fn first_attempt(&self, ctx: &JobContext<'_>, id: DeliveryId, batch: &Batch<'_>) -> Step {
        let (detail, hook) = match self.find(ctx, id) {
            Ok(Found::Open(open)) => *open,
            Ok(Found::Skip(_)) => return Step::Skipped,
            Err(e) => {
                tracing::warn!(delivery = %id, error = %e, "could not read a delivery of a batch; handing the rest on");
                batch.stop();
                return Step::HandOn(id);
            }
        };
        if detail.delivery.attempts > 0 {
            // tried by an earlier run of this batch, and handed on then
            // (the store keeps the job it has)
            return Step::HandOn(id);
        }
        let nth = Nth {
            number: 1,
            last: MAX_ATTEMPTS <= 1,
        };
        let (webhook, secrets) = &*hook;
        let ending = match self.try_once(nth, webhook, secrets, &detail) {
            Ok(ending) => ending,
            Err(e) => {
                tracing::warn!(delivery = %id, error = %e, "could not attempt a delivery of a batch; handing the rest on");
                batch.stop();
                return Step::HandOn(id);
            }
        };
        if ending.state != DeliveryState::Succeeded && webhook.state == WebhookState::Enabled {
            // a failing endpoint: the rest go one by one, on the schedule,
            // as any delivery's retries do
            batch.stop();
        }
        let outcome = outcome_of(&detail, &ending);
        Step::Tried {
            outcome,
            disable: ending
                .disable
                .map(|reason| Box::new((webhook.clone(), reason))),
        }
    }

    fn disable(&self, webhook: &Webhook, reason: &str) -> Result<()> {
        tracing::warn!(webhook = %webhook.id, %reason, "webhook disabled");
        self.kernel.write(
            &Self::system(webhook.namespace.clone()),
            vec![Op::Webhooks(WebhookOp::SetWebhookState {
                id: webhook.id,
                state: WebhookState::Disabled,
                reason: Some(reason.to_owned()),
            })],
        )?;
        Ok(())
    }

    /// Signs and sends the delivery's body once, and says how that ends it.
    fn attempt(
        &self,
        nth: Nth,
        webhook: &Webhook,
        stored: &WebhookSecrets,
        detail: &DeliveryDetail,
    ) -> Result<Ending> {
        let dest = match Destination::parse(&webhook.url) {
            Ok(d) => d,
            Err(e) => return Ok(Ending::dead(format!("not sent: {e}"))),
        };
        let now = kontextual_model::now();
        let mut secrets = vec![Secret::parse(&stored.current)];
        if let Some(previous) = &stored.previous
            && stored.previous_expires_at.is_some_and(|at| at > now)
        {
            secrets.push(Secret::parse(previous));
        }
        let secrets: Vec<Secret> = secrets
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::internal(format!("webhook {} secret: {e}", webhook.id)))?;
        let refs: Vec<&Secret> = secrets.iter().collect();
        let msg_id = detail.delivery.id.to_string();
        let headers = Headers::sign(&msg_id, unix_now(), &detail.body, &refs)
            .map_err(|e| Error::internal(e.to_string()))?;
        let attempt = self.client.attempt(&dest, &headers, &detail.body);
        Ok(match attempt {
            Attempt::Delivered {
                status,
                latency,
                response,
            } => Ending {
                state: DeliveryState::Succeeded,
                status: Some(status),
                latency: Some(latency),
                error: None,
                response: Some(response),
                retry_in: None,
                disable: None,
            },
            Attempt::Refused { addr, reason } => Ending::dead(format!(
                "refused: {addr} is {reason}; deliveries never go there unless an operator allows its network"
            )),
            Attempt::Failed {
                status,
                error,
                retry_after,
                gone,
                latency,
                response,
            } => {
                let failing_too_long = webhook
                    .first_failure_at
                    .is_some_and(|first| should_disable(first.into(), now.into()));
                let disable = if gone {
                    Some("the receiver answered 410 Gone".to_owned())
                } else if failing_too_long {
                    Some("deliveries failed for 5 days".to_owned())
                } else {
                    None
                };
                let retry_in = if disable.is_some() || nth.last {
                    None
                } else {
                    next_delay(nth.number, retry_after, seed_of(&msg_id))
                };
                Ending {
                    state: if retry_in.is_some() {
                        DeliveryState::Failed
                    } else {
                        DeliveryState::Dead
                    },
                    status,
                    latency: Some(latency),
                    error: Some(error),
                    response: Some(response).filter(|r| !r.is_empty()),
                    retry_in,
                    disable,
                }
            }
        })
    }
}

/// Which attempt on the schedule a delivery job's run makes (1 for the
/// first): its job's count — the attempts made before the job (`tried`,
/// by a batch) plus the job's attempt number — but never more than one
/// past the attempts its delivery has recorded, because a job's attempt
/// number also counts runs that sent nothing (a job given back
/// unstarted, or rescued after a lost lease). A resend's job starts at 1
/// whatever the delivery recorded before: a fresh schedule.
fn schedule_position(tried: u32, job_attempt: u32, recorded: u32) -> u32 {
    let by_job = tried.saturating_add(job_attempt);
    let by_delivery = recorded.max(tried).saturating_add(1);
    by_job.min(by_delivery).max(1)
}

/// The attempt as the store records it.
fn outcome_of(detail: &DeliveryDetail, ending: &Ending) -> DeliveryOutcome {
    let now = kontextual_model::now();
    let next_attempt_at = ending.retry_in.and_then(|d| {
        let d = jiff::SignedDuration::try_from(d).ok()?;
        now.checked_add(d).ok()
    });
    DeliveryOutcome {
        delivery: detail.delivery.id,
        at: now,
        status: ending.status,
        latency_ms: ending
            .latency
            .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
        error: ending.error.clone(),
        response: ending.response.clone(),
        state: ending.state,
        next_attempt_at,
    }
}

/// A delivery job's report.
fn report_of(detail: &DeliveryDetail, ending: &Ending) -> serde_json::Value {
    serde_json::json!({
        "delivery": detail.delivery.id,
        "state": ending.state,
        "status": ending.status,
        "error": ending.error,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Batch, receiver_is_slow, schedule_position};

    /// O5: a batch's other lanes start when every attempt so far, two at
    /// least, took 2 ms or more — not on one slow attempt among quick
    /// ones (a busy machine's hiccup), not on one attempt alone.
    #[test]
    fn o5_lanes_start_for_a_receiver_that_is_slow_every_time() {
        let ms = Duration::from_millis;
        assert!(!receiver_is_slow(1, ms(60)), "one attempt judges nothing");
        assert!(receiver_is_slow(2, ms(2)));
        assert!(!receiver_is_slow(5, Duration::from_micros(1_999)));
        let ids = [kontextual_model::DeliveryId::new(); 4];
        let batch = Batch {
            ids: &ids,
            next: Default::default(),
            sending: std::sync::atomic::AtomicBool::new(true),
            started: std::time::Instant::now(),
            tried: Default::default(),
            fastest_us: std::sync::atomic::AtomicU64::new(u64::MAX),
        };
        assert_eq!(batch.verdict(), None);
        assert!(!batch.attempted(ms(10)), "one slow attempt");
        assert_eq!(batch.verdict(), None);
        assert!(batch.attempted(ms(12)), "two slow attempts");
        assert_eq!(batch.verdict(), Some(true));
        // a quick answer among them: a quick receiver on a busy machine
        assert!(!batch.attempted(Duration::from_micros(300)));
        assert!(!batch.attempted(ms(40)));
        assert_eq!(batch.verdict(), Some(false));
    }

    /// O5: a delivery's place on the retry schedule.
    #[test]
    fn o5_the_schedule_counts_attempts_that_sent_something() {
        // a delivery's own job, first run: attempt 1
        assert_eq!(schedule_position(0, 1, 0), 1);
        // its retries: 2, 3
        assert_eq!(schedule_position(0, 2, 1), 2);
        assert_eq!(schedule_position(0, 3, 2), 3);
        // given back unstarted twice before its second try: still 2
        assert_eq!(schedule_position(0, 4, 1), 2);
        // handed on by a batch after one attempt there: the second
        assert_eq!(schedule_position(1, 1, 1), 2);
        // a resend of a delivery that gave up after eight: a fresh start
        assert_eq!(schedule_position(0, 1, 8), 1);
        assert_eq!(schedule_position(0, 2, 9), 2);
    }
}

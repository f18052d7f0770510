//! The webhooks' job kinds: `webhook.deliver` (one delivery, one attempt
//! per job attempt, on the Standard Webhooks schedule) and
//! `webhook.recover` (resend what failed since a time). Both run on any
//! process with workers; the worker's claims (`SKIP LOCKED` on PostgreSQL)
//! make each attempt run once.

use std::sync::Arc;
use std::time::Duration;

use kontextual_kernel::{
    Caller, DomainError, EnqueueOptions, Enqueued, Error, ErrorKind, JobContext, JobFailure,
    JobHandler, JobHost, JobQueue, Permission, Prepared, Result, parse_payload,
};
use kontextual_model::{
    DELIVER_JOB, DeliveryDetail, DeliveryId, DeliveryState, Timestamp, Webhook, WebhookId,
    WebhookSecrets, WebhookState,
};
use kontextual_store::{DeliveryOutcome, DeliveryToSend, Op, WebhookOp};
use serde::{Deserialize, Serialize};

use crate::service::RESOURCE;
use crate::{
    Attempt, DELAYS, Destination, Headers, MAX_ATTEMPTS, Secret, Webhooks, next_delay, seed_of,
    should_disable, unix_now,
};

/// The job kind that resends a webhook's failed deliveries.
pub const RECOVER_JOB: &str = "webhook.recover";

/// What the webhooks' jobs run on: a job host that holds the domain.
pub trait WebhooksHost: JobHost {
    fn webhooks(&self) -> &Webhooks;
}

/// The webhooks' job handlers, to register with the job registry.
pub fn job_handlers<H: WebhooksHost>() -> Vec<Arc<dyn JobHandler<H>>> {
    vec![Arc::new(DeliverJob), Arc::new(RecoverJob)]
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverPayload {
    delivery: DeliveryId,
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

    /// The schedule's shortest wait (its delay less the jitter); the
    /// attempt's own jittered delay, or a longer `Retry-After`, arrives as
    /// the failure's `retry_after` and wins.
    fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        let base = DELAYS.get(usize::try_from(attempt).ok()?)?;
        Some(base.mul_f64(0.8))
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        check_admin::<H, DeliverPayload>(host, caller, DELIVER_JOB, payload)
    }

    /// Every delivery of the batch with its webhook and secrets in one
    /// read (one round trip on PostgreSQL instead of one per delivery).
    /// At most a batch old when sent: a webhook disabled or a secret
    /// rotated meanwhile shows from the next batch on (a rotated-out secret
    /// stays valid for its grace period anyway).
    fn prepare(&self, host: &H, jobs: &[&kontextual_model::Job]) -> Option<Prepared> {
        let ids: Vec<DeliveryId> = jobs
            .iter()
            .filter_map(|j| parse_payload::<DeliverPayload>(DELIVER_JOB, &j.payload).ok())
            .map(|p| p.delivery)
            .collect();
        match host.webhooks().kernel.store().webhooks().to_send_many(&ids) {
            Ok(found) => Some(Box::new(ReadAhead(
                found.into_iter().map(|f| (f.delivery.id, f)).collect(),
            ))),
            Err(e) => {
                tracing::debug!(error = %e, "reading a batch of deliveries ahead failed; each reads its own");
                None
            }
        }
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: DeliverPayload = ctx.payload()?;
        host.webhooks().deliver(ctx, p.delivery)
    }
}

/// A batch's deliveries read ahead by [`DeliverJob::prepare`], any namespace.
struct ReadAhead(std::collections::HashMap<DeliveryId, DeliveryToSend>);

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
    host.webhooks().get(caller, webhook)?;
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

impl Webhooks {
    /// One attempt of a delivery job (see [`DeliverJob`]).
    fn deliver(
        &self,
        ctx: &JobContext<'_>,
        id: DeliveryId,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let ns = &ctx.job.namespace;
        // read ahead with the batch, or now: the delivery, its webhook and
        // the secrets, as this job's namespace sees them
        let ahead = ctx
            .prepared::<ReadAhead>()
            .and_then(|a| a.0.get(&id))
            .map(|f| f.clone().scoped(ns));
        let found = match ahead {
            Some(found) => found,
            None => self
                .kernel
                .store()
                .webhooks()
                .to_send(ns, id)
                .map_err(Error::from)?,
        };
        let Some(found) = found else {
            return Ok(Some(
                serde_json::json!({ "skipped": "the delivery no longer exists" }),
            ));
        };
        let DeliveryToSend {
            delivery,
            body,
            webhook,
        } = found;
        if delivery.state.is_final() {
            return Ok(Some(
                serde_json::json!({ "skipped": format!("the delivery is {}", delivery.state) }),
            ));
        }
        let Some((webhook, secrets)) = webhook else {
            return Ok(Some(
                serde_json::json!({ "skipped": "the webhook was deleted" }),
            ));
        };
        let detail = DeliveryDetail {
            delivery,
            body,
            attempts: Vec::new(),
        };
        let ending = if webhook.state == WebhookState::Disabled {
            Ending::dead("not sent: the webhook is disabled".into())
        } else {
            self.attempt(ctx, &webhook, &secrets, &detail)?
        };
        self.record(ctx, &webhook, &detail, ending)
    }

    /// Signs and sends the delivery's body once, and says how that ends it.
    fn attempt(
        &self,
        ctx: &JobContext<'_>,
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
        let last_attempt = ctx.job.attempt >= ctx.job.max_attempts;
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
                let retry_in = if disable.is_some() || last_attempt {
                    None
                } else {
                    next_delay(ctx.job.attempt, retry_after, seed_of(&msg_id))
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

    /// Records the attempt, disables the webhook if the attempt says so,
    /// and tells the worker whether to try again.
    fn record(
        &self,
        ctx: &JobContext<'_>,
        webhook: &Webhook,
        detail: &DeliveryDetail,
        ending: Ending,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let now = kontextual_model::now();
        let next_attempt_at = ending.retry_in.and_then(|d| {
            let d = jiff::SignedDuration::try_from(d).ok()?;
            now.checked_add(d).ok()
        });
        let outcome = DeliveryOutcome {
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
        };
        let system = Self::system(webhook.namespace.clone());
        // The attempt is recorded in the commit that records the job's
        // outcome: one commit for a worker's whole batch of deliveries.
        ctx.record_with_outcome(move || {
            vec![Op::Webhooks(WebhookOp::RecordAttempt(outcome.clone()))]
        })?;
        if let Some(reason) = &ending.disable {
            tracing::warn!(webhook = %webhook.id, %reason, "webhook disabled");
            self.kernel.write(
                &system,
                vec![Op::Webhooks(WebhookOp::SetWebhookState {
                    id: webhook.id,
                    state: WebhookState::Disabled,
                    reason: Some(reason.clone()),
                })],
            )?;
        }
        let report = serde_json::json!({
            "delivery": detail.delivery.id,
            "state": ending.state,
            "status": ending.status,
            "error": ending.error,
        });
        match ending.retry_in {
            None => Ok(Some(report)),
            Some(wait) => Err(JobFailure {
                error: Error::Domain(DomainError::new(
                    ErrorKind::Unavailable,
                    NotDelivered(format!(
                        "delivery {} attempt {} failed: {}",
                        detail.delivery.id,
                        ctx.job.attempt,
                        ending.error.as_deref().unwrap_or("no 2xx answer")
                    )),
                )),
                report: Some(report),
                retry_after: Some(wait),
            }),
        }
    }
}

//! The dispatcher: a feed consumer that turns outbox events into
//! deliveries. For each event, in sequence order, every enabled webhook of
//! the event's namespace whose filters match gets one delivery, whose body
//! (the CloudEvent, or the thin payload above 20 KiB) is fixed now. The
//! deliveries, their jobs (a `webhook.deliver_batch` per run of up to
//! [`DELIVERIES_PER_JOB`] of one webhook) and the consumer's cursor are written
//! in one transaction: a crash before it loses nothing (the events are read
//! again), a crash after it creates nothing twice — and if two processes
//! dispatch the same events, the store's unique (webhook, event) key keeps
//! one delivery each.

use std::time::{Duration, Instant};

use kontextual_events::{CloudEvent, source_base};
use kontextual_kernel::{Caller, FeedConsumer, Result};
use kontextual_model::{Actor, DeliveryId, Namespace, OutboxEvent, TypePattern, Webhook};
use kontextual_store::{FeedOp, NewDelivery, Op, WebhookOp};

use crate::{MAX_ATTEMPTS, Webhooks, WebhooksHost, select_body};

/// The name the dispatcher's cursor is recorded under.
pub const CONSUMER: &str = "webhooks";
/// Events read per batch, at most: each batch is a read and at least one
/// commit; 1,024 rather than 256 took a PostgreSQL dispatch of 10,000
/// events from ~750 to ~500 ms beside four busy workers.
const BATCH: u32 = 1024;
/// The first batch of a pass: small, so the workers have deliveries soon
/// after a burst of events; each batch after it doubles, up to [`BATCH`].
const FIRST_BATCH: u32 = 128;
/// At most this many deliveries per transaction (the store takes 10,000).
const MAX_DELIVERIES: usize = 4096;
/// A webhook's fresh deliveries go out in `webhook.deliver_batch` jobs of
/// up to this many: one job's three row writes (enqueue, claim, finish)
/// shared by 32 deliveries instead of each paying them, while a burst of
/// events still spreads over the worker threads.
pub const DELIVERIES_PER_JOB: u32 = 32;
/// Deliveries to create and the event they go up to, for the committing
/// thread of a dispatch pass.
type Commit = (Vec<NewDelivery>, u64);
/// With no webhook enabled, how often the cursor skips to the head.
const SKIP_EVERY: Duration = Duration::from_secs(1);
/// How often a process prunes finished deliveries past retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The feed consumer that creates deliveries (see the module docs).
pub struct WebhookDispatcher;

/// The dispatcher, to register with the feed runtime.
pub fn feed_consumer<H: WebhooksHost>() -> std::sync::Arc<dyn FeedConsumer<H>> {
    std::sync::Arc::new(WebhookDispatcher)
}

impl<H: WebhooksHost> FeedConsumer<H> for WebhookDispatcher {
    fn name(&self) -> &str {
        CONSUMER
    }

    fn follow(&self, host: &H) -> Result<()> {
        host.webhooks()
            .dispatch(&|caller, event| host.event_visible(caller, event))
            .map(|_| ())
    }
}

/// Whether a caller may see an event (the host's read rule).
pub type Visibility<'a> = &'a dyn Fn(&Caller, &OutboxEvent) -> bool;

/// One webhook's filters, parsed once per pass, and the caller it reads
/// the feed as: its creator.
struct Subscriber<'w> {
    webhook: &'w Webhook,
    patterns: Vec<TypePattern>,
    /// Whom the webhook's events must be visible to: the actor that
    /// created it, with the scopes of the key it used (and its grants and
    /// clearance now) — or, created by the local administrator (the CLI),
    /// no one narrower.
    viewer: Caller,
}

impl<'w> Subscriber<'w> {
    fn new(webhooks: &Webhooks, webhook: &'w Webhook) -> Result<Subscriber<'w>> {
        let viewer = match &webhook.creator_scopes {
            None => Caller::new(webhook.created_by.clone(), webhook.namespace.clone()),
            Some(scopes) => webhooks.kernel.caller_as(
                webhook.created_by.clone(),
                webhook.namespace.clone(),
                scopes.clone(),
            )?,
        };
        Ok(Subscriber {
            webhook,
            // stored patterns were checked when written
            patterns: webhook
                .types
                .iter()
                .filter_map(|t| TypePattern::parse(t).ok())
                .collect(),
            viewer,
        })
    }

    fn wants(&self, event: &OutboxEvent, visible: Visibility<'_>) -> bool {
        let w = self.webhook;
        w.namespace == event.namespace
            // a webhook receives what happened after it was created (not
            // its own creation)
            && event.at >= w.created_at
            && !(event.draft.kind == "webhook.created" && event.draft.subject == w.id.to_string())
            && TypePattern::any_matches(&self.patterns, &event.draft.kind)
            && (w.collections.is_empty()
                || event
                    .draft
                    .payload
                    .get("collection")
                    .and_then(|c| c.as_str())
                    .is_some_and(|n| w.collections.iter().any(|c| c.as_str() == n)))
            && visible(&self.viewer, event)
    }
}

/// The body every attempt of a delivery sends: the CloudEvent as JSON, or
/// — above [`crate::MAX_BODY`] — the envelope without `data`, with a
/// `dataref` the receiver can fetch the event from (`/v1/events/{seq}`).
pub fn body_of(event: &OutboxEvent, base: &str) -> Vec<u8> {
    let ce = CloudEvent::of(event, base);
    let full = serde_json::to_vec(&ce).unwrap_or_default();
    select_body(&full, || {
        let mut thin = serde_json::to_value(&ce).unwrap_or_default();
        if let Some(obj) = thin.as_object_mut() {
            obj.remove("data");
            obj.insert("dataref".into(), format!("/v1/events/{}", event.seq).into());
        }
        serde_json::to_vec(&thin).unwrap_or_default()
    })
    .into_owned()
}

/// What a dispatch pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Events read.
    pub events: u64,
    /// Deliveries created (a repeat of an existing one is not counted).
    pub deliveries: u64,
}

impl Webhooks {
    /// The store's own actor in the webhooks' namespace, for what the
    /// service does on its own (dispatching, disabling a failing webhook).
    pub(crate) fn system(ns: Namespace) -> Caller {
        Caller::new(Actor::system(), ns)
    }

    fn cursor(&self) -> Result<u64> {
        Ok(self
            .kernel
            .store()
            .feed()
            .cursors()?
            .into_iter()
            .find(|(name, _)| name == CONSUMER)
            .map_or(0, |(_, c)| c))
    }

    /// One dispatch pass: every event after the cursor, to the end of the
    /// feed. Passes of one process never overlap; passes of several
    /// processes may, harmlessly (see the module docs).
    pub fn dispatch(&self, visible: Visibility<'_>) -> Result<Dispatched> {
        let mut pass = self
            .dispatching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = self.kernel.store();
        let mut done = Dispatched::default();
        loop {
            let mut cursor = self.cursor()?;
            // Read the head before the webhooks: a webhook created after
            // this read only wants events after it, which stay unread.
            let position = store.feed().position()?;
            let head = position.last_seq;
            if head <= cursor {
                break;
            }
            let webhooks = store.webhooks().enabled()?;
            if webhooks.is_empty() {
                // Nobody to deliver to: skip to the head — at most once a
                // second (passes follow every write; an acknowledgement
                // each would double the writes of a store without
                // webhooks). Events left unacknowledged are read again
                // later and wanted by no webhook created before them.
                if pass.is_none_or(|at| at.elapsed() >= SKIP_EVERY) {
                    self.commit(Vec::new(), head)?;
                    *pass = Some(Instant::now());
                }
                break;
            }
            let subscribers = webhooks
                .iter()
                .map(|w| Subscriber::new(self, w))
                .collect::<Result<Vec<_>>>()?;
            let base = source_base(&position.store_id);
            // Everything up to the head goes to these webhooks, in batches
            // that grow from a small first one (the workers start on it
            // while the next is read) — each batch one read and one commit,
            // the cursor, head and webhooks read once for them all. A
            // second thread commits the batches, in order, while the next
            // one is read and its bodies built: a commit's round trips and
            // the server's work no longer wait for the reading, nor the
            // reading for them. It stops at the first commit that fails, so
            // no batch is acknowledged after one that was not.
            let mut batch = FIRST_BATCH;
            let (read_all, created) = std::thread::scope(|s| -> Result<(bool, u64)> {
                let (to_commit, commits) = std::sync::mpsc::sync_channel::<Commit>(1);
                let committer = s.spawn(move || -> Result<u64> {
                    let mut created = 0;
                    for (deliveries, through) in commits {
                        created += self.commit(deliveries, through)?;
                    }
                    Ok(created)
                });
                let mut read_all = true;
                while cursor < head {
                    let read = store.feed().events(cursor, batch)?;
                    let events: Vec<&OutboxEvent> =
                        read.iter().take_while(|e| e.seq <= head).collect();
                    let Some(last) = events.last().map(|e| e.seq) else {
                        // nothing readable up to the head (pruned
                        // meanwhile): the next pass starts over
                        read_all = false;
                        break;
                    };
                    let handed = self.dispatch_events(
                        &subscribers,
                        &base,
                        &events,
                        visible,
                        &mut done,
                        &to_commit,
                    );
                    if !handed {
                        // the committer stopped: its error is the pass's
                        break;
                    }
                    cursor = last;
                    batch = batch.saturating_mul(2).min(BATCH);
                }
                drop(to_commit);
                let created = committer.join().map_err(|_| {
                    kontextual_kernel::Error::Internal(
                        "the dispatcher's committing thread panicked".to_owned(),
                    )
                })??;
                Ok((read_all, created))
            })?;
            done.deliveries += created;
            if !read_all {
                self.prune_now_and_then();
                return Ok(done);
            }
        }
        self.prune_now_and_then();
        Ok(done)
    }

    /// Turns a batch of events into deliveries for the subscribers that
    /// want them and hands them, with the cursor, to the committing thread
    /// (in several transactions if they are many). `false`: that thread
    /// has stopped (a commit failed), so nothing more may be handed on.
    fn dispatch_events(
        &self,
        subscribers: &[Subscriber<'_>],
        base: &str,
        events: &[&OutboxEvent],
        visible: Visibility<'_>,
        done: &mut Dispatched,
        to_commit: &std::sync::mpsc::SyncSender<Commit>,
    ) -> bool {
        let mut pending = Vec::new();
        let mut through = None;
        for event in events {
            let mut body = None;
            let mut wanted = Vec::new();
            for s in subscribers.iter().filter(|s| s.wants(event, visible)) {
                let body = body.get_or_insert_with(|| body_of(event, base));
                wanted.push(NewDelivery {
                    id: DeliveryId::new(),
                    webhook: s.webhook.id,
                    event_seq: event.seq,
                    event_type: event.draft.kind.clone(),
                    body: body.clone(),
                });
            }
            if let Some(through) = through
                && !pending.is_empty()
                && pending.len() + wanted.len() > MAX_DELIVERIES
                && to_commit
                    .send((std::mem::take(&mut pending), through))
                    .is_err()
            {
                return false;
            }
            pending.extend(wanted);
            through = Some(event.seq);
            done.events += 1;
        }
        match through {
            Some(through) => to_commit.send((pending, through)).is_ok(),
            None => true,
        }
    }

    /// Writes deliveries (with their jobs) and the cursor in one
    /// transaction; returns how many deliveries were new.
    fn commit(&self, deliveries: Vec<NewDelivery>, through: u64) -> Result<u64> {
        let mut ops = Vec::with_capacity(2);
        if !deliveries.is_empty() {
            ops.push(Op::Webhooks(WebhookOp::CreateDeliveries {
                deliveries,
                max_attempts: MAX_ATTEMPTS,
                per_job: DELIVERIES_PER_JOB,
            }));
        }
        ops.push(Op::Feed(FeedOp::AckOutbox {
            consumer: CONSUMER.to_owned(),
            seq: through,
        }));
        let changes = self
            .kernel
            .write(&Self::system(Namespace::default()), ops)?;
        let created: u64 = changes
            .iter()
            .map(|c| match c {
                kontextual_model::Change::WebhookDeliveriesCreated { deliveries, .. } => {
                    deliveries.len() as u64
                }
                _ => 0,
            })
            .sum();
        if created > 0 {
            // wake this process's idle workers
            self.kernel.jobs_enqueued();
        }
        Ok(created)
    }

    /// Deletes finished deliveries past retention, at most hourly.
    fn prune_now_and_then(&self) {
        let mut last = self
            .last_prune
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let Ok(retention) = jiff::SignedDuration::try_from(self.config.retention) else {
            return;
        };
        let Ok(older_than) = kontextual_model::now().checked_sub(retention) else {
            return;
        };
        let r = self.kernel.write(
            &Self::system(Namespace::default()),
            vec![Op::Webhooks(WebhookOp::PruneDeliveries { older_than })],
        );
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not prune old webhook deliveries");
        }
    }
}

#[cfg(test)]
mod tests {
    use kontextual_model::{CorrelationId, EventDraft, Namespace, OutboxEvent};

    use super::body_of;

    fn event(seq: u64, text: &str) -> OutboxEvent {
        OutboxEvent {
            seq,
            at: kontextual_model::now(),
            namespace: Namespace::default(),
            correlation_id: CorrelationId::new(),
            audit_seq: seq,
            draft: EventDraft {
                kind: "artifact.created".to_owned(),
                subject: "0190c6a4-0000-7000-8000-000000000001".to_owned(),
                payload: serde_json::json!({"collection": "handbook", "name": "a.md", "title": text}),
            },
        }
    }

    /// O5: a body over 20 KiB goes as the envelope without `data`, with a
    /// `dataref` to that one event (`GET /v1/events/{seq}`); a small one is
    /// the whole CloudEvent.
    #[test]
    fn o5_a_large_event_goes_as_a_thin_payload_linking_to_itself() {
        let small: serde_json::Value =
            serde_json::from_slice(&body_of(&event(7, "short"), "kontextual://s")).unwrap();
        assert_eq!(small["data"]["title"], "short");
        assert!(small.get("dataref").is_none());
        let big = body_of(&event(210, &"x".repeat(30 * 1024)), "kontextual://s");
        assert!(big.len() < crate::MAX_BODY, "{}", big.len());
        let thin: serde_json::Value = serde_json::from_slice(&big).unwrap();
        assert!(thin.get("data").is_none(), "{thin}");
        assert_eq!(thin["dataref"], "/v1/events/210");
        assert_eq!(thin["id"], "210");
    }
}

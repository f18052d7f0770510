//! The feed-consumer runtime: everything that follows the store's change
//! feed (the outbox) does it the same way. A consumer keeps a durable
//! cursor (the last event it applied and committed); the runtime reads the
//! feed after that cursor in batches, hands each batch over, has the
//! consumer commit, and acknowledges the committed position to the store
//! under the consumer's name. Retention then prunes only what every
//! consumer acknowledged, so no consumer loses events it has not applied.
//!
//! A new domain that reacts to changes (webhooks, activities) implements
//! [`FeedConsumer`] and registers it; it does not copy the cursor and ack
//! logic.

use std::sync::Arc;

use kontextual_model::{Actor, CorrelationId, Namespace, OutboxEvent};
use kontextual_store::{FeedOp, Op, Store, WriteBatch, WriteContext};

use crate::Result;

/// Something that follows the change feed, registered by name, on the host
/// `H` that holds its domain.
pub trait FeedConsumer<H>: Send + Sync {
    /// The name its acknowledgements are recorded under (retention keeps
    /// what this consumer has not acknowledged).
    fn name(&self) -> &str;

    /// Whether it follows the feed into something this process holds (a
    /// search index in its data directory), so only the process that owns
    /// that runs it. `false` (the default): its results are in the shared
    /// store, and any process may step it — a `worker` too
    /// ([`FeedConsumers::follow_shared`]).
    fn local(&self) -> bool {
        false
    }

    /// Applies what the feed has after the consumer's cursor: typically
    /// opens a [`FeedPass`] and hands it to [`catch_up`].
    fn follow(&self, host: &H) -> Result<()>;
}

/// One pass of a consumer over the feed. It holds whatever the consumer
/// keeps locked while it applies, so passes of one consumer never overlap.
pub trait FeedPass {
    /// The last event seq this pass has applied (the feed is read after it).
    fn cursor(&self) -> u64;

    /// Applies a batch of events in seq order. Returns true when so much
    /// is pending that it should be committed now.
    fn apply(&mut self, events: &[OutboxEvent]) -> Result<bool>;

    /// Whether events were applied since the last commit.
    fn uncommitted(&self) -> bool;

    /// Makes what was applied durable; returns the seq it covers.
    fn commit(&mut self) -> Result<u64>;
}

/// Whether a catch-up ends with a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Commit at the end: whoever reads next sees everything applied.
    Commit,
    /// Commit only when a batch asks for it (a follower beside a long
    /// write, which commits once at the end).
    WhenAsked,
}

/// Reads the feed after the pass's cursor in batches of `batch` events
/// until its end, hands each batch to the pass, commits when the pass asks
/// (and at the end with [`Finish::Commit`]), and acknowledges every commit
/// under `consumer`.
pub fn catch_up(
    store: &Store,
    consumer: &str,
    batch: u32,
    pass: &mut dyn FeedPass,
    finish: Finish,
) -> Result<()> {
    loop {
        let events = store.feed().events(pass.cursor(), batch)?;
        if events.is_empty() {
            break;
        }
        if pass.apply(&events)? {
            let seq = pass.commit()?;
            acknowledge(store, consumer, seq);
        }
    }
    if finish == Finish::Commit && pass.uncommitted() {
        let seq = pass.commit()?;
        acknowledge(store, consumer, seq);
    }
    Ok(())
}

/// Tells retention that `consumer` has durably applied the feed up to
/// `seq`. Failing to record it only means old events are kept longer, so
/// it is logged, not returned.
pub fn acknowledge(store: &Store, consumer: &str, seq: u64) {
    let ack = store.write(WriteBatch {
        ctx: WriteContext {
            namespace: Namespace::default(),
            actor: Actor::local_admin(),
            correlation_id: CorrelationId::new(),
            run_id: None,
        },
        ops: vec![Op::Feed(FeedOp::AckOutbox {
            consumer: consumer.to_owned(),
            seq,
        })],
    });
    if let Err(e) = ack {
        tracing::warn!(consumer, error = %e, "could not acknowledge a feed position");
    }
}

/// Failures of feed consumers are logged at most this often.
static CONSUMER_FAILED: crate::LogThrottle = crate::LogThrottle::new(crate::STORE_DOWN_EVERY);

/// Retention: deletes feed events older than `older_than` that every
/// registered consumer has acknowledged (with no consumer, none).
pub fn prune_op(older_than: kontextual_model::Timestamp) -> Op {
    Op::Feed(FeedOp::PruneOutbox { older_than })
}

/// The consumers this process runs, in registration order.
pub struct FeedConsumers<H> {
    consumers: Vec<Arc<dyn FeedConsumer<H>>>,
}

impl<H> Default for FeedConsumers<H> {
    fn default() -> Self {
        FeedConsumers {
            consumers: Vec::new(),
        }
    }
}

impl<H> FeedConsumers<H> {
    /// Adds a consumer. A name registered twice is a wiring mistake.
    pub fn register(&mut self, consumer: Arc<dyn FeedConsumer<H>>) -> Result<()> {
        if self.consumers.iter().any(|c| c.name() == consumer.name()) {
            return Err(crate::Error::InvalidInput(format!(
                "feed consumer {:?} is registered twice",
                consumer.name()
            )));
        }
        self.consumers.push(consumer);
        Ok(())
    }

    /// One step of every consumer; a consumer's failure is logged and does
    /// not hold the others back.
    pub fn follow_all(&self, host: &H) {
        self.follow(host, |_| true);
    }

    /// One step of every consumer that is not [`FeedConsumer::local`]
    /// (what a process that owns no search index, a `worker`, runs).
    pub fn follow_shared(&self, host: &H) {
        self.follow(host, |c| !c.local());
    }

    fn follow(&self, host: &H, which: impl Fn(&dyn FeedConsumer<H>) -> bool) {
        for c in self.consumers.iter().filter(|c| which(c.as_ref())) {
            if let Err(e) = c.follow(host)
                && !crate::store_unavailable(&e, c.name())
                && let Some(suppressed) = CONSUMER_FAILED.admit()
            {
                // a consumer that keeps failing (a full disk) fails every
                // tick: one line per interval says so
                tracing::warn!(consumer = c.name(), error = %e, suppressed, "feed consumer");
            }
        }
    }
}

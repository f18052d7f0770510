//! Publishing the event feed to NATS JetStream (O5, ADR 0011): on request,
//! the `kontextual-nats` publisher is registered as one more feed consumer,
//! stepped by the follower like the search index.

use std::sync::Arc;

use kontextual_nats::{NatsConfig, NatsHost, NatsPublisher};

use crate::{Kernel, Result, Services};

impl NatsHost for Services {
    fn kernel(&self) -> &Kernel {
        self.knowledge.kernel()
    }
}

impl Services {
    /// Publishes every event of the feed to NATS JetStream from the next
    /// follower step on (`serve`'s follower, [`Services::follow_feeds`]),
    /// starting after what the publisher's consumer acknowledged last (the
    /// oldest retained event the first time). Nothing connects until there
    /// is something to publish. Returns the publisher, for its status and
    /// lag. A configuration that cannot work is `InvalidInput`; registering
    /// the same consumer name twice too.
    pub fn publish_events_to_nats(&mut self, cfg: NatsConfig) -> Result<Arc<NatsPublisher>> {
        let publisher = Arc::new(NatsPublisher::new(cfg)?);
        self.feed_consumers.register(publisher.clone())?;
        Ok(publisher)
    }
}

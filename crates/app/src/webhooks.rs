//! The webhooks domain (O5) in this process: its service, its job kinds
//! (`webhook.deliver_batch`, `webhook.deliver`, `webhook.recover`) and its
//! feed consumer (the dispatcher), registered by `Services::assemble`; the
//! surfaces reach the service through [`Services::webhooks`].

use kontextual_webhooks::{Webhooks, WebhooksConfig, WebhooksHost};

use crate::{Caller, Enqueued, Result, Services};

impl WebhooksHost for Services {
    fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    fn event_visible(&self, caller: &Caller, event: &kontextual_model::OutboxEvent) -> bool {
        self.knowledge
            .kernel()
            .event_visible_to(caller, event, &self.knowledge)
    }
}

impl Services {
    /// Delivers with this configuration (allowlist, timeout, retention,
    /// rotation grace) from now on.
    pub fn with_webhooks(mut self, config: WebhooksConfig) -> Self {
        self.webhooks = Webhooks::new(self.knowledge.kernel().clone(), config);
        self
    }

    /// The webhooks service: management, deliveries, resend.
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// Resends, as a background job, every failed or dead delivery of a
    /// webhook created at or after `since`.
    pub fn webhook_recover(
        &self,
        caller: &Caller,
        webhook: kontextual_model::WebhookId,
        since: kontextual_model::Timestamp,
    ) -> Result<Enqueued> {
        kontextual_webhooks::recover(self, caller, webhook, since)
    }

    /// One step of every feed consumer whose results live in the shared
    /// store (the webhook dispatcher, not the search index): what a
    /// `worker` process runs beside its job threads.
    pub fn follow_shared_feeds(&self) {
        self.feed_consumers.follow_shared(self);
    }
}

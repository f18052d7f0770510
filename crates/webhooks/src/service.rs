//! The webhooks service: what every surface (CLI, HTTP) calls to manage
//! subscriptions and look at their deliveries. Each operation asks the
//! policy first — managing webhooks and reading their deliveries is
//! namespace administration — and writes through the kernel, so the store
//! audits it with the caller as the actor. Secrets leave this service only
//! in the answer to `create` and `rotate_secret`, once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontextual_kernel::{Caller, Error, Kernel, Permission, Resource, Result};
use kontextual_model::{
    Change, CollectionName, Delivery, DeliveryCounts, DeliveryDetail, DeliveryId, DeliveryState,
    Timestamp, TypePattern, Webhook, WebhookId, WebhookState,
};
use kontextual_store::{DeliveryQuery, Op, Page, PageRequest, WebhookOp, WebhookPatch};

use crate::deliver::{Client, ClientConfig, DEFAULT_TIMEOUT, Lookup};
use crate::ssrf::{AddressPolicy, AllowList, Destination};
use crate::{MAX_ATTEMPTS, Secret};

/// What the policy is asked about for every webhook operation.
pub(crate) const RESOURCE: Resource<'static> = Resource::Namespace("webhooks");

/// Deliveries resent per transaction by `recover`.
pub(crate) const RECOVER_BATCH: u32 = 500;

/// A batch job's attempts in flight at once, by default.
pub const DEFAULT_IN_FLIGHT: usize = 4;
/// The most `[webhooks] in_flight` may be.
pub const MAX_IN_FLIGHT: usize = 64;

/// How the webhooks of this process deliver.
#[derive(Clone)]
pub struct WebhooksConfig {
    /// Networks deliveries may reach although they are private, loopback,
    /// … (`[webhooks] allow`, `KONTEXTUAL_WEBHOOKS_ALLOW`).
    pub allow: AllowList,
    /// One attempt's deadline (Standard Webhooks: 15 s).
    pub timeout: Duration,
    /// Finished deliveries (and their attempts) are kept this long.
    pub retention: Duration,
    /// After a rotation, the previous secret still signs for this long.
    pub rotation_grace: Duration,
    /// A batch job's attempts in flight at once, each on its own
    /// connection (`[webhooks] in_flight`, 1-64; default
    /// [`DEFAULT_IN_FLIGHT`]). With `threads` worker threads, one endpoint
    /// sees at most `threads × in_flight` concurrent requests.
    pub in_flight: usize,
    /// The resolver (tests make names resolve where they like); `None`:
    /// the operating system's.
    pub lookup: Option<Arc<dyn Lookup>>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow: AllowList::default(),
            timeout: DEFAULT_TIMEOUT,
            retention: Duration::from_secs(30 * 86_400),
            rotation_grace: Duration::from_secs(86_400),
            in_flight: DEFAULT_IN_FLIGHT,
            lookup: None,
        }
    }
}

impl std::fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field("allow", &self.allow)
            .field("timeout", &self.timeout)
            .field("retention", &self.retention)
            .field("rotation_grace", &self.rotation_grace)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// A webhook to create.
#[derive(Clone, Debug, Default)]
pub struct NewWebhook {
    pub url: String,
    /// Event type patterns (`artifact.*`, `run.failed`, `*`); empty: every type.
    pub types: Vec<String>,
    /// Only events about these collections; empty: every collection.
    pub collections: Vec<String>,
    pub description: String,
}

/// The fields of a webhook to change; `None` keeps them.
#[derive(Clone, Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub types: Option<Vec<String>>,
    pub collections: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A webhook with its signing secret: the answer to `create` and
/// `rotate_secret`, the only times the secret is shown.
#[derive(Clone)]
pub struct WithSecret {
    pub webhook: Webhook,
    /// `whsec_…`.
    pub secret: String,
    /// After a rotation: until when the previous secret still signs.
    pub previous_expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for WithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithSecret")
            .field("webhook", &self.webhook)
            .field("secret", &"<redacted>")
            .field("previous_expires_at", &self.previous_expires_at)
            .finish()
    }
}

/// A webhook with its deliveries counted by state.
#[derive(Clone, Debug)]
pub struct WebhookDetail {
    pub webhook: Webhook,
    pub deliveries: DeliveryCounts,
    /// While a rotated-out secret still signs: until when.
    pub previous_secret_expires_at: Option<Timestamp>,
}

/// The webhooks domain over the kernel: management, and (in `dispatch`
/// and `jobs`) turning the feed into deliveries and delivering them.
pub struct Webhooks {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) config: WebhooksConfig,
    pub(crate) policy: AddressPolicy,
    pub(crate) client: Client,
    /// Held for a dispatch pass, so passes of this process never overlap.
    /// Held by a dispatch pass, with when a pass last skipped the cursor
    /// to the head because no webhook was enabled.
    pub(crate) dispatching: Mutex<Option<Instant>>,
    /// When this process last pruned old deliveries.
    pub(crate) last_prune: Mutex<Option<Instant>>,
    /// Webhooks whose last batch here found the receiver slow (see
    /// [`crate::jobs::LANES_AFTER`]): their next batch starts its lanes at
    /// once.
    pub(crate) slow_receivers: Mutex<std::collections::HashSet<kontextual_model::WebhookId>>,
    /// Batches sending on this process now, and the cores it may use: a
    /// batch that starts while a core is spare starts its lanes at once.
    pub(crate) batches_running: std::sync::atomic::AtomicUsize,
    pub(crate) cores: usize,
}

impl Webhooks {
    pub fn new(kernel: Arc<Kernel>, config: WebhooksConfig) -> Webhooks {
        let policy = AddressPolicy::new(config.allow.clone());
        let mut client_config = ClientConfig {
            policy: policy.clone(),
            timeout: config.timeout,
            ..ClientConfig::default()
        };
        if let Some(lookup) = &config.lookup {
            client_config.lookup = lookup.clone();
        }
        Webhooks {
            kernel,
            policy,
            client: Client::new(client_config),
            config,
            dispatching: Mutex::new(None),
            last_prune: Mutex::new(None),
            slow_receivers: Mutex::new(std::collections::HashSet::new()),
            batches_running: std::sync::atomic::AtomicUsize::new(0),
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    fn admin(&self, caller: &Caller) -> Result<()> {
        self.kernel.authorize(caller, Permission::Admin, &RESOURCE)
    }

    /// A URL deliveries may go to: http(s), no credentials, and — when the
    /// host is an address — not a forbidden one (a name is checked on every
    /// address it resolves to, at each delivery).
    fn check_url(&self, url: &str) -> Result<String> {
        let dest =
            Destination::parse(url.trim()).map_err(|e| Error::InvalidInput(e.to_string()))?;
        if let Err((addr, class)) = self.policy.check_destination(&dest) {
            return Err(Error::InvalidInput(format!(
                "webhook URL {}: {addr} is {class}; deliveries never go there unless an operator \
                 allows its network ([webhooks] allow in kontextual.toml or {})",
                dest.as_str(),
                crate::ALLOW_ENV
            )));
        }
        Ok(dest.as_str().to_owned())
    }

    /// Type patterns, each matching some event type of the catalog (a
    /// typo would otherwise silently receive nothing). Empty: `*`.
    fn check_types(types: &[String]) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for t in types.iter().flat_map(|t| t.split(',')) {
            let pattern = TypePattern::parse(t)
                .map_err(|e| Error::InvalidInput(format!("event type pattern: {e}")))?;
            if !kontextual_events::CATALOG
                .iter()
                .any(|ty| pattern.matches(ty.name))
            {
                return Err(Error::InvalidInput(format!(
                    "event type pattern `{pattern}` matches no event type in the catalog \
                     (see `kontextual event-type list`)"
                )));
            }
            let text = pattern.to_string();
            if !out.contains(&text) {
                out.push(text);
            }
        }
        if out.is_empty() {
            out.push("*".to_owned());
        }
        Ok(out)
    }

    fn check_collections(collections: &[String]) -> Result<Vec<CollectionName>> {
        let mut out: Vec<CollectionName> = Vec::new();
        for c in collections.iter().flat_map(|c| c.split(',')) {
            let name = CollectionName::new(c.trim())?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn found(&self, caller: &Caller, id: WebhookId) -> Result<Webhook> {
        self.kernel
            .store()
            .webhooks()
            .get(&caller.namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("webhook {id}")))
    }

    /// Creates a webhook; the answer carries its secret, shown this once.
    pub fn create(&self, caller: &Caller, new: NewWebhook) -> Result<WithSecret> {
        self.admin(caller)?;
        let url = self.check_url(&new.url)?;
        let types = Self::check_types(&new.types)?;
        let collections = Self::check_collections(&new.collections)?;
        let secret = Secret::generate().map_err(|e| Error::internal(e.to_string()))?;
        let now = kontextual_model::now();
        let webhook = Webhook {
            id: WebhookId::new(),
            namespace: caller.namespace.clone(),
            url,
            description: new.description,
            types,
            collections,
            state: WebhookState::Enabled,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            created_by: caller.actor.clone(),
            first_failure_at: None,
            creator_scopes: caller.scopes.clone(),
        };
        let exposed = secret.expose();
        let webhook = self.kernel.write_one(
            caller,
            Op::Webhooks(WebhookOp::CreateWebhook {
                webhook,
                secret: exposed.clone().into(),
            }),
            changed_webhook,
        )?;
        Ok(WithSecret {
            webhook,
            secret: exposed,
            previous_expires_at: None,
        })
    }

    /// The namespace's webhooks, newest first.
    pub fn list(&self, caller: &Caller, page: &PageRequest) -> Result<Page<Webhook>> {
        self.admin(caller)?;
        Ok(self
            .kernel
            .store()
            .webhooks()
            .list(&caller.namespace, page)?)
    }

    /// A webhook with its deliveries counted by state.
    pub fn get(&self, caller: &Caller, id: WebhookId) -> Result<WebhookDetail> {
        self.admin(caller)?;
        let webhook = self.found(caller, id)?;
        let store = self.kernel.store().webhooks();
        let deliveries = store.counts(&caller.namespace, id)?;
        let previous_secret_expires_at = store
            .secrets(&caller.namespace, id)?
            .and_then(|s| s.previous.and(s.previous_expires_at))
            .filter(|at| *at > kontextual_model::now());
        Ok(WebhookDetail {
            webhook,
            deliveries,
            previous_secret_expires_at,
        })
    }

    /// Changes a webhook's URL, types, collections or description. A
    /// change to what it already is writes nothing (no audit record, no
    /// `webhook.updated` event).
    pub fn update(&self, caller: &Caller, id: WebhookId, change: WebhookChange) -> Result<Webhook> {
        self.admin(caller)?;
        let current = self.found(caller, id)?;
        if let Some(types) = &change.types
            && types
                .iter()
                .all(|t| t.split(',').all(|p| p.trim().is_empty()))
        {
            // on create no types means every type; on a change it would
            // silently widen a filtered webhook to every event
            return Err(Error::InvalidInput(
                "types: give at least one event type pattern (`*` for every type)".into(),
            ));
        }
        let patch = WebhookPatch {
            url: change
                .url
                .as_deref()
                .map(|u| self.check_url(u))
                .transpose()?,
            description: change.description,
            types: change.types.as_deref().map(Self::check_types).transpose()?,
            collections: change
                .collections
                .as_deref()
                .map(Self::check_collections)
                .transpose()?,
        };
        if patch.url.is_none()
            && patch.description.is_none()
            && patch.types.is_none()
            && patch.collections.is_none()
        {
            return Err(Error::InvalidInput(
                "nothing to change: give a URL, types, collections or a description".into(),
            ));
        }
        fn same<T: PartialEq>(given: &Option<T>, now: &T) -> bool {
            given.as_ref().is_none_or(|v| v == now)
        }
        if same(&patch.url, &current.url)
            && same(&patch.description, &current.description)
            && same(&patch.types, &current.types)
            && same(&patch.collections, &current.collections)
        {
            // what was given is what it is: nothing is recorded or announced
            return Ok(current);
        }
        self.kernel.write_one(
            caller,
            Op::Webhooks(WebhookOp::UpdateWebhook { id, patch }),
            changed_webhook,
        )
    }

    /// Enables or disables a webhook. A disabled webhook receives no new
    /// deliveries; enabling it clears its failure streak. Events that
    /// happened while it was disabled are not delivered (`recover` resends
    /// what failed).
    pub fn set_enabled(
        &self,
        caller: &Caller,
        id: WebhookId,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Webhook> {
        self.admin(caller)?;
        let current = self.found(caller, id)?;
        let already = match current.state {
            // enabling also clears a failure streak, if there is one
            WebhookState::Enabled => enabled && current.first_failure_at.is_none(),
            WebhookState::Disabled => !enabled,
        };
        if already {
            // nothing changes: nothing is recorded or announced
            return Ok(current);
        }
        let (state, reason) = if enabled {
            (WebhookState::Enabled, None)
        } else {
            (
                WebhookState::Disabled,
                Some(reason.unwrap_or_else(|| format!("disabled by {}", caller.actor))),
            )
        };
        self.kernel.write_one(
            caller,
            Op::Webhooks(WebhookOp::SetWebhookState { id, state, reason }),
            changed_webhook,
        )
    }

    /// Deletes a webhook; its pending and failed deliveries are cancelled.
    /// Returns how many were.
    pub fn delete(&self, caller: &Caller, id: WebhookId) -> Result<u64> {
        self.admin(caller)?;
        self.found(caller, id)?;
        self.kernel.write_one(
            caller,
            Op::Webhooks(WebhookOp::DeleteWebhook { id }),
            |c| match c {
                Change::WebhookDeleted { cancelled, .. } => Some(cancelled),
                _ => None,
            },
        )
    }

    /// A new secret; the previous one keeps signing (a second signature in
    /// `webhook-signature`) for the configured grace period, so receivers
    /// can switch without losing a delivery.
    pub fn rotate_secret(&self, caller: &Caller, id: WebhookId) -> Result<WithSecret> {
        self.admin(caller)?;
        self.found(caller, id)?;
        let secret = Secret::generate().map_err(|e| Error::internal(e.to_string()))?;
        let expires = kontextual_model::now()
            .checked_add(
                jiff::SignedDuration::try_from(self.config.rotation_grace)
                    .unwrap_or(jiff::SignedDuration::from_hours(24)),
            )
            .map_err(|e| Error::internal(format!("rotation grace: {e}")))?;
        let exposed = secret.expose();
        let webhook = self.kernel.write_one(
            caller,
            Op::Webhooks(WebhookOp::RotateSecret {
                id,
                secret: exposed.clone().into(),
                previous_expires_at: Some(expires),
            }),
            changed_webhook,
        )?;
        Ok(WithSecret {
            webhook,
            secret: exposed,
            previous_expires_at: Some(expires),
        })
    }

    /// A webhook's deliveries, newest event first.
    pub fn deliveries(
        &self,
        caller: &Caller,
        id: WebhookId,
        query: &DeliveryQuery,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        self.admin(caller)?;
        self.found(caller, id)?;
        Ok(self
            .kernel
            .store()
            .webhooks()
            .deliveries(&caller.namespace, id, query, page)?)
    }

    /// One delivery with the bytes it sends and every attempt.
    pub fn delivery(&self, caller: &Caller, id: DeliveryId) -> Result<DeliveryDetail> {
        self.admin(caller)?;
        self.kernel
            .store()
            .webhooks()
            .delivery(&caller.namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("delivery {id}")))
    }

    /// Sends a delivery again (a fresh run of the retry schedule, the same
    /// `webhook-id`); a delivery still in progress is refused.
    pub fn resend(&self, caller: &Caller, id: DeliveryId) -> Result<Delivery> {
        let detail = self.delivery(caller, id)?;
        refuse_if_disabled(&self.found(caller, detail.delivery.webhook)?)?;
        if matches!(
            detail.delivery.state,
            DeliveryState::Pending | DeliveryState::Delivering
        ) {
            return Err(Error::InvalidInput(format!(
                "delivery {id} is {}: it is already on its way",
                detail.delivery.state
            )));
        }
        self.kernel.write(
            caller,
            vec![Op::Webhooks(WebhookOp::ResendDeliveries {
                webhook: detail.delivery.webhook,
                deliveries: vec![id],
                max_attempts: MAX_ATTEMPTS,
            })],
        )?;
        Ok(self.delivery(caller, id)?.delivery)
    }

    /// Resends every failed or dead delivery of a webhook created at or
    /// after `since`, in transactions of [`RECOVER_BATCH`]; returns how
    /// many. Run by the `webhook.recover` job (`jobs.rs`).
    pub fn recover_now(&self, caller: &Caller, id: WebhookId, since: Timestamp) -> Result<u64> {
        self.admin(caller)?;
        refuse_if_disabled(&self.found(caller, id)?)?;
        let query = DeliveryQuery {
            states: vec![DeliveryState::Failed, DeliveryState::Dead],
            since: Some(since),
        };
        // Collect first: resending changes the states the listing filters on.
        let mut ids = Vec::new();
        let mut page = PageRequest {
            after: None,
            limit: 1000,
        };
        loop {
            let got =
                self.kernel
                    .store()
                    .webhooks()
                    .deliveries(&caller.namespace, id, &query, &page)?;
            ids.extend(got.items.iter().map(|d| d.id));
            match got.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        // oldest first, so the receiver gets them roughly in event order
        ids.reverse();
        for chunk in ids.chunks(RECOVER_BATCH as usize) {
            self.kernel.write(
                caller,
                vec![Op::Webhooks(WebhookOp::ResendDeliveries {
                    webhook: id,
                    deliveries: chunk.to_vec(),
                    max_attempts: MAX_ATTEMPTS,
                })],
            )?;
        }
        Ok(ids.len() as u64)
    }
}

/// The webhook a configuration change left.
fn changed_webhook(change: Change) -> Option<Webhook> {
    match change {
        Change::Webhook { webhook, .. } => Some(webhook),
        _ => None,
    }
}

/// Resending to a disabled webhook would only end each delivery unsent
/// (and count an attempt): refused, saying what to do.
pub(crate) fn refuse_if_disabled(webhook: &Webhook) -> Result<()> {
    if webhook.state == WebhookState::Disabled {
        return Err(Error::Store(kontextual_store::StoreError::Refused {
            what: format!("resending to webhook {}", webhook.id),
            why: "it is disabled, so nothing would be sent; enable it first \
                  (`kontextual webhook enable`)"
                .to_owned(),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_type_patterns_must_match_the_catalog() {
        assert_eq!(
            Webhooks::check_types(&["artifact.*,run.failed".into()]).unwrap(),
            vec!["artifact.*".to_owned(), "run.failed".to_owned()]
        );
        assert_eq!(Webhooks::check_types(&[]).unwrap(), vec!["*".to_owned()]);
        let e = Webhooks::check_types(&["artefact.*".into()]).unwrap_err();
        assert!(e.to_string().contains("matches no event type"), "{e}");
        assert!(Webhooks::check_types(&["a..b".into()]).is_err());
    }

    #[test]
    fn o5_collections_are_names() {
        assert_eq!(
            Webhooks::check_collections(&["handbook,notes".into(), "handbook".into()])
                .unwrap()
                .len(),
            2
        );
        assert!(Webhooks::check_collections(&["../x".into()]).is_err());
    }
}

//! Webhooks (O5): subscriptions that deliver outbox events over HTTP, and
//! the deliveries made for them. The store keeps the subscriptions, their
//! signing secrets and every delivery with its attempts; signing, address
//! checks and the HTTP client live elsewhere.
//!
//! A delivery's body is fixed when the delivery is created, so every retry
//! sends the same bytes under the same delivery id.
//!
//! ```text
//!  pending ──attempt──▶ succeeded
//!     ▲            │  └─ error, attempts left ─▶ failed ──(next_attempt_at)─▶ attempt
//!     │ resend     └─ no attempts left ─▶ dead
//!     └──────── failed / dead / cancelled        (webhook deleted ─▶ cancelled)
//! ```
//!
//! An attempt is recorded when it ends (state, status and latency in one
//! write), so a delivery shows its earlier state while one is in flight;
//! `delivering` is no longer entered (stores written by early versions may
//! hold it).
//!
//! Secrets never appear in a [`Webhook`], an audit record, an event or a
//! `Debug` output: they are read on their own ([`WebhookSecrets`]).

use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryId, WebhookId};
use crate::names::{CollectionName, Namespace};
use crate::{Actor, Timestamp};

/// The job kind that delivers one webhook delivery (payload
/// `{"delivery": "<id>"}`, plus `"tried": n` when `n` attempts were made
/// before the job): one attempt per job attempt, on the retry schedule.
pub const DELIVER_JOB: &str = "webhook.deliver";

/// The job kind that makes the first attempt of several fresh deliveries
/// of one webhook (payload `{"deliveries": ["<id>", …]}`): the
/// dispatcher's fast path. A delivery whose attempt fails, and any the
/// batch does not reach, goes on as its own [`DELIVER_JOB`].
pub const DELIVER_BATCH_JOB: &str = "webhook.deliver_batch";

crate::artifact::word_enum!(
    /// Whether a webhook receives events.
    WebhookState { Enabled = "enabled", Disabled = "disabled" } default Enabled
);

crate::artifact::word_enum!(
    /// What a change did to a webhook's configuration ([`crate::Change::Webhook`]).
    WebhookAction {
        Created = "created",
        Updated = "updated",
        Enabled = "enabled",
        Disabled = "disabled",
        SecretRotated = "secret_rotated"
    } default Created
);

impl WebhookAction {
    /// The audit action's verb (`webhook.<verb>`).
    pub fn verb(self) -> &'static str {
        match self {
            WebhookAction::Created => "create",
            WebhookAction::Updated => "update",
            WebhookAction::Enabled => "enable",
            WebhookAction::Disabled => "disable",
            WebhookAction::SecretRotated => "rotate_secret",
        }
    }
}

crate::artifact::word_enum!(
    /// Where a delivery is. `failed` will be retried at `next_attempt_at`;
    /// `succeeded`, `dead` (gave up) and `cancelled` are final.
    DeliveryState {
        Pending = "pending",
        Delivering = "delivering",
        Succeeded = "succeeded",
        Failed = "failed",
        Dead = "dead",
        Cancelled = "cancelled"
    } default Pending
);

impl DeliveryState {
    /// No attempt will be made again without an operator's resend.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Succeeded | DeliveryState::Dead | DeliveryState::Cancelled
        )
    }
}

/// A webhook subscription, without its secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub namespace: Namespace,
    pub url: String,
    pub description: String,
    /// Event type patterns (`artifact.*`, `run.finished`), kept as given.
    pub types: Vec<String>,
    /// Only events about these collections; empty: every collection.
    pub collections: Vec<CollectionName>,
    pub state: WebhookState,
    /// Why it was disabled (by an operator, or after failing too long).
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: Actor,
    /// When the current streak of failed attempts began; cleared by a
    /// successful attempt and when the webhook is enabled.
    pub first_failure_at: Option<Timestamp>,
    /// The scopes of the API key that created it: with them (and the
    /// creator's grants and clearance) the dispatcher judges which events
    /// the webhook may be sent. `None`: the local administrator created it
    /// (the CLI on its own data directory), who reads everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_scopes: Option<Vec<crate::Scope>>,
}

/// A webhook's signing secrets: the current one and, during a rotation,
/// the previous one until it expires. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecrets {
    pub current: String,
    pub previous: Option<String>,
    pub previous_expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .field("previous_expires_at", &self.previous_expires_at)
            .finish()
    }
}

/// One event to deliver to one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook: WebhookId,
    pub namespace: Namespace,
    /// The outbox sequence number of the event delivered.
    pub event_seq: u64,
    pub event_type: String,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<u64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When a failed delivery is tried again.
    pub next_attempt_at: Option<Timestamp>,
}

/// One attempt to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub at: Timestamp,
    /// The HTTP status received (none when no answer came).
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// The start of the answer's body, truncated by the deliverer.
    pub response: Option<String>,
}

/// A delivery with the exact bytes it sends and every attempt so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub body: Vec<u8>,
    pub attempts: Vec<DeliveryAttempt>,
}

/// Deliveries of one webhook counted by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivering: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl DeliveryCounts {
    /// Adds `n` deliveries in `state`.
    pub fn add(&mut self, state: DeliveryState, n: u64) {
        let slot = match state {
            DeliveryState::Pending => &mut self.pending,
            DeliveryState::Delivering => &mut self.delivering,
            DeliveryState::Succeeded => &mut self.succeeded,
            DeliveryState::Failed => &mut self.failed,
            DeliveryState::Dead => &mut self.dead,
            DeliveryState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    pub fn get(&self, state: DeliveryState) -> u64 {
        match state {
            DeliveryState::Pending => self.pending,
            DeliveryState::Delivering => self.delivering,
            DeliveryState::Succeeded => self.succeeded,
            DeliveryState::Failed => self.failed,
            DeliveryState::Dead => self.dead,
            DeliveryState::Cancelled => self.cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_secrets_never_show_in_debug() {
        let s = WebhookSecrets {
            current: "whsec_current_value".into(),
            previous: Some("whsec_previous_value".into()),
            previous_expires_at: None,
        };
        let d = format!("{s:?}");
        assert!(!d.contains("whsec_"), "{d}");
    }

    #[test]
    fn o5_delivery_states_round_trip() {
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>().unwrap(), *s);
        }
        assert!(DeliveryState::Dead.is_final());
        assert!(!DeliveryState::Failed.is_final());
    }
}

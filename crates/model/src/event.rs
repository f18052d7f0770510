//! Outbox events: append-only facts for projections and webhooks.
//!
//! Events are numbered in commit order; a consumer keeps its own cursor (the
//! last `seq` it applied) and must never skip one.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::ids::CorrelationId;
use crate::names::Namespace;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDraft {
    /// `noun.past-tense`, e.g. `artifact.updated`.
    pub kind: String,
    /// Id of the entity the event is about.
    pub subject: String,
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub seq: u64,
    pub at: Timestamp,
    pub namespace: Namespace,
    pub correlation_id: CorrelationId,
    /// The audit record written in the same transaction.
    pub audit_seq: u64,
    #[serde(flatten)]
    pub draft: EventDraft,
}

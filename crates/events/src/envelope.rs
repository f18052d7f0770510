//! The CloudEvents 1.0 envelope (JSON event format) every surface and
//! webhook delivery carries: `id` is the outbox seq (unique per store, and
//! the source names the store), `source` is `kontextual://<store id>/<namespace>`.

use kontextual_model::OutboxEvent;
use serde::{Deserialize, Serialize};

/// One event, as CloudEvents 1.0 (structured JSON mode). Extension
/// attributes: `correlationid` (the request that caused it, also on its
/// audit record), `sequence` (the outbox seq, as a string as the
/// CloudEvents sequence extension says), `namespace`, and `collection`
/// when the event is about something in a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The outbox seq, decimal: unique with `source`.
    pub id: String,
    /// `kontextual://<store id>/<namespace>`.
    pub source: String,
    /// The catalog type (`artifact.created`).
    #[serde(rename = "type")]
    pub ty: String,
    /// When it was committed, RFC 3339 (UTC).
    pub time: String,
    /// The id of what the event is about (the catalog says which kind).
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The type's data (its catalog schema).
    pub data: serde_json::Value,
    pub correlationid: String,
    pub sequence: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
}

/// `kontextual://<store id>`: the base of every event's `source`.
pub fn source_base(store_id: &str) -> String {
    format!("kontextual://{store_id}")
}

impl CloudEvent {
    /// The envelope of an outbox event; `source_base` is
    /// [`source_base`]`(store id)`, the namespace is appended.
    pub fn of(event: &OutboxEvent, source_base: &str) -> CloudEvent {
        let collection = event
            .draft
            .payload
            .get("collection")
            .and_then(|c| c.as_str())
            .map(str::to_owned);
        CloudEvent {
            specversion: "1.0".to_owned(),
            id: event.seq.to_string(),
            source: format!(
                "{}/{}",
                source_base.trim_end_matches('/'),
                event.namespace.as_str()
            ),
            ty: event.draft.kind.clone(),
            time: event.at.to_string(),
            subject: event.draft.subject.clone(),
            datacontenttype: "application/json".to_owned(),
            data: event.draft.payload.clone(),
            correlationid: event.correlation_id.as_str().to_owned(),
            sequence: event.seq.to_string(),
            namespace: event.namespace.as_str().to_owned(),
            collection,
        }
    }
}

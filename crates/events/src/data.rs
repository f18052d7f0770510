//! The `data` of every event type, as Rust types: the catalog's JSON
//! Schemas are generated from them (`schemars`), so the documentation and
//! the check of emitted events cannot drift from each other. Every type
//! refuses unknown members, so a payload with a member the catalog does
//! not name fails the check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `collection.created`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionData {
    /// The collection's name.
    pub collection: String,
}

/// `artifact.created|updated|deleted|restored|purged`: the new revision.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactData {
    pub collection: String,
    /// The artifact's name in its collection (a relative path).
    pub name: String,
    /// The revision this change made (starts at 1).
    pub revision: u64,
    /// `sha256:` and 64 hex digits: the content of this revision.
    pub digest: String,
    /// The previous revision's digest (none for the first).
    pub prev_digest: Option<String>,
    /// `live`, `deleted` or `purged`.
    pub state: String,
    /// `public`, `internal`, `confidential` or `restricted`.
    pub classification: String,
}

/// `artifact.derived`: an artifact created from others (provenance).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactDerivedData {
    pub collection: String,
    pub name: String,
    pub revision: u64,
    pub digest: String,
    pub prev_digest: Option<String>,
    pub state: String,
    pub classification: String,
    /// Ids of the artifacts it was derived from.
    pub derived_from: Vec<String>,
    /// How it was derived, if said.
    pub transformation: Option<String>,
}

/// `artifact.imported`: a revision written by an import with its own ids.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactImportedData {
    pub collection: String,
    pub name: String,
    pub revision: u64,
    pub digest: String,
    pub state: String,
    pub classification: String,
}

/// `artifact.quarantined|released`, `hold.set|released`: a mark on an artifact.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactMarkData {
    pub collection: String,
    pub name: String,
}

/// `relation.created|updated|deleted`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationData {
    /// The relation type (`cites`, `derived_from`, …).
    #[serde(rename = "type")]
    pub rel_type: String,
    /// The source artifact's id.
    pub source: String,
    /// The target artifact's id.
    pub target: String,
    pub revision: u64,
    /// Only on `relation.deleted`: `requested`, or `endpoint_deleted`
    /// when one of its artifacts was deleted or purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `ingest.*`, `run.*`, `export.created`: an operation run.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunData {
    /// The run's kind: `ingest`, `export`, `import`, `reindex`, `repair`.
    pub kind: String,
    /// `running`, `succeeded`, `failed`, `partial` or `interrupted`.
    pub status: String,
    /// The collection the run works on, when it works on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
}

/// `context.built`: a new version of a context package.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextData {
    pub name: String,
    pub version: u64,
    /// `sha256:`: the package manifest's digest.
    pub digest: String,
}

/// `key.created|revoked`. Never the secret or its hash.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyData {
    pub name: String,
    /// The actor the key acts as (`user:alice`).
    pub actor: String,
}

/// `clearance.set`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearanceData {
    /// The highest classification the actor (the subject) may read.
    pub level: String,
}

/// `grant.created|deleted`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantData {
    pub actor: String,
    /// `read`, `write`, `admin` or `export`.
    pub permission: String,
    /// `namespace`, `collection:NAME` or `artifact:COLLECTION/NAME`.
    pub scope: String,
}

/// `job.*`: a job's state change.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobData {
    /// The job kind (`ingest`, `export`, …).
    pub kind: String,
    /// The job's state after the change.
    pub state: String,
    /// The state before an operator's action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `policy.denied`: the policy refused an action (a missing grant,
/// scope or clearance, or a legal hold).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDeniedData {
    /// The audit action (`policy.deny.write`).
    pub action: String,
    /// `read`, `write` or `administer`.
    pub permission: String,
    /// What was refused (`collection docs`, `artifact docs/a.md`).
    pub target: String,
    /// `policy` (grants, scopes, clearance) or `hold`.
    pub reason: String,
}

/// `store.imported`: an export package was imported.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreImportedData {
    /// The package's name.
    pub package: String,
    /// What was written and skipped, by record kind.
    pub summary: serde_json::Map<String, serde_json::Value>,
}

/// `webhook.*` (but `webhook.deleted`): a webhook subscription as the
/// change left it. Never its secret.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookData {
    /// The endpoint URL.
    pub url: String,
    /// The event type patterns it subscribes to.
    pub types: Vec<String>,
    /// Only events about these collections; empty: every collection.
    pub collections: Vec<String>,
    /// `enabled` or `disabled`.
    pub state: String,
    /// Why it is disabled (an operator's reason, `the receiver answered
    /// 410 Gone`, `deliveries failed for 5 days`).
    pub disabled_reason: Option<String>,
}

/// `webhook.deleted`: the subscription that was deleted.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookDeletedData {
    /// The endpoint URL.
    pub url: String,
}

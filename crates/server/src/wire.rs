//! Words of the HTTP contract that the OpenAPI document spells out: the
//! enumerations the server accepts and the patterns of names, actors and
//! references (the same rules the model enforces, so a client can check a
//! request before sending it). Used as `value_type`s and `pattern`s in the
//! route annotations; the handlers still parse with the model's types.

use utoipa::ToSchema;

/// An artifact's lifecycle state.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Lifecycle {
    Draft,
    Active,
    Deprecated,
    Archived,
}

/// A classification level (also an actor's clearance).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

/// A key scope or a grant's permission.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Scope {
    Read,
    Write,
    Admin,
    Export,
}

/// A run's status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Partial,
    Interrupted,
}

/// A job's state.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
    Quarantined,
}

/// A job kind.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobKind {
    Ingest,
    Reindex,
    Repair,
    Export,
    Noop,
}

/// What `POST /v1/jobs/{id}/{action}` does.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobAction {
    Retry,
    Cancel,
    Quarantine,
    Release,
}

/// The tokenizer a context package counts its budget in.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum Encoding {
    #[schema(rename = "cl100k_base")]
    Cl100kBase,
    #[schema(rename = "o200k_base")]
    O200kBase,
}

/// Whether an artifact exists, is tombstoned, or had its content erased.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ArtifactState {
    Live,
    Deleted,
    Purged,
}

/// What a revision did.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    Restored,
    Purged,
}

/// How an audited action ended.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

/// Whether a webhook receives events.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum WebhookState {
    Enabled,
    Disabled,
}

/// Where a webhook delivery is.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum DeliveryState {
    Pending,
    Delivering,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

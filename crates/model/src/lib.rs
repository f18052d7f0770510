//! Kontextual's domain model: the vocabulary every other crate speaks.
//!
//! Invariant: this crate does no IO, spawns no threads and knows no database,
//! HTTP or CLI crate. Everything here is a value type or a pure function, so
//! the rules it encodes (name syntax, audit-chain hashing, change records) are
//! the same whichever backend or surface uses them.

pub mod actor;
pub mod artifact;
pub mod audit;
pub mod change;
pub mod context;
pub mod digest;
pub mod error;
pub mod event;
pub mod event_type;
pub mod grant;
pub mod ids;
pub mod job;
pub mod key;
pub mod metadata;
pub mod names;
pub mod relation;
pub mod run;
pub mod webhook;

pub use actor::{Actor, ActorKind};
pub use artifact::{Artifact, ArtifactState, Classification, Lifecycle, Provenance, Revision};
pub use audit::{AuditDraft, AuditRecord, ChainHead, Outcome};
pub use change::{Change, ChangeKind};
pub use context::ContextPackage;
pub use digest::{Digest, DigestWriter};
pub use error::ModelError;
pub use event::{EventDraft, OutboxEvent};
pub use event_type::{TypePattern, TypePatternError};
pub use grant::{AccessEntry, Clearance, Grant, GrantPermission, GrantScope, Hold};
pub use ids::{
    ArtifactId, CollectionId, CorrelationId, DeliveryId, JobId, RelationId, RunId, WebhookId,
};
pub use job::{AttemptOutcome, Job, JobAttempt, JobResult, JobState, JobStats, JobTransition};
pub use key::{ApiKey, Idempotency, Scope};
pub use metadata::Metadata;
pub use names::{ArtifactName, ArtifactRef, CollectionName, Namespace, PackageName, RelationType};
pub use relation::{Collection, Relation};
pub use run::{Run, RunStatus, RunStep, RunSummary};
pub use webhook::{
    DELIVER_BATCH_JOB, DELIVER_JOB, Delivery, DeliveryAttempt, DeliveryCounts, DeliveryDetail,
    DeliveryState, Webhook, WebhookAction, WebhookSecrets, WebhookState,
};

/// Timestamps are UTC instants; they serialize as RFC 3339 strings.
pub type Timestamp = jiff::Timestamp;

/// The current time, truncated to microseconds.
///
/// Every backend must store instants exactly (audit hashes cover them), and
/// PostgreSQL's `timestamptz` keeps microseconds, so no instant carries more.
pub fn now() -> Timestamp {
    let t = Timestamp::now();
    let micros = t.as_microsecond();
    Timestamp::from_microsecond(micros).unwrap_or(t)
}

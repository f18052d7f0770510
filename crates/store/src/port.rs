//! The store contract: what every backend guarantees.
//!
//! Guarantees common to all methods:
//! - **Namespaces.** Every read and write is scoped to one namespace; ids of
//!   another namespace are not found.
//! - **Atomicity.** [`Store::write`](crate::Store::write) applies a whole [`WriteBatch`] or none
//!   of it. A failed batch leaves no trace (no revision, blob, audit record or
//!   event), and never affects other callers' batches committed alongside it.
//! - **Visibility and durability.** When `write` returns `Ok`, the changes are
//!   durable and visible to every later read, from any handle or process.
//! - **Ordering.** Listings have a deterministic order and keyset cursors.
//!   Audit and outbox sequence numbers follow commit order, without reuse.

use std::io::Read;

use kontextual_model::audit::ChainReport;
use kontextual_model::{
    Actor, Artifact, ArtifactId, ArtifactName, AuditDraft, ChainHead, Classification,
    CollectionName, CorrelationId, Digest, Lifecycle, Metadata, Namespace, Provenance, Relation,
    RelationId, RelationType, Revision, RunId,
};
use kontextual_model::{DeliveryId, JobId, WebhookId};
use serde::Serialize;

use crate::Result;

/// Who writes, on whose behalf, in which namespace.
#[derive(Clone, Debug)]
pub struct WriteContext {
    pub namespace: Namespace,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    /// The operation run this write belongs to, if any (ingest, import, …).
    pub run_id: Option<RunId>,
}

/// A set of operations applied atomically, in order.
#[derive(Debug)]
pub struct WriteBatch {
    pub ctx: WriteContext,
    pub ops: Vec<Op>,
}

/// Addresses an artifact within the batch's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactKey {
    Id(ArtifactId),
    Name {
        collection: CollectionName,
        name: ArtifactName,
    },
}

impl std::fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArtifactKey::Id(id) => write!(f, "artifact {id}"),
            ArtifactKey::Name { collection, name } => write!(f, "artifact {collection}/{name}"),
        }
    }
}

/// What a write expects to find (optimistic concurrency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expect {
    /// No expectation: create or update.
    #[default]
    Any,
    /// Create only: a live artifact with that name is `AlreadyExists`.
    Absent,
    /// Update only if the current revision is exactly this one, else `Conflict`.
    Revision(u64),
}

/// Content for a new revision. Readers are streamed in chunks, never held whole.
pub enum Content {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + Send>),
    /// Keep the current content (attribute-only update). Invalid on create.
    Keep,
    /// Large content the store already spooled and hashed while preparing
    /// a write (it reads streamed content before its transaction). Only
    /// the store makes one.
    Staged(Staged),
}

/// Content of 1 MiB or more in a spool file, with its digest and size, so
/// the write transaction inserts its chunks under their digest at once (or
/// not at all when the blob exists) instead of staging and renaming them.
pub struct Staged {
    pub(crate) file: std::fs::File,
    pub(crate) digest: kontextual_model::Digest,
    pub(crate) size: u64,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Content::Reader(_) => f.write_str("Reader"),
            Content::Keep => f.write_str("Keep"),
            Content::Staged(s) => write!(f, "Staged({} bytes, {})", s.size, s.digest),
        }
    }
}

/// Create or update an artifact by name. `None` attributes keep their current
/// value on update and take their default on create.
///
/// A put whose content and attributes equal the current live revision writes
/// nothing and yields [`Change::ArtifactUnchanged`] (`provenance.source_mtime`
/// alone does not count as a change). A put on a deleted or purged artifact
/// restores it as a new revision of the same id.
#[derive(Debug)]
pub struct PutArtifact {
    pub collection: CollectionName,
    pub name: ArtifactName,
    pub content: Content,
    pub artifact_type: Option<String>,
    pub media_type: Option<String>,
    /// The content's title (from its adapter). Unlike the other attributes,
    /// `None` means "no title" — unless the content is kept, which keeps it.
    pub title: Option<String>,
    pub metadata: Option<Metadata>,
    pub lifecycle: Option<Lifecycle>,
    pub classification: Option<Classification>,
    pub source_system: Option<String>,
    pub provenance: Option<Provenance>,
    pub expect: Expect,
}

impl PutArtifact {
    pub fn new(collection: CollectionName, name: ArtifactName, content: Content) -> Self {
        PutArtifact {
            collection,
            name,
            content,
            artifact_type: None,
            media_type: None,
            title: None,
            metadata: None,
            lifecycle: None,
            classification: None,
            source_system: None,
            provenance: None,
            expect: Expect::Any,
        }
    }
}

/// One mutation, grouped by the domain that owns it; each domain's
/// operations are applied by its store module (`apply.rs` routes them).
/// Each yields one or more [`Change`]s.
#[derive(Debug)]
pub enum Op {
    Knowledge(KnowledgeOp),
    Access(AccessOp),
    Jobs(JobOp),
    Runs(RunOp),
    Feed(FeedOp),
    Webhooks(WebhookOp),
    /// Append an audit record that accompanies no state change (e.g. a denial).
    Audit(AuditDraft),
}

/// Collections, artifacts, relations, context packages and imports.
#[derive(Debug)]
pub enum KnowledgeOp {
    /// `AlreadyExists` if the name is taken, unless `if_absent` (then unchanged, no change record).
    CreateCollection {
        name: CollectionName,
        description: String,
        if_absent: bool,
    },
    PutArtifact(PutArtifact),
    /// Tombstone: a new revision in state `deleted`; content stays (history, restore).
    /// Live relations touching the artifact are deleted too, each with its own change.
    DeleteArtifact {
        key: ArtifactKey,
        expect: Option<u64>,
    },
    /// Erase content for good: every revision loses its bytes (digests stay as
    /// records), blobs no revision needs are collected, a `purged` revision is
    /// added. Works on live or deleted artifacts.
    PurgeArtifact {
        key: ArtifactKey,
        expect: Option<u64>,
    },
    /// Both endpoints must be live artifacts; an identical live edge is `AlreadyExists`.
    CreateRelation {
        source: ArtifactKey,
        rel_type: RelationType,
        target: ArtifactKey,
        properties: Metadata,
    },
    UpdateRelation {
        id: RelationId,
        rel_type: Option<RelationType>,
        properties: Option<Metadata>,
        expect: Option<u64>,
    },
    DeleteRelation {
        id: RelationId,
        expect: Option<u64>,
    },
    /// Stores a context package manifest as the next version of `name`,
    /// unless the latest version has the same digest (then
    /// [`Change::ContextPackageUnchanged`], nothing written).
    SaveContextPackage {
        name: kontextual_model::PackageName,
        digest: Digest,
        manifest: serde_json::Value,
    },
    /// Writes the records of an export package with their original ids,
    /// revisions, actors and times (K9). Each revision gets an audit record
    /// that vouches for it ([`Change::RevisionImported`]); one
    /// [`Change::Imported`] sums the import up. Blobs are read from their
    /// files and must hash to their digest. Conflicts follow `on_conflict`.
    ImportRecords(Box<ImportRecords>),
}

/// Keys, clearances, holds and quarantines, grants, idempotency and the access log.
#[derive(Debug)]
pub enum AccessOp {
    /// Stores a new API key (its `secret_hash` must be set). The key's
    /// namespace is the batch's. `AlreadyExists` if the id is taken.
    CreateKey(kontextual_model::ApiKey),
    /// Revokes a key of the batch's namespace; `NotFound` if there is none.
    /// Revoking a revoked key changes nothing (no change record).
    RevokeKey { id: String },
    /// Records when keys were last used (coalesced by the caller).
    /// Bookkeeping: no change, no audit record; unknown ids are ignored.
    TouchKeys {
        uses: Vec<(String, kontextual_model::Timestamp)>,
    },
    /// Appends reads to the access log (bookkeeping: no change, no audit).
    RecordAccess {
        entries: Vec<kontextual_model::AccessEntry>,
    },
    /// Deletes access-log entries older than `older_than` (retention; not audited).
    PruneAccessLog {
        older_than: kontextual_model::Timestamp,
    },
    /// Sets an actor's clearance in the batch's namespace.
    SetClearance {
        actor: kontextual_model::Actor,
        level: kontextual_model::Classification,
    },
    /// Puts an artifact under legal hold; `AlreadyExists` if it is held.
    SetHold { key: ArtifactKey, reason: String },
    /// Releases an artifact's hold; `NotFound` if it is not held.
    ReleaseHold { key: ArtifactKey },
    /// Quarantines an artifact: kept, but excluded from processing, search
    /// and export until released. `AlreadyExists` if it is quarantined.
    QuarantineArtifact { key: ArtifactKey, reason: String },
    /// Releases a quarantined artifact; `NotFound` if it is not quarantined.
    ReleaseArtifact { key: ArtifactKey },
    /// Gives a grant (in the batch's namespace). `AlreadyExists` if the same
    /// grant exists.
    CreateGrant {
        actor: kontextual_model::Actor,
        permission: kontextual_model::GrantPermission,
        scope: kontextual_model::GrantScope,
    },
    /// Takes a grant back; `NotFound` if there is no such grant.
    DeleteGrant {
        actor: kontextual_model::Actor,
        permission: kontextual_model::GrantPermission,
        scope: kontextual_model::GrantScope,
    },
    /// Reserves an idempotency key for a request (bookkeeping, not
    /// audited): yields [`Change::Idempotency`] with what was found.
    /// Reservations older than `expire_before` are forgotten first.
    BeginIdempotent {
        scope: String,
        key: String,
        request_hash: Digest,
        expire_before: kontextual_model::Timestamp,
    },
    /// Stores the answer of a reserved key (no change record).
    FinishIdempotent {
        scope: String,
        key: String,
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Releases a reservation whose request failed, so a retry runs again.
    AbandonIdempotent { scope: String, key: String },
}

/// The job queue.
#[derive(Debug)]
pub enum JobOp {
    /// Enqueues a job in the batch's namespace (audited as `job.enqueue`).
    /// With a `unique_key` already held by a queued or retrying job of the
    /// namespace, nothing is written: [`Change::JobUnchanged`] names that job.
    EnqueueJob(NewJob),
    /// Claims up to `limit` due jobs (any namespace) for `worker`, oldest
    /// due first, after rescuing jobs whose lease expired. Bookkeeping: not
    /// audited. Yields [`Change::JobsClaimed`].
    ClaimJobs {
        worker: String,
        /// Only these kinds; empty means any.
        kinds: Vec<String>,
        limit: u32,
        lease: std::time::Duration,
    },
    /// Extends the lease of a job the caller still holds (same attempt,
    /// still running): [`Change::JobLeased`], whose `stop_requested` tells
    /// the worker to stop. `Refused` if the lease was lost.
    HeartbeatJob {
        id: JobId,
        attempt: u32,
        lease: std::time::Duration,
    },
    /// Ends the attempt the caller holds. Only counts while the job is still
    /// running under that attempt (`Refused` otherwise: a rescued job is not
    /// overwritten by its old worker). `report` replaces the job's
    /// partial-failure report when given.
    FinishJob {
        id: JobId,
        attempt: u32,
        result: kontextual_model::JobResult,
        report: Option<serde_json::Value>,
    },
    /// An operator's recovery action on a job (audited as `job.<action>`
    /// when it changes something; repeating it changes nothing).
    ActOnJob { id: JobId, action: JobAction },
    /// Deletes finished jobs (and their attempts) that ended before `finished_before`.
    PruneJobs {
        finished_before: kontextual_model::Timestamp,
    },
}

/// Operation runs.
#[derive(Debug)]
pub enum RunOp {
    /// Starts an operation run in state `running` (audited as `run.start`).
    StartRun {
        id: RunId,
        kind: String,
        input: serde_json::Value,
        /// The process that runs it, to detect a dead owner later.
        owner: String,
        /// The job attempt that runs it, if any: the run points at the job
        /// and the attempt at the run.
        job: Option<(JobId, u32)>,
    },
    /// Appends a step to a running run: bookkeeping, no change, no audit record.
    RunStep {
        id: RunId,
        name: String,
        status: kontextual_model::RunStatus,
        detail: serde_json::Value,
    },
    /// Ends a running run with its final status and manifest (audited).
    /// `Conflict` if the run is not running any more.
    FinishRun {
        id: RunId,
        status: kontextual_model::RunStatus,
        manifest: serde_json::Value,
    },
}

/// The change feed: consumers' cursors and retention.
#[derive(Debug)]
pub enum FeedOp {
    /// Records that `consumer` applied every outbox event up to `seq`
    /// (registering it on first use). Cursors only move forward; a `seq`
    /// beyond the last event is `InvalidInput`. Projection bookkeeping, not
    /// domain state: it yields no change and no audit record.
    AckOutbox { consumer: String, seq: u64 },
    /// Retention: delete outbox events that every registered consumer has
    /// acknowledged and that are older than `older_than`. With no consumer
    /// registered nothing is deleted (a future consumer may still need them).
    PruneOutbox {
        older_than: kontextual_model::Timestamp,
    },
}

/// Webhook subscriptions and their deliveries (O5). Secrets are stored
/// with the webhook but never appear in a change, audit record or event.
#[derive(Debug)]
pub enum WebhookOp {
    /// Creates a webhook in the batch's namespace (audited as
    /// `webhook.create`). The store sets its namespace, times, creator (the
    /// batch's actor) and failure streak (none); the rest is kept as given.
    /// `AlreadyExists` if the id is taken; `InvalidInput` for an empty or
    /// over-long URL, type pattern or secret.
    CreateWebhook {
        webhook: kontextual_model::Webhook,
        secret: Secret,
    },
    /// Changes the given fields of a webhook (audited as `webhook.update`).
    UpdateWebhook { id: WebhookId, patch: WebhookPatch },
    /// Enables or disables a webhook (audited as `webhook.enable` /
    /// `webhook.disable`). Enabling clears the failure streak and the reason.
    SetWebhookState {
        id: WebhookId,
        state: kontextual_model::WebhookState,
        reason: Option<String>,
    },
    /// The current secret becomes the previous one (valid until
    /// `previous_expires_at`) and `secret` the current one (audited as
    /// `webhook.rotate_secret`, without either secret).
    RotateSecret {
        id: WebhookId,
        secret: Secret,
        previous_expires_at: Option<kontextual_model::Timestamp>,
    },
    /// Deletes a webhook and cancels its pending and failed deliveries
    /// (audited as `webhook.delete`); the deliveries stay until pruned.
    DeleteWebhook { id: WebhookId },
    /// Creates deliveries of outbox events, each in its webhook's namespace
    /// (whatever the batch's), and in the same transaction enqueues the
    /// jobs that deliver the new ones, with `max_attempts`: with
    /// `per_job` 1, a [`kontextual_model::DELIVER_JOB`] each; above, a
    /// [`kontextual_model::DELIVER_BATCH_JOB`] per run of up to `per_job`
    /// new deliveries of one webhook, in event order. A (webhook, event)
    /// pair that already has a delivery is skipped, so replaying events
    /// after a crash creates nothing twice; so is a webhook that no longer
    /// exists. Bookkeeping: not audited. Yields
    /// [`Change::WebhookDeliveriesCreated`](kontextual_model::Change).
    CreateDeliveries {
        deliveries: Vec<NewDelivery>,
        max_attempts: u32,
        per_job: u32,
    },
    /// Hands deliveries on to a [`kontextual_model::DELIVER_JOB`] each, due
    /// at the instant given (now if none): a batch's failed first attempt
    /// goes on to its retry, a delivery the batch did not try to its first
    /// attempt. The job carries the attempts already made (`tried`) and may
    /// make the rest of `max_attempts`. A delivery that is no longer
    /// pending or failed is skipped; one whose job is already pending keeps
    /// that job. Bookkeeping: not audited. Yields
    /// [`Change::WebhookDeliveriesContinued`](kontextual_model::Change).
    ContinueDeliveries {
        deliveries: Vec<(DeliveryId, Option<kontextual_model::Timestamp>)>,
        max_attempts: u32,
    },
    /// Records one delivery attempt: appends it, updates the delivery, and
    /// the webhook's failure streak (set by the first failure, cleared by a
    /// success). Bookkeeping: not audited. `NotFound` for an unknown delivery.
    RecordAttempt(DeliveryOutcome),
    /// An operator sends deliveries of a webhook again: each goes back to
    /// `pending` with a fresh delivery job (audited as `webhook.resend`).
    /// `NotFound` if a delivery is not the webhook's.
    ResendDeliveries {
        webhook: WebhookId,
        deliveries: Vec<DeliveryId>,
        max_attempts: u32,
    },
    /// Deletes finished deliveries (succeeded, dead, cancelled) last updated
    /// before `older_than`, with their attempts. Bookkeeping: not audited.
    PruneDeliveries {
        older_than: kontextual_model::Timestamp,
    },
}

/// A webhook signing secret on its way into the store; `Debug` never
/// shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// The fields of a webhook to change; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub types: Option<Vec<String>>,
    pub collections: Option<Vec<CollectionName>>,
}

/// A delivery to create: one outbox event for one webhook.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub webhook: WebhookId,
    pub event_seq: u64,
    pub event_type: String,
    /// The exact bytes every attempt sends.
    pub body: Vec<u8>,
}

/// How one delivery attempt went, and where the delivery goes next.
#[derive(Clone, Debug)]
pub struct DeliveryOutcome {
    pub delivery: DeliveryId,
    pub at: kontextual_model::Timestamp,
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// The start of the answer's body (the deliverer truncates it).
    pub response: Option<String>,
    /// The delivery's new state: `Succeeded`, `Failed` (retried at
    /// `next_attempt_at`) or `Dead`; a success clears the failure streak,
    /// anything else starts or continues it.
    pub state: kontextual_model::DeliveryState,
    pub next_attempt_at: Option<kontextual_model::Timestamp>,
}

/// What the deliverer needs for one attempt: the delivery and its body,
/// its webhook (`None` once deleted) and the webhook's signing secrets —
/// read once per batch and shared by the batch's deliveries of it.
#[derive(Clone, Debug)]
pub struct DeliveryToSend {
    pub delivery: kontextual_model::Delivery,
    pub body: Vec<u8>,
    pub webhook: Option<std::sync::Arc<WebhookToSend>>,
}

/// A webhook with its signing secrets.
pub type WebhookToSend = (kontextual_model::Webhook, kontextual_model::WebhookSecrets);

impl DeliveryToSend {
    /// The delivery as namespace `ns` sees it: none if it is another
    /// namespace's; no webhook if that is another namespace's.
    pub fn scoped(self, ns: &kontextual_model::Namespace) -> Option<DeliveryToSend> {
        if &self.delivery.namespace != ns {
            return None;
        }
        Some(DeliveryToSend {
            webhook: self.webhook.filter(|w| &w.0.namespace == ns),
            ..self
        })
    }
}

/// Delivery listing filter. Order: newest first.
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    /// Only these states; empty: any.
    pub states: Vec<kontextual_model::DeliveryState>,
    /// Only deliveries created at or after this instant.
    pub since: Option<kontextual_model::Timestamp>,
}

impl Op {
    /// Whether the operation is bookkeeping: it never yields an audited
    /// change (see `Change::audit_draft`), so an engine need not serialise
    /// it behind the audit chain's writer lock — job workers, key touches
    /// and access logging in many processes then never queue behind each
    /// other or behind content writes. The one place this is decided.
    ///
    /// Not bookkeeping although never audited: `BeginIdempotent`, whose
    /// look-up-then-reserve relies on the writer lock to answer a second
    /// concurrent request "in flight" rather than fail it on the key.
    pub fn is_bookkeeping(&self) -> bool {
        matches!(
            self,
            Op::Jobs(
                JobOp::ClaimJobs { .. } | JobOp::HeartbeatJob { .. } | JobOp::FinishJob { .. }
            ) | Op::Runs(RunOp::RunStep { .. })
                | Op::Feed(FeedOp::AckOutbox { .. })
                | Op::Webhooks(
                    WebhookOp::CreateDeliveries { .. }
                        | WebhookOp::ContinueDeliveries { .. }
                        | WebhookOp::RecordAttempt(_)
                        | WebhookOp::PruneDeliveries { .. }
                )
                | Op::Access(
                    AccessOp::TouchKeys { .. }
                        | AccessOp::RecordAccess { .. }
                        | AccessOp::FinishIdempotent { .. }
                        | AccessOp::AbandonIdempotent { .. }
                        | AccessOp::PruneAccessLog { .. }
                )
        )
    }
}

/// What an import writes. Namespaces in the records are ignored: every
/// record lands in the batch's namespace.
#[derive(Clone, Debug, Default)]
pub struct ImportRecords {
    /// The package's id (its export id), for the audit record.
    pub package: String,
    pub collections: Vec<kontextual_model::Collection>,
    pub artifacts: Vec<Artifact>,
    /// Every revision of every artifact, each history complete from 1.
    pub revisions: Vec<Revision>,
    pub relations: Vec<Relation>,
    pub runs: Vec<(kontextual_model::Run, Vec<kontextual_model::RunStep>)>,
    pub blobs: Vec<ImportBlob>,
    pub on_conflict: ImportConflict,
    /// Facts about the package for the summary audit record.
    pub detail: serde_json::Value,
}

/// A content blob staged in a file.
#[derive(Clone, Debug)]
pub struct ImportBlob {
    pub digest: Digest,
    pub size: u64,
    pub path: std::path::PathBuf,
}

/// What an import does with a record whose id the store already holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportConflict {
    /// Refuse the whole import (nothing is written).
    #[default]
    Fail,
    /// Keep the store's record and import the rest. A name taken by a
    /// different id is still refused.
    Skip,
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: JobId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    /// Not before this instant; `None`: now.
    pub run_at: Option<kontextual_model::Timestamp>,
    pub unique_key: Option<String>,
    /// The API key and scopes of the enqueuer (`None`: local administrator).
    pub key_id: Option<String>,
    pub scopes: Option<Vec<kontextual_model::Scope>>,
}

/// An operator's recovery action on a job (O2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobAction {
    /// A failed, dead or cancelled job is queued again now, with at least
    /// one more attempt allowed.
    Retry,
    /// A queued or retrying job is cancelled; a running one is asked to stop.
    Cancel,
    /// Kept, never processed until released; a running one is asked to stop.
    Quarantine,
    /// A quarantined job is queued again.
    Release,
}

impl JobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Cancel => "cancel",
            JobAction::Quarantine => "quarantine",
            JobAction::Release => "release",
        }
    }
}

/// Job listing filter. Order: newest first.
#[derive(Clone, Debug, Default)]
pub struct JobQuery {
    pub state: Option<kontextual_model::JobState>,
    pub kind: Option<String>,
}

/// A page request: keyset cursor plus size.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Resume after this cursor (from a previous [`Page::next`]).
    pub after: Option<Cursor>,
    /// Maximum items; 0 means the backend default (100). Capped at 1000.
    pub limit: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    pub fn first(limit: u32) -> Self {
        PageRequest { after: None, limit }
    }

    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }

    /// Where a newest-first listing keyed by id (runs, jobs) resumes: below
    /// the cursor's id, or below every id on the first page.
    pub(crate) fn before_id(&self) -> Result<uuid::Uuid> {
        match &self.after {
            Some(c) => uuid::Uuid::parse_str(&c.0).map_err(|_| foreign_cursor()),
            None => Ok(uuid::Uuid::max()),
        }
    }

    /// Where a newest-first listing keyed by a sequence number (a webhook's
    /// deliveries, by event) resumes: below the cursor's number, or below
    /// every number on the first page.
    pub(crate) fn before_seq(&self) -> Result<i64> {
        match &self.after {
            Some(c) => {
                c.0.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(foreign_cursor)
            }
            None => Ok(i64::MAX),
        }
    }
}

/// A cursor this listing did not produce.
fn foreign_cursor() -> crate::StoreError {
    crate::StoreError::InvalidInput(
        "the page cursor is malformed or belongs to another listing".to_owned(),
    )
}

/// An opaque position in a listing. Only valid for the listing that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items may follow.
    pub next: Option<Cursor>,
}

/// Artifact listing filter. Order: collection name, then artifact name.
#[derive(Clone, Debug, Default)]
pub struct ArtifactQuery {
    pub collection: Option<CollectionName>,
    pub digest: Option<Digest>,
    /// Include deleted and purged artifacts (tombstones).
    pub include_deleted: bool,
    /// Only artifacts classified at or below this level (the caller's
    /// clearance): a listing never shows what a single read would hide.
    pub max_classification: Option<kontextual_model::Classification>,
    /// Leave out quarantined artifacts (callers who may not administer them).
    pub exclude_quarantined: bool,
}

impl ArtifactQuery {
    /// The classifications a listing may show, spelled `,public,internal,`
    /// for a containment test in SQL; `None`: every level.
    pub fn classification_set(&self) -> Option<String> {
        self.max_classification.map(|max| {
            let mut s = String::from(",");
            for c in kontextual_model::Classification::ALL {
                if *c <= max {
                    s.push_str(c.as_str());
                    s.push(',');
                }
            }
            s
        })
    }
}

/// Relation listing filter. Order: creation (id).
#[derive(Clone, Debug, Default)]
pub struct RelationQuery {
    /// Relations where this artifact is the source or the target.
    pub artifact: Option<ArtifactId>,
    pub rel_type: Option<RelationType>,
    pub include_deleted: bool,
}

/// Audit query filter; every field narrows. Order: sequence.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub namespace: Option<Namespace>,
    /// `KIND:NAME`.
    pub actor: Option<String>,
    /// An action (`artifact.update`) or a family (`artifact`).
    pub action: Option<String>,
    /// A target id or target name.
    pub target: Option<String>,
    pub since: Option<kontextual_model::Timestamp>,
    pub until: Option<kontextual_model::Timestamp>,
    /// The correlation id of the request that wrote the records.
    pub correlation_id: Option<String>,
}

/// Where the change feed stands: enough for a projection to know whether it
/// is behind, and whether it was built from this store at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedPosition {
    pub store_id: String,
    /// The last outbox sequence number (0 when empty).
    pub last_seq: u64,
}

/// Schema and content summary, for `db status`.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStatus {
    pub backend: String,
    pub location: String,
    pub store_id: String,
    pub schema_version: u32,
    pub latest_schema_version: u32,
    pub pending_migrations: Vec<String>,
    pub collections: u64,
    pub artifacts_live: u64,
    pub artifacts_deleted: u64,
    pub artifacts_purged: u64,
    pub revisions: u64,
    pub relations_live: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub audit_records: u64,
    pub audit_head: Option<ChainHead>,
    pub outbox_events: u64,
    pub outbox_last_seq: u64,
    pub size_bytes: u64,
}

/// What kind of problem `check` found; `verify` reports them by category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCategory {
    /// The database or a blob is damaged (integrity check, digest mismatch).
    Corruption,
    /// A record points at something that is not there (missing blob, endpoint, revision).
    MissingReference,
    /// The schema is behind this binary.
    PendingMigration,
    /// The audit chain does not verify.
    AuditChain,
    /// The search index (a projection) is damaged or disagrees with the
    /// store; it can be rebuilt from the store without loss.
    SearchIndex,
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub category: ProblemCategory,
    pub subject: String,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub blobs_checked: u64,
    pub blob_bytes_checked: u64,
    pub revisions_checked: u64,
    pub audit: ChainReport,
    /// Where the expected audit head came from, if one was checked.
    pub audit_head_source: Option<String>,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

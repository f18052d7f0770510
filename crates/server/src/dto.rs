//! The HTTP wire types: what the API answers, with the schemas the OpenAPI
//! document publishes. They are separate from the domain types, so a field
//! added to a model or a service result does not change the API by accident;
//! handlers convert domain → DTO with [`wire`].
//!
//! Today every DTO mirrors the JSON its domain type wrote before the split
//! (field for field, same names, same omissions), and [`wire`] checks that
//! byte for byte in debug builds — the tests and the CI's fuzzing run
//! them — so the split changed no answer. A deliberate change to the wire
//! format is made here, together with that check's expectation.
//!
//! Scalars (ids, names, times, digests, enum words, metadata) keep their
//! model types: they serialize as the strings and objects documented by the
//! `value_type`s.

use kontextual_model::{
    Actor, ArtifactId, ArtifactName, ArtifactState, ChangeKind, Classification, CollectionId,
    CollectionName, CorrelationId, Digest, GrantPermission, GrantScope, JobId, JobState, Lifecycle,
    Metadata, Namespace, RelationId, RelationType, RunId, RunStatus, Scope, Timestamp,
};
use serde::Serialize;
use utoipa::ToSchema;

/// A domain value in its wire form.
pub fn wire<W, D>(d: D) -> W
where
    D: Serialize,
    W: Serialize + From<D>,
{
    #[cfg(debug_assertions)]
    let before = serde_json::to_vec(&d).ok();
    let w = W::from(d);
    #[cfg(debug_assertions)]
    debug_assert_eq!(
        before.map(String::from_utf8),
        serde_json::to_vec(&w).ok().map(String::from_utf8),
        "{} does not write what the domain type wrote",
        std::any::type_name::<W>()
    );
    w
}

/// Defines a DTO whose fields are moved (and converted with `Into`) from the
/// same-named fields of a domain type.
macro_rules! dto {
    ($(#[$meta:meta])* $name:ident from $src:ty {
        $($(#[$fmeta:meta])* $field:ident : $ty:ty $(=> $conv:path)?),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl From<$src> for $name {
            fn from(v: $src) -> Self {
                $name { $($field: dto!(@convert v.$field $(, $conv)?),)* }
            }
        }
    };
    (@convert $e:expr) => { $e.into() };
    (@convert $e:expr, $conv:path) => { $conv($e) };
}

/// A `Vec` of DTOs from a `Vec` of domain values.
fn all<W: From<D>, D>(v: Vec<D>) -> Vec<W> {
    v.into_iter().map(W::from).collect()
}

/// An optional DTO from an optional domain value.
fn opt<W: From<D>, D>(v: Option<D>) -> Option<W> {
    v.map(W::from)
}

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// One page of a listing.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `after` of the next page; absent (`null`) on the last page.
    pub next: Option<String>,
}

impl<W, D> From<kontextual_app::store_types::Page<D>> for Page<W>
where
    W: From<D>,
{
    fn from(p: kontextual_app::store_types::Page<D>) -> Self {
        Page {
            items: all(p.items),
            next: p.next.map(|c| c.0),
        }
    }
}

/// A list answered whole (no paging): a JSON array.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
pub struct List<T>(pub Vec<T>);

impl<W: From<D>, D> From<Vec<D>> for List<W> {
    fn from(v: Vec<D>) -> Self {
        List(all(v))
    }
}

dto!(
    /// A collection.
    Collection from kontextual_model::Collection {
        #[schema(value_type = String, format = Uuid)]
        id: CollectionId,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        name: CollectionName,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        /// Live (not deleted) artifacts in the collection.
        artifact_count: u64,
    }
);

dto!(
    /// Where an artifact's current revision came from.
    Provenance from kontextual_model::Provenance {
        #[serde(skip_serializing_if = "Option::is_none")]
        source_path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = DateTime)]
        source_mtime: Option<Timestamp>,
        /// Artifacts this one was derived from.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        #[schema(value_type = Vec<String>)]
        derived_from: Vec<ArtifactId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        transformation: Option<String>,
    }
);

dto!(
    /// An artifact: the current state of its latest revision.
    Artifact from kontextual_model::Artifact {
        #[schema(value_type = String, format = Uuid)]
        id: ArtifactId,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String, format = Uuid)]
        collection_id: CollectionId,
        #[schema(value_type = String)]
        collection: CollectionName,
        #[schema(value_type = String)]
        name: ArtifactName,
        #[serde(rename = "type")]
        artifact_type: String,
        media_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// `sha256:HEX` of the content.
        #[schema(value_type = String)]
        digest: Digest,
        size: u64,
        #[schema(value_type = Object)]
        metadata: Metadata,
        #[schema(value_type = crate::wire::Lifecycle)]
        lifecycle: Lifecycle,
        #[schema(value_type = crate::wire::Classification)]
        classification: Classification,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_system: Option<String>,
        provenance: Provenance,
        #[schema(value_type = crate::wire::ArtifactState)]
        state: ArtifactState,
        /// The latest revision (also the ETag).
        revision: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = Uuid)]
        run_id: Option<RunId>,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        #[schema(value_type = String, format = DateTime)]
        updated_at: Timestamp,
    }
);

dto!(
    /// What an upload did: the change (`null` when nothing changed) and the artifact.
    PutOutcome from kontextual_app::PutOutcome {
        #[schema(value_type = Option<crate::wire::ChangeKind>)]
        change: Option<ChangeKind>,
        artifact: Artifact,
    }
);

dto!(
    /// One revision of an artifact: the change and the state it produced.
    Revision from kontextual_model::Revision {
        #[schema(value_type = String, format = Uuid)]
        artifact_id: ArtifactId,
        revision: u64,
        #[schema(value_type = crate::wire::ChangeKind)]
        change: ChangeKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        prev_digest: Option<Digest>,
        #[schema(value_type = String)]
        digest: Digest,
        size: u64,
        media_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[schema(value_type = Object)]
        metadata: Metadata,
        #[schema(value_type = crate::wire::Lifecycle)]
        lifecycle: Lifecycle,
        #[schema(value_type = crate::wire::Classification)]
        classification: Classification,
        provenance: Provenance,
        /// False once the content was purged.
        content_available: bool,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = String)]
        correlation_id: CorrelationId,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = Uuid)]
        run_id: Option<RunId>,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
    }
);

dto!(
    /// A typed, directed relationship `source --type--> target`.
    Relation from kontextual_model::Relation {
        #[schema(value_type = String, format = Uuid)]
        id: RelationId,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[serde(rename = "type")]
        #[schema(value_type = String)]
        rel_type: RelationType,
        #[schema(value_type = String, format = Uuid)]
        source: ArtifactId,
        #[schema(value_type = String, format = Uuid)]
        target: ArtifactId,
        #[schema(value_type = Object)]
        properties: Metadata,
        revision: u64,
        deleted: bool,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        #[schema(value_type = String, format = DateTime)]
        updated_at: Timestamp,
    }
);

dto!(
    /// A permission granted to an actor.
    Grant from kontextual_model::Grant {
        #[schema(value_type = String, format = Uuid)]
        id: uuid::Uuid,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = crate::wire::Scope)]
        permission: GrantPermission,
        /// `{"kind": "namespace"}`, `{"kind": "collection", "name": C}` or
        /// `{"kind": "artifact", "name": [C, NAME]}`.
        #[schema(value_type = Object)]
        scope: GrantScope,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
    }
);

dto!(
    /// The highest classification an actor may read.
    Clearance from kontextual_model::Clearance {
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = crate::wire::Classification)]
        level: Classification,
        #[schema(value_type = String, format = DateTime)]
        set_at: Timestamp,
    }
);

dto!(
    /// A legal hold or a quarantine on an artifact.
    Hold from kontextual_model::Hold {
        #[schema(value_type = String, format = Uuid)]
        artifact_id: ArtifactId,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        collection: CollectionName,
        #[schema(value_type = String)]
        name: ArtifactName,
        reason: String,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
    }
);

dto!(
    /// An API key (never its secret).
    ApiKey from kontextual_model::ApiKey {
        /// The public id (the token's second part).
        id: String,
        name: String,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = Vec<crate::wire::Scope>)]
        scopes: Vec<Scope>,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = DateTime)]
        revoked_at: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = DateTime)]
        last_used_at: Option<Timestamp>,
    }
);

dto!(
    /// A new key and its token; the token is shown in this answer only.
    NewKey from kontextual_app::NewKey {
        key: ApiKey,
        /// `kx_…`: send it as `Authorization: Bearer kx_…`.
        token: String,
    }
);

dto!(
    /// A background job.
    Job from kontextual_model::Job {
        #[schema(value_type = String, format = Uuid)]
        id: JobId,
        #[schema(value_type = String)]
        namespace: Namespace,
        kind: String,
        #[schema(value_type = Object)]
        payload: serde_json::Value,
        #[schema(value_type = crate::wire::JobState)]
        state: JobState,
        attempt: u32,
        max_attempts: u32,
        #[schema(value_type = String, format = DateTime)]
        run_at: Timestamp,
        unique_key: Option<String>,
        worker: Option<String>,
        #[schema(value_type = Option<String>, format = DateTime)]
        lease_expires_at: Option<Timestamp>,
        #[schema(value_type = Option<crate::wire::JobState>)]
        stop_requested: Option<JobState>,
        last_error: Option<String>,
        #[schema(value_type = Option<Object>)]
        report: Option<serde_json::Value>,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = String)]
        correlation_id: CorrelationId,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        #[schema(value_type = String, format = DateTime)]
        updated_at: Timestamp,
        #[schema(value_type = Option<String>, format = DateTime)]
        finished_at: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Vec<crate::wire::Scope>>)]
        scopes: Option<Vec<Scope>>,
    }
);

dto!(
    /// A queued job; `created` is false when a waiting job with the same
    /// unique key was returned instead.
    Enqueued from kontextual_app::Enqueued {
        job: Job,
        created: bool,
    }
);

dto!(
    /// A section's place in a document, without its text.
    SectionEntry from kontextual_app::SectionEntry {
        /// Heading path of slugs joined by `/`.
        selector: String,
        heading: String,
        level: u8,
        /// `[start, end)` byte offsets in the revision's content.
        #[schema(value_type = Vec<u64>, min_items = 2, max_items = 2)]
        byte_range: (usize, usize),
    }
);

dto!(
    /// One section of one revision, with its text.
    SectionView from kontextual_app::SectionView {
        #[serde(rename = "ref")]
        reference: String,
        #[schema(value_type = String, format = Uuid)]
        artifact_id: ArtifactId,
        revision: u64,
        selector: String,
        heading: String,
        level: u8,
        /// `[start, end)` byte offsets in the revision's content.
        #[schema(value_type = Vec<u64>, min_items = 2, max_items = 2)]
        byte_range: (usize, usize),
        /// `sha256:HEX` of the section's bytes.
        #[schema(value_type = String)]
        digest: Digest,
        text: String,
    }
);

dto!(
    /// Differences between two revisions.
    Diff from kontextual_app::Diff {
        artifact: String,
        from: Revision,
        to: Revision,
        /// `[field, old, new]` for every attribute that differs.
        #[schema(value_type = Vec<Vec<String>>)]
        attributes: Vec<(String, String, String)>,
        /// `{"kind": "same"}`, `{"kind": "text", "unified": …}`,
        /// `{"kind": "binary", "from_size": …, "to_size": …}` or `{"kind": "unavailable"}`.
        #[schema(value_type = Object)]
        content: kontextual_app::DiffContent,
    }
);

dto!(
    /// An artifact reached by following relationships.
    Related from kontextual_app::Related {
        depth: u32,
        /// The relation type followed.
        via: String,
        /// `out` (followed forwards) or `in` (backwards).
        direction: String,
        #[serde(rename = "ref")]
        reference: String,
        #[schema(value_type = String, format = Uuid)]
        artifact_id: ArtifactId,
        title: Option<String>,
        /// The artifact the hop started from.
        #[schema(value_type = String, format = Uuid)]
        from: ArtifactId,
    }
);

dto!(
    /// One ranked search hit.
    SearchHit from kontextual_app::SearchHit {
        rank: u32,
        score: f32,
        /// `COLLECTION/NAME` or `COLLECTION/NAME#selector`.
        #[serde(rename = "ref")]
        reference: String,
        #[schema(value_type = String, format = Uuid)]
        artifact_id: ArtifactId,
        collection: String,
        name: String,
        selector: Option<String>,
        heading: Option<String>,
        title: Option<String>,
        artifact_type: String,
        lifecycle: String,
        revision: u64,
        #[schema(value_type = String, format = DateTime)]
        updated_at: Timestamp,
        /// `{"text": …, "highlights": [[start, end], …]}` (byte ranges in `text`).
        #[schema(value_type = Option<Object>)]
        snippet: Option<kontextual_app::Snippet>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        related: Vec<Related> => all,
    }
);

dto!(
    /// How current the index was for an answer.
    Freshness from kontextual_app::Freshness {
        applied_seq: u64,
        /// Changes in the store not applied yet (0 = read-your-writes).
        lag: u64,
        /// Whether this process owns (and so wrote) the index.
        owner: bool,
    }
);

dto!(
    /// Ranked hits with snippets.
    SearchResponse from kontextual_app::SearchResponse {
        query: String,
        /// Matching documents in the index (before store and policy checks).
        #[schema(value_type = u64)]
        total: usize,
        offset: u32,
        limit: u32,
        next_offset: Option<u32>,
        hits: Vec<SearchHit> => all,
        /// Hits the index returned that the store no longer backs.
        dropped: u32,
        index: Freshness,
    }
);

dto!(
    /// A stored context package with its manifest.
    ContextView from kontextual_app::ContextView {
        name: String,
        version: u64,
        #[schema(value_type = String, format = Uuid)]
        id: uuid::Uuid,
        #[schema(value_type = String)]
        digest: Digest,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        actor: String,
        /// False when the build produced the same manifest as the latest version.
        new_version: bool,
        /// What the package holds (items with their digests), how it was asked for, and its budget.
        #[schema(value_type = Object)]
        manifest: kontextual_app::Manifest,
    }
);

dto!(
    /// One thing a package verification found.
    VerifyProblem from kontextual_app::VerifyProblem {
        subject: String,
        /// `missing`, `altered`, `deleted` or `changed`.
        kind: String,
        detail: String,
    }
);

dto!(
    /// Whether a package still matches what it recorded.
    ContextVerification from kontextual_app::ContextVerification {
        name: String,
        version: u64,
        #[schema(value_type = String)]
        digest: Digest,
        /// Items, relations and runs checked.
        checked: u32,
        verified: bool,
        problems: Vec<VerifyProblem> => all,
    }
);

dto!(
    /// An operation run.
    Run from kontextual_model::Run {
        #[schema(value_type = String, format = Uuid)]
        id: RunId,
        #[schema(value_type = String)]
        namespace: Namespace,
        kind: String,
        #[schema(value_type = crate::wire::RunStatus)]
        status: RunStatus,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = Object)]
        input: serde_json::Value,
        #[schema(value_type = Option<Object>)]
        manifest: Option<serde_json::Value>,
        owner: String,
        #[schema(value_type = String, format = DateTime)]
        started_at: Timestamp,
        #[schema(value_type = Option<String>, format = DateTime)]
        finished_at: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = Uuid)]
        job_id: Option<JobId>,
    }
);

dto!(
    /// One recorded step of a run.
    RunStep from kontextual_model::RunStep {
        #[schema(value_type = String, format = Uuid)]
        run_id: RunId,
        seq: u64,
        name: String,
        #[schema(value_type = crate::wire::RunStatus)]
        status: RunStatus,
        #[schema(value_type = Object)]
        detail: serde_json::Value,
        #[schema(value_type = String, format = DateTime)]
        at: Timestamp,
    }
);

/// A run and its steps.
#[derive(Serialize, ToSchema)]
pub struct RunWithSteps {
    pub run: Run,
    pub steps: Vec<RunStep>,
}

impl From<(kontextual_model::Run, Vec<kontextual_model::RunStep>)> for RunWithSteps {
    fn from((run, steps): (kontextual_model::Run, Vec<kontextual_model::RunStep>)) -> Self {
        RunWithSteps {
            run: run.into(),
            steps: all(steps),
        }
    }
}

dto!(
    /// What an audited action was.
    AuditDraft from kontextual_model::AuditDraft {
        /// `noun.verb`, e.g. `artifact.update`.
        action: String,
        target_kind: String,
        target_id: String,
        target_name: Option<String>,
        revision: Option<u64>,
        #[schema(value_type = Option<String>)]
        prev_digest: Option<Digest>,
        #[schema(value_type = Option<String>)]
        digest: Option<Digest>,
        #[schema(value_type = crate::wire::Outcome)]
        outcome: kontextual_model::Outcome,
        #[schema(value_type = Option<Object>)]
        detail: Option<serde_json::Value>,
    }
);

dto!(
    /// A sequenced, hash-chained audit record.
    AuditRecord from kontextual_model::AuditRecord {
        seq: u64,
        #[schema(value_type = String, format = DateTime)]
        at: Timestamp,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        actor: Actor,
        #[schema(value_type = String)]
        correlation_id: CorrelationId,
        #[schema(value_type = Option<String>, format = Uuid)]
        run_id: Option<RunId>,
        #[serde(flatten)]
        draft: AuditDraft,
        prev_hash: String,
        hash: String,
    }
);

dto!(
    /// An audit chain head: a record's sequence number and hash.
    ChainHead from kontextual_model::ChainHead {
        seq: u64,
        hash: String,
    }
);

/// The audit chain's verification, as `GET /v1/audit/verify` answers it.
#[derive(Serialize, ToSchema)]
pub struct AuditVerification {
    pub records: u64,
    pub head: Option<ChainHead>,
    /// Where the chain breaks (empty when it verifies).
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<kontextual_model::audit::ChainProblem>,
    /// Where the expected head came from (`given`, or the head file), if any.
    pub expected_head_source: Option<String>,
    /// True when there are no problems.
    pub valid: bool,
}

impl From<kontextual_app::AuditVerification> for AuditVerification {
    fn from(v: kontextual_app::AuditVerification) -> Self {
        AuditVerification {
            valid: v.report.is_valid(),
            records: v.report.records,
            head: opt(v.report.head),
            problems: v.report.problems,
            expected_head_source: v.expected_head_source,
        }
    }
}

dto!(
    /// What one index catch-up applied.
    CatchUp from kontextual_app::CatchUp {
        from_seq: u64,
        to_seq: u64,
        artifacts_reindexed: u64,
    }
);

dto!(
    /// The search index compared with the store.
    IndexStatus from kontextual_app::IndexStatus {
        /// `ok`, `lagging` or `diverged`.
        health: String,
        path: String,
        owner: bool,
        indexed_artifacts: u64,
        indexed_sections: u64,
        store_live_artifacts: u64,
        applied_seq: u64,
        store_seq: u64,
        /// Outbox events not applied yet.
        lag: u64,
        last_commit: Option<String>,
        #[schema(value_type = u64)]
        segments: usize,
        size_bytes: u64,
        caught_up: Option<CatchUp> => opt,
        /// Artifacts whose text could not be extracted when this process
        /// indexed them: searchable by name and metadata only.
        unextractable: Vec<Unextractable> => all,
    }
);

dto!(
    /// An artifact indexed without its text, and why.
    Unextractable from kontextual_app::Unextractable {
        #[schema(value_type = String, format = Uuid)]
        artifact_id: kontextual_model::ArtifactId,
        #[serde(rename = "ref")]
        reference: String,
        reason: String,
    }
);

dto!(
    /// One read: who read or searched what.
    AccessEntry from kontextual_model::AccessEntry {
        seq: u64,
        #[schema(value_type = String, format = DateTime)]
        at: Timestamp,
        #[schema(value_type = String)]
        namespace: Namespace,
        #[schema(value_type = String)]
        actor: Actor,
        #[serde(skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
        action: String,
        target: String,
        correlation_id: String,
    }
);

dto!(
    /// One attempt at a job.
    JobAttempt from kontextual_model::JobAttempt {
        #[schema(value_type = String, format = Uuid)]
        job_id: JobId,
        attempt: u32,
        worker: String,
        #[schema(value_type = String, format = DateTime)]
        started_at: Timestamp,
        #[schema(value_type = Option<String>, format = DateTime)]
        finished_at: Option<Timestamp>,
        /// `running`, `succeeded`, `failed`, `stopped` or `lost`.
        #[schema(value_type = String)]
        outcome: kontextual_model::AttemptOutcome,
        error: Option<String>,
        #[schema(value_type = Option<String>, format = Uuid)]
        run_id: Option<RunId>,
    }
);

dto!(
    /// A run, briefly.
    RunSummary from kontextual_model::RunSummary {
        #[schema(value_type = String, format = Uuid)]
        id: RunId,
        kind: String,
        #[schema(value_type = crate::wire::RunStatus)]
        status: RunStatus,
        #[schema(value_type = String, format = DateTime)]
        started_at: Timestamp,
        #[schema(value_type = Option<String>, format = DateTime)]
        finished_at: Option<Timestamp>,
    }
);

dto!(
    /// A job with its attempts and the runs they made.
    JobView from kontextual_app::JobView {
        #[serde(flatten)]
        job: Job,
        attempts: Vec<JobAttempt> => all,
        runs: Vec<RunSummary> => all,
    }
);

dto!(
    /// What an operator's action on a job did.
    JobTransition from kontextual_model::JobTransition {
        /// `retry`, `cancel`, `quarantine` or `release`.
        action: String,
        job: Job,
        /// The state before the action.
        #[schema(value_type = crate::wire::JobState)]
        from: JobState,
        /// False when the job already was where the action leads.
        changed: bool,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Domain {
        a: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u32>,
    }

    dto!(
        Same from Domain {
            a: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            b: Option<u32>,
        }
    );

    dto!(
        /// Writes `b: null` where the domain type wrote nothing.
        Drifted from Domain {
            a: u32,
            b: Option<u32>,
        }
    );

    #[test]
    fn x4_a_mirroring_dto_writes_the_same_bytes() {
        let w: Same = wire(Domain { a: 1, b: None });
        assert_eq!(serde_json::to_string(&w).unwrap(), r#"{"a":1}"#);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "does not write what the domain type wrote")]
    fn x4_a_drifting_dto_is_caught_in_debug_builds() {
        let _: Drifted = wire(Domain { a: 1, b: None });
    }
}

/// One event as CloudEvents 1.0 (structured JSON), O5.
#[derive(Serialize, ToSchema)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The event's sequence number, decimal; unique with `source`.
    pub id: String,
    /// `kontextual://<store id>/<namespace>`.
    pub source: String,
    /// The catalog type (`GET /v1/event-types`), e.g. `artifact.created`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When it was committed (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub time: String,
    /// The id of what the event is about.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The type's data; its schema is in the catalog.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The request that caused it (also on its audit record).
    pub correlationid: String,
    /// The sequence number again, as the CloudEvents sequence extension has it.
    pub sequence: String,
    pub namespace: String,
    /// The collection the event is about something in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
}

impl From<kontextual_app::CloudEvent> for CloudEvent {
    fn from(e: kontextual_app::CloudEvent) -> Self {
        CloudEvent {
            specversion: e.specversion,
            id: e.id,
            source: e.source,
            ty: e.ty,
            time: e.time,
            subject: e.subject,
            datacontenttype: e.datacontenttype,
            data: e.data,
            correlationid: e.correlationid,
            sequence: e.sequence,
            namespace: e.namespace,
            collection: e.collection,
        }
    }
}

/// A page of events.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<CloudEvent>,
    /// The `after` of the next request: the last sequence number this page
    /// examined (it moves past events the caller may not see, too).
    pub next_after: u64,
}

/// One event type of the catalog.
#[derive(Serialize, ToSchema)]
pub struct EventType {
    /// Dotted name, e.g. `artifact.created`.
    pub name: &'static str,
    /// The version of its data schema.
    pub version: u32,
    pub description: &'static str,
    /// What the event's `subject` is the id of.
    pub subject: &'static str,
    /// `emitted`, or `reserved` (in the catalog, not emitted yet).
    #[schema(inline, value_type = String, pattern = "^(emitted|reserved)$")]
    pub status: &'static str,
    /// What emits it, or why it is reserved.
    pub note: &'static str,
    /// The JSON Schema (2020-12) of its `data`.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

impl From<&'static kontextual_app::EventType> for EventType {
    fn from(t: &'static kontextual_app::EventType) -> Self {
        let (status, note) = match t.emission {
            kontextual_app::EventEmission::Emitted(by) => ("emitted", by),
            kontextual_app::EventEmission::Reserved(why) => ("reserved", why),
        };
        EventType {
            name: t.name,
            version: t.version,
            description: t.description,
            subject: t.subject,
            status,
            note,
            schema: t.schema(),
        }
    }
}

dto!(
    /// A webhook subscription (never its signing secret).
    Webhook from kontextual_model::Webhook {
        #[schema(value_type = String, format = Uuid)]
        id: kontextual_model::WebhookId,
        #[schema(value_type = String)]
        namespace: Namespace,
        /// Where deliveries are POSTed.
        url: String,
        description: String,
        /// Event type patterns (`artifact.*`, `run.failed`, `*`).
        types: Vec<String>,
        /// Only events about these collections; empty: every collection.
        #[schema(value_type = Vec<String>)]
        collections: Vec<CollectionName>,
        #[schema(value_type = crate::wire::WebhookState)]
        state: kontextual_model::WebhookState,
        /// Why it was disabled (by an operator, after a 410, or after
        /// failing for 5 days).
        #[schema(value_type = Option<String>)]
        disabled_reason: Option<String>,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        #[schema(value_type = String, format = DateTime)]
        updated_at: Timestamp,
        #[schema(value_type = String)]
        created_by: Actor,
        /// When the current streak of failed attempts began.
        #[schema(value_type = Option<String>, format = DateTime)]
        first_failure_at: Option<Timestamp>,
    }
);

/// A webhook and its signing secret: the answer to create and to
/// rotate-secret, the only times the secret is shown.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    pub webhook: Webhook,
    /// `whsec_…` (Standard Webhooks): verify `webhook-signature` with it.
    pub secret: String,
    /// After a rotation: until when the previous secret still signs
    /// (both signatures are sent meanwhile).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<Timestamp>,
}

impl From<kontextual_app::WebhookWithSecret> for WebhookWithSecret {
    fn from(w: kontextual_app::WebhookWithSecret) -> Self {
        WebhookWithSecret {
            webhook: w.webhook.into(),
            secret: w.secret,
            previous_secret_expires_at: w.previous_expires_at,
        }
    }
}

dto!(
    /// A webhook's deliveries counted by state.
    DeliveryCounts from kontextual_model::DeliveryCounts {
        pending: u64,
        delivering: u64,
        succeeded: u64,
        failed: u64,
        dead: u64,
        cancelled: u64,
    }
);

/// A webhook with its deliveries counted by state.
#[derive(Serialize, ToSchema)]
pub struct WebhookDetail {
    pub webhook: Webhook,
    pub deliveries: DeliveryCounts,
    /// While a rotated-out secret still signs: until when.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<Timestamp>,
}

impl From<kontextual_app::WebhookDetail> for WebhookDetail {
    fn from(d: kontextual_app::WebhookDetail) -> Self {
        WebhookDetail {
            webhook: d.webhook.into(),
            deliveries: d.deliveries.into(),
            previous_secret_expires_at: d.previous_secret_expires_at,
        }
    }
}

/// A deleted webhook; its deliveries still waiting were cancelled.
#[derive(Serialize, ToSchema)]
pub struct WebhookDeleted {
    #[schema(value_type = String, format = Uuid)]
    pub id: kontextual_model::WebhookId,
    pub cancelled_deliveries: u64,
}

dto!(
    /// One event to deliver to one webhook; every retry sends the same
    /// bytes with the same `webhook-id` (the delivery id).
    Delivery from kontextual_model::Delivery {
        #[schema(value_type = String, format = Uuid)]
        id: kontextual_model::DeliveryId,
        #[schema(value_type = String, format = Uuid)]
        webhook: kontextual_model::WebhookId,
        #[schema(value_type = String)]
        namespace: Namespace,
        /// The sequence number of the event delivered (`GET /v1/events`).
        event_seq: u64,
        event_type: String,
        #[schema(value_type = crate::wire::DeliveryState)]
        state: kontextual_model::DeliveryState,
        /// Attempts made so far.
        attempts: u32,
        /// The HTTP status of the last answer.
        last_status: Option<u16>,
        last_error: Option<String>,
        last_latency_ms: Option<u64>,
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        #[schema(value_type = String, format = DateTime)]
        updated_at: Timestamp,
        /// When a failed delivery is tried again.
        #[schema(value_type = Option<String>, format = DateTime)]
        next_attempt_at: Option<Timestamp>,
    }
);

dto!(
    /// One attempt to deliver.
    DeliveryAttempt from kontextual_model::DeliveryAttempt {
        #[schema(value_type = String, format = DateTime)]
        at: Timestamp,
        /// The HTTP status received (none when no answer came).
        status: Option<u16>,
        latency_ms: Option<u64>,
        error: Option<String>,
        /// The start of the answer's body.
        response: Option<String>,
    }
);

/// A delivery with the exact body it sends and every attempt so far.
#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    /// The body POSTed (JSON: the CloudEvent, or a thin payload with a
    /// `dataref` above 20 KiB).
    pub body: String,
    pub attempts: Vec<DeliveryAttempt>,
}

impl From<kontextual_model::DeliveryDetail> for DeliveryDetail {
    fn from(d: kontextual_model::DeliveryDetail) -> Self {
        DeliveryDetail {
            delivery: d.delivery.into(),
            body: String::from_utf8_lossy(&d.body).into_owned(),
            attempts: all(d.attempts),
        }
    }
}

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
    Metadata, Namespace, RelationId, RelationType, RunId, Scope, Timestamp,
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
        $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl From<$src> for $name {
            fn from(v: $src) -> Self {
                $name { $($field: v.$field.into(),)* }
            }
        }
    };
}

/// A `Vec` of DTOs from a `Vec` of domain values.
fn all<W: From<D>, D>(v: Vec<D>) -> Vec<W> {
    v.into_iter().map(W::from).collect()
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

impl<W, D> From<kontextual_services::store_types::Page<D>> for Page<W>
where
    W: From<D>,
{
    fn from(p: kontextual_services::store_types::Page<D>) -> Self {
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
    PutOutcome from kontextual_services::PutOutcome {
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
    NewKey from kontextual_services::NewKey {
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
    Enqueued from kontextual_services::Enqueued {
        job: Job,
        created: bool,
    }
);

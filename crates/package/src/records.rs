//! The payload's record formats (schema version 1).
//!
//! Records carry no namespace and no export-time facts: a package is
//! imported into the importer's namespace, and the payload of a re-export
//! after import must be byte-identical. Each record file under `data/` is
//! a stream of JSON objects in a fixed order (concatenated JSON, as `jq`
//! reads it): normally one per line, but metadata is kept byte for byte,
//! and a value written with line breaks keeps them — so the files are
//! `.json` streams, not JSON Lines, and readers parse a stream of values.

use std::collections::BTreeMap;

use kontextual_model::{
    Actor, ArtifactId, ArtifactName, ArtifactState, ChangeKind, Classification, Collection,
    CollectionId, CollectionName, CorrelationId, Digest, Lifecycle, Metadata, Provenance, Relation,
    RelationId, RelationType, Revision, Run, RunId, RunStatus, RunStep, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The payload schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// `data/kontextual.json`: what the payload holds. Derived from the
/// payload alone, so identical payloads have identical summaries.
pub const SUMMARY_FILE: &str = "data/kontextual.json";
pub const COLLECTIONS_FILE: &str = "data/collections.json";
pub const ARTIFACTS_FILE: &str = "data/artifacts.json";
pub const REVISIONS_FILE: &str = "data/revisions.json";
pub const RELATIONS_FILE: &str = "data/relations.json";
pub const RUNS_FILE: &str = "data/runs.json";
pub const REPRESENTATIONS_FILE: &str = "data/representations.json";
/// Every record file of schema 1, the summary included.
pub const RECORD_FILES: [&str; 7] = [
    SUMMARY_FILE,
    COLLECTIONS_FILE,
    ARTIFACTS_FILE,
    REVISIONS_FILE,
    RELATIONS_FILE,
    RUNS_FILE,
    REPRESENTATIONS_FILE,
];
/// Content blobs, addressed by their SHA-256: `data/blobs/sha256/ab/abcd…`.
pub const BLOBS_DIR: &str = "data/blobs/sha256";
/// Normalized text that differs from its content, addressed the same way.
pub const TEXT_DIR: &str = "data/text/sha256";
/// Tag file with the export-time facts (id, actor, time, scope, policy, audit head).
pub const EXPORT_INFO_FILE: &str = "kontextual-export.json";

/// The path of a content-addressed file under `dir`.
pub fn addressed_path(dir: &str, digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{dir}/{}/{hex}", &hex[..2])
}

/// `data/kontextual.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub format: String,
    pub schema_version: u32,
    /// `all` or `current`.
    pub revisions: String,
    /// Records per type (`collections`, `artifacts`, …, `blobs`, `texts`).
    pub counts: BTreeMap<String, u64>,
}

impl Summary {
    pub const FORMAT: &'static str = "kontextual-export";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionRecord {
    pub id: CollectionId,
    pub name: CollectionName,
    pub description: String,
    pub created_at: Timestamp,
}

impl From<&Collection> for CollectionRecord {
    fn from(c: &Collection) -> Self {
        CollectionRecord {
            id: c.id,
            name: c.name.clone(),
            description: c.description.clone(),
            created_at: c.created_at,
        }
    }
}

/// An artifact's current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRecord {
    pub id: ArtifactId,
    pub collection_id: CollectionId,
    pub collection: CollectionName,
    pub name: ArtifactName,
    pub artifact_type: String,
    pub media_type: String,
    pub title: Option<String>,
    pub digest: Digest,
    pub size: u64,
    pub metadata: Metadata,
    pub lifecycle: Lifecycle,
    pub classification: Classification,
    pub source_system: Option<String>,
    pub provenance: Provenance,
    pub state: ArtifactState,
    pub revision: u64,
    pub run_id: Option<RunId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&kontextual_model::Artifact> for ArtifactRecord {
    fn from(a: &kontextual_model::Artifact) -> Self {
        ArtifactRecord {
            id: a.id,
            collection_id: a.collection_id,
            collection: a.collection.clone(),
            name: a.name.clone(),
            artifact_type: a.artifact_type.clone(),
            media_type: a.media_type.clone(),
            title: a.title.clone(),
            digest: a.digest,
            size: a.size,
            metadata: a.metadata.clone(),
            lifecycle: a.lifecycle,
            classification: a.classification,
            source_system: a.source_system.clone(),
            provenance: a.provenance.clone(),
            state: a.state,
            revision: a.revision,
            run_id: a.run_id,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// One change record of an artifact: a revision with who, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionRecord {
    pub artifact_id: ArtifactId,
    pub revision: u64,
    pub change: ChangeKind,
    pub prev_digest: Option<Digest>,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub title: Option<String>,
    pub metadata: Metadata,
    pub lifecycle: Lifecycle,
    pub classification: Classification,
    pub provenance: Provenance,
    /// False when the content was purged: no blob is in the package.
    pub content_available: bool,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    pub run_id: Option<RunId>,
    pub created_at: Timestamp,
}

impl From<&Revision> for RevisionRecord {
    fn from(r: &Revision) -> Self {
        RevisionRecord {
            artifact_id: r.artifact_id,
            revision: r.revision,
            change: r.change,
            prev_digest: r.prev_digest,
            digest: r.digest,
            size: r.size,
            media_type: r.media_type.clone(),
            title: r.title.clone(),
            metadata: r.metadata.clone(),
            lifecycle: r.lifecycle,
            classification: r.classification,
            provenance: r.provenance.clone(),
            content_available: r.content_available,
            actor: r.actor.clone(),
            correlation_id: r.correlation_id.clone(),
            run_id: r.run_id,
            created_at: r.created_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationRecord {
    pub id: RelationId,
    pub rel_type: RelationType,
    pub source: ArtifactId,
    pub target: ArtifactId,
    pub properties: Metadata,
    pub revision: u64,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&Relation> for RelationRecord {
    fn from(r: &Relation) -> Self {
        RelationRecord {
            id: r.id,
            rel_type: r.rel_type.clone(),
            source: r.source,
            target: r.target,
            properties: r.properties.clone(),
            revision: r.revision,
            deleted: r.deleted,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A run that produced exported revisions, with its steps. The process
/// that ran it and its job are facts of the exporting deployment, not kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub id: RunId,
    pub kind: String,
    pub status: RunStatus,
    pub actor: Actor,
    pub input: serde_json::Value,
    pub manifest: Option<serde_json::Value>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub steps: Vec<RunStepRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStepRecord {
    pub seq: u64,
    pub name: String,
    pub status: RunStatus,
    pub detail: serde_json::Value,
    pub at: Timestamp,
}

impl RunRecord {
    pub fn of(run: &Run, steps: &[RunStep]) -> Self {
        RunRecord {
            id: run.id,
            kind: run.kind.clone(),
            status: run.status,
            actor: run.actor.clone(),
            input: run.input.clone(),
            manifest: run.manifest.clone(),
            started_at: run.started_at,
            finished_at: run.finished_at,
            steps: steps
                .iter()
                .map(|s| RunStepRecord {
                    seq: s.seq,
                    name: s.name.clone(),
                    status: s.status,
                    detail: s.detail.clone(),
                    at: s.at,
                })
                .collect(),
        }
    }
}

/// The normalized representation of an artifact's current revision: its
/// readable text (in `data/text/` when it differs from the content) and
/// its sections. Derived from the content by the format's adapter;
/// importers derive it again rather than trusting it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepresentationRecord {
    pub artifact_id: ArtifactId,
    pub revision: u64,
    pub content_digest: Digest,
    /// SHA-256 of the normalized text.
    pub text_digest: Digest,
    pub text_bytes: u64,
    /// The text is the content itself (no file under `data/text/`).
    pub text_is_content: bool,
    pub sections: Vec<SectionRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionRecord {
    pub selector: String,
    pub heading: String,
    pub level: u8,
    /// Byte range within the revision's content.
    pub start: u64,
    pub end: u64,
}

/// Export-time facts (`kontextual-export.json`, a tag file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportInfo {
    pub export_id: String,
    pub schema_version: u32,
    pub actor: String,
    pub namespace: String,
    pub exported_at: Timestamp,
    /// The scope as the caller gave it.
    pub scope: serde_json::Value,
    pub policy: PolicyContext,
    /// The audit chain head when the export read the store.
    pub audit_head: Option<AuditHeadInfo>,
    /// SHA-256 of `manifest-sha256.txt`: one digest for the whole payload.
    pub payload_digest: String,
    pub counts: BTreeMap<String, u64>,
    pub software: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHeadInfo {
    pub seq: u64,
    pub hash: String,
}

/// How policy shaped the export. Says *that* a filter applied, never what
/// it withheld.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyContext {
    /// Whether the caller's grants or clearance may have narrowed the scope.
    pub filter_applied: bool,
    /// The key's scopes, for key holders; absent for the local administrator.
    pub scopes: Option<Vec<String>>,
    /// The caller's clearance, if limited.
    pub clearance: Option<String>,
    /// Quarantined artifacts are never exported.
    pub quarantine_excluded: bool,
    /// Runs carry no input, manifest or steps (the caller may not read
    /// everything those name).
    #[serde(default)]
    pub runs_redacted: bool,
}

/// Reads a record file: a stream of JSON values of type `T`.
pub fn read_records<T: serde::de::DeserializeOwned, R: std::io::Read>(
    r: R,
) -> impl Iterator<Item = Result<T, serde_json::Error>> {
    serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(256 * 1024, r))
        .into_iter::<T>()
}

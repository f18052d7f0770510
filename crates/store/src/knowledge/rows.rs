//! Rows to model values, for both engines. A value the schema cannot hold
//! (an unparsable name, a bad digest) means the database was edited behind
//! the store's back: `Corrupted`, naming the column.

use std::str::FromStr;

use kontextual_model::{
    Artifact, ArtifactId, Collection, CollectionId, ContextPackage, Digest, Metadata, Relation,
    RelationId, Revision, RunId,
};
use uuid::Uuid;

use crate::sql::Row;
use crate::{Result, StoreError};

fn unreadable(idx: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted(format!("unreadable value in column {idx}: {e}"))
}

/// A text column parsed into a model type (a name, a state, an actor).
pub(crate) fn parsed<T>(r: &Row<'_>, idx: usize) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    r.get::<String>(idx)?
        .parse()
        .map_err(|e| unreadable(idx, e))
}

/// A text column holding JSON.
pub(crate) fn json<T: serde::de::DeserializeOwned>(r: &Row<'_>, idx: usize) -> Result<T> {
    serde_json::from_str(&r.get::<String>(idx)?).map_err(|e| unreadable(idx, e))
}

/// A nullable text column holding JSON.
pub(crate) fn opt_json<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    idx: usize,
) -> Result<Option<T>> {
    r.get::<Option<String>>(idx)?
        .map(|s| serde_json::from_str(&s).map_err(|e| unreadable(idx, e)))
        .transpose()
}

pub(crate) fn digest(r: &Row<'_>, idx: usize) -> Result<Digest> {
    Digest::from_hex(&r.get::<String>(idx)?).map_err(|e| unreadable(idx, e))
}

pub(crate) fn opt_digest(r: &Row<'_>, idx: usize) -> Result<Option<Digest>> {
    r.get::<Option<String>>(idx)?
        .map(|s| Digest::from_hex(&s).map_err(|e| unreadable(idx, e)))
        .transpose()
}

fn metadata(r: &Row<'_>, idx: usize) -> Result<Metadata> {
    Ok(Metadata::from_stored(r.get::<String>(idx)?))
}

fn opt_run(r: &Row<'_>, idx: usize) -> Result<Option<RunId>> {
    Ok(r.get::<Option<Uuid>>(idx)?.map(RunId))
}

/// The columns [`artifact`] reads; `c` is the artifact's collection.
pub(crate) const ARTIFACT_COLS: &str = "a.id, a.namespace, a.collection_id, c.name, a.name, a.artifact_type, \
     a.media_type, a.digest, a.size, a.metadata, a.lifecycle, a.classification, a.source_system, \
     a.provenance, a.state, a.revision, a.run_id, a.created_at, a.updated_at, a.title";

pub(crate) fn artifact(r: &Row<'_>) -> Result<Artifact> {
    Ok(Artifact {
        id: ArtifactId(r.get(0)?),
        namespace: parsed(r, 1)?,
        collection_id: CollectionId(r.get(2)?),
        collection: parsed(r, 3)?,
        name: parsed(r, 4)?,
        artifact_type: r.get(5)?,
        media_type: r.get(6)?,
        digest: digest(r, 7)?,
        size: r.get(8)?,
        metadata: metadata(r, 9)?,
        lifecycle: parsed(r, 10)?,
        classification: parsed(r, 11)?,
        source_system: r.get(12)?,
        provenance: json(r, 13)?,
        state: parsed(r, 14)?,
        revision: r.get(15)?,
        run_id: opt_run(r, 16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        title: r.get(19)?,
    })
}

/// The columns [`collection`] reads, with the count of live artifacts.
pub(crate) const COLLECTION_COLS: &str = "c.id, c.namespace, c.name, c.description, c.created_at, \
     (SELECT count(*) FROM artifacts a WHERE a.collection_id = c.id AND a.state = 'live')";

pub(crate) fn collection(r: &Row<'_>) -> Result<Collection> {
    Ok(Collection {
        id: CollectionId(r.get(0)?),
        namespace: parsed(r, 1)?,
        name: parsed(r, 2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
        artifact_count: r.get(5)?,
    })
}

pub(crate) const REVISION_COLS: &str = "r.artifact_id, r.revision, r.change, r.prev_digest, r.digest, r.size, \
     r.media_type, r.metadata, r.lifecycle, r.classification, r.provenance, r.content_available, \
     r.actor, r.correlation_id, r.run_id, r.created_at, r.title";

pub(crate) fn revision(r: &Row<'_>) -> Result<Revision> {
    Ok(Revision {
        artifact_id: ArtifactId(r.get(0)?),
        revision: r.get(1)?,
        change: parsed(r, 2)?,
        prev_digest: opt_digest(r, 3)?,
        digest: digest(r, 4)?,
        size: r.get(5)?,
        media_type: r.get(6)?,
        metadata: metadata(r, 7)?,
        lifecycle: parsed(r, 8)?,
        classification: parsed(r, 9)?,
        provenance: json(r, 10)?,
        content_available: r.get(11)?,
        actor: parsed(r, 12)?,
        correlation_id: parsed(r, 13)?,
        run_id: opt_run(r, 14)?,
        created_at: r.get(15)?,
        title: r.get(16)?,
    })
}

pub(crate) const RELATION_COLS: &str = "id, namespace, rel_type, source_id, target_id, properties, revision, \
     deleted, created_at, updated_at";

pub(crate) fn relation(r: &Row<'_>) -> Result<Relation> {
    Ok(Relation {
        id: RelationId(r.get(0)?),
        namespace: parsed(r, 1)?,
        rel_type: parsed(r, 2)?,
        source: ArtifactId(r.get(3)?),
        target: ArtifactId(r.get(4)?),
        properties: metadata(r, 5)?,
        revision: r.get(6)?,
        deleted: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub(crate) const PACKAGE_COLS: &str =
    "id, namespace, name, version, digest, manifest, actor, correlation_id, created_at";

pub(crate) fn package(r: &Row<'_>) -> Result<ContextPackage> {
    Ok(ContextPackage {
        id: r.get(0)?,
        namespace: parsed(r, 1)?,
        name: parsed(r, 2)?,
        version: r.get(3)?,
        digest: digest(r, 4)?,
        manifest: json(r, 5)?,
        actor: parsed(r, 6)?,
        correlation_id: parsed(r, 7)?,
        created_at: r.get(8)?,
    })
}

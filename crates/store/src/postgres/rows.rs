//! Rows to model values. A value the schema cannot hold (an unparsable
//! name, a bad digest) means the database was edited behind our back:
//! `Corrupted`, naming the column.

use std::str::FromStr;

use crate::{Result, StoreError};
use kontextual_model::{
    Artifact, ArtifactId, AuditDraft, AuditRecord, Collection, CollectionId, Digest, EventDraft,
    Metadata, OutboxEvent, Relation, RelationId, Revision, RunId, Timestamp,
};
use postgres::Row;
use postgres::types::FromSql;
use uuid::Uuid;

fn bad(col: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted(format!("unreadable value in column {col}: {e}"))
}

pub(crate) fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(|e| bad(i, e))
}

pub(crate) fn parsed<T>(r: &Row, i: usize) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s: &str = get(r, i)?;
    s.parse().map_err(|e| bad(i, e))
}

pub(crate) fn u64c(r: &Row, i: usize) -> Result<u64> {
    Ok(get::<i64>(r, i)? as u64)
}

pub(crate) fn ts(r: &Row, i: usize) -> Result<Timestamp> {
    Timestamp::from_microsecond(get(r, i)?).map_err(|e| bad(i, e))
}

pub(crate) fn digest(r: &Row, i: usize) -> Result<Digest> {
    Digest::from_hex(get(r, i)?).map_err(|e| bad(i, e))
}

pub(crate) fn opt_digest(r: &Row, i: usize) -> Result<Option<Digest>> {
    get::<Option<&str>>(r, i)?
        .map(|s| Digest::from_hex(s).map_err(|e| bad(i, e)))
        .transpose()
}

pub(crate) fn metadata(r: &Row, i: usize) -> Result<Metadata> {
    Ok(Metadata::from_stored(get(r, i)?))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    serde_json::from_str(get(r, i)?).map_err(|e| bad(i, e))
}

pub(crate) fn opt_run(r: &Row, i: usize) -> Result<Option<RunId>> {
    Ok(get::<Option<Uuid>>(r, i)?.map(RunId))
}

pub(crate) const ARTIFACT_COLS: &str = "a.id, a.namespace, a.collection_id, c.name, a.name, a.artifact_type, \
     a.media_type, a.digest, a.size, a.metadata, a.lifecycle, a.classification, a.source_system, \
     a.provenance, a.state, a.revision, a.run_id, a.created_at, a.updated_at, a.title";

pub(crate) fn artifact(r: &Row) -> Result<Artifact> {
    Ok(Artifact {
        id: ArtifactId(get(r, 0)?),
        namespace: parsed(r, 1)?,
        collection_id: CollectionId(get(r, 2)?),
        collection: parsed(r, 3)?,
        name: parsed(r, 4)?,
        artifact_type: get(r, 5)?,
        media_type: get(r, 6)?,
        digest: digest(r, 7)?,
        size: u64c(r, 8)?,
        metadata: metadata(r, 9)?,
        lifecycle: parsed(r, 10)?,
        classification: parsed(r, 11)?,
        source_system: get(r, 12)?,
        provenance: json(r, 13)?,
        state: parsed(r, 14)?,
        revision: u64c(r, 15)?,
        run_id: opt_run(r, 16)?,
        created_at: ts(r, 17)?,
        updated_at: ts(r, 18)?,
        title: get(r, 19)?,
    })
}

pub(crate) const COLLECTION_COLS: &str = "c.id, c.namespace, c.name, c.description, c.created_at, \
     (SELECT count(*) FROM artifacts a WHERE a.collection_id = c.id AND a.state = 'live')";

pub(crate) fn collection(r: &Row) -> Result<Collection> {
    Ok(Collection {
        id: CollectionId(get(r, 0)?),
        namespace: parsed(r, 1)?,
        name: parsed(r, 2)?,
        description: get(r, 3)?,
        created_at: ts(r, 4)?,
        artifact_count: u64c(r, 5)?,
    })
}

pub(crate) const REVISION_COLS: &str = "r.artifact_id, r.revision, r.change, r.prev_digest, r.digest, r.size, \
     r.media_type, r.metadata, r.lifecycle, r.classification, r.provenance, r.content_available, \
     r.actor, r.correlation_id, r.run_id, r.created_at, r.title";

pub(crate) fn revision(r: &Row) -> Result<Revision> {
    Ok(Revision {
        artifact_id: ArtifactId(get(r, 0)?),
        revision: u64c(r, 1)?,
        change: parsed(r, 2)?,
        prev_digest: opt_digest(r, 3)?,
        digest: digest(r, 4)?,
        size: u64c(r, 5)?,
        media_type: get(r, 6)?,
        metadata: metadata(r, 7)?,
        lifecycle: parsed(r, 8)?,
        classification: parsed(r, 9)?,
        provenance: json(r, 10)?,
        content_available: get(r, 11)?,
        actor: parsed(r, 12)?,
        correlation_id: parsed(r, 13)?,
        run_id: opt_run(r, 14)?,
        created_at: ts(r, 15)?,
        title: get(r, 16)?,
    })
}

pub(crate) const RELATION_COLS: &str = "id, namespace, rel_type, source_id, target_id, properties, revision, \
     deleted, created_at, updated_at";

pub(crate) fn relation(r: &Row) -> Result<Relation> {
    Ok(Relation {
        id: RelationId(get(r, 0)?),
        namespace: parsed(r, 1)?,
        rel_type: parsed(r, 2)?,
        source: ArtifactId(get(r, 3)?),
        target: ArtifactId(get(r, 4)?),
        properties: metadata(r, 5)?,
        revision: u64c(r, 6)?,
        deleted: get(r, 7)?,
        created_at: ts(r, 8)?,
        updated_at: ts(r, 9)?,
    })
}

pub(crate) const AUDIT_COLS: &str = "seq, at, namespace, actor, correlation_id, run_id, action, target_kind, \
     target_id, target_name, revision, prev_digest, digest, outcome, detail, prev_hash, hash";

pub(crate) fn audit(r: &Row) -> Result<AuditRecord> {
    let detail: Option<&str> = get(r, 14)?;
    Ok(AuditRecord {
        seq: u64c(r, 0)?,
        at: ts(r, 1)?,
        namespace: parsed(r, 2)?,
        actor: parsed(r, 3)?,
        correlation_id: parsed(r, 4)?,
        run_id: opt_run(r, 5)?,
        draft: AuditDraft {
            action: get(r, 6)?,
            target_kind: get(r, 7)?,
            target_id: get(r, 8)?,
            target_name: get(r, 9)?,
            revision: get::<Option<i64>>(r, 10)?.map(|v| v as u64),
            prev_digest: opt_digest(r, 11)?,
            digest: opt_digest(r, 12)?,
            outcome: parsed(r, 13)?,
            detail: detail
                .map(|d| serde_json::from_str(d).map_err(|e| bad(14, e)))
                .transpose()?,
        },
        prev_hash: get(r, 15)?,
        hash: get(r, 16)?,
    })
}

pub(crate) fn outbox(r: &Row) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        seq: u64c(r, 0)?,
        at: ts(r, 1)?,
        namespace: parsed(r, 2)?,
        correlation_id: parsed(r, 3)?,
        audit_seq: u64c(r, 4)?,
        draft: EventDraft {
            kind: get(r, 5)?,
            subject: get(r, 6)?,
            payload: json(r, 7)?,
        },
    })
}

pub(crate) const PACKAGE_COLS: &str =
    "id, namespace, name, version, digest, manifest, actor, correlation_id, created_at";

pub(crate) fn package(r: &Row) -> Result<kontextual_model::ContextPackage> {
    Ok(kontextual_model::ContextPackage {
        id: get(r, 0)?,
        namespace: parsed(r, 1)?,
        name: parsed(r, 2)?,
        version: u64c(r, 3)?,
        digest: digest(r, 4)?,
        manifest: json(r, 5)?,
        actor: parsed(r, 6)?,
        correlation_id: parsed(r, 7)?,
        created_at: ts(r, 8)?,
    })
}

//! Backend-neutral rules of the store contract: what a write means, decided
//! from what the backend read. Every backend applies them, so "when is a put
//! a new revision", "what does an expected revision allow" and "what does an
//! update keep" have one implementation (ADR 0007).

use kontextual_model::artifact::{check_artifact_type, check_media_type};
use kontextual_model::{
    Artifact, ArtifactId, ArtifactState, Change, ChangeKind, CollectionId, Digest, Metadata,
    Provenance, Timestamp,
};

use crate::port::{Expect, PutArtifact, WriteContext};
use crate::{Result, StoreError};

/// What an expected revision allows, given the current artifact (if any).
pub fn check_expect(what: &str, current: Option<&Artifact>, expect: Expect) -> Result<()> {
    match (expect, current) {
        (Expect::Any, _) => Ok(()),
        (Expect::Absent, Some(a)) if a.is_live() => Err(StoreError::AlreadyExists {
            what: what.to_owned(),
        }),
        (Expect::Absent, _) => Ok(()),
        (Expect::Revision(r), Some(a)) if a.revision == r => Ok(()),
        (Expect::Revision(r), Some(a)) => Err(StoreError::Conflict {
            what: what.to_owned(),
            expected: r,
            actual: a.revision.to_string(),
        }),
        (Expect::Revision(r), None) => Err(StoreError::Conflict {
            what: what.to_owned(),
            expected: r,
            actual: "none (it does not exist)".to_owned(),
        }),
    }
}

/// Where the bytes were read from (path, mtime) is not a change of the
/// artifact; what it was derived from is.
pub fn same_lineage(a: &Provenance, b: &Provenance) -> bool {
    a.derived_from == b.derived_from && a.transformation == b.transformation
}

/// Checks a put's attributes before anything is stored. `derived_from`
/// ids must also be live artifacts: the backend checks that.
pub fn check_put(put: &PutArtifact) -> Result<()> {
    if let Some(t) = &put.artifact_type {
        check_artifact_type(t)?;
    }
    if let Some(m) = &put.media_type {
        check_media_type(m)?;
    }
    if let Some(p) = &put.provenance
        && p.transformation.is_some()
        && p.derived_from.is_empty()
    {
        return Err(StoreError::InvalidInput(
            "a transformation needs the artifacts it derived from (derived_from)".to_owned(),
        ));
    }
    Ok(())
}

/// What a put writes: nothing (unchanged), or the next state and its change.
pub enum PutPlan {
    Unchanged(Artifact),
    Write {
        next: Artifact,
        kind: ChangeKind,
        prev_digest: Option<Digest>,
    },
}

/// Decides a put, given the current artifact and the stored content's
/// digest and size. `keep` says the content was kept (`Content::Keep`).
/// Attributes left `None` keep their current value on update and take
/// their default on create; the title comes with the content.
#[allow(clippy::too_many_arguments)]
pub fn plan_put(
    ctx: &WriteContext,
    put: PutArtifact,
    coll_id: CollectionId,
    prev: Option<&Artifact>,
    digest: Digest,
    size: u64,
    keep: bool,
    now: Timestamp,
) -> PutPlan {
    let next = Artifact {
        id: prev.map_or_else(ArtifactId::new, |a| a.id),
        namespace: ctx.namespace.clone(),
        collection_id: coll_id,
        collection: put.collection.clone(),
        name: put.name,
        artifact_type: put
            .artifact_type
            .or_else(|| prev.map(|a| a.artifact_type.clone()))
            .unwrap_or_else(|| "opaque".to_owned()),
        media_type: put
            .media_type
            .or_else(|| prev.map(|a| a.media_type.clone()))
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        title: if keep {
            prev.and_then(|a| a.title.clone())
        } else {
            put.title
        },
        digest,
        size,
        metadata: put
            .metadata
            .or_else(|| prev.map(|a| a.metadata.clone()))
            .unwrap_or_else(Metadata::empty),
        lifecycle: put
            .lifecycle
            .or(prev.map(|a| a.lifecycle))
            .unwrap_or_default(),
        classification: put
            .classification
            .or(prev.map(|a| a.classification))
            .unwrap_or_default(),
        source_system: put
            .source_system
            .or_else(|| prev.and_then(|a| a.source_system.clone())),
        provenance: put
            .provenance
            .or_else(|| prev.map(|a| a.provenance.clone()))
            .unwrap_or_default(),
        state: ArtifactState::Live,
        revision: prev.map_or(1, |a| a.revision + 1),
        run_id: ctx.run_id,
        created_at: prev.map_or(now, |a| a.created_at),
        updated_at: now,
    };
    let kind = match prev {
        None => ChangeKind::Created,
        Some(p) if p.state != ArtifactState::Live => ChangeKind::Restored,
        Some(p) => {
            let same = p.digest == next.digest
                && p.artifact_type == next.artifact_type
                && p.media_type == next.media_type
                && p.title == next.title
                && p.metadata == next.metadata
                && p.lifecycle == next.lifecycle
                && p.classification == next.classification
                && p.source_system == next.source_system
                && same_lineage(&p.provenance, &next.provenance);
            if same {
                return PutPlan::Unchanged(p.clone());
            }
            ChangeKind::Updated
        }
    };
    PutPlan::Write {
        next,
        kind,
        prev_digest: prev.map(|p| p.digest),
    }
}

/// The change a plan yields once written.
pub fn put_change(plan: PutPlan) -> Change {
    match plan {
        PutPlan::Unchanged(artifact) => Change::ArtifactUnchanged { artifact },
        PutPlan::Write {
            next,
            kind,
            prev_digest,
        } => Change::Artifact {
            kind,
            artifact: next,
            prev_digest,
        },
    }
}

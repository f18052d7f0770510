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

/// A sequence-number cursor (`after`) as the databases' signed 64-bit
/// integer. Positions past `i64::MAX` cannot exist, so they mean "after
/// everything" rather than wrapping to a negative number (which would
/// start from the beginning).
pub fn seq_cursor(after: u64) -> i64 {
    i64::try_from(after).unwrap_or(i64::MAX)
}

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

/// Refusal of an import under [`ImportConflict::Fail`](crate::ImportConflict).
pub fn import_taken(what: String) -> StoreError {
    StoreError::Refused {
        what: format!("import refused: {what} is already in the store"),
        why: "nothing was imported (with on-conflict skip, the store's copy is kept and the rest imported)".into(),
    }
}

/// What an import writes of its artifacts, decided from what the store
/// holds: each artifact with its whole history, and the blobs and runs
/// those need.
#[derive(Default)]
pub struct ImportPlan {
    pub to_write: Vec<(Artifact, Vec<kontextual_model::Revision>)>,
    /// Every artifact id the package holds (written or skipped).
    pub present: std::collections::HashSet<ArtifactId>,
    pub needed_blobs: std::collections::HashSet<Digest>,
    pub needed_runs: std::collections::HashSet<kontextual_model::RunId>,
    /// Artifacts left alone because their id is taken (`Skip`), and how
    /// many of those differ from the package.
    pub skipped: u64,
    pub differing: u64,
}

/// Plans the artifacts of an import. `stored(id)` says whether the store
/// holds the id (`None`: no) and, if so, its current state in this
/// namespace (`Some(None)`: held elsewhere). Histories must run from 1 to
/// the artifact's revision; collections must be among `collections`.
pub fn plan_import(
    ns: &kontextual_model::Namespace,
    artifacts: Vec<Artifact>,
    revisions: Vec<kontextual_model::Revision>,
    collections: &std::collections::HashSet<CollectionId>,
    skip: bool,
    mut stored: impl FnMut(ArtifactId) -> Result<Option<Option<Artifact>>>,
) -> Result<ImportPlan> {
    let mut by_artifact: std::collections::HashMap<ArtifactId, Vec<kontextual_model::Revision>> =
        std::collections::HashMap::new();
    for r in revisions {
        by_artifact.entry(r.artifact_id).or_default().push(r);
    }
    let mut plan = ImportPlan::default();
    for mut a in artifacts {
        a.namespace = ns.clone();
        let mut revs = by_artifact.remove(&a.id).unwrap_or_default();
        plan.present.insert(a.id);
        if let Some(here) = stored(a.id)? {
            if !skip {
                return Err(import_taken(format!(
                    "artifact {} ({}/{})",
                    a.id, a.collection, a.name
                )));
            }
            plan.skipped += 1;
            if here.is_none_or(|h| h.revision != a.revision || h.digest != a.digest) {
                plan.differing += 1;
            }
            continue;
        }
        if !collections.contains(&a.collection_id) {
            return Err(StoreError::DanglingReference {
                what: format!(
                    "artifact {} names collection {}, which the import does not hold",
                    a.id, a.collection_id
                ),
            });
        }
        revs.sort_by_key(|r| r.revision);
        let numbered = revs
            .iter()
            .enumerate()
            .all(|(i, r)| r.revision == i as u64 + 1);
        if !numbered || revs.last().map(|r| r.revision) != Some(a.revision) {
            return Err(StoreError::InvalidInput(format!(
                "artifact {} ({}/{}): the history must hold every revision from 1 to {}",
                a.id, a.collection, a.name, a.revision
            )));
        }
        plan.needed_runs.extend(a.run_id);
        for r in &revs {
            plan.needed_runs.extend(r.run_id);
            if r.content_available {
                plan.needed_blobs.insert(r.digest);
            }
        }
        plan.to_write.push((a, revs));
    }
    if let Some((id, _)) = by_artifact.into_iter().next() {
        return Err(StoreError::DanglingReference {
            what: format!("revisions of artifact {id}, which the import does not hold"),
        });
    }
    Ok(plan)
}

/// Where an operator's action takes a job: `(new state, stop request)`,
/// `None` when there is nothing to do (repeating an action changes
/// nothing), or a refusal naming why.
pub fn job_action_target(
    action: crate::JobAction,
    job: &kontextual_model::Job,
) -> Result<
    Option<(
        kontextual_model::JobState,
        Option<kontextual_model::JobState>,
    )>,
> {
    use crate::JobAction;
    use kontextual_model::JobState as S;
    let from = job.state;
    let refuse = |why: String| StoreError::Refused {
        what: format!("{} job {}", action.as_str(), job.id),
        why,
    };
    Ok(match (action, from) {
        (JobAction::Retry, S::Failed | S::Dead | S::Cancelled) => Some((S::Queued, None)),
        (JobAction::Retry, S::Queued | S::Running) => None,
        (JobAction::Retry, S::Quarantined) => {
            return Err(refuse(
                "it is quarantined: release it to queue it again".to_owned(),
            ));
        }
        (JobAction::Retry, S::Succeeded) => {
            return Err(refuse(
                "it succeeded; to do its work again, re-run the run it made (`rerun RUN`)"
                    .to_owned(),
            ));
        }
        (JobAction::Cancel, S::Queued | S::Failed) => Some((S::Cancelled, None)),
        (JobAction::Cancel, S::Running) => {
            (job.stop_requested != Some(S::Cancelled)).then_some((S::Running, Some(S::Cancelled)))
        }
        (JobAction::Cancel, S::Cancelled) => None,
        (JobAction::Cancel, S::Succeeded | S::Dead | S::Quarantined) => {
            return Err(refuse(format!("it is {from}, not queued or running")));
        }
        (JobAction::Quarantine, S::Queued | S::Failed | S::Dead | S::Cancelled) => {
            Some((S::Quarantined, None))
        }
        (JobAction::Quarantine, S::Running) => (job.stop_requested != Some(S::Quarantined))
            .then_some((S::Running, Some(S::Quarantined))),
        (JobAction::Quarantine, S::Quarantined) => None,
        (JobAction::Quarantine, S::Succeeded) => {
            return Err(refuse("it already succeeded".to_owned()));
        }
        (JobAction::Release, S::Quarantined) => Some((S::Queued, None)),
        (JobAction::Release, S::Running) => {
            (job.stop_requested == Some(S::Quarantined)).then_some((S::Running, None))
        }
        (JobAction::Release, _) => None,
    })
}

/// How a finished attempt ends, for every result but success: the job's
/// new state, the attempt's outcome, its error and the next run time.
pub fn attempt_end(
    result: &kontextual_model::JobResult,
    attempt: u32,
    max_attempts: u32,
    stop: Option<kontextual_model::JobState>,
    now: Timestamp,
) -> (
    kontextual_model::JobState,
    kontextual_model::AttemptOutcome,
    Option<String>,
    Option<Timestamp>,
) {
    use kontextual_model::{AttemptOutcome, JobResult, JobState};
    match result {
        JobResult::Succeeded => (JobState::Succeeded, AttemptOutcome::Succeeded, None, None),
        JobResult::Stopped => (
            stop.unwrap_or(JobState::Cancelled),
            AttemptOutcome::Stopped,
            None,
            None,
        ),
        JobResult::Returned => match stop {
            Some(s) => (s, AttemptOutcome::Stopped, None, None),
            None => (
                JobState::Queued,
                AttemptOutcome::Stopped,
                Some(
                    "returned to the queue unstarted: its worker gave back what it had claimed \
                     ahead (a slow job, or shutting down)"
                        .to_owned(),
                ),
                Some(now),
            ),
        },
        JobResult::Failed { error, retry_at } => {
            let state = match (stop, retry_at) {
                (Some(s), _) => s,
                (None, Some(_)) if attempt < max_attempts => JobState::Failed,
                _ => JobState::Dead,
            };
            let run_at = retry_at.filter(|_| state == JobState::Failed);
            (state, AttemptOutcome::Failed, Some(error.clone()), run_at)
        }
    }
}

//! What a committed write did. Every mutation in the store yields a `Change`;
//! the audit record and the outbox event of that mutation are derived from it
//! here, so no backend can invent its own vocabulary.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::artifact::Artifact;
use crate::audit::{AuditDraft, Outcome};
use crate::digest::Digest;
use crate::event::EventDraft;
use crate::relation::{Collection, Relation};

crate::artifact::word_enum!(
    /// The kind of an artifact change record.
    ChangeKind { Created = "created", Updated = "updated", Deleted = "deleted", Restored = "restored", Purged = "purged" } default Created
);

/// Why a relation was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationDeleteCause {
    /// Someone deleted the relation itself.
    Requested,
    /// One of its endpoints was deleted or purged.
    EndpointDeleted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    CollectionCreated {
        collection: Collection,
    },
    /// A new revision: created, updated, deleted, restored or purged.
    Artifact {
        kind: ChangeKind,
        artifact: Artifact,
        prev_digest: Option<Digest>,
    },
    /// A put whose content and attributes equal the current revision: nothing was written.
    ArtifactUnchanged {
        artifact: Artifact,
    },
    RelationCreated {
        relation: Relation,
    },
    RelationUpdated {
        relation: Relation,
    },
    RelationDeleted {
        relation: Relation,
        cause: RelationDeleteCause,
    },
    /// A run started, changed status (finished, failed, interrupted) — with its manifest.
    Run {
        run: crate::Run,
    },
    /// Outbox events every consumer had applied, and old enough, were deleted.
    OutboxPruned {
        /// Highest sequence number removed.
        through_seq: u64,
        count: u64,
    },
    /// A new version of a context package was stored.
    ContextPackageSaved {
        package: crate::ContextPackage,
    },
    /// A build whose manifest equals the latest version: nothing was written.
    ContextPackageUnchanged {
        package: crate::ContextPackage,
    },
    /// An API key was created (its secret hash is never in a record).
    KeyCreated {
        key: crate::ApiKey,
        /// [`key_fingerprint`] of the stored row, secret hash included: the
        /// audit record vouches for it without showing the hash.
        row_hash: String,
    },
    /// An API key was revoked.
    KeyRevoked {
        key: crate::ApiKey,
        /// [`key_fingerprint`] of the row after the revocation.
        row_hash: String,
    },
    /// An actor's clearance was set.
    ClearanceSet {
        clearance: crate::Clearance,
    },
    /// A legal hold was set on an artifact.
    HoldSet {
        hold: crate::Hold,
    },
    /// A legal hold was released.
    HoldReleased {
        hold: crate::Hold,
    },
    /// A grant was given.
    GrantCreated {
        grant: crate::Grant,
    },
    /// A grant was taken back.
    GrantDeleted {
        grant: crate::Grant,
    },
    /// A job was enqueued (audited as `job.enqueue`).
    JobEnqueued {
        job: crate::Job,
    },
    /// A job with the same unique key was already waiting: nothing was written.
    JobUnchanged {
        job: crate::Job,
    },
    /// Jobs a worker claimed (bookkeeping, not audited: the runs they make are).
    JobsClaimed {
        jobs: Vec<crate::Job>,
    },
    /// A worker's lease was extended; the job says whether it should stop.
    JobLeased {
        job: crate::Job,
    },
    /// A worker ended its attempt (bookkeeping, not audited): the job's new state.
    JobFinished {
        id: crate::JobId,
        state: crate::JobState,
    },
    /// An operator's recovery action on a job (audited when it changed something).
    JobActed(crate::JobTransition),
    /// Finished jobs past retention were deleted.
    JobsPruned {
        count: u64,
    },
    /// An artifact was quarantined: excluded from processing, search and export.
    ArtifactQuarantined {
        quarantine: crate::Hold,
    },
    /// An artifact's quarantine was released.
    ArtifactReleased {
        quarantine: crate::Hold,
    },
    /// What an idempotency-key reservation found (bookkeeping, never audited).
    Idempotency(crate::Idempotency),
    /// A revision written by an import with its original ids and history
    /// (K9). `current` is the artifact's state when this is its current
    /// revision. Its audit record vouches for the revision like the record
    /// of the original change did.
    RevisionImported {
        revision: Box<crate::Revision>,
        current: Option<Box<Artifact>>,
    },
    /// A relation written by an import with its original id.
    RelationImported {
        relation: Relation,
    },
    /// An export package was imported: what was written and skipped.
    Imported {
        package: String,
        summary: serde_json::Value,
    },
    /// A webhook was created, updated, enabled or disabled, or had its
    /// secret rotated (audited as `webhook.<verb>`). Never carries a secret.
    Webhook {
        action: crate::WebhookAction,
        webhook: crate::Webhook,
    },
    /// A webhook was deleted; its pending and failed deliveries were cancelled.
    WebhookDeleted {
        webhook: crate::Webhook,
        cancelled: u64,
    },
    /// Deliveries created for outbox events, and the jobs that will deliver
    /// them — one per delivery, or one per batch of a webhook's deliveries
    /// (bookkeeping, not audited). Only newly created ones: a delivery whose
    /// (webhook, event) already existed is not listed.
    WebhookDeliveriesCreated {
        deliveries: Vec<crate::DeliveryId>,
        jobs: Vec<crate::JobId>,
    },
    /// Deliveries handed on to jobs of their own (bookkeeping, not
    /// audited): a failed first attempt's retry, or deliveries a batch did
    /// not try. Lists the jobs enqueued (or already pending).
    WebhookDeliveriesContinued {
        jobs: Vec<crate::JobId>,
    },
    /// A delivery attempt was recorded (bookkeeping, not audited): the
    /// delivery as it is now.
    WebhookAttemptRecorded {
        delivery: crate::Delivery,
    },
    /// An operator sent deliveries again (audited as `webhook.resend`).
    WebhookDeliveriesResent {
        webhook: crate::Webhook,
        deliveries: Vec<crate::DeliveryId>,
        jobs: Vec<crate::JobId>,
    },
    /// Finished deliveries past retention were deleted (bookkeeping).
    WebhookDeliveriesPruned {
        count: u64,
    },
    /// An audit-only record (a denial, a recovery action) with no state change.
    Audited {
        action: String,
    },
}

impl Change {
    /// Whether the store wrote anything (and so appended audit and outbox records).
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            Change::ArtifactUnchanged { .. }
                | Change::ContextPackageUnchanged { .. }
                | Change::Idempotency(_)
                | Change::JobUnchanged { .. }
                | Change::JobActed(crate::JobTransition { changed: false, .. })
        )
    }

    /// The audit draft for this change. Carries ids, names and digests, never content.
    pub fn audit_draft(&self) -> Option<AuditDraft> {
        let d = match self {
            Change::CollectionCreated { collection } => AuditDraft {
                action: "collection.create".into(),
                target_kind: "collection".into(),
                target_id: collection.id.to_string(),
                target_name: Some(collection.name.to_string()),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: None,
            },
            Change::Artifact {
                kind,
                artifact,
                prev_digest,
            } => AuditDraft {
                detail: Some(json!({
                    "revision_hash": revision_fingerprint(&RevisionFacts::of(artifact, *kind, *prev_digest)),
                    "artifact_hash": artifact_fingerprint(artifact),
                })),
                action: format!("artifact.{}", verb(*kind)),
                target_kind: "artifact".into(),
                target_id: artifact.id.to_string(),
                target_name: Some(format!("{}/{}", artifact.collection, artifact.name)),
                revision: Some(artifact.revision),
                prev_digest: *prev_digest,
                digest: Some(artifact.digest),
                outcome: Outcome::Success,
            },
            Change::ArtifactUnchanged { .. } => return None,
            Change::RelationCreated { relation } | Change::RelationUpdated { relation } => {
                let action = if matches!(self, Change::RelationCreated { .. }) {
                    "relation.create"
                } else {
                    "relation.update"
                };
                relation_draft(action, relation, None)
            }
            Change::RelationDeleted { relation, cause } => {
                relation_draft("relation.delete", relation, Some(json!({ "cause": cause })))
            }
            Change::Run { run } => AuditDraft {
                action: format!(
                    "run.{}",
                    if run.status == crate::RunStatus::Running {
                        "start"
                    } else {
                        run.status.as_str()
                    }
                ),
                target_kind: "run".into(),
                target_id: run.id.to_string(),
                target_name: Some(run.kind.clone()),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: match run.status {
                    crate::RunStatus::Failed | crate::RunStatus::Interrupted => Outcome::Failure,
                    _ => Outcome::Success,
                },
                detail: None,
            },
            Change::OutboxPruned { through_seq, count } => AuditDraft {
                action: "outbox.prune".into(),
                target_kind: "outbox".into(),
                target_id: format!("..={through_seq}"),
                target_name: None,
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({ "count": count.to_string() })),
            },
            Change::ContextPackageSaved { package } => AuditDraft {
                action: "context.build".into(),
                target_kind: "context".into(),
                target_id: package.id.to_string(),
                target_name: Some(package.name.to_string()),
                revision: Some(package.version),
                prev_digest: None,
                digest: Some(package.digest),
                outcome: Outcome::Success,
                detail: None,
            },
            Change::KeyCreated { key, row_hash } | Change::KeyRevoked { key, row_hash } => {
                AuditDraft {
                    action: if matches!(self, Change::KeyCreated { .. }) {
                        "key.create".into()
                    } else {
                        "key.revoke".into()
                    },
                    target_kind: "api_key".into(),
                    target_id: key.id.clone(),
                    target_name: Some(key.name.clone()),
                    revision: None,
                    prev_digest: None,
                    digest: None,
                    outcome: Outcome::Success,
                    detail: Some(json!({
                        "actor": key.actor.to_string(),
                        "scopes": key.scopes,
                        ROW_HASH: row_hash,
                    })),
                }
            }
            Change::ClearanceSet { clearance } => AuditDraft {
                action: "clearance.set".into(),
                target_kind: "actor".into(),
                target_id: clearance.actor.to_string(),
                target_name: Some(clearance.level.to_string()),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({ ROW_HASH: clearance_fingerprint(clearance) })),
            },
            Change::HoldSet { hold } | Change::HoldReleased { hold } => AuditDraft {
                action: if matches!(self, Change::HoldSet { .. }) {
                    "hold.set".into()
                } else {
                    "hold.release".into()
                },
                target_kind: "artifact".into(),
                target_id: hold.artifact_id.to_string(),
                target_name: Some(format!("{}/{}", hold.collection, hold.name)),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({
                    "reason": hold.reason,
                    ROW_HASH: mark_fingerprint("hold", hold),
                })),
            },
            Change::GrantCreated { grant } | Change::GrantDeleted { grant } => AuditDraft {
                action: if matches!(self, Change::GrantCreated { .. }) {
                    "grant.create".into()
                } else {
                    "grant.delete".into()
                },
                target_kind: "grant".into(),
                target_id: grant.id.to_string(),
                target_name: Some(format!(
                    "{} {} on {}",
                    grant.actor, grant.permission, grant.scope
                )),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({ ROW_HASH: grant_fingerprint(grant) })),
            },
            Change::JobEnqueued { job } => AuditDraft {
                action: "job.enqueue".into(),
                target_kind: "job".into(),
                target_id: job.id.to_string(),
                target_name: Some(job.kind.clone()),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: job.unique_key.as_ref().map(|k| json!({ "unique_key": k })),
            },
            Change::JobActed(t) if t.changed => AuditDraft {
                action: format!("job.{}", t.action),
                target_kind: "job".into(),
                target_id: t.job.id.to_string(),
                target_name: Some(t.job.kind.clone()),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({
                    "from": t.from,
                    "to": t.job.state,
                    "stop_requested": t.job.stop_requested,
                })),
            },
            Change::RevisionImported { revision, current } => AuditDraft {
                action: "artifact.import".into(),
                target_kind: "artifact".into(),
                target_id: revision.artifact_id.to_string(),
                target_name: current
                    .as_ref()
                    .map(|a| format!("{}/{}", a.collection, a.name)),
                revision: Some(revision.revision),
                prev_digest: revision.prev_digest,
                digest: Some(revision.digest),
                outcome: Outcome::Success,
                detail: Some(match current {
                    Some(a) => json!({
                        "revision_hash": revision_fingerprint(&RevisionFacts::of_revision(revision)),
                        "artifact_hash": artifact_fingerprint(a),
                        ORIGIN_HASH: revision_origin_fingerprint(revision),
                    }),
                    None => json!({
                        "revision_hash": revision_fingerprint(&RevisionFacts::of_revision(revision)),
                        ORIGIN_HASH: revision_origin_fingerprint(revision),
                    }),
                }),
            },
            Change::RelationImported { relation } => {
                relation_draft("relation.import", relation, None)
            }
            Change::Imported { package, summary } => AuditDraft {
                action: "store.import".into(),
                target_kind: "package".into(),
                target_id: package.clone(),
                target_name: None,
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(summary.clone()),
            },
            Change::JobsPruned { count } => AuditDraft {
                action: "job.prune".into(),
                target_kind: "jobs".into(),
                target_id: String::new(),
                target_name: None,
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({ "count": count })),
            },
            Change::ArtifactQuarantined { quarantine }
            | Change::ArtifactReleased { quarantine } => AuditDraft {
                action: if matches!(self, Change::ArtifactQuarantined { .. }) {
                    "artifact.quarantine".into()
                } else {
                    "artifact.release".into()
                },
                target_kind: "artifact".into(),
                target_id: quarantine.artifact_id.to_string(),
                target_name: Some(format!("{}/{}", quarantine.collection, quarantine.name)),
                revision: None,
                prev_digest: None,
                digest: None,
                outcome: Outcome::Success,
                detail: Some(json!({
                    "reason": quarantine.reason,
                    ROW_HASH: mark_fingerprint("quarantine", quarantine),
                })),
            },
            Change::Webhook { action, webhook } => {
                webhook_draft(&format!("webhook.{}", action.verb()), webhook, None)
            }
            Change::WebhookDeleted { webhook, cancelled } => webhook_draft(
                "webhook.delete",
                webhook,
                Some(("cancelled", json!(cancelled))),
            ),
            Change::WebhookDeliveriesResent {
                webhook,
                deliveries,
                ..
            } => webhook_draft(
                "webhook.resend",
                webhook,
                Some(("deliveries", json!(deliveries))),
            ),
            Change::Audited { .. }
            | Change::WebhookDeliveriesCreated { .. }
            | Change::WebhookDeliveriesContinued { .. }
            | Change::WebhookAttemptRecorded { .. }
            | Change::WebhookDeliveriesPruned { .. }
            | Change::ContextPackageUnchanged { .. }
            | Change::Idempotency(_)
            | Change::JobUnchanged { .. }
            | Change::JobsClaimed { .. }
            | Change::JobLeased { .. }
            | Change::JobFinished { .. }
            | Change::JobActed(_) => return None,
        };
        Some(d)
    }

    /// The outbox event for this change. Its `kind` and `payload` follow
    /// the event catalog (`kontextual-events`): a test there checks every
    /// event this yields against its type's schema.
    pub fn event(&self) -> Option<EventDraft> {
        let (kind, subject, payload) = match self {
            Change::CollectionCreated { collection } => (
                "collection.created".to_owned(),
                collection.id.to_string(),
                json!({ "collection": collection.name }),
            ),
            Change::Artifact {
                kind,
                artifact,
                prev_digest,
            } => {
                let derived =
                    *kind == ChangeKind::Created && !artifact.provenance.derived_from.is_empty();
                let mut payload = json!({
                    "collection": artifact.collection,
                    "name": artifact.name,
                    "revision": artifact.revision,
                    "digest": artifact.digest,
                    "prev_digest": prev_digest,
                    "state": artifact.state,
                    "classification": artifact.classification,
                });
                if derived {
                    payload["derived_from"] = json!(artifact.provenance.derived_from);
                    payload["transformation"] = json!(artifact.provenance.transformation);
                }
                (
                    if derived {
                        "artifact.derived".to_owned()
                    } else {
                        format!("artifact.{kind}")
                    },
                    artifact.id.to_string(),
                    payload,
                )
            }
            Change::Run { run } => {
                let phase = if run.status == crate::RunStatus::Running {
                    "started"
                } else {
                    run.status.as_str()
                };
                let kind = match (run.kind.as_str(), run.status) {
                    ("ingest", _) => format!("ingest.{phase}"),
                    ("export", crate::RunStatus::Succeeded) => "export.created".to_owned(),
                    _ => format!("run.{phase}"),
                };
                let mut payload = json!({ "kind": run.kind, "status": run.status });
                if let Some(c) = run.input.get("collection").and_then(|c| c.as_str()) {
                    payload["collection"] = json!(c);
                }
                (kind, run.id.to_string(), payload)
            }
            Change::ContextPackageSaved { package } => (
                "context.built".to_owned(),
                package.id.to_string(),
                json!({ "name": package.name, "version": package.version, "digest": package.digest }),
            ),
            Change::KeyCreated { key, .. } | Change::KeyRevoked { key, .. } => (
                if matches!(self, Change::KeyCreated { .. }) {
                    "key.created".to_owned()
                } else {
                    "key.revoked".to_owned()
                },
                key.id.clone(),
                json!({ "name": key.name, "actor": key.actor.to_string() }),
            ),
            Change::ClearanceSet { clearance } => (
                "clearance.set".to_owned(),
                clearance.actor.to_string(),
                json!({ "level": clearance.level }),
            ),
            Change::HoldSet { hold } | Change::HoldReleased { hold } => (
                if matches!(self, Change::HoldSet { .. }) {
                    "hold.set".to_owned()
                } else {
                    "hold.released".to_owned()
                },
                hold.artifact_id.to_string(),
                json!({ "collection": hold.collection, "name": hold.name }),
            ),
            Change::GrantCreated { grant } | Change::GrantDeleted { grant } => (
                if matches!(self, Change::GrantCreated { .. }) {
                    "grant.created".to_owned()
                } else {
                    "grant.deleted".to_owned()
                },
                grant.id.to_string(),
                json!({ "actor": grant.actor.to_string(), "permission": grant.permission, "scope": grant.scope.to_string() }),
            ),
            // The search projection drops a quarantined artifact and indexes
            // it again on release: both are `artifact.*` events.
            Change::ArtifactQuarantined { quarantine }
            | Change::ArtifactReleased { quarantine } => (
                if matches!(self, Change::ArtifactQuarantined { .. }) {
                    "artifact.quarantined".to_owned()
                } else {
                    "artifact.released".to_owned()
                },
                quarantine.artifact_id.to_string(),
                json!({ "collection": quarantine.collection, "name": quarantine.name }),
            ),
            Change::JobEnqueued { job } => (
                "job.enqueued".to_owned(),
                job.id.to_string(),
                json!({ "kind": job.kind, "state": job.state }),
            ),
            Change::JobActed(t) => (
                format!(
                    "job.{}",
                    match t.action.as_str() {
                        "cancel" => "cancelled",
                        "retry" => "retried",
                        "quarantine" => "quarantined",
                        "release" => "released",
                        other => other,
                    }
                ),
                t.job.id.to_string(),
                json!({ "kind": t.job.kind, "state": t.job.state, "from": t.from }),
            ),
            Change::Webhook { action, webhook } => (
                format!("webhook.{action}"),
                webhook.id.to_string(),
                webhook_facts(webhook),
            ),
            Change::WebhookDeleted { webhook, .. } => (
                "webhook.deleted".to_owned(),
                webhook.id.to_string(),
                json!({ "url": webhook.url }),
            ),
            Change::ArtifactUnchanged { .. }
            | Change::WebhookDeliveriesCreated { .. }
            | Change::WebhookDeliveriesContinued { .. }
            | Change::WebhookAttemptRecorded { .. }
            | Change::WebhookDeliveriesResent { .. }
            | Change::WebhookDeliveriesPruned { .. }
            | Change::Idempotency(_)
            | Change::ContextPackageUnchanged { .. }
            | Change::Audited { .. }
            | Change::OutboxPruned { .. }
            | Change::JobUnchanged { .. }
            | Change::JobsClaimed { .. }
            | Change::JobLeased { .. }
            | Change::JobFinished { .. }
            | Change::JobsPruned { .. }
            | Change::RelationImported { .. }
            | Change::RevisionImported { current: None, .. } => {
                return None;
            }
            Change::RevisionImported {
                revision,
                current: Some(artifact),
            } => (
                "artifact.imported".to_owned(),
                artifact.id.to_string(),
                json!({
                    "collection": artifact.collection,
                    "name": artifact.name,
                    "revision": revision.revision,
                    "digest": artifact.digest,
                    "state": artifact.state,
                    "classification": artifact.classification,
                }),
            ),
            Change::Imported { package, summary } => (
                "store.imported".to_owned(),
                package.clone(),
                json!({ "package": package, "summary": summary }),
            ),
            Change::RelationCreated { relation }
            | Change::RelationUpdated { relation }
            | Change::RelationDeleted { relation, .. } => {
                let kind = match self {
                    Change::RelationCreated { .. } => "relation.created",
                    Change::RelationUpdated { .. } => "relation.updated",
                    _ => "relation.deleted",
                };
                let mut payload = json!({
                    "type": relation.rel_type,
                    "source": relation.source,
                    "target": relation.target,
                    "revision": relation.revision,
                });
                if let Change::RelationDeleted { cause, .. } = self {
                    payload["cause"] = json!(cause);
                }
                (kind.to_owned(), relation.id.to_string(), payload)
            }
        };
        Some(EventDraft {
            kind,
            subject,
            payload,
        })
    }

    /// The event of an audit-only record (`Op::Audit`): a policy denial
    /// (`policy.deny.*`) is announced as `policy.denied`; other records
    /// (recovery actions, reads) have none.
    pub fn audit_only_event(draft: &AuditDraft) -> Option<EventDraft> {
        let permission = draft.action.strip_prefix("policy.deny.")?;
        let reason = draft
            .detail
            .as_ref()
            .and_then(|d| d.get("reason"))
            .and_then(|r| r.as_str())
            .unwrap_or("policy");
        Some(EventDraft {
            kind: "policy.denied".to_owned(),
            subject: draft.target_id.clone(),
            payload: json!({
                "action": draft.action,
                "permission": permission,
                "target": draft.target_id,
                "reason": reason,
            }),
        })
    }
}

/// The facts of one revision that its audit record vouches for.
#[derive(Debug, Clone, Copy)]
pub struct RevisionFacts<'a> {
    pub artifact_id: crate::ArtifactId,
    pub revision: u64,
    pub change: ChangeKind,
    pub prev_digest: Option<Digest>,
    pub digest: Digest,
    pub size: u64,
    pub media_type: &'a str,
    pub title: Option<&'a str>,
    pub metadata: &'a crate::Metadata,
    pub lifecycle: crate::Lifecycle,
    pub classification: crate::Classification,
    pub provenance: &'a crate::Provenance,
}

impl<'a> RevisionFacts<'a> {
    pub fn of(a: &'a Artifact, change: ChangeKind, prev_digest: Option<Digest>) -> Self {
        RevisionFacts {
            artifact_id: a.id,
            revision: a.revision,
            change,
            prev_digest,
            digest: a.digest,
            size: a.size,
            media_type: &a.media_type,
            title: a.title.as_deref(),
            metadata: &a.metadata,
            lifecycle: a.lifecycle,
            classification: a.classification,
            provenance: &a.provenance,
        }
    }

    pub fn of_revision(r: &'a crate::Revision) -> Self {
        RevisionFacts {
            artifact_id: r.artifact_id,
            revision: r.revision,
            change: r.change,
            prev_digest: r.prev_digest,
            digest: r.digest,
            size: r.size,
            media_type: &r.media_type,
            title: r.title.as_deref(),
            metadata: &r.metadata,
            lifecycle: r.lifecycle,
            classification: r.classification,
            provenance: &r.provenance,
        }
    }
}

/// Feeds fields into SHA-256 as `len (u64 LE) || bytes`, so no two field
/// sequences collide and nothing is allocated. `None` is a length of
/// `u64::MAX`. The fingerprints below are Kontextual's own integrity checks
/// (the audit record itself is RFC 8785); their field order is the format.
struct Fields(sha2::Sha256);

impl Fields {
    fn new(domain: &str) -> Self {
        use sha2::Digest as _;
        let mut f = Fields(sha2::Sha256::new());
        f.put(domain.as_bytes());
        f
    }
    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        use sha2::Digest as _;
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }
    fn opt(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        use sha2::Digest as _;
        match bytes {
            Some(b) => self.put(b),
            None => {
                self.0.update(u64::MAX.to_le_bytes());
                self
            }
        }
    }
    fn provenance(&mut self, p: &crate::Provenance) -> &mut Self {
        self.opt(p.source_path.as_deref().map(str::as_bytes));
        self.opt(
            p.source_mtime
                .map(|t| t.as_microsecond().to_le_bytes())
                .as_ref()
                .map(|b| &b[..]),
        );
        self.put(&(p.derived_from.len() as u64).to_le_bytes());
        for id in &p.derived_from {
            self.put(id.0.as_bytes());
        }
        self.opt(p.transformation.as_deref().map(str::as_bytes))
    }
    fn finish(self) -> String {
        use sha2::Digest as _;
        hex::encode(self.0.finalize())
    }
}

/// SHA-256 over a revision's facts (metadata as its exact text). Stored in
/// the revision's audit record, so `verify` can prove that no revision row
/// was edited behind the chain's back.
pub fn revision_fingerprint(f: &RevisionFacts<'_>) -> String {
    let mut h = Fields::new("kontextual.revision.v1");
    h.put(f.artifact_id.0.as_bytes())
        .put(&f.revision.to_le_bytes())
        .put(f.change.as_str().as_bytes())
        .opt(f.prev_digest.as_ref().map(|d| &d.as_bytes()[..]))
        .put(f.digest.as_bytes())
        .put(&f.size.to_le_bytes())
        .put(f.media_type.as_bytes())
        .opt(f.title.map(str::as_bytes))
        .put(f.metadata.as_str().as_bytes())
        .put(f.lifecycle.as_str().as_bytes())
        .put(f.classification.as_str().as_bytes())
        .provenance(f.provenance);
    h.finish()
}

/// SHA-256 over an artifact's whole current state (name, type, state,
/// namespace, …). The audit record of each revision carries it, so `verify`
/// can prove that the artifact row still is what that revision made it.
pub fn artifact_fingerprint(a: &Artifact) -> String {
    let mut h = Fields::new("kontextual.artifact.v1");
    h.put(a.id.0.as_bytes())
        .put(a.namespace.as_str().as_bytes())
        .put(a.collection_id.0.as_bytes())
        .put(a.collection.as_str().as_bytes())
        .put(a.name.as_str().as_bytes())
        .put(a.artifact_type.as_bytes())
        .put(a.media_type.as_bytes())
        .opt(a.title.as_deref().map(str::as_bytes))
        .put(a.digest.as_bytes())
        .put(&a.size.to_le_bytes())
        .put(a.metadata.as_str().as_bytes())
        .put(a.lifecycle.as_str().as_bytes())
        .put(a.classification.as_str().as_bytes())
        .opt(a.source_system.as_deref().map(str::as_bytes))
        .provenance(&a.provenance)
        .put(a.state.as_str().as_bytes())
        .put(&a.revision.to_le_bytes())
        .opt(a.run_id.map(|r| *r.0.as_bytes()).as_ref().map(|b| &b[..]))
        .put(&a.created_at.as_microsecond().to_le_bytes())
        .put(&a.updated_at.as_microsecond().to_le_bytes());
    h.finish()
}

/// The audit detail member that vouches for a row of authority or history
/// (relations, keys, grants, clearances, holds, quarantines): the row's
/// fingerprint after the change. `verify` compares each stored row with the
/// latest such record about it.
pub const ROW_HASH: &str = "row_hash";

/// The audit detail member of an imported revision that vouches for who
/// made it, when and in which request and run (the import's own record
/// names the importer).
pub const ORIGIN_HASH: &str = "origin_hash";

fn micros(t: crate::Timestamp) -> [u8; 8] {
    t.as_microsecond().to_le_bytes()
}

/// SHA-256 over who made a revision, when, in which request and run.
pub fn revision_origin_fingerprint(r: &crate::Revision) -> String {
    let mut h = Fields::new("kontextual.revision-origin.v1");
    h.put(r.actor.to_string().as_bytes())
        .put(r.correlation_id.as_str().as_bytes())
        .opt(r.run_id.map(|id| *id.0.as_bytes()).as_ref().map(|b| &b[..]))
        .put(&micros(r.created_at));
    h.finish()
}

/// SHA-256 over a relation row (every column).
pub fn relation_fingerprint(r: &Relation) -> String {
    let mut h = Fields::new("kontextual.relation.v1");
    h.put(r.id.0.as_bytes())
        .put(r.namespace.as_str().as_bytes())
        .put(r.rel_type.as_str().as_bytes())
        .put(r.source.0.as_bytes())
        .put(r.target.0.as_bytes())
        .put(r.properties.as_str().as_bytes())
        .put(&r.revision.to_le_bytes())
        .put(&[u8::from(r.deleted)])
        .put(&micros(r.created_at))
        .put(&micros(r.updated_at));
    h.finish()
}

/// SHA-256 over an API key row: everything but its last use (coalesced
/// bookkeeping, not authority), secret hash included.
pub fn key_fingerprint(k: &crate::ApiKey, secret_hash: Option<&Digest>) -> String {
    let mut h = Fields::new("kontextual.api-key.v1");
    h.put(k.id.as_bytes())
        .put(k.namespace.as_str().as_bytes())
        .put(k.name.as_bytes())
        .put(k.actor.to_string().as_bytes())
        .put(&(k.scopes.len() as u64).to_le_bytes());
    for s in &k.scopes {
        h.put(s.as_str().as_bytes());
    }
    h.opt(secret_hash.map(|d| &d.as_bytes()[..]))
        .put(&micros(k.created_at))
        .opt(k.expires_at.map(micros).as_ref().map(|b| &b[..]))
        .opt(k.revoked_at.map(micros).as_ref().map(|b| &b[..]));
    h.finish()
}

/// SHA-256 over a grant row.
pub fn grant_fingerprint(g: &crate::Grant) -> String {
    let mut h = Fields::new("kontextual.grant.v1");
    h.put(g.id.as_bytes())
        .put(g.namespace.as_str().as_bytes())
        .put(g.actor.to_string().as_bytes())
        .put(g.permission.as_str().as_bytes())
        .put(g.scope.to_string().as_bytes())
        .put(&micros(g.created_at));
    h.finish()
}

/// SHA-256 over a clearance row.
pub fn clearance_fingerprint(c: &crate::Clearance) -> String {
    let mut h = Fields::new("kontextual.clearance.v1");
    h.put(c.namespace.as_str().as_bytes())
        .put(c.actor.to_string().as_bytes())
        .put(c.level.as_str().as_bytes())
        .put(&micros(c.set_at));
    h.finish()
}

/// SHA-256 over a hold or quarantine row (`kind` keeps the two apart).
pub fn mark_fingerprint(kind: &str, m: &crate::Hold) -> String {
    let mut h = Fields::new("kontextual.mark.v1");
    h.put(kind.as_bytes())
        .put(m.artifact_id.0.as_bytes())
        .put(m.namespace.as_str().as_bytes())
        .put(m.reason.as_bytes())
        .put(m.actor.to_string().as_bytes())
        .put(&micros(m.created_at));
    h.finish()
}

fn verb(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "create",
        ChangeKind::Updated => "update",
        ChangeKind::Deleted => "delete",
        ChangeKind::Restored => "restore",
        ChangeKind::Purged => "purge",
    }
}

/// What an audit record or event says about a webhook: never its secrets
/// (a [`crate::Webhook`] holds none).
fn webhook_facts(w: &crate::Webhook) -> serde_json::Value {
    json!({
        "url": w.url,
        "types": w.types,
        "collections": w.collections,
        "state": w.state,
        "disabled_reason": w.disabled_reason,
    })
}

fn webhook_draft(
    action: &str,
    w: &crate::Webhook,
    extra: Option<(&str, serde_json::Value)>,
) -> AuditDraft {
    let mut detail = webhook_facts(w);
    if let (Some((k, v)), Some(obj)) = (extra, detail.as_object_mut()) {
        obj.insert(k.to_owned(), v);
    }
    AuditDraft {
        action: action.into(),
        target_kind: "webhook".into(),
        target_id: w.id.to_string(),
        target_name: Some(w.url.clone()),
        revision: None,
        prev_digest: None,
        digest: None,
        outcome: Outcome::Success,
        detail: Some(detail),
    }
}

fn relation_draft(action: &str, r: &Relation, detail: Option<serde_json::Value>) -> AuditDraft {
    let mut detail = detail.unwrap_or_else(|| json!({}));
    if let Some(obj) = detail.as_object_mut() {
        obj.insert(ROW_HASH.into(), json!(relation_fingerprint(r)));
    }
    let detail = Some(detail);
    AuditDraft {
        action: action.into(),
        target_kind: "relation".into(),
        target_id: r.id.to_string(),
        target_name: Some(format!("{} {} {}", r.source, r.rel_type, r.target)),
        revision: Some(r.revision),
        prev_digest: None,
        digest: None,
        outcome: Outcome::Success,
        detail,
    }
}

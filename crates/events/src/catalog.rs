//! The catalog: every event type Kontextual emits (or reserves), with its
//! version, description and the JSON Schema of its `data`.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;

use crate::data::*;

/// Whether something emits a type today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "note")]
pub enum Emission {
    /// Emitted by the change named (a `Change` variant, or an audit-only
    /// record).
    Emitted(&'static str),
    /// In the catalog, not emitted yet: why, and who will emit it.
    Reserved(&'static str),
}

/// One event type.
#[derive(Clone, Copy, Debug)]
pub struct EventType {
    /// Dotted, `noun.past_tense` (`artifact.created`).
    pub name: &'static str,
    /// The version of its `data` schema (1).
    pub version: u32,
    pub description: &'static str,
    /// What the event's `subject` is the id of.
    pub subject: &'static str,
    pub emission: Emission,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

impl EventType {
    /// The JSON Schema (2020-12) of the event's `data`, titled with the
    /// type's name.
    pub fn schema(&self) -> serde_json::Value {
        let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        let schema = (self.schema)(&mut generator);
        let mut v = schema.to_value();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "$schema".into(),
                "https://json-schema.org/draft/2020-12/schema".into(),
            );
            o.insert("title".into(), self.name.into());
            o.insert("description".into(), self.description.into());
            let defs = generator.take_definitions(true);
            if !defs.is_empty() {
                o.insert("$defs".into(), serde_json::Value::Object(defs));
            }
        }
        v
    }

    /// Whether it is emitted today.
    pub fn is_reserved(&self) -> bool {
        matches!(self.emission, Emission::Reserved(_))
    }
}

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.root_schema_for::<T>()
}

macro_rules! t {
    ($name:literal, $subject:literal, $emission:expr, $ty:ty, $desc:literal) => {
        EventType {
            name: $name,
            version: 1,
            description: $desc,
            subject: $subject,
            emission: $emission,
            schema: of::<$ty>,
        }
    };
}

use Emission::{Emitted as E, Reserved as R};

const JOB_COMPLETION: &str = "worker completions are bookkeeping, not audited yet; until they are, follow the job's run (`run.*`, `ingest.*`, `export.created`)";
const WEBHOOK_CHANGE: &str = "Change::Webhook";

/// Every event type, sorted by name.
pub static CATALOG: &[EventType] = &[
    t!(
        "artifact.created",
        "artifact id",
        E("Change::Artifact (created)"),
        ArtifactData,
        "An artifact was created: its first revision."
    ),
    t!(
        "artifact.deleted",
        "artifact id",
        E("Change::Artifact (deleted)"),
        ArtifactData,
        "An artifact was deleted (a tombstone revision; it can be restored)."
    ),
    t!(
        "artifact.derived",
        "artifact id",
        E("Change::Artifact (created, with derived_from)"),
        ArtifactDerivedData,
        "A derived artifact was created (its provenance names the artifacts it came from). Emitted instead of artifact.created."
    ),
    t!(
        "artifact.imported",
        "artifact id",
        E("Change::RevisionImported (current revision)"),
        ArtifactImportedData,
        "An import wrote an artifact's current revision with its original ids."
    ),
    t!(
        "artifact.purged",
        "artifact id",
        E("Change::Artifact (purged)"),
        ArtifactData,
        "An artifact's content was purged: its history keeps only digests."
    ),
    t!(
        "artifact.quarantined",
        "artifact id",
        E("Change::ArtifactQuarantined"),
        ArtifactMarkData,
        "An artifact was quarantined: left out of processing, search and export."
    ),
    t!(
        "artifact.released",
        "artifact id",
        E("Change::ArtifactReleased"),
        ArtifactMarkData,
        "An artifact's quarantine was released."
    ),
    t!(
        "artifact.restored",
        "artifact id",
        E("Change::Artifact (restored)"),
        ArtifactData,
        "A deleted artifact was restored."
    ),
    t!(
        "artifact.updated",
        "artifact id",
        E("Change::Artifact (updated)"),
        ArtifactData,
        "An artifact got a new revision (content or attributes)."
    ),
    t!(
        "clearance.set",
        "actor",
        E("Change::ClearanceSet"),
        ClearanceData,
        "An actor's clearance (the highest classification it may read) was set."
    ),
    t!(
        "collection.created",
        "collection id",
        E("Change::CollectionCreated"),
        CollectionData,
        "A collection was created."
    ),
    t!(
        "context.built",
        "context package id",
        E("Change::ContextPackageSaved"),
        ContextData,
        "A new version of a context package was built and stored."
    ),
    t!(
        "export.created",
        "run id",
        E("Change::Run (export, succeeded)"),
        RunData,
        "An export package was written (its export run succeeded)."
    ),
    t!(
        "grant.created",
        "grant id",
        E("Change::GrantCreated"),
        GrantData,
        "A grant was given to an actor."
    ),
    t!(
        "grant.deleted",
        "grant id",
        E("Change::GrantDeleted"),
        GrantData,
        "A grant was taken back."
    ),
    t!(
        "hold.released",
        "artifact id",
        E("Change::HoldReleased"),
        ArtifactMarkData,
        "A legal hold on an artifact was released."
    ),
    t!(
        "hold.set",
        "artifact id",
        E("Change::HoldSet"),
        ArtifactMarkData,
        "A legal hold was set on an artifact: it cannot be deleted or purged."
    ),
    t!(
        "ingest.failed",
        "run id",
        E("Change::Run (ingest, failed)"),
        RunData,
        "An ingest run failed."
    ),
    t!(
        "ingest.interrupted",
        "run id",
        E("Change::Run (ingest, interrupted)"),
        RunData,
        "An ingest run's process died; the run was marked interrupted."
    ),
    t!(
        "ingest.partial",
        "run id",
        E("Change::Run (ingest, partial)"),
        RunData,
        "An ingest run finished with some files refused."
    ),
    t!(
        "ingest.started",
        "run id",
        E("Change::Run (ingest, running)"),
        RunData,
        "An ingest run started."
    ),
    t!(
        "ingest.succeeded",
        "run id",
        E("Change::Run (ingest, succeeded)"),
        RunData,
        "An ingest run succeeded."
    ),
    t!(
        "job.cancelled",
        "job id",
        E("Change::JobActed (cancel)"),
        JobData,
        "An operator cancelled a job (a running one is asked to stop)."
    ),
    t!(
        "job.dead",
        "job id",
        R(JOB_COMPLETION),
        JobData,
        "A job failed and has no attempts left."
    ),
    t!(
        "job.enqueued",
        "job id",
        E("Change::JobEnqueued"),
        JobData,
        "A job was enqueued."
    ),
    t!(
        "job.failed",
        "job id",
        R(JOB_COMPLETION),
        JobData,
        "A job attempt failed."
    ),
    t!(
        "job.quarantined",
        "job id",
        E("Change::JobActed (quarantine)"),
        JobData,
        "An operator quarantined a job: kept, never processed, until released."
    ),
    t!(
        "job.released",
        "job id",
        E("Change::JobActed (release)"),
        JobData,
        "An operator released a quarantined job."
    ),
    t!(
        "job.retried",
        "job id",
        E("Change::JobActed (retry)"),
        JobData,
        "An operator queued a failed, dead or cancelled job again."
    ),
    t!(
        "job.retrying",
        "job id",
        R(JOB_COMPLETION),
        JobData,
        "A job attempt failed and the job waits for its next attempt."
    ),
    t!(
        "job.succeeded",
        "job id",
        R(JOB_COMPLETION),
        JobData,
        "A job succeeded."
    ),
    t!(
        "key.created",
        "API key id",
        E("Change::KeyCreated"),
        KeyData,
        "An API key was created."
    ),
    t!(
        "key.revoked",
        "API key id",
        E("Change::KeyRevoked"),
        KeyData,
        "An API key was revoked."
    ),
    t!(
        "policy.denied",
        "the refused target",
        E("audit-only record policy.deny.*"),
        PolicyDeniedData,
        "The policy denied an action (a missing grant, scope or clearance, or a legal hold)."
    ),
    t!(
        "relation.created",
        "relation id",
        E("Change::RelationCreated"),
        RelationData,
        "A relation between two artifacts was added."
    ),
    t!(
        "relation.deleted",
        "relation id",
        E("Change::RelationDeleted"),
        RelationData,
        "A relation was removed (on request, or with one of its artifacts)."
    ),
    t!(
        "relation.updated",
        "relation id",
        E("Change::RelationUpdated"),
        RelationData,
        "A relation's properties changed."
    ),
    t!(
        "run.failed",
        "run id",
        E("Change::Run (failed)"),
        RunData,
        "An operation run (export, import, reindex, repair) failed."
    ),
    t!(
        "run.interrupted",
        "run id",
        E("Change::Run (interrupted)"),
        RunData,
        "An operation run's process died; the run was marked interrupted."
    ),
    t!(
        "run.partial",
        "run id",
        E("Change::Run (partial)"),
        RunData,
        "An operation run finished with some of its work refused."
    ),
    t!(
        "run.started",
        "run id",
        E("Change::Run (running)"),
        RunData,
        "An operation run (export, import, reindex, repair) started."
    ),
    t!(
        "run.succeeded",
        "run id",
        E("Change::Run (succeeded)"),
        RunData,
        "An operation run other than an export succeeded (an export's success is export.created)."
    ),
    t!(
        "store.imported",
        "package name",
        E("Change::Imported"),
        StoreImportedData,
        "An export package was imported into the store."
    ),
    t!(
        "webhook.created",
        "webhook id",
        E(WEBHOOK_CHANGE),
        WebhookData,
        "A webhook subscription was created."
    ),
    t!(
        "webhook.deleted",
        "webhook id",
        E("Change::WebhookDeleted"),
        WebhookDeletedData,
        "A webhook subscription was deleted."
    ),
    t!(
        "webhook.disabled",
        "webhook id",
        E(WEBHOOK_CHANGE),
        WebhookData,
        "A webhook subscription was disabled (by an operator, or after persistent delivery failure)."
    ),
    t!(
        "webhook.enabled",
        "webhook id",
        E(WEBHOOK_CHANGE),
        WebhookData,
        "A disabled webhook subscription was enabled again."
    ),
    t!(
        "webhook.secret_rotated",
        "webhook id",
        E(WEBHOOK_CHANGE),
        WebhookData,
        "A webhook's signing secret was rotated (the old one is still sent for a while)."
    ),
    t!(
        "webhook.updated",
        "webhook id",
        E(WEBHOOK_CHANGE),
        WebhookData,
        "A webhook subscription's URL or type patterns changed."
    ),
];

/// Whether `pattern` asks for at least one type in the catalog (a
/// subscription or a filter that matches none is a typo).
pub fn matches_any(pattern: &kontextual_model::TypePattern) -> bool {
    CATALOG.iter().any(|t| pattern.matches(t.name))
}

/// The type named `name`.
pub fn find(name: &str) -> Option<&'static EventType> {
    CATALOG.iter().find(|t| t.name == name)
}

/// Types the memory domain will add with its emitters (not in the catalog
/// until then): review decisions.
pub const COMING_WITH_MEMORY: &[&str] = &["review.approved", "review.rejected"];

/// The catalog as a Markdown table (docs/events.md embeds it; a test
/// keeps the two equal).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| type | version | subject | status | description |\n|---|---|---|---|---|\n",
    );
    for t in CATALOG {
        let status = match t.emission {
            Emission::Emitted(_) => "emitted".to_owned(),
            Emission::Reserved(_) => "reserved".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            t.name, t.version, t.subject, status, t.description
        ));
    }
    out
}

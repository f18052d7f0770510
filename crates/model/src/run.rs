//! Operation runs (K6): what was asked (input bundle), what happened (steps),
//! and what came out (manifest), with a status that survives restarts.

use serde::{Deserialize, Serialize};

use crate::ids::RunId;
use crate::names::Namespace;
use crate::{Actor, Timestamp};

crate::artifact::word_enum!(
    /// Where a run is. `interrupted`: its process died while it was `running`.
    RunStatus { Running = "running", Succeeded = "succeeded", Failed = "failed", Partial = "partial", Interrupted = "interrupted" } default Running
);

impl RunStatus {
    pub fn is_final(self) -> bool {
        self != RunStatus::Running
    }
}

/// One operation run (an ingest, later imports, exports, re-indexes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub namespace: Namespace,
    /// What kind of operation, e.g. `ingest`.
    pub kind: String,
    pub status: RunStatus,
    pub actor: Actor,
    /// What was asked, as given (the InputBundle): enough to re-run it.
    pub input: serde_json::Value,
    /// What came out (the RunManifest), once the run has finished.
    pub manifest: Option<serde_json::Value>,
    /// The process that runs it (`host:pid:start`), to detect a dead owner.
    pub owner: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The job whose attempt ran it, if it ran as a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<crate::JobId>,
}

/// A run without its input and manifest (which can be large): for listing
/// and for referring to runs from other records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: RunId,
    pub kind: String,
    pub status: RunStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One recorded step of a run (a WorkflowStep).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStep {
    pub run_id: RunId,
    pub seq: u64,
    pub name: String,
    pub status: RunStatus,
    pub detail: serde_json::Value,
    pub at: Timestamp,
}

//! Durable jobs (O1, O2): leased work items in the store. Unlike outbox
//! events (append-only facts that consumers read at their own pace), a job is
//! claimed by one worker at a time under a lease, and ends in exactly one
//! terminal state.
//!
//! ```text
//!            claim                 complete(ok)
//!  queued ──────────▶ running ───────────────▶ succeeded
//!    ▲  ▲               │  │ fail, attempts left
//!    │  └── run_at ── failed (retrying)
//!    │                  │  └ fail, no attempts left / not retryable ─▶ dead
//!    │ retry/release    └ cancel / quarantine ─▶ cancelled / quarantined
//! ```
//!
//! A worker's claim carries the attempt number; completion and heartbeats
//! only count while the job is still `running` under that attempt (fencing),
//! so a worker whose lease expired cannot overwrite the rescued attempt.

use serde::{Deserialize, Serialize};

use crate::ids::{CorrelationId, JobId, RunId};
use crate::names::Namespace;
use crate::{Actor, Timestamp};

crate::artifact::word_enum!(
    /// Where a job is. `failed` waits for its next attempt (`run_at`); `dead`,
    /// `succeeded` and `cancelled` are terminal; `quarantined` is kept, never
    /// processed, until released.
    JobState {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Dead = "dead",
        Cancelled = "cancelled",
        Quarantined = "quarantined"
    } default Queued
);

impl JobState {
    /// No worker will take it again without an operator's action.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled | JobState::Quarantined
        )
    }

    /// A worker may claim it once `run_at` has passed.
    pub fn is_claimable(self) -> bool {
        matches!(self, JobState::Queued | JobState::Failed)
    }
}

crate::artifact::word_enum!(
    /// How one attempt ended. `stopped`: the worker stopped because the job
    /// was cancelled or quarantined; `lost`: the lease expired (the worker
    /// died or lost touch) and the job was rescued.
    AttemptOutcome {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Stopped = "stopped",
        Lost = "lost"
    } default Running
);

/// One job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub namespace: Namespace,
    /// What to do (`ingest`, `reindex`, `repair`, `noop`, …).
    pub kind: String,
    /// The job's input, as given when it was enqueued.
    pub payload: serde_json::Value,
    pub state: JobState,
    /// Attempts started so far (the running one included).
    pub attempt: u32,
    pub max_attempts: u32,
    /// Not claimed before this instant (scheduled jobs, retry backoff).
    pub run_at: Timestamp,
    /// At most one job with this key is queued, running or failed at a time.
    pub unique_key: Option<String>,
    /// The worker of the latest attempt (holding the lease while running).
    pub worker: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    /// What a running job should stop for (`cancelled` or `quarantined`),
    /// set by an operator and seen by the worker at its next heartbeat.
    pub stop_requested: Option<JobState>,
    pub last_error: Option<String>,
    /// The partial-failure report of the latest attempt that made one (for an
    /// ingest: which files failed and why). Kept across retries and recovery.
    pub report: Option<serde_json::Value>,
    /// Who enqueued it, and the correlation id its records carry.
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The API key it was enqueued with, and that key's scopes (`None`: the
    /// local administrator). The worker checks them, and the actor's
    /// grants, again before every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<crate::Scope>>,
}

/// One attempt at a job: who ran it, when, how it ended, and the run it made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobAttempt {
    pub job_id: JobId,
    pub attempt: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    /// The operation run this attempt started, if it made one (K6).
    pub run_id: Option<RunId>,
}

/// How a worker ends an attempt it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobResult {
    Succeeded,
    /// `retry_at: None` means the error is not worth retrying (dead at once).
    Failed {
        error: String,
        retry_at: Option<Timestamp>,
    },
    /// Stopped on request (cancel or quarantine).
    Stopped,
    /// Given back unfinished because the worker is shutting down: queued
    /// again at once, and the attempt does not count against the limit.
    Returned,
}

/// What an operator's action on a job did (for idempotent answers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobTransition {
    /// `retry`, `cancel`, `quarantine` or `release`.
    pub action: String,
    pub job: Job,
    /// The state before the action.
    pub from: JobState,
    /// False when the job already was where the action leads (nothing written).
    pub changed: bool,
}

/// Counts for metrics and `job list` summaries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    /// (kind, state, count).
    pub counts: Vec<(String, JobState, u64)>,
    /// When the oldest claimable job became due, if any is waiting.
    pub oldest_due: Option<Timestamp>,
}

/// Exponential backoff with full jitter (AWS architecture blog): the delay
/// before attempt `attempt + 1`, capped, times a uniform factor in [0.5, 1).
/// `unit` is the random draw in [0, 1).
pub fn backoff(
    attempt: u32,
    base: std::time::Duration,
    cap: std::time::Duration,
    unit: f64,
) -> std::time::Duration {
    let exp = base.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX),
    );
    let capped = exp.min(cap);
    capped.mul_f64(0.5 + unit.clamp(0.0, 1.0) * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn o2_backoff_grows_then_caps_and_jitters_within_bounds() {
        let b = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, b, cap, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, b, cap, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(30, b, cap, 1.0), cap);
        assert_eq!(backoff(3, b, cap, 0.0), Duration::from_secs(2));
        assert!(backoff(2, b, cap, 0.3) < Duration::from_secs(2));
    }

    #[test]
    fn o2_terminal_and_claimable_states() {
        assert!(JobState::Dead.is_final() && JobState::Quarantined.is_final());
        assert!(!JobState::Failed.is_final() && JobState::Failed.is_claimable());
        assert!(!JobState::Running.is_claimable());
    }
}

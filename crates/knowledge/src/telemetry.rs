//! What `/metrics` reports at scrape time (O1): numbers read from the store
//! and the index when asked, so every process reports the shared truth.
//! Rates and latencies (counters, histograms) are recorded where the work
//! happens, through the `metrics` facade.

use kontextual_model::JobStats;
use serde::Serialize;

use crate::{Caller, Knowledge, Permission, Resource, Result};

#[derive(Clone, Debug, Serialize)]
pub struct MetricsSnapshot {
    pub jobs: JobStats,
    /// Seconds the oldest due job has waited (0 when none waits).
    pub queue_age_seconds: f64,
    pub store_size_bytes: u64,
    pub artifacts_live: u64,
    pub audit_chain_length: u64,
    pub outbox_events: u64,
    pub outbox_last_seq: u64,
    /// Documents (artifacts) in the search index, if it could be read.
    pub index_artifacts: Option<u64>,
    /// What the index should hold: live artifacts that are not quarantined.
    pub index_expected_artifacts: u64,
    /// Outbox events the index has not applied yet.
    pub index_lag_events: Option<u64>,
    /// (kind, status, count) of runs.
    pub runs: Vec<(String, String, u64)>,
    /// Documents and bytes of every ingest in the store (any process's).
    pub ingest_documents: u64,
    pub ingest_bytes: u64,
}

impl Knowledge {
    pub fn metrics_snapshot(&self, caller: &Caller) -> Result<MetricsSnapshot> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("metrics"))?;
        let jobs = self.store().jobs().stats()?;
        let queue_age_seconds = jobs.oldest_due.map_or(0.0, |t| {
            kontextual_model::now()
                .duration_since(t)
                .as_secs_f64()
                .max(0.0)
        });
        let status = self.store().status()?;
        let (ingest_documents, ingest_bytes) = self.store().runs().ingest_totals()?;
        let (index_artifacts, index_lag_events) = match self.projection() {
            Ok(p) => match p.index().stats() {
                Ok(stats) => {
                    let applied = stats.checkpoint.as_ref().map_or(0, |c| c.applied_seq);
                    (
                        Some(stats.artifacts),
                        Some(status.outbox_last_seq.saturating_sub(applied)),
                    )
                }
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        };
        Ok(MetricsSnapshot {
            jobs,
            queue_age_seconds,
            store_size_bytes: status.size_bytes,
            artifacts_live: status.artifacts_live,
            audit_chain_length: status.audit_records,
            outbox_events: status.outbox_events,
            outbox_last_seq: status.outbox_last_seq,
            index_artifacts,
            index_expected_artifacts: self.live_unquarantined()?,
            index_lag_events,
            runs: self.store().runs().stats()?,
            ingest_documents,
            ingest_bytes,
        })
    }
}

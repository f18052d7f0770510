//! Recovery work (O2): re-indexing and repair, each recorded as a run. Run
//! directly (`reindex`, `repair` without `--background`) or by a worker.

use std::time::Instant;

use kontextual_model::{JobId, RunId, RunStatus};
use kontextual_store::{Op, Problem, ProblemCategory, RunOp, WriteBatch};
use serde::Serialize;

use crate::error::index_err;
use crate::this_process;
use crate::{Caller, Error, Knowledge, Permission, Resource, Result};

/// What a re-index did.
#[derive(Clone, Debug, Serialize)]
pub struct ReindexReport {
    pub run_id: RunId,
    /// The collection, or `None` for everything.
    pub collection: Option<String>,
    /// Artifacts visited (indexed again, or dropped when deleted or quarantined).
    pub artifacts: u64,
    pub elapsed_ms: u64,
}

/// What `repair` found, fixed, and could not fix.
#[derive(Clone, Debug, Serialize)]
pub struct RepairReport {
    pub run_id: RunId,
    /// What was wrong and has been fixed.
    pub fixed: Vec<String>,
    /// Problems that remain after repair, with what to do about each.
    pub remaining: Vec<Problem>,
    pub elapsed_ms: u64,
}

impl RepairReport {
    pub fn is_ok(&self) -> bool {
        self.remaining.is_empty()
    }
}

impl Knowledge {
    /// Starts a run for recovery work and finishes it with the outcome of
    /// `work` (its manifest, or the error).
    pub(crate) fn recovery_run<T: Serialize>(
        &self,
        caller: &Caller,
        kind: &str,
        input: serde_json::Value,
        job: Option<(JobId, u32)>,
        work: impl FnOnce(RunId) -> Result<T>,
    ) -> Result<T> {
        let run_id = RunId::new();
        let mut bundle = input;
        if let Some(o) = bundle.as_object_mut() {
            o.insert("kind".into(), kind.into());
        }
        self.write(
            caller,
            vec![Op::Runs(RunOp::StartRun {
                id: run_id,
                kind: kind.to_owned(),
                input: bundle,
                owner: this_process(),
                job,
            })],
        )?;
        let out = work(run_id);
        let (status, manifest) = match &out {
            Ok(v) => (
                RunStatus::Succeeded,
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            ),
            // asked to stop (a cancelled job, a worker shutting down)
            Err(e @ Error::Stopped(_)) => (
                RunStatus::Interrupted,
                serde_json::json!({ "error": e.to_string() }),
            ),
            Err(e) => (
                RunStatus::Failed,
                serde_json::json!({ "error": e.to_string() }),
            ),
        };
        self.store().write(WriteBatch {
            ctx: kontextual_store::WriteContext {
                run_id: Some(run_id),
                ..caller.write_ctx()
            },
            ops: vec![Op::Runs(RunOp::FinishRun {
                id: run_id,
                status,
                manifest,
            })],
        })?;
        metrics::counter!("kontextual_runs_finished_total", "kind" => kind.to_owned(), "status" => status.as_str())
            .increment(1);
        out
    }

    /// Indexes one collection (or everything) again from the store, now.
    /// Needs this process to own the search index.
    pub fn reindex_now(&self, caller: &Caller, collection: Option<&str>) -> Result<ReindexReport> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("search index"),
        )?;
        self.reindex_linked(caller, collection, None)
    }

    pub(crate) fn reindex_linked(
        &self,
        caller: &Caller,
        collection: Option<&str>,
        job: Option<(JobId, u32)>,
    ) -> Result<ReindexReport> {
        let coll = collection
            .map(kontextual_model::CollectionName::new)
            .transpose()?;
        if let Some(c) = &coll
            && self
                .store()
                .knowledge()
                .collection(&caller.namespace, c)?
                .is_none()
        {
            return Err(Error::NotFound(format!("collection {c}")));
        }
        let p = self.projection()?;
        let input = serde_json::json!({ "collection": collection });
        self.recovery_run(caller, "reindex", input, job, |run_id| {
            let t = Instant::now();
            let artifacts = match &coll {
                Some(c) => p.reindex_collection(&caller.namespace, c)?,
                None => p.rebuild()?.artifacts_reindexed,
            };
            Ok(ReindexReport {
                run_id,
                collection: collection.map(str::to_owned),
                artifacts,
                elapsed_ms: t.elapsed().as_millis() as u64,
            })
        })
    }

    /// Runs the store and index checks, fixes what can be fixed without
    /// losing anything, and reports the rest.
    pub fn repair(&self, caller: &Caller) -> Result<RepairReport> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("store"))?;
        self.repair_linked(caller, None)
    }

    pub(crate) fn repair_linked(
        &self,
        caller: &Caller,
        job: Option<(JobId, u32)>,
    ) -> Result<RepairReport> {
        self.recovery_run(caller, "repair", serde_json::json!({}), job, |run_id| {
            let t = Instant::now();
            let mut fixed = Vec::new();
            // Runs whose process died are marked interrupted (K6).
            for run in self.recover_interrupted_runs()? {
                fixed.push(format!("run {run} was left running by a dead process: marked interrupted"));
            }
            // A damaged, foreign or diverged index is rebuilt from the store.
            let index_problems = self.index_problems();
            let index_diverged = self
                .projection()
                .and_then(|p| {
                    if p.is_owner() {
                        p.catch_up()?;
                    }
                    let stats = p.index().stats().map_err(index_err)?;
                    Ok(stats.artifacts != self.live_unquarantined()?)
                })
                .unwrap_or(false);
            if !index_problems.is_empty() || index_diverged {
                match self.projection().and_then(|p| p.rebuild()) {
                    Ok(done) => fixed.push(format!(
                        "search index: {}; rebuilt from the store ({} artifacts)",
                        index_problems
                            .iter()
                            .map(|p| p.detail.split(';').next().unwrap_or_default().to_owned())
                            .chain(index_diverged.then(|| "its documents disagreed with the store".to_owned()))
                            .collect::<Vec<_>>()
                            .join("; "),
                        done.artifacts_reindexed
                    )),
                    Err(e) => fixed.push(format!("search index could not be rebuilt here: {e}")),
                }
            }
            // What remains: the store's own check (corruption, missing blobs,
            // a broken audit chain, pending migrations) and the index again.
            let mut remaining = self.store().check(None)?.problems;
            remaining.extend(self.index_problems());
            for p in &mut remaining {
                let advice = match p.category {
                    ProblemCategory::PendingMigration => "run `kontextual db migrate`",
                    ProblemCategory::Corruption | ProblemCategory::MissingReference => {
                        "restore the affected content from a backup or export package; repair cannot invent lost bytes"
                    }
                    ProblemCategory::AuditChain => {
                        "the audit chain cannot be repaired without hiding tampering: investigate, and keep the report"
                    }
                    ProblemCategory::SearchIndex => "run `kontextual index rebuild` where the index is owned",
                };
                p.detail = format!("{} — {advice}", p.detail);
            }
            Ok(RepairReport {
                run_id,
                fixed,
                remaining,
                elapsed_ms: t.elapsed().as_millis() as u64,
            })
        })
    }

    /// Live artifacts that are not quarantined, in every namespace: what
    /// the search index should hold.
    pub(crate) fn live_unquarantined(&self) -> Result<u64> {
        let live = self.store().status()?.artifacts_live;
        let mut quarantined = 0u64;
        for ns in self.store().knowledge().namespaces()? {
            quarantined += self.store().access().quarantines(&ns, None)?.len() as u64;
        }
        Ok(live.saturating_sub(quarantined))
    }
}

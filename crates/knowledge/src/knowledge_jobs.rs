//! The knowledge domain's background work, as job handlers: ingest,
//! re-index, repair and export. Each knows its payload, who may enqueue it
//! and how to run it; the worker only dispatches by name.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    Caller, EnqueueOptions, Enqueued, Error, IngestProgress, IngestRequest, JobContext, JobFailure,
    JobHandler, JobHost, JobQueue, Knowledge, Permission, Resource, Result,
};

/// A job host that holds the knowledge domain: what its handlers run on.
pub trait KnowledgeHost: JobHost {
    fn knowledge(&self) -> &Knowledge;
}

/// The input of an `ingest` job (and of an ingest run: its input bundle).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestPayload {
    pub paths: Vec<String>,
    pub collection: String,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub source_system: Option<String>,
}

/// The input of a `reindex` job: one collection, or everything.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReindexPayload {
    #[serde(default)]
    pub collection: Option<String>,
}

/// The input of an `export` job: what to export, and where on the
/// worker's machine (an absolute path; `.tar.zst` or a directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPayload {
    pub scope: crate::ExportScope,
    pub out: String,
}

/// The knowledge domain's handlers, in the order `job list` names them.
pub fn handlers<H: KnowledgeHost>() -> Vec<Arc<dyn JobHandler<H>>> {
    vec![
        Arc::new(IngestJob),
        Arc::new(ReindexJob),
        Arc::new(RepairJob),
        Arc::new(ExportJob),
    ]
}

fn parse<T: serde::de::DeserializeOwned>(kind: &str, payload: &serde_json::Value) -> Result<T> {
    kontextual_kernel::parse_payload(kind, payload)
}

/// Lets ingest and export stop at their safe points when the job is asked to.
struct StopWhenAsked<'a>(&'a JobContext<'a>);

impl IngestProgress for StopWhenAsked<'_> {
    fn scanned(&self, _: u64, _: u64) {}
    fn advanced(&self, _: u64, _: u64) {}
    fn finished(&self) {}
    fn should_stop(&self) -> bool {
        self.0.should_stop()
    }
}

impl kontextual_package::Progress for StopWhenAsked<'_> {
    fn should_stop(&self) -> bool {
        self.0.should_stop()
    }
}

/// Re-index and repair write the search index, which only its owner can.
fn index_owner_only(host: &Knowledge) -> Option<String> {
    let owner = host.projection().map(|p| p.is_owner()).unwrap_or(false);
    (!owner).then(|| "the search index, which another process owns".to_owned())
}

struct IngestJob;

impl<H: KnowledgeHost> JobHandler<H> for IngestJob {
    fn kind(&self) -> &str {
        "ingest"
    }

    fn max_attempts(&self) -> u32 {
        5
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        let p: IngestPayload = parse(JobHandler::<H>::kind(self), payload)?;
        let collection = kontextual_model::CollectionName::new(&p.collection)?;
        host.knowledge().authorize(
            caller,
            Permission::Write,
            &Resource::Collection(collection.as_str()),
        )?;
        if p.paths.is_empty() {
            return Err(Error::InvalidInput(
                "give at least one file or directory to ingest".to_owned(),
            ));
        }
        // Checked now, so a request that cannot work fails at once.
        for path in &p.paths {
            let path = std::path::Path::new(path);
            if !path.is_absolute() {
                return Err(Error::InvalidInput(format!(
                    "ingest job path {}: give an absolute path (a worker may run in another directory)",
                    path.display()
                )));
            }
            if p.prune && path.is_file() {
                return Err(Error::InvalidInput(format!(
                    "--prune needs directories: with the file {} it would tombstone the rest of the collection",
                    path.display()
                )));
            }
        }
        // The paths are this machine's: a remote caller (with an API key)
        // could otherwise read any file the server can. Only a namespace
        // admin may ask for that.
        if caller.scopes.is_some() {
            host.knowledge().authorize(
                caller,
                Permission::Admin,
                &Resource::Namespace("server-side files (ingest by path)"),
            )?;
        }
        Ok(())
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: IngestPayload = ctx.payload()?;
        let req = IngestRequest {
            paths: p.paths.iter().map(Into::into).collect(),
            collection: p.collection,
            prune: p.prune,
            source_system: p.source_system,
        };
        let r = host.knowledge().ingest_and_index_linked(
            &ctx.caller,
            &req,
            &StopWhenAsked(ctx),
            ctx.link(),
        )?;
        let report = serde_json::json!({
            "run_id": r.run_id,
            "status": r.status,
            "files": r.files,
            "new": r.new, "updated": r.updated, "unchanged": r.unchanged,
            "failed": r.failed,
            "failures": r.failures.iter().take(1000).collect::<Vec<_>>(),
            "skipped": r.skipped.len(),
        });
        if r.status == Some(kontextual_model::RunStatus::Failed) {
            let first = r
                .failures
                .first()
                .map_or(String::new(), |f| format!(": {} ({})", f.path, f.reason));
            return Err(JobFailure {
                error: crate::error::KnowledgeError::NothingIngested {
                    failed: r.failed,
                    first,
                }
                .into(),
                report: Some(report),
                retry_after: None,
            });
        }
        Ok(Some(report))
    }
}

struct ReindexJob;

impl<H: KnowledgeHost> JobHandler<H> for ReindexJob {
    fn kind(&self) -> &str {
        "reindex"
    }

    fn max_attempts(&self) -> u32 {
        5
    }

    /// Unique per scope: no second re-index of the same collection waits.
    fn unique_key(&self, payload: &serde_json::Value) -> Option<String> {
        Some(format!(
            "reindex:{}",
            payload
                .get("collection")
                .and_then(|c| c.as_str())
                .unwrap_or("*")
        ))
    }

    fn unavailable_here(&self, host: &H) -> Option<String> {
        index_owner_only(host.knowledge())
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        let p: ReindexPayload = parse(JobHandler::<H>::kind(self), payload)?;
        if let Some(c) = &p.collection {
            kontextual_model::CollectionName::new(c)?;
        }
        host.knowledge().authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("search index"),
        )
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: ReindexPayload = ctx.payload()?;
        let r =
            host.knowledge()
                .reindex_linked(&ctx.caller, p.collection.as_deref(), ctx.link())?;
        Ok(serde_json::to_value(r).ok())
    }
}

struct RepairJob;

impl<H: KnowledgeHost> JobHandler<H> for RepairJob {
    fn kind(&self) -> &str {
        "repair"
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn unique_key(&self, _payload: &serde_json::Value) -> Option<String> {
        Some("repair".to_owned())
    }

    fn unavailable_here(&self, host: &H) -> Option<String> {
        index_owner_only(host.knowledge())
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        if !payload.is_null() && *payload != serde_json::json!({}) {
            return Err(Error::InvalidInput(
                "a repair job takes no payload".to_owned(),
            ));
        }
        host.knowledge()
            .authorize(caller, Permission::Admin, &Resource::Namespace("store"))
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let r = host.knowledge().repair_linked(&ctx.caller, ctx.link())?;
        Ok(serde_json::to_value(r).ok())
    }
}

/// An export package written to a path on the worker's machine.
struct ExportJob;

impl<H: KnowledgeHost> JobHandler<H> for ExportJob {
    fn kind(&self) -> &str {
        "export"
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn check(&self, host: &H, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        let p: ExportPayload = parse(JobHandler::<H>::kind(self), payload)?;
        crate::export::check_out_path(std::path::Path::new(&p.out), true)?;
        host.knowledge().export_preflight(caller, &p.scope)?;
        // The path is this machine's: only a namespace admin may have the
        // server write files.
        if caller.scopes.is_some() {
            host.knowledge().authorize(
                caller,
                Permission::Admin,
                &Resource::Namespace("server-side files (export to a path)"),
            )?;
        }
        Ok(())
    }

    fn run(
        &self,
        host: &H,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        let p: ExportPayload = ctx.payload()?;
        let r = host.knowledge().export_to_path(
            &ctx.caller,
            &p.scope,
            std::path::Path::new(&p.out),
            ctx.link(),
            &StopWhenAsked(ctx),
        )?;
        Ok(serde_json::to_value(r).ok())
    }
}

/// Enqueueing the domain's work needs the host's registry, so these take
/// the host (the composition root's facade), not the domain alone.
pub trait KnowledgeJobs: KnowledgeHost {
    /// `ingest --background`: checks the request now (so a typo fails at
    /// once), then enqueues it with absolute paths.
    fn ingest_background(&self, caller: &Caller, req: &IngestRequest) -> Result<Enqueued> {
        let mut paths = Vec::new();
        for p in &req.paths {
            let canonical = std::fs::canonicalize(p).map_err(|_| {
                Error::NotFound(format!("{} (no such file or directory)", p.display()))
            })?;
            paths.push(canonical.display().to_string());
        }
        let payload = IngestPayload {
            paths,
            collection: req.collection.clone(),
            prune: req.prune,
            source_system: req.source_system.clone(),
        };
        let payload = serde_json::to_value(&payload)
            .map_err(|e| Error::InvalidInput(format!("ingest payload: {e}")))?;
        self.job_enqueue(caller, "ingest", payload, EnqueueOptions::default())
    }

    /// `export --background`: checked now, written by a worker.
    fn export_background(
        &self,
        caller: &Caller,
        scope: &crate::ExportScope,
        out: &std::path::Path,
    ) -> Result<Enqueued> {
        let out = crate::export::absolute(out)?;
        let payload = serde_json::to_value(ExportPayload {
            scope: scope.clone(),
            out: out.display().to_string(),
        })
        .map_err(|e| Error::InvalidInput(format!("export payload: {e}")))?;
        self.job_enqueue(caller, "export", payload, EnqueueOptions::default())
    }

    /// `reindex [--collection C]` as a job, deduplicated per collection: no
    /// second re-index of the same scope is queued while one waits.
    fn reindex_enqueue(&self, caller: &Caller, collection: Option<&str>) -> Result<Enqueued> {
        let key = format!("reindex:{}", collection.unwrap_or("*"));
        let payload = serde_json::to_value(ReindexPayload {
            collection: collection.map(str::to_owned),
        })
        .map_err(|e| Error::InvalidInput(format!("reindex payload: {e}")))?;
        self.job_enqueue(
            caller,
            "reindex",
            payload,
            EnqueueOptions {
                unique_key: Some(key),
                ..Default::default()
            },
        )
    }
}

impl<H: KnowledgeHost> KnowledgeJobs for H {}

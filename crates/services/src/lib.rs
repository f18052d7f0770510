//! Application services: the only door to the store for every surface (the
//! CLI and the HTTP server). Each operation resolves references, asks the policy,
//! stamps the write with the caller's actor, namespace and correlation id,
//! and hands it to the store, which audits it in the same transaction.
//!
//! Invariant: no surface holds a `Store`; they hold `Services`.
//! Boundary: this crate knows no CLI or HTTP types, and no database driver.

mod artifacts;
mod context;
mod diff;
mod error;
mod export;
mod holds;
mod index_admin;
mod ingest;
mod knowledge_jobs;
mod media;
mod projection;
mod recovery;
mod relations;
mod search;
mod sections;
mod telemetry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kontextual_model::{ChainHead, Collection, CollectionName};
use kontextual_store::sqlite::{OpenMode, OpenOptions, SqliteBackend};
use kontextual_store::{CheckReport, Op, Page, PageRequest, Store};

pub use artifacts::{ContentSource, Diff, DiffContent, PutOutcome, PutRequest};

/// Store query and page types surfaces need to build requests.
pub mod store_types {
    pub use kontextual_store::{ArtifactQuery, Cursor, Page, PageRequest};
}
pub use context::{
    ContextRequest, ContextVerification, ContextView, Encoding, Item as ContextItem, Manifest,
    Reason, VerifyProblem,
};
pub use error::KnowledgeError;
pub use export::{
    CheckedPackage, ExportReport, ExportScope, ExportTarget, ImportReport, Progress, Silent,
    check_package,
};
pub use index_admin::{IndexStatus, Unextractable};
pub use ingest::{
    FileFailure, IndexedReport, IngestProgress, IngestReport, IngestRequest, NoProgress,
};
pub use kontextual_index::Snippet;
pub use kontextual_kernel::AUTH_CACHE_TTL;
pub use kontextual_kernel::{
    AccessPolicy, AllowAll, AuditFilter, AuditVerification, Caller, DomainError, EnqueueOptions,
    Enqueued, Error, ErrorCode, ErrorKind, FeedConsumer, FeedConsumers, FeedFinish, FeedPass,
    GrantOn, JobContext, JobFailure, JobHandler, JobHost, JobQueue, JobRegistry, JobView, Kernel,
    MAX_ENQUEUE_BATCH, NewKey, NoopJob, NoopPayload, Permission, Policy, Resource, Result,
    WorkerConfig, WorkerSummary, acknowledge, catch_up, this_process,
};
pub use kontextual_package::{
    Limits as UnpackLimits, Problem as PackageProblem, Verdict as PackageVerdict,
};
pub use kontextual_store::ImportConflict;
pub use kontextual_store::JobAction;
pub use kontextual_store::sqlite::OpenMode as StoreOpenMode;
pub use kontextual_store::{
    CheckReport as StoreCheck, Page as StorePage, PageRequest as StorePageRequest, Problem,
    ProblemCategory,
};
pub use projection::{CatchUp, FOLLOWER_WAIT};
pub use recovery::{ReindexReport, RepairReport};
pub use search::{
    Freshness, MAX_EXPAND_DEPTH, MAX_SEARCH_LIMIT, Related, SearchFilters, SearchHit,
    SearchRequest, SearchResponse, artifact_ref,
};
pub use sections::{SectionEntry, SectionView};
pub use telemetry::MetricsSnapshot;

/// Where the store lives and how to open it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub busy_timeout: Duration,
}

/// The services over one open store: the kernel, and the knowledge
/// domain's state beside it. Kernel operations are reached through it
/// (`Deref`), so surfaces call one object.
pub struct Services {
    kernel: Kernel,
    /// Where the data directory is (the search index lives in it); `None`
    /// for stores without one (in memory).
    data_dir: Option<PathBuf>,
    /// Opened on first use: most commands never need the index.
    projection: std::sync::Mutex<Option<std::sync::Arc<projection::Projection>>>,
    /// What follows the change feed in this process (the search index).
    feed_consumers: FeedConsumers<Services>,
    /// Every job kind this process knows, and how to run it.
    job_handlers: JobRegistry<Services>,
    /// Whether a follower refreshes the index (a server): reads then never
    /// catch up themselves.
    background_refresh: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for Services {
    type Target = Kernel;

    fn deref(&self) -> &Kernel {
        &self.kernel
    }
}

impl JobHost for Services {
    fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    fn job_handlers(&self) -> &JobRegistry<Services> {
        &self.job_handlers
    }
}

impl Services {
    /// Opens the store in `cfg.data_dir`. [`OpenMode::Create`] is `init`.
    pub fn open(cfg: &StoreConfig, mode: OpenMode) -> Result<Self> {
        let mut opts = OpenOptions::new(mode);
        opts.busy_timeout = cfg.busy_timeout;
        let backend = SqliteBackend::open_dir(&cfg.data_dir, &opts)?;
        let mut svc = Services::with_store(Store::new(backend), Box::new(AccessPolicy));
        svc.data_dir = Some(cfg.data_dir.clone());
        if matches!(mode, OpenMode::ReadWrite | OpenMode::Create) {
            // A run whose process died shows as interrupted, not running (K6).
            if let Err(e) = svc.recover_interrupted_runs() {
                tracing::warn!(error = %e, "could not check for interrupted runs");
            }
        }
        Ok(svc)
    }

    /// Opens a PostgreSQL store at `url` (ADR 0007); `data_dir` holds only
    /// this process's search projection. With `create`, the schema is
    /// created or migrated (`init`). A write waits at most `busy_timeout`
    /// for another process's writer lock.
    pub fn open_postgres(
        url: &str,
        data_dir: &Path,
        create: bool,
        busy_timeout: Duration,
    ) -> Result<Self> {
        let backend = kontextual_store::postgres::PostgresBackend::open(
            url,
            &kontextual_store::postgres::PgOptions {
                create,
                lock_timeout: busy_timeout,
                // this process's anchor for the audit chain (ADR 0007)
                head_dir: Some(data_dir.to_owned()),
                ..Default::default()
            },
        )?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        let mut svc = Services::with_store(Store::new(backend), Box::new(AccessPolicy));
        svc.data_dir = Some(data_dir.to_owned());
        if let Err(e) = svc.recover_interrupted_runs() {
            tracing::warn!(error = %e, "could not check for interrupted runs");
        }
        Ok(svc)
    }

    /// Services over an existing store with a given policy (tests, embedding).
    pub fn with_store(store: Store, policy: Box<dyn Policy>) -> Self {
        let mut job_handlers = JobRegistry::default();
        // Distinct names by construction: registering cannot fail here.
        for handler in knowledge_jobs::handlers()
            .into_iter()
            .chain([std::sync::Arc::new(NoopJob) as std::sync::Arc<dyn JobHandler<Services>>])
        {
            if let Err(e) = job_handlers.register(handler) {
                tracing::error!(error = %e, "job kind not registered");
            }
        }
        let mut feed_consumers = FeedConsumers::default();
        if let Err(e) =
            feed_consumers.register(std::sync::Arc::new(index_admin::SearchIndexFollower))
        {
            tracing::error!(error = %e, "feed consumer not registered");
        }
        Services {
            kernel: Kernel::new(store, policy),
            data_dir: None,
            projection: std::sync::Mutex::new(None),
            feed_consumers,
            job_handlers,
            background_refresh: Default::default(),
        }
    }

    /// Whether a data directory already holds a store.
    pub fn store_exists(data_dir: &Path) -> bool {
        data_dir.join(kontextual_store::sqlite::DB_FILE).exists()
    }

    // ---- collections ----

    pub fn collection_create(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
    ) -> Result<Collection> {
        let name = CollectionName::new(name)?;
        self.authorize(
            caller,
            Permission::Write,
            &Resource::Namespace(&format!("the namespace (to create collection {name})")),
        )?;
        self.write(
            caller,
            vec![Op::CreateCollection {
                name: name.clone(),
                description: description.to_owned(),
                if_absent: false,
            }],
        )?;
        self.collection_show(caller, name.as_str())
    }

    pub fn collection_show(&self, caller: &Caller, name: &str) -> Result<Collection> {
        let name = CollectionName::new(name)?;
        self.authorize(
            caller,
            Permission::Read,
            &Resource::Collection(name.as_str()),
        )?;
        let c = self
            .store()
            .knowledge()
            .collection(&caller.namespace, &name)?
            .ok_or_else(|| Error::NotFound(format!("collection {name}")))?;
        self.counted_for(caller, c)
    }

    /// A collection's artifact count as the caller may see it: what it may
    /// not read is not counted either (X2).
    fn counted_for(&self, caller: &Caller, mut c: Collection) -> Result<Collection> {
        let (max_classification, exclude_quarantined) =
            self.listing_visibility(caller, &Resource::Collection(c.name.as_str()));
        if max_classification.is_some() || exclude_quarantined {
            c.artifact_count = self.store().knowledge().count_artifacts(
                &caller.namespace,
                &kontextual_store::ArtifactQuery {
                    collection: Some(c.name.clone()),
                    max_classification,
                    exclude_quarantined,
                    ..Default::default()
                },
            )?;
        }
        Ok(c)
    }

    pub fn collection_list(&self, caller: &Caller, page: &PageRequest) -> Result<Page<Collection>> {
        // everyone sees the collections they may read, and no others
        let mut page = self
            .store()
            .knowledge()
            .collections(&caller.namespace, page)?;
        page.items.retain(|c| {
            self.can(
                caller,
                Permission::Read,
                &Resource::Collection(c.name.as_str()),
            )
        });
        page.items = std::mem::take(&mut page.items)
            .into_iter()
            .map(|c| self.counted_for(caller, c))
            .collect::<Result<_>>()?;
        Ok(page)
    }

    // ---- integrity ----

    pub fn verify(&self, caller: &Caller, expect: Option<ChainHead>) -> Result<CheckReport> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("store"))?;
        let mut report = self.store().check(expect)?;
        report.problems.extend(self.index_problems());
        Ok(report)
    }
}

/// The job queue's entry points, so surfaces need not import [`JobQueue`].
impl Services {
    pub fn job_enqueue(
        &self,
        caller: &Caller,
        kind: &str,
        payload: serde_json::Value,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        JobQueue::job_enqueue(self, caller, kind, payload, opts)
    }

    pub fn job_enqueue_many(
        &self,
        caller: &Caller,
        kind: &str,
        payloads: Vec<serde_json::Value>,
        opts: EnqueueOptions,
    ) -> Result<Vec<Enqueued>> {
        JobQueue::job_enqueue_many(self, caller, kind, payloads, opts)
    }

    pub fn job_kinds(&self) -> Vec<String> {
        JobQueue::job_kinds(self)
    }

    pub fn job_list(
        &self,
        caller: &Caller,
        state: Option<kontextual_model::JobState>,
        kind: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Job>> {
        JobQueue::job_list(self, caller, state, kind, page)
    }

    pub fn rerun(&self, caller: &Caller, run: kontextual_model::RunId) -> Result<Enqueued> {
        JobQueue::rerun(self, caller, run)
    }

    pub fn run_workers(
        &self,
        cfg: &WorkerConfig,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<WorkerSummary> {
        JobQueue::run_workers(self, cfg, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontextual_model::{Namespace, Outcome};

    struct ReadOnly;
    impl Policy for ReadOnly {
        fn allows(&self, _: &Caller, p: Permission, _: &Resource<'_>) -> bool {
            p == Permission::Read
        }
    }

    /// X2/X3: a denied write changes nothing and is itself audited.
    #[test]
    fn x3_denials_are_audited_and_change_nothing() {
        let store = Store::new(SqliteBackend::memory().unwrap());
        let admin = Services::with_store(store.clone(), Box::new(AllowAll));
        let caller = Caller::new("agent:ci".parse().unwrap(), Namespace::default());
        admin.collection_create(&caller, "handbook", "").unwrap();
        let limited = Services::with_store(store.clone(), Box::new(ReadOnly));
        let e = limited.collection_create(&caller, "other", "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Denied);
        assert!(
            e.to_string()
                .contains("agent:ci may not write the namespace (to create collection other)"),
            "{e}"
        );
        assert!(limited.collection_show(&caller, "other").is_err());
        let last = store.audit().records(0, 100).unwrap().pop().unwrap();
        assert_eq!(last.draft.outcome, Outcome::Denied);
        assert_eq!(last.draft.action, "policy.deny.write");
        assert_eq!(last.actor.to_string(), "agent:ci");
        assert_eq!(last.correlation_id, caller.correlation_id);
        assert_eq!(store.status().unwrap().collections, 1);
    }
}

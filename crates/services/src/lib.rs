//! Application services: the only door to the store for every surface (the
//! CLI and the HTTP server). Each operation resolves references, asks the policy,
//! stamps the write with the caller's actor, namespace and correlation id,
//! and hands it to the store, which audits it in the same transaction.
//!
//! Invariant: no surface holds a `Store`; they hold `Services`.
//! Boundary: this crate knows no CLI or HTTP types, and no database driver.

mod access;
mod artifacts;
mod context;
mod diff;
mod error;
mod error_codes;
mod export;
mod feed;
mod grants;
mod index_admin;
mod ingest;
mod job_registry;
mod jobs;
mod keys;
mod knowledge_jobs;
mod media;
mod policy;
mod projection;
mod recovery;
mod relations;
mod runs;
mod search;
mod sections;
mod telemetry;
mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kontextual_model::audit::ChainReport;
use kontextual_model::{
    Actor, AuditRecord, ChainHead, Collection, CollectionName, CorrelationId, Namespace,
};
use kontextual_store::sqlite::{OpenMode, OpenOptions, SqliteBackend};
use kontextual_store::{
    CheckReport, KnowledgeOp, Op, Page, PageRequest, Store, StoreStatus, WriteBatch, WriteContext,
};

pub use artifacts::{ContentSource, Diff, DiffContent, PutOutcome, PutRequest};

/// Store query and page types surfaces need to build requests.
pub mod store_types {
    pub use kontextual_store::{ArtifactQuery, Cursor, Page, PageRequest};
}
pub use context::{
    ContextRequest, ContextVerification, ContextView, Encoding, Item as ContextItem, Manifest,
    Reason, VerifyProblem,
};
pub use error::{Error, ErrorKind, Result};
pub use error_codes::ErrorCode;
pub use export::{
    CheckedPackage, ExportReport, ExportScope, ExportTarget, ImportReport, Progress, Silent,
    check_package,
};
pub use feed::{
    FeedConsumer, FeedConsumers, FeedPass, Finish as FeedFinish, acknowledge, catch_up,
};
pub use grants::GrantOn;
pub use index_admin::{IndexStatus, Unextractable};
pub use ingest::{
    FileFailure, IndexedReport, IngestProgress, IngestReport, IngestRequest, NoProgress,
};
pub use job_registry::{JobContext, JobFailure, JobHandler, JobRegistry, NoopJob, NoopPayload};
pub use jobs::{EnqueueOptions, Enqueued, JobView, MAX_ENQUEUE_BATCH};
pub use keys::{AUTH_CACHE_TTL, NewKey};
pub use kontextual_index::Snippet;
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
pub use policy::{AccessPolicy, AllowAll, Permission, Policy, Resource};
pub use projection::{CatchUp, FOLLOWER_WAIT};
pub use recovery::{ReindexReport, RepairReport};
pub use runs::this_process;
pub use search::{
    Freshness, MAX_EXPAND_DEPTH, MAX_SEARCH_LIMIT, Related, SearchFilters, SearchHit,
    SearchRequest, SearchResponse, artifact_ref,
};
pub use sections::{SectionEntry, SectionView};
pub use telemetry::MetricsSnapshot;
pub use worker::{WorkerConfig, WorkerSummary};

/// Who is calling: actor, namespace and the correlation id of this request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Actor,
    pub namespace: Namespace,
    pub correlation_id: CorrelationId,
    /// What the caller's API key allows; `None` for the local administrator
    /// (the CLI on its own data directory).
    pub scopes: Option<Vec<kontextual_model::Scope>>,
    /// The key the caller authenticated with, if any.
    pub key_id: Option<String>,
    /// The actor's grants, loaded when the key was checked.
    pub grants: Option<std::sync::Arc<Vec<kontextual_model::Grant>>>,
    /// The highest classification the caller may read; `None`: any.
    pub clearance: Option<kontextual_model::Classification>,
}

impl Caller {
    pub fn new(actor: Actor, namespace: Namespace) -> Self {
        Caller {
            actor,
            namespace,
            correlation_id: CorrelationId::new(),
            scopes: None,
            key_id: None,
            grants: None,
            clearance: None,
        }
    }

    pub(crate) fn write_ctx(&self) -> WriteContext {
        WriteContext {
            namespace: self.namespace.clone(),
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            run_id: None,
        }
    }
}

/// Where the store lives and how to open it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub busy_timeout: Duration,
}

/// The services over one open store.
pub struct Services {
    store: Store,
    policy: Box<dyn Policy>,
    /// Where the data directory is (the search index lives in it); `None`
    /// for stores without one (in memory).
    data_dir: Option<PathBuf>,
    /// Opened on first use: most commands never need the index.
    projection: std::sync::Mutex<Option<std::sync::Arc<projection::Projection>>>,
    /// API key uses not written yet (coalesced).
    touches: keys::TouchState,
    /// Reads not written to the access log yet.
    access: access::AccessState,
    /// Recently verified API keys.
    auth_cache: keys::AuthCacheState,
    /// What follows the change feed in this process (the search index).
    feed_consumers: FeedConsumers,
    /// Every job kind this process knows, and how to run it.
    job_handlers: JobRegistry,
    /// Wakes idle workers of this process when it enqueues a job.
    job_signal: std::sync::Arc<worker::JobSignal>,
    /// Whether a follower refreshes the index (a server): reads then never
    /// catch up themselves.
    background_refresh: std::sync::atomic::AtomicBool,
}

/// Result of `audit verify`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditVerification {
    #[serde(flatten)]
    pub report: ChainReport,
    /// Where the expected head came from (`given`, or the head file), if any.
    pub expected_head_source: Option<String>,
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
            .chain([std::sync::Arc::new(NoopJob) as std::sync::Arc<dyn JobHandler>])
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
            store,
            policy,
            data_dir: None,
            projection: std::sync::Mutex::new(None),
            touches: Default::default(),
            access: Default::default(),
            auth_cache: Default::default(),
            feed_consumers,
            job_handlers,
            job_signal: Default::default(),
            background_refresh: Default::default(),
        }
    }

    /// Whether a data directory already holds a store.
    pub fn store_exists(data_dir: &Path) -> bool {
        data_dir.join(kontextual_store::sqlite::DB_FILE).exists()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Writes one op and returns what `pick` finds in its changes.
    pub(crate) fn write_one<T>(
        &self,
        caller: &Caller,
        op: Op,
        pick: impl Fn(kontextual_model::Change) -> Option<T>,
    ) -> Result<T> {
        self.write(caller, vec![op])?
            .into_iter()
            .find_map(pick)
            .ok_or_else(|| Error::internal("the store reported no change of the expected kind"))
    }

    pub(crate) fn write(
        &self,
        caller: &Caller,
        ops: Vec<Op>,
    ) -> Result<Vec<kontextual_model::Change>> {
        Ok(self.store.write(WriteBatch {
            ctx: caller.write_ctx(),
            ops,
        })?)
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
            vec![Op::Knowledge(KnowledgeOp::CreateCollection {
                name: name.clone(),
                description: description.to_owned(),
                if_absent: false,
            })],
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
            .store
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
            c.artifact_count = self.store.knowledge().count_artifacts(
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
            .store
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

    // ---- audit and integrity ----

    /// Audit records after `after`, filtered; the chain is store-wide but a
    /// caller sees only its namespace.
    pub fn audit_list(
        &self,
        caller: &Caller,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("audit log"))?;
        let q = kontextual_store::AuditQuery {
            namespace: Some(caller.namespace.clone()),
            actor: filter.actor.clone(),
            action: filter.action.clone(),
            target: filter.target.clone(),
            since: filter.since,
            until: filter.until,
            correlation_id: filter.correlation_id.clone(),
        };
        Ok(self.store.audit().query(&q, after, limit)?)
    }

    pub fn audit_verify(
        &self,
        caller: &Caller,
        expect: Option<ChainHead>,
    ) -> Result<AuditVerification> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("audit log"))?;
        let (report, expected_head_source) = self.store.audit().verify(expect)?;
        Ok(AuditVerification {
            report,
            expected_head_source,
        })
    }

    pub fn verify(&self, caller: &Caller, expect: Option<ChainHead>) -> Result<CheckReport> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("store"))?;
        let mut report = self.store.check(expect)?;
        report.problems.extend(self.index_problems());
        Ok(report)
    }

    pub fn status(&self, caller: &Caller) -> Result<StoreStatus> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("store"))?;
        Ok(self.store.status()?)
    }
}

/// Filters for `audit list`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Matches the target id or the target name.
    pub target: Option<String>,
    /// Only records at or after this instant.
    pub since: Option<kontextual_model::Timestamp>,
    /// Only records before this instant.
    pub until: Option<kontextual_model::Timestamp>,
    /// Only records of one request (its correlation id).
    pub correlation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontextual_model::Outcome;

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

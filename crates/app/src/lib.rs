//! The composition root: opens the store from config (a data directory or
//! a PostgreSQL URL), builds the kernel and the knowledge domain on it,
//! registers every job handler and feed consumer, and hands the surfaces
//! (CLI, HTTP server) one facade, [`Services`].
//!
//! Invariant: no surface holds a `Store`; they hold `Services`.
//! Boundary: wiring only. Domain logic lives in the domains and the
//! kernel; this crate knows no CLI or HTTP types and no database driver.

mod background;
mod nats;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kontextual_knowledge::{Knowledge, KnowledgeHost, KnowledgeJobs};
use kontextual_store::sqlite::{OpenMode, OpenOptions, SqliteBackend};
use kontextual_store::{Page, PageRequest, Store};

/// Store query and page types surfaces need to build requests.
pub mod store_types {
    pub use kontextual_store::{ArtifactQuery, Cursor, Page, PageRequest};
}
pub use background::{Background, BackgroundConfig};
pub use kontextual_events::{
    CATALOG as EVENT_CATALOG, CloudEvent, Emission as EventEmission, EventType,
};
pub use kontextual_index::Snippet;
pub use kontextual_kernel::{
    AUTH_CACHE_TTL, AccessPolicy, AllowAll, AuditFilter, AuditVerification, Caller, DomainError,
    EnqueueOptions, Enqueued, Error, ErrorCode, ErrorKind, FeedConsumer, FeedConsumers, FeedFinish,
    FeedPass, GrantOn, JobContext, JobFailure, JobHandler, JobHost, JobQueue, JobRegistry, JobView,
    Kernel, MAX_ENQUEUE_BATCH, NewKey, NoopJob, NoopPayload, Permission, Policy, Resource, Result,
    WorkerConfig, WorkerSummary, acknowledge, catch_up, is_storage_full, store_unavailable,
    this_process,
};
pub use kontextual_kernel::{DEFAULT_EVENTS_PAGE, EVENTS_SCAN_BUDGET, EventQuery, MAX_EVENTS_PAGE};
pub use kontextual_knowledge::{
    CatchUp, CheckedPackage, ContentSource, ContextItem, ContextRequest, ContextVerification,
    ContextView, Diff, DiffContent, Encoding, ExportReport, ExportScope, ExportTarget,
    FOLLOWER_WAIT, FileFailure, Freshness, ImportReport, IndexStatus, IndexedReport,
    IngestProgress, IngestReport, IngestRequest, KnowledgeError, MAX_EXPAND_DEPTH,
    MAX_SEARCH_LIMIT, Manifest, MetricsSnapshot, NoProgress, Progress, PutOutcome, PutRequest,
    Reason, ReindexReport, Related, RepairReport, SearchFilters, SearchHit, SearchRequest,
    SearchResponse, SectionEntry, SectionView, Silent, Unextractable, VerifyProblem, artifact_ref,
    check_package,
};
pub use kontextual_model::{TypePattern, TypePatternError};
/// Publishing the event feed to NATS JetStream (`Services::publish_events_to_nats`).
pub use kontextual_nats::{NatsConfig, NatsPublisher, NatsStatus};
pub use kontextual_package::{
    Limits as UnpackLimits, Problem as PackageProblem, Verdict as PackageVerdict,
};
pub use kontextual_store::DeliveryQuery;
pub use kontextual_store::ImportConflict;
pub use kontextual_store::JobAction;
pub use kontextual_store::sqlite::OpenMode as StoreOpenMode;
pub use kontextual_store::{
    CheckReport as StoreCheck, Page as StorePage, PageRequest as StorePageRequest, Problem,
    ProblemCategory,
};
/// The webhooks domain's types (O5).
pub use kontextual_webhooks::{
    ALLOW_ENV as WEBHOOKS_ALLOW_ENV, AllowList as WebhookAllowList,
    MAX_IN_FLIGHT as MAX_WEBHOOK_IN_FLIGHT, NewWebhook, WebhookChange, WebhookDetail, Webhooks,
    WebhooksConfig, WithSecret as WebhookWithSecret,
};

/// Where the store lives and how to open it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub busy_timeout: Duration,
}

/// What the surfaces hold: the kernel, the knowledge domain, and the job
/// kinds and feed consumers registered for this process. Operations are
/// the domain's and the kernel's, reached through `Deref`
/// (`Services` → `Knowledge` → `Kernel`).
pub struct Services {
    knowledge: Knowledge,
    /// What follows the change feed in this process (the search index).
    feed_consumers: FeedConsumers<Services>,
    /// Every job kind this process knows, and how to run it.
    job_handlers: JobRegistry<Services>,
    /// The webhooks domain (O5).
    webhooks: kontextual_webhooks::Webhooks,
}

impl std::ops::Deref for Services {
    type Target = Knowledge;

    fn deref(&self) -> &Knowledge {
        &self.knowledge
    }
}

impl JobHost for Services {
    fn kernel(&self) -> &Kernel {
        self.knowledge.kernel()
    }

    fn job_handlers(&self) -> &JobRegistry<Services> {
        &self.job_handlers
    }
}

impl KnowledgeHost for Services {
    fn knowledge(&self) -> &Knowledge {
        &self.knowledge
    }
}

impl Services {
    /// Opens the store in `cfg.data_dir`. [`OpenMode::Create`] is `init`.
    pub fn open(cfg: &StoreConfig, mode: OpenMode) -> Result<Self> {
        let mut opts = OpenOptions::new(mode);
        opts.busy_timeout = cfg.busy_timeout;
        let backend = SqliteBackend::open_dir(&cfg.data_dir, &opts)?;
        let svc = Services::assemble(
            Store::new(backend),
            Box::new(AccessPolicy),
            Some(cfg.data_dir.clone()),
        );
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
        let svc = Services::assemble(
            Store::new(backend),
            Box::new(AccessPolicy),
            Some(data_dir.to_owned()),
        );
        if let Err(e) = svc.recover_interrupted_runs() {
            tracing::warn!(error = %e, "could not check for interrupted runs");
        }
        Ok(svc)
    }

    /// Services over an existing store with a given policy (tests, embedding).
    pub fn with_store(store: Store, policy: Box<dyn Policy>) -> Self {
        Services::assemble(store, policy, None)
    }

    /// Builds the kernel and the domain on `store` and registers every
    /// job kind and feed consumer this process runs.
    fn assemble(store: Store, policy: Box<dyn Policy>, data_dir: Option<PathBuf>) -> Self {
        let kernel = Arc::new(Kernel::new(store, policy));
        let mut job_handlers = JobRegistry::default();
        // Distinct names by construction: registering cannot fail here.
        for handler in kontextual_knowledge::job_handlers()
            .into_iter()
            .chain(kontextual_webhooks::job_handlers())
            .chain([Arc::new(NoopJob) as Arc<dyn JobHandler<Services>>])
        {
            if let Err(e) = job_handlers.register(handler) {
                tracing::error!(error = %e, "job kind not registered");
            }
        }
        let mut feed_consumers = FeedConsumers::default();
        for consumer in [
            Arc::new(kontextual_knowledge::SearchIndexFollower) as Arc<dyn FeedConsumer<Services>>,
            kontextual_webhooks::feed_consumer(),
        ] {
            if let Err(e) = feed_consumers.register(consumer) {
                tracing::error!(error = %e, "feed consumer not registered");
            }
        }
        Services {
            webhooks: kontextual_webhooks::Webhooks::new(kernel.clone(), Default::default()),
            knowledge: Knowledge::new(kernel, data_dir),
            feed_consumers,
            job_handlers,
        }
    }

    /// Whether a data directory already holds a store.
    pub fn store_exists(data_dir: &Path) -> bool {
        data_dir.join(kontextual_store::sqlite::DB_FILE).exists()
    }

    /// One step of every registered feed consumer (a server's follower
    /// calls this on a timer); failures are logged per consumer.
    pub fn follow_feeds(&self) {
        self.feed_consumers.follow_all(self);
    }

    /// `ingest --background`: checked now, run by a worker.
    pub fn ingest_background(&self, caller: &Caller, req: &IngestRequest) -> Result<Enqueued> {
        KnowledgeJobs::ingest_background(self, caller, req)
    }

    /// `export --background`: checked now, written by a worker.
    pub fn export_background(
        &self,
        caller: &Caller,
        scope: &ExportScope,
        out: &Path,
    ) -> Result<Enqueued> {
        KnowledgeJobs::export_background(self, caller, scope, out)
    }

    /// `reindex` as a job, deduplicated per collection.
    pub fn reindex_enqueue(&self, caller: &Caller, collection: Option<&str>) -> Result<Enqueued> {
        KnowledgeJobs::reindex_enqueue(self, caller, collection)
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

/// A page of the change feed as a caller sees it (O5).
#[derive(Clone, Debug)]
pub struct EventsPage {
    /// CloudEvents 1.0 envelopes, in seq order.
    pub events: Vec<CloudEvent>,
    /// Continue after this seq: the last seq the page examined, past
    /// events the caller may not see too.
    pub next_after: u64,
}

/// The event catalog and the change feed (O5), for every surface.
impl Services {
    /// Every event type (sorted by name). The catalog is public
    /// documentation: it needs no store.
    pub fn event_types() -> &'static [EventType] {
        kontextual_events::CATALOG
    }

    /// One event type by name.
    pub fn event_type(name: &str) -> Result<&'static EventType> {
        kontextual_events::find(name).ok_or_else(|| Error::NotFound(format!("event type {name}")))
    }

    /// The last event sequence number so far (a stream that asks for no
    /// cursor starts after it).
    pub fn events_head(&self) -> Result<u64> {
        Ok(self.store().feed().position()?.last_seq)
    }

    /// The event with sequence number `seq`, if `caller` may see it (the
    /// same read rule as [`Services::events`]); one it may not see, or one
    /// retention deleted, is not found. What a webhook's thin payload links
    /// to (`dataref`).
    pub fn event(&self, caller: &Caller, seq: u64) -> Result<CloudEvent> {
        let missing = || Error::NotFound(format!("event {seq}"));
        let feed = self.store().feed();
        let found = feed
            .events(seq.checked_sub(1).ok_or_else(missing)?, 1)?
            .into_iter()
            .next()
            .filter(|e| e.seq == seq)
            .filter(|e| {
                self.knowledge
                    .kernel()
                    .event_visible_to(caller, e, &self.knowledge)
            })
            .ok_or_else(missing)?;
        if caller.scopes.is_some() {
            self.record_access(caller, "read", format!("event {seq}"));
        }
        let base = kontextual_events::source_base(&feed.position()?.store_id);
        Ok(CloudEvent::of(&found, &base))
    }

    /// The events `caller` may see after `q.after` (types, collection,
    /// limit as asked), as CloudEvents. Only events about what the caller
    /// may read are returned (X2); the read is in the access log.
    /// A pattern that matches no type in the catalog is refused (a typo
    /// would otherwise read as "nothing happened").
    pub fn events(&self, caller: &Caller, q: &EventQuery) -> Result<EventsPage> {
        if let Some(c) = &q.collection {
            // a name no collection can have is a mistake, not "no events"
            kontextual_model::CollectionName::new(c)?;
        }
        if let Some(p) = q.types.iter().find(|p| !kontextual_events::matches_any(p)) {
            return Err(Error::InvalidInput(format!(
                "event type pattern {p:?} matches no event type; the catalog is GET /v1/event-types (`kontextual event-type list`)",
                p = p.to_string()
            )));
        }
        let page = self.knowledge.event_page(caller, q)?;
        if caller.scopes.is_some()
            && let (Some(first), Some(last)) = (page.events.first(), page.events.last())
        {
            self.record_access(
                caller,
                "read",
                format!("events {}..={}", first.seq, last.seq),
            );
        }
        let base = kontextual_events::source_base(&page.store_id);
        Ok(EventsPage {
            events: page
                .events
                .iter()
                .map(|e| CloudEvent::of(e, &base))
                .collect(),
            next_after: page.next_after,
        })
    }
}

//! The store handle: what every caller holds. Reads are grouped by domain
//! (`store.knowledge().artifact(..)`, `store.jobs().list(..)`, …) and each
//! is written once over the SQL layer; the engine underneath only lends a
//! connection ([`Engine::read`]), applies batches and does what is truly its
//! own (content streams, status sizes, integrity checks, job wake-ups).

use std::io::Read;
use std::sync::Arc;

use kontextual_model::audit::ChainReport;
use kontextual_model::{
    Artifact, ArtifactId, AuditRecord, ChainHead, Change, Collection, CollectionName, Digest,
    JobId, Namespace, OutboxEvent, Relation, RelationId, Revision, RunId,
};

use crate::access::Mark;
use crate::access::read as access;
use crate::engine::Engine;
use crate::port::{
    ArtifactKey, ArtifactQuery, AuditQuery, CheckReport, DeliveryQuery, FeedPosition, JobQuery,
    Page, PageRequest, RelationQuery, StoreStatus, WriteBatch,
};
use crate::sql::Tx;
use crate::{Result, StoreError};

/// A shared handle on an open store.
#[derive(Clone)]
pub struct Store(Arc<dyn Engine>);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store").field(&self.0.describe()).finish()
    }
}

impl From<crate::sqlite::SqliteBackend> for Store {
    fn from(engine: crate::sqlite::SqliteBackend) -> Self {
        Store(Arc::new(engine))
    }
}

impl From<crate::postgres::PostgresBackend> for Store {
    fn from(engine: crate::postgres::PostgresBackend) -> Self {
        Store(Arc::new(engine))
    }
}

impl Store {
    /// A handle on an opened engine (`SqliteBackend`, `PostgresBackend`).
    pub fn new(engine: impl Into<Store>) -> Self {
        engine.into()
    }

    /// Runs `f` on one of the engine's read connections.
    pub(crate) fn read<T>(&self, f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        read_on(&*self.0, f)
    }

    /// A short description (`sqlite:/path/kontextual.db`), for logs and status.
    pub fn describe(&self) -> String {
        self.0.describe()
    }

    /// Applies a batch atomically and returns what it did, in op order. Errors:
    /// `NotFound`, `AlreadyExists`, `Conflict`, `DanglingReference`,
    /// `InvalidInput`, `Locked`, `Io` (reading content), `Internal`.
    pub fn write(&self, batch: WriteBatch) -> Result<Vec<Change>> {
        self.0.write(batch)
    }

    /// Streams a blob. `NotFound` if no blob has this digest (never stored, or purged).
    pub fn open_content(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        self.0.open_content(digest)
    }

    pub fn status(&self) -> Result<StoreStatus> {
        self.0.status()
    }

    /// Full integrity check: engine integrity, every blob's digest, references,
    /// pending migrations and the audit chain (against `expect_head` if given,
    /// else against the last head recorded outside the database, if any).
    pub fn check(&self, expect_head: Option<ChainHead>) -> Result<CheckReport> {
        self.0.check(expect_head)
    }

    pub fn knowledge(&self) -> KnowledgeStore<'_> {
        KnowledgeStore(self)
    }

    pub fn audit(&self) -> AuditStore<'_> {
        AuditStore(self)
    }

    pub fn feed(&self) -> FeedStore<'_> {
        FeedStore(self)
    }

    pub fn access(&self) -> AccessStore<'_> {
        AccessStore(self)
    }

    pub fn runs(&self) -> RunStore<'_> {
        RunStore(self)
    }

    pub fn jobs(&self) -> JobStore<'_> {
        JobStore(self)
    }

    pub fn webhooks(&self) -> WebhookStore<'_> {
        WebhookStore(self)
    }
}

/// [`Engine::read`] for a closure with a result.
pub(crate) fn read_on<T>(
    engine: &dyn Engine,
    mut f: impl FnMut(&mut Tx<'_>) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    engine.read(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Internal("a read returned nothing".to_owned()))
}

/// Collections, artifacts, revisions, relations and context packages.
#[derive(Clone, Copy)]
pub struct KnowledgeStore<'s>(&'s Store);

impl KnowledgeStore<'_> {
    pub fn collection(&self, ns: &Namespace, name: &CollectionName) -> Result<Option<Collection>> {
        self.0
            .read(|tx| crate::knowledge::read::collection(tx, ns, name.as_str()))
    }

    pub fn collections(&self, ns: &Namespace, page: &PageRequest) -> Result<Page<Collection>> {
        self.0
            .read(|tx| crate::knowledge::read::collections(tx, ns, page))
    }

    pub fn artifact(&self, ns: &Namespace, key: &ArtifactKey) -> Result<Option<Artifact>> {
        self.0
            .read(|tx| crate::knowledge::read::artifact(tx, ns, key))
    }

    pub fn artifacts(
        &self,
        ns: &Namespace,
        q: &ArtifactQuery,
        page: &PageRequest,
    ) -> Result<Page<Artifact>> {
        self.0
            .read(|tx| crate::knowledge::read::artifacts(tx, ns, q, page))
    }

    pub fn count_artifacts(&self, ns: &Namespace, q: &ArtifactQuery) -> Result<u64> {
        self.0
            .read(|tx| crate::knowledge::read::count_artifacts(tx, ns, q))
    }

    pub fn revisions(
        &self,
        ns: &Namespace,
        id: ArtifactId,
        page: &PageRequest,
    ) -> Result<Page<Revision>> {
        self.0
            .read(|tx| crate::knowledge::read::revisions(tx, ns, id, page))
    }

    pub fn revision(
        &self,
        ns: &Namespace,
        id: ArtifactId,
        revision: u64,
    ) -> Result<Option<Revision>> {
        self.0
            .read(|tx| crate::knowledge::read::revision(tx, ns, id, revision))
    }

    pub fn relation(&self, ns: &Namespace, id: RelationId) -> Result<Option<Relation>> {
        self.0
            .read(|tx| crate::knowledge::read::relation(tx, ns, id))
    }

    pub fn relations(
        &self,
        ns: &Namespace,
        q: &RelationQuery,
        page: &PageRequest,
    ) -> Result<Page<Relation>> {
        self.0
            .read(|tx| crate::knowledge::read::relations(tx, ns, q, page))
    }

    pub fn context_package(
        &self,
        ns: &Namespace,
        name: &kontextual_model::PackageName,
        version: Option<u64>,
    ) -> Result<Option<kontextual_model::ContextPackage>> {
        self.0
            .read(|tx| crate::knowledge::read::context_package(tx, ns, name.as_str(), version))
    }

    pub fn context_packages(
        &self,
        ns: &Namespace,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::ContextPackage>> {
        self.0
            .read(|tx| crate::knowledge::read::context_packages(tx, ns, page))
    }

    pub fn namespaces(&self) -> Result<Vec<Namespace>> {
        self.0.read(crate::knowledge::read::namespaces)
    }
}

/// The audit chain: one chain for the whole store, all namespaces.
#[derive(Clone, Copy)]
pub struct AuditStore<'s>(&'s Store);

impl AuditStore<'_> {
    pub fn records(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.0.read(|tx| crate::audit::records(tx, after, limit))
    }

    pub fn head(&self) -> Result<Option<ChainHead>> {
        self.0.read(crate::audit::head)
    }

    pub fn query(&self, q: &AuditQuery, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.0.read(|tx| crate::audit::query(tx, q, after, limit))
    }
}

/// The change feed (the outbox) and its consumers' cursors.
#[derive(Clone, Copy)]
pub struct FeedStore<'s>(&'s Store);

impl FeedStore<'_> {
    pub fn events(&self, after: u64, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.0.read(|tx| crate::audit::events(tx, after, limit))
    }

    pub fn cursors(&self) -> Result<Vec<(String, u64)>> {
        self.0.read(crate::audit::cursors)
    }

    /// The highest event seq retention has deleted (0 when none was): a
    /// reader whose cursor is below it has missed events.
    pub fn pruned_through(&self) -> Result<u64> {
        self.0.read(crate::audit::pruned_through)
    }
}

/// Keys, grants, clearances, holds, quarantines and the access log.
#[derive(Clone, Copy)]
pub struct AccessStore<'s>(&'s Store);

impl AccessStore<'_> {
    pub fn key(&self, id: &str) -> Result<Option<kontextual_model::ApiKey>> {
        self.0.read(|tx| access::api_key(tx, id))
    }

    pub fn keys(
        &self,
        ns: &Namespace,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::ApiKey>> {
        self.0.read(|tx| access::api_keys(tx, ns, page))
    }

    pub fn has_keys(&self) -> Result<bool> {
        self.0.read(access::has_api_keys)
    }

    pub fn grants(
        &self,
        ns: &Namespace,
        actor: Option<&kontextual_model::Actor>,
    ) -> Result<Vec<kontextual_model::Grant>> {
        self.0.read(|tx| access::grants(tx, ns, actor))
    }

    pub fn clearances(
        &self,
        ns: &Namespace,
        actor: Option<&kontextual_model::Actor>,
    ) -> Result<Vec<kontextual_model::Clearance>> {
        self.0.read(|tx| access::clearances(tx, ns, actor))
    }

    pub fn holds(&self, ns: &Namespace) -> Result<Vec<kontextual_model::Hold>> {
        self.0.read(|tx| access::marks(tx, Mark::Hold, ns, None))
    }

    pub fn quarantines(
        &self,
        ns: &Namespace,
        artifact: Option<ArtifactId>,
    ) -> Result<Vec<kontextual_model::Hold>> {
        self.0
            .read(|tx| access::marks(tx, Mark::Quarantine, ns, artifact))
    }

    pub fn log(
        &self,
        ns: &Namespace,
        actor: Option<&kontextual_model::Actor>,
        since: Option<kontextual_model::Timestamp>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<kontextual_model::AccessEntry>> {
        self.0
            .read(|tx| access::access_log(tx, ns, actor, since, after, limit))
    }
}

/// Operation runs and their steps.
#[derive(Clone, Copy)]
pub struct RunStore<'s>(&'s Store);

impl RunStore<'_> {
    pub fn get(&self, ns: &Namespace, id: RunId) -> Result<Option<kontextual_model::Run>> {
        self.0.read(|tx| crate::runs::read::run(tx, ns, id))
    }

    pub fn summary(
        &self,
        ns: &Namespace,
        id: RunId,
    ) -> Result<Option<kontextual_model::RunSummary>> {
        self.0.read(|tx| crate::runs::read::run_summary(tx, ns, id))
    }

    pub fn list(
        &self,
        ns: &Namespace,
        status: Option<kontextual_model::RunStatus>,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Run>> {
        self.0
            .read(|tx| crate::runs::read::runs(tx, ns, status, page))
    }

    pub fn steps(&self, ns: &Namespace, id: RunId) -> Result<Vec<kontextual_model::RunStep>> {
        self.0.read(|tx| crate::runs::read::run_steps(tx, ns, id))
    }

    pub fn stats(&self) -> Result<Vec<(String, String, u64)>> {
        self.0.read(crate::runs::read::run_stats)
    }

    pub fn ingest_totals(&self) -> Result<(u64, u64)> {
        self.0.read(crate::runs::read::ingest_totals)
    }

    pub fn running(&self) -> Result<Vec<kontextual_model::Run>> {
        self.0.read(crate::runs::read::running_runs)
    }
}

/// The job queue: jobs, their attempts and statistics.
#[derive(Clone, Copy)]
pub struct JobStore<'s>(&'s Store);

impl JobStore<'_> {
    pub fn get(&self, ns: &Namespace, id: JobId) -> Result<Option<kontextual_model::Job>> {
        self.0.read(|tx| crate::jobs::read::job(tx, ns, id))
    }

    pub fn list(
        &self,
        ns: &Namespace,
        q: &JobQuery,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Job>> {
        self.0.read(|tx| crate::jobs::read::jobs(tx, ns, q, page))
    }

    pub fn attempts(&self, ns: &Namespace, id: JobId) -> Result<Vec<kontextual_model::JobAttempt>> {
        self.0.read(|tx| crate::jobs::read::attempts(tx, ns, id))
    }

    pub fn stats(&self) -> Result<kontextual_model::JobStats> {
        self.0.read(crate::jobs::read::stats)
    }
}

/// Webhooks (O5): subscriptions, their secrets, deliveries and attempts.
#[derive(Clone, Copy)]
pub struct WebhookStore<'s>(&'s Store);

impl WebhookStore<'_> {
    /// A webhook of the namespace, without its secrets.
    pub fn get(
        &self,
        ns: &Namespace,
        id: kontextual_model::WebhookId,
    ) -> Result<Option<kontextual_model::Webhook>> {
        self.0.read(|tx| crate::webhooks::read::webhook(tx, ns, id))
    }

    /// The namespace's webhooks, newest first.
    pub fn list(
        &self,
        ns: &Namespace,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Webhook>> {
        self.0
            .read(|tx| crate::webhooks::read::webhooks(tx, ns, page))
    }

    /// Every enabled webhook of every namespace (for the dispatcher).
    pub fn enabled(&self) -> Result<Vec<kontextual_model::Webhook>> {
        self.0.read(crate::webhooks::read::enabled)
    }

    /// A webhook's signing secrets (for the deliverer only).
    pub fn secrets(
        &self,
        ns: &Namespace,
        id: kontextual_model::WebhookId,
    ) -> Result<Option<kontextual_model::WebhookSecrets>> {
        self.0.read(|tx| crate::webhooks::read::secrets(tx, ns, id))
    }

    /// A webhook's deliveries, newest event first.
    pub fn deliveries(
        &self,
        ns: &Namespace,
        webhook: kontextual_model::WebhookId,
        q: &DeliveryQuery,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Delivery>> {
        self.0
            .read(|tx| crate::webhooks::read::deliveries(tx, ns, webhook, q, page))
    }

    /// A delivery with its body and attempts.
    pub fn delivery(
        &self,
        ns: &Namespace,
        id: kontextual_model::DeliveryId,
    ) -> Result<Option<kontextual_model::DeliveryDetail>> {
        self.0
            .read(|tx| crate::webhooks::read::delivery(tx, ns, id))
    }

    /// What the deliverer needs for one attempt, in one statement.
    pub fn to_send(
        &self,
        ns: &Namespace,
        id: kontextual_model::DeliveryId,
    ) -> Result<Option<crate::port::DeliveryToSend>> {
        self.0.read(|tx| crate::webhooks::read::to_send(tx, ns, id))
    }

    /// What the deliverer needs for a batch of attempts, in any namespace
    /// (scope each with [`crate::DeliveryToSend::scoped`]); unknown ids are
    /// left out.
    pub fn to_send_many(
        &self,
        ids: &[kontextual_model::DeliveryId],
    ) -> Result<Vec<crate::port::DeliveryToSend>> {
        self.0
            .read(|tx| crate::webhooks::read::to_send_many(tx, ids))
    }

    /// A webhook's deliveries counted by state.
    pub fn counts(
        &self,
        ns: &Namespace,
        webhook: kontextual_model::WebhookId,
    ) -> Result<kontextual_model::DeliveryCounts> {
        self.0
            .read(|tx| crate::webhooks::read::counts(tx, ns, webhook))
    }
}

impl FeedStore<'_> {
    /// The store's id and last outbox sequence number (cheap).
    pub fn position(&self) -> Result<FeedPosition> {
        self.0.read(|tx| {
            Ok(FeedPosition {
                store_id: crate::audit::store_id(tx)?,
                last_seq: crate::audit::last_event_seq(tx)?,
            })
        })
    }
}

impl AuditStore<'_> {
    /// Verifies the whole chain in constant memory, against `expect_head`
    /// if given, else the head recorded outside the database. Returns the
    /// report and where the expected head came from.
    pub fn verify(&self, expect_head: Option<ChainHead>) -> Result<(ChainReport, Option<String>)> {
        self.0.0.verify_audit(expect_head)
    }
}

impl JobStore<'_> {
    /// Calls `wake` whenever another process may have enqueued a job, until
    /// `stop` is set; `Ok(false)` when the engine cannot tell (workers then
    /// poll). PostgreSQL listens for the `NOTIFY` every enqueue sends.
    pub fn listen(
        &self,
        wake: Arc<dyn Fn() + Send + Sync>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<bool> {
        self.0.0.listen_for_jobs(wake, stop)
    }
}

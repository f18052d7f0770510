//! `PostgresBackend`: the store port on PostgreSQL (ADR 0007). Each write
//! batch is one transaction under the store's writer lock; reads use any
//! pooled connection.

use std::io::Read;
use std::sync::Arc;

use crate::{
    ArtifactKey, ArtifactQuery, AuditQuery, Backend, CheckReport, Content, FeedPosition, JobQuery,
    Op, Page, PageRequest, RelationQuery, Result, StoreStatus, WriteBatch,
};
use kontextual_model::audit::ChainReport;
use kontextual_model::{
    Artifact, ArtifactId, AuditRecord, ChainHead, Change, Collection, CollectionName, Digest,
    Namespace, OutboxEvent, Relation, RelationId, Revision, RunId,
};

use crate::access::Mark;
use crate::access::read as access;
use crate::postgres::conn::Conn;
use crate::postgres::{PgOptions, PgStore, Pool, pg_err, read};
use crate::sql::Tx;

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    store_id: String,
    description: String,
    head_file: Option<std::path::PathBuf>,
    /// Orders this process's head records (commits finish in any order).
    head_lock: std::sync::Mutex<()>,
}

/// The Kontextual store in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

impl PostgresBackend {
    /// Connects, checks (or with `opts.create`, creates) the schema.
    pub fn open(url: &str, opts: &PgOptions) -> Result<PostgresBackend> {
        let PgStore {
            pool,
            store_id,
            description,
        } = PgStore::open(url, opts)?;
        let head_file = opts
            .head_dir
            .as_ref()
            .map(|d| d.join(format!("audit.{store_id}.head")));
        Ok(PostgresBackend {
            inner: Arc::new(Inner {
                pool,
                store_id,
                description,
                head_file,
                head_lock: std::sync::Mutex::new(()),
            }),
        })
    }

    fn read<T>(&self, f: impl Fn(&mut Conn) -> Result<T>) -> Result<T> {
        self.inner.pool.read(f)
    }
}

/// Readers are drained before the transaction: the writer lock is never
/// held while waiting on a slow source.
fn stage(batch: WriteBatch) -> Result<WriteBatch> {
    let WriteBatch { ctx, ops } = batch;
    let ops = ops
        .into_iter()
        .map(|op| match op {
            Op::PutArtifact(mut put) => {
                put.content = match std::mem::replace(&mut put.content, Content::Keep) {
                    Content::Reader(r) => crate::blobs::stage(r, None)?,
                    other => other,
                };
                Ok(Op::PutArtifact(put))
            }
            other => Ok(other),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(WriteBatch { ctx, ops })
}

impl Backend for PostgresBackend {
    fn describe(&self) -> String {
        self.inner.description.clone()
    }

    fn write(&self, batch: WriteBatch) -> Result<Vec<Change>> {
        let batch = stage(batch)?;
        // wait for another process's writer lock at most this long
        let ms = self.inner.pool.lock_timeout().as_millis().max(1);
        let begin = format!("BEGIN; SET LOCAL lock_timeout = '{ms}ms'");
        let mut c = self.inner.pool.get()?;
        if let Err(e) = c.begin(&begin) {
            // nothing was written yet: a connection found gone is replaced
            if !c.lost() {
                return Err(pg_err(e));
            }
            drop(c);
            tracing::debug!(error = %e, "a pooled connection was gone; writing on a new one");
            self.inner.pool.discard_idle();
            c = self.inner.pool.get()?;
            c.begin(&begin).map_err(pg_err)?;
        }
        let anchor = self
            .inner
            .head_file
            .as_deref()
            .and_then(crate::head_copy::read);
        let applied = c
            .in_begun_transaction(|tx| crate::postgres::write::apply(tx, batch, anchor.as_ref()))
            .map_err(|e| match e {
                crate::StoreError::Locked { .. } => crate::StoreError::Locked {
                    waited_ms: ms as u64,
                },
                other => other,
            })?;
        drop(c);
        if let (Some(path), Some(head)) = (&self.inner.head_file, applied.head) {
            if applied.anchor_held {
                let _order = self
                    .inner
                    .head_lock
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                crate::head_copy::record(path, &head);
            } else if let Some(anchor) = &anchor {
                crate::head_copy::warn_not_held(path, anchor);
            }
        }
        Ok(applied.changes)
    }

    fn collection(&self, ns: &Namespace, name: &CollectionName) -> Result<Option<Collection>> {
        self.read(|c| crate::knowledge::read::collection(&mut Tx::Postgres(c), ns, name.as_str()))
    }

    fn collections(&self, ns: &Namespace, page: &PageRequest) -> Result<Page<Collection>> {
        self.read(|c| crate::knowledge::read::collections(&mut Tx::Postgres(c), ns, page))
    }

    fn artifact(&self, ns: &Namespace, key: &ArtifactKey) -> Result<Option<Artifact>> {
        self.read(|c| crate::knowledge::read::artifact(&mut Tx::Postgres(c), ns, key))
    }

    fn artifacts(
        &self,
        ns: &Namespace,
        q: &ArtifactQuery,
        page: &PageRequest,
    ) -> Result<Page<Artifact>> {
        self.read(|c| crate::knowledge::read::artifacts(&mut Tx::Postgres(c), ns, q, page))
    }

    fn count_artifacts(&self, ns: &Namespace, q: &ArtifactQuery) -> Result<u64> {
        self.read(|c| crate::knowledge::read::count_artifacts(&mut Tx::Postgres(c), ns, q))
    }

    fn revisions(
        &self,
        ns: &Namespace,
        id: ArtifactId,
        page: &PageRequest,
    ) -> Result<Page<Revision>> {
        self.read(|c| crate::knowledge::read::revisions(&mut Tx::Postgres(c), ns, id, page))
    }

    fn revision(&self, ns: &Namespace, id: ArtifactId, revision: u64) -> Result<Option<Revision>> {
        self.read(|c| crate::knowledge::read::revision(&mut Tx::Postgres(c), ns, id, revision))
    }

    fn open_content(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(crate::blobs::BlobReader::open(
            self.inner.clone(),
            digest,
        )?))
    }

    fn relation(&self, ns: &Namespace, id: RelationId) -> Result<Option<Relation>> {
        self.read(|c| crate::knowledge::read::relation(&mut Tx::Postgres(c), ns, id))
    }

    fn relations(
        &self,
        ns: &Namespace,
        q: &RelationQuery,
        page: &PageRequest,
    ) -> Result<Page<Relation>> {
        self.read(|c| crate::knowledge::read::relations(&mut Tx::Postgres(c), ns, q, page))
    }

    fn audit(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.read(|c| crate::audit::records(&mut Tx::Postgres(c), after, limit))
    }

    fn audit_head(&self) -> Result<Option<ChainHead>> {
        self.read(|c| crate::audit::head(&mut Tx::Postgres(c)))
    }

    fn audit_query(&self, q: &AuditQuery, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.read(|c| crate::audit::query(&mut Tx::Postgres(c), q, after, limit))
    }

    fn outbox(&self, after: u64, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.read(|c| crate::audit::events(&mut Tx::Postgres(c), after, limit))
    }

    fn outbox_cursors(&self) -> Result<Vec<(String, u64)>> {
        self.read(|c| crate::audit::cursors(&mut Tx::Postgres(c)))
    }

    fn status(&self) -> Result<StoreStatus> {
        self.read(|c| {
            let n = |c: &mut Conn, sql: &str| read::count(c, sql);
            Ok(StoreStatus {
                backend: "postgres".to_owned(),
                location: self.inner.description.clone(),
                store_id: self.inner.store_id.clone(),
                schema_version: crate::postgres::schema::latest_version(),
                latest_schema_version: crate::postgres::schema::latest_version(),
                pending_migrations: Vec::new(),
                collections: n(c, "SELECT count(*) FROM collections")?,
                artifacts_live: n(c, "SELECT count(*) FROM artifacts WHERE state = 'live'")?,
                artifacts_deleted: n(c, "SELECT count(*) FROM artifacts WHERE state = 'deleted'")?,
                artifacts_purged: n(c, "SELECT count(*) FROM artifacts WHERE state = 'purged'")?,
                revisions: n(c, "SELECT count(*) FROM revisions")?,
                relations_live: n(c, "SELECT count(*) FROM relations WHERE NOT deleted")?,
                blobs: n(c, "SELECT count(*) FROM blobs")?,
                blob_bytes: n(c, "SELECT sum(size)::bigint FROM blobs")?,
                audit_records: n(c, "SELECT count(*) FROM audit_log")?,
                audit_head: read::audit_head(c)?,
                outbox_events: n(c, "SELECT count(*) FROM outbox")?,
                outbox_last_seq: crate::postgres::feed_last_seq(c)?,
                size_bytes: n(c, "SELECT pg_database_size(current_database())")?,
            })
        })
    }

    fn feed_position(&self) -> Result<FeedPosition> {
        self.read(|c| {
            Ok(FeedPosition {
                store_id: self.inner.store_id.clone(),
                last_seq: crate::audit::last_event_seq(&mut Tx::Postgres(c))?,
            })
        })
    }

    fn namespaces(&self) -> Result<Vec<Namespace>> {
        self.read(|c| crate::knowledge::read::namespaces(&mut Tx::Postgres(c)))
    }

    fn context_package(
        &self,
        ns: &Namespace,
        name: &kontextual_model::PackageName,
        version: Option<u64>,
    ) -> Result<Option<kontextual_model::ContextPackage>> {
        self.read(|c| {
            crate::knowledge::read::context_package(
                &mut Tx::Postgres(c),
                ns,
                name.as_str(),
                version,
            )
        })
    }

    fn api_key(&self, id: &str) -> Result<Option<kontextual_model::ApiKey>> {
        self.read(|c| access::api_key(&mut Tx::Postgres(c), id))
    }

    fn api_keys(
        &self,
        ns: &Namespace,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::ApiKey>> {
        self.read(|c| access::api_keys(&mut Tx::Postgres(c), ns, page))
    }

    fn grants(
        &self,
        ns: &Namespace,
        actor: Option<&kontextual_model::Actor>,
    ) -> Result<Vec<kontextual_model::Grant>> {
        self.read(|c| access::grants(&mut Tx::Postgres(c), ns, actor))
    }

    fn access_log(
        &self,
        ns: &Namespace,
        actor: Option<&kontextual_model::Actor>,
        since: Option<kontextual_model::Timestamp>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<kontextual_model::AccessEntry>> {
        self.read(|c| access::access_log(&mut Tx::Postgres(c), ns, actor, since, after, limit))
    }

    fn clearances(
        &self,
        ns: &Namespace,
        actor: Option<&kontextual_model::Actor>,
    ) -> Result<Vec<kontextual_model::Clearance>> {
        self.read(|c| access::clearances(&mut Tx::Postgres(c), ns, actor))
    }

    fn holds(&self, ns: &Namespace) -> Result<Vec<kontextual_model::Hold>> {
        self.read(|c| access::marks(&mut Tx::Postgres(c), Mark::Hold, ns, None))
    }

    fn has_api_keys(&self) -> Result<bool> {
        self.read(|c| access::has_api_keys(&mut Tx::Postgres(c)))
    }

    fn context_packages(
        &self,
        ns: &Namespace,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::ContextPackage>> {
        self.read(|c| crate::knowledge::read::context_packages(&mut Tx::Postgres(c), ns, page))
    }

    fn run(&self, ns: &Namespace, id: RunId) -> Result<Option<kontextual_model::Run>> {
        self.read(|c| crate::runs::read::run(&mut Tx::Postgres(c), ns, id))
    }

    fn run_summary(
        &self,
        ns: &Namespace,
        id: RunId,
    ) -> Result<Option<kontextual_model::RunSummary>> {
        self.read(|c| crate::runs::read::run_summary(&mut Tx::Postgres(c), ns, id))
    }

    fn runs(
        &self,
        ns: &Namespace,
        status: Option<kontextual_model::RunStatus>,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Run>> {
        self.read(|c| crate::runs::read::runs(&mut Tx::Postgres(c), ns, status, page))
    }

    fn run_steps(&self, ns: &Namespace, id: RunId) -> Result<Vec<kontextual_model::RunStep>> {
        self.read(|c| crate::runs::read::run_steps(&mut Tx::Postgres(c), ns, id))
    }

    fn job(
        &self,
        ns: &Namespace,
        id: kontextual_model::JobId,
    ) -> Result<Option<kontextual_model::Job>> {
        self.read(|c| crate::jobs::read::job(&mut Tx::Postgres(c), ns, id))
    }

    fn jobs(
        &self,
        ns: &Namespace,
        q: &JobQuery,
        page: &PageRequest,
    ) -> Result<Page<kontextual_model::Job>> {
        self.read(|c| crate::jobs::read::jobs(&mut Tx::Postgres(c), ns, q, page))
    }

    fn job_attempts(
        &self,
        ns: &Namespace,
        id: kontextual_model::JobId,
    ) -> Result<Vec<kontextual_model::JobAttempt>> {
        self.read(|c| crate::jobs::read::attempts(&mut Tx::Postgres(c), ns, id))
    }

    fn run_stats(&self) -> Result<Vec<(String, String, u64)>> {
        self.read(|c| crate::runs::read::run_stats(&mut Tx::Postgres(c)))
    }

    fn ingest_totals(&self) -> Result<(u64, u64)> {
        self.read(|c| crate::runs::read::ingest_totals(&mut Tx::Postgres(c)))
    }

    fn job_stats(&self) -> Result<kontextual_model::JobStats> {
        self.read(|c| crate::jobs::read::stats(&mut Tx::Postgres(c)))
    }

    fn quarantines(
        &self,
        ns: &Namespace,
        artifact: Option<ArtifactId>,
    ) -> Result<Vec<kontextual_model::Hold>> {
        self.read(|c| access::marks(&mut Tx::Postgres(c), Mark::Quarantine, ns, artifact))
    }

    fn running_runs(&self) -> Result<Vec<kontextual_model::Run>> {
        self.read(|c| crate::runs::read::running_runs(&mut Tx::Postgres(c)))
    }

    fn verify_audit(
        &self,
        expect_head: Option<ChainHead>,
    ) -> Result<(ChainReport, Option<String>)> {
        let recorded = crate::head_copy::recorded(self.inner.head_file.as_deref());
        self.read(|c| {
            crate::postgres::check::in_snapshot(c, |tx| {
                crate::postgres::check::verify_chain(tx, expect_head.clone(), recorded.clone())
            })
        })
    }

    fn listen_for_jobs(
        &self,
        wake: Arc<dyn Fn() + Send + Sync>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<bool> {
        use std::sync::atomic::Ordering;
        let mut client = self.inner.pool.connect_dedicated()?;
        client
            .batch_execute("LISTEN kontextual_jobs")
            .map_err(pg_err)?;
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("kontextual-listen".into())
            .spawn(move || {
                let tick = std::time::Duration::from_millis(500);
                while !stop.load(Ordering::Relaxed) {
                    let mut broken = false;
                    {
                        use postgres::fallible_iterator::FallibleIterator;
                        let mut n = client.notifications();
                        let mut it = n.timeout_iter(tick);
                        loop {
                            match it.next() {
                                // wake at once, not after the quiet period
                                Ok(Some(_)) => wake(),
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!(error = %e, "job notifications interrupted; reconnecting");
                                    broken = true;
                                    break;
                                }
                            }
                        }
                    }
                    if broken {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        match inner.pool.connect_dedicated().and_then(|mut c| {
                            c.batch_execute("LISTEN kontextual_jobs").map_err(pg_err)?;
                            Ok(c)
                        }) {
                            Ok(c) => {
                                client = c;
                                // a notification may have been missed meanwhile
                                wake();
                            }
                            Err(e) => tracing::warn!(error = %e, "reconnecting the job listener failed"),
                        }
                    }
                }
            })
            .map_err(|e| crate::StoreError::io("starting the job listener", e))?;
        Ok(true)
    }

    fn check(&self, expect_head: Option<ChainHead>) -> Result<CheckReport> {
        let recorded = crate::head_copy::recorded(self.inner.head_file.as_deref());
        self.read(|c| {
            crate::postgres::check::in_snapshot(c, |tx| {
                crate::postgres::check::run(tx, expect_head.clone(), recorded.clone())
            })
        })
    }
}

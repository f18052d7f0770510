//! `PostgresBackend`: the store port on PostgreSQL (ADR 0007). Each write
//! batch is one transaction under the store's writer lock; reads use any
//! pooled connection.

use std::io::Read;
use std::sync::Arc;

use crate::{CheckReport, Content, KnowledgeOp, Op, Result, StoreStatus, WriteBatch};
use kontextual_model::audit::ChainReport;
use kontextual_model::{ChainHead, Change, Digest};

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

    fn read<T>(&self, f: impl FnMut(&mut Conn) -> Result<T>) -> Result<T> {
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
            Op::Knowledge(KnowledgeOp::PutArtifact(mut put)) => {
                put.content = match std::mem::replace(&mut put.content, Content::Keep) {
                    Content::Reader(r) => crate::blobs::stage(r, None)?,
                    other => other,
                };
                Ok(Op::Knowledge(KnowledgeOp::PutArtifact(put)))
            }
            other => Ok(other),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(WriteBatch { ctx, ops })
}

impl crate::engine::Engine for PostgresBackend {
    fn read(&self, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<()>) -> Result<()> {
        PostgresBackend::read(self, |c| f(&mut Tx::Postgres(c)))
    }

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

    fn open_content(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(crate::blobs::BlobReader::open(
            self.inner.clone(),
            digest,
        )?))
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

    fn verify_audit(
        &self,
        expect_head: Option<ChainHead>,
    ) -> Result<(ChainReport, Option<String>)> {
        let recorded = crate::head_copy::recorded(self.inner.head_file.as_deref());
        self.read(|c| {
            crate::postgres::check::in_snapshot(c, |tx| {
                crate::check::verify_chain(
                    &mut Tx::Postgres(tx),
                    expect_head.clone(),
                    recorded.clone(),
                )
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
                // While the database is down every retry fails the same
                // way: one line per 10 s says so, with the count held back.
                let mut last_warned: Option<std::time::Instant> = None;
                let mut suppressed = 0u64;
                let mut warn = |what: &str, e: &dyn std::fmt::Display| {
                    if last_warned.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10))
                    {
                        tracing::warn!(error = %e, suppressed, "{what}");
                        last_warned = Some(std::time::Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                };
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
                                    warn("job notifications interrupted; reconnecting", &e);
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
                            Err(e) => warn("reconnecting the job listener failed", &e),
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
                crate::check::run(
                    &mut Tx::Postgres(tx),
                    expect_head.clone(),
                    recorded.clone(),
                    Vec::new(),
                )
            })
        })
    }
}

//! The Kontextual store on PostgreSQL (ADR 0007; issue 8, in progress).
//!
//! Built so far: a bounded connection pool, the versioned schema (the same
//! tables and rules as the SQLite store, in PostgreSQL types) applied under
//! an advisory lock so concurrent `init`s from several hosts do not race,
//! and the store's identity. The `Backend` implementation, the writer lock
//! for the audit chain and outbox, job claiming with `SKIP LOCKED` and
//! LISTEN/NOTIFY come next; until then `--database-url` is refused.

mod access;
mod backend;
mod blobs;
mod check;
mod import;
mod jobs;
mod pool;
mod read;
mod rows;
pub mod schema;
mod tls;
mod write;

pub use backend::PostgresBackend;

use std::time::Duration;

use kontextual_store::{Result, StoreError};

pub use pool::{Pool, Pooled};

/// How to open a PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Create the schema (and identity) if the database is empty.
    pub create: bool,
    /// Connections kept by this process.
    pub pool_size: usize,
    /// How long a caller waits for a free connection.
    pub checkout_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            create: false,
            pool_size: 8,
            checkout_timeout: Duration::from_secs(30),
        }
    }
}

/// A connected, migrated PostgreSQL store.
pub struct PgStore {
    pub(crate) pool: Pool,
    pub(crate) store_id: String,
    pub(crate) description: String,
}

/// The seq of the last outbox event ever appended (0 before the first).
pub(crate) fn feed_last_seq(c: &mut impl postgres::GenericClient) -> Result<u64> {
    Ok(c.query_opt(
        "SELECT value FROM store_meta WHERE key = 'outbox_last'",
        &[],
    )
    .map_err(pg_err)?
    .and_then(|r| r.get::<_, String>(0).parse::<u64>().ok())
    .unwrap_or(0))
}

/// The URL without its password, for logs and status.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => "postgres:(unparsed url)".to_owned(),
    }
}

pub(crate) fn pg_err(e: postgres::Error) -> StoreError {
    use postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists {
            what: e
                .as_db_error()
                .and_then(|d| d.constraint())
                .unwrap_or("a unique key")
                .to_owned(),
        },
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::DanglingReference {
            what: e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default(),
        },
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::QUERY_CANCELED => {
            StoreError::Locked { waited_ms: 0 }
        }
        Some(c) if *c == SqlState::DISK_FULL => StoreError::io(
            "writing the store",
            std::io::Error::new(std::io::ErrorKind::StorageFull, "the disk is full"),
        ),
        Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
            StoreError::Corrupted(e.to_string())
        }
        _ if e.is_closed() || e.code().is_none() => StoreError::io(
            "talking to PostgreSQL",
            std::io::Error::other(e.to_string()),
        ),
        _ => StoreError::Internal(match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        }),
    }
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or key=value string), checks
    /// or creates the schema, and reads the store's identity.
    pub fn open(url: &str, opts: &PgOptions) -> Result<PgStore> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::InvalidInput(format!("database URL {}: {e}", redact(url))))?;
        let pool = Pool::new(config, opts.pool_size, opts.checkout_timeout)?;
        let mut conn = pool.get()?;
        if opts.create {
            schema::migrate(&mut conn, true)?;
        }
        let state = schema::inspect(&mut *conn)?;
        if state.current == 0 {
            return Err(StoreError::NotInitialized {
                path: redact(url).into(),
            });
        }
        if !state.pending.is_empty() {
            return Err(StoreError::MigrationsPending {
                current: state.current,
                latest: schema::latest_version(),
            });
        }
        let store_id: String = conn
            .query_opt("SELECT value FROM store_meta WHERE key = 'store_id'", &[])
            .map_err(pg_err)?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::NotAStore {
                path: redact(url).into(),
                reason: "it has no store id".to_owned(),
            })?;
        drop(conn);
        Ok(PgStore {
            pool,
            store_id,
            description: format!("postgres:{}", redact(url)),
        })
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_descriptions() {
        assert_eq!(
            redact("postgres://kx:s3cret@db.example:5432/kontextual"),
            "postgres://kx@db.example:5432/kontextual"
        );
        assert_eq!(redact("postgres://db/k"), "postgres://db/k");
        assert!(!redact("host=db password=s3cret").contains("s3cret"));
    }
}

//! The PostgreSQL engine (ADR 0007): a bounded connection pool with a
//! statement cache per connection, TLS, the writer advisory lock that keeps
//! one audit chain and commit-ordered outbox sequence numbers across
//! processes, LISTEN/NOTIFY for job wake-ups, and the engine's own checks.
//! Statements and decisions are the store's shared modules (ADR 0009).

mod backend;
mod blobs;
mod check;
mod conn;
pub use conn::Conn;
mod pool;
pub(crate) mod read;
mod rows;
pub mod schema;
mod tls;
mod write;

pub use backend::PostgresBackend;

use std::time::Duration;

use crate::{Result, StoreError};

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
    /// How long a write waits for another process's writer lock
    /// (`lock_timeout`); then it fails with `Locked`.
    pub lock_timeout: Duration,
    /// The directory where this process records the audit head after each
    /// of its writes that extend the chain (`head_copy`), in a file named
    /// after the store's id (`audit.<store id>.head`, so a data directory
    /// pointed at another database never compares against the wrong
    /// chain); verification expects the chain to still hold it. `None`:
    /// not recorded.
    pub head_dir: Option<std::path::PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            create: false,
            pool_size: 8,
            checkout_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            head_dir: None,
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
pub(crate) fn feed_last_seq(c: &mut conn::Conn) -> Result<u64> {
    crate::audit::last_event_seq(&mut crate::sql::Tx::Postgres(c))
}

/// The URL without its password (in the user part, a `password=`
/// parameter, or a key=value string), for logs, status and errors.
pub fn redact(url: &str) -> String {
    let strip_params = |s: &str, sep: char| -> String {
        s.split(sep)
            .map(|kv| {
                if kv
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("password=")
                {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(&sep.to_string())
    };
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (main, query) = match rest.split_once('?') {
                Some((m, q)) => (m, Some(strip_params(q, '&'))),
                None => (rest, None),
            };
            let main = match main.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{user}@{host}")
                }
                None => main.to_owned(),
            };
            match query {
                Some(q) => format!("{scheme}://{main}?{q}"),
                None => format!("{scheme}://{main}"),
            }
        }
        // keyword form: host=… dbname=… password=…
        None => strip_params(url, ' '),
    }
}

/// The error with its causes (the driver's top message alone is often
/// just "error connecting to server").
fn full_message(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
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
        // the database is gone, renamed, refusing us, or shutting down:
        // the store is unavailable (exit 5, HTTP 503), not an internal error
        Some(c)
            if *c == SqlState::INVALID_CATALOG_NAME
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS =>
        {
            StoreError::Unavailable {
                what: "the PostgreSQL database".into(),
                reason: e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            }
        }
        _ if e.is_closed() || e.code().is_none() => StoreError::Unavailable {
            what: "the PostgreSQL server".into(),
            reason: format!("cannot reach it: {}", full_message(&e)),
        },
        _ => StoreError::Internal(match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        }),
    }
}

/// Timeouts for a database on another host, where the URL sets none: a
/// connection attempt gives up after 10 s; a server that stops
/// acknowledging sent data (host gone, network cut) fails the statement
/// after 60 s, and an idle pooled or listening connection to it is found
/// dead within about a minute (TCP keepalives after 30 s idle, then every
/// 10 s, 3 probes), instead of the operating system's 15 minutes or 2
/// hours. The URL's own `connect_timeout`, `tcp_user_timeout` and
/// `keepalives*` parameters win.
pub fn network_defaults(config: &mut postgres::Config) {
    use std::time::Duration;
    if config.get_application_name().is_none() {
        config.application_name("kontextual");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(60));
    }
    // 2 hours is the driver's default: the URL did not say
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or key=value string), checks
    /// or creates the schema, and reads the store's identity.
    pub fn open(url: &str, opts: &PgOptions) -> Result<PgStore> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            let hint = if url.contains("verify-") {
                " (for a verified TLS connection use sslmode=require and set KONTEXTUAL_DATABASE_CA)"
            } else {
                ""
            };
            StoreError::InvalidInput(format!(
                "database URL {}: {}{hint}",
                redact(url),
                redact(&e.to_string())
            ))
        })?;
        network_defaults(&mut config);
        let pool = Pool::new(
            config,
            opts.pool_size,
            opts.checkout_timeout,
            opts.lock_timeout,
        )?;
        let mut conn = pool.get()?;
        if opts.create {
            schema::migrate(&mut conn, true)?;
        }
        let state = schema::inspect(&mut conn)?;
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
            description: redact(url),
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

    /// X7: a database on another host gets timeouts unless the URL sets
    /// its own.
    #[test]
    fn x7_network_timeouts_default_but_the_url_wins() {
        use std::time::Duration;
        let mut c: postgres::Config = "postgres://u@db/k".parse().unwrap();
        network_defaults(&mut c);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(60)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(10)));
        assert_eq!(c.get_keepalives_retries(), Some(3));
        assert_eq!(c.get_application_name(), Some("kontextual"));
        let mut c: postgres::Config = "postgres://u@db/k?connect_timeout=3&tcp_user_timeout=5&keepalives_idle=7&keepalives_interval=2&keepalives_retries=9&application_name=app"
            .parse()
            .unwrap();
        network_defaults(&mut c);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(7));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(2)));
        assert_eq!(c.get_keepalives_retries(), Some(9));
        assert_eq!(c.get_application_name(), Some("app"));
    }

    #[test]
    fn passwords_never_reach_descriptions() {
        assert_eq!(
            redact("postgres://kx:s3cret@db.example:5432/kontextual"),
            "postgres://kx@db.example:5432/kontextual"
        );
        assert_eq!(redact("postgres://db/k"), "postgres://db/k");
        assert!(!redact("host=db password=s3cret").contains("s3cret"));
        assert_eq!(
            redact("postgres://u@db/k?sslmode=require&password=s3cret"),
            "postgres://u@db/k?sslmode=require&password=***"
        );
    }
}

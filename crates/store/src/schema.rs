//! Versioned migrations: one runner for both engines.
//!
//! Each migration runs once, in order, recorded in `schema_migrations`
//! (version, name, SHA-256 of its SQL) in the same transaction as its DDL.
//! A store whose schema is newer than this binary, or whose applied
//! migration text differs from ours (a diverged schema), is refused.
//!
//! The engines keep their own lists only because their DDL differs (types,
//! `STRICT`, collations) and shipped migrations never change: SQLite's
//! history has thirteen steps, PostgreSQL's started later as one (and
//! then followed with webhooks as its second). A future
//! migration whose DDL is the same on both is one `const` listed in both.
//! The engine owns the transaction and its lock (SQLite: `BEGIN
//! IMMEDIATE`; PostgreSQL: an advisory lock), so concurrent `init`s from
//! several processes wait for each other instead of racing.

use sha2::{Digest as _, Sha256};

use crate::sql::{Dialect, Tx, args};
use crate::{Result, StoreError};

#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of the engine `tx` runs on.
pub(crate) fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => crate::sqlite::schema::MIGRATIONS,
        Dialect::Postgres => crate::postgres::schema::MIGRATIONS,
    }
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The schema as found in a store.
#[derive(Debug, Clone)]
pub struct SchemaState {
    pub current: u32,
    pub latest: u32,
    pub pending: Vec<&'static Migration>,
}

/// Reads the applied migrations and compares them with this binary's.
pub(crate) fn inspect(tx: &mut Tx<'_>) -> Result<SchemaState> {
    let list = migrations(tx.dialect());
    let latest = list.last().map_or(0, |m| m.version);
    let has_history = match tx.dialect() {
        Dialect::Sqlite => tx.query_opt(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
            &[],
            |_| Ok(()),
        )?,
        Dialect::Postgres => tx.query_opt(
            "SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
            &[],
            |_| Ok(()),
        )?,
    }
    .is_some();
    let applied: Vec<(u64, String, String)> = if has_history {
        tx.query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
    } else {
        Vec::new()
    };
    if let Some((v, _, _)) = applied.iter().find(|(v, _, _)| *v > u64::from(latest)) {
        let found = applied.last().map_or(*v, |a| a.0);
        return Err(StoreError::SchemaTooNew {
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: latest,
        });
    }
    for (version, name, sum) in &applied {
        match list.iter().find(|m| u64::from(m.version) == *version) {
            Some(m) if checksum(m.sql) == *sum => {}
            _ => {
                return Err(StoreError::Corrupted(format!(
                    "applied migration {version} ({name}) differs from this kontextual's migration {version}"
                )));
            }
        }
    }
    let current = applied.last().map_or(0, |a| a.0);
    if applied.len() as u64 != current {
        return Err(StoreError::Corrupted(
            "schema_migrations has gaps: a migration was skipped".to_owned(),
        ));
    }
    // at most `latest`, checked above
    let current = u32::try_from(current).unwrap_or(latest);
    let pending = list.iter().filter(|m| m.version > current).collect();
    Ok(SchemaState {
        current,
        latest,
        pending,
    })
}

/// Applies pending migrations up to `target` (all when `None`) inside the
/// engine's transaction; with `init`, a fresh store also gets its identity
/// (store id, creation time, format). Returns the versions applied (none
/// when another process got there first).
pub(crate) fn migrate(tx: &mut Tx<'_>, target: Option<u32>, init: bool) -> Result<Vec<u32>> {
    let history = match tx.dialect() {
        Dialect::Sqlite => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                checksum   TEXT NOT NULL,
                applied_at INTEGER NOT NULL
            ) STRICT"
        }
        Dialect::Postgres => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    BIGINT PRIMARY KEY,
                name       TEXT NOT NULL,
                checksum   TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )"
        }
    };
    tx.execute_batch(history)?;
    let state = inspect(tx)?;
    let mut done = Vec::new();
    for m in &state.pending {
        if target.is_some_and(|t| m.version > t) {
            break;
        }
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            args![m.version, m.name, checksum(m.sql), kontextual_model::now()],
        )?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    if init && state.current == 0 {
        let format = match tx.dialect() {
            Dialect::Sqlite => "kontextual-sqlite",
            Dialect::Postgres => "kontextual-postgres",
        };
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES ('store_id', ?1), ('created_at', ?2), \
             ('format', ?3) ON CONFLICT (key) DO NOTHING",
            args![
                uuid::Uuid::now_v7().to_string(),
                kontextual_model::now().to_string(),
                format
            ],
        )?;
    }
    Ok(done)
}

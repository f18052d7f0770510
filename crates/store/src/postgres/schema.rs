//! Versioned migrations for the PostgreSQL store.
//!
//! As in the SQLite store: each migration runs once, in order, recorded in
//! `schema_migrations` with the SHA-256 of its SQL; a store whose schema is
//! newer than this binary, or whose applied migration text differs, is
//! refused. All pending migrations apply in one transaction holding a
//! transaction-level advisory lock, so processes on several hosts running
//! `init` at once wait for each other instead of racing.

use postgres::Client;
use sha2::{Digest as _, Sha256};

use crate::{Result, StoreError};

use crate::postgres::pg_err;

#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "schema",
    sql: include_str!("migrations/0001_schema.sql"),
}];

/// `pg_advisory_xact_lock` key for schema changes ("KNTX" + 1).
const MIGRATION_LOCK: i64 = 0x4B4E_5458_0000_0001;

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The schema as found in a database.
#[derive(Debug, Clone)]
pub struct SchemaState {
    pub current: u32,
    pub pending: Vec<&'static Migration>,
}

const HISTORY_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Reads the applied migrations and compares them with this binary's.
pub fn inspect(conn: &mut impl postgres::GenericClient) -> Result<SchemaState> {
    let has_history = conn
        .query_opt(
            "SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
            &[],
        )
        .map_err(pg_err)?
        .is_some();
    let mut applied: Vec<(u32, String, String)> = Vec::new();
    if has_history {
        for r in conn
            .query(
                "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
                &[],
            )
            .map_err(pg_err)?
        {
            let v: i64 = r.get(0);
            applied.push((v as u32, r.get(1), r.get(2)));
        }
    }
    let latest = latest_version();
    if let Some((v, _, _)) = applied.iter().find(|(v, _, _)| *v > latest) {
        return Err(StoreError::SchemaTooNew {
            found: applied.last().map_or(*v, |a| a.0),
            supported: latest,
        });
    }
    for (version, name, sum) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            Some(m) if checksum(m.sql) == *sum => {}
            _ => {
                return Err(StoreError::Corrupted(format!(
                    "applied migration {version} ({name}) differs from this kontextual's migration {version}"
                )));
            }
        }
    }
    let current = applied.last().map_or(0, |a| a.0);
    if applied.len() as u32 != current {
        return Err(StoreError::Corrupted(
            "schema_migrations has gaps: a migration was skipped".to_owned(),
        ));
    }
    let pending = MIGRATIONS.iter().filter(|m| m.version > current).collect();
    Ok(SchemaState { current, pending })
}

/// Applies pending migrations in one transaction under the migration lock;
/// with `init`, a fresh database also gets its identity. Returns the
/// versions applied (none when another process got there first).
pub fn migrate(conn: &mut Client, init: bool) -> Result<Vec<u32>> {
    let mut tx = conn.transaction().map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg_err)?;
    tx.batch_execute(HISTORY_DDL).map_err(pg_err)?;
    let state = inspect(&mut tx)?;
    let mut done = Vec::new();
    for m in &state.pending {
        tx.batch_execute(m.sql).map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
            &[
                &(m.version as i64),
                &m.name,
                &checksum(m.sql),
                &kontextual_model::now().as_microsecond(),
            ],
        )
        .map_err(pg_err)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    if init && state.current == 0 {
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES ('store_id', $1), ('created_at', $2), \
             ('format', 'kontextual-postgres') ON CONFLICT (key) DO NOTHING",
            &[
                &uuid::Uuid::now_v7().to_string(),
                &kontextual_model::now().to_string(),
            ],
        )
        .map_err(pg_err)?;
    }
    tx.commit().map_err(pg_err)?;
    Ok(done)
}

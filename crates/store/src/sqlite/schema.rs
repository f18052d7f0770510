//! Versioned migrations for the SQLite backend.
//!
//! Each migration runs once, in order, in its own transaction together with
//! its row in `schema_migrations` (version, name, SHA-256 of its SQL). On open
//! we refuse a store whose schema is newer than this binary, and one whose
//! applied migration text differs from ours (a diverged schema).

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest as _, Sha256};

use crate::{Result, StoreError};

use super::sql_err;

/// `PRAGMA application_id` of a Kontextual SQLite store ("KNTX").
pub const APPLICATION_ID: i32 = 0x4B4E_5458;

#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "content",
        sql: include_str!("migrations/0001_content.sql"),
    },
    Migration {
        version: 2,
        name: "audit_outbox",
        sql: include_str!("migrations/0002_audit_outbox.sql"),
    },
    Migration {
        version: 3,
        name: "relations",
        sql: include_str!("migrations/0003_relations.sql"),
    },
    Migration {
        version: 4,
        name: "runs",
        sql: include_str!("migrations/0004_runs.sql"),
    },
    Migration {
        version: 5,
        name: "context_packages",
        sql: include_str!("migrations/0005_context_packages.sql"),
    },
    Migration {
        version: 6,
        name: "api_keys",
        sql: include_str!("migrations/0006_api_keys.sql"),
    },
    Migration {
        version: 7,
        name: "idempotency",
        sql: include_str!("migrations/0007_idempotency.sql"),
    },
    Migration {
        version: 8,
        name: "grants",
        sql: include_str!("migrations/0008_grants.sql"),
    },
    Migration {
        version: 9,
        name: "holds",
        sql: include_str!("migrations/0009_holds.sql"),
    },
    Migration {
        version: 10,
        name: "clearances",
        sql: include_str!("migrations/0010_clearances.sql"),
    },
    Migration {
        version: 11,
        name: "access_log",
        sql: include_str!("migrations/0011_access_log.sql"),
    },
    Migration {
        version: 12,
        name: "jobs",
        sql: include_str!("migrations/0012_jobs.sql"),
    },
];

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The schema as found in a store.
#[derive(Debug, Clone)]
pub struct SchemaState {
    pub current: u32,
    pub pending: Vec<&'static Migration>,
}

const HISTORY_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT";

/// Reads the applied migrations and compares them with this binary's.
pub fn inspect(conn: &Connection) -> Result<SchemaState> {
    let has_history: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |_| Ok(true),
        )
        .optional()
        .map_err(sql_err)?
        .unwrap_or(false);
    let mut applied: Vec<(u32, String, String)> = Vec::new();
    if has_history {
        let mut stmt = conn
            .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql_err)?;
        for row in rows {
            applied.push(row.map_err(sql_err)?);
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

/// Applies pending migrations up to `target` (all when `None`), all in one
/// `IMMEDIATE` transaction, so concurrent openers wait for each other and a
/// crash leaves either the old or the new schema. With `init`, a fresh store
/// also gets its identity (application id, store id) in the same transaction.
/// Returns the versions applied.
pub fn migrate(conn: &mut Connection, target: Option<u32>, init: bool) -> Result<Vec<u32>> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    tx.execute_batch(HISTORY_DDL).map_err(sql_err)?;
    let state = inspect(&tx)?;
    let mut done = Vec::new();
    for m in &state.pending {
        if target.is_some_and(|t| m.version > t) {
            break;
        }
        tx.execute_batch(m.sql).map_err(sql_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, checksum(m.sql), kontextual_model::now().as_microsecond()],
        )
        .map_err(sql_err)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    if init && state.current == 0 {
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
            .map_err(sql_err)?;
        tx.execute(
            "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('store_id', ?1), ('created_at', ?2), ('format', 'kontextual-sqlite')",
            params![uuid::Uuid::now_v7().to_string(), kontextual_model::now().to_string()],
        )
        .map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3_migrations_are_deterministic() {
        let dump = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn
                .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let mut a = Connection::open_in_memory().unwrap();
        let mut b = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut a, None, true).unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        migrate(&mut b, Some(1), true).unwrap();
        assert_eq!(inspect(&b).unwrap().pending.len(), 11);
        migrate(&mut b, None, false).unwrap();
        assert_eq!(dump(&a), dump(&b));
        assert!(migrate(&mut a, None, false).unwrap().is_empty());
    }

    #[test]
    fn k3_newer_schema_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, None, true).unwrap();
        c.execute(
            "INSERT INTO schema_migrations VALUES (99, 'future', 'x', 0)",
            [],
        )
        .unwrap();
        let e = inspect(&c).unwrap_err();
        assert!(
            matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
            "{e}"
        );
    }
}

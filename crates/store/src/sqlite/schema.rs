//! SQLite's migrations and its transaction around the shared runner
//! (`crate::schema`).

use rusqlite::Connection;

use crate::Result;
#[cfg(test)]
use crate::StoreError;
pub use crate::schema::{Migration, SchemaState};
use crate::sql::Tx;

use super::sql_err;

/// `PRAGMA application_id` of a Kontextual SQLite store ("KNTX").
pub const APPLICATION_ID: i32 = 0x4B4E_5458;

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
    Migration {
        version: 13,
        name: "webhooks",
        sql: include_str!("migrations/0013_webhooks.sql"),
    },
    Migration {
        version: 14,
        name: "pending job keys",
        sql: include_str!("migrations/0014_pending_job_keys.sql"),
    },
    Migration {
        version: 15,
        name: "delivery updates in place",
        sql: include_str!("migrations/0015_delivery_updates_in_place.sql"),
    },
    Migration {
        version: 16,
        name: "webhook creator scopes",
        sql: include_str!("migrations/0016_webhook_creator_scopes.sql"),
    },
    Migration {
        version: 17,
        name: "deliveries listed by event",
        sql: include_str!("migrations/0017_deliveries_listed_by_event.sql"),
    },
];

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Reads the applied migrations and compares them with this binary's.
pub fn inspect(conn: &Connection) -> Result<SchemaState> {
    crate::schema::inspect(&mut Tx::Sqlite(conn))
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
    let fresh = inspect(&tx)?.current == 0;
    let done = crate::schema::migrate(&mut Tx::Sqlite(&tx), target, init)?;
    if init && fresh {
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
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
            (1..=17).collect::<Vec<u32>>()
        );
        migrate(&mut b, Some(1), true).unwrap();
        assert_eq!(inspect(&b).unwrap().pending.len(), 16);
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

    /// O5: migration 15 moves each delivery's latest attempt into its row
    /// and keeps the earlier ones where they were.
    #[test]
    fn o5_migration_15_moves_the_latest_attempt_into_the_delivery() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, Some(14), true).unwrap();
        c.execute_batch(
            "INSERT INTO webhook_deliveries (id, webhook_id, namespace, event_seq, event_type, body, \
               state, attempts, last_status, created_at, updated_at) VALUES \
               (x'01', x'aa', 'default', 1, 'artifact.created', x'7b7d', 'succeeded', 2, 200, 1, 9), \
               (x'02', x'aa', 'default', 2, 'artifact.created', x'7b7d', 'pending', 0, NULL, 1, 1);
             INSERT INTO webhook_attempts VALUES \
               (x'01', 1, 5, 503, 10, 'busy', 'try later'), \
               (x'01', 2, 8, 200, 12, NULL, 'ok');",
        )
        .unwrap();
        migrate(&mut c, None, false).unwrap();
        let row = |sql: &str| -> (Option<i64>, Option<String>) {
            c.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        };
        assert_eq!(
            row("SELECT last_attempt_at, last_response FROM webhook_deliveries WHERE id = x'01'"),
            (Some(8), Some("ok".to_owned()))
        );
        assert_eq!(
            row("SELECT last_attempt_at, last_response FROM webhook_deliveries WHERE id = x'02'"),
            (None, None)
        );
        assert_eq!(
            row("SELECT attempt, response FROM webhook_attempts"),
            (Some(1), Some("try later".to_owned()))
        );
        let n: i64 = c
            .query_row("SELECT count(*) FROM webhook_attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}

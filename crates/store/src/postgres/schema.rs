//! PostgreSQL's migrations and its transaction around the shared runner
//! (`crate::schema`): all pending migrations apply in one transaction
//! holding a transaction-level advisory lock, so processes on several hosts
//! running `init` at once wait for each other instead of racing.

use crate::Result;
use crate::postgres::{Conn, pg_err};
pub use crate::schema::{Migration, SchemaState};
use crate::sql::Tx;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "webhooks",
        sql: include_str!("migrations/0002_webhooks.sql"),
    },
    Migration {
        version: 3,
        name: "generic plans",
        sql: include_str!("migrations/0003_generic_plans.sql"),
    },
    Migration {
        version: 4,
        name: "pending job keys",
        sql: include_str!("migrations/0004_pending_job_keys.sql"),
    },
    Migration {
        version: 5,
        name: "delivery updates in place",
        sql: include_str!("migrations/0005_delivery_updates_in_place.sql"),
    },
    Migration {
        version: 6,
        name: "webhook creator scopes",
        sql: include_str!("migrations/0006_webhook_creator_scopes.sql"),
    },
    Migration {
        version: 7,
        name: "deliveries listed by event",
        sql: include_str!("migrations/0007_deliveries_listed_by_event.sql"),
    },
];

/// `pg_advisory_xact_lock` key for schema changes ("KNTX" + 1).
const MIGRATION_LOCK: i64 = 0x4B4E_5458_0000_0001;

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Reads the applied migrations and compares them with this binary's.
pub fn inspect(conn: &mut Conn) -> Result<SchemaState> {
    crate::schema::inspect(&mut Tx::Postgres(conn))
}

/// Applies pending migrations in one transaction under the migration lock;
/// with `init`, a fresh database also gets its identity. Returns the
/// versions applied (none when another process got there first).
pub fn migrate(conn: &mut Conn, init: bool) -> Result<Vec<u32>> {
    conn.transaction("BEGIN", |c| {
        c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(pg_err)?;
        crate::schema::migrate(&mut Tx::Postgres(c), None, init)
    })
}

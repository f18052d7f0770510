//! Row mapping and queries. Listings use keyset cursors over their sort key.

use kontextual_model::ChainHead;
use rusqlite::Connection;

use super::sql_err;
use crate::Result;
use crate::sql::Tx;

pub(crate) fn count(conn: &Connection, sql: &str) -> Result<u64> {
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(sql_err)
}

// Shared reads, for the SQLite code of other domains that still takes a
// `&Connection` (they go once those domains move onto `crate::sql`).

pub(crate) fn audit_head(conn: &Connection) -> Result<Option<ChainHead>> {
    crate::audit::head(&mut Tx::Sqlite(conn))
}

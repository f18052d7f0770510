//! Reads: the same queries and orders as the SQLite store, keyset cursors
//! encoded the same way.

use crate::Result;
use crate::postgres::conn::Conn;
use kontextual_model::ChainHead;

use crate::postgres::pg_err;
use crate::postgres::rows;
use crate::sql::Tx;

pub(crate) fn count(c: &mut Conn, sql: &str) -> Result<u64> {
    let r = c.query_one(sql, &[]).map_err(pg_err)?;
    Ok(rows::get::<Option<i64>>(&r, 0)?.unwrap_or(0) as u64)
}

// Shared reads, for the PostgreSQL code of other domains that still takes
// a `&mut Conn` (they go once those domains move onto `crate::sql`).

pub(crate) fn audit_head(c: &mut Conn) -> Result<Option<ChainHead>> {
    crate::audit::head(&mut Tx::Postgres(c))
}

//! `verify` on PostgreSQL: one read-only snapshot (REPEATABLE READ), then
//! the store's checks, written once in `crate::check` (PostgreSQL keeps its
//! own pages and foreign keys; there is no engine-level check to add).

use crate::Result;
use crate::postgres::conn::Conn;

/// Runs `f` in a read-only snapshot.
pub(crate) fn in_snapshot<T>(c: &mut Conn, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
    c.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", f)
}

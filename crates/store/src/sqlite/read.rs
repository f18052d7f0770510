//! Row mapping and queries. Listings use keyset cursors over their sort key.

use std::str::FromStr;

use kontextual_model::{
    Artifact, ArtifactId, AuditRecord, ChainHead, Namespace, Relation, Revision,
};
use rusqlite::types::Type;
use rusqlite::{Connection, Row};

use super::sql_err;
use crate::Result;
use crate::port::{ArtifactKey, Page, PageRequest, RelationQuery};
use crate::sql::Tx;

pub(super) fn conv<E: std::error::Error + Send + Sync + 'static>(
    idx: usize,
    e: E,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

/// Reads a text column and parses it.
pub(super) fn parsed<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let s: String = r.get(idx)?;
    s.parse().map_err(|e| conv(idx, e))
}

pub(crate) fn count(conn: &Connection, sql: &str) -> Result<u64> {
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(sql_err)
}

// Shared reads, for the SQLite code of other domains that still takes a
// `&Connection` (they go once those domains move onto `crate::sql`).

pub(crate) fn load_artifact(
    conn: &Connection,
    ns: &Namespace,
    key: &ArtifactKey,
) -> Result<Option<Artifact>> {
    crate::knowledge::read::artifact(&mut Tx::Sqlite(conn), ns, key)
}

pub(crate) fn audit(conn: &Connection, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
    crate::audit::records(&mut Tx::Sqlite(conn), after, limit)
}

pub(crate) fn audit_head(conn: &Connection) -> Result<Option<ChainHead>> {
    crate::audit::head(&mut Tx::Sqlite(conn))
}

pub(crate) fn revision(
    conn: &Connection,
    ns: &Namespace,
    id: ArtifactId,
    rev: u64,
) -> Result<Option<Revision>> {
    crate::knowledge::read::revision(&mut Tx::Sqlite(conn), ns, id, rev)
}

pub(crate) fn relations(
    conn: &Connection,
    ns: &Namespace,
    q: &RelationQuery,
    req: &PageRequest,
) -> Result<Page<Relation>> {
    crate::knowledge::read::relations(&mut Tx::Sqlite(conn), ns, q, req)
}

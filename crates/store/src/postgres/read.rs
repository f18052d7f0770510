//! Reads: the same queries and orders as the SQLite store, keyset cursors
//! encoded the same way.

use crate::postgres::conn::Conn;
use crate::{ArtifactKey, Cursor, Page, PageRequest, RelationQuery, Result, StoreError};
use kontextual_model::{
    Artifact, ArtifactId, AuditRecord, ChainHead, Namespace, Relation, Revision,
};

use crate::postgres::pg_err;
use crate::postgres::rows;
use crate::sql::Tx;

fn bad_cursor() -> StoreError {
    StoreError::InvalidInput(
        "the page cursor is malformed or belongs to another listing".to_owned(),
    )
}

pub(crate) fn encode_pair(a: &str, b: &str) -> Cursor {
    Cursor(format!("{}:{}", hex::encode(a), hex::encode(b)))
}

pub(crate) fn decode_pair(c: &Cursor) -> Result<(String, String)> {
    let (a, b) = c.0.split_once(':').ok_or_else(bad_cursor)?;
    let dec = |s: &str| -> Result<String> {
        String::from_utf8(hex::decode(s).map_err(|_| bad_cursor())?).map_err(|_| bad_cursor())
    };
    Ok((dec(a)?, dec(b)?))
}

pub(crate) fn count(c: &mut Conn, sql: &str) -> Result<u64> {
    let r = c.query_one(sql, &[]).map_err(pg_err)?;
    Ok(rows::get::<Option<i64>>(&r, 0)?.unwrap_or(0) as u64)
}

// Shared reads, for the PostgreSQL code of other domains that still takes
// a `&mut Conn` (they go once those domains move onto `crate::sql`).

pub(crate) fn artifact(
    c: &mut Conn,
    ns: &Namespace,
    key: &ArtifactKey,
) -> Result<Option<Artifact>> {
    crate::knowledge::read::artifact(&mut Tx::Postgres(c), ns, key)
}

pub(crate) fn audit(c: &mut Conn, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
    crate::audit::records(&mut Tx::Postgres(c), after, limit)
}

pub(crate) fn audit_head(c: &mut Conn) -> Result<Option<ChainHead>> {
    crate::audit::head(&mut Tx::Postgres(c))
}

pub(crate) fn revision(
    c: &mut Conn,
    ns: &Namespace,
    id: ArtifactId,
    rev: u64,
) -> Result<Option<Revision>> {
    crate::knowledge::read::revision(&mut Tx::Postgres(c), ns, id, rev)
}

pub(crate) fn relations(
    c: &mut Conn,
    ns: &Namespace,
    q: &RelationQuery,
    req: &PageRequest,
) -> Result<Page<Relation>> {
    crate::knowledge::read::relations(&mut Tx::Postgres(c), ns, q, req)
}

//! The SQL layer: every statement is written once, for both engines.
//!
//! Statements use numbered placeholders (`?1`, `?2`, …). SQLite reads them
//! as they are; the PostgreSQL engine rewrites them to `$1`, `$2`, … once,
//! when it first prepares the statement (`postgres::Conn` keeps prepared
//! statements keyed by the text written here). Only the genuinely
//! dialect-specific statements have two spellings, side by side, chosen by
//! [`Tx::dialect`].
//!
//! [`Tx`] is the connection a store function runs on — inside the engine's
//! transaction for writes (the engine owns transactions and locks), or a
//! plain read connection. Arguments are [`Value`]s (see the [`args!`]
//! macro) and results come back through [`Row`] with typed getters, so a
//! store function never names a driver type. Why a small bridge of our own
//! rather than sqlx, Diesel or sea-query: ADR 0009.

// Parts of the layer are used only as modules move onto it.
#![allow(dead_code)]

use std::borrow::Cow;

use kontextual_model::Timestamp;
use uuid::Uuid;

use crate::postgres::Conn;
use crate::{Result, StoreError};

/// Which SQL a statement must be spelt in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// One statement argument. Integers are 64-bit (`INTEGER` in SQLite,
/// `BIGINT` in PostgreSQL); instants are microseconds since the epoch;
/// ids are UUIDs (a 16-byte blob in SQLite, `uuid` in PostgreSQL).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    I64(i64),
    Bool(bool),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Uuid(Uuid),
    /// PostgreSQL only (SQLite has no arrays): see [`Array`].
    Array(Array<'a>),
}

/// A column of many rows' values, bound as one PostgreSQL array parameter
/// (`unnest(CAST(?1 AS uuid[]), …)`): a batch of rows in one round trip,
/// each value sent in binary as it is — no text to escape on our side and
/// to parse on the server's, which a JSON array of rows costs (bodies of
/// 1 KiB: about half the statement's time, measured). Each variant's SQL
/// type is the one to cast to: `uuid[]`, `bigint[]`, `text[]`, `bytea[]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Array<'a> {
    Uuid(Vec<Uuid>),
    I64(Vec<Option<i64>>),
    Text(Vec<Option<&'a str>>),
    Bytes(Vec<&'a [u8]>),
}

impl<'a> From<Array<'a>> for Value<'a> {
    fn from(v: Array<'a>) -> Self {
        Value::Array(v)
    }
}

/// The arguments of a statement, converted to [`Value`]s:
/// `args![a.id.0, name.as_str(), now]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::sql::Value::from($v)),*][..]
    };
}
pub(crate) use args;

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}

/// Counts, sizes and revisions are `u64` in the model and `BIGINT` at rest;
/// a value past `i64::MAX` (never produced by the store) saturates.
impl From<u64> for Value<'_> {
    fn from(v: u64) -> Self {
        Value::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::I64(i64::from(v))
    }
}

impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::I64(i64::from(v))
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<Uuid> for Value<'_> {
    fn from(v: Uuid) -> Self {
        Value::Uuid(v)
    }
}

impl From<Timestamp> for Value<'_> {
    fn from(v: Timestamp) -> Self {
        Value::I64(v.as_microsecond())
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Value::Bytes(Cow::Borrowed(v))
    }
}

impl From<Vec<u8>> for Value<'_> {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Cow::Owned(v))
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<'a, T: Clone + Into<Value<'a>>> From<&Option<T>> for Value<'a> {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Value::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Array(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite takes no array parameters (PostgreSQL only)".into(),
                ));
            }
            Value::Null => ValueRef::Null,
            Value::I64(v) => ValueRef::Integer(*v),
            Value::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
            Value::Uuid(v) => ValueRef::Blob(v.as_bytes()),
        }))
    }
}

impl postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        match self {
            Value::Null => Ok(IsNull::Yes),
            // an `INTEGER` parameter (PostgreSQL infers int4 where a
            // statement compares with a literal) still takes our i64
            Value::I64(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql_checked(ty, out),
            Value::I64(v) => v.to_sql_checked(ty, out),
            Value::Bool(v) => v.to_sql_checked(ty, out),
            Value::Text(v) => v.as_ref().to_sql_checked(ty, out),
            Value::Bytes(v) => v.as_ref().to_sql_checked(ty, out),
            Value::Uuid(v) => v.to_sql_checked(ty, out),
            Value::Array(Array::Uuid(v)) => v.to_sql_checked(ty, out),
            Value::Array(Array::I64(v)) => v.to_sql_checked(ty, out),
            Value::Array(Array::Text(v)) => v.to_sql_checked(ty, out),
            Value::Array(Array::Bytes(v)) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        // checked per variant in `to_sql`, against the parameter's real type
        true
    }

    postgres::types::to_sql_checked!();
}

/// One result row, whichever engine produced it — or the columns of one
/// from an offset on (see [`Row::offset`]).
pub(crate) struct Row<'r> {
    engine: EngineRow<'r>,
    base: usize,
}

#[derive(Clone, Copy)]
enum EngineRow<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl<'r> Row<'r> {
    fn sqlite(r: &'r rusqlite::Row<'r>) -> Row<'r> {
        Row {
            engine: EngineRow::Sqlite(r),
            base: 0,
        }
    }

    fn postgres(r: &'r postgres::Row) -> Row<'r> {
        Row {
            engine: EngineRow::Postgres(r),
            base: 0,
        }
    }

    /// The same row seen from column `n` on, so one row reader can parse
    /// columns a join selected after another reader's.
    pub(crate) fn offset(&self, n: usize) -> Row<'r> {
        Row {
            engine: self.engine,
            base: self.base + n,
        }
    }

    /// Column `idx` (0-based) as `T`; a value of the wrong type or out of
    /// range is corruption, named with its column.
    pub(crate) fn get<T: Column>(&self, idx: usize) -> Result<T> {
        match self.engine {
            EngineRow::Sqlite(r) => T::from_sqlite(r, self.base + idx),
            EngineRow::Postgres(r) => T::from_postgres(r, self.base + idx),
        }
    }
}

impl Row<'_> {
    /// A text column parsed into a model value (a name, an actor, a level,
    /// a state); text that does not parse is corruption, named with its
    /// column.
    pub(crate) fn parsed<T>(&self, idx: usize) -> Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.get::<String>(idx)?
            .parse()
            .map_err(|e| unreadable(idx, e))
    }

    /// A nullable text column parsed into a model type.
    pub(crate) fn parsed_opt<T>(&self, idx: usize) -> Result<Option<T>>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.get::<Option<String>>(idx)?
            .map(|s| s.parse().map_err(|e| unreadable(idx, e)))
            .transpose()
    }

    /// A JSON text column.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, idx: usize) -> Result<T> {
        serde_json::from_str(&self.get::<String>(idx)?).map_err(|e| unreadable(idx, e))
    }

    /// A nullable JSON text column.
    pub(crate) fn json_opt<T: serde::de::DeserializeOwned>(&self, idx: usize) -> Result<Option<T>> {
        self.get::<Option<String>>(idx)?
            .map(|s| serde_json::from_str(&s).map_err(|e| unreadable(idx, e)))
            .transpose()
    }
}

/// A type a column can be read as, on either engine.
pub(crate) trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self>;
    fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self>;
}

fn unreadable(idx: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted(format!("unreadable value in column {idx}: {e}"))
}

/// Types both drivers read natively.
macro_rules! native_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self> {
                row.get(idx).map_err(|e| unreadable(idx, e))
            }
            fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self> {
                row.try_get(idx).map_err(|e| unreadable(idx, e))
            }
        }
    )*};
}
native_column!(
    i64,
    Option<i64>,
    bool,
    Option<bool>,
    String,
    Option<String>,
    Vec<u8>,
    Option<Vec<u8>>,
    Uuid,
    Option<Uuid>
);

impl Column for u64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self> {
        let v = i64::from_sqlite(row, idx)?;
        u64::try_from(v).map_err(|e| unreadable(idx, e))
    }
    fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self> {
        let v = i64::from_postgres(row, idx)?;
        u64::try_from(v).map_err(|e| unreadable(idx, e))
    }
}

impl Column for Option<u64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self> {
        Option::<i64>::from_sqlite(row, idx)?
            .map(|v| u64::try_from(v).map_err(|e| unreadable(idx, e)))
            .transpose()
    }
    fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self> {
        Option::<i64>::from_postgres(row, idx)?
            .map(|v| u64::try_from(v).map_err(|e| unreadable(idx, e)))
            .transpose()
    }
}

/// Attempts and similar small counters are `u32` in the model.
impl Column for u32 {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self> {
        let v = i64::from_sqlite(row, idx)?;
        u32::try_from(v).map_err(|e| unreadable(idx, e))
    }
    fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self> {
        let v = i64::from_postgres(row, idx)?;
        u32::try_from(v).map_err(|e| unreadable(idx, e))
    }
}

impl Column for Timestamp {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self> {
        let us = i64::from_sqlite(row, idx)?;
        Timestamp::from_microsecond(us).map_err(|e| unreadable(idx, e))
    }
    fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self> {
        let us = i64::from_postgres(row, idx)?;
        Timestamp::from_microsecond(us).map_err(|e| unreadable(idx, e))
    }
}

impl Column for Option<Timestamp> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> Result<Self> {
        Option::<i64>::from_sqlite(row, idx)?
            .map(|us| Timestamp::from_microsecond(us).map_err(|e| unreadable(idx, e)))
            .transpose()
    }
    fn from_postgres(row: &postgres::Row, idx: usize) -> Result<Self> {
        Option::<i64>::from_postgres(row, idx)?
            .map(|us| Timestamp::from_microsecond(us).map_err(|e| unreadable(idx, e)))
            .transpose()
    }
}

/// The connection a store function runs on: the engine's open transaction
/// for writes, a read connection (or snapshot) for reads.
pub(crate) enum Tx<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c mut Conn),
}

impl Tx<'_> {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, args: &[Value<'_>]) -> Result<u64> {
        match self {
            Tx::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(crate::sqlite::sql_err)?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(args.iter()))
                    .map_err(crate::sqlite::sql_err)?;
                Ok(n as u64)
            }
            Tx::Postgres(c) => c
                .execute(sql, &pg_args(args))
                .map_err(crate::postgres::pg_err),
        }
    }

    /// Runs statements without arguments, as one script (DDL).
    pub(crate) fn execute_batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Tx::Sqlite(c) => c.execute_batch(sql).map_err(crate::sqlite::sql_err),
            Tx::Postgres(c) => c.batch_execute(sql).map_err(crate::postgres::pg_err),
        }
    }

    /// Calls `f` for every row, in order; stops at its first error.
    pub(crate) fn for_each(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Tx::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(crate::sqlite::sql_err)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(args.iter()))
                    .map_err(crate::sqlite::sql_err)?;
                while let Some(r) = rows.next().map_err(crate::sqlite::sql_err)? {
                    f(&Row::sqlite(r))?;
                }
                Ok(())
            }
            Tx::Postgres(c) => {
                let rows = c
                    .query(sql, &pg_args(args))
                    .map_err(crate::postgres::pg_err)?;
                for r in &rows {
                    f(&Row::postgres(r))?;
                }
                Ok(())
            }
        }
    }

    /// Every row, mapped by `f`.
    pub(crate) fn query<T>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, args, |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any, mapped by `f`.
    pub(crate) fn query_opt<T>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut out = None;
        self.for_each(sql, args, |r| {
            if out.is_none() {
                out = Some(f(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a statement that may fail on a constraint (the caller decides
    /// what that means), leaving the transaction usable either way: the
    /// outer error is the connection's, the inner one the statement's.
    /// PostgreSQL aborts a whole transaction on a failed statement, so there
    /// the statement runs in a savepoint; SQLite backs out just the
    /// statement.
    pub(crate) fn try_execute(&mut self, sql: &str, args: &[Value<'_>]) -> Result<Result<u64>> {
        match self {
            Tx::Sqlite(_) => Ok(self.execute(sql, args)),
            Tx::Postgres(c) => Ok(c
                .execute_in_savepoint(sql, &pg_args(args))?
                .map_err(crate::postgres::pg_err)),
        }
    }

    /// One page of a keyset listing: `sql` must fetch up to `limit + 1`
    /// rows, the extra one only telling that more follow.
    pub(crate) fn page<T>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
        limit: u32,
        f: impl FnMut(&Row<'_>) -> Result<T>,
        cursor_of: impl Fn(&T) -> crate::port::Cursor,
    ) -> Result<crate::port::Page<T>> {
        let mut items = self.query(sql, args, f)?;
        let limit = limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Ok(crate::port::Page { items, next })
    }

    /// Exactly one row (an aggregate, a `RETURNING`), mapped by `f`.
    pub(crate) fn query_one<T>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, args, f)?
            .ok_or_else(|| StoreError::Internal(format!("no row from: {sql}")))
    }
}

fn pg_args<'v>(args: &'v [Value<'_>]) -> Vec<&'v (dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N`, leaving quoted text
/// alone. Runs once per statement per connection (the result is prepared
/// and kept).
pub(crate) fn to_postgres(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            (None, c) => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x7_placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert!(matches!(to_postgres("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn x7_values_round_trip_through_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let mut tx = Tx::Sqlite(&c);
        tx.execute(
            "CREATE TABLE t (i INTEGER, b INTEGER, s TEXT, x BLOB, u BLOB, n TEXT)",
            &[],
        )
        .unwrap();
        let id = Uuid::now_v7();
        let none: Option<&str> = None;
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![u64::MAX - 1, true, "s", &b"x"[..], id, none],
        )
        .unwrap();
        let got = tx
            .query_one("SELECT i, b, s, x, u, n FROM t", &[], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<bool>(1)?,
                    r.get::<String>(2)?,
                    r.get::<Vec<u8>>(3)?,
                    r.get::<Uuid>(4)?,
                    r.get::<Option<String>>(5)?,
                ))
            })
            .unwrap();
        assert_eq!(got, (i64::MAX, true, "s".into(), b"x".to_vec(), id, None));
        // a negative count is corruption, not a wrapped number
        let err = tx
            .query_one("SELECT -1", &[], |r| r.get::<u64>(0))
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupted(_)), "{err:?}");
    }

    #[test]
    fn x7_sqlite_refuses_array_parameters_by_name() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let mut tx = Tx::Sqlite(&c);
        let err = tx
            .query_one("SELECT ?1", args![Array::Uuid(vec![Uuid::nil()])], |r| {
                r.get::<i64>(0)
            })
            .unwrap_err();
        assert!(err.to_string().contains("array parameters"), "{err}");
    }
}

//! Rows to model values. A value the schema cannot hold (an unparsable
//! name, a bad digest) means the database was edited behind our back:
//! `Corrupted`, naming the column.

use std::str::FromStr;

use crate::{Result, StoreError};
use kontextual_model::{Digest, RunId, Timestamp};
use postgres::Row;
use postgres::types::FromSql;
use uuid::Uuid;

fn bad(col: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted(format!("unreadable value in column {col}: {e}"))
}

pub(crate) fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(|e| bad(i, e))
}

pub(crate) fn parsed<T>(r: &Row, i: usize) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s: &str = get(r, i)?;
    s.parse().map_err(|e| bad(i, e))
}

pub(crate) fn u64c(r: &Row, i: usize) -> Result<u64> {
    Ok(get::<i64>(r, i)? as u64)
}

pub(crate) fn ts(r: &Row, i: usize) -> Result<Timestamp> {
    Timestamp::from_microsecond(get(r, i)?).map_err(|e| bad(i, e))
}

pub(crate) fn opt_ts(r: &Row, i: usize) -> Result<Option<Timestamp>> {
    get::<Option<i64>>(r, i)?
        .map(|v| Timestamp::from_microsecond(v).map_err(|e| bad(i, e)))
        .transpose()
}

pub(crate) fn digest(r: &Row, i: usize) -> Result<Digest> {
    Digest::from_hex(get(r, i)?).map_err(|e| bad(i, e))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    serde_json::from_str(get(r, i)?).map_err(|e| bad(i, e))
}

pub(crate) fn opt_run(r: &Row, i: usize) -> Result<Option<RunId>> {
    Ok(get::<Option<Uuid>>(r, i)?.map(RunId))
}

pub(crate) const RUN_COLS: &str =
    "id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id";

pub(crate) fn run(r: &Row) -> Result<kontextual_model::Run> {
    let manifest: Option<&str> = get(r, 6)?;
    Ok(kontextual_model::Run {
        id: RunId(get(r, 0)?),
        namespace: parsed(r, 1)?,
        kind: get(r, 2)?,
        status: parsed(r, 3)?,
        actor: parsed(r, 4)?,
        input: json(r, 5)?,
        manifest: manifest
            .map(|m| serde_json::from_str(m).map_err(|e| bad(6, e)))
            .transpose()?,
        owner: get(r, 7)?,
        started_at: ts(r, 8)?,
        finished_at: opt_ts(r, 9)?,
        job_id: get::<Option<Uuid>>(r, 10)?.map(kontextual_model::JobId),
    })
}

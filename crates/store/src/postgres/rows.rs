//! Rows to model values. A value the schema cannot hold (an unparsable
//! name, a bad digest) means the database was edited behind our back:
//! `Corrupted`, naming the column.

use crate::{Result, StoreError};
use postgres::Row;
use postgres::types::FromSql;

fn bad(col: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted(format!("unreadable value in column {col}: {e}"))
}

pub(crate) fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(|e| bad(i, e))
}

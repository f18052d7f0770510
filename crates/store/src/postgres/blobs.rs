//! Blobs are stored and read by `crate::blobs`; a PostgreSQL store lends
//! its pooled connections to a blob being streamed.

use std::sync::Arc;

use crate::Result;
use crate::blobs::ReadConnections;
use crate::postgres::backend::Inner;
use crate::sql::Tx;

impl ReadConnections for Arc<Inner> {
    fn read_on<T>(&self, f: impl Fn(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.pool.read(|c| f(&mut Tx::Postgres(c)))
    }
}

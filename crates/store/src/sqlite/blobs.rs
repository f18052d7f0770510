//! Blobs are stored and read by `crate::blobs`; a SQLite store lends its
//! reader connections to a blob being streamed.

use super::SqliteBackend;
use crate::Result;
use crate::blobs::ReadConnections;
use crate::sql::Tx;

impl ReadConnections for SqliteBackend {
    fn read_on<T>(&self, f: impl Fn(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.read(|c| f(&mut Tx::Sqlite(c)))
    }
}

//! The seam between the store and a database engine — crate-private and
//! small. An engine owns connections, transactions and locks; everything
//! else (statements, decisions, row mapping) is written once in the store's
//! domain modules and runs on whichever engine lends the connection.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kontextual_model::audit::ChainReport;
use kontextual_model::{ChainHead, Change, Digest};

use crate::Result;
use crate::port::{CheckReport, StoreStatus, WriteBatch};
use crate::sql::Tx;

pub(crate) trait Engine: Send + Sync {
    /// A short description (`sqlite:/path/kontextual.db`), for logs and status.
    fn describe(&self) -> String;

    /// Applies a batch atomically: begins the transaction, takes the lock
    /// audited writes need, calls [`crate::apply::apply`] and commits.
    fn write(&self, batch: WriteBatch) -> Result<Vec<Change>>;

    /// Runs `f` on a read connection. It may run `f` a second time on a
    /// fresh connection when the first one turned out to be gone.
    fn read(&self, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<()>) -> Result<()>;

    /// Streams a blob (`NotFound` if no blob has this digest).
    fn open_content(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;

    /// Counts, sizes and schema state.
    fn status(&self) -> Result<StoreStatus>;

    /// Engine integrity plus the store's own checks, in one snapshot.
    fn check(&self, expect_head: Option<ChainHead>) -> Result<CheckReport>;

    /// The audit chain, verified in one snapshot.
    fn verify_audit(&self, expect_head: Option<ChainHead>)
    -> Result<(ChainReport, Option<String>)>;

    /// Calls `wake` when another process may have enqueued a job; `Ok(false)`
    /// when the engine cannot tell (workers then poll).
    fn listen_for_jobs(
        &self,
        wake: Arc<dyn Fn() + Send + Sync>,
        stop: Arc<AtomicBool>,
    ) -> Result<bool> {
        let _ = (wake, stop);
        Ok(false)
    }
}

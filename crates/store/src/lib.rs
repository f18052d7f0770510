//! The store: Kontextual's system of record, behind one port.
//!
//! [`Backend`] is the contract every storage engine implements (SQLite now,
//! PostgreSQL next); [`Store`] is the handle everyone else holds. The
//! contract is synchronous: callers on an async runtime use
//! `spawn_blocking` (see `docs/adr/0001-storage.md`).
//!
//! Invariant: every mutation goes through [`Backend::write`], which appends
//! one audit record and one outbox event per change in the same transaction
//! as the change itself. There is no other way to mutate a store.

mod access;
mod apply;
mod audit;
mod blobs;
mod error;
pub mod head_copy;
mod import;
pub mod integrity;
mod jobs;
mod knowledge;
mod port;
pub mod postgres;
pub mod rules;
mod runs;
pub mod schema;
mod sql;
#[cfg(test)]
mod sql_statements;
pub mod sqlite;

#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::ops::Deref;
use std::sync::Arc;

pub use error::{ErrorKind, StoreError};
pub use port::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A shared handle on an open store.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    pub fn new(backend: impl Backend + 'static) -> Self {
        Store(Arc::new(backend))
    }
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store").field(&self.0.describe()).finish()
    }
}

//! The store: Kontextual's system of record.
//!
//! [`Store`] is the handle everyone holds: writes go through
//! [`Store::write`], reads are grouped by domain (`store.knowledge()`,
//! `store.jobs()`, …). Every statement and decision is written once, in the
//! domain modules, over the SQL layer (`sql.rs`, ADR 0009); the two engines
//! (`sqlite`, `postgres`) implement the small crate-private `Engine` seam:
//! connections, transactions, locks. The API is synchronous: callers on an
//! async runtime use `spawn_blocking` (ADR 0001).
//!
//! Invariant: every mutation goes through [`Store::write`], which appends
//! one audit record and one outbox event per change in the same transaction
//! as the change itself. There is no other way to mutate a store.

mod access;
mod apply;
mod audit;
mod blobs;
mod check;
mod engine;
mod error;
mod handle;
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
mod webhooks;

#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use error::{ErrorKind, StoreError};
pub use handle::{
    AccessStore, AuditStore, FeedStore, JobStore, KnowledgeStore, RunStore, Store, WebhookStore,
};
pub use port::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

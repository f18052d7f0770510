//! Route handlers, grouped by resource.

pub mod artifacts;
pub mod events;
pub mod export;
pub mod jobs;
pub mod keys;
pub mod ops;
pub mod retrieval;
pub mod webhooks;

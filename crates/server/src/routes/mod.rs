//! Route handlers, grouped by resource.

pub mod artifacts;
pub mod keys;
pub mod ops;
pub mod retrieval;

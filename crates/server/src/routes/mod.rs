//! Route handlers, grouped by resource.

pub mod artifacts;
pub mod ops;
pub mod retrieval;

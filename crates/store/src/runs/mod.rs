//! Operation runs' storage (K6): a run, its steps and its final manifest —
//! written once, for both engines.

pub(crate) mod read;
pub(crate) mod write;

//! The knowledge domain's storage: collections, artifacts, revisions,
//! relations and context packages — written once, for both engines.

pub(crate) mod read;
pub(crate) mod rows;
pub(crate) mod write;

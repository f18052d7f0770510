//! Kontextual's events (O5): the typed catalog of every event type (name,
//! version, description, and the JSON Schema of its `data`, generated from
//! the Rust types in [`data`]), the CloudEvents 1.0 envelope
//! ([`CloudEvent`]) and the check that an emitted event matches its type
//! ([`check`]).
//!
//! Invariant: `Change::event` (kontextual-model) emits only kinds in
//! [`CATALOG`], with data that passes [`check`]; tests hold both.
//! Boundary: domain-neutral and pure — no IO, no store, no surface.

pub mod catalog;
pub mod check;
pub mod data;
pub mod envelope;

pub use catalog::{CATALOG, COMING_WITH_MEMORY, Emission, EventType, find, matches_any};
pub use check::{CheckError, check};
pub use envelope::{CloudEvent, source_base};

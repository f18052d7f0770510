//! The access domain's storage: API keys, grants, clearances, legal holds
//! and quarantines, idempotency reservations and the read access log —
//! written once, for both engines.

pub(crate) mod read;
pub(crate) mod write;

use kontextual_model::Artifact;

/// Marks an artifact can carry: a legal hold or a quarantine. Each is a row
/// per marked artifact in a table of its own with the same columns (the
/// history is in the audit chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    Hold,
    Quarantine,
}

impl Mark {
    /// `a legal hold on h/a.md`, `a quarantine of h/a.md`.
    pub(crate) fn describe(self, a: &Artifact) -> String {
        match self {
            Mark::Hold => format!("a legal hold on {}/{}", a.collection, a.name),
            Mark::Quarantine => format!("a quarantine of {}/{}", a.collection, a.name),
        }
    }
}

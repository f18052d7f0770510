//! Context packages (K7): named, versioned bundles handed to an agent. The
//! store keeps each version's manifest and its digest; what a manifest says
//! is the services' business (see `kontextual-knowledge` `context`).

use serde::{Deserialize, Serialize};

use crate::{Actor, CorrelationId, Digest, Namespace, PackageName, Timestamp};

/// One stored version of a context package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextPackage {
    pub id: uuid::Uuid,
    pub namespace: Namespace,
    pub name: PackageName,
    /// Starts at 1; a build whose manifest differs from the latest adds one.
    pub version: u64,
    /// SHA-256 of the manifest's canonical JSON (RFC 8785).
    pub digest: Digest,
    pub manifest: serde_json::Value,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    pub created_at: Timestamp,
}

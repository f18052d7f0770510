//! Grants (X2): what an actor may do, on a whole namespace or one collection.
//! Callers with an API key are denied everything no grant allows (and their
//! key's scopes bound it further); the local administrator needs none.

use serde::{Deserialize, Serialize};

use crate::{Actor, CollectionName, Namespace, Timestamp};

crate::artifact::word_enum!(
    /// A granted permission; `admin` includes `write`, which includes `read`.
    GrantPermission { Read = "read", Write = "write", Admin = "admin", Export = "export" } default Read
);

/// Where a grant applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum GrantScope {
    Namespace,
    Collection(CollectionName),
    /// One artifact, by collection and name.
    Artifact(CollectionName, crate::ArtifactName),
}

impl std::fmt::Display for GrantScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantScope::Namespace => f.write_str("namespace"),
            GrantScope::Collection(c) => write!(f, "collection {c}"),
            GrantScope::Artifact(c, n) => {
                write!(f, "artifact {c}/{}", crate::names::escape_name(n.as_str()))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: uuid::Uuid,
    pub namespace: Namespace,
    pub actor: Actor,
    pub permission: GrantPermission,
    pub scope: GrantScope,
    pub created_at: Timestamp,
}

impl GrantPermission {
    /// Whether holding `self` allows `wanted`.
    pub fn covers(self, wanted: GrantPermission) -> bool {
        use GrantPermission::*;
        matches!(
            (self, wanted),
            (Admin, Read | Write | Admin) | (Write, Read | Write) | (Read, Read) | (Export, Export)
        )
    }
}

/// The highest classification an actor may read. Actors with an API key
/// and no clearance are cleared for `internal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearance {
    pub namespace: Namespace,
    pub actor: Actor,
    pub level: crate::Classification,
    pub set_at: Timestamp,
}

/// One read, as the access log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(default)]
    pub seq: u64,
    pub at: Timestamp,
    pub namespace: Namespace,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `read` or `search`.
    pub action: String,
    /// What was read (an artifact, a collection) or searched for.
    pub target: String,
    pub correlation_id: String,
}

/// A legal hold on an artifact: while it is set, the artifact cannot be
/// deleted or purged (and, later, not expired).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub artifact_id: crate::ArtifactId,
    pub namespace: Namespace,
    pub collection: CollectionName,
    pub name: crate::ArtifactName,
    pub reason: String,
    pub actor: Actor,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2_permissions_nest() {
        use GrantPermission::*;
        assert!(Admin.covers(Read) && Admin.covers(Write) && Write.covers(Read));
        assert!(!Read.covers(Write) && !Write.covers(Admin) && !Admin.covers(Export));
        assert!(Export.covers(Export));
    }
}

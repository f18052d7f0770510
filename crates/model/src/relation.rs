//! Collections and typed relationships between artifacts.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::ids::{ArtifactId, CollectionId, RelationId};
use crate::metadata::Metadata;
use crate::names::{CollectionName, Namespace, RelationType};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub id: CollectionId,
    pub namespace: Namespace,
    pub name: CollectionName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub created_at: Timestamp,
    /// Live (not deleted) artifacts in the collection.
    pub artifact_count: u64,
}

/// A typed, directed edge `source --type--> target`. Both endpoints must be
/// live artifacts of the same namespace when the edge is written. Deleting an
/// endpoint tombstones the edge (recorded as its own change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub id: RelationId,
    pub namespace: Namespace,
    #[serde(rename = "type")]
    pub rel_type: RelationType,
    pub source: ArtifactId,
    pub target: ArtifactId,
    pub properties: Metadata,
    pub revision: u64,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

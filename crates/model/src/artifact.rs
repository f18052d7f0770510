//! Artifacts and their revisions.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::actor::Actor;
use crate::change::ChangeKind;
use crate::digest::Digest;
use crate::error::ModelError;
use crate::ids::{ArtifactId, CollectionId, CorrelationId, RunId};
use crate::metadata::Metadata;
use crate::names::{ArtifactName, CollectionName, Namespace};

macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? } default $default:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl Default for $name {
            fn default() -> Self { $name::$default }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $name {
            type Err = $crate::error::ModelError;
            fn from_str(s: &str) -> Result<Self, $crate::error::ModelError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::error::ModelError::invalid(
                        stringify!($name),
                        s,
                        format!("expected one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }
    };
}
pub(crate) use word_enum;

word_enum!(
    /// Where an artifact is in its editorial life. Independent of deletion.
    Lifecycle { Draft = "draft", Active = "active", Deprecated = "deprecated", Archived = "archived" } default Active
);
word_enum!(
    /// Sensitivity level; readers need a clearance at least this high (policy issue).
    Classification { Public = "public", Internal = "internal", Confidential = "confidential", Restricted = "restricted" } default Internal
);
word_enum!(
    /// Whether an artifact exists, is tombstoned, or had its content erased.
    ArtifactState { Live = "live", Deleted = "deleted", Purged = "purged" } default Live
);

/// Where an artifact's current revision came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Path of the source file, as given to ingest or `artifact put --file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// Modification time of the source file when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_mtime: Option<Timestamp>,
    /// Artifacts this one was derived from (K2 derived artifacts); each must exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<ArtifactId>,
    /// The transformation that derived it, when `derived_from` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformation: Option<String>,
}

/// The current state of an artifact (its latest revision, denormalized).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: ArtifactId,
    pub namespace: Namespace,
    pub collection_id: CollectionId,
    pub collection: CollectionName,
    pub name: ArtifactName,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub media_type: String,
    /// A title taken from the content (first heading, HTML `<title>`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub digest: Digest,
    pub size: u64,
    pub metadata: Metadata,
    pub lifecycle: Lifecycle,
    pub classification: Classification,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_system: Option<String>,
    pub provenance: Provenance,
    pub state: ArtifactState,
    /// Revision number of the latest revision; starts at 1 and increases by one per change.
    pub revision: u64,
    /// The run that produced the latest revision, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Artifact {
    pub fn is_live(&self) -> bool {
        self.state == ArtifactState::Live
    }
}

/// One entry in an artifact's history: the change record and the state it produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub artifact_id: ArtifactId,
    pub revision: u64,
    pub change: ChangeKind,
    /// Digest of the content before this change (absent for the first revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_digest: Option<Digest>,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub metadata: Metadata,
    pub lifecycle: Lifecycle,
    pub classification: Classification,
    pub provenance: Provenance,
    /// False once the content was purged: the digest stays as a record, the bytes are gone.
    pub content_available: bool,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    pub created_at: Timestamp,
}

/// Validates an artifact type word (`markdown`, `text`, `opaque`, …).
pub fn check_artifact_type(s: &str) -> Result<(), ModelError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(ModelError::invalid(
            "artifact type",
            s,
            "use lowercase letters, digits, '-', '_' and '.', starting with a letter",
        ))
    }
}

/// Validates a media type (`type/subtype`, parameters allowed).
pub fn check_media_type(s: &str) -> Result<(), ModelError> {
    let essence = s.split(';').next().unwrap_or("").trim();
    let ok = s.len() <= 255
        && !s.chars().any(|c| c.is_control())
        && essence
            .split_once('/')
            .is_some_and(|(t, st)| !t.is_empty() && !st.is_empty() && !st.contains('/'));
    if ok {
        Ok(())
    } else {
        Err(ModelError::invalid(
            "media type",
            s,
            "expected TYPE/SUBTYPE, e.g. text/markdown",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_and_name_alternatives() {
        assert_eq!(
            "deprecated".parse::<Lifecycle>().unwrap(),
            Lifecycle::Deprecated
        );
        let e = "secret".parse::<Classification>().unwrap_err().to_string();
        assert!(
            e.contains("public, internal, confidential, restricted"),
            "{e}"
        );
        assert_eq!(Lifecycle::default(), Lifecycle::Active);
    }

    #[test]
    fn media_and_types() {
        check_media_type("text/markdown; charset=utf-8").unwrap();
        assert!(check_media_type("markdown").is_err());
        check_artifact_type("markdown").unwrap();
        assert!(check_artifact_type("Mark Down").is_err());
    }
}

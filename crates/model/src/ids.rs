//! Identifiers. Entity ids are UUIDv7 (time-ordered, so b-tree inserts stay
//! local); the correlation id follows W3C trace-context (32 lowercase hex).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ModelError;

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Identifier of a ", $what, " (UUIDv7).")]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|e| ModelError::invalid($what, s, format!("not a UUID: {e}")))
            }
        }
    };
}

uuid_id!(ArtifactId, "artifact id");
uuid_id!(CollectionId, "collection id");
uuid_id!(RelationId, "relation id");
uuid_id!(RunId, "run id");
uuid_id!(JobId, "job id");
uuid_id!(WebhookId, "webhook id");
uuid_id!(DeliveryId, "delivery id");

/// Correlates every audit record, event and log line caused by one request.
/// Shaped like a W3C trace-context trace-id: 32 lowercase hex digits, not all zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub fn new() -> Self {
        CorrelationId(Uuid::now_v7().simple().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CorrelationId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0');
        if ok {
            Ok(CorrelationId(s.to_owned()))
        } else {
            Err(ModelError::invalid(
                "correlation id",
                s,
                "expected 32 lowercase hex digits, not all zero (W3C trace-id)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_trace_ids() {
        let c = CorrelationId::new();
        assert_eq!(c.as_str().parse::<CorrelationId>().unwrap(), c);
        assert!("0".repeat(32).parse::<CorrelationId>().is_err());
        assert!(
            "ABCDEF0123456789ABCDEF0123456789"
                .parse::<CorrelationId>()
                .is_err()
        );
    }

    #[test]
    fn ids_are_v7_and_ordered() {
        let a = ArtifactId::new();
        let b = ArtifactId::new();
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b);
        assert!("nope".parse::<ArtifactId>().is_err());
    }
}

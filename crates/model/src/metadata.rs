//! Artifact metadata: a JSON object kept exactly as the caller wrote it.
//!
//! The text is validated once and then stored and returned byte for byte, so
//! key order, number spelling and whitespace survive a round trip through any
//! backend (no float re-encoding, no key sorting).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ModelError;

#[derive(Clone, PartialEq, Eq)]
pub struct Metadata(String);

impl Metadata {
    pub const MAX_LEN: usize = 1 << 20;

    /// The empty object `{}`.
    pub fn empty() -> Self {
        Metadata("{}".to_owned())
    }

    /// Validates that `text` is one JSON object (and nothing else).
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        if text.len() > Self::MAX_LEN {
            return Err(ModelError::invalid(
                "metadata",
                format!("{}…", &text[..text.floor_char_boundary(40)]),
                "larger than 1 MiB",
            ));
        }
        let checked: UniqueKeys = serde_json::from_str(text).map_err(|e| {
            ModelError::invalid("metadata", short(text), format!("not valid JSON: {e}"))
        })?;
        if !checked.0 {
            return Err(ModelError::invalid(
                "metadata",
                short(text),
                "must be a JSON object, e.g. {\"owner\":\"docs\"}",
            ));
        }
        Ok(Metadata(text.to_owned()))
    }

    /// Builds an object from `key=value` pairs, in the order given; values are
    /// strings. The same rules as [`Metadata::parse`] apply (unique keys, size).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ModelError> {
        let mut out = String::from("{");
        let mut seen = std::collections::HashSet::new();
        for (i, (k, v)) in pairs.into_iter().enumerate() {
            if !seen.insert(k) {
                return Err(ModelError::invalid("metadata", k, "the key is given twice"));
            }
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::from(k).to_string());
            out.push(':');
            out.push_str(&serde_json::Value::from(v).to_string());
            if out.len() > Self::MAX_LEN {
                return Err(ModelError::invalid("metadata", k, "larger than 1 MiB"));
            }
        }
        out.push('}');
        Ok(Metadata(out))
    }

    /// Wraps metadata read back from a store: it was validated when written,
    /// and re-validating on read would turn one bad row into an unreadable
    /// listing (integrity is `verify`'s job, through the audit fingerprints).
    pub fn from_stored(text: String) -> Self {
        Metadata(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed value, for filtering and display.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    pub fn as_raw(&self) -> Box<RawValue> {
        RawValue::from_string(self.0.clone())
            .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).expect("literal is valid"))
    }
}

/// Deserializes any JSON value, failing on a duplicated object key anywhere
/// (RFC 8259 leaves their meaning open, so we refuse them). Holds whether the
/// top level was an object.
struct UniqueKeys(bool);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(false))
            }
            fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(false))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UniqueKeys, A::Error> {
                while seq.next_element::<UniqueKeys>()?.is_some() {}
                Ok(UniqueKeys(false))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    map.next_value::<UniqueKeys>()?;
                }
                Ok(UniqueKeys(true))
            }
        }
        d.deserialize_any(V)
    }
}

fn short(text: &str) -> String {
    if text.len() <= 60 {
        text.to_owned()
    } else {
        format!("{}…", &text[..text.floor_char_boundary(60)])
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_raw().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Metadata::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserved_exactly() {
        let text = r#"{"z": 1.50, "a": [true, null], "big": 123456789012345678901234567890}"#;
        let m = Metadata::parse(text).unwrap();
        assert_eq!(m.as_str(), text);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, text);
    }

    #[test]
    fn refuses_non_objects_with_a_reason() {
        let e = Metadata::parse("[1,2]").unwrap_err().to_string();
        assert!(e.contains("must be a JSON object"), "{e}");
        let e = Metadata::parse("{\"a\":").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = Metadata::parse(r#"{"a":1,"a":2}"#).unwrap_err().to_string();
        assert!(e.contains("duplicate key \"a\""), "{e}");
        assert!(Metadata::parse(r#"{"x":[{"b":1,"b":1}]}"#).is_err());
        Metadata::parse(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).unwrap();
    }

    #[test]
    fn pairs_keep_order() {
        let m = Metadata::from_pairs([("owner", "docs"), ("a", "x\"y")]).unwrap();
        assert!(Metadata::from_pairs([("a", "1"), ("a", "2")]).is_err());
        let big = "x".repeat(600_000);
        assert!(Metadata::from_pairs([("a", big.as_str()), ("b", big.as_str())]).is_err());
        assert_eq!(m.as_str(), r#"{"owner":"docs","a":"x\"y"}"#);
        Metadata::parse(m.as_str()).unwrap();
    }
}

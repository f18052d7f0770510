//! Validated names and the artifact address syntax of the CLI grammar.
//!
//! An artifact is addressed by id, or by `COLLECTION/NAME[#SECTION]`, where
//! NAME is a relative path and `#` or `%` inside a name is `%`-escaped.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::ids::ArtifactId;

fn check_ident(
    what: &'static str,
    s: &str,
    max: usize,
    first: fn(u8) -> bool,
    rest: fn(u8) -> bool,
    rule: &str,
) -> Result<(), ModelError> {
    if s.is_empty() {
        return Err(ModelError::invalid(what, s, "must not be empty"));
    }
    if s.len() > max {
        return Err(ModelError::invalid(
            what,
            s,
            format!("longer than {max} bytes"),
        ));
    }
    let b = s.as_bytes();
    if !first(b[0]) || !b[1..].iter().all(|&c| rest(c)) {
        return Err(ModelError::invalid(what, s, rule.to_owned()));
    }
    Ok(())
}

macro_rules! string_name {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::new(&s)
            }
        }
        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
    };
}

/// A tenant. Every record belongs to exactly one; single-user installs use `default`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    pub const DEFAULT: &'static str = "default";

    pub fn new(s: &str) -> Result<Self, ModelError> {
        check_ident(
            "namespace",
            s,
            63,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_',
            "use lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )?;
        Ok(Namespace(s.to_owned()))
    }

    pub fn default_namespace() -> Self {
        Namespace(Self::DEFAULT.to_owned())
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::default_namespace()
    }
}
string_name!(Namespace);

/// A collection's name, unique within its namespace. Contains no `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectionName(String);

impl CollectionName {
    pub fn new(s: &str) -> Result<Self, ModelError> {
        check_ident(
            "collection name",
            s,
            128,
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'),
            "use letters, digits, '-', '_' and '.', starting with a letter or digit",
        )?;
        Ok(CollectionName(s.to_owned()))
    }
}
string_name!(CollectionName);

/// A context package's name, unique within its namespace (K7).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageName(String);

impl PackageName {
    pub fn new(s: &str) -> Result<Self, ModelError> {
        check_ident(
            "context package name",
            s,
            128,
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'),
            "use letters, digits, '-', '_' and '.', starting with a letter or digit",
        )?;
        Ok(PackageName(s.to_owned()))
    }
}
string_name!(PackageName);

/// An artifact's name: a relative path, unique within its collection.
///
/// Segments are separated by `/`; empty, `.` and `..` segments, a leading `/`,
/// backslashes and control characters are refused, so a name can never escape
/// a directory when it is written back to disk (export, checkout).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactName(String);

impl ArtifactName {
    pub const MAX_LEN: usize = 1024;

    pub fn new(s: &str) -> Result<Self, ModelError> {
        let shown = if s.len() > 80 {
            format!("{}…", &s[..s.floor_char_boundary(80)])
        } else {
            s.to_owned()
        };
        let bad = |reason: &str| Err(ModelError::invalid("artifact name", shown.clone(), reason));
        if s.is_empty() {
            return bad("must not be empty");
        }
        if s.len() > Self::MAX_LEN {
            return bad("longer than 1024 bytes");
        }
        if s.starts_with('/') {
            return bad("must be a relative path (no leading '/')");
        }
        if s.contains('\\') {
            return bad("must use '/' as the path separator, not '\\'");
        }
        if s.chars().any(|c| c.is_control()) {
            return bad("must not contain control characters");
        }
        for seg in s.split('/') {
            match seg {
                "" => return bad("must not contain empty path segments ('//' or a trailing '/')"),
                "." | ".." => return bad("must not contain '.' or '..' segments"),
                _ => {}
            }
        }
        Ok(ArtifactName(s.to_owned()))
    }
}
string_name!(ArtifactName);

/// The type of a relationship, e.g. `references`, `derived-from`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelationType(String);

impl RelationType {
    pub fn new(s: &str) -> Result<Self, ModelError> {
        check_ident(
            "relation type",
            s,
            64,
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'),
            "use lowercase letters, digits, '-', '_' and '.', starting with a letter",
        )?;
        Ok(RelationType(s.to_owned()))
    }
}
string_name!(RelationType);

/// How a user points at an artifact: by id, or by collection and name, with an
/// optional section selector (a heading path) after `#`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactRef {
    Id(ArtifactId),
    /// An id with a section selector: `ID#installation/linux`.
    IdSection {
        id: ArtifactId,
        section: String,
    },
    Name {
        collection: CollectionName,
        name: ArtifactName,
        section: Option<String>,
    },
}

impl ArtifactRef {
    pub fn section(&self) -> Option<&str> {
        match self {
            ArtifactRef::Id(_) => None,
            ArtifactRef::IdSection { section, .. } => Some(section),
            ArtifactRef::Name { section, .. } => section.as_deref(),
        }
    }
}

/// `%`-escapes the characters that have a meaning in an address.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(what: &'static str, s: &str) -> Result<String, ModelError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    return Err(ModelError::invalid(
                        what,
                        s,
                        "'%' must start an escape like %25 (for '%') or %23 (for '#')",
                    ));
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ModelError::invalid(what, s, "escapes decode to invalid UTF-8"))
}

impl FromStr for ArtifactRef {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.parse::<ArtifactId>() {
            return Ok(ArtifactRef::Id(id));
        }
        if let Some((head, sec)) = s.split_once('#')
            && let Ok(id) = head.parse::<ArtifactId>()
        {
            let section = unescape("section selector", sec)?;
            return Ok(if section.is_empty() {
                ArtifactRef::Id(id)
            } else {
                ArtifactRef::IdSection { id, section }
            });
        }
        if s.starts_with('/') {
            return Err(ModelError::invalid(
                "artifact reference",
                s,
                "expected an artifact id or COLLECTION/NAME, not an absolute path",
            ));
        }
        let (path, section) = match s.split_once('#') {
            Some((p, sec)) => (p, Some(unescape("section selector", sec)?)),
            None => (s, None),
        };
        let Some((collection, name)) = path.split_once('/') else {
            return Err(ModelError::invalid(
                "artifact reference",
                s,
                "expected an artifact id or COLLECTION/NAME",
            ));
        };
        Ok(ArtifactRef::Name {
            collection: CollectionName::new(collection)?,
            name: ArtifactName::new(&unescape("artifact name", name)?)?,
            section: section.filter(|s| !s.is_empty()),
        })
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactRef::Id(id) => write!(f, "{id}"),
            ArtifactRef::IdSection { id, section } => write!(f, "{id}#{}", escape_name(section)),
            ArtifactRef::Name {
                collection,
                name,
                section,
            } => {
                write!(f, "{collection}/{}", escape_name(name.as_str()))?;
                if let Some(sec) = section {
                    write!(f, "#{}", escape_name(sec))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_reject_hostile_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\\b",
            "a\u{0}b",
        ] {
            assert!(ArtifactName::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["intro.md", "guides/setup.md", "a b/ü#1%.txt", ".hidden/x"] {
            assert!(ArtifactName::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn refs_parse_ids_names_and_sections() {
        let r: ArtifactRef = "handbook/guides/setup.md#install/linux".parse().unwrap();
        assert_eq!(r.section(), Some("install/linux"));
        assert_eq!(r.to_string(), "handbook/guides/setup.md#install/linux");
        let r: ArtifactRef = "handbook/c%23%25.md".parse().unwrap();
        match &r {
            ArtifactRef::Name { name, .. } => assert_eq!(name.as_str(), "c#%.md"),
            _ => panic!("expected a name"),
        }
        assert!("handbook".parse::<ArtifactRef>().is_err());
        assert!("handbook/50%.md".parse::<ArtifactRef>().is_err());
        let id = ArtifactId::new();
        assert_eq!(
            id.to_string().parse::<ArtifactRef>().unwrap(),
            ArtifactRef::Id(id)
        );
        let with_section = ArtifactRef::IdSection {
            id,
            section: "install/linux#2".into(),
        };
        assert_eq!(
            with_section.to_string().parse::<ArtifactRef>().unwrap(),
            with_section
        );
        assert_eq!(
            format!("{id}#").parse::<ArtifactRef>().unwrap(),
            ArtifactRef::Id(id)
        );
    }

    proptest! {
        #[test]
        fn refs_round_trip(name in "[a-z#% ]{1,8}(/[a-z#%]{1,8}){0,2}", sec in proptest::option::of("[a-z#%/]{1,8}")) {
            let r = ArtifactRef::Name {
                collection: CollectionName::new("c").unwrap(),
                name: ArtifactName::new(&name).unwrap(),
                section: sec.clone(),
            };
            let parsed: ArtifactRef = r.to_string().parse().unwrap();
            prop_assert_eq!(parsed, r);
        }
    }
}

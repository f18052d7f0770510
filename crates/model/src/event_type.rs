//! Event type patterns (O5): what a subscriber or a stream reader asks for.
//!
//! A pattern is an exact dotted name (`artifact.created`), a family
//! (`artifact.*`: every type whose name starts with `artifact.`), or `*`
//! (every type). Names are lowercase ASCII words (`a-z`, `0-9`, `_`)
//! joined by dots; a family's `*` stands for one or more trailing words.

use std::fmt;

/// One type pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypePattern {
    /// `*`: every event type.
    All,
    /// `artifact.*`: the prefix, without the dot.
    Family(String),
    /// An exact type name.
    Exact(String),
}

/// Why a type pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid event type pattern {pattern:?}: {reason}")]
pub struct TypePatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 128;
/// The most patterns one list may hold.
pub const MAX_PATTERNS: usize = 32;

fn valid_words(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

impl TypePattern {
    /// Parses `*`, `family.*` or an exact dotted name.
    pub fn parse(s: &str) -> Result<Self, TypePatternError> {
        let err = |reason| TypePatternError {
            pattern: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("a pattern is empty"));
        }
        if t.len() > MAX_PATTERN_LEN {
            return Err(err("a pattern is at most 128 bytes"));
        }
        if t == "*" {
            return Ok(TypePattern::All);
        }
        if let Some(prefix) = t.strip_suffix(".*") {
            if prefix.contains('*') {
                return Err(err("`*` may only stand alone or end a pattern as `.*`"));
            }
            if !valid_words(prefix) {
                return Err(err(
                    "names are lowercase words (a-z, 0-9, _) joined by dots, e.g. artifact.* or artifact.created",
                ));
            }
            return Ok(TypePattern::Family(prefix.to_owned()));
        }
        if t.contains('*') {
            return Err(err("`*` may only stand alone or end a pattern as `.*`"));
        }
        if !valid_words(t) {
            return Err(err(
                "names are lowercase words (a-z, 0-9, _) joined by dots, e.g. artifact.* or artifact.created",
            ));
        }
        Ok(TypePattern::Exact(t.to_owned()))
    }

    /// Parses a comma-separated list (`artifact.*,ingest.*`); empty items
    /// are refused, duplicates kept once.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, TypePatternError> {
        let mut out: Vec<TypePattern> = Vec::new();
        for item in s.split(',') {
            let p = TypePattern::parse(item)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.len() > MAX_PATTERNS {
            return Err(TypePatternError {
                pattern: s.to_owned(),
                reason: "at most 32 patterns",
            });
        }
        Ok(out)
    }

    /// Whether `event_type` is one this pattern asks for.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            TypePattern::All => true,
            TypePattern::Exact(name) => name == event_type,
            TypePattern::Family(prefix) => event_type
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
        }
    }

    /// Whether any of `patterns` matches (an empty list matches everything).
    pub fn any_matches(patterns: &[TypePattern], event_type: &str) -> bool {
        patterns.is_empty() || patterns.iter().any(|p| p.matches(event_type))
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypePattern::All => f.write_str("*"),
            TypePattern::Family(p) => write!(f, "{p}.*"),
            TypePattern::Exact(n) => f.write_str(n),
        }
    }
}

impl std::str::FromStr for TypePattern {
    type Err = TypePatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TypePattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_patterns_match_exact_family_and_all() {
        let fam = TypePattern::parse("artifact.*").unwrap();
        assert!(fam.matches("artifact.created"));
        assert!(fam.matches("artifact.quarantined"));
        assert!(!fam.matches("artifact"));
        assert!(!fam.matches("artifacts.created"));
        assert!(!fam.matches("relation.created"));
        let exact = TypePattern::parse("run.failed").unwrap();
        assert!(exact.matches("run.failed"));
        assert!(!exact.matches("run.failed.x"));
        assert!(TypePattern::parse("*").unwrap().matches("anything.at_all"));
        assert_eq!(fam.to_string(), "artifact.*");
    }

    #[test]
    fn o5_patterns_refuse_malformed_input_with_a_reason() {
        for bad in [
            "",
            " ",
            "Artifact.created",
            "artifact.",
            ".x",
            "a*",
            "*.created",
            "a.*.b",
            "a..b",
            "a-b",
        ] {
            let e = TypePattern::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid event type pattern"),
                "{bad}: {e}"
            );
        }
        assert!(TypePattern::parse(&"a".repeat(200)).is_err());
    }

    #[test]
    fn o5_pattern_lists_are_comma_separated() {
        let l = TypePattern::parse_list("artifact.*, ingest.*,artifact.*").unwrap();
        assert_eq!(l.len(), 2);
        assert!(TypePattern::any_matches(&l, "ingest.succeeded"));
        assert!(!TypePattern::any_matches(&l, "key.created"));
        assert!(TypePattern::any_matches(&[], "key.created"));
        assert!(TypePattern::parse_list("artifact.*,,x").is_err());
    }
}

//! NATS subjects for events: `<prefix>.<namespace>.<event type>`, with
//! every token made safe (a NATS subject token holds no `.`, whitespace,
//! `*` or `>`), and the check that a stream's subjects cover a prefix.
//! Pure functions; no IO.

use crate::NatsError;

/// Checks a configured subject prefix: one or more `.`-separated tokens,
/// each non-empty and free of whitespace, `*` and `>` (a prefix names
/// where events go; it is not a wildcard).
pub fn check_prefix(prefix: &str) -> Result<(), NatsError> {
    let bad = |why: &str| NatsError::Config(format!("NATS subject prefix {prefix:?}: {why}"));
    if prefix.is_empty() {
        return Err(bad("must not be empty"));
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(bad(
                "has an empty token (a leading, trailing or double '.')",
            ));
        }
        if token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        {
            return Err(bad("tokens may not hold whitespace, '*' or '>'"));
        }
    }
    Ok(())
}

/// Checks a JetStream stream name: what the server accepts (no
/// whitespace, `.`, `*`, `>`, path separators), at most 255 bytes.
pub fn check_stream_name(name: &str) -> Result<(), NatsError> {
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
    {
        return Err(NatsError::Config(format!(
            "NATS stream name {name:?}: use 1-255 characters without whitespace, '.', '*', '>', '/' or '\\'"
        )));
    }
    Ok(())
}

/// One subject token from arbitrary text: every character that is not an
/// ASCII letter, digit, `-` or `_` becomes `_` (empty text is `_`).
/// Namespaces already satisfy this, so for them it is the identity.
pub fn token(text: &str) -> String {
    if text.is_empty() {
        return "_".to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The subject of one event: `<prefix>.<namespace>.<type tokens>`. The
/// dotted event type (`artifact.updated`) stays several tokens, so
/// subscribers can filter with `<prefix>.*.artifact.>`; each of its
/// tokens is made safe like the namespace.
pub fn event_subject(prefix: &str, namespace: &str, event_type: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + namespace.len() + event_type.len() + 2);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(&token(namespace));
    for part in event_type.split('.') {
        subject.push('.');
        subject.push_str(&token(part));
    }
    subject
}

/// The stream subject that captures every event under `prefix`.
pub fn stream_subject(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// Whether the subject filter `filter` (with `*` and `>` wildcards)
/// matches the literal subject `subject`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut want = filter.split('.');
    let mut have = subject.split('.');
    loop {
        match (want.next(), have.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(w), Some(h)) if w == h => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a stream with `subjects` captures every event subject under
/// `prefix`: some filter ending in `>` matches both a short and a long
/// subject under it (a filter without `>` cannot hold every type's depth).
pub fn covers(subjects: &[String], prefix: &str) -> bool {
    let short = format!("{prefix}.ns.type");
    let long = format!("{prefix}.ns.type.sub.more");
    subjects
        .iter()
        .any(|s| (s.ends_with(".>") || s == ">") && matches(s, &short) && matches(s, &long))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_nats_subjects_are_prefix_namespace_and_type_tokens() {
        assert_eq!(
            event_subject("kontextual.events", "default", "artifact.updated"),
            "kontextual.events.default.artifact.updated"
        );
        assert_eq!(
            event_subject("kx", "team-a_1", "policy.denied"),
            "kx.team-a_1.policy.denied"
        );
    }

    #[test]
    fn o5_nats_tokens_are_sanitized() {
        assert_eq!(token("a.b c*d>e"), "a_b_c_d_e");
        assert_eq!(token(""), "_");
        assert_eq!(token("é"), "_");
        // an empty or odd type token cannot make an empty subject token
        assert_eq!(event_subject("p", "ns", "a..b"), "p.ns.a._.b");
        assert_eq!(event_subject("p", "n s", "x> y"), "p.n_s.x__y");
    }

    #[test]
    fn o5_nats_prefix_and_stream_names_are_checked() {
        assert!(check_prefix("kontextual.events").is_ok());
        assert!(check_prefix("kx").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(check_stream_name("KONTEXTUAL_EVENTS").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b"] {
            assert!(check_stream_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn o5_nats_wildcards_match_like_the_server() {
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.d"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
    }

    #[test]
    fn o5_nats_stream_coverage() {
        let subjects = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(covers(&subjects(&["kx.events.>"]), "kx.events"));
        assert!(covers(&subjects(&["kx.>"]), "kx.events"));
        assert!(covers(&subjects(&[">"]), "kx.events"));
        assert!(covers(&subjects(&["other.>", "kx.*.>"]), "kx.events"));
        assert!(!covers(&subjects(&["kx.events.*"]), "kx.events"));
        assert!(!covers(&subjects(&["other.>"]), "kx.events"));
        assert!(!covers(&[], "kx.events"));
    }
}

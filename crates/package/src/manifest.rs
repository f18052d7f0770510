//! BagIt manifests (RFC 8493 §2.1.3, §2.2.1) and the path rules every name
//! in a package must follow before it is joined to anything on disk.

use std::fmt::Write as _;

/// One manifest line: a checksum (lowercase hex) and a bag-relative path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub checksum: String,
    pub path: String,
}

/// Why a path is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsafe path {path:?}: {reason}")]
pub struct UnsafePath {
    pub path: String,
    pub reason: &'static str,
}

/// Accepts only plain relative paths with `/` separators: no absolute or
/// drive paths, no `.`, `..` or empty parts, no backslashes or control
/// characters, no `~` home references. Every name taken from an archive
/// or a manifest passes here before it touches the filesystem.
pub fn check_path(path: &str) -> Result<(), UnsafePath> {
    let refuse = |reason| {
        Err(UnsafePath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return refuse("empty");
    }
    if path.len() > 4096 {
        return refuse("longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return refuse("absolute");
    }
    if path.contains('\\') {
        return refuse("contains a backslash (only / separates)");
    }
    if path.chars().any(|c| c.is_control()) {
        return refuse("contains a control character");
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return refuse("a drive path");
    }
    if path.starts_with('~') {
        return refuse("a home-directory reference");
    }
    for part in path.split('/') {
        match part {
            "" => return refuse("has an empty part"),
            "." | ".." => return refuse("has a . or .. part"),
            _ => {}
        }
    }
    Ok(())
}

/// Encodes a path for a manifest line (`%`, CR and LF are percent-encoded).
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

fn decode_path(s: &str) -> String {
    s.replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%25", "%")
}

/// Renders a manifest: one `<sha256>  <path>` line per entry, sorted by path.
pub fn render(entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = String::new();
    for e in sorted {
        let _ = writeln!(out, "{}  {}", e.checksum, encode_path(&e.path));
    }
    out
}

/// A manifest line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub detail: String,
}

/// Parses a manifest. Lines that are malformed are returned separately so
/// a validator can name each one; paths are decoded but not yet checked.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<BadLine>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let Some((hash, path)) = line.split_once([' ', '\t']) else {
            bad.push(BadLine {
                line: i + 1,
                detail: "expected `<checksum> <path>`".into(),
            });
            continue;
        };
        let path = path.trim_start_matches([' ', '\t']).trim_start_matches('*');
        if !matches!(hash.len(), 64 | 128) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bad.push(BadLine {
                line: i + 1,
                detail: format!("{hash:?} is not a SHA-256 or SHA-512 (64 or 128 hex digits)"),
            });
            continue;
        }
        entries.push(Entry {
            checksum: hash.to_ascii_lowercase(),
            path: decode_path(path),
        });
    }
    (entries, bad)
}

/// A key that two names share on a case-insensitive or
/// normalization-insensitive filesystem (NFC, then lowercase).
pub fn collision_key(path: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    path.nfc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_hostile_paths() {
        for p in [
            "../evil",
            "data/../../evil",
            "/etc/passwd",
            "data//x",
            "data/./x",
            "C:/x",
            "data\\x",
            "~root/x",
            "",
            "data/x\n",
        ] {
            assert!(check_path(p).is_err(), "{p:?} must be refused");
        }
        for p in [
            "data/a.jsonl",
            "bagit.txt",
            "data/blobs/sha256/ab/abcd",
            "data/ü é",
        ] {
            assert!(check_path(p).is_ok(), "{p:?} must be accepted");
        }
    }

    #[test]
    fn parses_rendered_and_reports_bad_lines() {
        let text = format!(
            "{}  data/a%25b\n{}  data/x y\nnot-a-hash data/c\nlonely\n",
            "a".repeat(64),
            "B".repeat(64)
        );
        let (entries, bad) = parse(&text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].path, "data/a%b");
        assert_eq!(entries[1].path, "data/x y");
        assert_eq!(entries[1].checksum, "b".repeat(64));
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn case_and_normalization_collide() {
        assert_eq!(collision_key("data/README"), collision_key("data/readme"));
        assert_eq!(
            collision_key("data/caf\u{e9}"),
            collision_key("data/cafe\u{301}")
        );
    }

    proptest! {
        /// A rendered manifest parses back to the same entries (paths with
        /// `%`, CR and LF included).
        #[test]
        fn manifest_round_trip(paths in proptest::collection::btree_set("data/[a-z%\r\n ]{1,12}", 0..20)) {
            let entries: Vec<Entry> = paths
                .iter()
                .enumerate()
                .map(|(i, p)| Entry { checksum: format!("{i:064x}"), path: p.clone() })
                .collect();
            let (parsed, bad) = parse(&render(&entries));
            prop_assert!(bad.is_empty());
            let mut want = entries.clone();
            want.sort_by(|a, b| a.path.cmp(&b.path));
            prop_assert_eq!(parsed, want);
        }
    }
}

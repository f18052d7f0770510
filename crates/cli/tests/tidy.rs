//! Tidy check: code comments, the README and ARCHITECTURE.md say what is
//! true now. Notes about plans and unfinished work go stale the day the
//! work lands, so words that announce them are refused here, named by
//! file and line.

use std::path::{Path, PathBuf};

/// Words that announce a plan or unfinished work, matched without regard
/// to case, with what to write instead.
const STALE: &[(&str, &str)] = &[
    ("(in progress", "say what exists now"),
    ("in progress)", "say what exists now"),
    ("postgresql next", "say which backends exist"),
    ("http next", "say which surfaces exist"),
    ("come next", "say what exists now"),
    ("comes next", "say what exists now"),
    ("next)", "say what exists now"),
    ("next;", "say what exists now"),
    ("next:", "say what exists now"),
    ("(later)", "say what exists now, or file an issue"),
    ("(later ", "say what exists now, or file an issue"),
];

/// Markers of work left to do, matched as upper-case words: each needs an
/// owner, as in `TODO(alice): …`.
const OWNED_MARKERS: &[&str] = &["TODO", "FIXME"];

/// Stale notes accepted for now (path, and the words on the line), each
/// listed so that it stays visible; once its line is rewritten, the check
/// fails until the entry is deleted here too. Empty: keep it that way.
const KNOWN: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Rust sources under `crates/`, build output left out.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The comment on a line of Rust: from a `//` that starts the line or
/// follows a space (so `https://` inside a string is not one).
fn comment(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return Some(trimmed);
    }
    line.find(" //").map(|at| &line[at..])
}

/// A marker of [`OWNED_MARKERS`] standing as a word, with no `(owner)` after it.
fn unowned_marker(text: &str) -> Option<&'static str> {
    OWNED_MARKERS.iter().copied().find(|marker| {
        text.match_indices(marker).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + marker.len()..].chars().next();
            let word = !before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric);
            word && after != Some('(')
        })
    })
}

/// Every stale note in `text`, as `path:line: words — advice`.
fn stale_notes(path: &str, line_no: usize, text: &str) -> Vec<(String, String)> {
    let lower = text.to_lowercase();
    let mut found: Vec<(String, String)> = STALE
        .iter()
        .filter(|(words, _)| lower.contains(words))
        .map(|(words, advice)| {
            (
                text.trim().to_owned(),
                format!("{path}:{line_no}: \"{words}\" — {advice}"),
            )
        })
        .collect();
    if let Some(marker) = unowned_marker(text) {
        found.push((
            text.trim().to_owned(),
            format!("{path}:{line_no}: {marker} without an owner — write {marker}(name)"),
        ));
    }
    found
}

#[test]
fn comments_and_docs_hold_no_stale_notes() {
    let root = root();
    let mut lines: Vec<(String, usize, String)> = Vec::new();
    let mut sources = Vec::new();
    rust_files(&root.join("crates"), &mut sources);
    sources.sort();
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("a readable source");
        let name = relative(&root, &path);
        for (i, line) in text.lines().enumerate() {
            if let Some(c) = comment(line) {
                lines.push((name.clone(), i + 1, c.to_owned()));
            }
        }
    }
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect("a readable doc");
        for (i, line) in text.lines().enumerate() {
            lines.push((doc.to_owned(), i + 1, line.to_owned()));
        }
    }

    let mut unknown = Vec::new();
    let mut known_seen = vec![false; KNOWN.len()];
    for (path, line_no, text) in &lines {
        for (line, report) in stale_notes(path, *line_no, text) {
            let known = KNOWN
                .iter()
                .position(|(p, words)| p == path && line.contains(words));
            match known {
                Some(k) => known_seen[k] = true,
                None => unknown.push(report),
            }
        }
    }
    let fixed: Vec<String> = KNOWN
        .iter()
        .zip(&known_seen)
        .filter(|(_, seen)| !**seen)
        .map(|((path, words), _)| format!("{path}: \"{words}\" is gone: delete it from KNOWN"))
        .collect();
    assert!(
        unknown.is_empty() && fixed.is_empty(),
        "stale notes (rewrite them to say what is true now):\n{}",
        unknown
            .into_iter()
            .chain(fixed)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn relative(root: &Path, path: &Path) -> String {
    let canonical_root = root.canonicalize().expect("the workspace root");
    let canonical = path.canonicalize().expect("a source path");
    canonical
        .strip_prefix(&canonical_root)
        .unwrap_or(&canonical)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The matcher itself: what it refuses and what it lets through.
#[test]
fn the_stale_words_are_recognised() {
    let hits = |s: &str| !stale_notes("x.rs", 1, s).is_empty();
    assert!(hits("//! the services (CLI now, HTTP next)"));
    assert!(hits("/// Filters shared by search and (later) export."));
    assert!(hits("//! X7 (in progress): the schema"));
    assert!(hits("// TODO: remove"));
    assert!(hits("// a FIXME here"));
    assert!(!hits("// TODO(ana): fold into the SQL layer"));
    assert!(!hits("/// a catch-up in progress (which holds `progress`)"));
    assert!(!hits("/// the next page; the next attempt"));
    assert!(!hits("// TODOS and TODOLIST are words"));
    assert_eq!(
        comment("let url = \"https://example\"; // a note"),
        Some(" // a note")
    );
    assert_eq!(comment("let url = \"https://example\";"), None);
}

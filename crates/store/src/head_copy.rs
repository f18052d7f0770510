//! The audit chain's head, copied outside the database after every commit
//! that extends the chain (reliability §1: an anchor the database cannot
//! rewrite). Verification expects the chain to still hold that record
//! unchanged, so a truncated tail — or a database restored from an older
//! copy — is noticed without `--expect-head`. Both backends keep it in the
//! data directory; with PostgreSQL each process records the heads of its
//! own writes.

use std::path::{Path, PathBuf};

use kontextual_model::ChainHead;

/// The file's name inside a data directory.
pub const FILE: &str = "audit.head";

/// Records `head` unless the file already holds a later one. Written to a
/// per-process temporary file and renamed, so readers never see half a
/// head. A failure is logged, not raised: the commit already happened.
pub fn record(path: &Path, head: &ChainHead) {
    if let Some(old) = read(path)
        && old.seq >= head.seq
    {
        return;
    }
    let tmp = path.with_extension(format!("head.{}.tmp", std::process::id()));
    let ok = std::fs::write(&tmp, format!("{head}\n")).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = ok {
        tracing::warn!(error = %e, "could not record the audit head outside the database");
    }
}

/// The recorded head; `None` when the file is missing or unreadable.
pub fn read(path: &Path) -> Option<ChainHead> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The recorded copy as verification sees it: read *before* the snapshot
/// it is checked against is taken (a head written later would not be in
/// it). `None` when there is no file; `(None, path)` when it is unreadable.
pub fn recorded(path: Option<&Path>) -> Option<(Option<ChainHead>, PathBuf)> {
    let p = path.filter(|p| p.exists())?;
    Some((read(p), p.to_owned()))
}

/// What the chain is checked against: the caller's `--expect-head` first,
/// else the recorded copy. Returns the head, where it came from, and the
/// path of a copy that exists but cannot be read (itself a problem).
pub fn expectation(
    explicit: Option<ChainHead>,
    recorded: Option<(Option<ChainHead>, PathBuf)>,
) -> (Option<ChainHead>, Option<String>, Option<String>) {
    match (explicit, recorded) {
        (Some(h), _) => (Some(h), Some("--expect-head".to_owned()), None),
        (None, Some((Some(h), p))) => (Some(h), Some(p.display().to_string()), None),
        (None, Some((None, p))) => (None, None, Some(p.display().to_string())),
        (None, None) => (None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> ChainHead {
        ChainHead {
            seq,
            hash: format!("{seq:064x}"),
        }
    }

    /// X3: the copy only moves forward, and a damaged copy reads as none.
    #[test]
    fn x3_the_recorded_head_only_moves_forward() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(FILE);
        assert_eq!(recorded(Some(&p)), None);
        record(&p, &head(5));
        record(&p, &head(3));
        assert_eq!(read(&p), Some(head(5)));
        record(&p, &head(6));
        assert_eq!(read(&p), Some(head(6)));
        std::fs::write(&p, "garbage").unwrap();
        assert_eq!(recorded(Some(&p)), Some((None, p.clone())));
        let (h, source, unreadable) = expectation(None, recorded(Some(&p)));
        assert_eq!((h, source), (None, None));
        assert_eq!(unreadable, Some(p.display().to_string()));
        let (h, source, _) = expectation(Some(head(2)), recorded(Some(&p)));
        assert_eq!(h, Some(head(2)));
        assert_eq!(source.as_deref(), Some("--expect-head"));
    }
}

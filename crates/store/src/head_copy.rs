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
/// head. A failure is logged, not raised: the commit already happened; the
/// temporary file is removed (a full disk leaves no empty `*.tmp` behind)
/// and the next commit records its later head, so the copy catches up as
/// soon as there is space again.
pub fn record(path: &Path, head: &ChainHead) {
    if let Some(old) = read(path)
        && old.seq >= head.seq
    {
        return;
    }
    let tmp = path.with_extension(format!("head.{}.tmp", std::process::id()));
    let ok = std::fs::write(&tmp, format!("{head}\n")).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = ok {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(error = %e, "could not record the audit head outside the database");
    }
}

/// Whether the chain still holds `anchor` (the head recorded earlier),
/// judged before a write extends it: from the chain's current `head`, and
/// when the anchor lies further back, from the hash stored at its seq.
/// When it does not, the chain was truncated, rewritten or restored from
/// an older copy: the anchor must then be kept, not overwritten by the next
/// head, or the evidence is gone before anyone runs `verify`.
pub fn chain_holds<E>(
    anchor: &ChainHead,
    head: Option<&ChainHead>,
    hash_at: impl FnOnce(u64) -> Result<Option<String>, E>,
) -> Result<bool, E> {
    let Some(head) = head else { return Ok(false) };
    if anchor.seq > head.seq {
        return Ok(false);
    }
    if anchor.seq == head.seq {
        return Ok(anchor.hash == head.hash);
    }
    Ok(hash_at(anchor.seq)?.is_some_and(|h| h == anchor.hash))
}

/// Logged once per write that finds the anchor gone (the anchor is kept).
pub fn warn_not_held(path: &Path, anchor: &ChainHead) {
    tracing::error!(
        anchor = %anchor,
        file = %path.display(),
        "the audit chain no longer holds the head recorded outside the database (truncated, rewritten or restored from an older copy); the recorded head is kept so `verify` reports it — after a deliberate restore, remove the file"
    );
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

    /// X3: an anchor is held only by a chain that still has it unchanged.
    #[test]
    fn x3_an_anchor_is_held_only_by_a_chain_that_still_has_it() {
        let never = |_: u64| -> Result<Option<String>, ()> { panic!("no lookup needed") };
        assert_eq!(chain_holds(&head(5), Some(&head(5)), never), Ok(true));
        assert_eq!(
            chain_holds(&head(5), Some(&head(4)), never),
            Ok(false),
            "truncated"
        );
        assert_eq!(chain_holds(&head(5), None, never), Ok(false), "emptied");
        let other = ChainHead {
            seq: 5,
            hash: "f".repeat(64),
        };
        assert_eq!(
            chain_holds(&head(5), Some(&other), never),
            Ok(false),
            "rewritten"
        );
        let found = |seq: u64| -> Result<Option<String>, ()> { Ok(Some(head(seq).hash)) };
        assert_eq!(chain_holds(&head(5), Some(&head(9)), found), Ok(true));
        let changed = |_: u64| -> Result<Option<String>, ()> { Ok(Some("0".repeat(64))) };
        assert_eq!(chain_holds(&head(5), Some(&head(9)), changed), Ok(false));
        let gone = |_: u64| -> Result<Option<String>, ()> { Ok(None) };
        assert_eq!(chain_holds(&head(5), Some(&head(9)), gone), Ok(false));
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

//! The search projection (K8): a tantivy full-text index derived from the
//! store. It holds one document per live artifact and one per section of it,
//! and records in its commit payload the last change-feed position it applied.
//!
//! Invariants:
//! - The index is derived data: deleting the directory loses nothing; the
//!   owner rebuilds it from the store.
//! - One writer per directory. Whoever holds `index.lock` (an OS file lock,
//!   released when its process dies) is the owner and the only writer; other
//!   processes open it read-only and wait for the owner to catch up.
//! - An artifact's documents are replaced as a whole (delete by artifact id,
//!   then add), so a superseded revision or a removed section never lingers.
//!
//! Boundary: this crate knows tantivy and nothing of the store; the services
//! turn store changes into [`IndexDoc`]s.

mod analysis;
mod fields;
mod open;
mod query;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument, Term};

use fields::Fields;
pub use fields::metadata_pairs;
pub use open::{Access, Opened};
pub use query::{Filters, Granularity, Hit, Readable, SearchRequest, SearchResults, Snippet};

/// Bumped whenever the schema or the document layout changes; an index of
/// another format is rebuilt.
pub const FORMAT: u32 = 1;

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The query text could not be parsed; the message says where and why.
    #[error("{0}")]
    Query(String),
    /// Another process owns the index and it is not readable yet.
    #[error("the search index is not available: {0}")]
    Unavailable(String),
    /// Writing needs ownership, which this handle does not have.
    #[error("the search index is owned by another process (it holds {0})")]
    NotOwner(String),
    #[error("search index at {path}: {cause}")]
    Engine { path: String, cause: String },
    #[error("search index at {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
}

/// What the index records at each commit (tantivy's commit payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    /// The store the index was built from; another store's index is rebuilt.
    pub store_id: String,
    /// Last change-feed (outbox) sequence number applied.
    pub applied_seq: u64,
    /// When this commit was made (RFC 3339).
    pub committed_at: String,
    /// Which event `applied_seq` was (`AUDIT_SEQ:MICROS`): a store restored
    /// from an older copy and written again has another event there.
    #[serde(default)]
    pub applied_event: Option<String>,
}

/// One document: a whole artifact (`selector` None) or one of its sections.
#[derive(Clone, Debug, Default)]
pub struct IndexDoc {
    pub namespace: String,
    pub artifact_id: String,
    pub selector: Option<String>,
    /// A section document's heading.
    pub heading: Option<String>,
    /// An artifact document's headings (all of them), searchable as `heading`.
    pub headings: Vec<String>,
    /// Whether this document is a part (section granularity) rather than
    /// the whole artifact. A part without a selector is the text before the
    /// first heading, or the whole text of a document without sections.
    pub part: bool,
    pub revision: u64,
    pub collection: String,
    pub name: String,
    pub title: Option<String>,
    pub artifact_type: String,
    pub lifecycle: String,
    pub classification: String,
    /// Flattened metadata, `key` (dotted path) and scalar value as text.
    pub metadata: Vec<(String, String)>,
    pub body: String,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

/// Sizes and position, for `index status`.
#[derive(Clone, Debug, Serialize)]
pub struct IndexStats {
    /// Artifacts with a document in the index.
    pub artifacts: u64,
    /// Section documents.
    pub sections: u64,
    pub segments: usize,
    pub size_bytes: u64,
    pub checkpoint: Option<Checkpoint>,
}

/// The owner's writer. A tantivy writer whose indexing thread failed (a
/// full disk: ENOSPC) is dead for good — every later call answers "an
/// index writer was killed" — so a failure is remembered here and
/// [`SearchIndex::recover`] replaces the writer (rolled back to the last
/// commit) instead of the process needing a restart.
pub(crate) struct WriterSlot {
    writer: Option<IndexWriter<TantivyDocument>>,
    threads: usize,
    /// Why the writer failed, until it is replaced.
    failed: Option<String>,
}

impl WriterSlot {
    pub(crate) fn new(writer: IndexWriter<TantivyDocument>, threads: usize) -> WriterSlot {
        WriterSlot {
            writer: Some(writer),
            threads,
            failed: None,
        }
    }
}

/// An open index: always readable, writable when this handle owns it.
pub struct SearchIndex {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Option<Mutex<WriterSlot>>,
    /// Held for the life of the handle; dropping it releases ownership.
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("path", &self.path)
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl SearchIndex {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_owner(&self) -> bool {
        self.writer.is_some()
    }

    fn engine(&self, e: impl std::fmt::Display) -> IndexError {
        IndexError::Engine {
            path: self.path.display().to_string(),
            cause: e.to_string(),
        }
    }

    fn slot(&self) -> Result<std::sync::MutexGuard<'_, WriterSlot>> {
        let w = self
            .writer
            .as_ref()
            .ok_or_else(|| IndexError::NotOwner(self.path.join("..").display().to_string()))?;
        // A panic while holding the writer cannot leave it half-written in a
        // way a later commit would publish wrongly: uncommitted work is
        // either committed whole or rolled back by tantivy.
        Ok(w.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` with the writer. A writer that failed is not used again
    /// until [`SearchIndex::recover`] replaced it (its uncommitted work is
    /// lost: the caller re-applies from the last checkpoint); a failure of
    /// `f` marks it failed.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut IndexWriter<TantivyDocument>) -> tantivy::Result<T>,
    ) -> Result<T> {
        let mut slot = self.slot()?;
        if let Some(why) = &slot.failed {
            return Err(self.engine(format!(
                "the index writer failed ({why}) and is not reopened yet"
            )));
        }
        let Some(w) = slot.writer.as_mut() else {
            return Err(self.engine("the index writer is not open"));
        };
        match f(w) {
            Ok(v) => Ok(v),
            Err(e) => {
                slot.failed = Some(e.to_string());
                Err(self.engine(e))
            }
        }
    }

    /// Why the writer failed, while it is not replaced (`None`: it works,
    /// or this handle does not own the index).
    pub fn writer_failure(&self) -> Option<String> {
        self.writer
            .as_ref()
            .and_then(|w| w.lock().unwrap_or_else(|p| p.into_inner()).failed.clone())
    }

    /// Replaces a failed writer by one rolled back to the last commit (a
    /// no-op when the writer works). Fails while it cannot be reopened (the
    /// disk is still full, say); call it again later.
    pub fn recover(&self) -> Result<()> {
        let mut slot = self.slot()?;
        if slot.failed.is_none() && slot.writer.is_some() {
            return Ok(());
        }
        // rollback() replaces a killed writer in place, keeping its
        // directory lock; if that fails the old writer is dropped (its lock
        // with it) and a fresh one is opened.
        if let Some(w) = slot.writer.as_mut()
            && w.rollback().is_ok()
        {
            slot.failed = None;
            return Ok(());
        }
        slot.writer = None;
        let threads = slot.threads;
        match self
            .index
            .writer_with_num_threads(threads, open::WRITER_MEMORY * threads)
        {
            Ok(w) => {
                slot.writer = Some(w);
                slot.failed = None;
                Ok(())
            }
            Err(e) => {
                slot.failed = Some(e.to_string());
                Err(self.engine(e))
            }
        }
    }

    /// The last committed checkpoint, as this handle's reader sees it.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let metas = self.index.load_metas().map_err(|e| self.engine(e))?;
        Ok(metas
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<Checkpoint>(p).ok())
            .filter(|c| c.format == FORMAT))
    }

    /// Replaces every document of an artifact with `docs` (empty removes it).
    /// Invisible until [`SearchIndex::commit`].
    pub fn replace(&self, artifact_id: &str, docs: &[IndexDoc]) -> Result<()> {
        self.with_writer(|w| {
            w.delete_term(Term::from_field_text(self.fields.artifact_id, artifact_id));
            for d in docs {
                w.add_document(self.fields.document(d))?;
            }
            Ok(())
        })
    }

    /// Drops every document (before a rebuild). Invisible until commit.
    ///
    /// By delete operations on the document kinds, ordered like every other
    /// operation: what was added before goes, what is added after stays.
    /// (`delete_all_documents` instead drops segments and rewinds the
    /// operation counter under background merges and segments still being
    /// finalised; a rebuild right after a commit once lost a document.)
    pub fn clear(&self) -> Result<()> {
        self.with_writer(|w| {
            for kind in [fields::KIND_ARTIFACT, fields::KIND_SECTION] {
                w.delete_term(Term::from_field_text(self.fields.kind, kind));
            }
            Ok(())
        })
    }

    /// Publishes everything written so far together with `checkpoint`, and
    /// makes it visible to this handle's searches at once.
    pub fn commit(&self, checkpoint: &Checkpoint) -> Result<()> {
        let payload = serde_json::to_string(checkpoint).map_err(|e| self.engine(e))?;
        self.with_writer(|w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()
        })?;
        self.reader.reload().map_err(|e| self.engine(e))
    }

    /// Picks up commits made by the owner (for a read-only handle).
    pub fn reload(&self) -> Result<()> {
        self.reader.reload().map_err(|e| self.engine(e))
    }

    pub fn stats(&self) -> Result<IndexStats> {
        let searcher = self.reader.searcher();
        let count = |kind: &str| -> Result<u64> {
            let q = TermQuery::new(
                Term::from_field_text(self.fields.kind, kind),
                IndexRecordOption::Basic,
            );
            searcher
                .search(&q, &Count)
                .map(|n| n as u64)
                .map_err(|e| self.engine(e))
        };
        Ok(IndexStats {
            artifacts: count(fields::KIND_ARTIFACT)?,
            sections: count(fields::KIND_SECTION)?,
            segments: searcher.segment_readers().len(),
            size_bytes: dir_size(&self.path),
            checkpoint: self.checkpoint()?,
        })
    }

    /// Re-reads every file the index's segments use and checks its
    /// checksum; returns the damaged files (empty when all is well).
    pub fn validate(&self) -> Result<Vec<String>> {
        match contain_panic(|| self.index.validate_checksum()) {
            Some(Ok(bad)) => {
                let mut v: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
                v.sort();
                Ok(v)
            }
            Some(Err(e)) => Ok(vec![format!("cannot validate: {e}")]),
            None => Ok(vec!["a segment file is damaged".to_owned()]),
        }
    }

    /// Waits for background merges to finish (on shutdown) and releases ownership.
    pub fn close(self) -> Result<()> {
        if let Some(w) = self.writer
            && let Some(w) = w.into_inner().unwrap_or_else(|p| p.into_inner()).writer
        {
            w.wait_merging_threads().map_err(|e| IndexError::Engine {
                path: self.path.display().to_string(),
                cause: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Runs `f`, turning a panic into `None` without printing it: tantivy may
/// panic on a damaged file instead of returning an error, and a damaged
/// index is an expected condition here (it is rebuilt), not a crash.
pub(crate) fn contain_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.ok()
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

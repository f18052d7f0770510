//! Opening the index: ownership by file lock, and detection of a missing,
//! corrupt or outdated index (which the owner replaces with an empty one for
//! the caller to rebuild).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::Mutex;

use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::fields::Fields;
use crate::{FORMAT, IndexError, Result, SearchIndex};

/// How to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Become the owner if nobody else is; otherwise open read-only.
    PreferOwner,
    /// Read-only, even if nobody owns the index.
    ReadOnly,
}

/// What opening found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// An index of the current format was found.
    Existing,
    /// There was no usable index, so an empty one was created; it needs a
    /// full rebuild. The reason says what was wrong.
    Fresh { reason: String },
}

/// Writer memory: tantivy needs ≥ 15 MB per thread.
pub(crate) const WRITER_MEMORY: usize = 128 * 1024 * 1024;

impl SearchIndex {
    /// Opens the index in `dir` (`DATA_DIR/index`), whose lock file is
    /// `dir.lock`. `threads` is the number of indexing threads (1–2 on small
    /// machines).
    pub fn open(dir: &Path, access: Access, threads: usize) -> Result<(SearchIndex, Opened)> {
        let io = |cause: std::io::Error| IndexError::Io {
            path: dir.display().to_string(),
            cause,
        };
        let lock_path = dir.with_extension("lock");
        let lock = match access {
            Access::ReadOnly => None,
            Access::PreferOwner => try_lock(&lock_path).map_err(io)?,
        };
        let Some(lock) = lock else {
            return open_reader(dir);
        };
        if dir.exists() && !dir.is_dir() {
            std::fs::remove_file(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let (index, opened) = match open_existing(dir) {
            Ok(index) => (index, Opened::Existing),
            Err(reason) => {
                if dir.join("meta.json").exists() {
                    tracing::warn!(path = %dir.display(), %reason, "replacing the search index; it will be rebuilt from the store");
                }
                if dir.is_dir() {
                    std::fs::remove_dir_all(dir).map_err(io)?;
                } else if dir.exists() {
                    std::fs::remove_file(dir).map_err(io)?;
                }
                std::fs::create_dir_all(dir).map_err(io)?;
                let (schema, _) = Fields::schema();
                let index = Index::create_in_dir(dir, schema).map_err(|e| engine(dir, e))?;
                (index, Opened::Fresh { reason })
            }
        };
        crate::analysis::register(&index);
        let fields = Fields::from_schema(&index.schema()).ok_or_else(|| engine(dir, "schema"))?;
        let threads = threads.clamp(1, 8);
        let writer = index
            .writer_with_num_threads(threads, WRITER_MEMORY * threads)
            .map_err(|e| engine(dir, e))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| engine(dir, e))?;
        Ok((
            SearchIndex {
                path: dir.to_owned(),
                index,
                reader,
                fields,
                writer: Some(Mutex::new(crate::WriterSlot::new(writer, threads))),
                _lock: Some(lock),
            },
            opened,
        ))
    }
}

/// Ok(None) when another process holds the lock.
fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Opens an index and checks it is whole and of the current format. The
/// error is the reason it cannot be used.
fn open_existing(dir: &Path) -> std::result::Result<Index, String> {
    if !dir.join("meta.json").exists() {
        return Err("no index yet".to_owned());
    }
    let mmap = MmapDirectory::open(dir).map_err(|e| format!("cannot open: {e}"))?;
    let index = Index::open(mmap).map_err(|e| format!("corrupt: {e}"))?;
    let (want, _) = Fields::schema();
    if index.schema() != want {
        return Err("built by another version (schema differs)".to_owned());
    }
    let metas = index.load_metas().map_err(|e| format!("corrupt: {e}"))?;
    let format_ok = metas
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<crate::Checkpoint>(p).ok())
        .is_some_and(|c| c.format == FORMAT);
    if !format_ok && !metas.segments.is_empty() {
        return Err("built by another version (format differs)".to_owned());
    }
    // Opening a reader opens every segment file: a missing or truncated
    // segment shows here rather than at the first search. tantivy may panic
    // on a damaged file instead of returning an error, so contain that too.
    let probe = crate::contain_panic(|| {
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| format!("corrupt: {e}"))?;
        for seg in reader.searcher().segment_readers() {
            seg.get_store_reader(0)
                .map_err(|e| format!("corrupt: segment {}: {e}", seg.segment_id()))?;
        }
        Ok::<(), String>(())
    });
    match probe {
        Some(r) => r?,
        None => return Err("corrupt: a segment file is damaged".to_owned()),
    }
    Ok(index)
}

fn open_reader(dir: &Path) -> Result<(SearchIndex, Opened)> {
    let index = open_existing(dir).map_err(|reason| {
        IndexError::Unavailable(format!(
            "another process owns it and it cannot be read ({reason}); it is rebuilt by its owner"
        ))
    })?;
    crate::analysis::register(&index);
    let fields = Fields::from_schema(&index.schema()).ok_or_else(|| engine(dir, "schema"))?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e| engine(dir, e))?;
    Ok((
        SearchIndex {
            path: dir.to_owned(),
            index,
            reader,
            fields,
            writer: None,
            _lock: None,
        },
        Opened::Existing,
    ))
}

fn engine(dir: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Engine {
        path: dir.display().to_string(),
        cause: e.to_string(),
    }
}

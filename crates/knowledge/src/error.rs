//! The knowledge domain's own failures (its search index, an ingest that
//! read nothing), classified for the kernel's one error table.

use kontextual_index::IndexError;

use crate::{DomainError, Error, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Index(#[from] IndexError),
    /// An ingest in which not one file could be read or parsed; each file's
    /// reason is in the run's report. Reading may succeed later (a mount
    /// comes back, a file is fixed), so it counts as I/O and is retried.
    #[error("no file could be ingested ({failed} failed){first}")]
    NothingIngested { failed: u64, first: String },
}

impl KnowledgeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KnowledgeError::Index(e) => match e {
                IndexError::Query(_) => ErrorKind::InvalidInput,
                IndexError::Unavailable(_) | IndexError::NotOwner(_) => ErrorKind::Unavailable,
                IndexError::Io { cause, .. } if kontextual_kernel::is_storage_full(cause) => {
                    ErrorKind::StorageFull
                }
                IndexError::Io { .. } => ErrorKind::Io,
                // tantivy reports a full disk as text (an I/O error inside
                // its own error type, or a writer the failure killed)
                IndexError::Engine { cause, .. } if cause.contains("No space left on device") => {
                    ErrorKind::StorageFull
                }
                _ => ErrorKind::Internal,
            },
            KnowledgeError::NothingIngested { .. } => ErrorKind::Io,
        }
    }
}

impl From<KnowledgeError> for Error {
    fn from(e: KnowledgeError) -> Self {
        Error::Domain(DomainError::new(e.kind(), e))
    }
}

/// A search-index failure as a service error (the kernel knows no index).
pub(crate) fn index_err(e: IndexError) -> Error {
    KnowledgeError::Index(e).into()
}

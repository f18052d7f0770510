//! Store errors: typed, with a small `kind()` for control flow. Messages name
//! the thing that was wrong, so the CLI and HTTP layers can show them as is.

use std::path::PathBuf;

use kontextual_model::ModelError;

/// Coarse error classes callers branch on (exit codes, HTTP statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    Conflict,
    DanglingReference,
    InvalidInput,
    Locked,
    NotAStore,
    SchemaMismatch,
    Corrupted,
    Io,
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error(
        "conflict on {what}: expected revision {expected}, but the current revision is {actual}"
    )]
    Conflict {
        what: String,
        expected: u64,
        actual: String,
    },
    #[error("dangling reference: {what}")]
    DanglingReference { what: String },
    /// A state change that the current state does not allow (a job that is
    /// not running, a lease that was lost).
    #[error("{what}: {why}")]
    Refused { what: String, why: String },
    #[error("{what} is under legal hold ({reason}); release the hold first")]
    Held { what: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] ModelError),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(
        "the store is locked by another writer (waited {waited_ms} ms); retry, or stop the other process"
    )]
    Locked { waited_ms: u64 },
    #[error("no Kontextual store at {}: run `kontextual init` to create one", path.display())]
    NotInitialized { path: PathBuf },
    #[error("{} is not a Kontextual store: {reason}", path.display())]
    NotAStore { path: PathBuf, reason: String },
    /// The store's server cannot be used right now: unreachable, refusing
    /// the login, shutting down, or it ended the session.
    #[error("{what} is unavailable: {reason}")]
    Unavailable { what: String, reason: String },
    #[error(
        "the store's schema is version {found}, newer than this kontextual supports ({supported}); upgrade kontextual"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error(
        "the store's schema is version {current}, this kontextual expects {latest}: run `kontextual db migrate`"
    )]
    MigrationsPending { current: u32, latest: u32 },
    #[error("the store is corrupted: {0}")]
    Corrupted(String),
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    #[error("storage engine error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            StoreError::Conflict { .. } | StoreError::Held { .. } | StoreError::Refused { .. } => {
                ErrorKind::Conflict
            }
            StoreError::DanglingReference { .. } => ErrorKind::DanglingReference,
            StoreError::Invalid(_) | StoreError::InvalidInput(_) => ErrorKind::InvalidInput,
            StoreError::Locked { .. } => ErrorKind::Locked,
            StoreError::NotInitialized { .. }
            | StoreError::NotAStore { .. }
            | StoreError::Unavailable { .. } => ErrorKind::NotAStore,
            StoreError::SchemaTooNew { .. } | StoreError::MigrationsPending { .. } => {
                ErrorKind::SchemaMismatch
            }
            StoreError::Corrupted(_) => ErrorKind::Corrupted,
            StoreError::Io { .. } => ErrorKind::Io,
            StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }

    pub fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            cause,
        }
    }

    /// A copy for fan-out (one failed group commit answers several callers).
    pub fn duplicate(&self) -> Self {
        match self {
            StoreError::Locked { waited_ms } => StoreError::Locked {
                waited_ms: *waited_ms,
            },
            StoreError::Io { context, cause } => StoreError::Io {
                context: context.clone(),
                cause: std::io::Error::new(cause.kind(), cause.to_string()),
            },
            other => StoreError::Internal(other.to_string()),
        }
    }
}

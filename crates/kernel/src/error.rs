//! Service errors: what went wrong, in words a user can act on.

use kontextual_model::ModelError;
use kontextual_store::{ErrorKind as StoreKind, StoreError};

use crate::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classes of failure; [`ErrorKind::code`] gives each its code,
/// HTTP status, exit code and retryability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    NotFound,
    Conflict,
    Denied,
    /// No valid credentials (HTTP 401).
    Unauthenticated,
    Unavailable,
    Corrupted,
    Io,
    /// The disk (or the database's) is full: writes fail until space is
    /// freed; reads go on.
    StorageFull,
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] ModelError),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("permission denied: {actor} may not {permission} {target}")]
    Denied {
        actor: String,
        permission: &'static str,
        target: String,
    },
    /// A failure a domain classified itself (its engine's errors: the
    /// search index, a package reader), so the kernel needs no domain's
    /// error types to map it.
    #[error(transparent)]
    Domain(DomainError),
    #[error("{0}")]
    Unauthenticated(String),
    /// Work stopped at a safe point because its job was cancelled,
    /// quarantined or given back at shutdown.
    #[error("stopped: {0}")]
    Stopped(String),
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// A failure of Kontextual itself — a panic, a broken invariant, a
    /// missing operating-system facility — never of the caller's input.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(e) => match e.kind() {
                StoreKind::NotFound => ErrorKind::NotFound,
                StoreKind::AlreadyExists | StoreKind::Conflict => ErrorKind::Conflict,
                StoreKind::DanglingReference | StoreKind::InvalidInput => ErrorKind::InvalidInput,
                StoreKind::Locked | StoreKind::NotAStore | StoreKind::SchemaMismatch => {
                    ErrorKind::Unavailable
                }
                StoreKind::Corrupted => ErrorKind::Corrupted,
                StoreKind::Io if storage_full(e) => ErrorKind::StorageFull,
                StoreKind::Io => ErrorKind::Io,
                _ => ErrorKind::Internal,
            },
            Error::Invalid(_) | Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Denied { .. } => ErrorKind::Denied,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::Stopped(_) => ErrorKind::Conflict,
            Error::Io { cause, .. } if is_storage_full(cause) => ErrorKind::StorageFull,
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Domain(e) => e.kind,
        }
    }

    /// Stable code, HTTP status and exit code of this error.
    pub fn code(&self) -> ErrorCode {
        self.kind().code()
    }

    /// Whether trying the same thing again may succeed (see [`ErrorCode::retryable`]).
    pub fn retryable(&self) -> bool {
        self.code().retryable
    }

    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal(what.into())
    }

    pub fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause,
        }
    }
}

/// Whether an I/O failure is a full disk (ENOSPC, EDQUOT, or the engines'
/// own "disk full").
pub fn is_storage_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || e.to_string().contains("No space left on device")
}

fn storage_full(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { cause, .. } if is_storage_full(cause))
}

/// A domain's own failure with the kind the domain gave it. It shows and
/// chains exactly as the wrapped error does.
#[derive(Debug)]
pub struct DomainError {
    kind: ErrorKind,
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl DomainError {
    pub fn new(kind: ErrorKind, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        DomainError {
            kind,
            error: Box::new(error),
        }
    }

    /// The wrapped error, for a domain that looks at its own failures.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for DomainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

//! The one error table: for every kind of failure, the stable code both
//! surfaces show, the HTTP status, the CLI's exit code and whether trying
//! the same thing again may succeed. The server's problem answers and the
//! CLI's exit codes read this table; neither keeps a mapping of its own.

use crate::ErrorKind;

/// How one kind of failure appears on every surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    /// Stable machine-readable name: `code` in a problem+json answer and in
    /// a `--json` error object.
    pub code: &'static str,
    /// Status of the HTTP problem answer.
    pub http_status: u16,
    /// The CLI's exit code, as listed in the README's "Exit codes".
    pub exit_code: u8,
    /// The same request may succeed later, unchanged: the fault lies in the
    /// system (unreachable, I/O, a bug, corruption an operator repairs),
    /// not in the request. The worker retries exactly these failures.
    pub retryable: bool,
}

const fn row(code: &'static str, http_status: u16, exit_code: u8, retryable: bool) -> ErrorCode {
    ErrorCode {
        code,
        http_status,
        exit_code,
        retryable,
    }
}

impl ErrorKind {
    /// Every kind, in the order of the README's exit-code table.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Denied,
        ErrorKind::Unauthenticated,
        ErrorKind::Corrupted,
        ErrorKind::Io,
        ErrorKind::StorageFull,
        ErrorKind::Internal,
    ];

    /// The table itself. An exhaustive match, so a new kind cannot exist
    /// without its row.
    pub const fn code(self) -> ErrorCode {
        match self {
            ErrorKind::InvalidInput => row("invalid_input", 400, 2, false),
            ErrorKind::NotFound => row("not_found", 404, 3, false),
            ErrorKind::Conflict => row("conflict", 409, 4, false),
            // One code for the store and the search index alike: the HTTP
            // API has always answered `unavailable`, and its 503 is
            // documented as "the store or the search index is not reachable".
            ErrorKind::Unavailable => row("unavailable", 503, 5, true),
            ErrorKind::Denied => row("permission_denied", 403, 6, false),
            // The CLI has no exit code of its own for a refused key: both
            // mean "you may not", so both exit 6.
            ErrorKind::Unauthenticated => row("unauthenticated", 401, 6, false),
            ErrorKind::Corrupted => row("corrupted", 500, 7, true),
            // A failed read or write of a file or the disk is not a bug:
            // exit 8, not 10, and its own code on both surfaces (over HTTP
            // it is still a 500 whose detail is withheld).
            ErrorKind::Io => row("io_error", 500, 8, true),
            // A full disk is a condition of the system, not a bug or a
            // failed device: 507 Insufficient Storage, exit 9, retryable
            // once space is freed.
            ErrorKind::StorageFull => row("storage_full", 507, 9, true),
            ErrorKind::Internal => row("internal", 500, 10, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_names_one_kind() {
        for a in ErrorKind::ALL {
            for b in ErrorKind::ALL {
                if a != b {
                    assert_ne!(a.code().code, b.code().code, "{a:?} and {b:?}");
                }
            }
        }
    }

    /// The failures of a request itself are never retried; those of the
    /// system are.
    #[test]
    fn only_failures_of_the_system_are_retryable() {
        let retryable: Vec<ErrorKind> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.code().retryable)
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorKind::Unavailable,
                ErrorKind::Corrupted,
                ErrorKind::Io,
                ErrorKind::StorageFull,
                ErrorKind::Internal
            ]
        );
    }

    /// X5: the exit codes are the ones the README promises, each with the
    /// meaning it gives.
    #[test]
    fn x5_exit_codes_are_the_documented_ones() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("### Exit codes")
            .nth(1)
            .expect("the README lists exit codes");
        for (kind, meaning) in [
            (ErrorKind::InvalidInput, "invalid input"),
            (ErrorKind::NotFound, "not found"),
            (ErrorKind::Conflict, "conflict"),
            (ErrorKind::Unavailable, "store unavailable"),
            (ErrorKind::Denied, "permission denied"),
            (ErrorKind::Unauthenticated, "permission denied"),
            (ErrorKind::Corrupted, "corruption"),
            (ErrorKind::Io, "I/O error"),
            (ErrorKind::StorageFull, "storage full"),
            (ErrorKind::Internal, "internal error"),
        ] {
            let line = format!("| {} | {meaning}", kind.code().exit_code);
            assert!(
                table.contains(&line),
                "{kind:?}: the README has no row `{line}`"
            );
        }
    }
}

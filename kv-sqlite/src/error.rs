//! The one place where SQLite's errors become [`kv_core::Error`]s.

use std::sync::Arc;

use rusqlite::ErrorCode;

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "sqlite";

/// A failure of the SQLite engine or of the database file.
///
/// It reaches users inside [`kv_core::Error::Backend`] (as the `source`),
/// except for `SQLITE_BUSY`/`SQLITE_LOCKED`, which become the retryable
/// [`kv_core::Error::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The engine reported an error.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by an incompatible version of Deno KV or kv.
    #[error(
        "unsupported database schema: migration_state says version {found}, \
         this build reads only version {expected}"
    )]
    SchemaVersion {
        /// The version stored in the file.
        found: i64,
        /// The version this build reads.
        expected: i64,
    },
    /// A read-only open named a file that does not exist.
    #[error("no database at {0} (a read-only open creates nothing)")]
    Missing(std::path::PathBuf),
    /// A read-only open of a WAL database whose `-wal` or `-shm` file is
    /// missing, in a directory this process may not write.
    #[error(
        "cannot read {0} read-only: SQLite needs the -wal and -shm files beside a WAL \
         database and may not create them in its directory; make the directory writable \
         or open the file once with write access first"
    )]
    ReadOnlyDirectory(std::path::PathBuf),
    /// A database opened read-only has no Deno KV schema to read (a
    /// read-only open creates nothing).
    #[error("{0} holds no Deno KV database (opened read-only, so none was created)")]
    NoSchema(std::path::PathBuf),
    /// SQLite refused `PRAGMA synchronous = FULL`, so commits would not be
    /// durable.
    #[error("PRAGMA synchronous is {0} after setting it to FULL (2)")]
    NotDurable(i64),
    /// SQLite refused to put the file in WAL mode.
    #[error("PRAGMA journal_mode is {0:?} after setting it to \"wal\"")]
    NotWal(String),
    /// A stored row cannot be decoded (unknown value encoding, bad LE64).
    #[error("a stored value cannot be decoded: {0}")]
    Value(#[source] kv_core::Error),
    /// The same failure reported to every write of a failed group commit.
    #[error(transparent)]
    Shared(Arc<SqliteError>),
}

impl SqliteError {
    /// Whether SQLite reported `SQLITE_BUSY` or `SQLITE_LOCKED` (another
    /// connection holds a lock) or `SQLITE_PROTOCOL` (a WAL reader lost the
    /// race for a read lock many times in a row): retrying later may succeed.
    pub fn is_busy(&self) -> bool {
        match self {
            SqliteError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(
                    ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::FileLockingProtocolFailed
                )
            ),
            SqliteError::Shared(e) => e.is_busy(),
            _ => false,
        }
    }
}

impl From<SqliteError> for kv_core::Error {
    fn from(e: SqliteError) -> Self {
        if e.is_busy() {
            return kv_core::Error::Unavailable {
                backend: BACKEND.into(),
                message: e.to_string(),
            };
        }
        kv_core::Error::backend(BACKEND, e)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::ffi;

    use super::*;

    fn failure(code: i32) -> SqliteError {
        SqliteError::Sqlite(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))
    }

    /// Lock contention is transient and reaches users as the retryable
    /// `Unavailable`; anything else is a backend failure.
    #[test]
    fn lock_contention_is_retryable() {
        for code in [ffi::SQLITE_BUSY, ffi::SQLITE_LOCKED, ffi::SQLITE_PROTOCOL] {
            let e = failure(code);
            assert!(e.is_busy(), "{e}");
            let shared = SqliteError::Shared(Arc::new(failure(code)));
            assert!(matches!(
                kv_core::Error::from(shared),
                kv_core::Error::Unavailable { .. }
            ));
        }
        for code in [ffi::SQLITE_CORRUPT, ffi::SQLITE_IOERR, ffi::SQLITE_FULL] {
            let e = failure(code);
            assert!(!e.is_busy(), "{e}");
            assert!(matches!(
                kv_core::Error::from(e),
                kv_core::Error::Backend { .. }
            ));
        }
    }
}

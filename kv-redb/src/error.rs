//! The one place where redb's errors become [`kv_core::Error`]s.

use std::path::PathBuf;
use std::sync::Arc;

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "redb";

/// A failure of the redb engine or of the database file.
///
/// It reaches users inside [`kv_core::Error::Backend`] (as the `source`,
/// which callers may downcast to this type), except for redb's
/// "database closed", which becomes [`kv_core::Error::Closed`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbError {
    /// The file is already open, by another handle in this process or by
    /// another process: redb locks its file exclusively.
    #[error(
        "the database file {} is already open (by this process or another); \
         redb allows one open handle per file: stop the other process using \
         it (within one program, share one RedbBackend: it is cheap to clone)",
        path.display()
    )]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The engine reported an error.
    #[error(transparent)]
    Redb(#[from] redb::Error),
    /// The file holds kv data in a layout this build does not read.
    #[error(
        "unsupported kv-redb file format: the file says version {found}, \
         this build reads only version {expected}"
    )]
    FormatVersion {
        /// The version stored in the file.
        found: u64,
        /// The version this build reads.
        expected: u64,
    },
    /// A stored record cannot be decoded (truncated, unknown value
    /// encoding, bad LE64 value).
    #[error("a stored record cannot be decoded: {0}")]
    Record(String),
    /// The same failure reported to every write of a failed group commit.
    #[error(transparent)]
    Shared(Arc<RedbError>),
}

impl RedbError {
    /// Whether this is [`RedbError::AlreadyOpen`]: another handle holds the
    /// file's lock.
    pub fn is_already_open(&self) -> bool {
        match self {
            RedbError::AlreadyOpen { .. } => true,
            RedbError::Shared(e) => e.is_already_open(),
            _ => false,
        }
    }

    /// Converts the error of opening the file at `path`, naming the file
    /// when it is locked.
    pub(crate) fn open(e: redb::DatabaseError, path: &std::path::Path) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => RedbError::AlreadyOpen {
                path: path.to_path_buf(),
            },
            e => RedbError::Redb(e.into()),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            RedbError::Redb(redb::Error::DatabaseClosed) => true,
            RedbError::Shared(e) => e.is_closed(),
            _ => false,
        }
    }
}

macro_rules! from_redb {
    ($($ty:ty),*) => {
        $(impl From<$ty> for RedbError {
            fn from(e: $ty) -> Self {
                RedbError::Redb(e.into())
            }
        })*
    };
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<RedbError> for kv_core::Error {
    fn from(e: RedbError) -> Self {
        if e.is_closed() {
            return kv_core::Error::Closed;
        }
        kv_core::Error::backend(BACKEND, e)
    }
}

//! The error type shared by every crate of kv.

use std::fmt;

/// Which limit was exceeded; `Display` gives Deno's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// A key written or checked is over 2048 bytes.
    WriteKeySize,
    /// A key read, a range bound or a watched key is over 2049 bytes.
    ReadKeySize,
    /// A value is over 65536 bytes.
    ValueSize,
    /// An enqueued payload is over 65536 bytes.
    EnqueuePayloadSize,
    /// More than 10 ranges (or `get_many` keys) in one read.
    Ranges,
    /// The range limits of one read add up to more than 1000.
    Entries,
    /// More than 100 checks in one commit.
    Checks,
    /// More than 1000 mutations and enqueues in one commit.
    Mutations,
    /// A commit's total size is over 819200 bytes.
    TotalMutationSize,
    /// A commit's value-carrying keys add up to more than 81920 bytes.
    TotalKeySize,
    /// More than 10 keys in one watch.
    WatchKeys,
    /// More than 10 dead-letter keys on one queue message.
    UndeliveredKeys,
    /// More than 5 backoff intervals on one queue message.
    BackoffIntervals,
    /// A backoff interval is over one hour.
    BackoffInterval,
    /// A queue delay is over 30 days.
    Delay,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 15] = [
        Limit::WriteKeySize,
        Limit::ReadKeySize,
        Limit::ValueSize,
        Limit::EnqueuePayloadSize,
        Limit::Ranges,
        Limit::Entries,
        Limit::Checks,
        Limit::Mutations,
        Limit::TotalMutationSize,
        Limit::TotalKeySize,
        Limit::WatchKeys,
        Limit::UndeliveredKeys,
        Limit::BackoffIntervals,
        Limit::BackoffInterval,
        Limit::Delay,
    ];

    /// A stable machine-readable name, e.g. `"checks"`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::WriteKeySize => "write-key-size",
            Limit::ReadKeySize => "read-key-size",
            Limit::ValueSize => "value-size",
            Limit::EnqueuePayloadSize => "enqueue-payload-size",
            Limit::Ranges => "ranges",
            Limit::Entries => "entries",
            Limit::Checks => "checks",
            Limit::Mutations => "mutations",
            Limit::TotalMutationSize => "total-mutation-size",
            Limit::TotalKeySize => "total-key-size",
            Limit::WatchKeys => "watch-keys",
            Limit::UndeliveredKeys => "undelivered-keys",
            Limit::BackoffIntervals => "backoff-intervals",
            Limit::BackoffInterval => "backoff-interval",
            Limit::Delay => "delay",
        }
    }

    /// The limit with this [`Limit::name`].
    pub fn from_name(name: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.name() == name)
    }

    fn describe(self) -> &'static str {
        match self {
            Limit::WriteKeySize => "Key too large for write",
            Limit::ReadKeySize => "Key too large for read",
            Limit::ValueSize => "Value too large",
            Limit::EnqueuePayloadSize => "enqueue payload too large",
            Limit::Ranges => "Too many ranges",
            Limit::Entries => "Too many entries",
            Limit::Checks => "Too many checks",
            Limit::Mutations => "Too many mutations",
            Limit::TotalMutationSize => "Total mutation size too large",
            Limit::TotalKeySize => "Total key size too large",
            Limit::WatchKeys => "Too many keys",
            Limit::UndeliveredKeys => "Too many dead letter keys",
            Limit::BackoffIntervals => "Too many backoff intervals",
            Limit::BackoffInterval => "Backoff interval too large",
            Limit::Delay => "Delay too large",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Limit::WriteKeySize
            | Limit::ReadKeySize
            | Limit::ValueSize
            | Limit::EnqueuePayloadSize
            | Limit::TotalMutationSize
            | Limit::TotalKeySize => " bytes",
            Limit::BackoffInterval | Limit::Delay => " ms",
            _ => "",
        }
    }
}

/// Every error kv returns. The variant says what the caller can do about it:
/// fix the request (limits, keys, selectors, type mismatches), stop
/// (`ReadOnly`, `Closed`, `Unsupported`), retry (`Unavailable`), or report
/// (`Backend`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A limit was exceeded. Nothing was read or written.
    #[error("{} (max {max}{unit}): got {actual}", limit.describe(), unit = limit.unit())]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The allowed maximum.
        max: u64,
        /// What the request had.
        actual: u64,
    },
    /// A key cannot be used: empty where a write needs a part, undecodable
    /// bytes, an oversized integer part, or a key in the reserved system space.
    #[error("{0}")]
    InvalidKey(String),
    /// A versionstamp is not 10 bytes / 20 hex characters.
    #[error("invalid versionstamp: {0}")]
    InvalidVersionstamp(String),
    /// A value is malformed (unknown encoding, LE64 data not 8 bytes, …).
    #[error("{0}")]
    InvalidValue(String),
    /// A list selector is not valid (Deno's wording).
    #[error("{0}")]
    InvalidSelector(&'static str),
    /// A list cursor is malformed or outside the selector.
    #[error("{0}")]
    InvalidCursor(&'static str),
    /// Some other argument is out of range (limits of 0, bad delays, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// `sum`, `min` or `max` met a value or operand of the wrong type, or a
    /// bounded sum left its range. The whole commit was rolled back.
    #[error("{0}")]
    TypeMismatch(String),
    /// The caller is not allowed to do this (a missing or wrong access
    /// token, for example).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The database does not accept writes.
    #[error("this database is read only")]
    ReadOnly,
    /// The database or handle was closed.
    #[error("the database is closed")]
    Closed,
    /// The backend cannot do this at all (a true gap, not a transient fault).
    #[error("{backend} does not support {op}")]
    Unsupported {
        /// The backend's name.
        backend: String,
        /// The unsupported operation.
        op: &'static str,
    },
    /// The backend cannot answer now; retrying later may succeed.
    #[error("{backend} is unavailable: {message}")]
    Unavailable {
        /// The backend's name.
        backend: String,
        /// What went wrong.
        message: String,
    },
    /// The storage engine failed.
    #[error("{backend} failed: {source}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// Wraps an engine error.
    pub fn backend(
        backend: impl fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            backend: backend.to_string(),
            source: source.into(),
        }
    }

    /// The same error again, for an error that must be returned more than
    /// once (a failed `AtomicOperation` every time it is committed). An
    /// engine's error becomes its message; every other variant is copied.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::LimitExceeded { limit, max, actual } => Error::LimitExceeded {
                limit: *limit,
                max: *max,
                actual: *actual,
            },
            Error::InvalidKey(m) => Error::InvalidKey(m.clone()),
            Error::InvalidVersionstamp(m) => Error::InvalidVersionstamp(m.clone()),
            Error::InvalidValue(m) => Error::InvalidValue(m.clone()),
            Error::InvalidSelector(m) => Error::InvalidSelector(m),
            Error::InvalidCursor(m) => Error::InvalidCursor(m),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::TypeMismatch(m) => Error::TypeMismatch(m.clone()),
            Error::PermissionDenied(m) => Error::PermissionDenied(m.clone()),
            Error::ReadOnly => Error::ReadOnly,
            Error::Closed => Error::Closed,
            Error::Unsupported { backend, op } => Error::Unsupported {
                backend: backend.clone(),
                op,
            },
            Error::Unavailable { backend, message } => Error::Unavailable {
                backend: backend.clone(),
                message: message.clone(),
            },
            Error::Backend { backend, source } => Error::backend(backend, source.to_string()),
        }
    }

    pub(crate) fn limit(limit: Limit, max: usize, actual: usize) -> Self {
        Error::LimitExceeded {
            limit,
            max: max as u64,
            actual: actual as u64,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

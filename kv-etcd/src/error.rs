//! The one place where etcd's errors become [`kv_core::Error`]s.

use etcd_client::Error as ClientError;
use tonic::Code;

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "etcd";

/// A failure of the etcd cluster or of the data stored in it.
///
/// It reaches users inside [`kv_core::Error::Backend`] (as the `source`,
/// which callers may downcast to this type). Transient faults (no leader, a
/// member down, a timeout) become [`kv_core::Error::Unavailable`] instead,
/// and a cluster whose `--max-txn-ops` is too low for a commit gives
/// [`kv_core::Error::LimitExceeded`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The etcd client or server reported an error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A stored record cannot be decoded (not written by kv, or by a newer
    /// version of it).
    #[error("a stored record at {key:?} cannot be decoded: {reason}")]
    Record {
        /// The etcd key, lossily as text.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cluster refused a request as too large: its members run with a
    /// `--max-request-bytes` below what this commit needs.
    #[error(
        "the etcd cluster refused a commit of about {bytes} bytes as too large; \
         start every member with --max-request-bytes=1572864 (etcd's default) or more \
         so that Deno's 800 KiB commits fit"
    )]
    RequestTooLarge {
        /// The approximate size of the refused request.
        bytes: usize,
    },
}

/// What a failed etcd call means for the caller.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The request never left: connecting to the member chosen for it
    /// failed. Safe to send again, even for a commit.
    NotSent(String),
    /// Worth retrying: no leader, a member down, a timeout, a lost
    /// connection.
    Transient(String),
    /// The request has more operations than the cluster's `--max-txn-ops`.
    TooManyOps,
    /// The request is over the cluster's `--max-request-bytes`.
    TooLarge,
    /// The lease a put referred to has expired or was revoked.
    LeaseNotFound,
    /// A read at a revision that was compacted away.
    Compacted,
    /// A read at a revision this member has not applied yet.
    FutureRevision,
    /// Anything else.
    Other,
}

/// Classifies an etcd client error.
pub(crate) fn classify(e: &ClientError) -> Fault {
    match e {
        ClientError::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("too many operations in txn request") {
                return Fault::TooManyOps;
            }
            if message.contains("request is too large") {
                return Fault::TooLarge;
            }
            if message.contains("requested lease not found") {
                return Fault::LeaseNotFound;
            }
            if message.contains("required revision has been compacted") {
                return Fault::Compacted;
            }
            if message.contains("required revision is a future revision") {
                return Fault::FutureRevision;
            }
            if status.code() == Code::Unavailable && is_connect_failure(message) {
                return Fault::NotSent(message.to_owned());
            }
            match status.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::ResourceExhausted
                    if !message.contains("space exceeded") =>
                {
                    Fault::Transient(format!("{message} ({:?})", status.code()))
                }
                _ if is_transient_message(message) => Fault::Transient(message.to_owned()),
                _ => Fault::Other,
            }
        }
        ClientError::TransportError(e) => Fault::Transient(e.to_string()),
        ClientError::IoError(e) => Fault::Transient(e.to_string()),
        ClientError::WatchError(e) => Fault::Transient(e.to_string()),
        _ => Fault::Other,
    }
}

fn is_connect_failure(message: &str) -> bool {
    [
        "tcp connect error",
        "error trying to connect",
        "Connection refused",
    ]
    .iter()
    .any(|m| message.contains(m))
}

fn is_transient_message(message: &str) -> bool {
    [
        "no leader",
        "leader changed",
        "request timed out",
        "timed out",
        "timeout",
        "too many requests",
        "server stopped",
        "not capable",
        "connection",
        "transport",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Converts an etcd client error that the caller does not handle itself.
pub(crate) fn convert(e: ClientError) -> kv_core::Error {
    match classify(&e) {
        Fault::Transient(message) | Fault::NotSent(message) => kv_core::Error::Unavailable {
            backend: BACKEND.into(),
            message,
        },
        Fault::FutureRevision => kv_core::Error::Unavailable {
            backend: BACKEND.into(),
            message: "the member serving the read is behind the cluster".into(),
        },
        Fault::Compacted => kv_core::Error::Unavailable {
            backend: BACKEND.into(),
            message: "the revision being read was compacted meanwhile".into(),
        },
        _ => kv_core::Error::backend(BACKEND, EtcdError::Client(e)),
    }
}

/// An [`kv_core::Error::Unavailable`] with `message`.
pub(crate) fn unavailable(message: impl Into<String>) -> kv_core::Error {
    kv_core::Error::Unavailable {
        backend: BACKEND.into(),
        message: message.into(),
    }
}

impl From<EtcdError> for kv_core::Error {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Client(e) => convert(e),
            e => kv_core::Error::backend(BACKEND, e),
        }
    }
}

//! The one table between `kv_core::Error` and HTTP: the server encodes an
//! error as a status and an error kind, the client decodes the kind back
//! into the same variant, both through [`Kind`].
//!
//! Every client mistake is a 4xx (Deno's client retries 5xx forever); 5xx
//! is kept for real server faults. Our server names the error kind in the
//! `x-kv-error` header so that our client can return the same variant the
//! server saw; other clients just show the plain-text body, which is the
//! error's own message. Answers without the header (denokv, Deploy) are
//! decoded by their status alone.

// The server encodes, the client decodes.
#![cfg_attr(
    not(all(feature = "client", feature = "server")),
    allow(dead_code, unused_imports)
)]

use std::sync::{Mutex, PoisonError};

use http::StatusCode;
use kv_core::{Error, Limit};

#[cfg(test)]
mod tests;

/// Response header carrying the error kind.
pub(crate) const ERROR_KIND_HEADER: &str = "x-kv-error";

/// An error kind: a row of the table, named in the `x-kv-error` header.
/// Some kinds add details after a `/`: `limit/checks/100/101` (the limit,
/// its maximum and the size seen), `unsupported/sqlite` and
/// `unavailable/sqlite` (the server's backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Limit,
    InvalidKey,
    InvalidVersionstamp,
    InvalidValue,
    /// Also selectors and cursors, whose messages are static in kv-core
    /// (a server never receives either: they become byte ranges first).
    InvalidArgument,
    TypeMismatch,
    ReadOnly,
    Unsupported,
    PermissionDenied,
    /// Also `Closed`: the server's database closing is the server going
    /// away, which its clients retry.
    Unavailable,
    /// A backend failure; its details stay in the server's log.
    Internal,
    /// Refusals by the HTTP layer, which no `kv_core::Error` names.
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    /// A peer over its budget of failed logins (with `Retry-After`); a
    /// client reads it as `PermissionDenied`, which it is.
    RateLimited,
}

/// A row of the table.
struct Row {
    name: &'static str,
    status: StatusCode,
    /// Whether kv's client retries an answer of this kind before returning
    /// it (5xx, as every KV Connect client does).
    retried: bool,
}

impl Kind {
    /// Every kind.
    pub(crate) const ALL: [Kind; 15] = [
        Kind::Limit,
        Kind::InvalidKey,
        Kind::InvalidVersionstamp,
        Kind::InvalidValue,
        Kind::InvalidArgument,
        Kind::TypeMismatch,
        Kind::ReadOnly,
        Kind::Unsupported,
        Kind::PermissionDenied,
        Kind::Unavailable,
        Kind::Internal,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::PayloadTooLarge,
        Kind::RateLimited,
    ];

    /// The table (docs/kv-connect.md shows it too).
    const fn row(self) -> Row {
        const fn row(name: &'static str, status: StatusCode, retried: bool) -> Row {
            Row {
                name,
                status,
                retried,
            }
        }
        use StatusCode as S;
        match self {
            Kind::Limit => row("limit", S::BAD_REQUEST, false),
            Kind::InvalidKey => row("invalid-key", S::BAD_REQUEST, false),
            Kind::InvalidVersionstamp => row("invalid-versionstamp", S::BAD_REQUEST, false),
            Kind::InvalidValue => row("invalid-value", S::BAD_REQUEST, false),
            Kind::InvalidArgument => row("invalid-argument", S::BAD_REQUEST, false),
            Kind::TypeMismatch => row("type-mismatch", S::BAD_REQUEST, false),
            Kind::ReadOnly => row("read-only", S::BAD_REQUEST, false),
            Kind::Unsupported => row("unsupported", S::BAD_REQUEST, false),
            Kind::PermissionDenied => row("permission-denied", S::UNAUTHORIZED, false),
            Kind::Unavailable => row("unavailable", S::SERVICE_UNAVAILABLE, true),
            Kind::Internal => row("internal", S::INTERNAL_SERVER_ERROR, true),
            Kind::NotFound => row("not-found", S::NOT_FOUND, false),
            Kind::MethodNotAllowed => row("method-not-allowed", S::METHOD_NOT_ALLOWED, false),
            Kind::PayloadTooLarge => row("payload-too-large", S::PAYLOAD_TOO_LARGE, false),
            Kind::RateLimited => row("rate-limited", S::TOO_MANY_REQUESTS, false),
        }
    }

    /// The kind's name in the `x-kv-error` header.
    pub(crate) fn name(self) -> &'static str {
        self.row().name
    }

    /// The HTTP status of an answer of this kind.
    pub(crate) fn status(self) -> StatusCode {
        self.row().status
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of `e`.
    pub(crate) fn of(e: &Error) -> Kind {
        match e {
            Error::LimitExceeded { .. } => Kind::Limit,
            Error::InvalidKey(_) => Kind::InvalidKey,
            Error::InvalidVersionstamp(_) => Kind::InvalidVersionstamp,
            Error::InvalidValue(_) => Kind::InvalidValue,
            Error::InvalidSelector(_) | Error::InvalidCursor(_) | Error::InvalidArgument(_) => {
                Kind::InvalidArgument
            }
            Error::TypeMismatch(_) => Kind::TypeMismatch,
            Error::ReadOnly => Kind::ReadOnly,
            Error::Unsupported { .. } => Kind::Unsupported,
            Error::PermissionDenied(_) => Kind::PermissionDenied,
            Error::Closed | Error::Unavailable { .. } => Kind::Unavailable,
            _ => Kind::Internal,
        }
    }

    /// The error a client returns for an answer of this kind: `detail` is
    /// what follows the name in the header, `message` the answer's body
    /// (the server's error message).
    fn decode(self, detail: Option<&str>, message: String) -> Error {
        match self {
            Kind::Limit => detail
                .and_then(limit)
                .unwrap_or(Error::InvalidArgument(message)),
            Kind::InvalidKey => Error::InvalidKey(message),
            Kind::InvalidVersionstamp => {
                Error::InvalidVersionstamp(strip(message, "invalid versionstamp: "))
            }
            Kind::InvalidValue => Error::InvalidValue(message),
            Kind::TypeMismatch => Error::TypeMismatch(message),
            Kind::ReadOnly => Error::ReadOnly,
            Kind::Unsupported => {
                let backend = detail.unwrap_or("remote").to_owned();
                let op = strip(message, &format!("{backend} does not support "));
                Error::Unsupported {
                    backend,
                    op: static_op(op),
                }
            }
            Kind::PermissionDenied => {
                Error::PermissionDenied(strip(message, "permission denied: "))
            }
            Kind::RateLimited => Error::PermissionDenied(message),
            Kind::Unavailable => {
                let backend = detail.unwrap_or("remote").to_owned();
                let message = strip(message, &format!("{backend} is unavailable: "));
                Error::Unavailable { backend, message }
            }
            Kind::Internal => Error::backend("remote", message),
            Kind::InvalidArgument
            | Kind::NotFound
            | Kind::MethodNotAllowed
            | Kind::PayloadTooLarge => Error::InvalidArgument(message),
        }
    }
}

/// `message` without `prefix`: a variant's message as it was before its
/// `Display` added the prefix.
fn strip(message: String, prefix: &str) -> String {
    match message.strip_prefix(prefix) {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}

/// `limit/<name>/<max>/<actual>`'s details.
fn limit(detail: &str) -> Option<Error> {
    let mut parts = detail.split('/');
    let limit = Limit::from_name(parts.next()?)?;
    let max = parts.next()?.parse().ok()?;
    let actual = parts.next()?.parse().ok()?;
    Some(Error::LimitExceeded { limit, max, actual })
}

/// How many distinct operations a server may name in `Unsupported`
/// answers, and how long each may be.
const MAX_OPS: usize = 32;
const MAX_OP_LEN: usize = 200;

/// The operation a server's `Unsupported` names, as `&'static str` (what
/// `Error::Unsupported` holds: the code that has a gap names it). The
/// operations a kv server names are its own few static texts, so each
/// distinct one is leaked once; past [`MAX_OPS`], or past [`MAX_OP_LEN`]
/// bytes, a server's operation reads as a generic text.
fn static_op(op: String) -> &'static str {
    const GENERIC: &str = "an operation (named in the server's log)";
    static OPS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut ops = OPS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = ops.iter().find(|known| **known == op) {
        return known;
    }
    if ops.len() >= MAX_OPS || op.len() > MAX_OP_LEN {
        return GENERIC;
    }
    let op: &'static str = Box::leak(op.into_boxed_str());
    ops.push(op);
    op
}

/// The detail a backend name makes in a header: only names that are plain
/// (`sqlite`, `redb`…) travel; others read as the remote backend's.
fn backend_detail(backend: &str) -> Option<&str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    (!backend.is_empty() && backend.len() <= 64 && backend.chars().all(plain)).then_some(backend)
}

/// Server: the status and `x-kv-error` value of an answer refusing `e`.
pub(crate) fn encode(e: &Error) -> (StatusCode, String) {
    let kind = Kind::of(e);
    let detail = match e {
        Error::LimitExceeded { limit, max, actual } => {
            Some(format!("{}/{max}/{actual}", limit.name()))
        }
        Error::Unsupported { backend, .. } | Error::Unavailable { backend, .. } => {
            backend_detail(backend).map(str::to_owned)
        }
        _ => None,
    };
    let value = match detail {
        Some(detail) => format!("{}/{detail}", kind.name()),
        None => kind.name().to_owned(),
    };
    (kind.status(), value)
}

/// Server: the message a client sees for `e`. Internal details stay in the
/// log.
pub(crate) fn message_of(e: &Error) -> String {
    match e {
        Error::Backend { .. } => "An internal server error occurred.".into(),
        Error::Closed => "The server is shutting down, try again later.".into(),
        other => other.to_string(),
    }
}

/// Server: a plain-text error response.
#[cfg(feature = "server")]
pub(crate) fn response(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
) -> hyper::Response<axum::body::Body> {
    let message = message.into();
    // Client mistakes only when asked for (a busy server gets many).
    // Refused logins are logged at the default level by the login guard,
    // with the peer and at most a line per peer per 5 s.
    if status.is_client_error() {
        tracing::debug!(status = status.as_u16(), kind, %message, "refused a request");
    }
    let mut r = hyper::Response::new(axum::body::Body::new(http_body_util::Full::from(message)));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        headers.insert(ERROR_KIND_HEADER, v);
    }
    r
}

/// Client: the error for a refusal (a non-200 answer) from `url`, and
/// whether to retry it first. `kind` is the `x-kv-error` header, when the
/// server sent one it names.
pub(crate) fn decode(
    status: StatusCode,
    kind: Option<&str>,
    message: String,
    url: &str,
) -> (Error, bool) {
    let named = kind.and_then(|value| {
        let (name, detail) = match value.split_once('/') {
            Some((name, detail)) => (name, Some(detail)),
            None => (value, None),
        };
        Some((Kind::from_name(name)?, detail))
    });
    match named {
        Some((kind, detail)) => (kind.decode(detail, message), kind.row().retried),
        None => by_status(
            status,
            format!("KV Connect failed to call '{url}' (status={status}): {message}"),
        ),
    }
}

/// Client: the error for an answer that names no kind (a server other than
/// kv, or the metadata exchange), by its status alone, and whether to
/// retry it first: 5xx are retried, 401 and 403 refuse the token, the rest
/// are requests that cannot work.
pub(crate) fn by_status(status: StatusCode, text: String) -> (Error, bool) {
    match status.as_u16() {
        401 | 403 => (Error::PermissionDenied(text), false),
        500..=599 => {
            let e = Error::Unavailable {
                backend: "remote".into(),
                message: text,
            };
            (e, true)
        }
        _ => (Error::InvalidArgument(text), false),
    }
}

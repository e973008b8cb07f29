//! The one table between `kv_core::Error` and HTTP, used by the server to
//! answer and by the client to rebuild a typed error.
//!
//! Every client mistake is a 4xx (Deno's client retries 5xx forever); 5xx
//! is kept for real server faults. Our server also names the error kind in
//! the `x-kv-error` header so that our client can return the same variant
//! the server saw; other clients just show the plain-text body.

// The server encodes, the client decodes.
#![cfg_attr(
    not(all(feature = "client", feature = "server")),
    allow(dead_code, unused_imports)
)]

use http::StatusCode;
use kv_core::Error;

/// Response header carrying the error kind.
pub(crate) const ERROR_KIND_HEADER: &str = "x-kv-error";

/// HTTP status and kind for an error. A limit's kind carries the limit, its
/// maximum and the size seen: `limit/checks/100/101`.
pub(crate) fn status_of(e: &Error) -> (StatusCode, String) {
    let (status, kind) = match e {
        Error::LimitExceeded { limit, max, actual } => {
            return (
                StatusCode::BAD_REQUEST,
                format!("limit/{}/{max}/{actual}", limit.name()),
            );
        }
        Error::InvalidKey(_) => (StatusCode::BAD_REQUEST, "invalid-key"),
        Error::InvalidVersionstamp(_) => (StatusCode::BAD_REQUEST, "invalid-versionstamp"),
        Error::InvalidValue(_) => (StatusCode::BAD_REQUEST, "invalid-value"),
        Error::InvalidSelector(_) | Error::InvalidCursor(_) | Error::InvalidArgument(_) => {
            (StatusCode::BAD_REQUEST, "invalid-argument")
        }
        Error::TypeMismatch(_) => (StatusCode::BAD_REQUEST, "type-mismatch"),
        Error::ReadOnly => (StatusCode::BAD_REQUEST, "read-only"),
        Error::Unsupported { .. } => (StatusCode::BAD_REQUEST, "unsupported"),
        Error::PermissionDenied(_) => (StatusCode::UNAUTHORIZED, "permission-denied"),
        Error::Closed | Error::Unavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (status, kind.to_owned())
}

/// The message a client sees for `e`. Internal details stay in the log.
pub(crate) fn message_of(e: &Error) -> String {
    match e {
        Error::Backend { .. } => "An internal server error occurred.".into(),
        Error::Closed => "The server is shutting down, try again later.".into(),
        other => other.to_string(),
    }
}

/// A plain-text error response.
#[cfg(feature = "server")]
pub(crate) fn response(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
) -> hyper::Response<axum::body::Body> {
    let message = message.into();
    // An operator sees refused logins at the default level; other client
    // mistakes only when asking for them (a busy server gets many).
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        tracing::info!(status = status.as_u16(), kind, %message, "refused a request");
    } else if status.is_client_error() {
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

/// The error a client returns for a non-200 data-path answer.
pub(crate) fn from_response(
    status: StatusCode,
    kind: Option<&str>,
    body: String,
    url: &str,
) -> Error {
    if let Some(limit) = kind.and_then(|k| k.strip_prefix("limit/")) {
        let mut parts = limit.split('/');
        if let (Some(limit), Some(Ok(max)), Some(Ok(actual))) = (
            parts.next().and_then(kv_core::Limit::from_name),
            parts.next().map(str::parse),
            parts.next().map(str::parse),
        ) {
            return Error::LimitExceeded { limit, max, actual };
        }
    }
    match kind {
        Some("type-mismatch") => return Error::TypeMismatch(body),
        Some("invalid-key") => return Error::InvalidKey(body),
        Some("invalid-versionstamp") => return Error::InvalidVersionstamp(body),
        Some("invalid-value") => return Error::InvalidValue(body),
        Some("read-only") => return Error::ReadOnly,
        _ => {}
    }
    let text = format!("KV Connect failed to call '{url}' (status={status}): {body}");
    match status.as_u16() {
        401 | 403 => Error::PermissionDenied(text),
        500..=599 => Error::Unavailable {
            backend: "remote".into(),
            message: text,
        },
        _ => Error::InvalidArgument(text),
    }
}

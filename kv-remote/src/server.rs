//! The KV Connect server: serves any `Arc<dyn Backend>` to Deno, Node,
//! Python and kv's own remote clients over HTTP/1.1, h2c and (optionally)
//! TLS, on one port.
//!
//! Clients enqueue queue messages in their commits, and only the queue
//! layer stores them (storage backends refuse enqueues). The server applies
//! that layer itself, in [`router`], so a program serving a backend cannot
//! forget it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use kv_core::backend::{Backend, read_into};
use kv_core::{Clock, Consistency, SystemClock};
use kv_queue::QueueBackend;
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::error::{Kind, encode, message_of, response};
use crate::guard::{LoginGuard, Peer, Refusal};
use crate::log_limit::LogLimiter;
use crate::quickack::QuickAck;
use crate::wire::ReadOutputEncoder;
use crate::{convert, prescan, proto};

#[cfg(test)]
mod tests;

/// Largest request body accepted: the largest commit within the limits
/// (917,000 bytes; see `prescan::MAX_REQUEST_BODY` for how).
const DEFAULT_MAX_BODY: usize = prescan::MAX_REQUEST_BODY;
/// How long metadata (and its token) stays valid.
const METADATA_TTL: Duration = Duration::from_secs(24 * 3600);
/// Keep-alive interval of watch streams.
const WATCH_PING: Duration = Duration::from_secs(5);
/// A repeated warning (an accept error, a failed write) is logged once per
/// interval, the next line counting those held back (see `log_limit`).
const LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Calls one HTTP/2 connection may have open at once. Deno's client sends
/// every call of a `Deno.Kv` on one connection and each watch holds a
/// stream, so hyper's default of 200 let an app watching 200 keys wait
/// forever on its next call. Deno's local KV has no limit; this one only
/// bounds what one connection can make the server hold.
const MAX_STREAMS: u32 = 16_384;

/// How the server authenticates and identifies itself.
#[derive(Clone)]
pub struct ServerConfig {
    tokens: Vec<String>,
    database_id: uuid::Uuid,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_body_bytes: usize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("tokens", &self.tokens.len())
            .field("database_id", &self.database_id)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// A server accepting any of `tokens` as access token.
    pub fn new(tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ServerConfig {
            tokens: tokens.into_iter().map(Into::into).collect(),
            database_id: uuid::Uuid::nil(),
            tls: None,
            max_body_bytes: DEFAULT_MAX_BODY,
            clock: Arc::new(SystemClock),
        }
    }

    /// The database id clients echo (default: the nil UUID, as denokv).
    pub fn with_database_id(mut self, id: uuid::Uuid) -> Self {
        self.database_id = id;
        self
    }

    /// Serves TLS with a PEM certificate chain and private key.
    ///
    /// # Errors
    /// When the files cannot be read or do not hold a usable key pair.
    pub fn with_tls_pem(
        mut self,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> std::io::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
        };
        // Name the file in every error: "no such file" alone does not say
        // which of the two.
        let in_file = |path: &std::path::Path, what: &str, e: &dyn std::fmt::Display| {
            bad(&format!("{}: {what}: {e}", path.display()))
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| in_file(cert, "cannot read certificates", &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| in_file(cert, "cannot read certificates", &e))?;
        if certs.is_empty() {
            return Err(in_file(
                cert,
                "no certificate",
                &"no CERTIFICATE block in the PEM file",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => in_file(
                key,
                "no private key",
                &"no PRIVATE KEY block in the PEM file",
            ),
            e => in_file(key, "cannot read a private key", &e),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    /// Caps request bodies (default 917,000 bytes, the largest commit the
    /// limits allow); larger ones get 413.
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Uses `clock` to validate enqueue deadlines and date metadata.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn token_ok(&self, given: &str) -> bool {
        // Compare against every token so timing does not tell which matched.
        self.tokens.iter().fold(false, |ok, t| {
            ok | bool::from(t.as_bytes().ct_eq(given.as_bytes()))
        })
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    config: Arc<ServerConfig>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Server faults, by what failed and the error kind.
    faults: Arc<LogLimiter<(&'static str, &'static str)>>,
    /// Failed logins per peer.
    logins: Arc<LoginGuard>,
}

tokio::task_local! {
    /// The peer of the request being handled, for [`bearer`]: set by
    /// [`with_peer`] from the connection's address.
    static PEER: Peer;
}

/// Runs the request knowing its peer: the `ConnectInfo<SocketAddr>` that
/// [`serve`] gives every request (as axum's
/// `into_make_service_with_connect_info` does for a router embedded
/// elsewhere). Without it a peer has no budget of failed logins.
async fn with_peer(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => PEER.scope(Peer::of(addr.ip()), next.run(request)).await,
        None => next.run(request).await,
    }
}

/// The HTTP routes, for embedding in another server. Watch streams end when
/// `stop` turns true.
///
/// Commits go through [`QueueBackend`], so the enqueues clients send are
/// stored as queue records in the same commit, whatever `backend` is. A
/// backend that already has the layer (as `kv::open_backend` returns them)
/// is served unchanged: the outer layer turns every enqueue into mutations
/// and the inner one sees none.
///
/// Failed logins are counted per peer (see `guard`) when requests carry
/// their `ConnectInfo<SocketAddr>`, as [`serve`] gives them and axum's
/// `into_make_service_with_connect_info` does.
pub fn router(
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let (routes, state) = routes(backend, config, stop);
    routes
        .layer(axum::middleware::from_fn_with_state(state, log_faults))
        .layer(axum::middleware::from_fn(with_peer))
}

/// The routes without the layers that give each request its peer and log
/// its faults: [`serve`] does both in its own per-request service, which
/// costs less than two boxed middlewares on every call (a point get spent
/// 11% more instructions with them).
fn routes(
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Router, AppState) {
    let max_body = config.max_body_bytes;
    let faults = LogLimiter::new(config.clock.clone(), LOG_INTERVAL, 64);
    let logins = LoginGuard::new(config.clock.clone());
    let state = AppState {
        backend: Arc::new(QueueBackend::new(backend)),
        config: Arc::new(config),
        stop,
        faults: Arc::new(faults),
        logins: Arc::new(logins),
    };
    let routes = Router::new()
        .route("/", post(metadata))
        .route("/healthz", get(healthz))
        .route(
            "/v2/snapshot_read",
            post(|s, h, b| read_impl(s, h, b, false)),
        )
        .route(
            "/v2/atomic_write",
            post(|s, h, b| write_impl(s, h, b, false)),
        )
        .route("/v2/watch", post(|s, h, b| watch_impl(s, h, b, false)))
        // kv's extension endpoints: the same messages with the reserved key
        // space admitted, for queue and cron layers running in clients.
        // Standard clients never call them.
        .route(
            "/v2/x-kv/snapshot_read",
            post(|s, h, b| read_impl(s, h, b, true)),
        )
        .route(
            "/v2/x-kv/atomic_write",
            post(|s, h, b| write_impl(s, h, b, true)),
        )
        .route("/v2/x-kv/watch", post(|s, h, b| watch_impl(s, h, b, true)))
        .route("/v2/x-kv/snapshot_read_keys", post(read_keys_impl))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state.clone());
    (routes, state)
}

async fn not_found() -> Response {
    ApiError::new(Kind::NotFound, "Resource not found.").into_response()
}

async fn method_not_allowed() -> Response {
    let message = "Method not allowed: KV Connect endpoints take POST (and /healthz GET).";
    ApiError::new(Kind::MethodNotAllowed, message).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// A refused request: status, machine-readable kind (the `x-kv-error`
/// value) and a message, from the table in `error.rs`.
struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
    /// What the log says of a server fault (the client is only told that
    /// one happened).
    fault: Option<Box<Fault>>,
    /// For a refusal that may be retried later: `Retry-After`, in seconds.
    retry_after: Option<u64>,
}

/// A server fault behind an answer, carried to [`log_faults`] in the
/// response's extensions, so that repeated ones are logged through one
/// limiter whatever handler met them.
#[derive(Clone)]
struct Fault {
    what: &'static str,
    kind: &'static str,
    detail: String,
}

/// Logs the server faults of answers, once per kind per [`LOG_INTERVAL`]:
/// on a full disk every write fails, and each logged a line.
async fn log_faults(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    log_fault(&state, &mut response);
    response
}

/// Logs (rate-limited) the server fault behind `response`, if any.
fn log_fault<B>(state: &AppState, response: &mut http::Response<B>) {
    if let Some(fault) = response.extensions_mut().remove::<Fault>()
        && let Some(repeats) = state.faults.admit((fault.what, fault.kind))
    {
        tracing::warn!(error = %fault.detail, "{}{repeats}", fault.what);
    }
}

impl ApiError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        ApiError {
            status: kind.status(),
            kind: kind.name().to_owned(),
            message: message.into(),
            fault: None,
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidArgument, message)
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(Kind::PermissionDenied, message)
    }

    fn rate_limited(wait: Duration) -> Self {
        let secs = wait.as_secs_f64().ceil() as u64;
        let message = format!("Too many failed logins from this address: try again in {secs} s.");
        ApiError {
            retry_after: Some(secs),
            ..Self::new(Kind::RateLimited, message)
        }
    }
}

impl From<kv_core::Error> for ApiError {
    fn from(e: kv_core::Error) -> Self {
        let (status, kind) = encode(&e);
        let fault = status.is_server_error().then(|| {
            Box::new(Fault {
                what: "request failed",
                kind: Kind::of(&e).name(),
                detail: e.to_string(),
            })
        });
        ApiError {
            status,
            kind,
            message: message_of(&e),
            fault,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = response(self.status, &self.kind, self.message);
        if let Some(fault) = self.fault {
            r.extensions_mut().insert(*fault);
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        r
    }
}

/// The token of `authorization: Bearer <token>`, read as denokv reads it:
/// split at the first space, the scheme `bearer` in any case, the token
/// everything after that space. Nothing is trimmed, so a second space, a
/// tab or trailing whitespace make a token that no configured one equals.
///
/// Each refusal counts against the peer's budget of failed logins, and a
/// peer over it is refused with 429 before its token is looked at (see
/// `guard`).
fn bearer<'a>(state: &AppState, headers: &'a HeaderMap) -> Result<&'a str, ApiError> {
    let mut token = "";
    let peer = PEER.try_with(|peer| *peer).ok();
    let check = || {
        let (scheme, given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .ok_or("Malformed authorization header: expected 'Bearer <token>'.")?;
        if !scheme.eq_ignore_ascii_case("bearer") || !state.config.token_ok(given) {
            return Err("Invalid access token.");
        }
        token = given;
        Ok(())
    };
    state
        .logins
        .login(peer, check)
        .map_err(|refusal| match refusal {
            Refusal::Failed(message) => ApiError::unauthorized(message),
            Refusal::Throttled(wait) => ApiError::rate_limited(wait),
        })?;
    Ok(token)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataRequest {
    #[serde(default)]
    supported_versions: Vec<u64>,
}

async fn metadata(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let versions = match serde_json::from_slice::<MetadataRequest>(&body) {
        Ok(r) => r.supported_versions,
        // A body-less request is the oldest client: protocol version 1.
        Err(_) if body.is_empty() => vec![1],
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "The metadata request must be JSON like {{\"supportedVersions\":[1,2,3]}}: {e}"
            )));
        }
    };
    let version = [3u64, 2, 1].into_iter().find(|v| versions.contains(v)).ok_or_else(|| {
        ApiError::bad_request(
            "The server could not negotiate a protocol version. The server supports protocol versions 1, 2 and 3.",
        )
    })?;
    let token = bearer(&state, &headers)?.to_owned();
    let endpoint = if version == 1 {
        // Version 1 clients need an absolute URL.
        let host = uri.authority().map(|a| a.to_string()).or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
        let host =
            host.ok_or_else(|| ApiError::bad_request("Protocol version 1 needs a Host header."))?;
        let scheme = if state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}/v2")
    } else {
        "/v2".to_owned()
    };
    let expires = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
        (state.config.clock.now_ms() + METADATA_TTL.as_millis() as u64) as i64,
    )
    .unwrap_or_default();
    let body = serde_json::json!({
        "version": version,
        "databaseId": state.config.database_id.to_string(),
        "endpoints": [
            {"url": endpoint, "consistency": "strong"},
            {"url": endpoint, "consistency": "eventual"},
        ],
        "token": token,
        "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    let extensions = [(convert::EXTENSIONS_HEADER, convert::ANNOUNCED)];
    Ok((StatusCode::OK, extensions, axum::Json(body)).into_response())
}

/// Header checks of every data-path call (v1 and v2/v3 styles).
fn data_path(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = match (text("x-denokv-version"), text("x-transaction-domain-id")) {
        (Some("2" | "3"), _) => text("x-denokv-database-id"),
        (Some(_), _) => {
            return Err(ApiError::bad_request(
                "Expected protocol version 2 or 3 in x-denokv-version.",
            ));
        }
        (None, Some(id)) => Some(id),
        (None, None) => {
            return Err(ApiError::bad_request(
                "Missing x-denokv-version header: fetch metadata first (protocol version 2 or 3).",
            ));
        }
    };
    bearer(state, headers)?;
    match id.and_then(|id| uuid::Uuid::parse_str(id).ok()) {
        Some(id) if id == state.config.database_id => Ok(()),
        _ => Err(ApiError::bad_request("Invalid database id.")),
    }
}

/// The request body, or a refusal that names the server's size limit
/// (axum's own answer to an oversized body is a bare 413, unlogged).
fn body_of(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let limit = state.config.max_body_bytes;
            let message =
                format!("Request body is larger than this server's limit of {limit} bytes.");
            ApiError::new(Kind::PayloadTooLarge, message)
        } else {
            let message = format!("Request body could not be read: {}.", rejection.body_text());
            ApiError::bad_request(message)
        }
    })
}

/// A request message, with the counts of its repeated fields checked on
/// its bytes before prost builds them (see `prescan`).
trait Request: Message + Default {
    fn prescan(body: &[u8]) -> kv_core::Result<()>;
}

impl Request for proto::SnapshotRead {
    fn prescan(body: &[u8]) -> kv_core::Result<()> {
        prescan::snapshot_read(body)
    }
}

impl Request for proto::AtomicWrite {
    fn prescan(body: &[u8]) -> kv_core::Result<()> {
        prescan::atomic_write(body)
    }
}

impl Request for proto::Watch {
    fn prescan(body: &[u8]) -> kv_core::Result<()> {
        prescan::watch(body)
    }
}

fn decode<M: Request>(body: &[u8]) -> Result<M, ApiError> {
    M::prescan(body)?;
    M::decode(body).map_err(|e| ApiError::bad_request(format!("Request protobuf is invalid: {e}.")))
}

fn protobuf(m: impl Message) -> Response {
    protobuf_bytes(m.encode_to_vec())
}

fn protobuf_bytes(body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    r
}

async fn read_impl(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    system: bool,
) -> Result<Response, ApiError> {
    data_path(&state, &headers)?;
    let body = body_of(&state, body)?;
    let ranges = convert::read_request(decode(&body)?, system)?;
    // Every endpoint of this server reads the primary, so eventual reads
    // are strongly consistent too.
    let encoder = ReadOutputEncoder::new();
    let out = read_into(&*state.backend, ranges, Consistency::Strong, encoder).await?;
    Ok(protobuf_bytes(out.finish()))
}

/// `x-kv/snapshot_read_keys`: a read answered with keys and versionstamps
/// only (the reserved key space admitted, as on every extension endpoint),
/// for listings that need no values. The backend is told so
/// ([`ReadSink::wants_values`](kv_core::backend::ReadSink::wants_values)),
/// and whatever values it still hands over are dropped.
async fn read_keys_impl(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    data_path(&state, &headers)?;
    let body = body_of(&state, body)?;
    let ranges = convert::read_request(decode(&body)?, true)?;
    let encoder = ReadOutputEncoder::keys_only();
    let out = read_into(&*state.backend, ranges, Consistency::Strong, encoder).await?;
    Ok(protobuf_bytes(out.finish()))
}

async fn write_impl(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    system: bool,
) -> Result<Response, ApiError> {
    data_path(&state, &headers)?;
    let body = body_of(&state, body)?;
    let write = convert::write_request(decode(&body)?, state.config.clock.now_ms(), system)?;
    // The commit runs to completion even if the client goes away, so a
    // graceful shutdown never leaves a commit half-way.
    let backend = state.backend.clone();
    let outcome = tokio::spawn(async move { backend.atomic_write(write).await })
        .await
        .map_err(|e| ApiError {
            fault: Some(Box::new(Fault {
                what: "commit task failed",
                kind: Kind::Internal.name(),
                detail: e.to_string(),
            })),
            ..ApiError::new(Kind::Internal, "An internal server error occurred.")
        })??;
    Ok(protobuf(convert::write_output(outcome)))
}

fn frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

async fn watch_impl(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    system: bool,
) -> Result<Response, ApiError> {
    data_path(&state, &headers)?;
    let body = body_of(&state, body)?;
    let req: proto::Watch = decode(&body)?;
    let keys = convert::watch_request(req, system)?;
    let faults = state.faults.clone();
    let updates = state
        .backend
        .watch(keys)
        .map(move |snapshot| match snapshot {
            Ok(entries) => Ok(frame(&convert::watch_output(entries).encode_to_vec())),
            Err(e) => {
                if let Some(repeats) = faults.admit(("watch failed", Kind::of(&e).name())) {
                    tracing::warn!(error = %e, "watch failed{repeats}");
                }
                Err(std::io::Error::other(e.to_string()))
            }
        });
    let pings = futures::stream::unfold(
        tokio::time::interval(WATCH_PING),
        |mut interval| async move {
            interval.tick().await;
            Some((Ok(frame(&[])), interval))
        },
    )
    .skip(1);
    let mut stop = state.stop.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    // The stream ends with the backend's watch (database closed) or when
    // the server stops.
    let body = futures::stream::select(
        updates
            .map(Some)
            .chain(futures::stream::once(async { None })),
        pings.map(Some),
    )
    .take_while(|item| futures::future::ready(item.is_some()))
    .filter_map(futures::future::ready)
    .take_until(stopped);
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// Serves `backend` on `listener` until `shutdown` resolves, then stops
/// accepting, ends watch streams, lets in-flight requests finish (up to
/// 10 s) and returns. The backend is not closed. Client enqueues are
/// stored through the queue layer (see [`router`]).
///
/// # Errors
/// Only for a listener that cannot be used at all.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tls = config.tls.clone().map(TlsAcceptor::from);
    // Out of descriptors, accept fails as fast as it is retried.
    let accept_errors = LogLimiter::new(config.clock.clone(), LOG_INTERVAL, 16);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (app, state) = routes(backend, config, stop_rx);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    if let Some(repeats) = accept_errors.admit(e.kind()) {
                        tracing::warn!(error = %e, "accept failed{repeats}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = QuickAck::new(stream);
        let service = TowerToHyperService::new(app.clone());
        // Every request runs knowing its connection's address (what
        // `with_peer` does for an embedded router), and its fault, if any,
        // is logged (what `log_faults` does).
        let state = state.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = hyper::service::Service::call(&service, request);
            let state = state.clone();
            PEER.scope(Peer::of(peer.ip()), async move {
                let mut response = answer.await?;
                log_fault(&state, &mut response);
                Ok::<_, std::convert::Infallible>(response)
            })
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .into_owned(),
                        )
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        watcher
                            .watch(
                                builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .into_owned(),
                            )
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
    Ok(())
}

/// Binds `addr` and returns the listener with its actual address (useful
/// with port 0).
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

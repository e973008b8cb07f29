//! `RemoteBackend`: a `Backend` on any KV Connect server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, ReadSink, SYSTEM_PREFIX,
    WatchStream, is_system_key, read_into,
};
use kv_core::{Error, Result};
use prost::Message;
use tokio::sync::Mutex;

use crate::error::{self, ERROR_KIND_HEADER};
use crate::transport::{self, Target, Transport, TransportError};
use crate::{convert, proto};

/// Refresh metadata at least this often, like Deno's client.
const METADATA_REFRESH: Duration = Duration::from_secs(60);

/// How a [`RemoteBackend`] connects.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    url: String,
    token: String,
    max_retries: u32,
    timeout: Duration,
    root_certificates: Vec<Vec<u8>>,
}

impl RemoteConfig {
    /// Connects to the KV Connect server at `url` (`http://` or `https://`)
    /// with an access token.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            token: token.into(),
            max_retries: 8,
            timeout: Duration::from_secs(30),
            root_certificates: Vec::new(),
        }
    }

    /// Also trusts this PEM certificate (for servers with a private CA or a
    /// self-signed certificate).
    pub fn with_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Uses `DENO_KV_ACCESS_TOKEN` as the token.
    ///
    /// # Errors
    /// `PermissionDenied` when the variable is not set.
    pub fn from_env(url: impl Into<String>) -> Result<Self> {
        let token = std::env::var("DENO_KV_ACCESS_TOKEN").map_err(|_| {
            Error::PermissionDenied("Missing DENO_KV_ACCESS_TOKEN environment variable".into())
        })?;
        Ok(Self::new(url, token))
    }

    /// Retries transient failures (connections refused, reset or closed,
    /// timeouts, 5xx answers) this many times (default 8, with exponential
    /// backoff from 50 ms) before giving up with `Unavailable`. What can
    /// never work is not retried (see [`RemoteConfig::connect`]).
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Gives up on one HTTP exchange after `timeout` (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects: performs the metadata exchange once, so a wrong URL or
    /// token fails here.
    ///
    /// # Errors
    /// At once, naming the URL and what to change: `PermissionDenied` for a
    /// refused token; `InvalidArgument` for a URL, certificate or server
    /// that cannot work (a TLS error, a peer that does not speak HTTP/2, an
    /// answer that is not KV Connect). After the retries, `Unavailable`
    /// when the server cannot be reached.
    pub async fn connect(self) -> Result<RemoteBackend> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            Error::InvalidArgument(format!("Invalid database url {:?}: {e}", self.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidArgument(format!(
                "Invalid database url {:?}: expected http:// or https://",
                self.url
            )));
        }
        let transport = Transport::new(&self.root_certificates).map_err(Error::InvalidArgument)?;
        let metadata_target = Target::parse(&url).map_err(|e| {
            Error::InvalidArgument(format!("Invalid database url {:?}: {e}", self.url))
        })?;
        let metadata_headers = metadata_headers(&self.token)?;
        let inner = Arc::new(Inner {
            config: self,
            url,
            metadata_target,
            metadata_headers,
            transport,
            metadata: std::sync::RwLock::new(None),
            refreshing: Mutex::new(()),
            closed: AtomicBool::new(false),
            close_signal: tokio::sync::watch::channel(false).0,
        });
        inner.metadata(true).await?;
        Ok(RemoteBackend { inner })
    }
}

#[derive(Clone, Debug)]
struct Metadata {
    /// The data-path target of every call, indexed by `Call::index`:
    /// parsed once here rather than on every request.
    strong: Vec<Target>,
    /// The same for eventual reads, when the server offers an endpoint.
    eventual: Option<Vec<Target>>,
    /// Authorization, content type and protocol headers of every call.
    headers: http::HeaderMap,
    fetched: Instant,
    expires: Option<Instant>,
    /// What the server's extension endpoints can do.
    extensions: Extensions,
}

/// What a kv server announces its extension endpoints can do (none, for
/// denokv and Deno Deploy).
#[derive(Clone, Copy, Debug, Default)]
struct Extensions {
    /// Enqueues without retries (an empty backoff schedule on the extension
    /// `atomic_write`).
    no_retry: bool,
    /// Reads answered with keys and versionstamps only
    /// (`x-kv/snapshot_read_keys`).
    keys_only: bool,
}

impl Extensions {
    fn of(headers: &http::HeaderMap) -> Self {
        Extensions {
            no_retry: convert::announces(headers, convert::NO_RETRY),
            keys_only: convert::announces(headers, convert::KEYS_ONLY),
        }
    }
}

impl Metadata {
    fn is_fresh(&self) -> bool {
        self.fetched.elapsed() < METADATA_REFRESH
            && self
                .expires
                .is_none_or(|e| e > Instant::now() + Duration::from_secs(10))
    }
}

/// A data-path call: the method and whether it touches the reserved key
/// space (which goes to kv's `/x-kv/` extension endpoints).
#[derive(Clone, Copy, Debug)]
struct Call {
    method: Method,
    system: bool,
}

#[derive(Clone, Copy, Debug)]
enum Method {
    SnapshotRead,
    AtomicWrite,
    Watch,
    /// A read answered without values: an extension endpoint only, which
    /// admits the reserved key space too.
    SnapshotReadKeys,
}

impl Call {
    const ALL: [Call; 8] = [
        Call::new(Method::SnapshotRead, false),
        Call::new(Method::AtomicWrite, false),
        Call::new(Method::Watch, false),
        Call::new(Method::SnapshotReadKeys, false),
        Call::new(Method::SnapshotRead, true),
        Call::new(Method::AtomicWrite, true),
        Call::new(Method::Watch, true),
        Call::new(Method::SnapshotReadKeys, true),
    ];

    const fn new(method: Method, system: bool) -> Self {
        Call { method, system }
    }

    fn index(self) -> usize {
        self.method as usize + if self.system { 4 } else { 0 }
    }

    fn path(self) -> &'static str {
        match (self.method, self.system) {
            (Method::SnapshotRead, false) => "snapshot_read",
            (Method::AtomicWrite, false) => "atomic_write",
            (Method::Watch, false) => "watch",
            (Method::SnapshotRead, true) => "x-kv/snapshot_read",
            (Method::AtomicWrite, true) => "x-kv/atomic_write",
            (Method::Watch, true) => "x-kv/watch",
            (Method::SnapshotReadKeys, _) => "x-kv/snapshot_read_keys",
        }
    }
}

/// Every call's target under one endpoint base.
fn call_targets(base: &url::Url) -> std::result::Result<Vec<Target>, String> {
    let base = base.as_str().trim_end_matches('/');
    Call::ALL
        .iter()
        .map(|c| {
            let url =
                url::Url::parse(&format!("{base}/{}", c.path())).map_err(|e| e.to_string())?;
            Target::parse(&url)
        })
        .collect()
}

#[derive(Debug)]
struct Inner {
    config: RemoteConfig,
    url: url::Url,
    /// Where the metadata exchange goes, and its headers.
    metadata_target: Target,
    metadata_headers: http::HeaderMap,
    /// The metadata exchange and the data path.
    transport: Transport,
    /// The current metadata: read by every call without waiting.
    metadata: std::sync::RwLock<Option<Arc<Metadata>>>,
    /// Held while fetching, so concurrent calls fetch once.
    refreshing: Mutex<()>,
    closed: AtomicBool,
    close_signal: tokio::sync::watch::Sender<bool>,
}

/// A [`Backend`] on a KV Connect server, such as `kv serve`, `denokv` or
/// Deno Deploy. Retries transient failures, refreshes metadata before it
/// expires, sends eventual reads to eventual endpoints when offered, and
/// reconnects watches.
#[derive(Clone, Debug)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataJson {
    version: u64,
    database_id: String,
    endpoints: Vec<EndpointJson>,
    token: String,
    expires_at: String,
}

#[derive(serde::Deserialize)]
struct EndpointJson {
    url: String,
    consistency: String,
}

/// The body of the metadata exchange: the protocol versions this client
/// speaks.
const METADATA_REQUEST: &str = r#"{"supportedVersions":[2,3]}"#;

/// The headers of the metadata exchange.
fn metadata_headers(token: &str) -> Result<http::HeaderMap> {
    use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::InvalidArgument("the access token cannot be sent in an HTTP header".into())
    })?;
    auth.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, auth);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(headers)
}

/// The headers of every data-path call for this metadata.
fn data_headers(
    version: u64,
    database_id: &str,
    token: &str,
) -> std::result::Result<http::HeaderMap, String> {
    use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
    let value =
        |v: &str| HeaderValue::from_str(v).map_err(|_| format!("{v:?} cannot be sent in a header"));
    let mut headers = HeaderMap::new();
    let mut auth = value(&format!("Bearer {token}"))?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    if version == 1 {
        headers.insert("x-transaction-domain-id", value(database_id)?);
    } else {
        headers.insert("x-denokv-database-id", value(database_id)?);
        headers.insert("x-denokv-version", HeaderValue::from(version));
    }
    Ok(headers)
}

/// Takes the next complete watch frame (`u32` little-endian length, then
/// that many bytes) off the front of `buf`.
fn next_watch_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*header) as usize;
    if len > 16 * 1024 * 1024 {
        return Err(unavailable("watch frame larger than 16 MiB".into()));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(buf.drain(..4 + len).skip(4).collect()))
}

/// A failed call, and whether to make it again.
struct Failure {
    error: Error,
    retry: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            retry: error.is_retryable(),
            error,
        }
    }
}

/// The failure a non-200 answer stands for, read from its status, the
/// error kind our server names in a header and the message in its body
/// (see `error.rs`).
async fn refusal(response: transport::Streaming, target: &Target) -> Failure {
    let status = response.status();
    let kind = response
        .headers()
        .get(ERROR_KIND_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = transport::read_body(response)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (error, retry) = error::decode(status, kind.as_deref(), text, &target.to_string());
    Failure { error, retry }
}

/// The error a request that got no answer returns: `Unavailable` (retried)
/// when the failure may pass, else `InvalidArgument` naming the URL and
/// what to change, at once.
fn transport_error(url: &dyn std::fmt::Display, e: TransportError) -> Error {
    if e.is_transient() {
        unavailable(format!("calling {url}: {e}"))
    } else {
        let advice = e.advice();
        Error::InvalidArgument(format!("KV Connect at {url} cannot work: {e}; {advice}"))
    }
}

fn unavailable(message: String) -> Error {
    Error::Unavailable {
        backend: "remote".into(),
        message,
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = 50u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(base + rand::random::<u64>() % (base / 2 + 1))
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The metadata, retrying transient failures.
    async fn fetch_metadata(&self) -> Result<Metadata> {
        let mut attempt = 0;
        loop {
            match self.exchange_metadata().await {
                Err(e) if e.is_retryable() && attempt < self.config.max_retries => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One metadata exchange.
    async fn exchange_metadata(&self) -> Result<Metadata> {
        let target = &self.metadata_target;
        let exchange = async {
            let body = bytes::Bytes::from_static(METADATA_REQUEST.as_bytes());
            let response = self
                .transport
                .post(target, &self.metadata_headers, body)
                .await?;
            let status = response.status();
            let extensions = Extensions::of(response.headers());
            let body = transport::read_body(response).await?;
            Ok::<_, TransportError>((status, extensions, body))
        };
        let (status, extensions, body) = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                self.transport.reset(target);
                let waited = self.config.timeout;
                Err(TransportError::Network(format!(
                    "no answer within {waited:?}"
                )))
            })
            .map_err(|e| transport_error(&self.url, e))?;
        self.parse_metadata(status, extensions, &String::from_utf8_lossy(&body))
    }

    fn parse_metadata(
        &self,
        status: http::StatusCode,
        extensions: Extensions,
        body: &str,
    ) -> Result<Metadata> {
        if status != http::StatusCode::OK {
            let url = &self.url;
            let body = body.trim_end_matches('.');
            let text = format!("the metadata exchange with {url} got status {status}: {body}");
            // Retried (5xx, `Unavailable`) or said what to change.
            return Err(match error::by_status(status, text).0 {
                Error::PermissionDenied(text) => Error::PermissionDenied(format!(
                    "{text}; check the access token (DENO_KV_ACCESS_TOKEN)"
                )),
                Error::InvalidArgument(text) => Error::InvalidArgument(format!(
                    "{text}; check that the URL names a KV Connect server"
                )),
                other => other,
            });
        }
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "'{}' is not a valid KV Connect endpoint: {why}; check that the URL names a \
                 KV Connect server",
                self.url
            ))
        };
        let m: MetadataJson = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
        if !(1..=3).contains(&m.version) {
            return Err(bad(format!("unsupported metadata version {}", m.version)));
        }
        let mut strong = None;
        let mut eventual = None;
        for e in &m.endpoints {
            if e.url.ends_with('/') {
                return Err(bad(format!(
                    "endpoint URL must not end with '/': {}",
                    e.url
                )));
            }
            let url = self
                .url
                .join(&e.url)
                .map_err(|err| bad(format!("invalid endpoint URL {}: {err}", e.url)))?;
            match e.consistency.as_str() {
                "strong" if strong.is_none() => strong = Some(url),
                "eventual" if eventual.is_none() => eventual = Some(url),
                "strong" | "eventual" => {}
                other => return Err(bad(format!("unsupported consistency level: {other}"))),
            }
        }
        let strong = strong.ok_or_else(|| bad("no strong consistency endpoint".into()))?;
        let invalid = |e: String| bad(format!("invalid endpoint URL: {e}"));
        let strong = call_targets(&strong).map_err(invalid)?;
        let eventual = eventual
            .as_ref()
            .map(call_targets)
            .transpose()
            .map_err(invalid)?;
        let headers = data_headers(m.version, &m.database_id, &m.token).map_err(bad)?;
        let expires = chrono::DateTime::parse_from_rfc3339(&m.expires_at)
            .ok()
            .map(|t| t.timestamp_millis() - chrono::Utc::now().timestamp_millis())
            .map(|ms| Instant::now() + Duration::from_millis(ms.max(0) as u64));
        Ok(Metadata {
            strong,
            eventual,
            headers,
            fetched: Instant::now(),
            expires,
            extensions,
        })
    }

    /// The cached metadata while fresh (a read lock, no await).
    fn fresh_metadata(&self) -> Option<Arc<Metadata>> {
        let cached = self
            .metadata
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cached.as_ref().filter(|m| m.is_fresh()).cloned()
    }

    /// The metadata, fetched again when stale or when `force` says the
    /// server refused the cached token.
    async fn metadata(&self, force: bool) -> Result<Arc<Metadata>> {
        if !force && let Some(m) = self.fresh_metadata() {
            return Ok(m);
        }
        let started = Instant::now();
        let _refreshing = self.refreshing.lock().await;
        // Another call may have fetched while this one waited.
        if let Some(m) = self.fresh_metadata()
            && (!force || m.fetched >= started)
        {
            return Ok(m);
        }
        let m = Arc::new(self.fetch_metadata().await?);
        *self
            .metadata
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(m.clone());
        Ok(m)
    }

    fn endpoint(m: &Metadata, call: Call, consistency: Consistency) -> &Target {
        let urls = match consistency {
            Consistency::Eventual => m.eventual.as_ref().unwrap_or(&m.strong),
            Consistency::Strong => &m.strong,
        };
        &urls[call.index()]
    }

    /// One data-path call with retries; returns the 200 body.
    async fn call(
        &self,
        call: Call,
        consistency: Consistency,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes> {
        let body = bytes::Bytes::from(body);
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            self.check_open()?;
            let m = self.metadata(false).await?;
            let target = Self::endpoint(&m, call, consistency);
            let deadline = tokio::time::Instant::now() + self.config.timeout;
            let timed_out = || {
                // The connection may be dead without having said so.
                self.transport.reset(target);
                TransportError::Network(format!("no answer within {:?}", self.config.timeout))
            };
            let posted = tokio::time::timeout_at(
                deadline,
                self.transport.post(target, &m.headers, body.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(timed_out()));
            let failure: Failure = match posted {
                Ok(response) if response.status() == http::StatusCode::OK => {
                    // The server has acted on the call (a commit is
                    // applied): failing to read its answer is final, not
                    // retried, so no commit is applied twice.
                    let read = tokio::time::timeout_at(deadline, transport::read_body(response))
                        .await
                        .unwrap_or_else(|_| Err(timed_out()));
                    return read.map_err(|e| transport_error(target, e));
                }
                Ok(response) => {
                    let status = response.status();
                    let failure = tokio::time::timeout_at(deadline, refusal(response, target))
                        .await
                        .unwrap_or_else(|_| {
                            let (error, retry) = error::by_status(status, timed_out().to_string());
                            Failure { error, retry }
                        });
                    if matches!(status.as_u16(), 401 | 403) && !refreshed {
                        // The data-path token may have been rotated.
                        refreshed = true;
                        self.metadata(true).await?;
                        continue;
                    }
                    failure
                }
                Err(e) => transport_error(target, e).into(),
            };
            if !failure.retry || attempt >= self.config.max_retries {
                return Err(failure.error);
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }
}

#[async_trait]
impl Backend for RemoteBackend {
    fn name(&self) -> &str {
        "remote"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let entries = Vec::with_capacity(ranges.len());
        read_into(self, ranges, consistency, entries).await
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
        mut sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        let n = ranges.len();
        let system = ranges
            .iter()
            .any(|r| is_system_key(&r.start) || r.end.as_slice() > [SYSTEM_PREFIX].as_slice());
        // A sink that needs no values gets none over the network from a
        // kv server; others (denokv, Deploy) send them, and they are
        // handed over.
        let keys_only =
            !sink.wants_values() && self.inner.metadata(false).await?.extensions.keys_only;
        let method = if keys_only {
            Method::SnapshotReadKeys
        } else {
            Method::SnapshotRead
        };
        let body = convert::read_to_proto(ranges).encode_to_vec();
        let out = self
            .inner
            .call(Call::new(method, system), consistency, body)
            .await?;
        let strong = consistency == Consistency::Strong;
        convert::read_response(&out, n, strong, !keys_only, &mut *sink)?;
        Ok(sink)
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let keys = write.checks.iter().map(|c| &c.key);
        let keys = keys.chain(write.mutations.iter().map(|m| &m.key));
        let mut keys = keys.chain(write.enqueues.iter().flat_map(|e| &e.keys_if_undelivered));
        // "No retry" (an empty schedule) cannot be said on the standard
        // endpoint, where an empty list means the default schedule; only a
        // kv server that announces it takes it on the extension endpoint.
        let schedules = write.enqueues.iter().map(|e| e.backoff_schedule.as_ref());
        let no_retry = schedules.flatten().any(Vec::is_empty);
        if no_retry && !self.inner.metadata(false).await?.extensions.no_retry {
            return Err(Error::Unsupported {
                backend: "remote".into(),
                op: "a queue message without retries (an empty backoff schedule) on this server",
            });
        }
        let system = keys.any(|k| is_system_key(k)) || no_retry;
        let call = Call::new(Method::AtomicWrite, system);
        let body = convert::write_to_proto(write, system).encode_to_vec();
        let out = self.inner.call(call, Consistency::Strong, body).await?;
        let out = proto::AtomicWriteOutput::decode(out).map_err(|e| {
            Error::InvalidValue(format!("KV Connect failed to decode response: {e}"))
        })?;
        convert::write_from_proto(out)
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        let inner = self.inner.clone();
        let (tx, rx) = futures::channel::mpsc::channel(1);
        // The task ends when the receiver is dropped or the backend closes.
        tokio::spawn(watch_task(inner, keys, tx));
        rx.boxed()
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.transport.close();
        let _ = self.inner.close_signal.send(true);
    }
}

type WatchSender = futures::channel::mpsc::Sender<Result<Vec<Option<RawEntry>>>>;

async fn watch_task(inner: Arc<Inner>, keys: Vec<Vec<u8>>, mut tx: WatchSender) {
    use futures::SinkExt;
    let mut closed = inner.close_signal.subscribe();
    let mut state: Vec<Option<RawEntry>> = vec![None; keys.len()];
    let mut attempt = 0u32;
    loop {
        if inner.check_open().is_err() || tx.is_closed() {
            return;
        }
        let result = tokio::select! {
            r = watch_once(&inner, &keys, &mut state, &mut tx, &mut attempt) => r,
            _ = closed.wait_for(|c| *c) => return,
        };
        match result {
            Ok(()) => {}
            Err(Failure {
                error,
                retry: false,
            }) => {
                let _ = tx.send(Err(error)).await;
                return;
            }
            Err(Failure { error, .. }) => {
                tracing::debug!(error = %error, "watch interrupted; reconnecting");
            }
        }
        tokio::time::sleep(backoff(attempt.min(6))).await;
        attempt += 1;
    }
}

async fn watch_once(
    inner: &Inner,
    keys: &[Vec<u8>],
    state: &mut [Option<RawEntry>],
    tx: &mut WatchSender,
    attempt: &mut u32,
) -> std::result::Result<(), Failure> {
    use futures::SinkExt;
    let m = inner.metadata(false).await?;
    let call = Call::new(Method::Watch, keys.iter().any(|k| is_system_key(k)));
    let target = Inner::endpoint(&m, call, Consistency::Strong);
    let body = convert::watch_to_proto(keys.to_vec()).encode_to_vec();
    let r = inner
        .transport
        .post(target, &m.headers, body.into())
        .await
        .map_err(|e| transport_error(target, e))?;
    if r.status() != http::StatusCode::OK {
        return Err(refusal(r, target).await);
    }
    let mut body = r.into_body();
    let mut buf: Vec<u8> = Vec::new();
    // Frames are read as they arrive even while the consumer is slow (an
    // unread stream would hold the connection's flow-control window that
    // every other call shares); the latest state waits to be delivered, as
    // a watch reports states, not each change.
    let mut unsent = false;
    loop {
        tokio::select! {
            chunk = transport::next_chunk(&mut body) => {
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| transport_error(target, e))?;
                buf.extend_from_slice(&chunk);
                while let Some(payload) = next_watch_frame(&mut buf)? {
                    if payload.is_empty() {
                        continue;
                    }
                    let out = proto::WatchOutput::decode(payload.as_slice()).map_err(|e| {
                        Error::InvalidValue(format!("KV Connect failed to decode watch frame: {e}"))
                    })?;
                    convert::watch_from_proto(out, state)?;
                    *attempt = 0;
                    unsent = true;
                }
            }
            ready = futures::future::poll_fn(|cx| tx.poll_ready(cx)), if unsent => {
                if ready.is_err() || tx.start_send(Ok(state.to_vec())).is_err() {
                    return Ok(());
                }
                unsent = false;
            }
        }
    }
    if unsent && tx.send(Ok(state.to_vec())).await.is_err() {
        return Ok(());
    }
    Err(unavailable("watch stream ended".into()).into())
}

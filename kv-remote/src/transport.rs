//! The data path's HTTP/2: one multiplexed connection per origin, on the
//! `h2` crate directly.
//!
//! A call's headers and body are queued together, so a small request
//! usually leaves in one write and the server reads it in one go; hyper's
//! client sends the body only after flow-control capacity has been
//! granted, which takes a second write (and a second read on the server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Uri};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Where calls go: the connection key and the request URI, parsed once.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    origin: Origin,
    uri: Uri,
}

impl Target {
    /// Parses an `http://` or `https://` URL.
    pub(crate) fn parse(url: &url::Url) -> Result<Target, String> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        // IPv6 literals come bracketed; sockets and TLS names want them bare.
        let host = url.host_str().ok_or("the URL has no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let uri = url.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
        Ok(Target {
            origin: Origin { https, host, port },
            uri,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uri.fmt(f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

type Sender = h2::client::SendRequest<Bytes>;

/// An open connection and a number telling it apart from its successors.
#[derive(Clone, Debug)]
struct Connection {
    id: u64,
    sender: Sender,
}

/// HTTP/2 connections, opened on first use and replaced after a failure.
#[derive(Debug)]
pub(crate) struct Transport {
    tls: Arc<rustls::ClientConfig>,
    connections: Mutex<HashMap<Origin, Connection>>,
    /// Held while opening a connection, so that calls arriving together
    /// (after a restart, say) share one instead of each opening their own.
    connecting: tokio::sync::Mutex<()>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A response whose body is still arriving.
pub(crate) type Streaming = Response<h2::RecvStream>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a body's announced length makes `read_body` reserve up front
/// (1000 entries of 64 KiB values, with room for keys and framing).
const MAX_BODY_HINT: usize = 72 << 20;

impl Transport {
    /// A transport that trusts the web's root certificates and `extra_roots`
    /// (PEM).
    pub(crate) fn new(extra_roots: &[Vec<u8>]) -> Result<Transport, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for pem in extra_roots {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("invalid root certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid root certificate: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Transport {
            tls: Arc::new(tls),
            connections: Mutex::new(HashMap::new()),
            connecting: tokio::sync::Mutex::new(()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Sends a POST and waits for the response head.
    pub(crate) async fn post(
        &self,
        target: &Target,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Streaming, String> {
        let (mut conn, cached) = self.connection(&target.origin).await?;
        let ready = match conn.sender.clone().ready().await {
            Ok(ready) => Ok(ready),
            // A kept connection the server has closed since (a restart):
            // nothing was sent on it, so a new one is tried at once.
            Err(_) if cached => {
                self.forget(&target.origin, conn.id);
                conn = self.connection(&target.origin).await?.0;
                conn.sender.clone().ready().await
            }
            Err(e) => Err(e),
        };
        let result = match ready {
            Ok(sender) => send(sender, target, headers, body).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            // A reset ends one stream; anything else may have broken the
            // connection, which the next call then replaces.
            if !e.is_reset() {
                self.forget(&target.origin, conn.id);
            }
            e.to_string()
        })
    }

    /// Drops the connection `target` uses (after a call on it timed out),
    /// so the next call opens a new one.
    pub(crate) fn reset(&self, target: &Target) {
        self.lock().remove(&target.origin);
    }

    /// Closes every connection (they end once their streams finish).
    pub(crate) fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Origin, Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the origin's connection if it is still connection `id` (a
    /// newer one, opened by another call, stays).
    fn forget(&self, origin: &Origin, id: u64) {
        let mut connections = self.lock();
        if connections.get(origin).is_some_and(|c| c.id == id) {
            connections.remove(origin);
        }
    }

    /// The origin's connection, and whether it was already open.
    async fn connection(&self, origin: &Origin) -> Result<(Connection, bool), String> {
        if let Some(conn) = self.lock().get(origin) {
            return Ok((conn.clone(), true));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.lock().get(origin) {
            // Opened by the call this one waited for.
            return Ok((conn.clone(), false));
        }
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(origin))
            .await
            .map_err(|_| format!("connecting to {}:{} timed out", origin.host, origin.port))??;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn = Connection { id, sender };
        self.lock().insert(origin.clone(), conn.clone());
        Ok((conn, false))
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, String> {
        let address = (origin.host.as_str(), origin.port);
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", origin.host, origin.port))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        if !origin.https {
            return handshake(tcp).await;
        }
        let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
            .map_err(|e| format!("invalid server name {:?}: {e}", origin.host))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", origin.host))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(format!(
                "{} does not offer HTTP/2, which KV Connect needs",
                origin.host
            ));
        }
        handshake(tls).await
    }
}

async fn handshake<T>(io: T) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = h2::client::Builder::new()
        // A stream may hold 4 MiB unread (a watch whose consumer is slow)
        // without stalling the connection's other calls.
        .initial_window_size(4 << 20)
        .initial_connection_window_size(64 << 20)
        // A 1000-entry listing arrives as one DATA frame instead of nine:
        // fewer frames to parse and one flow-control release (+10% listings).
        .max_frame_size(1 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "KV Connect connection ended");
        }
    });
    Ok(sender)
}

/// Sends on a connection that is ready for a new stream.
async fn send(
    mut sender: Sender,
    target: &Target,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Streaming, h2::Error> {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers.clone();
    let (response, mut stream) = sender.send_request(request, body.is_empty())?;
    if !body.is_empty() {
        // Buffered by h2 until the connection flushes, with the headers.
        stream.send_data(body, true)?;
    }
    response.await
}

/// Reads a whole body, returning flow-control capacity as it goes.
pub(crate) async fn read_body(response: Streaming) -> Result<Bytes, String> {
    let hint = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        // A hint only: never reserve more than the largest real answer.
        .map_or(0, |n| n.min(MAX_BODY_HINT));
    let mut body = response.into_body();
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        // A body in one frame needs no copy.
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(head) => {
                buf.reserve(hint.max(head.len() + chunk.len()));
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// The next chunk of a streaming body, returning its flow-control capacity.
pub(crate) async fn next_chunk(body: &mut h2::RecvStream) -> Option<Result<Bytes, String>> {
    let chunk = body.data().await?;
    Some(chunk.map_err(|e| e.to_string()).inspect(|c| {
        let _ = body.flow_control().release_capacity(c.len());
    }))
}

//! The data path's HTTP/2: one multiplexed connection per origin, on the
//! `h2` crate directly.
//!
//! A call's headers and body are queued together, so a small request
//! usually leaves in one write and the server reads it in one go; hyper's
//! client sends the body only after flow-control capacity has been
//! granted, which takes a second write (and a second read on the server).
//!
//! Every failure is a [`TransportError`], sorted once here into faults that
//! may pass (the server restarting, a dropped connection) and
//! configurations that never work (an untrusted certificate, a peer that
//! does not speak HTTP/2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

#[cfg(test)]
mod tests;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The server could not be reached, or the connection or stream ended
    /// early (refused, reset, closed, a GOAWAY, a timeout): it may be
    /// restarting or overloaded, and a retry may succeed.
    #[error("{0}")]
    Network(String),
    /// The TLS handshake failed: an untrusted or expired certificate, one
    /// for another name, a peer that refused us or does not speak TLS.
    #[error("TLS handshake with {host} failed: {error}")]
    Tls {
        /// The server's host name.
        host: String,
        /// rustls' reason.
        error: rustls::Error,
    },
    /// The host name cannot be checked against a certificate.
    #[error("{0:?} cannot be used as a TLS server name")]
    ServerName(String),
    /// The TLS server does not offer HTTP/2 (ALPN `h2`).
    #[error("{0} does not offer HTTP/2 (ALPN h2), which KV Connect needs")]
    NoHttp2(String),
    /// The peer answered with bytes that break HTTP/2: an HTTP/1-only
    /// server, a TLS port reached with `http://`, or no web server at all.
    #[error("the server does not speak HTTP/2: {0}")]
    NotHttp2(String),
}

impl TransportError {
    /// Whether the same request may succeed later.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, TransportError::Network(_))
    }

    /// What the user can do about a failure that is not transient.
    pub(crate) fn advice(&self) -> &'static str {
        use rustls::CertificateError as C;
        match self {
            TransportError::Network(_) => "retry later",
            TransportError::Tls { error, .. } => match error {
                rustls::Error::InvalidCertificate(C::NotValidForName)
                | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
                    "connect by a name the server's certificate lists"
                }
                rustls::Error::InvalidCertificate(
                    C::Expired | C::ExpiredContext { .. } | C::NotValidYet,
                )
                | rustls::Error::InvalidCertificate(C::NotValidYetContext { .. }) => {
                    "renew the server's certificate (or check this machine's clock)"
                }
                rustls::Error::InvalidCertificate(_) => {
                    "trust the server's CA or self-signed certificate with \
                     RemoteConfig::with_root_certificate_pem"
                }
                rustls::Error::InvalidMessage(_) | rustls::Error::PeerSentOversizedRecord => {
                    "the server does not serve TLS on this port: use http://"
                }
                _ => "check that the server serves TLS on this port",
            },
            TransportError::ServerName(_) => "use a host name or an IP address",
            TransportError::NoHttp2(_) => "serve KV Connect over HTTP/2 (kv serve does)",
            TransportError::NotHttp2(_) => {
                "check the URL: a TLS server needs https://, and KV Connect needs \
                 HTTP/2 (kv serve, denokv and Deno Deploy speak it)"
            }
        }
    }
}

/// Sorts an HTTP/2 error: bytes that break the protocol mean the peer does
/// not speak it; anything the server said (GOAWAY, a stream reset) or the
/// socket did may pass.
fn from_h2(e: h2::Error) -> TransportError {
    if e.is_library() {
        TransportError::NotHttp2(format!("its answer breaks the protocol ({e})"))
    } else {
        TransportError::Network(e.to_string())
    }
}

/// Sorts a failed TLS handshake: rustls' own errors are final; a connection
/// closed or reset during the handshake may pass.
fn from_tls(host: &str, e: std::io::Error) -> TransportError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(error) => TransportError::Tls {
            host: host.to_owned(),
            error: error.clone(),
        },
        None => TransportError::Network(format!("TLS handshake with {host}: {e}")),
    }
}

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
    ) -> Result<Streaming, TransportError> {
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
            from_h2(e)
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
    async fn connection(&self, origin: &Origin) -> Result<(Connection, bool), TransportError> {
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
            .map_err(|_| {
                let (host, port) = (&origin.host, origin.port);
                TransportError::Network(format!("connecting to {host}:{port} timed out"))
            })??;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn = Connection { id, sender };
        self.lock().insert(origin.clone(), conn.clone());
        Ok((conn, false))
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, TransportError> {
        let (host, port) = (&origin.host, origin.port);
        let network = |e: std::io::Error| {
            TransportError::Network(format!("connecting to {host}:{port}: {e}"))
        };
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(network)?;
        tcp.set_nodelay(true).map_err(network)?;
        if !origin.https {
            return match handshake(tcp).await {
                Err(TransportError::Network(why)) => match answer_to_http1(origin).await {
                    Some(answer) => Err(TransportError::NotHttp2(format!(
                        "it ended the HTTP/2 connection ({why}) but answers HTTP/1.1 with {:?}",
                        String::from_utf8_lossy(&answer)
                    ))),
                    None => Err(TransportError::Network(why)),
                },
                other => other,
            };
        }
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| TransportError::ServerName(host.clone()))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| from_tls(host, e))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(TransportError::NoHttp2(host.clone()));
        }
        handshake(tls).await
    }
}

async fn handshake<T>(io: T) -> Result<Sender, TransportError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, mut connection) = h2::client::Builder::new()
        // A stream may hold 4 MiB unread (a watch whose consumer is slow)
        // without stalling the connection's other calls.
        .initial_window_size(4 << 20)
        .initial_connection_window_size(64 << 20)
        // A 1000-entry listing arrives as one DATA frame instead of nine:
        // fewer frames to parse and one flow-control release (+10% listings).
        .max_frame_size(1 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(from_h2)?;
    let mut ping = connection
        .ping_pong()
        .expect("a new connection's PingPong is taken only here");
    let (ended, end) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let result = connection.await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "KV Connect connection ended");
        }
        let _ = ended.send(result);
    });
    // The connection carries requests once the server has answered a PING,
    // so a peer that does not speak HTTP/2 is found here, before a request
    // was sent: it answers the preface with bytes that break the protocol,
    // or closes the connection. (With a request sent along, a write failing
    // on the closed connection could come first and hide its answer.)
    if let Err(e) = ping.ping(h2::Ping::opaque()).await {
        // The connection's own error says why; the ping's only that it ended.
        let why = tokio::time::timeout(Duration::from_secs(1), end).await;
        return Err(match why {
            Ok(Ok(Err(e))) => from_h2(e),
            _ => from_h2(e),
        });
    }
    Ok(sender)
}

/// Whether `first`, the first bytes a server sent, can begin HTTP/2: its
/// first frame is SETTINGS (type 4) on stream 0. (A frame header is a
/// length of 3 bytes, the type, flags and a stream id of 4 bytes.)
fn is_http2_start(first: &[u8]) -> bool {
    let settings = first.get(3).is_none_or(|t| *t == 4);
    let stream_0 = first
        .get(5..first.len().min(9))
        .is_none_or(|id| id.iter().all(|b| *b == 0));
    settings && stream_0
}

/// How many bytes of a server's answer [`answer_to_http1`] reads.
const ANSWER_BYTES: usize = 16;

/// Asks the server at `origin` in HTTP/1.1, after a new h2c connection to
/// it ended before the server answered its PING: an HTTP/1-only server
/// closes on the HTTP/2 preface without a byte (hyper does), and so may a
/// proxy whose backend is down; only the first answers a request. Its
/// first bytes, if they are not HTTP/2.
async fn answer_to_http1(origin: &Origin) -> Option<Vec<u8>> {
    let (host, port) = (&origin.host, origin.port);
    let probe = async {
        let mut tcp = TcpStream::connect((host.as_str(), port)).await.ok()?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let request = format!("GET / HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut answer = vec![0; ANSWER_BYTES];
        let n = tcp.read(&mut answer).await.ok()?;
        answer.truncate(n);
        Some(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .ok()??;
    (!answer.is_empty() && !is_http2_start(&answer)).then_some(answer)
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
pub(crate) async fn read_body(response: Streaming) -> Result<Bytes, TransportError> {
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
        let chunk = chunk.map_err(from_h2)?;
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
pub(crate) async fn next_chunk(body: &mut h2::RecvStream) -> Option<Result<Bytes, TransportError>> {
    let chunk = body.data().await?;
    Some(chunk.map_err(from_h2).inspect(|c| {
        let _ = body.flow_control().release_capacity(c.len());
    }))
}

//! The data path's HTTP/2: one multiplexed connection per origin, on the
//! `h2` crate directly.
//!
//! A call's headers and body are queued together before the connection
//! flushes, so each request leaves in one write and the server reads it in
//! one go; a general-purpose client sends the body after the headers, in a
//! second write, once flow-control capacity has been granted.

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
        let host = url.host_str().ok_or("the URL has no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let uri = url.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
        Ok(Target {
            origin: Origin { https, host, port },
            uri,
        })
    }

    /// The URL, for messages.
    pub(crate) fn as_str(&self) -> String {
        self.uri.to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

type Sender = h2::client::SendRequest<Bytes>;

/// HTTP/2 connections, opened on first use and replaced after a failure.
#[derive(Debug)]
pub(crate) struct Transport {
    tls: Arc<rustls::ClientConfig>,
    connections: Mutex<HashMap<Origin, Sender>>,
}

/// A response whose body is still arriving.
pub(crate) type Streaming = Response<h2::RecvStream>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        })
    }

    /// Sends a POST and waits for the response head.
    pub(crate) async fn post(
        &self,
        target: &Target,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Streaming, String> {
        let (sender, cached) = self.sender(&target.origin).await?;
        let ready = match sender.ready().await {
            Ok(ready) => Ok(ready),
            // A kept connection the server has closed since (a restart):
            // nothing was sent on it, so a new one is tried at once.
            Err(_) if cached => {
                self.forget(&target.origin);
                let (fresh, _) = self.sender(&target.origin).await?;
                fresh.ready().await
            }
            Err(e) => Err(e),
        };
        let result = match ready {
            Ok(sender) => send(sender, target, headers, body).await,
            Err(e) => Err(e.to_string()),
        };
        if result.is_err() {
            // The connection may be broken: the next call opens a new one.
            self.forget(&target.origin);
        }
        result
    }

    /// Closes every connection (they end once their streams finish).
    pub(crate) fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Origin, Sender>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget(&self, origin: &Origin) {
        self.lock().remove(origin);
    }

    /// The origin's connection, and whether it was already open.
    async fn sender(&self, origin: &Origin) -> Result<(Sender, bool), String> {
        if let Some(sender) = self.lock().get(origin) {
            return Ok((sender.clone(), true));
        }
        // Two calls racing here may both connect; the later one wins the
        // map and the other connection serves its call, then closes.
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(origin))
            .await
            .map_err(|_| format!("connecting to {}:{} timed out", origin.host, origin.port))??;
        self.lock().insert(origin.clone(), sender.clone());
        Ok((sender, false))
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
        // Room for a whole 1000-entry listing without window updates.
        .initial_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
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
) -> Result<Streaming, String> {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers.clone();
    let (response, mut stream) = sender
        .send_request(request, body.is_empty())
        .map_err(|e| e.to_string())?;
    if !body.is_empty() {
        // Buffered by h2 until the connection flushes, with the headers.
        stream.send_data(body, true).map_err(|e| e.to_string())?;
    }
    response.await.map_err(|e| e.to_string())
}

/// Reads a whole body, returning flow-control capacity as it goes.
pub(crate) async fn read_body(response: Streaming) -> Result<Bytes, String> {
    let hint = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
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

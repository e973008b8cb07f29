//! A configuration that can never work fails at once, with a message that
//! names the URL and what to change; only transient failures are retried.
//! Each case uses the default retry budget (8 retries, about ten seconds of
//! backoff), so a misconfiguration that were retried would take seconds.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kv_core::{Error, Kv, KvValue, MemoryBackend, key};
use kv_remote::{RemoteConfig, ServerConfig, bind, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "misconfigured-token-1";

/// Far below the retry budget, far above a local handshake.
const FAST: Duration = Duration::from_secs(2);

/// A kv server on a fresh port, with TLS when `cert` is given; its port.
async fn kv_server(cert: Option<&rcgen::CertifiedKey<rcgen::KeyPair>>) -> u16 {
    let mut config = ServerConfig::new([TOKEN]);
    if let Some(cert) = cert {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        config = config.with_tls_pem(&cert_path, &key_path).unwrap();
    }
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let backend = Arc::new(MemoryBackend::new());
    tokio::spawn(serve(listener, backend, config, std::future::pending()));
    addr.port()
}

fn certificate() -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap()
}

/// Accepts connections and hands each to `answer`; the listener's port.
async fn listener<F, Fut>(answer: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    });
    port
}

/// An HTTP server that answers every request with `status` and `body`,
/// over HTTP/1.1 only or h2c only.
async fn http_server(http2: bool, status: u16, body: &'static str) -> u16 {
    listener(move |stream| async move {
        let service = hyper::service::service_fn(move |_request| async move {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let io = TokioIo::new(stream);
        let _ = if http2 {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await
        } else {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
        };
    })
    .await
}

/// Connects to `url` with the default retries; the error, which must come
/// within [`FAST`] and name the URL.
async fn refused(config: RemoteConfig, url: &str) -> Error {
    let started = Instant::now();
    let result = config.connect().await;
    let took = started.elapsed();
    let Err(error) = result else {
        panic!("{url} connected");
    };
    assert!(took < FAST, "{url}: {error} took {took:?}");
    assert!(!error.is_retryable(), "{url}: {error:?}");
    let url = url.trim_end_matches('/');
    assert!(error.to_string().contains(url), "{error} should name {url}");
    error
}

fn assert_says(error: &Error, what: &str) {
    assert!(
        matches!(error, Error::InvalidArgument(_)),
        "{error:?} should be InvalidArgument"
    );
    assert!(
        error.to_string().contains(what),
        "{error} should say {what:?}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_fast() {
    let port = kv_server(Some(&certificate())).await;
    let url = format!("https://localhost:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "UnknownIssuer");
    assert_says(&error, "with_root_certificate_pem");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_fast() {
    let cert = certificate();
    let port = kv_server(Some(&cert)).await;
    let url = format!("https://127.0.0.1:{port}");
    let config = RemoteConfig::new(&url, TOKEN).with_root_certificate_pem(cert.cert.pem());
    let error = refused(config, &url).await;
    assert_says(&error, "a name the server's certificate lists");
}

#[tokio::test]
async fn https_to_a_plain_http_port_fails_fast() {
    let port = kv_server(None).await;
    let url = format!("https://localhost:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "use http://");
}

#[tokio::test]
async fn http_to_a_tls_port_fails_fast() {
    let port = kv_server(Some(&certificate())).await;
    let url = format!("http://localhost:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "does not speak HTTP/2");
    assert_says(&error, "https://");
}

#[tokio::test]
async fn a_server_speaking_only_http1_fails_fast() {
    let port = http_server(false, 200, "{}").await;
    let url = format!("http://127.0.0.1:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "does not speak HTTP/2");
}

#[tokio::test]
async fn a_listener_answering_garbage_fails_fast() {
    let port = listener(|mut stream| async move {
        let mut buf = [0; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"220 this is not a web server\r\n").await;
        let _ = stream.flush().await;
    })
    .await;
    let url = format!("http://127.0.0.1:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "does not speak HTTP/2");
}

#[tokio::test]
async fn a_server_that_is_not_kv_connect_fails_fast() {
    let port = http_server(true, 404, "no such page").await;
    let url = format!("http://127.0.0.1:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "404");
    assert_says(&error, "names a KV Connect server");

    // kv's own server, at a path that is not its metadata endpoint.
    let port = kv_server(None).await;
    let url = format!("http://127.0.0.1:{port}/not/kv");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "404");
}

#[tokio::test]
async fn a_malformed_metadata_answer_fails_fast() {
    let port = http_server(true, 200, r#"{"version": 3}"#).await;
    let url = format!("http://127.0.0.1:{port}");
    let error = refused(RemoteConfig::new(&url, TOKEN), &url).await;
    assert_says(&error, "not a valid KV Connect endpoint");
}

#[tokio::test]
async fn a_wrong_token_fails_fast() {
    let port = kv_server(None).await;
    let url = format!("http://127.0.0.1:{port}");
    let error = refused(RemoteConfig::new(&url, "not-the-token-0000"), &url).await;
    assert!(matches!(error, Error::PermissionDenied(_)), "{error:?}");
    assert!(error.to_string().contains("access token"), "{error}");
}

/// Calls fail as fast as connecting does: a server replaced by one that
/// does not speak HTTP/2 on the same port.
#[tokio::test]
async fn a_call_to_a_server_that_stopped_speaking_http2_fails_fast() {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(MemoryBackend::new()),
        ServerConfig::new([TOKEN]),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}");
    let kv = Kv::new(RemoteConfig::new(&url, TOKEN).connect().await.unwrap());
    kv.set(key!["a"], KvValue::U64(1)).await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let garbage = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = garbage.accept().await {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let started = Instant::now();
    let error = kv.get(key!["a"]).await.unwrap_err();
    assert!(
        started.elapsed() < FAST,
        "{error} took {:?}",
        started.elapsed()
    );
    assert_says(&error, "does not speak HTTP/2");
}

/// The contrast: a refused connection (a server restarting) is retried
/// with backoff before it fails, as Unavailable.
#[tokio::test]
async fn a_refused_connection_is_retried() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let result = RemoteConfig::new(format!("http://127.0.0.1:{port}"), TOKEN)
        .with_max_retries(3)
        .connect()
        .await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    // Three backoffs of at least 50, 100 and 200 ms.
    assert!(
        took >= Duration::from_millis(350),
        "retried for {took:?} only"
    );
}

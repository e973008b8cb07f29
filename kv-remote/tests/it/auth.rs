//! The `authorization` header as denokv reads it: the scheme `Bearer` in any
//! case, one space, and the token to the end of the value, nothing else.
//! Sent as raw bytes (HTTP/1.1 by hand, HTTP/2 with the bare h2 crate), so
//! no client library tidies the header first.

use std::net::SocketAddr;
use std::sync::Arc;

use kv_core::MemoryBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "auth-test-token-0123";
const METADATA: &[u8] = br#"{"supportedVersions":[2,3]}"#;

pub(crate) async fn start(config: kv_remote::ServerConfig) -> SocketAddr {
    let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    tokio::spawn(kv_remote::serve(
        listener,
        Arc::new(MemoryBackend::new()),
        config,
        std::future::pending(),
    ));
    addr
}

/// The status of a metadata request whose `authorization` header is the
/// bytes `auth`, in HTTP/1.1 written by hand.
async fn h1_status(addr: SocketAddr, auth: &[u8]) -> u16 {
    let mut request = Vec::new();
    request.extend_from_slice(b"POST / HTTP/1.1\r\nhost: kv\r\nconnection: close\r\n");
    request.extend_from_slice(b"content-type: application/json\r\nauthorization: ");
    request.extend_from_slice(auth);
    request.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", METADATA.len()).as_bytes());
    request.extend_from_slice(METADATA);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    // "HTTP/1.1 401 Unauthorized"
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The same request in HTTP/2, where header values travel as they are (an
/// HTTP/1.1 parser drops whitespace around a value; HPACK keeps it).
async fn h2_status(addr: SocketAddr, auth: &str) -> u16 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/"))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(METADATA.into(), true).unwrap();
    response.await.unwrap().status().as_u16()
}

#[tokio::test]
async fn only_exactly_bearer_space_token_is_accepted() {
    let addr = start(kv_remote::ServerConfig::new([TOKEN])).await;
    let mut failures = Vec::new();
    let mut check = |form: String, want: u16, got: u16| {
        if want != got {
            failures.push(format!("{form:?}: want {want}, got {got}"));
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {TOKEN}");
        check(auth.clone(), 200, h1_status(addr, auth.as_bytes()).await);
        check(auth.clone(), 200, h2_status(addr, &auth).await);
    }
    let malformed = [
        format!("Bearer  {TOKEN}"),
        format!("Bearer\t{TOKEN}"),
        format!("Bearer \t{TOKEN}"),
        format!("Bearer{TOKEN}"),
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN} x"),
        TOKEN.to_owned(),
    ];
    for auth in &malformed {
        check(auth.clone(), 401, h1_status(addr, auth.as_bytes()).await);
        check(auth.clone(), 401, h2_status(addr, auth).await);
    }
    // Whitespace at either end of a field is not part of its value in
    // HTTP/1.1 (RFC 9110, 5.5): the parser removes it before the server
    // sees it. HTTP/2, which Deno speaks, delivers it, and it is refused.
    let padded = [
        format!("Bearer {TOKEN} "),
        format!("Bearer {TOKEN}\t "),
        format!(" Bearer {TOKEN}"),
    ];
    for auth in padded {
        check(auth.clone(), 401, h2_status(addr, &auth).await);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

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

/// A TCP connection from the loopback address `from` (the server listens
/// on 127.0.0.1; all of 127/8 is this host). Each case of a test comes from
/// an address of its own, so that no case spends another's budget of
/// failed logins.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// The status of a metadata request whose `authorization` header is the
/// bytes `auth`, in HTTP/1.1 written by hand.
async fn h1_status(from: &str, addr: SocketAddr, auth: &[u8]) -> u16 {
    let mut request = Vec::new();
    request.extend_from_slice(b"POST / HTTP/1.1\r\nhost: kv\r\nconnection: close\r\n");
    request.extend_from_slice(b"content-type: application/json\r\nauthorization: ");
    request.extend_from_slice(auth);
    request.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", METADATA.len()).as_bytes());
    request.extend_from_slice(METADATA);
    let mut stream = connect_from(from, addr).await;
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

/// An HTTP/2 connection from the loopback address `from`.
async fn h2_from(from: &str, addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = connect_from(from, addr).await;
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Status and `Retry-After` of a metadata request with `auth` over `client`.
async fn h2_metadata(
    client: &h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    auth: &str,
) -> (u16, Option<u64>) {
    let mut client = client.clone().ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/"))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(METADATA.into(), true).unwrap();
    let response = response.await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (response.status().as_u16(), retry_after)
}

/// The same request in HTTP/2, where header values travel as they are (an
/// HTTP/1.1 parser drops whitespace around a value; HPACK keeps it).
async fn h2_status(from: &str, addr: SocketAddr, auth: &str) -> u16 {
    h2_metadata(&h2_from(from, addr).await, addr, auth).await.0
}

#[tokio::test]
async fn only_exactly_bearer_space_token_is_accepted() {
    let addr = start(kv_remote::ServerConfig::new([TOKEN])).await;
    let mut failures = Vec::new();
    let from = |case: u8| format!("127.0.1.{case}");
    let mut check = |form: String, want: u16, got: u16| {
        if want != got {
            failures.push(format!("{form:?}: want {want}, got {got}"));
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {TOKEN}");
        check(
            auth.clone(),
            200,
            h1_status(&from(1), addr, auth.as_bytes()).await,
        );
        check(auth.clone(), 200, h2_status(&from(1), addr, &auth).await);
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
    for (case, auth) in (10..).zip(&malformed) {
        check(
            auth.clone(),
            401,
            h1_status(&from(case), addr, auth.as_bytes()).await,
        );
        check(auth.clone(), 401, h2_status(&from(case), addr, auth).await);
    }
    // Whitespace at either end of a field is not part of its value in
    // HTTP/1.1 (RFC 9110, 5.5): the parser removes it before the server
    // sees it. HTTP/2, which Deno speaks, delivers it, and it is refused.
    let padded = [
        format!("Bearer {TOKEN} "),
        format!("Bearer {TOKEN}\t "),
        format!(" Bearer {TOKEN}"),
    ];
    for (case, auth) in (30..).zip(padded) {
        check(auth.clone(), 401, h2_status(&from(case), addr, &auth).await);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A client guessing tokens gets 10 failures, then 429 with `Retry-After`
/// whatever it sends, its right token too; a client at another address
/// keeps working meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessing_peer_is_throttled_while_others_keep_working() {
    let addr = start(kv_remote::ServerConfig::new([TOKEN])).await;
    let guesser = h2_from("127.0.0.2", addr).await;
    let guesses = (0..40).map(|i| {
        let guesser = guesser.clone();
        async move { h2_metadata(&guesser, addr, &format!("Bearer guess-{i:06}")).await }
    });
    let other = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let others = (0..20).map(|_| {
        let other = other.clone();
        async move {
            other
                .post(format!("http://{addr}/"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(METADATA)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    // Guesses all at once on one connection, beside the other client.
    let (answers, statuses) = tokio::join!(
        futures::future::join_all(guesses),
        futures::future::join_all(others)
    );
    let failed = answers.iter().filter(|a| a.0 == 401).count();
    let throttled: Vec<u64> = answers
        .iter()
        .filter(|a| a.0 == 429)
        .map(|a| a.1.expect("a 429 says when to retry"))
        .collect();
    assert_eq!((failed, throttled.len()), (10, 30), "{answers:?}");
    assert!(
        throttled.iter().all(|s| (1..=6).contains(s)),
        "{throttled:?}"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Refused before its token is looked at: the right one is refused too.
    let right = format!("Bearer {TOKEN}");
    assert_eq!(h2_metadata(&guesser, addr, &right).await.0, 429);
    // The other client's data path works as well.
    let read = other
        .post(format!("http://{addr}/v2/snapshot_read"))
        .header("authorization", right)
        .header("x-denokv-version", "3")
        .header(
            "x-denokv-database-id",
            "00000000-0000-0000-0000-000000000000",
        )
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
}

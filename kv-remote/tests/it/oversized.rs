//! Requests far over the protocol's limits are refused before they cost
//! the server much: a body over the size limit with 413 before it is
//! decoded, a body within it whose count of mutations is over the limit
//! with 400 at the 1,001st mutation, not after decoding all of them.
//!
//! The server runs alone on one thread, so the CPU time of that thread is
//! the server's cost of a refusal. It is printed (run with `--nocapture`),
//! not asserted: timings depend on the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_core::MemoryBackend;
use kv_remote::proto;
use prost::Message;

use crate::bad_requests::{bytes, set};

const TOKEN: &str = "oversized-token-0123";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// A server on a thread of its own (a current-thread runtime), and a way
/// to read that thread's CPU time.
struct Server {
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
}

impl Server {
    fn start() -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap();
                tx.send((addr, tokio::runtime::Handle::current())).unwrap();
                kv_remote::serve(
                    listener,
                    Arc::new(MemoryBackend::new()),
                    kv_remote::ServerConfig::new([TOKEN]),
                    std::future::pending(),
                )
                .await
                .unwrap();
            });
        });
        let (addr, runtime) = rx.recv().unwrap();
        Server { addr, runtime }
    }

    /// CPU time the server's thread has used so far, where the system
    /// tells (Linux).
    async fn cpu(&self) -> Option<Duration> {
        self.runtime
            .spawn(async {
                // The first field is the time this thread spent on a CPU, in ns.
                let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
                let ns = stat.split_whitespace().next()?.parse().ok()?;
                Some(Duration::from_nanos(ns))
            })
            .await
            .unwrap()
    }
}

/// An `atomic_write` of `n` one-byte sets of distinct 12-byte keys (25
/// bytes each on the wire).
fn mutations(n: u32) -> Bytes {
    let w = proto::AtomicWrite {
        mutations: (0..n)
            .map(|i| {
                let mut key = vec![2, b'k'];
                key.extend_from_slice(&i.to_be_bytes());
                key.extend_from_slice(&[0; 6]);
                set(key, bytes(vec![1]))
            })
            .collect(),
        ..Default::default()
    };
    w.encode_to_vec().into()
}

/// Status and `x-kv-error` of `/v2/atomic_write` with `body`, over h2c.
async fn write(addr: SocketAddr, body: Bytes) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/v2/atomic_write"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-denokv-version", "3")
        .header("x-denokv-database-id", NIL)
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    // The server may answer and reset the stream before it has all of it.
    let _ = stream.send_data(body, true);
    let response = response.await.unwrap();
    let kind = response
        .headers()
        .get("x-kv-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), kind)
}

/// Sends `body` `rounds` times and returns the answers and the server's
/// CPU time per request.
async fn refusals(s: &Server, body: &Bytes, rounds: u32) -> (Vec<(u16, String)>, Option<Duration>) {
    let before = s.cpu().await;
    let mut answers = Vec::new();
    for _ in 0..rounds {
        answers.push(write(s.addr, body.clone()).await);
    }
    let after = s.cpu().await;
    let per_request = before.zip(after).map(|(b, a)| (a - b) / rounds);
    (answers, per_request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn oversized_writes_are_refused_before_they_are_decoded() {
    let s = Server::start();
    let rounds = 5;

    // 160,000 mutations, 4.0 MB: over the body limit.
    let huge = mutations(160_000);
    let (answers, huge_cpu) = refusals(&s, &huge, rounds).await;
    eprintln!(
        "{} bytes, 160,000 mutations: {:?}, server CPU per request {huge_cpu:?}",
        huge.len(),
        answers[0]
    );
    // 30,000 mutations, 750 kB: within the body limit, over the count.
    let many = mutations(30_000);
    let (many_answers, many_cpu) = refusals(&s, &many, rounds).await;
    eprintln!(
        "{} bytes, 30,000 mutations: {:?}, server CPU per request {many_cpu:?}",
        many.len(),
        many_answers[0]
    );
    // A commit of 1,000 such mutations, the most there may be, for scale.
    let fine = mutations(1000);
    let (fine_answers, fine_cpu) = refusals(&s, &fine, rounds).await;
    eprintln!(
        "{} bytes, 1,000 mutations: {:?}, server CPU per request {fine_cpu:?}",
        fine.len(),
        fine_answers[0]
    );

    for answer in answers {
        assert_eq!(answer, (413, "payload-too-large".to_owned()));
    }
    for answer in many_answers {
        assert_eq!(answer, (400, "limit/mutations/1000/1001".to_owned()));
    }
    for answer in fine_answers {
        assert_eq!(answer.0, 200, "{answer:?}");
    }
}

//! Keys-only reads: a sink that needs no values gets keys and versionstamps
//! from a kv server without the values crossing the network, and from a
//! server without the extension (denokv, Deploy) the same keys, with the
//! values sent and handed over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::IntoResponse;
use kv_core::backend::{Backend, Consistency, ReadRange, ReadSink, read_into};
use kv_core::{Kv, KvValue, MemoryBackend, PrefixBackend, ValueRef, Versionstamp, key};
use kv_remote::{RemoteBackend, RemoteConfig, ServerConfig, proto};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "keys-only-token-1234";
const ENTRIES: u64 = 200;
const VALUE_BYTES: usize = 8 * 1024;

/// What a read handed over: keys, versionstamps and the value bytes.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    entries: Vec<(Vec<u8>, Versionstamp)>,
    value_bytes: usize,
}

/// A sink that keeps keys and versionstamps and counts the value bytes it
/// is handed; `wants_values` as told.
#[derive(Default)]
struct Keys {
    seen: Seen,
    wants_values: bool,
}

impl ReadSink for Keys {
    fn begin_range(&mut self) {}

    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp) {
        self.seen.entries.push((key.to_vec(), versionstamp));
        self.seen.value_bytes += match value {
            ValueRef::V8(b) | ValueRef::Bytes(b) => b.len(),
            ValueRef::U64(_) => 8,
        };
    }

    fn clear(&mut self) {
        self.seen = Seen::default();
    }

    fn wants_values(&self) -> bool {
        self.wants_values
    }
}

/// A TCP proxy in front of `port` that counts the bytes the server sends.
async fn counting_proxy(port: u16) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                let _ = server_write.shutdown().await;
            });
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    (local, sent)
}

/// A memory database of [`ENTRIES`] keys with values of [`VALUE_BYTES`].
async fn database() -> Arc<MemoryBackend> {
    let backend = Arc::new(MemoryBackend::new());
    let kv = Kv::new(backend.clone());
    for chunk in 0..ENTRIES / 20 {
        let mut op = kv.atomic();
        for i in 0..20 {
            let n = chunk * 20 + i;
            op.set(key!["items", n], KvValue::Bytes(vec![n as u8; VALUE_BYTES]));
        }
        op.commit().await.unwrap();
    }
    backend
}

/// The port of kv's server on `backend`, or of one that answers like
/// denokv: no `x-kv-extensions` header, and 404 on kv's extension paths.
async fn server(backend: Arc<MemoryBackend>, extensions: bool) -> u16 {
    let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = ServerConfig::new([TOKEN]);
    if extensions {
        tokio::spawn(kv_remote::serve(
            listener,
            backend,
            config,
            std::future::pending(),
        ));
        return addr.port();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let like_denokv = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if request.uri().path().starts_with("/v2/x-kv/") {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            let mut response = next.run(request).await;
            response.headers_mut().remove("x-kv-extensions");
            response
        },
    );
    let app = kv_remote::router(backend, config, stopped).layer(like_denokv);
    tokio::spawn(async move {
        let _stop = stop;
        axum::serve(listener, app).await
    });
    addr.port()
}

async fn connect(port: u16) -> RemoteBackend {
    RemoteConfig::new(format!("http://127.0.0.1:{port}"), TOKEN)
        .connect()
        .await
        .unwrap()
}

fn items() -> Vec<ReadRange> {
    let start = key!["items"].encode().unwrap();
    let (mut lo, mut hi) = (start.clone(), start);
    lo.push(0x00);
    hi.push(0xff);
    vec![ReadRange {
        start: lo,
        end: hi,
        limit: 1000,
        reverse: false,
    }]
}

/// Reads every item through `backend` with a sink that wants values or
/// not; what it was handed, and the bytes the server sent meanwhile.
async fn read(backend: &dyn Backend, sent: &AtomicU64, wants_values: bool) -> (Seen, u64) {
    let before = sent.load(Ordering::SeqCst);
    let sink = Keys {
        wants_values,
        ..Keys::default()
    };
    let sink = read_into(backend, items(), Consistency::Strong, sink)
        .await
        .unwrap();
    (sink.seen, sent.load(Ordering::SeqCst) - before)
}

const VALUES_TOTAL: u64 = ENTRIES * VALUE_BYTES as u64;

#[tokio::test]
async fn keys_only_reads_ship_no_values_from_a_kv_server() {
    let backend = database().await;
    let (port, sent) = counting_proxy(server(backend.clone(), true).await).await;
    let remote = connect(port).await;

    let (full, full_bytes) = read(&remote, &sent, true).await;
    assert_eq!(full.entries.len(), ENTRIES as usize);
    assert_eq!(full.value_bytes as u64, VALUES_TOTAL);
    assert!(full_bytes >= VALUES_TOTAL, "a full read sent {full_bytes}");

    let (keys, keys_bytes) = read(&remote, &sent, false).await;
    assert_eq!(
        keys.entries, full.entries,
        "the same keys and versionstamps"
    );
    assert_eq!(keys.value_bytes, 0, "values handed as empty bytes");
    // Each entry is its key and versionstamp, about 30 bytes.
    assert!(
        keys_bytes < ENTRIES * 64,
        "a keys-only read of {ENTRIES} keys sent {keys_bytes} bytes"
    );

    // Through a namespace, whose sink passes the wish on.
    let namespace = PrefixBackend::new(remote.clone(), Vec::new());
    let (prefixed, prefixed_bytes) = read(&namespace, &sent, false).await;
    assert_eq!(prefixed.entries, full.entries);
    assert!(prefixed_bytes < ENTRIES * 64, "{prefixed_bytes}");

    // A `kv serve` in front of a remote database asks it the same way.
    let chain_port = {
        let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        tokio::spawn(kv_remote::serve(
            listener,
            Arc::new(remote.clone()),
            ServerConfig::new([TOKEN]),
            std::future::pending(),
        ));
        addr.port()
    };
    let front = connect(chain_port).await;
    let before = sent.load(Ordering::SeqCst);
    let (chained, _) = read(&front, &AtomicU64::new(0), false).await;
    assert_eq!(chained.entries, full.entries);
    let upstream = sent.load(Ordering::SeqCst) - before;
    assert!(upstream < ENTRIES * 64, "the first server sent {upstream}");
}

#[tokio::test]
async fn a_server_without_keys_only_reads_sends_the_values() {
    let backend = database().await;
    let (port, sent) = counting_proxy(server(backend.clone(), false).await).await;
    let remote = connect(port).await;
    let (full, _) = read(&remote, &sent, true).await;
    let (keys, keys_bytes) = read(&remote, &sent, false).await;
    assert_eq!(keys.entries, full.entries);
    assert_eq!(keys.entries.len(), ENTRIES as usize);
    assert_eq!(
        keys.value_bytes as u64, VALUES_TOTAL,
        "the values it sent are handed over"
    );
    assert!(keys_bytes >= VALUES_TOTAL, "{keys_bytes}");
}

/// The wire form, as a client other than kv's reads it with prost: every
/// entry has its key and versionstamp, and neither value nor encoding.
#[tokio::test]
async fn the_keys_only_response_carries_keys_and_versionstamps() {
    let backend = database().await;
    let port = server(backend.clone(), true).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let metadata = http
        .post(&base)
        .bearer_auth(TOKEN)
        .body(r#"{"supportedVersions":[3]}"#)
        .send()
        .await
        .unwrap();
    let announced = metadata.headers()["x-kv-extensions"].to_str().unwrap();
    assert!(announced.split(',').any(|e| e.trim() == "keys-only"));
    let request = proto::SnapshotRead {
        ranges: items()
            .into_iter()
            .map(|r| proto::ReadRange {
                start: r.start,
                end: r.end,
                limit: r.limit as i32,
                reverse: r.reverse,
            })
            .collect(),
    };
    let answer = http
        .post(format!("{base}/v2/x-kv/snapshot_read_keys"))
        .bearer_auth(TOKEN)
        .header("x-denokv-version", "3")
        .header(
            "x-denokv-database-id",
            "00000000-0000-0000-0000-000000000000",
        )
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.bytes().await.unwrap();
    let out = proto::SnapshotReadOutput::decode(body.as_ref()).unwrap();
    assert_eq!(out.status, proto::SnapshotReadStatus::SrSuccess as i32);
    assert!(out.read_is_strongly_consistent);
    let entries = &out.ranges[0].values;
    assert_eq!(entries.len(), ENTRIES as usize);
    let expected = backend.snapshot_read(items(), Consistency::Strong).await;
    for (got, want) in entries.iter().zip(&expected.unwrap()[0]) {
        assert_eq!(got.key, want.key);
        assert_eq!(got.versionstamp, want.versionstamp.0);
        assert!(got.value.is_empty() && got.encoding == 0, "{got:?}");
    }
    assert!(body.len() < (ENTRIES * 64) as usize, "{} bytes", body.len());
}

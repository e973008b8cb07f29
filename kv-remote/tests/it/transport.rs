//! RemoteBackend's HTTP/2 data path: bodies larger than every flow-control
//! window, many calls and watches multiplexed on one connection, and a new
//! connection after the server went away.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::try_join_all;
use kv_core::{Kv, KvValue, ListOptions, MemoryBackend, Selector, key};
use kv_remote::{RemoteConfig, ServerConfig, bind, serve};

const TOKEN: &str = "transport-token-1234";

async fn start(backend: Arc<MemoryBackend>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        backend,
        ServerConfig::new([TOKEN]),
        async move {
            let _ = stopped.await;
        },
    ));
    (format!("http://{addr}"), stop)
}

#[tokio::test]
async fn responses_larger_than_the_receive_window_arrive_whole() {
    let (url, _stop) = start(Arc::new(MemoryBackend::new())).await;
    // A stalled body fails within seconds instead of being retried.
    let remote = RemoteConfig::new(url, TOKEN)
        .with_timeout(std::time::Duration::from_secs(10))
        .with_max_retries(0);
    let kv = Kv::new(remote.connect().await.unwrap());
    // 120 values of 60 KiB: one 7 MiB listing, beyond the 4 MiB stream
    // window, so it only completes if capacity is given back as it is read.
    for chunk in 0..12u64 {
        let mut op = kv.atomic();
        for i in 0..10u64 {
            let n = chunk * 10 + i;
            op.set(key!["big", n], KvValue::Bytes(vec![n as u8; 60 * 1024]));
        }
        assert!(matches!(
            op.commit().await.unwrap(),
            kv_core::backend::CommitOutcome::Committed { .. }
        ));
    }
    for _ in 0..3 {
        let entries = kv
            .list(
                Selector::prefix(key!["big"]),
                ListOptions::default().with_batch_size(1000),
            )
            .collect_all()
            .await
            .unwrap();
        assert_eq!(entries.len(), 120);
        for (n, e) in entries.iter().enumerate() {
            assert_eq!(e.value, KvValue::Bytes(vec![n as u8; 60 * 1024]));
        }
    }
}

#[tokio::test]
async fn concurrent_calls_share_one_connection() {
    let (url, _stop) = start(Arc::new(MemoryBackend::new())).await;
    let kv = Kv::new(RemoteConfig::new(url, TOKEN).connect().await.unwrap());
    let writes = (0..500u64).map(|i| {
        let kv = kv.clone();
        async move { kv.set(key!["n", i], KvValue::U64(i)).await }
    });
    try_join_all(writes).await.unwrap();
    let reads = (0..500u64).map(|i| {
        let kv = kv.clone();
        async move { kv.get(key!["n", i]).await }
    });
    let got = try_join_all(reads).await.unwrap();
    for (i, e) in got.into_iter().enumerate() {
        assert_eq!(e.unwrap().value, KvValue::U64(i as u64));
    }
}

/// Deno's client sends every call of a handle on one HTTP/2 connection, so
/// an app watching many keys must not use up the connection's streams: with
/// hyper's default of 200, the 201st call waited forever.
#[tokio::test]
async fn hundreds_of_open_watches_leave_room_for_calls() {
    let (url, _stop) = start(Arc::new(MemoryBackend::new())).await;
    let remote = RemoteConfig::new(url, TOKEN).with_timeout(std::time::Duration::from_secs(5));
    let kv = Kv::new(remote.connect().await.unwrap());
    let open = async {
        let mut watches = Vec::new();
        for i in 0..500u64 {
            let mut w = Box::pin(kv.watch(&[key!["w", i]]).unwrap());
            w.next().await.unwrap().unwrap();
            watches.push(w);
        }
        let stamp = kv.set(key!["w", 7u64], KvValue::U64(7)).await.unwrap();
        (watches, stamp)
    };
    let (mut watches, stamp) = tokio::time::timeout(std::time::Duration::from_secs(20), open)
        .await
        .expect("500 watches and a set on one connection");
    let seen = watches[7].next().await.unwrap().unwrap();
    assert_eq!(seen[0].as_ref().unwrap().versionstamp, stamp);
}

#[tokio::test]
async fn a_new_connection_after_the_server_restarts() {
    let backend = Arc::new(MemoryBackend::new());
    let (url, stop) = start(backend.clone()).await;
    // No retries: the kept connection is dead after the restart, and the
    // backend must notice that before sending, not fail the call.
    let remote = RemoteConfig::new(url.clone(), TOKEN).with_max_retries(0);
    let kv = Kv::new(remote.connect().await.unwrap());
    kv.set(key!["a"], KvValue::U64(1)).await.unwrap();
    stop.send(()).unwrap();
    // The same port, served again over the same data.
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let listener = loop {
        match bind(addr).await {
            Ok((listener, _)) => break listener,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    tokio::spawn(serve(
        listener,
        backend,
        ServerConfig::new([TOKEN]),
        std::future::pending(),
    ));
    // Let the client's connection task read the old server's goodbye.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        kv.get(key!["a"]).await.unwrap().unwrap().value,
        KvValue::U64(1)
    );
    kv.set(key!["b"], KvValue::U64(2)).await.unwrap();
}

#[tokio::test]
async fn ipv6_literal_urls_work() {
    let Ok((listener, addr)) = bind("[::1]:0".parse().unwrap()).await else {
        panic!("this machine has no IPv6 loopback");
    };
    tokio::spawn(serve(
        listener,
        Arc::new(MemoryBackend::new()),
        ServerConfig::new([TOKEN]),
        std::future::pending(),
    ));
    let url = format!("http://[::1]:{}", addr.port());
    let remote = RemoteConfig::new(url, TOKEN).with_max_retries(0);
    let kv = Kv::new(remote.connect().await.unwrap());
    kv.set(key!["six"], KvValue::U64(6)).await.unwrap();
    assert_eq!(
        kv.get(key!["six"]).await.unwrap().unwrap().value,
        KvValue::U64(6)
    );
}

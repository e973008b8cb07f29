//! Transient server faults are retried by the remote backend; client
//! mistakes are not; a graceful shutdown ends watches and returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, ReadSink, WatchStream,
};
use kv_core::{Error, Kv, KvValue, MemoryBackend, key};

const TOKEN: &str = "resilience-token-123";

/// Fails the first `failures` commits with a retryable error (redb's
/// countdown fault injection, as a `Backend` wrapper).
#[derive(Debug)]
struct FaultyBackend {
    inner: MemoryBackend,
    failures: AtomicU32,
    commits_seen: AtomicU32,
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> &str {
        "faulty"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        c: Consistency,
    ) -> kv_core::Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, c).await
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        c: Consistency,
        sink: Box<dyn ReadSink>,
    ) -> kv_core::Result<Box<dyn ReadSink>> {
        self.inner.snapshot_read_into(ranges, c, sink).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> kv_core::Result<CommitOutcome> {
        self.commits_seen.fetch_add(1, Ordering::SeqCst);
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(Error::Unavailable {
                backend: "faulty".into(),
                message: "injected".into(),
            });
        }
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

async fn start(
    backend: Arc<dyn Backend>,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(kv_remote::serve(
        listener,
        backend,
        kv_remote::ServerConfig::new([TOKEN]),
        async {
            let _ = rx.await;
        },
    ));
    (format!("http://{addr}"), tx, task)
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let faulty = Arc::new(FaultyBackend {
        inner: MemoryBackend::new(),
        failures: AtomicU32::new(3),
        commits_seen: AtomicU32::new(0),
    });
    let (url, _stop, _task) = start(faulty.clone()).await;
    let kv = Kv::new(
        kv_remote::RemoteConfig::new(url.clone(), TOKEN)
            .connect()
            .await
            .unwrap(),
    );
    kv.set(key!["a"], KvValue::U64(1)).await.unwrap();
    assert_eq!(
        faulty.commits_seen.load(Ordering::SeqCst),
        4,
        "three 503s, then success"
    );

    // With retries exhausted the error is Unavailable (retryable), not a hang.
    faulty.failures.store(100, Ordering::SeqCst);
    let impatient = Kv::new(
        kv_remote::RemoteConfig::new(url, TOKEN)
            .with_max_retries(1)
            .connect()
            .await
            .unwrap(),
    );
    let err = impatient.set(key!["b"], KvValue::U64(1)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn client_mistakes_are_not_retried() {
    let faulty = Arc::new(FaultyBackend {
        inner: MemoryBackend::new(),
        failures: AtomicU32::new(0),
        commits_seen: AtomicU32::new(0),
    });
    let (url, _stop, _task) = start(faulty.clone()).await;
    let kv = Kv::new(
        kv_remote::RemoteConfig::new(url.clone(), TOKEN)
            .connect()
            .await
            .unwrap(),
    );
    kv.set(key!["s"], KvValue::Bytes(b"text".to_vec()))
        .await
        .unwrap();
    let err = kv.atomic().sum(key!["s"], 1).commit().await.unwrap_err();
    assert!(matches!(err, Error::TypeMismatch(_)), "{err:?}");
    assert_eq!(faulty.commits_seen.load(Ordering::SeqCst), 2, "sent once");

    let wrong = kv_remote::RemoteConfig::new(url, "not-the-token-000")
        .connect()
        .await;
    assert!(
        matches!(wrong, Err(Error::PermissionDenied(_))),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_ends_watches_and_returns() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (url, stop, task) = start(backend).await;
    let kv = Kv::new(
        kv_remote::RemoteConfig::new(url, TOKEN)
            .with_max_retries(0)
            .connect()
            .await
            .unwrap(),
    );
    let mut watch = Box::pin(kv.watch(&[key!["w"]]).unwrap());
    assert!(watch.next().await.unwrap().unwrap()[0].is_none());
    stop.send(()).unwrap();
    let served = tokio::time::timeout(Duration::from_secs(15), task).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "serve returns after shutdown: {served:?}"
    );
    // The server is gone: calls fail with a retryable error.
    let err = kv.get(key!["w"]).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    kv.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "closing the client ends its watch: {end:?}"
    );
}

#[tokio::test]
async fn watch_sees_writes_quickly() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (url, _stop, _task) = start(backend).await;
    let kv = Kv::new(
        kv_remote::RemoteConfig::new(url, TOKEN)
            .connect()
            .await
            .unwrap(),
    );
    let mut watch = Box::pin(kv.watch(&[key!["w"]]).unwrap());
    watch.next().await.unwrap().unwrap();
    for i in 0..20u64 {
        let stamp = kv.set(key!["w"], KvValue::U64(i)).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(2), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(seen[0].as_ref().map(|e| e.versionstamp), Some(stamp));
    }
}

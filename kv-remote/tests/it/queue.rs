//! The server applies the queue layer: whatever backend it serves, the
//! enqueues of its clients are stored as queue records.

use std::sync::Arc;

use kv_core::backend::Backend;
use kv_core::{EnqueueOptions, Kv, MemoryBackend};
use kv_queue::QueueBackend;
use kv_queue::layout::read_messages;

const TOKEN: &str = "queue-token-12345678";

/// The V8 encoding of the number 1.
const PAYLOAD: [u8; 4] = [0xff, 0x10, 0x49, 0x02];

/// A client of a server on `backend`.
async fn client(backend: Arc<dyn Backend>) -> Kv {
    let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    tokio::spawn(kv_remote::serve(
        listener,
        backend,
        kv_remote::ServerConfig::new([TOKEN]),
        std::future::pending(),
    ));
    let remote = kv_remote::RemoteConfig::new(format!("http://{addr}"), TOKEN)
        .with_max_retries(0)
        .connect()
        .await
        .unwrap();
    Kv::new(remote)
}

/// A bare storage backend refuses enqueues; served, it stores them.
#[tokio::test]
async fn a_served_storage_backend_stores_enqueues() {
    let storage = Arc::new(MemoryBackend::new());
    let kv = client(storage.clone()).await;
    kv.enqueue(PAYLOAD.to_vec(), EnqueueOptions::default())
        .await
        .unwrap();
    let stored = read_messages(&*storage).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].1.payload, PAYLOAD);
}

/// A backend that already has the queue layer (as `kv::open_backend`
/// returns them) gets a second one in the server, which stores each
/// message once.
#[tokio::test]
async fn a_backend_with_the_queue_layer_stores_each_enqueue_once() {
    let storage = Arc::new(MemoryBackend::new());
    let kv = client(Arc::new(QueueBackend::new(storage.clone()))).await;
    let mut op = kv.atomic();
    op.enqueue(PAYLOAD.to_vec(), EnqueueOptions::default());
    op.enqueue(PAYLOAD.to_vec(), EnqueueOptions::default());
    op.commit().await.unwrap();
    let stored = read_messages(&*storage).await.unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.iter().all(|(_, m)| m.payload == PAYLOAD));
}

//! A listener whose lease is taken over while its handler runs lets the
//! handler finish, but records nothing: no acknowledgement, no retry, no
//! dead letter, not even another renewal. Whoever took the message over
//! owns its outcome (`kv_queue::lease`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, Mutation, MutationKind, RawEntry, ReadRange,
    WatchStream,
};
use kv_core::clock::ManualClock;
use kv_core::{EnqueueOptions, Kv, KvValue, MemoryBackend, Result, Versionstamp, key};
use kv_queue::{Delivery, Queue, QueueBackend, layout};
use tokio::sync::{mpsc, oneshot, watch};

/// Memory storage that notes the keys each commit checks.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryBackend,
    checked: Mutex<Vec<Vec<u8>>>,
}

impl Recording {
    /// How many commits so far were checked against `key`.
    fn writes_checking(&self, key: &[u8]) -> usize {
        let checked = self.checked.lock().unwrap();
        checked.iter().filter(|k| k.as_slice() == key).count()
    }
}

#[async_trait]
impl Backend for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let keys = write.checks.iter().map(|c| c.key.clone());
        self.checked.lock().unwrap().extend(keys);
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

async fn read(backend: &dyn Backend, key: &[u8]) -> RawEntry {
    let range = ReadRange {
        start: key.to_vec(),
        end: [key, &[0]].concat(),
        limit: 1,
        reverse: false,
    };
    let mut ranges = backend
        .snapshot_read(vec![range], Consistency::Strong)
        .await
        .unwrap();
    ranges.pop().unwrap().pop().unwrap()
}

/// What another listener does when it takes a message over: it writes the
/// running record anew (here with a lease that never expires, so nobody
/// recovers it meanwhile). Returns the new record's versionstamp.
async fn take_over(backend: &dyn Backend, running_key: &[u8]) -> Versionstamp {
    let KvValue::Bytes(record) = read(backend, running_key).await.value else {
        panic!("a running record is bytes");
    };
    let (_, message) = layout::decode_running(&record).unwrap();
    let write = AtomicWrite {
        mutations: vec![Mutation {
            key: running_key.to_vec(),
            kind: MutationKind::Set {
                value: KvValue::Bytes(layout::encode_running(u64::MAX / 2, &message)),
                expire_at_ms: None,
            },
        }],
        ..AtomicWrite::default()
    };
    backend
        .atomic_write(write)
        .await
        .unwrap()
        .versionstamp()
        .unwrap()
}

/// Moves `clock` on by `step_ms` at a time, letting the listener act after
/// each step, until `done`.
async fn advance_until(clock: &ManualClock, step_ms: u64, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        clock.advance(step_ms);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not done after 1000 steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_lease_was_taken_over_records_nothing() {
    let storage = Arc::new(Recording::default());
    let backend: Arc<dyn Backend> = Arc::new(QueueBackend::new(storage.clone()));
    let clock = Arc::new(ManualClock::new(1_000_000));
    // Renewed every 100 ms of the manual clock.
    let lease = Duration::from_millis(300);
    let kv = Kv::from_arc(backend.clone()).with_clock(clock.clone());
    // A failure without retries would be recorded as a dead letter.
    let options = EnqueueOptions::default()
        .with_backoff_schedule(vec![])
        .with_key_if_undelivered(key!["dead"]);
    kv.enqueue(b"payload".to_vec(), options).await.unwrap();

    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (finished_tx, mut finished) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let queue = Queue::new(backend.clone())
        .with_clock(clock.clone())
        .with_lease(lease);
    let listener = tokio::spawn(async move {
        let handler = move |d: Delivery| {
            let _ = started_tx.send(d.id);
            let (mut released, finished) = (released.clone(), finished_tx.clone());
            async move {
                let _ = released.wait_for(|r| *r).await;
                let _ = finished.send(());
                Err::<(), kv_queue::HandlerError>("the handler fails".into())
            }
        };
        queue
            .listen(handler, async {
                let _ = stopped.await;
            })
            .await
    });
    let id = started.recv().await.unwrap();
    let running_key = layout::running_key(&id);
    let taken = take_over(&*backend, &running_key).await;
    let before = storage.writes_checking(&running_key);

    // The next renewal's check fails: the lease is lost. (The clock moves
    // until it comes: the handler started before the lease's first sleep.)
    advance_until(&clock, 100, || {
        storage.writes_checking(&running_key) > before
    })
    .await;
    // A listener that kept renewing would renew again now.
    clock.advance(200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.send(true).unwrap();
    // The handler ran to its end.
    tokio::time::timeout(Duration::from_secs(10), finished.recv())
        .await
        .unwrap()
        .unwrap();
    // Shutdown waits for the handler's task, so whatever it writes is
    // written by now.
    let _ = stop.send(());
    listener.await.unwrap().unwrap();

    assert_eq!(
        storage.writes_checking(&running_key),
        before + 1,
        "after losing its lease the listener wrote for the message again"
    );
    assert_eq!(read(&*backend, &running_key).await.versionstamp, taken);
    assert!(kv.get(key!["dead"]).await.unwrap().is_none());
}

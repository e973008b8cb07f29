//! A listener whose backend fails for a moment keeps going: a failed
//! lease-recovery pass is tried again within moments, also under a manual
//! clock that does not move (before, it waited for the clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, WatchStream,
};
use kv_core::clock::ManualClock;
use kv_core::{EnqueueOptions, Error, Kv, MemoryBackend, Result};
use kv_queue::{Delivery, Queue, QueueBackend};

/// Memory storage whose next `fail_reads` reads fail as unavailable.
#[derive(Debug)]
struct Flaky {
    inner: MemoryBackend,
    fail_reads: AtomicU32,
}

#[async_trait]
impl Backend for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let failing = self
            .fail_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(Error::Unavailable {
                backend: "flaky".into(),
                message: "a moment's outage".into(),
            });
        }
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[tokio::test]
async fn a_failed_recovery_pass_is_retried_without_the_clock_moving() {
    let storage = Arc::new(Flaky {
        inner: MemoryBackend::new(),
        fail_reads: AtomicU32::new(0),
    });
    let backend: Arc<dyn Backend> = Arc::new(QueueBackend::new(storage.clone()));
    let clock = Arc::new(ManualClock::new(1_000_000));
    let lease = Duration::from_millis(300);
    let queue = || {
        Queue::new(backend.clone())
            .with_clock(clock.clone())
            .with_lease(lease)
    };
    let kv = Kv::from_arc(backend.clone()).with_clock(clock.clone());
    kv.enqueue(b"payload".to_vec(), EnqueueOptions::default())
        .await
        .unwrap();

    // A listener takes the message and dies without renewing its lease.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let q = queue();
    let dying = tokio::spawn(async move {
        q.listen(
            move |d: Delivery| {
                let _ = tx.send(d.attempt);
                std::future::pending::<std::result::Result<(), kv_queue::HandlerError>>()
            },
            std::future::pending(),
        )
        .await
    });
    assert_eq!(rx.recv().await, Some(0));
    dying.abort();
    let _ = dying.await;
    clock.advance(lease.as_millis() as u64 + 1);

    // The next listener's first four reads fail: both recovery passes of
    // its first two rounds (a round reads for recovery, claims and the next
    // due time; the watch's first answer starts the second round). Before,
    // the second failure left it waiting for a clock that does not move.
    storage.fail_reads.store(4, Ordering::SeqCst);
    let q = queue();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::spawn(async move {
        q.listen(|_| async { Ok(()) }, async {
            let _ = stopped.await;
        })
        .await
    });
    // Only the listener reads until its failure is spent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while storage.fail_reads.load(Ordering::SeqCst) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never read"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let stats = queue().stats().await.unwrap();
        if stats.delayed == 1 && stats.running == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead listener's message was not recovered: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    listener.await.unwrap().unwrap();
}

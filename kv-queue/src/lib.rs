//! Durable queues for kv, on any [`Backend`].
//!
//! Queue messages are ordinary data under the reserved system key space, so
//! every backend — memory, SQLite, remote — stores them with the same
//! guarantees as user data, and an enqueue inside an atomic commit is stored
//! if and only if the commit succeeds.
//!
//! This crate owns the byte layout (see [`layout`]). [`QueueBackend`] wraps
//! a storage backend and turns the `enqueues` of each `AtomicWrite` into
//! mutations of that layout, inside the same commit; [`Queue`] delivers
//! the messages. [`lease`] (leases kept alive while a handler runs) and
//! [`time`] (sleeping on a `Clock`) are shared with kv-cron.
//!
//! ```
//! # futures::executor::block_on(async {
//! use kv_core::backend::{AtomicWrite, Backend, Enqueue};
//! use kv_core::MemoryBackend;
//! use kv_queue::QueueBackend;
//!
//! let backend = QueueBackend::new(MemoryBackend::new());
//! let write = AtomicWrite {
//!     enqueues: vec![Enqueue {
//!         payload: vec![0xff, 0x10, 0x49, 0x02],
//!         deadline_ms: 0,
//!         keys_if_undelivered: vec![],
//!         backoff_schedule: None,
//!     }],
//!     ..AtomicWrite::default()
//! };
//! assert!(backend.atomic_write(write).await?.is_ok());
//! let stored = kv_queue::layout::read_messages(&backend).await?;
//! assert_eq!(stored.len(), 1);
//! # Ok::<(), kv_core::Error>(())
//! # }).unwrap();
//! ```

use async_trait::async_trait;
use kv_core::Result;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, ReadSink, WatchStream,
};

pub mod layout;
pub mod lease;
mod listener;
pub mod time;

pub use listener::{
    DEFAULT_CONCURRENCY, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, Delivery, HandlerError, Queue,
    QueueStats,
};

pub use kv_core::backend::DEFAULT_BACKOFF_SCHEDULE;

/// A [`Backend`] wrapper that stores the enqueues of every commit as queue
/// records in the same commit, and forwards everything else.
#[derive(Debug, Clone)]
pub struct QueueBackend<B> {
    inner: B,
}

impl<B: Backend> QueueBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        QueueBackend { inner }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<B: Backend> Backend for QueueBackend<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
        sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        self.inner
            .snapshot_read_into(ranges, consistency, sink)
            .await
    }

    async fn atomic_write(&self, mut write: AtomicWrite) -> Result<CommitOutcome> {
        layout::encode_enqueues(&mut write);
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

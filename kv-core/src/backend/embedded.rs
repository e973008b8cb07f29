//! The shell an embedded storage engine runs in: a writer thread fed by a
//! request channel, reader threads, small reads on the caller's thread, and
//! the rules for closing and dropping. kv-sqlite and kv-redb are each an
//! engine inside it; a third engine writes its storage code and its writer
//! loop, not another copy of this.
//!
//! The pieces:
//! - [`Embedded`] implements [`Backend`]: commits go to the writer thread
//!   as [`WriteRequest`]s, reads run inline through the engine's
//!   [`InlineReads`] under a [`ReadBudget`] or go to a reader thread (or,
//!   without reader threads, to the writer) as [`ReadRequest`]s.
//! - [`Embedded::new`] hands back the [`Receivers`] for the engine's
//!   threads, which it starts with [`Embedded::spawn`].
//! - [`next_batch`] is the writer's group-commit receive: wait for one
//!   request, then take what is already queued, never wait for more.
//! - [`serve_reads`] is a reader thread's loop; [`ReadRequest::serve`]
//!   answers one read and survives a sink that panics.
//!
//! Closing (or dropping the last clone) drops the request senders and the
//! inline readers, which ends the threads once their queues are empty;
//! [`Backend::close`] waits for them without blocking the executor, drop
//! joins them. Watch streams end then too.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures::channel::oneshot;

use super::watch::{WatchHub, watch_keys};
use super::workers::Workers;
use super::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadBudget, ReadRange, ReadSink,
    StorageWrite, WatchStream, downcast_sink,
};
use crate::{Clock, Error, Result};

/// What an engine reads with on the caller's thread: connections, a
/// database handle. It is dropped when the backend closes, so a handle
/// kept here does not outlive [`Backend::close`].
pub trait InlineReads: Send + Sync + 'static {
    /// Reads `ranges` into `sink` on the caller's thread, at time `now_ms`,
    /// spending `budget` on the bytes it copies and stopping once it is
    /// exceeded. [`InlineRead::Elsewhere`] when it cannot read now without
    /// waiting (no free connection, a locked file): the read then goes to
    /// a thread of the engine. The shell clears `sink` before that.
    ///
    /// # Errors
    /// The engine's read errors, which fail the read.
    fn read(
        &self,
        ranges: &[ReadRange],
        now_ms: u64,
        budget: &mut ReadBudget,
        sink: &mut dyn ReadSink,
    ) -> Result<InlineRead>;
}

/// How an inline read went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InlineRead {
    /// The sink holds the result, unless the budget was exceeded.
    Done,
    /// Not read here: do it on a thread of the engine.
    Elsewhere,
}

/// An engine with nothing to read with on the caller's thread: every read
/// goes to its threads.
impl InlineReads for () {
    fn read(
        &self,
        _ranges: &[ReadRange],
        _now_ms: u64,
        _budget: &mut ReadBudget,
        _sink: &mut dyn ReadSink,
    ) -> Result<InlineRead> {
        Ok(InlineRead::Elsewhere)
    }
}

/// What the writer thread is asked to do.
pub enum Request {
    /// Commit a write.
    Write(WriteRequest),
    /// Read, for engines without reader threads.
    Read(ReadRequest),
}

/// One commit and where its outcome goes.
pub struct WriteRequest {
    /// The commit.
    pub write: StorageWrite,
    /// Where the outcome goes; the caller may have stopped waiting.
    pub reply: oneshot::Sender<Result<CommitOutcome>>,
}

impl WriteRequest {
    /// Sends the outcome to the caller, if it still waits.
    pub fn answer(self, outcome: Result<CommitOutcome>) {
        let _ = self.reply.send(outcome);
    }
}

/// One snapshot read, the sink its entries go to, and where the sink goes
/// back once they are in it.
pub struct ReadRequest {
    /// The ranges to read.
    pub ranges: Vec<ReadRange>,
    /// Where the entries go.
    pub sink: Box<dyn ReadSink>,
    /// Where the filled sink goes; the caller may have stopped waiting.
    pub reply: oneshot::Sender<Result<Box<dyn ReadSink>>>,
}

impl ReadRequest {
    /// Reads with `read` and answers, unless the caller stopped waiting.
    /// A sink that panics fails its read with [`Error::Backend`] naming
    /// `backend`, not the thread.
    pub fn serve<E: Into<Error>>(
        mut self,
        backend: &str,
        read: impl FnOnce(&[ReadRange], &mut dyn ReadSink) -> Result<(), E>,
    ) {
        if self.reply.is_canceled() {
            return;
        }
        let sink = &mut *self.sink;
        let ranges = &self.ranges;
        let result = match catch_unwind(AssertUnwindSafe(|| read(ranges, sink))) {
            Ok(Ok(())) => Ok(self.sink),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Error::Backend {
                backend: backend.to_owned(),
                source: "the read's sink panicked".into(),
            }),
        };
        let _ = self.reply.send(result);
    }
}

/// A reader thread's loop: serves reads with `read` until every sender is
/// gone and the queue is empty.
pub fn serve_reads<E: Into<Error>>(
    backend: &str,
    requests: &Receiver<ReadRequest>,
    mut read: impl FnMut(&[ReadRange], &mut dyn ReadSink) -> Result<(), E>,
) {
    while let Ok(request) = requests.recv() {
        request.serve(backend, &mut read);
    }
}

/// The requests a writer thread took in one pass.
#[derive(Default)]
pub struct Batch {
    /// Commits, in arrival order.
    pub writes: Vec<WriteRequest>,
    /// Reads (engines without reader threads only).
    pub reads: Vec<ReadRequest>,
}

/// What [`next_batch`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The batch holds requests.
    Requests,
    /// Nothing came within the timeout: time for background work.
    Idle,
    /// Every sender is gone and the queue is empty: the thread should end.
    Closed,
}

/// The writer's receive for group commit: waits up to `timeout` (`None`:
/// until a request comes) for one request, then moves into `batch` what is
/// already queued, at most `max` writes and `max` reads, without waiting
/// for more.
pub fn next_batch(
    requests: &Receiver<Request>,
    timeout: Option<Duration>,
    max: usize,
    batch: &mut Batch,
) -> Received {
    let first = match timeout {
        None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        Some(timeout) => requests.recv_timeout(timeout),
    };
    let mut next = match first {
        Ok(request) => Some(request),
        Err(RecvTimeoutError::Timeout) => return Received::Idle,
        Err(RecvTimeoutError::Disconnected) => return Received::Closed,
    };
    while let Some(request) = next.take() {
        match request {
            Request::Write(w) => batch.writes.push(w),
            Request::Read(r) => batch.reads.push(r),
        }
        if batch.writes.len() < max && batch.reads.len() < max {
            next = requests.try_recv().ok();
        }
    }
    Received::Requests
}

/// The receiving ends for the engine's threads, from [`Embedded::new`].
pub struct Receivers {
    /// The writer thread's requests.
    pub writer: Receiver<Request>,
    /// The reader threads' requests (shared among them); `None` when the
    /// backend was made without reader threads, and reads that do not run
    /// inline go to the writer as [`Request::Read`].
    pub readers: Option<Receiver<ReadRequest>>,
}

/// A [`Backend`] made of an engine's threads and its [`InlineReads`].
/// Cheap to clone: clones share the threads, the watchers and the state.
pub struct Embedded<R> {
    shared: Arc<Shared<R>>,
}

struct Shared<R> {
    name: &'static str,
    hub: WatchHub,
    clock: Arc<dyn Clock>,
    /// `None` once closed. Dropping the senders is what stops the threads.
    open: RwLock<Option<Open<R>>>,
    workers: Workers,
}

struct Open<R> {
    writer: Sender<Request>,
    readers: Option<Sender<ReadRequest>>,
    inline: R,
}

impl<R> Clone for Embedded<R> {
    fn clone(&self) -> Self {
        Embedded {
            shared: self.shared.clone(),
        }
    }
}

impl<R> fmt::Debug for Embedded<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<R: InlineReads> Embedded<R> {
    /// A backend named `name` (for errors and logs) that reads inline with
    /// `inline`, with reader threads when `readers` is true. Start the
    /// threads on the returned receivers with [`Embedded::spawn`]; until
    /// the writer runs, commits wait.
    pub fn new(
        name: &'static str,
        clock: Arc<dyn Clock>,
        inline: R,
        readers: bool,
    ) -> (Self, Receivers) {
        let (writer_tx, writer_rx) = crossbeam_channel::unbounded();
        let (readers_tx, readers_rx) = if readers {
            let (tx, rx) = crossbeam_channel::unbounded();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            name,
            hub: WatchHub::new(),
            clock,
            open: RwLock::new(Some(Open {
                writer: writer_tx,
                readers: readers_tx,
                inline,
            })),
            workers: Workers::new(),
        });
        let receivers = Receivers {
            writer: writer_rx,
            readers: readers_rx,
        };
        (Embedded { shared }, receivers)
    }

    /// The watchers of this backend: the writer wakes them after commits
    /// and sweeps.
    pub fn hub(&self) -> &WatchHub {
        &self.shared.hub
    }

    /// Starts a thread of the engine, named `name`. It is joined on close
    /// and on drop, so it must end once its receiver reports that every
    /// sender is gone.
    ///
    /// # Errors
    /// [`Error::Backend`] when the operating system cannot start a thread.
    /// Dropping the backend then stops the threads started so far.
    pub fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> Result<()> {
        self.shared
            .workers
            .spawn(name, body)
            .map_err(|e| Error::Backend {
                backend: self.shared.name.to_owned(),
                source: Box::new(e),
            })
    }

    fn open(&self) -> RwLockReadGuard<'_, Option<Open<R>>> {
        self.shared.open.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a small read on the caller's thread if the engine can; `false`
    /// (with `sink` cleared) sends it to a thread instead.
    fn read_inline(&self, ranges: &[ReadRange], sink: &mut dyn ReadSink) -> Result<bool> {
        let Some(mut budget) = ReadBudget::inline(ranges) else {
            return Ok(false);
        };
        let open = self.open();
        let open = open.as_ref().ok_or(Error::Closed)?;
        let now = self.shared.clock.now_ms();
        match open.inline.read(ranges, now, &mut budget, sink)? {
            // A large read copies a lot: that belongs on a thread of the
            // engine, not on the caller's executor.
            InlineRead::Done if !budget.exceeded() => Ok(true),
            InlineRead::Done | InlineRead::Elsewhere => {
                sink.clear();
                Ok(false)
            }
        }
    }

    /// Reads on a thread of the engine into `sink`.
    async fn read_on_thread(
        &self,
        ranges: Vec<ReadRange>,
        sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        let (reply, result) = oneshot::channel();
        let request = ReadRequest {
            ranges,
            sink,
            reply,
        };
        {
            let open = self.open();
            let open = open.as_ref().ok_or(Error::Closed)?;
            let sent = match &open.readers {
                Some(readers) => readers.send(request).is_ok(),
                None => open.writer.send(Request::Read(request)).is_ok(),
            };
            if !sent {
                return Err(Error::Closed);
            }
        }
        result.await.map_err(|_| Error::Closed)?
    }
}

impl<R> Drop for Shared<R> {
    fn drop(&mut self) {
        let open = self.open.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(open.take());
        self.workers.join_blocking();
        self.hub.close();
    }
}

#[async_trait]
impl<R: InlineReads> Backend for Embedded<R> {
    fn name(&self) -> &str {
        self.shared.name
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        // Not through `snapshot_read_into`: an inline read then fills the
        // entries in place, without boxing them as a sink.
        let mut entries = Vec::with_capacity(ranges.len());
        if self.read_inline(&ranges, &mut entries)? {
            return Ok(entries);
        }
        let sink = self.read_on_thread(ranges, Box::new(entries)).await?;
        downcast_sink(sink, self.shared.name)
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
        mut sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        if self.read_inline(&ranges, &mut *sink)? {
            return Ok(sink);
        }
        self.read_on_thread(ranges, sink).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let write = StorageWrite::new(write, self.shared.name)?;
        let (reply, result) = oneshot::channel();
        {
            let open = self.open();
            let open = open.as_ref().ok_or(Error::Closed)?;
            open.writer
                .send(Request::Write(WriteRequest { write, reply }))
                .map_err(|_| Error::Closed)?;
        }
        result.await.map_err(|_| Error::Closed)?
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        watch_keys(&self.shared.hub, self, keys)
    }

    async fn close(&self) {
        let open = self
            .shared
            .open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if open.is_none() {
            return;
        }
        drop(open);
        self.shared.workers.join().await;
        self.shared.hub.close();
    }
}

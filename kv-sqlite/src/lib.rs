//! A durable [`kv_core::Backend`] on SQLite whose files are byte-compatible
//! with the ones Deno's own `Deno.openKv(path)` writes: kv opens Deno's
//! files and Deno opens kv's.
//!
//! - **Writes** go to one writer thread, which commits everything already
//!   queued as one group: one transaction, one fsync, each write in its own
//!   savepoint with its own versionstamp. A write whose check or mutation
//!   fails is rolled back alone.
//! - **Reads** run beside commits (WAL mode), each call in one snapshot.
//!   Small reads (point gets, `getMany`, list batches of Deno's default
//!   size: at most [`INLINE_READ_ENTRIES`] entries) run at once on the
//!   caller's thread when one of two inline connections is free: SQLite
//!   answers them from its page cache in tens of microseconds, less than
//!   the two thread hand-offs a reader thread costs. Larger reads, small
//!   ones when both inline connections are busy or the file is locked, and
//!   small ones that find more than [`INLINE_READ_BYTES`] go to a pool of
//!   reader threads.
//! - **Durability**: WAL with `synchronous = FULL`; a commit is acknowledged
//!   only after SQLite's `COMMIT` returned. A checkpointer thread copies the
//!   WAL into the database file in the background and the writer finishes
//!   each pass when it is idle, so the WAL starts over from its beginning
//!   and stays small.
//! - **Expiry**: expired rows are hidden from reads and checks at once and
//!   deleted by a sweep on the writer thread soon after.
//! - **Watch** sees commits of this handle at once and commits of other
//!   processes (or other handles on the same file) within about 20 ms.
//!
//! No async runtime is needed. Commits, large reads and retries on a locked
//! file never run on the caller's executor; only the short inline reads do.
//!
//! # File format
//!
//! Deno's schema at `migration_state` version 3 (other versions are
//! refused): table `kv` holds one row per key with the encoded key `k`, the
//! value bytes `v`, `v_encoding` (1 = V8, 2 = little-endian u64, 3 = bytes),
//! `version` (the commit counter, so the versionstamp is its 8 big-endian
//! bytes plus two zero bytes) and `expiration_ms` (−1 = never). Table
//! `data_version` holds the counter; each commit advances it by exactly 1,
//! and so does an expiry sweep that deleted something. The `queue` tables
//! are created for Deno but not used: kv keeps queues as data under
//! [`kv_core::backend::SYSTEM_PREFIX`]. In files kv creates, the index on
//! `expiration_ms` holds only rows that expire (Deno indexes every row);
//! Deno's and kv's expiry queries use it either way.
//!
//! ```
//! # futures::executor::block_on(async {
//! use kv_core::{Kv, KvValue, key};
//! use kv_sqlite::SqliteBackend;
//!
//! let kv = Kv::new(SqliteBackend::open_in_memory()?);
//! kv.set(key!["visits"], KvValue::U64(1)).await?;
//! kv.atomic().sum(key!["visits"], 41).commit().await?;
//! let entry = kv.get(key!["visits"]).await?.expect("written above");
//! assert_eq!(entry.value, KvValue::U64(42));
//! kv.close().await;
//! # Ok::<(), kv_core::Error>(())
//! # }).unwrap();
//! ```

mod checkpoint;
mod error;
mod reader;
mod schema;
mod store;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use crossbeam_channel::Sender;
use futures::channel::oneshot;
use kv_core::backend::{
    AtomicWrite, RawEntry, ReadBudget, ReadRange, ReadSink, WatchStream, downcast_sink,
};
use kv_core::watch::{WatchHub, watch_keys};
use kv_core::workers::Workers;
use kv_core::{Backend, Clock, CommitOutcome, Consistency, Error, Result, SystemClock};

use crate::error::BACKEND;
pub use crate::error::SqliteError;
use crate::reader::ReadRequest;
use crate::writer::{Request, Storage, WriteRequest, Writer};

/// Reader threads of a file database.
const READERS: usize = 2;

/// Connections for reads run on the caller's thread.
const INLINE_READERS: usize = 2;

pub use kv_core::backend::{INLINE_READ_BYTES, INLINE_READ_ENTRIES};

/// The default for [`SqliteConfig::with_max_batch`].
const DEFAULT_MAX_BATCH: usize = 256;

/// The default for [`SqliteConfig::with_busy_timeout`].
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open a [`SqliteBackend`] (builder-lite).
///
/// ```
/// use std::sync::Arc;
/// use kv_core::ManualClock;
/// use kv_sqlite::SqliteConfig;
///
/// let backend = SqliteConfig::in_memory()
///     .with_clock(Arc::new(ManualClock::new(1_000)))
///     .with_max_batch(64)
///     .open()?;
/// # Ok::<(), kv_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    path: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    busy_timeout: Duration,
    read_only: bool,
}

impl SqliteConfig {
    /// A database file at `path`, created if missing (its directory must
    /// exist). The path `":memory:"` means [`SqliteConfig::in_memory`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let path = (path.as_os_str() != ":memory:").then_some(path);
        SqliteConfig {
            path,
            clock: Arc::new(SystemClock),
            max_batch: DEFAULT_MAX_BATCH,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            read_only: false,
        }
    }

    /// A private database in memory, gone when the backend closes.
    pub fn in_memory() -> Self {
        SqliteConfig {
            path: None,
            ..SqliteConfig::new(":memory:")
        }
    }

    /// Uses `clock` to decide which keys have expired (tests pass a
    /// [`kv_core::ManualClock`]). The default is the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Commits at most `n` queued writes in one transaction (at least 1;
    /// default 256).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// How long one attempt waits for another process's lock on the file
    /// (default 2 s). A commit makes three attempts before it fails with the
    /// retryable [`Error::Unavailable`].
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// With `true`, opens an existing file without ever writing to it:
    /// commits fail with [`Error::ReadOnly`], expired rows are hidden but
    /// not deleted (watchers still hear when a key expires), and no
    /// checkpoint runs. Commits of other processes (a Deno program or a
    /// `kv serve` writing the same file) still wake watchers.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Opens the database and starts its threads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty path or a read-only database
    /// in memory; [`Error::Backend`] wrapping a [`SqliteError`] when the
    /// file cannot be opened, has another schema version than Deno's
    /// version 3, or refuses WAL or `synchronous = FULL`, and, read-only,
    /// when it does not exist or holds no Deno KV database;
    /// [`Error::Unavailable`] when another process keeps it locked.
    pub fn open(self) -> Result<SqliteBackend> {
        // SQLite would give each connection its own temporary database.
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(Error::InvalidArgument("Filename cannot be empty".into()));
        }
        // SQLite's own error for this is "disk I/O error".
        if let Some(dir) = self.path.as_ref().filter(|p| p.is_dir()) {
            return Err(Error::InvalidArgument(format!(
                "{} is a directory, not a database file",
                dir.display()
            )));
        }
        let storage = match (&self.path, self.read_only) {
            (None, true) => {
                return Err(Error::InvalidArgument(
                    "a read-only database needs a file".into(),
                ));
            }
            (None, false) => Storage::Memory,
            (Some(_), false) => Storage::File,
            (Some(_), true) => Storage::ReadOnlyFile,
        };
        let (writer_conn, checkpointer) = match (&self.path, storage) {
            (Some(path), Storage::ReadOnlyFile) => {
                (schema::open_read_only(path, self.busy_timeout)?, None)
            }
            (Some(path), _) => (
                schema::open_writer(Some(path), self.busy_timeout)?,
                Some(schema::open_checkpointer(path, self.busy_timeout)?),
            ),
            (None, _) => (schema::open_writer(None, self.busy_timeout)?, None),
        };
        let (notifier, rounds) = checkpoint::channel();
        let open_readers = |n: usize, busy_timeout: Duration| match &self.path {
            Some(path) => (0..n)
                .map(|_| schema::open_reader(path, busy_timeout, self.read_only))
                .collect::<Result<Vec<_>, _>>(),
            None => Ok(Vec::new()),
        };
        let reader_conns = open_readers(READERS, self.busy_timeout)?;
        // An inline read never waits for a lock: a busy file sends it to
        // the reader threads, which wait there, not on the caller's executor.
        let inline = open_readers(INLINE_READERS, Duration::ZERO)?
            .into_iter()
            .map(Mutex::new)
            .collect();
        let (write_tx, write_rx) = crossbeam_channel::unbounded();
        let (read_tx, read_rx) = crossbeam_channel::unbounded();
        let hub = WatchHub::new();
        let inner = Arc::new(Inner {
            path: self.path.clone(),
            hub: hub.clone(),
            clock: self.clock.clone(),
            inline,
            channels: RwLock::new(Some(Channels {
                writer: write_tx,
                reader: (!reader_conns.is_empty()).then_some(read_tx),
            })),
            workers: Workers::new(),
        });
        // On an error below, dropping `inner` stops the threads started so far.
        let writer = Writer::new(
            writer_conn,
            write_rx,
            hub,
            self.clock.clone(),
            self.max_batch,
            storage,
            checkpointer.is_some().then_some(notifier),
        );
        inner.spawn("kv-sqlite-writer".into(), move || writer.run())?;
        if let Some(conn) = checkpointer {
            inner.spawn("kv-sqlite-checkpoint".into(), move || {
                checkpoint::run(conn, rounds)
            })?;
        }
        for (i, conn) in reader_conns.into_iter().enumerate() {
            let rx = read_rx.clone();
            let clock = self.clock.clone();
            inner.spawn(format!("kv-sqlite-reader-{i}"), move || {
                reader::run(conn, rx, clock)
            })?;
        }
        Ok(SqliteBackend { inner })
    }
}

/// A [`Backend`] storing data in a SQLite file (or in memory) in Deno's own
/// layout. Cheap to clone: clones share the database, its threads and its
/// watchers. The threads stop on [`Backend::close`] or when the last clone
/// (and the last watch stream) is dropped.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    hub: WatchHub,
    clock: Arc<dyn Clock>,
    /// Read connections used on the caller's thread (none in memory).
    inline: Vec<Mutex<rusqlite::Connection>>,
    /// `None` once closed. Dropping the senders is what stops the threads.
    channels: RwLock<Option<Channels>>,
    workers: Workers,
}

struct Channels {
    writer: Sender<Request>,
    /// `None` for in-memory databases, whose reads go to the writer.
    reader: Option<Sender<ReadRequest>>,
}

impl Inner {
    fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> Result<()> {
        Ok(self.workers.spawn(name, body).map_err(SqliteError::Spawn)?)
    }

    fn send_write(&self, request: WriteRequest) -> Result<()> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let channels = channels.as_ref().ok_or(Error::Closed)?;
        channels
            .writer
            .send(Request::Write(request))
            .map_err(|_| Error::Closed)
    }

    /// Runs a small read on the caller's thread if an inline connection is
    /// free; `false` (with `sink` cleared) sends it to the reader threads
    /// instead.
    fn read_inline<'a>(&'a self, ranges: &[ReadRange], sink: &mut dyn ReadSink) -> Result<bool> {
        let Some(mut budget) = ReadBudget::inline(ranges) else {
            return Ok(false);
        };
        // A connection whose last reader panicked (in its sink) is as good
        // as any: its transaction was rolled back as the panic unwound.
        let free = |c: &'a Mutex<rusqlite::Connection>| match c.try_lock() {
            Ok(conn) => Some(conn),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let Some(conn) = self.inline.iter().find_map(free) else {
            return Ok(false);
        };
        if self.channels.read().map_or(true, |c| c.is_none()) {
            return Err(Error::Closed);
        }
        match store::read_ranges(&conn, ranges, self.clock.now_ms(), &mut budget, sink) {
            // A locked file is retried with pauses, a large read copies a
            // lot: both belong on a reader thread, not on the caller's
            // executor.
            Err(e) if e.is_busy() => {}
            Ok(()) if budget.exceeded() => {}
            result => return result.map(|()| true).map_err(Into::into),
        }
        sink.clear();
        Ok(false)
    }

    /// Reads on a thread of the backend's own into `sink`.
    async fn read_on_thread(
        &self,
        ranges: Vec<ReadRange>,
        sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        let (reply, result) = oneshot::channel();
        self.send_read(ReadRequest {
            ranges,
            sink,
            reply,
        })?;
        result.await.map_err(|_| Error::Closed)?
    }

    fn send_read(&self, request: ReadRequest) -> Result<()> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let channels = channels.as_ref().ok_or(Error::Closed)?;
        match &channels.reader {
            Some(reader) => reader.send(request).map_err(|_| Error::Closed),
            None => channels
                .writer
                .send(Request::Read(request))
                .map_err(|_| Error::Closed),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let channels = self.channels.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(channels.take());
        self.workers.join_blocking();
        self.hub.close();
    }
}

impl SqliteBackend {
    /// Opens (creating if missing) the database file at `path`.
    ///
    /// # Errors
    /// As [`SqliteConfig::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteBackend> {
        SqliteConfig::new(path.as_ref()).open()
    }

    /// Opens a private in-memory database.
    ///
    /// # Errors
    /// As [`SqliteConfig::open`].
    pub fn open_in_memory() -> Result<SqliteBackend> {
        SqliteConfig::in_memory().open()
    }
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match &self.inner.path {
            Some(path) => path.display().to_string(),
            None => ":memory:".into(),
        };
        f.debug_struct("SqliteBackend")
            .field("path", &path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        // Not through `snapshot_read_into`: an inline read then fills the
        // entries in place, without boxing them as a sink.
        let mut entries = Vec::with_capacity(ranges.len());
        if self.inner.read_inline(&ranges, &mut entries)? {
            return Ok(entries);
        }
        let sink = self.inner.read_on_thread(ranges, Box::new(entries)).await?;
        downcast_sink(sink, BACKEND)
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
        mut sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        if self.inner.read_inline(&ranges, &mut *sink)? {
            return Ok(sink);
        }
        self.inner.read_on_thread(ranges, sink).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        if !write.enqueues.is_empty() {
            return Err(Error::Unsupported {
                backend: BACKEND.into(),
                op: "enqueue",
            });
        }
        let (reply, result) = oneshot::channel();
        self.inner.send_write(WriteRequest { write, reply })?;
        result.await.map_err(|_| Error::Closed)?
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        watch_keys(&self.inner.hub, self, keys)
    }

    async fn close(&self) {
        let channels = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if channels.is_none() {
            return;
        }
        drop(channels);
        self.inner.workers.join().await;
        self.inner.hub.close();
    }
}

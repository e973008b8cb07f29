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
//!
//! # Backup and restore
//!
//! [`backup`] copies a live file as one snapshot while writers keep
//! committing; [`restore`] puts a backup in place of a database no process
//! has open, its commit counter moved forward so versionstamps keep
//! increasing. A backup is a database file in this format.

mod backup;
mod checkpoint;
mod error;
mod reader;
mod schema;
mod store;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::embedded::{Embedded, InlineRead, InlineReads};
use kv_core::backend::{AtomicWrite, RawEntry, ReadBudget, ReadRange, ReadSink, WatchStream};
use kv_core::{Backend, Clock, CommitOutcome, Consistency, Error, Result, SystemClock};

pub use crate::backup::{
    BackupError, BackupInfo, BackupOptions, DEFAULT_BUMP, RestoreInfo, RestoreOptions, backup,
    restore,
};
use crate::error::BACKEND;
pub use crate::error::SqliteError;
use crate::writer::{Storage, Writer};

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
        let inline = Inline(
            open_readers(INLINE_READERS, Duration::ZERO)?
                .into_iter()
                .map(Mutex::new)
                .collect(),
        );
        // In memory, the writer's connection is the only one: it reads too.
        let (shell, receivers) = Embedded::new(
            BACKEND,
            self.clock.clone(),
            inline,
            !reader_conns.is_empty(),
        );
        // On an error below, dropping `shell` stops the threads started so far.
        let writer = Writer::new(
            writer_conn,
            receivers.writer,
            shell.hub().clone(),
            self.clock.clone(),
            self.max_batch,
            storage,
            checkpointer.is_some().then_some(notifier),
        );
        shell.spawn("kv-sqlite-writer".into(), move || writer.run())?;
        if let Some(conn) = checkpointer {
            shell.spawn("kv-sqlite-checkpoint".into(), move || {
                checkpoint::run(conn, rounds)
            })?;
        }
        if let Some(rx) = receivers.readers {
            for (i, conn) in reader_conns.into_iter().enumerate() {
                let rx = rx.clone();
                let clock = self.clock.clone();
                shell.spawn(format!("kv-sqlite-reader-{i}"), move || {
                    reader::run(conn, rx, clock)
                })?;
            }
        }
        Ok(SqliteBackend {
            shell,
            path: self.path.map(Arc::from),
        })
    }
}

/// A [`Backend`] storing data in a SQLite file (or in memory) in Deno's own
/// layout. Cheap to clone: clones share the database, its threads and its
/// watchers. The threads stop on [`Backend::close`] or when the last clone
/// (and the last watch stream) is dropped.
#[derive(Clone)]
pub struct SqliteBackend {
    shell: Embedded<Inline>,
    path: Option<Arc<Path>>,
}

/// The read connections used on the caller's thread (none in memory).
struct Inline(Vec<Mutex<rusqlite::Connection>>);

impl InlineReads for Inline {
    fn read(
        &self,
        ranges: &[ReadRange],
        now_ms: u64,
        budget: &mut ReadBudget,
        sink: &mut dyn ReadSink,
    ) -> Result<InlineRead> {
        // A connection whose last reader panicked (in its sink) is as good
        // as any: its transaction was rolled back as the panic unwound.
        let Some(conn) = self.0.iter().find_map(free) else {
            return Ok(InlineRead::Elsewhere);
        };
        match store::read_ranges(&conn, ranges, now_ms, budget, sink) {
            // A locked file is retried with pauses: that belongs on a
            // reader thread, not on the caller's executor.
            Err(e) if e.is_busy() => Ok(InlineRead::Elsewhere),
            result => result.map(|()| InlineRead::Done).map_err(Into::into),
        }
    }
}

/// The connection behind `c` if no other read holds it.
fn free(c: &Mutex<rusqlite::Connection>) -> Option<MutexGuard<'_, rusqlite::Connection>> {
    match c.try_lock() {
        Ok(conn) => Some(conn),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
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
        let path = match &self.path {
            Some(path) => path.display().to_string(),
            None => ":memory:".into(),
        };
        f.debug_struct("SqliteBackend")
            .field("path", &path)
            .finish_non_exhaustive()
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.shell.snapshot_read(ranges, consistency).await
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
        sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        self.shell
            .snapshot_read_into(ranges, consistency, sink)
            .await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        self.shell.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.shell.watch(keys)
    }

    async fn close(&self) {
        self.shell.close().await;
    }
}

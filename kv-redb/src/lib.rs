//! A durable [`kv_core::Backend`] on [redb](https://www.redb.org), the
//! pure-Rust embedded key-value store: no C dependency.
//!
//! - **Writes** go to one writer thread, which commits everything already
//!   queued as one group: one redb write transaction and one fsync
//!   ([`redb::Durability::Immediate`]). Each write keeps its own checks,
//!   its own versionstamp and its own failure: it is evaluated against the
//!   pending changes of the group's earlier writes, and only a write whose
//!   checks and mutations all succeeded adds its changes to the group.
//! - **Reads**: each request is one redb read transaction, a consistent
//!   snapshot that sees every acknowledged commit. Small reads (at most
//!   [`INLINE_READ_ENTRIES`] entries: point gets, `getMany`, list batches
//!   of Deno's default size) run at once on the caller's thread, which
//!   costs less than the two thread hand-offs of a reader thread; larger
//!   ones, and small ones that find more than [`INLINE_READ_BYTES`], go to
//!   a small pool of reader threads.
//! - **Durability**: a commit is acknowledged only after redb's `commit`
//!   returned with immediate durability.
//! - **Expiry**: expired keys are hidden from reads and checks at once and
//!   deleted by a sweep on the writer thread soon after.
//! - **Watch** sees this handle's commits at once. There is no
//!   cross-process watch because there is no other process: redb locks its
//!   file exclusively, so opening a file that is already open, in another
//!   process or through another handle of this one, fails with
//!   [`RedbError::AlreadyOpen`] (inside [`kv_core::Error::Backend`]).
//!   Share one [`RedbBackend`] instead; clones are cheap.
//!
//! No async runtime is needed. Commits and large reads never run on the
//! caller's executor; only the short inline reads do.
//!
//! # File format
//!
//! Version 1 (stored in `meta`; files of other versions are refused). Three
//! redb tables:
//!
//! - `kv` (`&[u8]` → `&[u8]`): the encoded key → a value record: the value
//!   encoding (1 byte: 1 = V8, 2 = little-endian u64, 3 = bytes), the
//!   versionstamp (10 bytes), the expiry in Unix ms (`i64` little-endian,
//!   −1 = never), then the value bytes (8 little-endian bytes for a u64).
//! - `expiry` (`&[u8]` → `()`): the expiry index, one entry per key that
//!   expires: the expiry (`u64` big-endian) followed by the encoded key.
//! - `meta` (`&str` → `u64`): `format` (the version, 1) and `counter`, the
//!   commit counter. A commit's versionstamp is
//!   [`kv_core::Versionstamp::from_counter`]`(counter)`; each commit
//!   advances it by exactly 1, and so does an expiry sweep that deleted
//!   something.
//!
//! Queues are data under [`kv_core::backend::SYSTEM_PREFIX`], like any other
//! keys.
//!
//! ```
//! # futures::executor::block_on(async {
//! use kv_core::{Kv, KvValue, key};
//! use kv_redb::RedbBackend;
//!
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let kv = Kv::new(RedbBackend::open(dir.path().join("data.redb"))?);
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
//! [`RedbBackend::backup`] copies the open database as one snapshot while
//! writers keep committing, [`backup`] a file no process has open;
//! [`restore`] puts a backup in place of a database no process has open,
//! its commit counter moved forward so versionstamps keep increasing. A
//! backup is a database file in this format.

mod backup;
mod error;
#[cfg(test)]
mod power_loss;
mod reader;
mod store;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use kv_core::backend::embedded::{Embedded, InlineRead, InlineReads};
use kv_core::backend::{AtomicWrite, RawEntry, ReadBudget, ReadRange, ReadSink, WatchStream};
use kv_core::{Backend, Clock, CommitOutcome, Consistency, Error, Result, SystemClock};

pub use crate::backup::{
    BackupError, BackupInfo, BackupOptions, DEFAULT_BUMP, RestoreInfo, RestoreOptions, backup,
    restore,
};
use crate::error::BACKEND;
pub use crate::error::RedbError;
use crate::writer::Writer;

/// Reader threads.
const READERS: usize = 2;

pub use kv_core::backend::{INLINE_READ_BYTES, INLINE_READ_ENTRIES};

/// The default for [`RedbConfig::with_max_batch`].
const DEFAULT_MAX_BATCH: usize = 256;

/// How to open a [`RedbBackend`] (builder-lite).
///
/// ```
/// use std::sync::Arc;
/// use kv_core::ManualClock;
/// use kv_redb::RedbConfig;
///
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let backend = RedbConfig::new(dir.path().join("data.redb"))
///     .with_clock(Arc::new(ManualClock::new(1_000)))
///     .with_max_batch(64)
///     .open()?;
/// # Ok::<(), kv_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedbConfig {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    max_batch: usize,
}

impl RedbConfig {
    /// A database file at `path`, created if missing (its directory must
    /// exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RedbConfig {
            path: path.into(),
            clock: Arc::new(SystemClock),
            max_batch: DEFAULT_MAX_BATCH,
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

    /// Opens the database and starts its threads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty path; [`Error::Backend`]
    /// wrapping a [`RedbError`]: [`RedbError::AlreadyOpen`] when the file
    /// is open already (in this process or another),
    /// [`RedbError::FormatVersion`] for a file of another layout version,
    /// [`RedbError::Redb`] when redb cannot open or create it.
    pub fn open(self) -> Result<RedbBackend> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::InvalidArgument("Filename cannot be empty".into()));
        }
        let db = store::open(&self.path)?;
        self.start(db)
    }

    /// Opens the database on `storage` instead of the file at the path,
    /// which only names it.
    #[cfg(test)]
    fn open_on(self, storage: impl redb::StorageBackend) -> Result<RedbBackend> {
        let db = store::open_on(storage)?;
        self.start(db)
    }

    /// Starts the threads of the opened `db`.
    fn start(self, db: redb::Database) -> Result<RedbBackend> {
        let db = Arc::new(db);
        let (shell, receivers) =
            Embedded::new(BACKEND, self.clock.clone(), Inline(db.clone()), true);
        // On an error below, dropping `shell` stops the threads started so
        // far, and the last thread to end closes the file.
        let writer = Writer::new(
            db.clone(),
            receivers.writer,
            shell.hub().clone(),
            self.clock.clone(),
            self.max_batch,
        );
        shell.spawn("kv-redb-writer".into(), move || writer.run())?;
        if let Some(rx) = receivers.readers {
            for i in 0..READERS {
                let (db, rx, clock) = (db.clone(), rx.clone(), self.clock.clone());
                shell.spawn(format!("kv-redb-reader-{i}"), move || {
                    reader::run(db, rx, clock)
                })?;
            }
        }
        Ok(RedbBackend {
            shell,
            path: Arc::from(self.path),
            db: Arc::downgrade(&db),
        })
    }
}

/// A [`Backend`] storing data in a redb file. Cheap to clone: clones share
/// the database, its threads and its watchers. The threads stop, and the
/// file is unlocked, on [`Backend::close`] or when the last clone (and the
/// last watch stream) is dropped.
#[derive(Clone)]
pub struct RedbBackend {
    shell: Embedded<Inline>,
    path: Arc<Path>,
    /// The database, for [`RedbBackend::backup`]; weak, so that closing
    /// still releases the file.
    db: Weak<redb::Database>,
}

/// The database handle inline reads use; closing drops it, which is part
/// of releasing the file.
struct Inline(Arc<redb::Database>);

impl InlineReads for Inline {
    fn read(
        &self,
        ranges: &[ReadRange],
        now_ms: u64,
        budget: &mut ReadBudget,
        sink: &mut dyn ReadSink,
    ) -> Result<InlineRead> {
        store::read_ranges(&self.0, ranges, now_ms, budget, sink)?;
        Ok(InlineRead::Done)
    }
}

impl RedbBackend {
    /// Opens (creating if missing) the database file at `path`.
    ///
    /// # Errors
    /// As [`RedbConfig::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<RedbBackend> {
        RedbConfig::new(path.as_ref()).open()
    }
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.path.display().to_string())
            .finish_non_exhaustive()
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for RedbBackend {
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

//! The shared integration tests of the file backends (kv-sqlite, kv-redb):
//! what a database on disk must do beyond the conformance cases — survive
//! reopening and `kill -9`, share transactions between writers, sweep
//! expired keys out of the file, end watches on close.
//!
//! The conformance cases see a database only through `Backend`; these tests
//! also reopen the file, kill processes writing to it and read it back with
//! the engine itself, so each backend describes itself once as a
//! [`FileBackend`] and its `tests/it` files name the tests as thin wrappers
//! around the functions here:
//!
//! ```ignore
//! #[tokio::test]
//! async fn reopen_keeps_data() -> TestResult {
//!     basic::reopen_keeps_data(&Sqlite).await
//! }
//! ```
//!
//! Every function returns `anyhow::Result<()>` and fails with a message
//! instead of panicking, so a wrapper only forwards it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_core::backend::Backend;
use kv_core::{Clock, Kv};

pub mod basic;
pub mod crash;
pub mod expiry;
pub mod group_commit;
pub mod perf;
pub mod watch;

/// A storage backend that keeps a database in one file, as the tests see it.
///
/// Implemented by a unit struct in each backend's integration tests; the
/// methods other than [`open`](FileBackend::open) read the file with the
/// engine itself, so that the tests check what is on disk and not only what
/// the backend answers.
pub trait FileBackend: Send + Sync {
    /// The name the backend reports through `Backend::name`, e.g. `sqlite`.
    fn name(&self) -> &'static str;

    /// The file name the tests give the database, e.g. `kv.sqlite3`.
    fn file_name(&self) -> &'static str;

    /// Opens (creating if missing) the database at `path` with `options`.
    ///
    /// # Errors
    /// As the backend's own open, unchanged: some tests check the variant.
    fn open(&self, path: &Path, options: &OpenOptions) -> kv_core::Result<Arc<dyn Backend>>;

    /// Reads the counters and the expiry bookkeeping of the closed file at
    /// `path` with the engine itself.
    ///
    /// # Errors
    /// When the engine cannot open or read the file.
    fn inspect(&self, path: &Path) -> anyhow::Result<RawFile>;

    /// Whether a handle of this process still holds the file at `path` open
    /// (SQLite: the write-ahead log exists, since the last connection to
    /// close removes it; redb: the file's lock is taken).
    ///
    /// # Errors
    /// When the question cannot be answered, e.g. an unreadable directory.
    fn is_held(&self, path: &Path) -> anyhow::Result<bool>;
}

/// How [`FileBackend::open`] configures the backend; `None` leaves the
/// backend's default.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// The clock the backend decides expiry with.
    pub clock: Option<Arc<dyn Clock>>,
    /// The most writes the backend may group into one transaction.
    pub max_batch: Option<usize>,
}

impl OpenOptions {
    /// Decides expiry with `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Groups at most `n` writes per transaction.
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = Some(n);
        self
    }
}

/// What a closed database file holds, read by [`FileBackend::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFile {
    /// Whether the engine's own integrity check passed.
    pub integrity_ok: bool,
    /// The versionstamp counter: the last commit's stamp is
    /// `Versionstamp::from_counter(counter)`.
    pub counter: u64,
    /// How many keys the file stores, expired ones not yet swept included.
    pub keys: u64,
    /// The keys that expire (encoded) and when, in Unix ms, as stored.
    pub expirations: BTreeMap<Vec<u8>, u64>,
}

/// A database file of `backend` in a fresh temporary directory, removed on
/// drop.
pub struct TempDb {
    backend: &'static dyn FileBackend,
    path: PathBuf,
    // Dropped last: the directory goes when the test is done with the file.
    _dir: tempfile::TempDir,
}

impl TempDb {
    /// A new, not yet created, database file of `backend`.
    ///
    /// # Errors
    /// When the temporary directory cannot be created.
    pub fn new(backend: &'static dyn FileBackend) -> anyhow::Result<TempDb> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(backend.file_name());
        Ok(TempDb {
            backend,
            path,
            _dir: dir,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file with `options`.
    ///
    /// # Errors
    /// As [`FileBackend::open`].
    pub fn open(&self, options: &OpenOptions) -> anyhow::Result<Arc<dyn Backend>> {
        Ok(self.backend.open(&self.path, options)?)
    }

    /// Opens the file as a backend with its defaults.
    ///
    /// # Errors
    /// As [`FileBackend::open`].
    pub fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        self.open(&OpenOptions::default())
    }

    /// Opens the file behind a `Kv`.
    ///
    /// # Errors
    /// As [`FileBackend::open`].
    pub fn kv(&self) -> anyhow::Result<Kv> {
        Ok(Kv::from_arc(self.backend()?))
    }

    /// Opens the file with `clock` used both for expiry decisions and for
    /// computing expiry times.
    ///
    /// # Errors
    /// As [`FileBackend::open`].
    pub fn kv_with_clock(&self, clock: Arc<dyn Clock>) -> anyhow::Result<Kv> {
        let backend = self.open(&OpenOptions::default().with_clock(clock.clone()))?;
        Ok(Kv::from_arc(backend).with_clock(clock))
    }

    /// Reads the closed file, see [`FileBackend::inspect`].
    ///
    /// # Errors
    /// As [`FileBackend::inspect`].
    pub fn inspect(&self) -> anyhow::Result<RawFile> {
        self.backend.inspect(&self.path)
    }

    /// Whether a handle still holds the file, see [`FileBackend::is_held`].
    ///
    /// # Errors
    /// As [`FileBackend::is_held`].
    pub fn is_held(&self) -> anyhow::Result<bool> {
        self.backend.is_held(&self.path)
    }
}

/// Whether the slow variants of tests should run (`KV_SLOW_TESTS=1`).
pub fn slow() -> bool {
    std::env::var("KV_SLOW_TESTS").is_ok_and(|v| v == "1")
}

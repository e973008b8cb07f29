//! Integration tests of the SQLite backend, one binary with a module per area.

mod basic;
mod busy;
mod crash;
mod deno_compat;
mod expiry;
mod group_commit;
mod perf;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_core::{Clock, Kv};
use kv_sqlite::{SqliteBackend, SqliteConfig};

/// What every test returns.
type TestResult = anyhow::Result<()>;

/// A database file in a fresh temporary directory, removed on drop.
struct TempDb {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempDb {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kv.sqlite3");
        Ok(TempDb { _dir: dir, path })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file as a backend.
    fn backend(&self) -> anyhow::Result<SqliteBackend> {
        Ok(SqliteBackend::open(&self.path)?)
    }

    /// Opens the file behind a `Kv`.
    fn kv(&self) -> anyhow::Result<Kv> {
        Ok(Kv::new(self.backend()?))
    }

    /// Opens the file with `clock` used both for expiry decisions and for
    /// computing expiry times.
    fn kv_with_clock(&self, clock: Arc<dyn Clock>) -> anyhow::Result<Kv> {
        let backend = SqliteConfig::new(&self.path)
            .with_clock(clock.clone())
            .open()?;
        Ok(Kv::new(backend).with_clock(clock))
    }

    /// Whether the write-ahead log exists; SQLite removes it when the last
    /// connection to the file closes.
    fn wal_exists(&self) -> bool {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Path::new(&wal).exists()
    }

    /// A plain rusqlite connection to inspect the file.
    fn raw(&self) -> anyhow::Result<rusqlite::Connection> {
        Ok(rusqlite::Connection::open(&self.path)?)
    }
}

/// Whether the slow variants of tests should run.
fn slow() -> bool {
    std::env::var("KV_SLOW_TESTS").is_ok_and(|v| v == "1")
}

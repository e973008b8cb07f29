//! Integration tests of the redb backend, one binary with a module per area.

mod basic;
mod crash;
mod expiry;
mod group_commit;
mod lock;
mod perf;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_core::{Clock, Kv};
use kv_redb::{RedbBackend, RedbConfig};

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
        let path = dir.path().join("kv.redb");
        Ok(TempDb { _dir: dir, path })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file as a backend.
    fn backend(&self) -> anyhow::Result<RedbBackend> {
        Ok(RedbBackend::open(&self.path)?)
    }

    /// Opens the file behind a `Kv`.
    fn kv(&self) -> anyhow::Result<Kv> {
        Ok(Kv::new(self.backend()?))
    }

    /// Opens the file with `clock` used both for expiry decisions and for
    /// computing expiry times.
    fn kv_with_clock(&self, clock: Arc<dyn Clock>) -> anyhow::Result<Kv> {
        let backend = RedbConfig::new(&self.path)
            .with_clock(clock.clone())
            .open()?;
        Ok(Kv::new(backend).with_clock(clock))
    }
}

/// The file's raw tables, read with redb itself (the file must be closed).
mod raw {
    use std::path::Path;

    use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

    const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
    const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

    /// What the file holds, as the crate docs describe it.
    pub(crate) struct Raw {
        pub(crate) counter: u64,
        pub(crate) keys: u64,
        pub(crate) expiry_entries: u64,
        pub(crate) integrity_ok: bool,
    }

    /// Opens the closed file at `path` and reads its counters.
    pub(crate) fn inspect(path: &Path) -> anyhow::Result<Raw> {
        let mut db = Database::open(path)?;
        let integrity_ok = db.check_integrity()?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let counter = meta.get("counter")?.map(|v| v.value());
        anyhow::ensure!(meta.get("format")?.map(|v| v.value()) == Some(1));
        Ok(Raw {
            counter: counter.ok_or_else(|| anyhow::anyhow!("no counter"))?,
            keys: txn.open_table(KV)?.len()?,
            expiry_entries: txn.open_table(EXPIRY)?.len()?,
            integrity_ok,
        })
    }
}

/// Whether the slow variants of tests should run.
fn slow() -> bool {
    std::env::var("KV_SLOW_TESTS").is_ok_and(|v| v == "1")
}

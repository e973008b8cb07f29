//! Integration tests of the redb backend, one binary with a module per area.
//!
//! The tests every file backend shares live in `kv_conformance::durable`;
//! the modules here name them for redb and add redb's own.

mod basic;
mod crash;
mod expiry;
mod group_commit;
mod lock;
mod perf;
mod watch;

use std::path::Path;
use std::sync::Arc;

use kv_conformance::durable::{FileBackend, OpenOptions, RawFile, TempDb};
use kv_core::Backend;
use kv_redb::RedbConfig;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

/// What every test returns.
type TestResult = anyhow::Result<()>;

/// The file's tables, as the crate docs describe them.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The redb backend as the shared tests see it.
struct Redb;

impl FileBackend for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn file_name(&self) -> &'static str {
        "kv.redb"
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> kv_core::Result<Arc<dyn Backend>> {
        let mut config = RedbConfig::new(path);
        if let Some(clock) = &options.clock {
            config = config.with_clock(clock.clone());
        }
        if let Some(n) = options.max_batch {
            config = config.with_max_batch(n);
        }
        Ok(Arc::new(config.open()?))
    }

    /// Reads the tables with redb itself (the file must be closed).
    fn inspect(&self, path: &Path) -> anyhow::Result<RawFile> {
        let mut db = Database::open(path)?;
        let integrity_ok = db.check_integrity()?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let counter = meta.get("counter")?.map(|v| v.value());
        anyhow::ensure!(meta.get("format")?.map(|v| v.value()) == Some(1));
        // An index entry is the expiry (u64 big-endian), then the key.
        let mut expirations = std::collections::BTreeMap::new();
        for entry in txn.open_table(EXPIRY)?.iter()? {
            let (index_key, _) = entry?;
            let (at, key) = index_key
                .value()
                .split_at_checked(8)
                .ok_or_else(|| anyhow::anyhow!("an expiry index entry shorter than 8 bytes"))?;
            expirations.insert(key.to_vec(), u64::from_be_bytes(at.try_into()?));
        }
        Ok(RawFile {
            integrity_ok,
            counter: counter.ok_or_else(|| anyhow::anyhow!("no counter"))?,
            keys: txn.open_table(KV)?.len()?,
            expirations,
        })
    }

    /// redb refuses a second open while a handle holds the file's lock.
    fn is_held(&self, path: &Path) -> anyhow::Result<bool> {
        match Database::open(path) {
            Ok(_) => Ok(false),
            Err(DatabaseError::DatabaseAlreadyOpen) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

/// A fresh redb file.
fn temp_db() -> anyhow::Result<TempDb> {
    TempDb::new(&Redb)
}

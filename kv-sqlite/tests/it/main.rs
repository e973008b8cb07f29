//! Integration tests of the SQLite backend, one binary with a module per area.
//!
//! The tests every file backend shares live in `kv_conformance::durable`;
//! the modules here name them for SQLite and add SQLite's own.

mod basic;
mod busy;
mod checkpoint;
mod crash;
mod deno_compat;
mod expiry;
mod group_commit;
mod perf;
mod read_only;
mod watch;

use std::path::Path;
use std::sync::Arc;

use kv_conformance::durable::{FileBackend, OpenOptions, RawFile, TempDb};
use kv_core::Backend;
use kv_sqlite::SqliteConfig;

/// What every test returns.
type TestResult = anyhow::Result<()>;

/// The SQLite backend as the shared tests see it.
struct Sqlite;

impl FileBackend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn file_name(&self) -> &'static str {
        "kv.sqlite3"
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> kv_core::Result<Arc<dyn Backend>> {
        let mut config = SqliteConfig::new(path);
        if let Some(clock) = &options.clock {
            config = config.with_clock(clock.clone());
        }
        if let Some(n) = options.max_batch {
            config = config.with_max_batch(n);
        }
        Ok(Arc::new(config.open()?))
    }

    fn inspect(&self, path: &Path) -> anyhow::Result<RawFile> {
        let raw = rusqlite::Connection::open(path)?;
        let check: String = raw.query_row("pragma integrity_check", [], |r| r.get(0))?;
        let counter: i64 =
            raw.query_row("select version from data_version where k = 0", [], |r| {
                r.get(0)
            })?;
        let keys: i64 = raw.query_row("select count(*) from kv", [], |r| r.get(0))?;
        let expirations = raw
            .prepare("select k, expiration_ms from kv where expiration_ms >= 0")?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        Ok(RawFile {
            integrity_ok: check == "ok",
            counter: counter as u64,
            keys: keys as u64,
            expirations,
        })
    }

    /// SQLite removes the write-ahead log when the last connection to the
    /// file closes.
    fn is_held(&self, path: &Path) -> anyhow::Result<bool> {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Path::new(&wal).try_exists()?)
    }
}

/// A fresh SQLite file.
fn temp_db() -> anyhow::Result<TempDb> {
    TempDb::new(&Sqlite)
}

/// A plain rusqlite connection to inspect `db`.
fn raw(db: &TempDb) -> anyhow::Result<rusqlite::Connection> {
    Ok(rusqlite::Connection::open(db.path())?)
}

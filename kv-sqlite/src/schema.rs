//! Opening connections and the on-disk schema, which is the one Deno's own
//! SQLite backend leaves at migration version 3, so that files move freely
//! between Deno and kv. One difference, invisible to both: in files kv
//! creates, the expiry index holds only rows that expire. Deno indexes every
//! row, so each write of a key without `expireIn` changes two B-trees and
//! writes two pages to the WAL; both Deno's and kv's expiry queries say
//! `expiration_ms >= 0`, so they use the partial index as they used the full
//! one. Files Deno created keep their full index.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::error::SqliteError;

/// The schema version Deno records in `migration_state` for this layout.
pub(crate) const SCHEMA_VERSION: i64 = 3;

const CREATE_MIGRATION_STATE: &str = "create table if not exists migration_state(
  k integer not null primary key,
  version integer not null
)";

const CREATE_SCHEMA: &str = "
create table if not exists data_version (
  k integer primary key,
  version integer not null,
  seq integer not null default 0
);
insert or ignore into data_version (k, version) values (0, 0);
create table if not exists kv (
  k blob primary key,
  v blob not null,
  v_encoding integer not null,
  version integer not null,
  seq integer not null default 0,
  expiration_ms integer not null default -1
) without rowid;
create table if not exists queue (
  ts integer not null,
  id text not null,
  data blob not null,
  backoff_schedule text not null,
  keys_if_undelivered blob not null,
  primary key (ts, id)
);
create table if not exists queue_running(
  deadline integer not null,
  id text not null,
  data blob not null,
  backoff_schedule text not null,
  keys_if_undelivered blob not null,
  primary key (deadline, id)
);
create index if not exists kv_expiration_ms_idx on kv (expiration_ms)
  where expiration_ms >= 0;
";

/// Opens the connection that writes: WAL (for files), `synchronous = FULL`
/// (read back), and the schema created or verified.
pub(crate) fn open_writer(
    path: Option<&Path>,
    busy_timeout: Duration,
) -> Result<Connection, SqliteError> {
    let mut conn = match path {
        // URI file names stay disabled, as in Deno: a path is a path.
        Some(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
        None => Connection::open_in_memory()?,
    };
    conn.busy_timeout(busy_timeout)?;
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    if path.is_some() {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SqliteError::NotWal(mode));
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
    if synchronous != 2 {
        return Err(SqliteError::NotDurable(synchronous));
    }
    if path.is_some() {
        // The checkpointer thread copies the WAL back; this is its backstop.
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            crate::checkpoint::WRITER_BACKSTOP_PAGES,
        )?;
    }
    init_schema(&mut conn)?;
    Ok(conn)
}

/// Opens the connection of a read-only database: the file must exist and
/// hold the schema already; nothing (not even the journal mode) is changed.
pub(crate) fn open_read_only(
    path: &Path,
    busy_timeout: Duration,
) -> Result<Connection, SqliteError> {
    // An error other than "not found" is left for SQLite to report.
    if !path.try_exists().unwrap_or(true) {
        return Err(SqliteError::Missing(path.to_owned()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    // The first read also opens SQLite's `-wal` and `-shm` files, so its
    // failure is the one that needs explaining.
    let tables: i64 = conn
        .query_row(
            "select count(*) from sqlite_master where type = 'table' and name = 'migration_state'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| read_only_error(e, path))?;
    let version: Option<i64> = if tables == 0 {
        None
    } else {
        conn.query_row(
            "select version from migration_state where k = 0",
            [],
            |row| row.get(0),
        )
        .optional()?
    };
    match version {
        Some(SCHEMA_VERSION) => Ok(conn),
        Some(found) => Err(SqliteError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        }),
        None => Err(SqliteError::NoSchema(path.to_owned())),
    }
}

/// What the first read of a read-only open failing with `e` means.
fn read_only_error(e: rusqlite::Error, path: &Path) -> SqliteError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY =>
        {
            SqliteError::ReadOnlyDirectory(path.to_owned())
        }
        e => e.into(),
    }
}

/// Opens the checkpointer's connection to an existing file.
pub(crate) fn open_checkpointer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<Connection, SqliteError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

/// Opens a connection that only reads an existing file. Read-write at the
/// file level unless the database is read-only: the last connection to close
/// checkpoints the WAL, and a reader may be the last.
pub(crate) fn open_reader(
    path: &Path,
    busy_timeout: Duration,
    read_only: bool,
) -> Result<Connection, SqliteError> {
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "query_only", true)?;
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee. Without it, a
/// statement whose plan could depend on a bound value (our range scans'
/// `limit ?`) is compiled again every time that parameter is bound — a
/// re-prepare on every listing, ~5% of a listing server's CPU.
fn stable_plans(conn: &Connection) -> Result<(), SqliteError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn init_schema(conn: &mut Connection) -> Result<(), SqliteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(CREATE_MIGRATION_STATE, [])?;
    let version: Option<i64> = tx
        .query_row(
            "select version from migration_state where k = 0",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match version {
        None => {
            tx.execute_batch(CREATE_SCHEMA)?;
            tx.execute(
                "insert into migration_state (k, version) values (0, ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => tx.execute_batch(CREATE_SCHEMA)?,
        Some(found) => {
            return Err(SqliteError::SchemaVersion {
                found,
                expected: SCHEMA_VERSION,
            });
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use kv_core::backend::ReadRange;
    use rusqlite::StatementStatus;

    use super::*;

    /// Each listing binds a new `limit` and a new `now`; a statement that
    /// is compiled again for each of them costs a listing ~5% more CPU.
    #[test]
    fn range_scans_are_not_compiled_again_for_new_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite3");
        drop(open_writer(Some(&path), Duration::from_secs(1)).unwrap());
        let conn = open_reader(&path, Duration::from_secs(1), false).unwrap();
        for (limit, now) in [(10, 1_000), (20, 2_000), (30, 3_000)] {
            let range = ReadRange {
                start: vec![0x02],
                end: vec![0x03],
                limit,
                reverse: false,
            };
            let mut budget = kv_core::backend::ReadBudget::unlimited();
            let mut entries = Vec::new();
            crate::store::read_ranges(&conn, &[range], now, &mut budget, &mut entries).unwrap();
        }
        let stmt = conn.prepare_cached(crate::store::RANGE_SCAN).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }

    /// A WAL file without its `-shm` in a directory we may not write (only
    /// reproducible as a user other than root) gets a message saying so.
    #[test]
    fn a_read_only_directory_is_named_as_the_cause() {
        let failure = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY_DIRECTORY),
            Some("attempt to write a readonly database".into()),
        );
        let e = read_only_error(failure, Path::new("/ro/kv.sqlite3"));
        assert!(matches!(e, SqliteError::ReadOnlyDirectory(_)), "{e:?}");
        assert!(e.to_string().contains("-wal and -shm"), "{e}");
    }

    fn query_plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("explain query plan {sql}")).unwrap();
        let zeros = std::iter::repeat_n(0, stmt.parameter_count());
        let rows = stmt
            .query_map(rusqlite::params_from_iter(zeros), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// A write of a key that never expires leaves the expiry index alone,
    /// and sweeping still finds expired rows through the index.
    #[test]
    fn the_expiry_index_holds_only_rows_that_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite3");
        let conn = open_writer(Some(&path), Duration::from_secs(1)).unwrap();
        let index: String = conn
            .query_row(
                "select sql from sqlite_master where name = 'kv_expiration_ms_idx'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index.ends_with("where expiration_ms >= 0"), "{index}");
        for sql in [
            crate::store::DELETE_EXPIRED,
            crate::store::EARLIEST_EXPIRY,
            crate::store::EXPIRY_AFTER,
            crate::store::EXPIRING_BETWEEN,
        ] {
            let plan = query_plan(&conn, sql);
            assert!(plan.contains("kv_expiration_ms_idx"), "{sql}: {plan}");
        }
    }
}

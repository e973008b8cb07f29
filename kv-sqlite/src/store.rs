//! Row-level reads and writes of the `kv` and `data_version` tables.
//!
//! A row is live when `expiration_ms < 0` (never expires) or lies after
//! `now`; expired rows stay on disk until the sweep deletes them but are
//! never returned and count as absent for checks and mutations.

use kv_core::backend::{ReadBudget, ReadRange, ReadSink};
use kv_core::{KvValue, ValueRef, Versionstamp};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqliteError;

const POINT_GET: &str = "select v, v_encoding, version from kv \
     where k = ?1 and (expiration_ms < 0 or expiration_ms > ?2)";
pub(crate) const RANGE_SCAN: &str = "select k, v, v_encoding, version from kv \
     where k >= ?1 and k < ?2 and (expiration_ms < 0 or expiration_ms > ?3) \
     order by k asc limit ?4";
const RANGE_SCAN_REVERSE: &str = "select k, v, v_encoding, version from kv \
     where k >= ?1 and k < ?2 and (expiration_ms < 0 or expiration_ms > ?3) \
     order by k desc limit ?4";
const POINT_VERSION: &str = "select version from kv \
     where k = ?1 and (expiration_ms < 0 or expiration_ms > ?2)";
const POINT_VALUE: &str = "select v, v_encoding from kv \
     where k = ?1 and (expiration_ms < 0 or expiration_ms > ?2)";
const UPSERT: &str = "insert into kv (k, v, v_encoding, version, expiration_ms) \
     values (?1, ?2, ?3, ?4, ?5) on conflict(k) do update set \
     v = excluded.v, v_encoding = excluded.v_encoding, version = excluded.version, \
     expiration_ms = excluded.expiration_ms";
const DELETE: &str = "delete from kv where k = ?1";
const GET_COUNTER: &str = "select version from data_version where k = 0";
const SET_COUNTER: &str = "update data_version set version = ?1 where k = 0";
pub(crate) const DELETE_EXPIRED: &str =
    "delete from kv where expiration_ms >= 0 and expiration_ms <= ?1 returning k";
pub(crate) const EARLIEST_EXPIRY: &str =
    "select expiration_ms from kv where expiration_ms >= 0 order by expiration_ms limit 1";

/// The first expiry later than `?1`. The `>= 0` term lets SQLite use the
/// partial expiry index (a bound parameter alone proves nothing about it).
pub(crate) const EXPIRY_AFTER: &str = "select expiration_ms from kv \
     where expiration_ms >= 0 and expiration_ms > ?1 order by expiration_ms limit 1";

/// The keys whose expiry falls in `(?1, ?2]`.
pub(crate) const EXPIRING_BETWEEN: &str = "select k from kv \
     where expiration_ms >= 0 and expiration_ms > ?1 and expiration_ms <= ?2";

/// Clock milliseconds as SQLite stores them.
fn ms(now: u64) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX)
}

fn versionstamp(version: i64) -> Versionstamp {
    Versionstamp::from_counter(version as u64)
}

fn value(data: Vec<u8>, encoding: i64) -> Result<KvValue, SqliteError> {
    KvValue::from_encoded(encoding, data).map_err(SqliteError::Value)
}

/// Column `i` of `row`, a blob, borrowed from SQLite.
fn blob<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r [u8], SqliteError> {
    row.get_ref(i)?
        .as_blob()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Blob, e.into()).into())
}

/// The key of a range that holds exactly one key (`[k, k ++ 00)`), if so.
fn point_key(r: &ReadRange) -> Option<&[u8]> {
    let (last, head) = r.end.split_last()?;
    (*last == 0 && head == r.start.as_slice()).then_some(r.start.as_slice())
}

/// Reads `ranges` in one snapshot into `sink`: one read transaction when
/// there are several, a single statement already is one. Stops early once
/// `budget` is exceeded (the caller then clears the sink).
pub(crate) fn read_ranges(
    conn: &Connection,
    ranges: &[ReadRange],
    now: u64,
    budget: &mut ReadBudget,
    sink: &mut dyn ReadSink,
) -> Result<(), SqliteError> {
    if ranges.len() <= 1 {
        return ranges
            .iter()
            .try_for_each(|r| read_range(conn, r, now, budget, sink));
    }
    conn.prepare_cached("begin deferred")?.execute([])?;
    let txn = ReadTransaction { conn, open: true };
    ranges
        .iter()
        .try_for_each(|r| read_range(conn, r, now, budget, sink))?;
    txn.commit()
}

/// An open read transaction. Dropped unfinished (an error, or a sink that
/// panicked) it rolls back, so the connection never keeps an old snapshot
/// open. (rusqlite's own `Transaction` would parse its statements anew for
/// every read; these are cached.)
struct ReadTransaction<'c> {
    conn: &'c Connection,
    open: bool,
}

impl ReadTransaction<'_> {
    fn commit(mut self) -> Result<(), SqliteError> {
        self.conn.prepare_cached("commit")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Ending a read-only transaction cannot lose anything; the
            // read's own error matters more than one from ending it.
            let _ = self
                .conn
                .prepare_cached("rollback")
                .and_then(|mut s| s.execute([]));
        }
    }
}

fn read_range(
    conn: &Connection,
    r: &ReadRange,
    now: u64,
    budget: &mut ReadBudget,
    sink: &mut dyn ReadSink,
) -> Result<(), SqliteError> {
    sink.begin_range();
    if r.start >= r.end || r.limit == 0 || budget.exceeded() {
        return Ok(());
    }
    // Rows are handed on borrowed from SQLite: the sink copies what it
    // keeps, once.
    if let Some(key) = point_key(r) {
        let mut stmt = conn.prepare_cached(POINT_GET)?;
        let mut rows = stmt.query(params![key, ms(now)])?;
        if let Some(row) = rows.next()? {
            let data = blob(row, 0)?;
            budget.spend(key.len() + data.len());
            let value = ValueRef::from_encoded(row.get(1)?, data).map_err(SqliteError::Value)?;
            sink.entry(key, value, versionstamp(row.get(2)?));
        }
        return Ok(());
    }
    let sql = if r.reverse {
        RANGE_SCAN_REVERSE
    } else {
        RANGE_SCAN
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![r.start, r.end, ms(now), i64::from(r.limit)])?;
    while let Some(row) = rows.next()? {
        let key = blob(row, 0)?;
        let data = blob(row, 1)?;
        let value = ValueRef::from_encoded(row.get(2)?, data).map_err(SqliteError::Value)?;
        sink.entry(key, value, versionstamp(row.get(3)?));
        if !budget.spend(key.len() + data.len()) {
            break;
        }
    }
    Ok(())
}

/// The versionstamp of `key` if it is live.
pub(crate) fn live_versionstamp(
    conn: &Connection,
    key: &[u8],
    now: u64,
) -> Result<Option<Versionstamp>, SqliteError> {
    let mut stmt = conn.prepare_cached(POINT_VERSION)?;
    let version: Option<i64> = stmt
        .query_row(params![key, ms(now)], |row| row.get(0))
        .optional()?;
    Ok(version.map(versionstamp))
}

/// The value of `key` if it is live.
pub(crate) fn live_value(
    conn: &Connection,
    key: &[u8],
    now: u64,
) -> Result<Option<KvValue>, SqliteError> {
    let mut stmt = conn.prepare_cached(POINT_VALUE)?;
    let row = stmt
        .query_row(params![key, ms(now)], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    row.map(|(v, encoding)| value(v, encoding)).transpose()
}

/// Writes `key` (replacing value, version and expiry).
pub(crate) fn put(
    conn: &Connection,
    key: &[u8],
    value: &KvValue,
    version: u64,
    expire_at_ms: Option<u64>,
) -> Result<(), SqliteError> {
    let data = match value {
        KvValue::V8(b) | KvValue::Bytes(b) => std::borrow::Cow::Borrowed(b.as_slice()),
        KvValue::U64(n) => std::borrow::Cow::Owned(n.to_le_bytes().to_vec()),
    };
    let expiration = expire_at_ms.map_or(-1, ms);
    conn.prepare_cached(UPSERT)?.execute(params![
        key,
        data,
        value.encoding(),
        ms(version),
        expiration
    ])?;
    Ok(())
}

/// Removes `key` (a no-op when absent).
pub(crate) fn delete(conn: &Connection, key: &[u8]) -> Result<(), SqliteError> {
    conn.prepare_cached(DELETE)?.execute([key])?;
    Ok(())
}

/// The commit counter.
pub(crate) fn counter(conn: &Connection) -> Result<u64, SqliteError> {
    let version: i64 = conn
        .prepare_cached(GET_COUNTER)?
        .query_row([], |row| row.get(0))?;
    Ok(version as u64)
}

/// Stores the commit counter.
pub(crate) fn set_counter(conn: &Connection, counter: u64) -> Result<(), SqliteError> {
    conn.prepare_cached(SET_COUNTER)?.execute([ms(counter)])?;
    Ok(())
}

/// Deletes every expired row and returns the deleted keys.
pub(crate) fn delete_expired(conn: &Connection, now: u64) -> Result<Vec<Vec<u8>>, SqliteError> {
    let mut stmt = conn.prepare_cached(DELETE_EXPIRED)?;
    let keys = stmt
        .query_map([ms(now)], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

/// The earliest stored expiry, if any row expires.
pub(crate) fn earliest_expiry(conn: &Connection) -> Result<Option<u64>, SqliteError> {
    let mut stmt = conn.prepare_cached(EARLIEST_EXPIRY)?;
    let e: Option<i64> = stmt.query_row([], |row| row.get(0)).optional()?;
    Ok(e.map(|e| e as u64))
}

/// The first expiry after `now`, for read-only databases, whose expired
/// rows stay.
pub(crate) fn expiry_after(conn: &Connection, now: u64) -> Result<Option<u64>, SqliteError> {
    let mut stmt = conn.prepare_cached(EXPIRY_AFTER)?;
    let e: Option<i64> = stmt.query_row([ms(now)], |row| row.get(0)).optional()?;
    Ok(e.map(|e| e as u64))
}

/// The keys that expired after `after` and by `now`, for read-only
/// databases, which announce expiries instead of deleting rows.
pub(crate) fn keys_expiring(
    conn: &Connection,
    after: u64,
    now: u64,
) -> Result<Vec<Vec<u8>>, SqliteError> {
    let mut stmt = conn.prepare_cached(EXPIRING_BETWEEN)?;
    let keys = stmt
        .query_map([ms(after), ms(now)], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

/// Runs a cached statement without parameters (`begin`, `savepoint`, …).
pub(crate) fn exec(conn: &Connection, sql: &str) -> Result<(), SqliteError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

//! The file layout: table definitions, the value record codec, opening and
//! snapshot reads. The crate docs describe the format for readers of files.
//!
//! A record is live when its expiry is negative (never expires) or lies
//! after `now`; expired records stay in the file until the sweep deletes
//! them but are never returned and count as absent for checks and
//! mutations.

use std::path::Path;

use kv_core::backend::{ReadBudget, ReadRange, ReadSink};
use kv_core::{KvValue, ValueRef, Versionstamp};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use crate::error::RedbError;

/// Encoded key → value record.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Expiry index: `expire_at` (u64 big-endian) ++ encoded key → nothing.
pub(crate) const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
/// Named numbers: [`COUNTER`] and [`FORMAT`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The commit counter: the versionstamp of the last commit.
pub(crate) const COUNTER: &str = "counter";
/// The layout version of the file.
pub(crate) const FORMAT: &str = "format";
/// The layout version this build reads and writes.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Bytes of a record before the value: encoding, versionstamp, expiry.
const HEADER: usize = 1 + 10 + 8;

/// A value record: what the `kv` table stores for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) value: KvValue,
    pub(crate) versionstamp: Versionstamp,
    /// Absolute expiry in Unix ms, as stored (at most `i64::MAX`).
    pub(crate) expire_at: Option<u64>,
}

/// Clamps an expiry to what the record and the index store.
pub(crate) fn stored_expiry(expire_at_ms: Option<u64>) -> Option<u64> {
    expire_at_ms.map(|e| e.min(i64::MAX as u64))
}

/// Whether a record with this expiry is visible at `now`.
pub(crate) fn live(expire_at: Option<u64>, now: u64) -> bool {
    expire_at.is_none_or(|e| e > now)
}

impl Record {
    pub(crate) fn is_live(&self, now: u64) -> bool {
        live(self.expire_at, now)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let data: &[u8] = match &self.value {
            KvValue::V8(b) | KvValue::Bytes(b) => b,
            KvValue::U64(_) => &[],
        };
        let mut out = Vec::with_capacity(HEADER + data.len().max(8));
        out.push(self.value.encoding() as u8);
        out.extend_from_slice(self.versionstamp.as_bytes());
        let expire = self.expire_at.map_or(-1, |e| e as i64);
        out.extend_from_slice(&expire.to_le_bytes());
        match &self.value {
            KvValue::U64(n) => out.extend_from_slice(&n.to_le_bytes()),
            _ => out.extend_from_slice(data),
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, RedbError> {
        let header = Header::decode(bytes)?;
        Ok(Record {
            value: value_of(bytes)?.to_value(),
            versionstamp: header.versionstamp,
            expire_at: header.expire_at,
        })
    }
}

/// The value of a record whose header decoded, borrowed from `bytes`.
fn value_of(bytes: &[u8]) -> Result<ValueRef<'_>, RedbError> {
    ValueRef::from_encoded(i64::from(bytes[0]), &bytes[HEADER..])
        .map_err(|e| RedbError::Record(e.to_string()))
}

/// The part of a record that checks and the sweep look at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) versionstamp: Versionstamp,
    pub(crate) expire_at: Option<u64>,
}

impl Header {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, RedbError> {
        if bytes.len() < HEADER {
            return Err(RedbError::Record(format!(
                "a record must have at least {HEADER} bytes, got {}",
                bytes.len()
            )));
        }
        let versionstamp = Versionstamp::from_slice(&bytes[1..11])
            .map_err(|e| RedbError::Record(e.to_string()))?;
        let mut expire = [0u8; 8];
        expire.copy_from_slice(&bytes[11..HEADER]);
        let expire = i64::from_le_bytes(expire);
        Ok(Header {
            versionstamp,
            expire_at: u64::try_from(expire).ok(),
        })
    }
}

/// The key of the expiry index entry for `key` expiring at `expire_at`.
pub(crate) fn expiry_key(expire_at: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&expire_at.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits an expiry index key into expiry and encoded key.
pub(crate) fn split_expiry_key(index_key: &[u8]) -> Result<(u64, &[u8]), RedbError> {
    if index_key.len() < 8 {
        return Err(RedbError::Record(format!(
            "an expiry index key must have at least 8 bytes, got {}",
            index_key.len()
        )));
    }
    let (e, key) = index_key.split_at(8);
    let mut b = [0u8; 8];
    b.copy_from_slice(e);
    Ok((u64::from_be_bytes(b), key))
}

/// Opens (creating if missing) the file at `path` and makes sure it has
/// kv's tables at the current format version.
pub(crate) fn open(path: &Path) -> Result<Database, RedbError> {
    let db = Database::builder()
        .create(path)
        .map_err(|e| RedbError::open(e, path))?;
    prepare(db)
}

/// [`open`] on storage other than a file (the power-loss tests' disk).
#[cfg(test)]
pub(crate) fn open_on(storage: impl redb::StorageBackend) -> Result<Database, RedbError> {
    prepare(Database::builder().create_with_backend(storage)?)
}

/// Makes sure `db` has kv's tables at the current format version.
fn prepare(db: Database) -> Result<Database, RedbError> {
    let txn = begin_write(&db)?;
    {
        txn.open_table(KV)?;
        txn.open_table(EXPIRY)?;
        let mut meta = txn.open_table(META)?;
        let format = meta.get(FORMAT)?.map(|v| v.value());
        match format {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(RedbError::FormatVersion {
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            None => {
                meta.insert(FORMAT, FORMAT_VERSION)?;
                if meta.get(COUNTER)?.is_none() {
                    meta.insert(COUNTER, 0)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(db)
}

/// A write transaction whose commit is durable when it returns.
pub(crate) fn begin_write(db: &Database) -> Result<WriteTransaction, RedbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    Ok(txn)
}

/// The commit counter stored in `meta`.
pub(crate) fn counter(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, RedbError> {
    Ok(meta.get(COUNTER)?.map_or(0, |v| v.value()))
}

/// The key of a range that holds exactly one key (`[k, k ++ 00)`), if so.
fn point_key(r: &ReadRange) -> Option<&[u8]> {
    let (last, head) = r.end.split_last()?;
    (*last == 0 && head == r.start.as_slice()).then_some(r.start.as_slice())
}

/// Reads `ranges` from one read transaction (one snapshot) into `sink`.
pub(crate) fn read_ranges(
    db: &Database,
    ranges: &[ReadRange],
    now: u64,
    budget: &mut ReadBudget,
    sink: &mut dyn ReadSink,
) -> Result<(), RedbError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(KV)?;
    ranges
        .iter()
        .try_for_each(|r| read_range(&table, r, now, budget, sink))
}

/// One range; stops early once `budget` is exceeded. Entries are handed
/// on borrowed from redb's pages: the sink copies what it keeps, once.
fn read_range(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    r: &ReadRange,
    now: u64,
    budget: &mut ReadBudget,
    sink: &mut dyn ReadSink,
) -> Result<(), RedbError> {
    sink.begin_range();
    if r.start >= r.end || r.limit == 0 || budget.exceeded() {
        return Ok(());
    }
    if let Some(key) = point_key(r) {
        if let Some(guard) = table.get(key)? {
            let header = Header::decode(guard.value())?;
            if live(header.expire_at, now) {
                budget.spend(key.len() + guard.value().len());
                sink.entry(key, value_of(guard.value())?, header.versionstamp);
            }
        }
        return Ok(());
    }
    let range = table.range::<&[u8]>(r.start.as_slice()..r.end.as_slice())?;
    let mut left = r.limit as usize;
    let mut push = |item: Result<_, redb::StorageError>| -> Result<bool, RedbError> {
        let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) = item?;
        // Expired records are skipped on their header alone.
        let header = Header::decode(v.value())?;
        if live(header.expire_at, now) {
            sink.entry(k.value(), value_of(v.value())?, header.versionstamp);
            left -= 1;
            if !budget.spend(k.value().len() + v.value().len()) {
                return Ok(false);
            }
        }
        Ok(left > 0)
    };
    if r.reverse {
        for item in range.rev() {
            if !push(item)? {
                break;
            }
        }
    } else {
        for item in range {
            if !push(item)? {
                break;
            }
        }
    }
    Ok(())
}

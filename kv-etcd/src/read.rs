//! Snapshot reads, and the point reads of commits and watches.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, KeyValue, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
use kv_core::backend::{RawEntry, ReadRange};
use kv_core::{Consistency, Error, Result};

use crate::Inner;
use crate::error::{EtcdError, convert};
use crate::record::{self, Record};

/// Runs `attempt` again after transient faults ([`Error::Unavailable`])
/// until the request timeout has passed. Only for idempotent requests.
pub(crate) async fn with_retries<T, F, Fut>(inner: &Inner, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + inner.config.request_timeout;
    // Short pauses: most transient faults here are requests that went to a
    // dead member, and the next try most likely goes to another.
    let mut delay = Duration::from_millis(10);
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && Instant::now() + delay < deadline => {
                inner.check_open()?;
                tracing::debug!("etcd read retried after: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Reads `ranges` from one revision.
pub(crate) async fn snapshot_read(
    inner: &Inner,
    ranges: &[ReadRange],
    consistency: Consistency,
) -> Result<Vec<Vec<RawEntry>>> {
    with_retries(inner, || read_once(inner, ranges, consistency)).await
}

fn range_options(
    end: Vec<u8>,
    limit: usize,
    reverse: bool,
    consistency: Consistency,
) -> GetOptions {
    let mut options = GetOptions::new()
        .with_range(end)
        .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
    if reverse {
        options = options.with_sort(SortTarget::Key, SortOrder::Descend);
    }
    if consistency == Consistency::Eventual {
        options = options.with_serializable();
    }
    options
}

async fn read_once(
    inner: &Inner,
    ranges: &[ReadRange],
    consistency: Consistency,
) -> Result<Vec<Vec<RawEntry>>> {
    let ks = &inner.keyspace;
    let mut out = vec![Vec::new(); ranges.len()];
    let mut ops = Vec::new();
    let mut asked = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        if r.start < r.end && r.limit > 0 {
            let options = range_options(
                ks.data_key(&r.end),
                r.limit as usize,
                r.reverse,
                consistency,
            );
            ops.push(TxnOp::get(ks.data_key(&r.start), Some(options)));
            asked.push(i);
        }
    }
    if ops.is_empty() {
        return Ok(out);
    }
    let response = inner
        .kv()
        .txn(Txn::new().and_then(ops))
        .await
        .map_err(convert)?;
    let revision = response.header().map_or(0, |h| h.revision());
    let now = inner.now_ms();
    for (op, i) in response.op_responses().into_iter().zip(asked) {
        let TxnOpResponse::Get(mut get) = op else {
            return Err(unexpected("a range read answered with another operation"));
        };
        let first = Page {
            kvs: get.take_kvs(),
            more: get.more(),
        };
        out[i] = collect_range(inner, &ranges[i], first, revision, consistency, now).await?;
    }
    Ok(out)
}

struct Page {
    kvs: Vec<KeyValue>,
    more: bool,
}

/// Keeps the live entries of `page` and, when expired ones left the range
/// short of its limit, reads on from the same revision.
async fn collect_range(
    inner: &Inner,
    range: &ReadRange,
    mut page: Page,
    revision: i64,
    consistency: Consistency,
    now: u64,
) -> Result<Vec<RawEntry>> {
    let ks = &inner.keyspace;
    let limit = range.limit as usize;
    let mut entries = Vec::new();
    let mut lo = ks.data_key(&range.start);
    let mut hi = ks.data_key(&range.end);
    loop {
        let mut last = None;
        for kv in &page.kvs {
            if let Some(entry) = live_entry(inner, kv, now)? {
                entries.push(entry);
                if entries.len() == limit {
                    return Ok(entries);
                }
            }
            last = Some(kv.key());
        }
        let Some(last) = last.filter(|_| page.more) else {
            return Ok(entries);
        };
        if range.reverse {
            hi = last.to_vec();
        } else {
            lo = last.to_vec();
            lo.push(0);
        }
        let options = range_options(
            hi.clone(),
            limit - entries.len(),
            range.reverse,
            consistency,
        )
        .with_revision(revision);
        let mut get = inner
            .kv()
            .get(lo.clone(), Some(options))
            .await
            .map_err(convert)?;
        page = Page {
            kvs: get.take_kvs(),
            more: get.more(),
        };
    }
}

/// Decodes the record at `kv`.
pub(crate) fn decode(kv: &KeyValue) -> Result<Record> {
    record::decode(kv.value()).map_err(|reason| {
        EtcdError::Record {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            reason,
        }
        .into()
    })
}

/// The entry at `kv` if it has not expired at `now`.
fn live_entry(inner: &Inner, kv: &KeyValue, now: u64) -> Result<Option<RawEntry>> {
    let Some(key) = inner.keyspace.user_key(kv.key()) else {
        return Err(unexpected("a range read returned a key outside its range"));
    };
    let record = decode(kv)?;
    if !record.is_live(now) {
        return Ok(None);
    }
    Ok(Some(RawEntry {
        key: key.to_vec(),
        versionstamp: record.stamp(kv.mod_revision()),
        value: record.value,
    }))
}

fn unexpected(what: &str) -> Error {
    Error::backend(crate::error::BACKEND, what.to_owned())
}

/// One key of a [`Points`] read.
#[derive(Debug)]
pub(crate) struct Point {
    /// The etcd `mod_revision`, 0 when the key is absent.
    pub(crate) mod_revision: i64,
    /// The stored record, expired or not.
    pub(crate) record: Option<Record>,
}

impl Point {
    /// The entry readers see at `now`.
    pub(crate) fn live(&self, key: &[u8], now: u64) -> Option<RawEntry> {
        let record = self.record.as_ref().filter(|r| r.is_live(now))?;
        Some(RawEntry {
            key: key.to_vec(),
            value: record.value.clone(),
            versionstamp: record.stamp(self.mod_revision),
        })
    }
}

/// A linearizable read of single keys at one revision.
#[derive(Debug)]
pub(crate) struct Points {
    /// The revision read.
    pub(crate) revision: i64,
    /// One per key asked, in order.
    pub(crate) points: Vec<Point>,
    /// The commit marker's `mod_revision` (0 when absent).
    pub(crate) marker_mod_revision: i64,
}

/// Reads `keys` (kv keys) and the commit marker, linearizably, at one
/// revision.
pub(crate) async fn read_points(inner: &Inner, keys: &[Vec<u8>]) -> Result<Points> {
    let ks = &inner.keyspace;
    let mut ops: Vec<TxnOp> = keys
        .iter()
        .map(|k| TxnOp::get(ks.data_key(k), None))
        .collect();
    ops.push(TxnOp::get(ks.marker(), None));
    let response = inner
        .kv()
        .txn(Txn::new().and_then(ops))
        .await
        .map_err(convert)?;
    let revision = response.header().map_or(0, |h| h.revision());
    let mut points = Vec::with_capacity(keys.len());
    let mut marker_mod_revision = 0;
    for (i, op) in response.op_responses().into_iter().enumerate() {
        let TxnOpResponse::Get(get) = op else {
            return Err(unexpected("a key read answered with another operation"));
        };
        let kv = get.kvs().first();
        if i == keys.len() {
            marker_mod_revision = kv.map_or(0, |kv| kv.mod_revision());
            continue;
        }
        points.push(match kv {
            Some(kv) => Point {
                mod_revision: kv.mod_revision(),
                record: Some(decode(kv)?),
            },
            None => Point {
                mod_revision: 0,
                record: None,
            },
        });
    }
    if points.len() != keys.len() {
        return Err(unexpected("a key read returned too few answers"));
    }
    Ok(Points {
        revision,
        points,
        marker_mod_revision,
    })
}

//! The writer thread: it commits queued writes in groups (one redb write
//! transaction and one fsync per group) and sweeps expired keys.
//!
//! redb has no savepoints that could undo one write inside a transaction,
//! so each write of a group is first evaluated against an in-memory overlay
//! (the changes of the group's earlier writes on top of what the
//! transaction reads). Only a write whose checks and mutations all succeed
//! adds its changes to the overlay; the overlay reaches the tables once,
//! just before the commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use kv_core::backend::apply::{Applied, apply, versionstamped_key};
use kv_core::backend::embedded::{Batch, Received, Request, WriteRequest, next_batch};
use kv_core::backend::watch::WatchHub;
use kv_core::backend::{CommitOutcome, MutationKind, ReadBudget, StorageWrite};
use kv_core::{Clock, KvValue, Versionstamp};
use redb::{Database, ReadableTable, Table};

use crate::error::{BACKEND, RedbError};
use crate::store::{self, EXPIRY, Header, KV, META, Record};

/// How often the writer looks at the clock while some key will expire (the
/// clock may be a manual one, so the writer cannot sleep until the expiry).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long the sweep waits after a failure before it tries again.
const SWEEP_RETRY: Duration = Duration::from_secs(1);

/// Keys one sweep transaction deletes at most; the rest follow at once.
const SWEEP_CHUNK: usize = 1024;

/// The pending state of keys: `None` = deleted.
type Overlay = HashMap<Vec<u8>, Option<Record>>;

/// What became of one write of a group.
enum Outcome {
    Committed {
        versionstamp: Versionstamp,
        /// The keys it wrote.
        keys: Vec<Vec<u8>>,
        /// The earliest expiry it set.
        expiry: Option<u64>,
    },
    CheckFailed,
    Failed(kv_core::Error),
}

/// The state of the writer thread.
pub(crate) struct Writer {
    db: Arc<Database>,
    rx: Receiver<Request>,
    hub: WatchHub,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    /// The earliest expiry in the file, as far as the writer knows (`Some(0)`
    /// until the first sweep has looked).
    next_expiry: Option<u64>,
    sweep_after: Option<Instant>,
}

impl Writer {
    pub(crate) fn new(
        db: Arc<Database>,
        rx: Receiver<Request>,
        hub: WatchHub,
        clock: Arc<dyn Clock>,
        max_batch: usize,
    ) -> Self {
        Writer {
            db,
            rx,
            hub,
            clock,
            max_batch: max_batch.max(1),
            next_expiry: Some(0),
            sweep_after: None,
        }
    }

    /// Serves writes until every sender is gone and the queue is empty.
    pub(crate) fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            let timeout = self.maintain();
            match next_batch(&self.rx, timeout, self.max_batch, &mut batch) {
                Received::Requests => {}
                Received::Idle => continue,
                Received::Closed => break,
            }
            if !batch.writes.is_empty() {
                self.commit_batch(std::mem::take(&mut batch.writes));
            }
            // Reads come here only if the backend was made without reader
            // threads; serving them keeps the writer correct either way.
            for r in batch.reads.drain(..) {
                let now = self.clock.now_ms();
                r.serve(BACKEND, |ranges, sink| {
                    store::read_ranges(&self.db, ranges, now, &mut ReadBudget::unlimited(), sink)
                });
            }
        }
    }

    /// Sweeps if a key has expired, and says how long the writer may wait
    /// for the next write (`None`: until one comes).
    fn maintain(&mut self) -> Option<Duration> {
        let next = self.next_expiry?;
        if self.sweep_after.is_some_and(|t| Instant::now() >= t) {
            self.sweep_after = None;
        }
        if self.sweep_after.is_none() && next <= self.clock.now_ms() {
            self.sweep();
        }
        let due = self.sweep_after.is_none()
            && self.next_expiry.is_some_and(|e| e <= self.clock.now_ms());
        match self.next_expiry {
            None => None,
            // A sweep left work (it deletes a chunk at a time).
            Some(_) if due => Some(Duration::ZERO),
            Some(_) => Some(POLL_INTERVAL),
        }
    }

    /// Deletes expired keys (a chunk at a time), advancing the counter by
    /// one if any were deleted, and wakes the watchers of the deleted keys.
    fn sweep(&mut self) {
        let now = self.clock.now_ms();
        match sweep(&self.db, now) {
            Ok((keys, next)) => {
                self.next_expiry = next;
                self.sweep_after = None;
                if !keys.is_empty() {
                    self.hub.notify(keys.iter().map(Vec::as_slice));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "kv-redb: expiry sweep failed");
                self.sweep_after = Some(Instant::now() + SWEEP_RETRY);
            }
        }
    }

    /// Commits `writes` in one transaction, then replies to every waiter and
    /// wakes the watchers.
    fn commit_batch(&mut self, writes: Vec<WriteRequest>) {
        let now = self.clock.now_ms();
        let outcomes = match commit_group(&self.db, &writes, now) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let e = Arc::new(e);
                for w in writes {
                    let _ = w.reply.send(Err(RedbError::Shared(e.clone()).into()));
                }
                return;
            }
        };
        let mut changed: Vec<Vec<u8>> = Vec::new();
        for (w, outcome) in writes.into_iter().zip(outcomes) {
            let reply = match outcome {
                Outcome::Committed {
                    versionstamp,
                    keys,
                    expiry,
                } => {
                    self.next_expiry = min_expiry(self.next_expiry, expiry);
                    changed.extend(keys);
                    Ok(CommitOutcome::Committed { versionstamp })
                }
                Outcome::CheckFailed => Ok(CommitOutcome::CheckFailed),
                Outcome::Failed(e) => Err(e),
            };
            let _ = w.reply.send(reply);
        }
        if !changed.is_empty() {
            self.hub.notify(changed.iter().map(Vec::as_slice));
        }
    }
}

fn min_expiry(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Evaluates `writes` in order against one write transaction and commits
/// the changes of those that succeeded. The error fails the whole group (an
/// engine failure); a write's own failure is in its [`Outcome`].
fn commit_group(
    db: &Database,
    writes: &[WriteRequest],
    now: u64,
) -> Result<Vec<Outcome>, RedbError> {
    let txn = store::begin_write(db)?;
    let mut outcomes = Vec::with_capacity(writes.len());
    let changed = {
        let mut kv = txn.open_table(KV)?;
        let mut meta = txn.open_table(META)?;
        let start = store::counter(&meta)?;
        let mut counter = start;
        let mut overlay = Overlay::new();
        for w in writes {
            let outcome = evaluate(&kv, &mut overlay, &w.write, counter + 1, now)?;
            if matches!(outcome, Outcome::Committed { .. }) {
                counter += 1;
            }
            outcomes.push(outcome);
        }
        if !overlay.is_empty() {
            let mut expiry = txn.open_table(EXPIRY)?;
            for (key, record) in overlay {
                store_key(&mut kv, &mut expiry, &key, record.as_ref())?;
            }
        }
        if counter != start {
            meta.insert(store::COUNTER, counter)?;
        }
        counter != start
    };
    if changed {
        txn.commit()?;
    } else {
        // Every write failed: nothing to make durable.
        txn.abort()?;
    }
    Ok(outcomes)
}

/// Writes `record` (or deletes, for `None`) at `key`, keeping the expiry
/// index in step.
fn store_key(
    kv: &mut Table<&[u8], &[u8]>,
    expiry: &mut Table<&[u8], ()>,
    key: &[u8],
    record: Option<&Record>,
) -> Result<(), RedbError> {
    let old = match record {
        Some(record) => {
            let old = kv.insert(key, record.encode().as_slice())?;
            old.map(|g| Header::decode(g.value())).transpose()?
        }
        None => {
            let old = kv.remove(key)?;
            old.map(|g| Header::decode(g.value())).transpose()?
        }
    };
    let old_expiry = old.and_then(|h| h.expire_at);
    let new_expiry = record.and_then(|r| r.expire_at);
    if old_expiry != new_expiry {
        if let Some(e) = old_expiry {
            expiry.remove(store::expiry_key(e, key).as_slice())?;
        }
        if let Some(e) = new_expiry {
            expiry.insert(store::expiry_key(e, key).as_slice(), ())?;
        }
    }
    Ok(())
}

/// The versionstamp of `key` if it is live, looking at the write's own
/// changes first, then the group's, then the file.
fn lookup_header(
    kv: &Table<&[u8], &[u8]>,
    layers: [&Overlay; 2],
    key: &[u8],
    now: u64,
) -> Result<Option<Versionstamp>, RedbError> {
    for layer in layers {
        if let Some(pending) = layer.get(key) {
            return Ok(pending
                .as_ref()
                .filter(|r| r.is_live(now))
                .map(|r| r.versionstamp));
        }
    }
    let Some(guard) = kv.get(key)? else {
        return Ok(None);
    };
    let header = Header::decode(guard.value())?;
    Ok(store::live(header.expire_at, now).then_some(header.versionstamp))
}

/// The value of `key` if it is live, looked up like [`lookup_header`].
fn lookup_value(
    kv: &Table<&[u8], &[u8]>,
    layers: [&Overlay; 2],
    key: &[u8],
    now: u64,
) -> Result<Option<KvValue>, RedbError> {
    for layer in layers {
        if let Some(pending) = layer.get(key) {
            return Ok(pending
                .as_ref()
                .filter(|r| r.is_live(now))
                .map(|r| r.value.clone()));
        }
    }
    let Some(guard) = kv.get(key)? else {
        return Ok(None);
    };
    let record = Record::decode(guard.value())?;
    Ok(record.is_live(now).then_some(record.value))
}

/// Evaluates one write as commit number `version`. On success its changes
/// join `overlay`; otherwise `overlay` is untouched.
fn evaluate(
    kv: &Table<&[u8], &[u8]>,
    overlay: &mut Overlay,
    write: &StorageWrite,
    version: u64,
    now: u64,
) -> Result<Outcome, RedbError> {
    let empty = Overlay::new();
    for check in &write.checks {
        let current = match lookup_header(kv, [&empty, overlay], &check.key, now) {
            Ok(v) => v,
            Err(e @ RedbError::Record(_)) => return Ok(Outcome::Failed(e.into())),
            Err(e) => return Err(e),
        };
        if current != check.versionstamp {
            return Ok(Outcome::CheckFailed);
        }
    }
    let versionstamp = Versionstamp::from_counter(version);
    let mut own = Overlay::new();
    let mut keys = Vec::new();
    for m in &write.mutations {
        let key = match &m.kind {
            MutationKind::SetSuffixVersionstampedKey { .. } => {
                versionstamped_key(&m.key, versionstamp)
            }
            _ => m.key.clone(),
        };
        // Only sum, min and max look at the current value.
        let current = match &m.kind {
            MutationKind::Sum { .. } | MutationKind::Min(_) | MutationKind::Max(_) => {
                match lookup_value(kv, [&own, overlay], &key, now) {
                    Ok(v) => v,
                    Err(e @ RedbError::Record(_)) => return Ok(Outcome::Failed(e.into())),
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        let next = match apply(&m.kind, current.as_ref()) {
            Ok(Applied::Put {
                value,
                expire_at_ms,
            }) => Some(Record {
                value,
                versionstamp,
                expire_at: store::stored_expiry(expire_at_ms),
            }),
            Ok(Applied::Deleted) => None,
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        match own.entry(key) {
            Entry::Occupied(mut slot) => {
                slot.insert(next);
            }
            Entry::Vacant(slot) => {
                keys.push(slot.key().clone());
                slot.insert(next);
            }
        }
    }
    let mut expiry = None;
    for (key, record) in own {
        expiry = min_expiry(expiry, record.as_ref().and_then(|r| r.expire_at));
        overlay.insert(key, record);
    }
    Ok(Outcome::Committed {
        versionstamp,
        keys,
        expiry,
    })
}

/// Deletes up to [`SWEEP_CHUNK`] expired keys in one transaction. Returns
/// the deleted keys and the earliest expiry left in the file.
fn sweep(db: &Database, now: u64) -> Result<(Vec<Vec<u8>>, Option<u64>), RedbError> {
    let txn = store::begin_write(db)?;
    let mut deleted = Vec::new();
    let (touched, next) = {
        let mut kv = txn.open_table(KV)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        let mut meta = txn.open_table(META)?;
        let due: Vec<Vec<u8>> = {
            let range = match now.checked_add(1) {
                Some(end) => expiry.range::<&[u8]>(..end.to_be_bytes().as_slice())?,
                None => expiry.range::<&[u8]>(..)?,
            };
            range
                .take(SWEEP_CHUNK)
                .map(|item| item.map(|(k, _)| k.value().to_vec()))
                .collect::<Result<_, _>>()?
        };
        for index_key in &due {
            let (e, key) = store::split_expiry_key(index_key)?;
            expiry.remove(index_key.as_slice())?;
            let expired = match kv.get(key)? {
                Some(guard) => Header::decode(guard.value())?.expire_at == Some(e),
                None => false,
            };
            // A stale index entry (the key was rewritten) only goes itself.
            if expired {
                kv.remove(key)?;
                deleted.push(key.to_vec());
            }
        }
        if !deleted.is_empty() {
            let counter = store::counter(&meta)?;
            meta.insert(store::COUNTER, counter + 1)?;
        }
        let next = match expiry.first()? {
            Some((k, _)) => Some(store::split_expiry_key(k.value())?.0),
            None => None,
        };
        (!due.is_empty(), next)
    };
    if touched {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok((deleted, next))
}

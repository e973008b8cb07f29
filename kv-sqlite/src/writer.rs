//! The writer thread: it owns the connection that writes, commits queued
//! writes in groups (one transaction and one fsync per group), sweeps
//! expired rows, and notices other processes' commits.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use kv_core::backend::apply::{Applied, apply, versionstamped_key};
use kv_core::backend::embedded::{Batch, Received, Request, WriteRequest, next_batch};
use kv_core::backend::watch::WatchHub;
use kv_core::backend::{CommitOutcome, Mutation, MutationKind, StorageWrite};
use kv_core::{Clock, Versionstamp};
use rusqlite::Connection;

use crate::error::{BACKEND, SqliteError};
use crate::{reader, store};

/// How often the writer looks for commits of other connections (and for
/// expired rows when the clock has moved).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long the sweep waits after a failure before it tries again.
const SWEEP_RETRY: Duration = Duration::from_secs(1);

/// Attempts of one transaction while SQLite reports `SQLITE_BUSY` (each
/// attempt already waits up to the busy timeout).
const BUSY_ATTEMPTS: u32 = 3;

/// What the writer's connection is attached to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// A private in-memory database: no other connection can change it.
    Memory,
    /// A file other connections (and processes) may share.
    File,
    /// A file opened read-only: commits fail, nothing is swept.
    ReadOnlyFile,
}

/// The state of the writer thread.
pub(crate) struct Writer {
    conn: Connection,
    rx: Receiver<Request>,
    hub: WatchHub,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    storage: Storage,
    /// Tells the checkpointer thread that a batch committed (file only).
    committed: Option<crate::checkpoint::Notifier>,
    data_version: Option<i64>,
    next_poll: Instant,
    next_expiry: Option<u64>,
    sweep_after: Option<Instant>,
    /// Read-only: the expiries up to this time have woken their watchers.
    announced_until: u64,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        rx: Receiver<Request>,
        hub: WatchHub,
        clock: Arc<dyn Clock>,
        max_batch: usize,
        storage: Storage,
        committed: Option<crate::checkpoint::Notifier>,
    ) -> Self {
        // Read before the handle is returned: a commit another process makes
        // after that must count as a change, not as the starting point.
        let data_version = match storage {
            Storage::Memory => None,
            Storage::File | Storage::ReadOnlyFile => data_version(&conn)
                .inspect_err(
                    |e| tracing::warn!(error = %e, "kv-sqlite: reading data_version failed"),
                )
                .ok(),
        };
        let announced_until = clock.now_ms();
        Writer {
            conn,
            rx,
            hub,
            clock,
            max_batch: max_batch.max(1),
            storage,
            committed,
            data_version,
            next_poll: Instant::now(),
            next_expiry: Some(0),
            sweep_after: None,
            announced_until,
        }
    }

    /// Serves requests until every sender is gone and the queue is empty.
    pub(crate) fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            self.maintain();
            let timeout = self.next_poll.saturating_duration_since(Instant::now());
            match next_batch(&self.rx, Some(timeout), self.max_batch, &mut batch) {
                Received::Requests => {}
                Received::Idle => continue,
                Received::Closed => break,
            }
            if self.storage == Storage::ReadOnlyFile {
                for w in batch.writes.drain(..) {
                    w.answer(Err(kv_core::Error::ReadOnly));
                }
            } else if !batch.writes.is_empty() {
                self.commit_batch(std::mem::take(&mut batch.writes));
            }
            for r in batch.reads.drain(..) {
                let now = self.clock.now_ms();
                r.serve(BACKEND, |ranges, sink| {
                    reader::read_with_retry(&self.conn, ranges, now, sink)
                });
            }
        }
    }

    /// Background work between requests: other processes' commits and the
    /// expiry sweep.
    fn maintain(&mut self) {
        let now = Instant::now();
        if now >= self.next_poll {
            self.next_poll = now + POLL_INTERVAL;
            if self.storage != Storage::Memory {
                self.poll_data_version();
            }
        }
        let due = self.next_expiry.is_some_and(|e| e <= self.clock.now_ms());
        if due && self.sweep_after.is_none_or(|t| now >= t) {
            self.expire();
        }
        // Only when nothing waits: the copy and the database fsync would
        // otherwise delay the next commit (see the checkpoint module).
        if self.rx.is_empty() && self.committed.as_ref().is_some_and(|c| c.take_passed()) {
            crate::checkpoint::checkpoint(&self.conn);
        }
    }

    /// `PRAGMA data_version` changes exactly when another connection (in this
    /// process or another) committed to the file.
    fn poll_data_version(&mut self) {
        let version = match data_version(&self.conn) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "kv-sqlite: polling data_version failed");
                return;
            }
        };
        let changed = self.data_version.is_some_and(|old| old != version);
        self.data_version = Some(version);
        if changed {
            self.hub.notify_all();
            // The other connection may have written keys that expire (a
            // read-only database also holds rows that expired already).
            let next = match self.storage {
                Storage::ReadOnlyFile => store::expiry_after(&self.conn, self.clock.now_ms()),
                _ => store::earliest_expiry(&self.conn),
            };
            match next {
                Ok(e) => self.next_expiry = min_expiry(self.next_expiry, e),
                Err(e) => tracing::warn!(error = %e, "kv-sqlite: reading the next expiry failed"),
            }
        }
    }

    /// Deletes expired rows, advancing the counter by one if any were
    /// deleted. A read-only database keeps its expired rows, so it finds
    /// the keys that expired since its last pass instead: nothing else
    /// would tell their watchers. Either way it wakes those watchers and
    /// notes the next expiry.
    fn expire(&mut self) {
        let now = self.clock.now_ms();
        let expired = if self.storage == Storage::ReadOnlyFile {
            store::keys_expiring(&self.conn, self.announced_until, now)
                .and_then(|keys| Ok((keys, store::expiry_after(&self.conn, now)?)))
        } else {
            in_transaction(&self.conn, || {
                let keys = store::delete_expired(&self.conn, now)?;
                if !keys.is_empty() {
                    let counter = store::counter(&self.conn)?;
                    store::set_counter(&self.conn, counter + 1)?;
                }
                Ok((keys, store::earliest_expiry(&self.conn)?))
            })
        };
        match expired {
            Ok((keys, next)) => {
                self.announced_until = now;
                self.next_expiry = next;
                self.sweep_after = None;
                if !keys.is_empty() {
                    self.hub.notify(keys.iter().map(Vec::as_slice));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "kv-sqlite: expiry pass failed");
                self.sweep_after = Some(Instant::now() + SWEEP_RETRY);
            }
        }
    }

    /// Commits `writes` in one transaction, each in its own savepoint, then
    /// replies to every waiter and wakes the watchers.
    fn commit_batch(&mut self, writes: Vec<WriteRequest>) {
        let now = self.clock.now_ms();
        let result = in_transaction(&self.conn, || {
            let start = store::counter(&self.conn)?;
            let mut counter = start;
            let mut outcomes = Vec::with_capacity(writes.len());
            for w in &writes {
                outcomes.push(apply_write(&self.conn, &w.write, &mut counter, now)?);
            }
            if counter != start {
                store::set_counter(&self.conn, counter)?;
            }
            Ok(outcomes)
        });
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let e = Arc::new(e);
                for w in writes {
                    let _ = w.reply.send(Err(SqliteError::Shared(e.clone()).into()));
                }
                return;
            }
        };
        if let Some(committed) = &self.committed {
            committed.committed();
        }
        let mut changed: Vec<Vec<u8>> = Vec::new();
        for (WriteRequest { write, reply }, outcome) in writes.into_iter().zip(outcomes) {
            if matches!(outcome, Ok(CommitOutcome::Committed { .. })) {
                for Mutation { key, kind } in write.mutations {
                    if let MutationKind::Set { expire_at_ms, .. }
                    | MutationKind::SetSuffixVersionstampedKey { expire_at_ms, .. } = kind
                    {
                        self.next_expiry = min_expiry(self.next_expiry, expire_at_ms);
                    }
                    changed.push(key);
                }
            }
            let _ = reply.send(outcome);
        }
        if !changed.is_empty() {
            self.hub.notify(changed.iter().map(Vec::as_slice));
        }
    }
}

/// SQLite's count of commits to the file by other connections.
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("pragma data_version")?
        .query_row([], |row| row.get(0))
}

fn min_expiry(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs `f` in an immediate (write-locking) transaction, retrying the whole
/// transaction while another connection holds the lock.
fn in_transaction<T>(
    conn: &Connection,
    mut f: impl FnMut() -> Result<T, SqliteError>,
) -> Result<T, SqliteError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = store::exec(conn, "begin immediate").and_then(|()| {
            let out = f()?;
            store::exec(conn, "commit")?;
            Ok(out)
        });
        let e = match result {
            Ok(out) => return Ok(out),
            Err(e) => e,
        };
        // SQLite rolls some failures back by itself; end what is left.
        if !conn.is_autocommit()
            && let Err(rollback) = store::exec(conn, "rollback")
        {
            tracing::warn!(error = %rollback, "kv-sqlite: rollback failed");
        }
        if !e.is_busy() || attempt >= BUSY_ATTEMPTS {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(5 + u64::from(attempt) * 5));
    }
}

/// Evaluates one write inside the batch transaction. The outer error fails
/// the whole batch (an engine failure); the inner one is this write's own.
fn apply_write(
    conn: &Connection,
    write: &StorageWrite,
    counter: &mut u64,
    now: u64,
) -> Result<kv_core::Result<CommitOutcome>, SqliteError> {
    for check in &write.checks {
        if store::live_versionstamp(conn, &check.key, now)? != check.versionstamp {
            return Ok(Ok(CommitOutcome::CheckFailed));
        }
    }
    let version = *counter + 1;
    // Only sum, min and max can fail midway; a write without them needs no
    // savepoint to undo its first mutations (an engine failure fails the
    // whole batch anyway).
    let fallible = write.mutations.iter().any(|m| {
        matches!(
            m.kind,
            MutationKind::Sum { .. } | MutationKind::Min(_) | MutationKind::Max(_)
        )
    });
    if !fallible {
        if let Err(e) = apply_mutations(conn, &write.mutations, version, now)? {
            // Only sum, min and max fail; were that ever to change, failing
            // the whole batch keeps this write from half-applying.
            return Err(SqliteError::Value(e));
        }
        *counter = version;
        return Ok(Ok(CommitOutcome::Committed {
            versionstamp: Versionstamp::from_counter(version),
        }));
    }
    store::exec(conn, "savepoint w")?;
    match apply_mutations(conn, &write.mutations, version, now)? {
        Ok(()) => {
            store::exec(conn, "release w")?;
            *counter = version;
            Ok(Ok(CommitOutcome::Committed {
                versionstamp: Versionstamp::from_counter(version),
            }))
        }
        Err(e) => {
            store::exec(conn, "rollback to w")?;
            store::exec(conn, "release w")?;
            Ok(Err(e))
        }
    }
}

fn apply_mutations(
    conn: &Connection,
    mutations: &[Mutation],
    version: u64,
    now: u64,
) -> Result<kv_core::Result<()>, SqliteError> {
    let versionstamp = Versionstamp::from_counter(version);
    for m in mutations {
        let key = match &m.kind {
            MutationKind::SetSuffixVersionstampedKey { .. } => {
                Cow::Owned(versionstamped_key(&m.key, versionstamp))
            }
            _ => Cow::Borrowed(m.key.as_slice()),
        };
        // Sets and deletes store what they carry (no copy of the value).
        if let Some((value, expire_at_ms)) = m.kind.stored() {
            store::put(conn, &key, value, version, expire_at_ms)?;
            continue;
        }
        if matches!(m.kind, MutationKind::Delete) {
            store::delete(conn, &key)?;
            continue;
        }
        // Sum, min and max combine with the current value.
        let current = match store::live_value(conn, &key, now) {
            Ok(v) => v,
            Err(e @ SqliteError::Value(_)) => return Ok(Err(e.into())),
            Err(e) => return Err(e),
        };
        match apply(&m.kind, current.as_ref()) {
            Ok(Applied::Put {
                value,
                expire_at_ms,
            }) => {
                store::put(conn, &key, &value, version, expire_at_ms)?;
            }
            Ok(Applied::Deleted) => store::delete(conn, &key)?,
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

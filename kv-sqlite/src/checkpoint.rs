//! The checkpointer thread: copies committed pages from the write-ahead log
//! into the database file, off the writer's path.
//!
//! SQLite's default has the committing connection checkpoint every 1,000
//! WAL pages, so one commit in a thousand pages would also copy pages and
//! fsync the database file before it is acknowledged. Here this thread
//! checkpoints (`PASSIVE`: it never blocks the writer or readers) shortly
//! after commits, so a page rewritten by several commits in that moment is
//! copied once. The writer keeps a large automatic checkpoint as a
//! backstop, should this thread fall behind.
//!
//! A checkpoint that runs beside commits never catches up with the last of
//! them, and SQLite starts writing the WAL from its beginning again only
//! after a checkpoint that copied every frame. Left at that, the WAL would
//! grow to the backstop (64 MiB) and every commit would append to a growing
//! file, whose fsync also has to write the file's new size: measured, a lone
//! commit took 0.32 ms instead of 0.19 ms. So after each pass here, the
//! writer finishes the job the next time it has nothing queued: its own
//! checkpoint copies only the frames committed since this pass, and the WAL
//! then restarts at its beginning and stays small.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

/// How long after a commit the checkpoint waits for more commits.
const DELAY: Duration = Duration::from_millis(50);

/// WAL pages after which the writer checkpoints by itself (about 64 MiB of
/// 4 KiB pages): reached only when the writer never runs out of queued
/// commits to finish a pass, or when this thread cannot keep up.
pub(crate) const WRITER_BACKSTOP_PAGES: u32 = 16_384;

/// The writer's side: tells the checkpointer that commits happened, waking
/// its thread only for the first commit of each round, so that a lone
/// commit does not pay for a thread wake-up.
pub(crate) struct Notifier {
    pending: Arc<AtomicBool>,
    wake: Sender<()>,
    /// Set after each pass of the checkpointer: the writer should finish it.
    passed: Arc<AtomicBool>,
}

impl Notifier {
    /// Called after each committed batch.
    pub(crate) fn committed(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.wake.try_send(());
        }
    }

    /// Whether the checkpointer passed since the last call: the writer's
    /// own checkpoint then has only the latest frames to copy.
    pub(crate) fn take_passed(&self) -> bool {
        self.passed.load(Ordering::Acquire) && self.passed.swap(false, Ordering::AcqRel)
    }
}

/// The checkpointer's side of [`Notifier`].
pub(crate) struct Checkpointer {
    pending: Arc<AtomicBool>,
    wake: Receiver<()>,
    passed: Arc<AtomicBool>,
}

/// A connected notifier and checkpointer.
pub(crate) fn channel() -> (Notifier, Checkpointer) {
    let pending = Arc::new(AtomicBool::new(false));
    let passed = Arc::new(AtomicBool::new(false));
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    (
        Notifier {
            pending: pending.clone(),
            wake: wake_tx,
            passed: passed.clone(),
        },
        Checkpointer {
            pending,
            wake: wake_rx,
            passed,
        },
    )
}

/// Checkpoints shortly after commits until the writer (the notifier) is
/// gone, then once more.
pub(crate) fn run(conn: Connection, rounds: Checkpointer) {
    while rounds.wake.recv().is_ok() {
        // Only the notifier's end wakes this wait early.
        let ended = matches!(
            rounds.wake.recv_deadline(Instant::now() + DELAY),
            Err(RecvTimeoutError::Disconnected)
        );
        // Commits from here on start the next round.
        rounds.pending.store(false, Ordering::Release);
        if checkpoint(&conn) {
            rounds.passed.store(true, Ordering::Release);
        }
        if ended {
            return;
        }
    }
}

/// Copies what it can from the WAL into the database file; false if it
/// could not start.
pub(crate) fn checkpoint(conn: &Connection) -> bool {
    // Busy (another process checkpointing) or locked is harmless: the
    // pages stay in the WAL until the next attempt.
    match conn.query_row("pragma wal_checkpoint(passive)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(busy) => busy == 0,
        Err(e) => {
            tracing::debug!(error = %e, "kv-sqlite: checkpoint deferred");
            false
        }
    }
}

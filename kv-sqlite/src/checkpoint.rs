//! The checkpointer thread: copies committed pages from the write-ahead log
//! into the database file, off the writer's path.
//!
//! SQLite's default has the committing connection checkpoint every 1,000
//! WAL pages, so one commit in a thousand pages would also copy pages and
//! fsync the database file before it is acknowledged. Here the writer only
//! appends to the WAL; this thread checkpoints (`PASSIVE`: it never blocks
//! the writer or readers) shortly after commits, so a page rewritten by
//! several commits in that moment is copied once. The writer keeps a large
//! automatic checkpoint as a backstop, should this thread fall behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

/// How long after a commit the checkpoint waits for more commits.
const DELAY: Duration = Duration::from_millis(50);

/// WAL pages after which the writer checkpoints by itself (about 64 MiB of
/// 4 KiB pages): reached only when this thread cannot keep up.
pub(crate) const WRITER_BACKSTOP_PAGES: u32 = 16_384;

/// The writer's side: tells the checkpointer that commits happened, waking
/// its thread only for the first commit of each round, so that a lone
/// commit does not pay for a thread wake-up.
pub(crate) struct Notifier {
    pending: Arc<AtomicBool>,
    wake: Sender<()>,
}

impl Notifier {
    /// Called after each committed batch.
    pub(crate) fn committed(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.wake.try_send(());
        }
    }
}

/// The checkpointer's side of [`Notifier`].
pub(crate) struct Checkpointer {
    pending: Arc<AtomicBool>,
    wake: Receiver<()>,
}

/// A connected notifier and checkpointer.
pub(crate) fn channel() -> (Notifier, Checkpointer) {
    let pending = Arc::new(AtomicBool::new(false));
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    (
        Notifier {
            pending: pending.clone(),
            wake: wake_tx,
        },
        Checkpointer {
            pending,
            wake: wake_rx,
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
        checkpoint(&conn);
        if ended {
            return;
        }
    }
}

fn checkpoint(conn: &Connection) {
    // Busy (another process checkpointing) or locked is harmless: the
    // pages stay in the WAL until the next attempt.
    if let Err(e) = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
        tracing::debug!(error = %e, "kv-sqlite: checkpoint deferred");
    }
}

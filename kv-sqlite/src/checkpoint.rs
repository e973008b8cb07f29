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

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::Connection;

/// How long after a commit the checkpoint waits for more commits.
const DELAY: Duration = Duration::from_millis(50);

/// WAL pages after which the writer checkpoints by itself (about 64 MiB of
/// 4 KiB pages): reached only when this thread cannot keep up.
pub(crate) const WRITER_BACKSTOP_PAGES: u32 = 16_384;

/// Checkpoints after commits (one `()` per commit batch, coalesced) until
/// the writer is gone, then once more.
pub(crate) fn run(conn: Connection, commits: Receiver<()>) {
    while commits.recv().is_ok() {
        let deadline = Instant::now() + DELAY;
        loop {
            match commits.recv_deadline(deadline) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    checkpoint(&conn);
                    return;
                }
            }
        }
        checkpoint(&conn);
    }
}

fn checkpoint(conn: &Connection) {
    // Busy (another process checkpointing) or locked is harmless: the
    // pages stay in the WAL until the next attempt.
    if let Err(e) = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
        tracing::debug!(error = %e, "kv-sqlite: checkpoint deferred");
    }
}

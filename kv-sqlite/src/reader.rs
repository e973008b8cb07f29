//! Reader threads: each owns a read connection and serves snapshot reads
//! from a shared queue, so reads never wait for the writer (WAL lets them
//! run beside a commit) and never block the async executor.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use kv_core::Clock;
use kv_core::backend::embedded::{ReadRequest, serve_reads};
use kv_core::backend::{ReadBudget, ReadRange, ReadSink};
use rusqlite::Connection;

use crate::error::{BACKEND, SqliteError};
use crate::store;

/// Attempts of one read while SQLite reports `SQLITE_BUSY`.
const BUSY_ATTEMPTS: u32 = 3;

/// Serves reads until every sender is gone and the queue is empty.
pub(crate) fn run(conn: Connection, rx: Receiver<ReadRequest>, clock: Arc<dyn Clock>) {
    serve_reads(BACKEND, &rx, |ranges, sink| {
        read_with_retry(&conn, ranges, clock.now_ms(), sink)
    });
}

/// Reads `ranges` in one snapshot, retrying while the file is locked (which
/// in WAL mode happens only briefly, e.g. during recovery).
pub(crate) fn read_with_retry(
    conn: &Connection,
    ranges: &[ReadRange],
    now: u64,
    sink: &mut dyn ReadSink,
) -> Result<(), SqliteError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store::read_ranges(conn, ranges, now, &mut ReadBudget::unlimited(), sink) {
            Err(e) if e.is_busy() && attempt < BUSY_ATTEMPTS => {
                sink.clear();
                std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
            }
            result => return result,
        }
    }
}

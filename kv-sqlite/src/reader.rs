//! Reader threads: each owns a read connection and serves snapshot reads
//! from a shared queue, so reads never wait for the writer (WAL lets them
//! run beside a commit) and never block the async executor.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use futures::channel::oneshot;
use kv_core::Clock;
use kv_core::backend::{RawEntry, ReadBudget, ReadRange};
use rusqlite::Connection;

use crate::error::SqliteError;
use crate::store;

/// Attempts of one read while SQLite reports `SQLITE_BUSY`.
const BUSY_ATTEMPTS: u32 = 3;

/// One snapshot read and where its result goes.
pub(crate) struct ReadRequest {
    pub(crate) ranges: Vec<ReadRange>,
    pub(crate) reply: oneshot::Sender<kv_core::Result<Vec<Vec<RawEntry>>>>,
}

/// Serves reads until every sender is gone and the queue is empty.
pub(crate) fn run(conn: Connection, rx: Receiver<ReadRequest>, clock: Arc<dyn Clock>) {
    while let Ok(request) = rx.recv() {
        if request.reply.is_canceled() {
            continue;
        }
        let result = read_with_retry(&conn, &request.ranges, clock.now_ms());
        let _ = request.reply.send(result.map_err(Into::into));
    }
}

/// Reads `ranges` in one snapshot, retrying while the file is locked (which
/// in WAL mode happens only briefly, e.g. during recovery).
pub(crate) fn read_with_retry(
    conn: &Connection,
    ranges: &[ReadRange],
    now: u64,
) -> Result<Vec<Vec<RawEntry>>, SqliteError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store::read_ranges(conn, ranges, now, &mut ReadBudget::unlimited()) {
            Err(e) if e.is_busy() && attempt < BUSY_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
            }
            result => return result,
        }
    }
}

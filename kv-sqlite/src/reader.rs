//! Reader threads: each owns a read connection and serves snapshot reads
//! from a shared queue, so reads never wait for the writer (WAL lets them
//! run beside a commit) and never block the async executor.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use futures::channel::oneshot;
use kv_core::Clock;
use kv_core::backend::{ReadBudget, ReadRange, ReadSink};
use rusqlite::Connection;

use crate::error::SqliteError;
use crate::store;

/// Attempts of one read while SQLite reports `SQLITE_BUSY`.
const BUSY_ATTEMPTS: u32 = 3;

/// One snapshot read, the sink its entries go to, and where the sink goes
/// back once they are in it.
pub(crate) struct ReadRequest {
    pub(crate) ranges: Vec<ReadRange>,
    pub(crate) sink: Box<dyn ReadSink>,
    pub(crate) reply: oneshot::Sender<kv_core::Result<Box<dyn ReadSink>>>,
}

impl ReadRequest {
    /// Reads on `conn` and answers. A sink that panics fails its read, not
    /// the thread.
    pub(crate) fn serve(mut self, conn: &Connection, now: u64) {
        if self.reply.is_canceled() {
            return;
        }
        let sink = &mut *self.sink;
        let read = catch_unwind(AssertUnwindSafe(|| {
            read_with_retry(conn, &self.ranges, now, sink)
        }));
        let result = match read {
            Ok(Ok(())) => Ok(self.sink),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(kv_core::Error::Backend {
                backend: crate::error::BACKEND.into(),
                source: "the read's sink panicked".into(),
            }),
        };
        let _ = self.reply.send(result);
    }
}

/// Serves reads until every sender is gone and the queue is empty.
pub(crate) fn run(conn: Connection, rx: Receiver<ReadRequest>, clock: Arc<dyn Clock>) {
    while let Ok(request) = rx.recv() {
        request.serve(&conn, clock.now_ms());
    }
}

/// Reads `ranges` in one snapshot, retrying while the file is locked (which
/// in WAL mode happens only briefly, e.g. during recovery).
fn read_with_retry(
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

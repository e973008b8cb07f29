//! Reader threads: each serves snapshot reads from a shared queue, one redb
//! read transaction per request, so reads never wait for the writer (redb
//! readers run beside a write transaction) and never block the async
//! executor.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use kv_core::Clock;
use kv_core::backend::ReadBudget;
use kv_core::backend::embedded::{ReadRequest, serve_reads};
use redb::Database;

use crate::error::BACKEND;
use crate::store;

/// Serves reads until every sender is gone and the queue is empty.
pub(crate) fn run(db: Arc<Database>, rx: Receiver<ReadRequest>, clock: Arc<dyn Clock>) {
    serve_reads(BACKEND, &rx, |ranges, sink| {
        store::read_ranges(
            &db,
            ranges,
            clock.now_ms(),
            &mut ReadBudget::unlimited(),
            sink,
        )
    });
}

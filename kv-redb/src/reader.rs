//! Reader threads: each serves snapshot reads from a shared queue, one redb
//! read transaction per request, so reads never wait for the writer (redb
//! readers run beside a write transaction) and never block the async
//! executor.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use futures::channel::oneshot;
use kv_core::Clock;
use kv_core::backend::{RawEntry, ReadBudget, ReadRange};
use redb::Database;

use crate::store;

/// One snapshot read and where its result goes.
pub(crate) struct ReadRequest {
    pub(crate) ranges: Vec<ReadRange>,
    pub(crate) reply: oneshot::Sender<kv_core::Result<Vec<Vec<RawEntry>>>>,
}

/// Serves reads until every sender is gone and the queue is empty.
pub(crate) fn run(db: Arc<Database>, rx: Receiver<ReadRequest>, clock: Arc<dyn Clock>) {
    while let Ok(request) = rx.recv() {
        if request.reply.is_canceled() {
            continue;
        }
        let mut budget = ReadBudget::unlimited();
        let result = store::read_ranges(&db, &request.ranges, clock.now_ms(), &mut budget);
        let _ = request.reply.send(result.map_err(Into::into));
    }
}

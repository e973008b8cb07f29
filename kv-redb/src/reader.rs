//! Reader threads: each serves snapshot reads from a shared queue, one redb
//! read transaction per request, so reads never wait for the writer (redb
//! readers run beside a write transaction) and never block the async
//! executor.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use futures::channel::oneshot;
use kv_core::Clock;
use kv_core::backend::{ReadBudget, ReadRange, ReadSink};
use redb::Database;

use crate::error::BACKEND;
use crate::store;

/// One snapshot read, the sink its entries go to, and where the sink goes
/// back once they are in it.
pub(crate) struct ReadRequest {
    pub(crate) ranges: Vec<ReadRange>,
    pub(crate) sink: Box<dyn ReadSink>,
    pub(crate) reply: oneshot::Sender<kv_core::Result<Box<dyn ReadSink>>>,
}

/// Serves reads until every sender is gone and the queue is empty.
pub(crate) fn run(db: Arc<Database>, rx: Receiver<ReadRequest>, clock: Arc<dyn Clock>) {
    while let Ok(mut request) = rx.recv() {
        if request.reply.is_canceled() {
            continue;
        }
        let mut budget = ReadBudget::unlimited();
        let now = clock.now_ms();
        let sink = &mut *request.sink;
        // A sink that panics fails its read, not the thread.
        let read = catch_unwind(AssertUnwindSafe(|| {
            store::read_ranges(&db, &request.ranges, now, &mut budget, sink)
        }));
        let result = match read {
            Ok(Ok(())) => Ok(request.sink),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(kv_core::Error::Backend {
                backend: BACKEND.into(),
                source: "the read's sink panicked".into(),
            }),
        };
        let _ = request.reply.send(result);
    }
}

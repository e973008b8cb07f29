//! The threads a storage backend runs (writer, readers, checkpointer…) and
//! how they end: [`Workers::join`] waits for them without blocking the
//! executor (for `Backend::close`), [`Workers::join_blocking`] joins them
//! from `Drop`. A backend first drops what keeps its threads running,
//! usually the senders of their request channels.

use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use futures::channel::oneshot;

/// A set of named threads, started with [`Workers::spawn`].
#[derive(Debug, Default)]
pub struct Workers {
    started: Mutex<Vec<Worker>>,
}

#[derive(Debug)]
struct Worker {
    handle: JoinHandle<()>,
    /// Resolves (cancelled) when the thread is about to end.
    exited: oneshot::Receiver<()>,
}

impl Workers {
    /// No threads yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a thread named `name` running `body`.
    ///
    /// # Errors
    /// The operating system's, when it cannot start a thread.
    pub fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let (exit_tx, exited) = oneshot::channel::<()>();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            // Dropped when `body` returns or unwinds: either way the end.
            let _exit = exit_tx;
            body();
        })?;
        self.started().push(Worker { handle, exited });
        Ok(())
    }

    /// Waits until every thread started so far has ended, then joins them.
    pub async fn join(&self) {
        let mut workers = std::mem::take(&mut *self.started());
        for worker in &mut workers {
            let _ = (&mut worker.exited).await;
        }
        for worker in workers {
            // The thread has returned (or is returning) from its body; one
            // that panicked has nothing left to clean up.
            let _ = worker.handle.join();
        }
    }

    /// Joins every thread started so far, blocking the caller.
    pub fn join_blocking(&mut self) {
        let workers = std::mem::take(self.started.get_mut().unwrap_or_else(|e| e.into_inner()));
        for worker in workers {
            let _ = worker.handle.join();
        }
    }

    fn started(&self) -> MutexGuard<'_, Vec<Worker>> {
        self.started.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn join_waits_for_threads_that_end_when_their_channel_closes() {
        let workers = Workers::new();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        workers
            .spawn("worker-test".into(), move || {
                while rx.recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(20));
                flag.store(true, Ordering::SeqCst);
            })
            .expect("a thread starts");
        drop(tx);
        futures::executor::block_on(workers.join());
        assert!(ended.load(Ordering::SeqCst));
    }

    #[test]
    fn join_blocking_survives_a_panicked_thread() {
        let mut workers = Workers::new();
        workers
            .spawn("worker-panics".into(), || panic!("expected in this test"))
            .expect("a thread starts");
        workers.join_blocking();
        workers.join_blocking();
    }
}

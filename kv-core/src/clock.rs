//! Time as an input, so that tests can drive it.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::oneshot;

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// The manual clock behind this one, if time is driven by a test.
    /// Layers that wait for a point in time (queues, cron) use it to sleep
    /// on the manual clock instead of the system's timers.
    fn as_manual(&self) -> Option<&ManualClock> {
        None
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to. Sleepers registered with
/// [`ManualClock::sleep_until`] wake when it is moved past their deadline.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
    sleepers: Mutex<Vec<(u64, oneshot::Sender<()>)>>,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(now_ms),
            sleepers: Mutex::default(),
        }
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.wake(now);
    }

    /// Sets the clock to `now_ms`.
    pub fn set(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
        self.wake(now_ms);
    }

    fn wake(&self, now: u64) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        let (due, waiting): (Vec<_>, Vec<_>) = sleepers.drain(..).partition(|(at, _)| *at <= now);
        *sleepers = waiting;
        drop(sleepers);
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// Resolves once the clock reads `deadline_ms` or later.
    pub fn sleep_until(&self, deadline_ms: u64) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        if self.now_ms() >= deadline_ms {
            let _ = tx.send(());
        } else {
            self.sleepers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((deadline_ms, tx));
            // The clock may have moved between the check and the push.
            self.wake(self.now_ms());
        }
        async move {
            let _ = rx.await;
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn as_manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

//! Waiting for a point in time on a [`Clock`].
//!
//! Layers that wait for time (queue leases and retries, cron ticks) take a
//! `Clock`. On a [`ManualClock`](kv_core::ManualClock) they sleep on it, so
//! a test moves time instead of waiting for it; on any other clock they
//! sleep in real time on tokio's timer. This is the one place that makes
//! that choice: kv-core has the clocks but no runtime, so the real-time
//! half cannot live there.

use std::future::Future;
use std::time::Duration;

use futures::future::Either;
use kv_core::Clock;

/// Resolves once `clock` reads `at_ms` (Unix ms) or later.
///
/// On a manual clock it wakes when the clock is moved past `at_ms`; on any
/// other it sleeps, in real time, the difference between `at_ms` and the
/// clock's reading now (not at all for a time already past). The future
/// borrows nothing, so it can be raced against other work in a `select!`.
pub fn sleep_until(clock: &dyn Clock, at_ms: u64) -> impl Future<Output = ()> + Send + 'static {
    match clock.as_manual() {
        Some(manual) => Either::Left(manual.sleep_until(at_ms)),
        None => {
            let ms = at_ms.saturating_sub(clock.now_ms());
            Either::Right(tokio::time::sleep(Duration::from_millis(ms)))
        }
    }
}

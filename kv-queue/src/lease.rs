//! Leases kept alive while a handler runs: the one rule queue listeners and
//! cron schedulers share.
//!
//! Whoever runs a handler for a stored record (a queue message, a cron
//! tick) first writes a lease into that record by compare-and-swap: "mine
//! until `deadline`". Others presume the holder dead once the deadline has
//! passed and take the record over, again by compare-and-swap. While the
//! handler runs, [`Lease::hold`] renews the lease every third of its
//! duration through a renew step the caller gives (a write checked against
//! the versionstamp of the previous one), so a slow handler keeps what it
//! holds and a dead one loses it within one lease.
//!
//! # A lost lease
//!
//! When a renewal's check fails, someone else took the record over: they
//! now own the outcome. The handler is left to run to its end (dropping a
//! user's future halfway is worse than letting it finish), but its result
//! is not recorded: [`Held::Lost`] carries neither the output nor a
//! versionstamp to check a write against, so the holder writes nothing
//! more for that record. A queue listener neither acknowledges nor retries
//! the message (whoever took it over does that); a scheduler neither
//! retries the run nor marks the tick done.
//!
//! A renewal that fails for another reason (the database is unavailable,
//! say) is logged and tried again at the next renewal: the lease may still
//! be ours, and the next check says.
//!
//! This lives in kv-queue, and kv-cron depends on it, because it needs a
//! timer (tokio's, through [`crate::time::sleep_until`]) and kv-core has no
//! runtime; both crates still build on `Backend` alone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kv_core::{Clock, Result, Versionstamp};

use crate::time::sleep_until;

/// A lease is renewed this many times per duration, so two renewals may
/// fail (or come late) before it expires.
pub const RENEWALS_PER_LEASE: u32 = 3;

/// The shortest lease: [`Lease::new`] raises shorter ones to it, so a
/// renewal (every third) still has 10 ms to commit.
pub const MIN_LEASE: Duration = Duration::from_millis(30);

/// What became of a lease held while some work ran.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lost lease means the work's result must not be recorded"]
pub enum Held<T> {
    /// The lease stayed ours until the work ended.
    Kept {
        /// What the work returned.
        output: T,
        /// The versionstamp of the last write of the lease: check the
        /// write that records the outcome against it.
        stamp: Versionstamp,
    },
    /// Someone else took the record over while the work ran. The work
    /// still ran to its end; its output is dropped, as the new holder owns
    /// the outcome.
    Lost,
}

/// The lease a holder writes into a record: how long it lasts, on which
/// clock.
#[derive(Clone, Debug)]
pub struct Lease {
    clock: Arc<dyn Clock>,
    duration: Duration,
}

impl Lease {
    /// A lease of `duration` (at least [`MIN_LEASE`]) on `clock`.
    pub fn new(clock: Arc<dyn Clock>, duration: Duration) -> Self {
        Lease {
            clock,
            duration: duration.max(MIN_LEASE),
        }
    }

    /// How long the lease lasts without a renewal.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The deadline a lease written now carries, Unix ms: the clock's
    /// reading plus the duration.
    pub fn deadline(&self) -> u64 {
        self.clock
            .now_ms()
            .saturating_add(duration_ms(self.duration))
    }

    /// Runs `work` to its end while renewing the lease every third of its
    /// duration: each renewal calls `renew` with the versionstamp of the
    /// lease's last write.
    ///
    /// `renew(stamp)` writes a new deadline ([`Lease::deadline`]) into the
    /// record, checked against `stamp`, and answers `Ok(Some(new stamp))`
    /// when it committed, `Ok(None)` when the check failed (the lease was
    /// taken over), or an error, which is logged and retried at the next
    /// renewal.
    ///
    /// `stamp` is the versionstamp of the write that took the lease.
    pub async fn hold<W, R, F>(
        &self,
        mut stamp: Versionstamp,
        work: W,
        mut renew: R,
    ) -> Held<W::Output>
    where
        W: Future,
        R: FnMut(Versionstamp) -> F,
        F: Future<Output = Result<Option<Versionstamp>>>,
    {
        let every = duration_ms(self.duration) / u64::from(RENEWALS_PER_LEASE);
        let mut work = std::pin::pin!(work);
        loop {
            let renew_at = self.clock.now_ms().saturating_add(every);
            tokio::select! {
                output = &mut work => return Held::Kept { output, stamp },
                () = sleep_until(&*self.clock, renew_at) => match renew(stamp).await {
                    Ok(Some(renewed)) => stamp = renewed,
                    Ok(None) => {
                        tracing::warn!("lease taken over: the handler's result will not be recorded");
                        let _ = work.await;
                        return Held::Lost;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying at the next renewal"),
                },
            }
        }
    }
}

/// `d` in whole milliseconds, saturating.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

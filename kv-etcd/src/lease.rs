//! etcd leases that delete expired keys: one lease per 10-second window of
//! expiry times, shared by every key of this handle that expires in it.
//!
//! Reads hide an expired key by the expiry in its record; the lease only
//! collects the garbage, at most one window (plus a second) later.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use kv_core::Result;

use crate::Inner;
use crate::error::convert;
use crate::read::with_retries;

/// The width of one expiry window.
const WINDOW_MS: u64 = 10_000;

/// etcd's largest lease TTL, in seconds.
const MAX_TTL_S: u64 = 9_000_000_000;

/// The leases this handle has granted, by the end of their window
/// (milliseconds since `epoch`).
#[derive(Debug)]
pub(crate) struct Leases {
    epoch: Instant,
    windows: Mutex<BTreeMap<u64, i64>>,
}

impl Leases {
    pub(crate) fn new() -> Self {
        Leases {
            epoch: Instant::now(),
            windows: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, i64>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A lease that ends between `remaining_ms` and `remaining_ms` +
    /// 11 s from now, or `None` when the expiry is too far away for etcd.
    pub(crate) async fn lease_for(&self, inner: &Inner, remaining_ms: u64) -> Result<Option<i64>> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let Some(end) = now
            .checked_add(remaining_ms)
            .map(|t| (t / WINDOW_MS + 1) * WINDOW_MS)
        else {
            return Ok(None);
        };
        let ttl_s = (end - now).div_ceil(1000) + 1;
        if ttl_s > MAX_TTL_S {
            return Ok(None);
        }
        if let Some(id) = self.lock().get(&end) {
            return Ok(Some(*id));
        }
        // A retried grant may leave an unused lease behind; it ends by
        // itself.
        let granted = with_retries(inner, || async {
            inner
                .client
                .lease_client()
                .grant(ttl_s as i64, None)
                .await
                .map_err(convert)
        })
        .await?;
        let mut windows = self.lock();
        // Leases whose window has passed may already be gone.
        windows.retain(|w, _| *w > now);
        Ok(Some(*windows.entry(end).or_insert(granted.id())))
    }

    /// Forgets every lease, after etcd said one of them no longer exists.
    pub(crate) fn forget(&self) {
        self.lock().clear();
    }
}

//! Repeated log lines, rate-limited: one line per key per interval, and
//! the next line admitted says how many were held back.
//!
//! Out of descriptors, the accept loop failed ~50 times a second and
//! logged a WARN each time; on a full disk every failed write logged one;
//! each wrong token from a brute-force client would log one. The server
//! asks a [`LogLimiter`] before each such line, keyed by what the line is
//! about (an error kind, a peer), and appends the [`Repeats`] it answers:
//! `accept failed (… 249 more in the last 5 s)`.
//!
//! The count of lines held back is told with the next line of the same
//! key, so a burst that ends is summed up when its key is next logged.
//! The keys kept apart are bounded (a key per peer must not let peers grow
//! the table): past `capacity` busy keys, lines of new keys are held back
//! and counted as "from other sources" in the next line logged.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kv_core::Clock;

#[cfg(test)]
mod tests;

/// Decides which occurrences of repeated events are logged.
#[derive(Debug)]
pub(crate) struct LogLimiter<K> {
    clock: Arc<dyn Clock>,
    interval_ms: u64,
    capacity: usize,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    slots: HashMap<K, Slot>,
    /// Occurrences held back under keys no longer kept apart (forgotten to
    /// make room, or arriving while the table was full), told with the
    /// next line of any key.
    others: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When this key's last line was logged.
    logged_at_ms: u64,
    /// Occurrences held back since.
    held: u64,
}

/// What an admitted line adds about the lines held back before it; shown
/// with `{}` after the message, it is empty when there were none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeats {
    /// Lines of this key not logged since its previous line.
    pub(crate) count: u64,
    /// Time since that previous line.
    pub(crate) over_ms: u64,
    /// Lines of other keys not logged, and not told with a line of their
    /// own key: more keys were busy at once than the limiter keeps apart.
    pub(crate) others: u64,
}

impl fmt::Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.over_ms / 1000;
        match (self.count, self.others) {
            (0, 0) => Ok(()),
            (n, 0) => write!(f, " (… {n} more in the last {secs} s)"),
            (0, o) => write!(f, " (… {o} more from other sources)"),
            (n, o) => write!(
                f,
                " (… {n} more in the last {secs} s, and {o} from other sources)"
            ),
        }
    }
}

impl<K: Hash + Eq> LogLimiter<K> {
    /// Logs each key at most once per `interval`, keeping up to `capacity`
    /// keys apart at once.
    pub(crate) fn new(clock: Arc<dyn Clock>, interval: Duration, capacity: usize) -> Self {
        LogLimiter {
            clock,
            interval_ms: interval.as_millis().try_into().unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            state: Mutex::new(State {
                slots: HashMap::new(),
                others: 0,
            }),
        }
    }

    /// Whether to log an occurrence of `key` now: `Some` with what to say
    /// about the lines held back, or `None` to hold this one back.
    pub(crate) fn admit(&self, key: K) -> Option<Repeats> {
        let now = self.clock.now_ms();
        let interval = self.interval_ms;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { slots, others } = &mut *state;
        let (count, over_ms) = match slots.get_mut(&key) {
            Some(slot) if now.saturating_sub(slot.logged_at_ms) < interval => {
                slot.held += 1;
                return None;
            }
            Some(slot) => {
                let told = (slot.held, now.saturating_sub(slot.logged_at_ms));
                *slot = Slot {
                    logged_at_ms: now,
                    held: 0,
                };
                told
            }
            None => {
                if slots.len() >= self.capacity {
                    // Make room by forgetting the keys whose interval is
                    // over; what they held back is told as others'.
                    slots.retain(|_, slot| {
                        let keep = now.saturating_sub(slot.logged_at_ms) < interval;
                        if !keep {
                            *others += slot.held;
                        }
                        keep
                    });
                }
                if slots.len() >= self.capacity {
                    *others += 1;
                    return None;
                }
                slots.insert(
                    key,
                    Slot {
                        logged_at_ms: now,
                        held: 0,
                    },
                );
                (0, 0)
            }
        };
        Some(Repeats {
            count,
            over_ms,
            others: std::mem::take(others),
        })
    }

    /// Keys kept apart now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .len()
    }
}

//! Every limit of Deno KV, checked before any I/O.
//!
//! The numbers are the Deno runtime's (which accepts 100 checks, not
//! denokv's 10). The server applies the same functions to requests it
//! receives, so a remote client and a local one see the same limits.

use crate::backend::{AtomicWrite, MutationKind, ReadRange, SYSTEM_PREFIX};
use crate::error::Limit;
use crate::{Error, Result};

/// Largest encoded key that can be written or checked.
pub const MAX_WRITE_KEY_SIZE: usize = 2048;
/// Largest encoded key or range bound that can be read or watched.
pub const MAX_READ_KEY_SIZE: usize = MAX_WRITE_KEY_SIZE + 1;
/// Largest value, in bytes (a KvU64 counts 8).
pub const MAX_VALUE_SIZE: usize = 65536;
/// Most ranges (and `get_many` keys) in one read.
pub const MAX_READ_RANGES: usize = 10;
/// Most keys in one `get_many`.
pub const MAX_GET_MANY: usize = 10;
/// Largest sum of range limits in one read.
pub const MAX_READ_ENTRIES: usize = 1000;
/// Most checks in one commit.
pub const MAX_CHECKS: usize = 100;
/// Most mutations plus enqueues in one commit.
pub const MAX_MUTATIONS: usize = 1000;
/// Largest total size of one commit.
pub const MAX_TOTAL_MUTATION_SIZE: usize = 819_200;
/// Largest total size of the keys of value-carrying mutations in a commit.
pub const MAX_TOTAL_KEY_SIZE: usize = 81_920;
/// Most keys in one watch.
pub const MAX_WATCHED_KEYS: usize = 10;
/// Most dead-letter keys on one queue message.
pub const MAX_UNDELIVERED_KEYS: usize = 10;
/// Most backoff intervals on one queue message (the Deno runtime's limit).
pub const MAX_BACKOFF_INTERVALS: usize = 5;
/// Most backoff intervals a server accepts on one queue message: denokv's
/// limit, which other clients (Python `denokv`) rely on.
pub const MAX_SERVER_BACKOFF_INTERVALS: usize = 10;
/// Largest backoff interval, in ms (one hour).
pub const MAX_BACKOFF_INTERVAL_MS: u64 = 3_600_000;
/// Longest queue delay, in ms (30 days).
pub const MAX_DELAY_MS: u64 = 30 * 24 * 3_600_000;
/// Default `list` batch size.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// Cap of a batch size derived from `limit`.
pub const MAX_DERIVED_BATCH_SIZE: usize = 500;

fn check_size(limit: Limit, max: usize, actual: usize) -> Result<()> {
    if actual > max {
        Err(Error::limit(limit, max, actual))
    } else {
        Ok(())
    }
}

fn no_system(key: &[u8]) -> Result<()> {
    if key.first() == Some(&SYSTEM_PREFIX) {
        return Err(Error::InvalidKey(
            "key is in the reserved system key space".into(),
        ));
    }
    Ok(())
}

/// Checks a key that will be written or checked.
///
/// # Errors
/// `InvalidKey` for an empty key, `LimitExceeded` over 2048 bytes.
pub fn check_write_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("key cannot be empty".into()));
    }
    check_size(Limit::WriteKeySize, MAX_WRITE_KEY_SIZE, key.len())
}

/// Checks a key or range bound that will be read or watched.
///
/// # Errors
/// `LimitExceeded` over 2049 bytes.
pub fn check_read_key(key: &[u8]) -> Result<()> {
    check_size(Limit::ReadKeySize, MAX_READ_KEY_SIZE, key.len())
}

/// Checks a snapshot read.
///
/// # Errors
/// `LimitExceeded` for too many ranges, entries or oversized bounds;
/// `InvalidArgument` for a zero limit.
pub fn check_read(ranges: &[ReadRange]) -> Result<()> {
    check_size(Limit::Ranges, MAX_READ_RANGES, ranges.len())?;
    let mut total = 0usize;
    for r in ranges {
        if r.limit == 0 {
            return Err(Error::InvalidArgument(
                "limit must be greater than 0".into(),
            ));
        }
        check_read_key(&r.start)?;
        check_read_key(&r.end)?;
        total += r.limit as usize;
    }
    check_size(Limit::Entries, MAX_READ_ENTRIES, total)
}

/// Checks the keys of a watch.
///
/// # Errors
/// `LimitExceeded` for more than 10 keys or an oversized key.
pub fn check_watch(keys: &[Vec<u8>]) -> Result<()> {
    check_size(Limit::WatchKeys, MAX_WATCHED_KEYS, keys.len())?;
    keys.iter().try_for_each(|k| check_read_key(k))
}

/// Checks a backoff schedule (the delays, in ms, before each retry of a
/// queue message or a cron run): at most `max_intervals` delays
/// ([`MAX_BACKOFF_INTERVALS`] from the Deno runtime and for cron,
/// [`MAX_SERVER_BACKOFF_INTERVALS`] on a server), each at most
/// [`MAX_BACKOFF_INTERVAL_MS`].
///
/// This is the one check of a schedule: [`check_write`] and the server's
/// [`check_received_write`], [`Kv::enqueue`](crate::Kv::enqueue) and cron
/// registration all call it, and each surface words its failure as Deno
/// does there.
///
/// # Errors
/// `LimitExceeded` for [`Limit::BackoffIntervals`] with the number of
/// delays, or for [`Limit::BackoffInterval`] with the first delay that is
/// too long.
pub fn check_backoff_schedule<I>(delays_ms: I, max_intervals: usize) -> Result<()>
where
    I: IntoIterator<Item = u64>,
    I::IntoIter: ExactSizeIterator,
{
    let delays = delays_ms.into_iter();
    check_size(Limit::BackoffIntervals, max_intervals, delays.len())?;
    for ms in delays {
        if ms > MAX_BACKOFF_INTERVAL_MS {
            return Err(Error::LimitExceeded {
                limit: Limit::BackoffInterval,
                max: MAX_BACKOFF_INTERVAL_MS,
                actual: ms,
            });
        }
    }
    Ok(())
}

/// Checks a commit as the Deno runtime does, and also that no user commit
/// touches the reserved system key space.
///
/// Total size counts check keys, mutation keys, the key and value of
/// value-carrying mutations again, enqueue payloads and 4 bytes per backoff
/// interval.
///
/// # Errors
/// `LimitExceeded` naming the first limit exceeded, `InvalidKey` for empty or
/// system keys, `InvalidArgument` for malformed queue options.
pub fn check_write(write: &AtomicWrite) -> Result<()> {
    check_write_inner(write, false, MAX_BACKOFF_INTERVALS)
}

/// [`check_write`] as a server applies it to a commit received from any
/// client: the same limits, but up to 10 backoff intervals per message.
///
/// # Errors
/// As [`check_write`].
pub fn check_received_write(write: &AtomicWrite) -> Result<()> {
    check_write_inner(write, false, MAX_SERVER_BACKOFF_INTERVALS)
}

/// [`check_write`] for layers that write the system key space themselves.
///
/// # Errors
/// As [`check_write`], without the system-key rule.
pub fn check_system_write(write: &AtomicWrite) -> Result<()> {
    check_write_inner(write, true, MAX_BACKOFF_INTERVALS)
}

fn check_write_inner(write: &AtomicWrite, allow_system: bool, max_backoff: usize) -> Result<()> {
    check_size(Limit::Checks, MAX_CHECKS, write.checks.len())?;
    check_size(
        Limit::Mutations,
        MAX_MUTATIONS,
        write.mutations.len() + write.enqueues.len(),
    )?;
    let mut total = 0usize;
    let mut key_total = 0usize;
    for c in &write.checks {
        check_write_key(&c.key)?;
        if !allow_system {
            no_system(&c.key)?;
        }
        total += c.key.len();
    }
    for m in &write.mutations {
        check_write_key(&m.key)?;
        if !allow_system {
            no_system(&m.key)?;
        }
        total += m.key.len();
        let value = match &m.kind {
            MutationKind::Set { value, .. }
            | MutationKind::SetSuffixVersionstampedKey { value, .. }
            | MutationKind::Sum { value, .. }
            | MutationKind::Min(value)
            | MutationKind::Max(value) => Some(value),
            MutationKind::Delete => None,
        };
        if let Some(value) = value {
            // Records of the layers (a queue message holds its payload and
            // more) may exceed the user value limit.
            if !(allow_system && m.key.first() == Some(&SYSTEM_PREFIX)) {
                check_size(Limit::ValueSize, MAX_VALUE_SIZE, value.size())?;
            }
            total += m.key.len() + value.size();
            key_total += m.key.len();
        }
    }
    for e in &write.enqueues {
        check_size(Limit::EnqueuePayloadSize, MAX_VALUE_SIZE, e.payload.len())?;
        check_size(
            Limit::UndeliveredKeys,
            MAX_UNDELIVERED_KEYS,
            e.keys_if_undelivered.len(),
        )?;
        for k in &e.keys_if_undelivered {
            check_write_key(k)?;
            if !allow_system {
                no_system(k)?;
            }
        }
        if let Some(schedule) = &e.backoff_schedule {
            check_backoff_schedule(schedule.iter().map(|&ms| u64::from(ms)), max_backoff)?;
            total += 4 * schedule.len();
        }
        total += e.payload.len();
    }
    check_size(Limit::TotalMutationSize, MAX_TOTAL_MUTATION_SIZE, total)?;
    check_size(Limit::TotalKeySize, MAX_TOTAL_KEY_SIZE, key_total)
}

#[cfg(test)]
mod tests;

//! The backoff-schedule check, and the words each surface gives it.

use std::time::Duration;

use super::*;
use crate::backend::Enqueue;
use crate::{EnqueueOptions, Kv, MemoryBackend};

fn check(delays: &[u64], max: usize) -> Result<()> {
    check_backoff_schedule(delays.iter().copied(), max)
}

fn limit_of(r: Result<()>) -> Option<(Limit, u64, u64)> {
    match r {
        Err(Error::LimitExceeded { limit, max, actual }) => Some((limit, max, actual)),
        _ => None,
    }
}

#[test]
fn backoff_schedules_within_the_limits_pass() {
    assert!(check(&[], MAX_BACKOFF_INTERVALS).is_ok());
    assert!(check(&[0, 3_600_000, 1, 2, 3], MAX_BACKOFF_INTERVALS).is_ok());
    assert!(check(&[1; 10], MAX_SERVER_BACKOFF_INTERVALS).is_ok());
}

#[test]
fn backoff_schedules_name_the_limit_they_exceed() {
    assert_eq!(
        limit_of(check(&[1; 6], MAX_BACKOFF_INTERVALS)),
        Some((Limit::BackoffIntervals, 5, 6))
    );
    assert_eq!(
        limit_of(check(&[1; 11], MAX_SERVER_BACKOFF_INTERVALS)),
        Some((Limit::BackoffIntervals, 10, 11))
    );
    assert_eq!(
        limit_of(check(&[5, 3_600_001, 7_200_000], MAX_BACKOFF_INTERVALS)),
        Some((Limit::BackoffInterval, 3_600_000, 3_600_001))
    );
}

/// A commit goes through the same check (up to 10 delays on a server).
#[test]
fn commits_check_backoff_schedules() {
    let write = |schedule: Vec<u32>| AtomicWrite {
        enqueues: vec![Enqueue {
            payload: vec![1],
            deadline_ms: 0,
            keys_if_undelivered: vec![],
            backoff_schedule: Some(schedule),
        }],
        ..AtomicWrite::default()
    };
    assert_eq!(
        limit_of(check_write(&write(vec![1; 6]))),
        Some((Limit::BackoffIntervals, 5, 6))
    );
    assert!(check_received_write(&write(vec![1; 10])).is_ok());
    let too_long = write(vec![3_600_001]);
    assert_eq!(
        limit_of(check_received_write(&too_long)),
        Some((Limit::BackoffInterval, 3_600_000, 3_600_001))
    );
    assert_eq!(
        check_received_write(&write(vec![1; 11]))
            .unwrap_err()
            .to_string(),
        "Too many backoff intervals (max 10): got 11"
    );
}

/// `Kv::enqueue` words the same failures as the Deno runtime does.
#[test]
fn enqueue_words_backoff_failures_as_deno() {
    let kv = Kv::new(MemoryBackend::new());
    let message = |schedule: Vec<Duration>| {
        let options = EnqueueOptions::default().with_backoff_schedule(schedule);
        match futures::executor::block_on(kv.enqueue(vec![1], options)) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        }
    };
    let ms = Duration::from_millis;
    assert_eq!(
        message(vec![ms(1); 6]),
        "Invalid backoffSchedule, max 5 intervals allowed"
    );
    assert_eq!(
        message(vec![ms(1), ms(3_600_001), ms(3_600_001)]),
        "Invalid backoffSchedule, interval at index 1 is invalid"
    );
    assert_eq!(
        message(vec![ms(3_600_000), ms(2), Duration::MAX]),
        "Invalid backoffSchedule, interval at index 2 is invalid"
    );
}

use std::sync::Arc;
use std::time::Duration;

use kv_core::ManualClock;

use super::{LogLimiter, Repeats};

fn limiter(capacity: usize) -> (Arc<ManualClock>, LogLimiter<&'static str>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let limiter = LogLimiter::new(clock.clone(), Duration::from_secs(5), capacity);
    (clock, limiter)
}

fn told(count: u64, over_ms: u64, others: u64) -> Option<Repeats> {
    Some(Repeats {
        count,
        over_ms,
        others,
    })
}

/// 50 failures a second for 12 s (an accept loop out of descriptors) log
/// three lines, the second and third each counting what came between.
#[test]
fn one_line_per_interval_then_the_count() {
    let (clock, log) = limiter(16);
    let mut lines = Vec::new();
    for _ in 0..600 {
        if let Some(r) = log.admit("accept") {
            lines.push(r);
        }
        clock.advance(20);
    }
    assert_eq!(
        lines,
        vec![
            told(0, 0, 0).unwrap(),
            told(249, 5000, 0).unwrap(),
            told(249, 5000, 0).unwrap()
        ]
    );
    assert_eq!(lines[1].to_string(), " (… 249 more in the last 5 s)");
    assert_eq!(lines[0].to_string(), "", "a first line says nothing more");
    // The burst stopped after 99 more; the next line, much later, tells them.
    clock.advance(3_600_000);
    assert_eq!(log.admit("accept"), told(99, 3_600_000 + 2000, 0));
}

/// Each key has its own interval.
#[test]
fn keys_are_limited_apart() {
    let (clock, log) = limiter(16);
    assert!(log.admit("accept").is_some());
    assert!(log.admit("write").is_some());
    assert_eq!(log.admit("accept"), None);
    clock.advance(4_999);
    assert_eq!(log.admit("write"), None);
    clock.advance(1);
    assert_eq!(log.admit("write"), told(1, 5000, 0));
    assert_eq!(log.admit("accept"), told(1, 5000, 0));
}

/// Past its capacity the limiter keeps no more keys: new keys' lines are
/// held back and told as others' with the next line, and keys whose
/// interval is over make room (what they held back told as others').
#[test]
fn the_table_is_bounded_and_counts_survive_it() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = LogLimiter::new(clock.clone(), Duration::from_secs(5), 4);
    for peer in 0..4u32 {
        assert!(log.admit(peer).is_some());
    }
    assert_eq!(log.admit(0), None, "held back, kept by key 0");
    for peer in 4..10_000u32 {
        assert_eq!(log.admit(peer), None);
    }
    assert_eq!(log.len(), 4);
    clock.advance(5000);
    // Key 4 makes room by forgetting keys 0..4, whose one held line joins
    // the 9,996 new ones.
    let r = log.admit(4).unwrap();
    assert_eq!(r, told(0, 0, 9_997).unwrap());
    assert_eq!(r.to_string(), " (… 9997 more from other sources)");
    assert!(log.len() <= 4);
    assert_eq!(log.admit(4), None);
    clock.advance(5000);
    assert_eq!(
        log.admit(4).unwrap().to_string(),
        " (… 1 more in the last 5 s)"
    );
}

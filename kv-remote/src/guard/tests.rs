use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_core::ManualClock;

use super::{BURST, CAPACITY, LoginGuard, Peer, REFILL, Refusal};
use crate::test_log::capture;

fn peer(s: &str) -> Peer {
    Peer::of(s.parse::<IpAddr>().unwrap())
}

fn guard() -> (Arc<ManualClock>, LoginGuard) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    (clock.clone(), LoginGuard::new(clock))
}

const WRONG: fn() -> Result<(), &'static str> = || Err("Invalid access token.");
const RIGHT: fn() -> Result<(), &'static str> = || Ok(());

/// `BURST` failures, then one per `REFILL`; a right token counts nothing,
/// and a peer over its budget is refused without its token being checked.
#[test]
fn a_peer_gets_a_burst_then_one_failure_per_refill() {
    // Its lines are not looked at, but see `capture` for why it captures.
    capture(a_peer_gets_a_burst_then_one_failure_per_refill_inner);
}

fn a_peer_gets_a_burst_then_one_failure_per_refill_inner() {
    let (clock, guard) = guard();
    let p = Some(peer("192.0.2.7"));
    for _ in 0..100 {
        assert_eq!(guard.login(p, RIGHT), Ok(()), "successes never count");
    }
    for _ in 0..BURST {
        assert_eq!(
            guard.login(p, WRONG),
            Err(Refusal::Failed("Invalid access token."))
        );
    }
    let mut checked = false;
    let refused = guard.login(p, || {
        checked = true;
        Ok(())
    });
    assert_eq!(refused, Err(Refusal::Throttled(REFILL)));
    assert!(!checked, "a refused peer's token is not looked at");
    // Another peer is not slowed.
    assert_eq!(guard.login(Some(peer("192.0.2.8")), RIGHT), Ok(()));
    clock.advance(REFILL.as_millis() as u64 - 1);
    assert_eq!(
        guard.login(p, RIGHT),
        Err(Refusal::Throttled(Duration::from_millis(1)))
    );
    clock.advance(1);
    assert_eq!(
        guard.login(p, WRONG),
        Err(Refusal::Failed("Invalid access token."))
    );
    assert_eq!(guard.login(p, RIGHT), Err(Refusal::Throttled(REFILL)));
    clock.advance(REFILL.as_millis() as u64 * (BURST + 1));
    assert_eq!(guard.login(p, RIGHT), Ok(()), "the whole budget is back");
}

/// IPv6 peers are their /64; an IPv4-mapped address is the IPv4 one.
#[test]
fn peers_are_addresses_and_ipv6_64s() {
    assert_eq!(peer("2001:db8:1:2:aaaa::1"), peer("2001:db8:1:2:bbbb::9"));
    assert_ne!(peer("2001:db8:1:2::1"), peer("2001:db8:1:3::1"));
    assert_eq!(peer("::ffff:192.0.2.1"), peer("192.0.2.1"));
    assert_eq!(
        peer("2001:db8:1:2:aaaa::1").to_string(),
        "2001:db8:1:2::/64"
    );
}

/// The log names the peer and why, at WARN: one line per peer per 5 s,
/// then how many more.
#[test]
fn failed_logins_are_logged_with_the_peer_rate_limited() {
    let (clock, guard) = guard();
    let ((), lines) = capture(|| {
        for _ in 0..BURST + 40 {
            let _ = guard.login(Some(peer("198.51.100.23")), WRONG);
        }
        let _ = guard.login(Some(peer("203.0.113.5")), WRONG);
        let _ = guard.login(None, || Err("Malformed authorization header."));
        clock.advance(5000);
        let _ = guard.login(Some(peer("198.51.100.23")), WRONG);
    });
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("WARN"), "{lines:?}");
    assert!(lines[0].contains("login failed"), "{lines:?}");
    assert!(lines[0].contains("peer=198.51.100.23"), "{lines:?}");
    assert!(lines[0].contains("Invalid access token."), "{lines:?}");
    assert!(lines[1].contains("peer=203.0.113.5"), "{lines:?}");
    assert!(lines[2].contains("peer=unknown"), "{lines:?}");
    assert!(lines[3].contains("peer=198.51.100.23"), "{lines:?}");
    assert!(
        lines[3].contains("too many failed logins from this peer (… 49 more in the last 5 s)"),
        "{lines:?}"
    );
}

/// Failures from 100,000 peers keep the table within its capacity, and the
/// peer over its budget is not forgotten to make room for them.
#[test]
fn the_table_stays_bounded_under_many_peers() {
    capture(the_table_stays_bounded_under_many_peers_inner);
}

fn the_table_stays_bounded_under_many_peers_inner() {
    let (clock, guard) = guard();
    let guesser = Some(peer("192.0.2.99"));
    for _ in 0..BURST {
        let _ = guard.login(guesser, WRONG);
    }
    for i in 0..100_000u32 {
        let p = Peer::of(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        let _ = guard.login(Some(p), WRONG);
        assert!(guard.len() <= CAPACITY);
        if i % 1000 == 0 {
            clock.advance(10);
        }
    }
    assert!(guard.len() <= CAPACITY, "{}", guard.len());
    assert!(matches!(
        guard.login(guesser, RIGHT),
        Err(Refusal::Throttled(_))
    ));
    // Once their budgets are whole, a new peer's failure forgets them.
    clock.advance(REFILL.as_millis() as u64 * (BURST + 1));
    let _ = guard.login(Some(peer("192.0.2.100")), WRONG);
    assert!(guard.len() <= CAPACITY);
}

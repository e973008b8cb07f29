//! Failed logins: logged with the peer's address, and a budget of failures
//! per peer that slows down guessing tokens.
//!
//! A client guessing tokens on loopback tried 134,887 a second, and
//! nothing was throttled or logged at the default level. Now each peer
//! (an IPv4 address, or an IPv6 /64, which one host usually holds whole)
//! may fail [`BURST`] logins at once, and one more every [`REFILL`] after
//! that: a token bucket of failures. A peer over its budget is refused with
//! 429 and `Retry-After` before its token is looked at, so a guess made
//! while refused tells the guesser nothing: 10 guesses a minute where there
//! were millions. A correct token is never counted, and costs a peer within
//! its budget nothing but a table lookup; a client at another address is
//! never slowed by one that fails. A client sharing an address with a
//! guesser is refused with it until the budget refills (denying it would
//! mean checking the guesser's tokens too).
//!
//! The table is bounded ([`CAPACITY`] peers): a full table first forgets
//! the peers whose budget is whole again, then the half with the fewest
//! failures outstanding, so the peers being refused are the last to go.
//! Failed and refused logins are logged at WARN with the peer, at most one
//! line per peer per 5 s with a count of the others (see `log_limit`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kv_core::Clock;

use crate::log_limit::LogLimiter;

#[cfg(test)]
mod tests;

/// Failed logins a peer may make at once.
pub(crate) const BURST: u64 = 10;
/// After the burst, one more failed login per this interval.
pub(crate) const REFILL: Duration = Duration::from_secs(6);
/// Peers whose failures are remembered at once.
pub(crate) const CAPACITY: usize = 4096;
/// Peers whose log lines are kept apart at once (more share a line).
const LOG_CAPACITY: usize = 64;
/// One log line per peer per interval.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// What a peer is known by: its IPv4 address, or the /64 of its IPv6
/// address (IPv4-mapped addresses are IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Peer(IpAddr);

impl Peer {
    pub(crate) fn of(ip: IpAddr) -> Peer {
        match ip {
            IpAddr::V4(_) => Peer(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Peer(IpAddr::V4(v4)),
                None => Peer(IpAddr::V6(Ipv6Addr::from_bits(
                    v6.to_bits() & !u128::from(u64::MAX),
                ))),
            },
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The failed logins of every peer, and their log.
#[derive(Debug)]
pub(crate) struct LoginGuard {
    clock: Arc<dyn Clock>,
    /// Per peer, when its budget is whole again (ms): each failure moves it
    /// [`REFILL`] later, from now at the earliest. A peer whose time is
    /// more than `BURST` refills ahead is over its budget.
    budgets: Mutex<HashMap<Peer, u64>>,
    capacity: usize,
    log: LogLimiter<Option<Peer>>,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The credentials were wrong; the reason is the check's.
    Failed(&'static str),
    /// The peer is over its budget: not checked; try again after this.
    Throttled(Duration),
}

const REFILL_MS: u64 = REFILL.as_millis() as u64;

impl LoginGuard {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_capacity(clock, CAPACITY)
    }

    pub(crate) fn with_capacity(clock: Arc<dyn Clock>, capacity: usize) -> Self {
        LoginGuard {
            log: LogLimiter::new(clock.clone(), LOG_INTERVAL, LOG_CAPACITY),
            clock,
            budgets: Mutex::new(HashMap::new()),
            capacity: capacity.max(2),
        }
    }

    /// A login of `peer` (`None`: the server does not know it), checked by
    /// `check` unless the peer is over its budget. The budget is read, the
    /// check made and a failure counted at once, so that concurrent
    /// guesses from one peer cannot all pass before the first one counts.
    /// Refusals are logged, rate-limited per peer.
    ///
    /// # Errors
    /// What `check` returns, or `Throttled` without calling it.
    pub(crate) fn login(
        &self,
        peer: Option<Peer>,
        check: impl FnOnce() -> Result<(), &'static str>,
    ) -> Result<(), Refusal> {
        let Some(peer) = peer else {
            let result = check().map_err(Refusal::Failed);
            if let Err(refusal) = result {
                self.log(None, refusal);
            }
            return result;
        };
        let now = self.clock.now_ms();
        let result = {
            let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
            let whole_at = budgets.get(&peer).copied().unwrap_or(now).max(now);
            // One more failure would take it this far ahead.
            let ahead = whole_at + REFILL_MS - now;
            match ahead.checked_sub(BURST * REFILL_MS).filter(|ms| *ms > 0) {
                Some(wait) => Err(Refusal::Throttled(Duration::from_millis(wait))),
                None => check().map_err(|reason| {
                    if budgets.len() >= self.capacity && !budgets.contains_key(&peer) {
                        make_room(&mut budgets, now, self.capacity);
                    }
                    budgets.insert(peer, whole_at + REFILL_MS);
                    Refusal::Failed(reason)
                }),
            }
        };
        if let Err(refusal) = result {
            self.log(Some(peer), refusal);
        }
        result
    }

    fn log(&self, peer: Option<Peer>, refusal: Refusal) {
        let Some(repeats) = self.log.admit(peer) else {
            return;
        };
        let peer = match peer {
            Some(peer) => peer.to_string(),
            None => "unknown".to_owned(),
        };
        match refusal {
            Refusal::Failed(reason) => {
                tracing::warn!(%peer, reason, "login failed{repeats}");
            }
            Refusal::Throttled(wait) => tracing::warn!(
                %peer,
                retry_after_s = wait.as_secs_f64().ceil() as u64,
                "login refused: too many failed logins from this peer{repeats}"
            ),
        }
    }

    /// Peers remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Forgets the peers whose budget is whole again, and if that frees
/// nothing, the half of the table with the fewest failures outstanding
/// (the earliest times), so the peers over their budget stay.
fn make_room(budgets: &mut HashMap<Peer, u64>, now: u64, capacity: usize) {
    budgets.retain(|_, at| *at > now);
    if budgets.len() < capacity {
        return;
    }
    let mut times: Vec<u64> = budgets.values().copied().collect();
    let middle = times.len() / 2;
    let (_, &mut cut, _) = times.select_nth_unstable(middle);
    budgets.retain(|_, at| *at > cut);
}

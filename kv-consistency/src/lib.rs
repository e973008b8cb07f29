//! kv-consistency: proves kv's external consistency by recording
//! concurrent histories against a backend and checking them.
//!
//! - [`record`] runs N concurrent clients doing random gets, sets, deletes,
//!   check-and-sets, sums, bank transfers (multi-key atomic commits) and
//!   snapshot reads of every account, and records each operation's
//!   invocation and completion times (monotonic nanoseconds) and result. A
//!   commit that fails with an error (a fault) gets an *unknown* outcome: it
//!   may have applied, at any time after its invocation, or never.
//! - [`check`] runs two independent checkers over a [`History`]:
//!   - linearizability per key (Wing–Gong search with memoisation of the
//!     linearized set and state, as porcupine does, over a nondeterministic
//!     register/counter model so that unknown outcomes may apply or not);
//!   - versionstamp serializability: versionstamps are unique per commit and
//!     grow in real-time order; replaying the commits in versionstamp order
//!     reproduces every read (value and versionstamp); each multi-key read
//!     comes from one snapshot no older than every commit completed before
//!     it; every passed check saw the latest version; and the bank's
//!     balances always sum to the same total;
//!   - the dependency graph (Elle-style): `ww`, `wr` and `rw` edges from
//!     each key's versions in versionstamp order, plus client order; any
//!     cycle is reported and classified (G0, G1c, G-single, G2). The cycle
//!     workload (transactions over a few keys that read some and write
//!     some) feeds it.
//! - [`faults`] runs the workload against a `kv serve` process that is
//!   killed with SIGKILL and restarted, and through a proxy that drops
//!   connections.
//!
//! - [`staleness`] measures how far behind each read was (versions, and
//!   time since the newer version was acknowledged); a stale strong read is
//!   a violation.
//!
//! Eventual reads: the embedded backends (memory, SQLite, redb) and
//! `kv serve` answer `Consistency::Eventual` reads from the primary, so
//! they are checked exactly as strong reads; etcd serves them from any
//! member, so there they are only measured
//! ([`History::lagging_eventual_reads`]).

mod cycles;
pub mod etcd;
pub mod faults;
pub mod history;
mod linearizability;
pub mod recorder;
pub mod run;
mod serializability;
pub mod staleness;
pub mod wire;

use std::fmt;

pub use history::{Effect, History, KeyId, Observed, OpKind, Operation, Outcome};
pub use recorder::{Workload, record};

use linearizability::Verdict;

/// Steps the Wing–Gong search may take per key before giving up.
const SEARCH_BUDGET: u64 = 20_000_000;

/// What kind of consistency a history broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    /// A key's operations have no linearization.
    NotLinearizable,
    /// The linearizability search ran out of budget (not a proof either way).
    Inconclusive,
    /// Two commits got the same versionstamp.
    DuplicateVersionstamp,
    /// A commit that began after another completed got a smaller versionstamp.
    NonMonotonicVersionstamp,
    /// A read returned a versionstamp that no commit produced.
    UnknownVersionstamp,
    /// A read returned a value other than replaying the commits gives.
    WrongValue,
    /// A read's entries come from no single snapshot consistent with real
    /// time (a torn or stale read).
    NoSnapshot,
    /// A commit passed a check against a version that was not the latest.
    StaleCheck,
    /// A snapshot of the accounts did not sum to the bank's total.
    BankInvariant,
    /// A strong read (or an eventual one on a backend that serves them
    /// from the primary) missed a version acknowledged before it began.
    StaleRead,
    /// A dependency cycle of writes alone (`ww`, with client order): G0.
    CycleG0,
    /// A dependency cycle of writes and reads (`ww`, `wr`): G1c, circular
    /// information flow.
    CycleG1c,
    /// A dependency cycle with exactly one anti-dependency (`rw`):
    /// G-single, as a lost update or a read skew makes.
    CycleGSingle,
    /// A dependency cycle with two or more anti-dependencies: G2, as write
    /// skew makes.
    CycleG2,
}

/// One violation found in a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What was broken.
    pub kind: ViolationKind,
    /// Which operations, keys and values show it.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

/// Checks a history; an empty result means it is linearizable per key,
/// passes every versionstamp check and its dependency graph is acyclic.
pub fn check(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut keys: Vec<_> = linearizability::partition(history).into_iter().collect();
    keys.sort_unstable_by_key(|(k, _)| *k);
    for (key, ops) in keys {
        match linearizability::check_key(&ops, SEARCH_BUDGET) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable => out.push(Violation {
                kind: ViolationKind::NotLinearizable,
                detail: format!(
                    "key {key}: no linearization of its {} operations",
                    ops.len()
                ),
            }),
            Verdict::Inconclusive => out.push(Violation {
                kind: ViolationKind::Inconclusive,
                detail: format!("key {key}: search budget spent on {} operations", ops.len()),
            }),
        }
    }
    out.extend(serializability::check(history));
    out.extend(cycles::check(history));
    out.extend(staleness::measure(history).1);
    out
}

/// Errors of recording a history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsistencyError {
    /// The backend failed where no fault was injected.
    #[error("backend error: {0}")]
    Kv(#[from] kv::Error),
    /// Starting, killing or reaching a `kv serve` process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `kv serve` did not start listening in time.
    #[error("kv serve did not start: {0}")]
    ServerStart(String),
    /// Managing the etcd cluster failed.
    #[error("etcd cluster: {0}")]
    Etcd(String),
    /// A client process failed or reported something other than operations.
    #[error("client process: {0}")]
    Client(String),
}

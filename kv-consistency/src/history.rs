//! The recorded history: what each client asked, when, and what it saw.

use kv::Versionstamp;

/// A key of the workload, by index into the key set of the history.
pub type KeyId = u16;

/// One entry a read returned: the value (every workload value is a
/// `KvU64`) and the versionstamp of the commit that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Observed {
    /// The value read.
    pub value: u64,
    /// The versionstamp the entry carried.
    pub versionstamp: Versionstamp,
}

/// One mutation of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `set(key, KvU64(value))`.
    Set(u64),
    /// `delete(key)`.
    Delete,
    /// `sum(key, KvU64(delta))`.
    Sum(u64),
}

/// How a commit ended, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Applied with this versionstamp.
    Committed(Versionstamp),
    /// A check did not hold; nothing was written.
    CheckFailed,
    /// The call failed or timed out (a fault): the commit may or may not
    /// have applied, at any time after its invocation.
    Unknown,
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A `get_many` (one key for a plain `get`): one result per key, all
    /// from one snapshot. Failed reads are not recorded.
    Read {
        /// The keys read.
        keys: Vec<KeyId>,
        /// One entry per key (`None`: absent).
        results: Vec<Option<Observed>>,
        /// Read with `Consistency::Eventual` (else `Strong`).
        eventual: bool,
    },
    /// One atomic commit.
    Commit {
        /// `check(key, versionstamp)` conditions (`None`: must be absent).
        checks: Vec<(KeyId, Option<Versionstamp>)>,
        /// The mutations, at most one per key.
        mutations: Vec<(KeyId, Effect)>,
        /// The outcome.
        outcome: Outcome,
    },
}

/// One operation of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that ran it.
    pub client: u32,
    /// Invocation time (monotonic nanoseconds since the history began).
    pub call: u64,
    /// Completion time; `None` for an unknown outcome (it may take effect
    /// at any time after `call`, or never).
    pub ret: Option<u64>,
    /// The operation and its result.
    pub kind: OpKind,
}

impl Operation {
    /// The completion time, with unknown outcomes at infinity.
    pub fn ret_or_max(&self) -> u64 {
        self.ret.unwrap_or(u64::MAX)
    }

    /// Whether this is a read the checkers hold to a real-time bound: every
    /// strong read, and eventual reads unless `history` says they may lag.
    pub fn is_strict_read(&self, history: &History) -> bool {
        match self.kind {
            OpKind::Read { eventual, .. } => !eventual || !history.lagging_eventual_reads,
            OpKind::Commit { .. } => false,
        }
    }

    /// The versionstamp of a known, applied commit.
    pub fn committed(&self) -> Option<Versionstamp> {
        match self.kind {
            OpKind::Commit {
                outcome: Outcome::Committed(vs),
                ..
            } => Some(vs),
            _ => None,
        }
    }
}

/// A whole history, plus what the checker needs to know about the workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Every operation, in any order.
    pub ops: Vec<Operation>,
    /// The bank accounts (their balances always sum to `bank_total`).
    pub accounts: Vec<KeyId>,
    /// The sum of all balances once the bank is opened (by the first commit
    /// to the accounts).
    pub bank_total: u64,
    /// Whether the backend may answer eventual reads from a lagging replica
    /// (etcd's serializable reads). Then eventual reads are held to no
    /// real-time bound, only measured for staleness; otherwise they are
    /// checked exactly as strong reads.
    pub lagging_eventual_reads: bool,
}

impl History {
    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The commits whose outcome the client never learned.
    pub fn unknown_commits(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| {
                matches!(
                    op.kind,
                    OpKind::Commit {
                        outcome: Outcome::Unknown,
                        ..
                    }
                )
            })
            .count()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

//! The implementer's API: what a storage engine provides, in raw bytes.
//!
//! Users talk to [`crate::Kv`]; backends implement [`Backend`]. Keys here are
//! already encoded, limits already enforced by the caller, and versionstamps
//! are assigned by the backend.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{Error, KvValue, Result, ValueRef, Versionstamp};

pub mod apply;
pub mod embedded;
pub mod watch;
pub mod workers;

/// First byte of the reserved system key space. Typed keys encode with a
/// tag byte between `0x01` and `0x27`, and raw keys from clients that start
/// with this byte are refused, so no user key, selector or list can reach
/// keys that start with it. Queue and cron state live there, each
/// layer under its own sub-prefix.
pub const SYSTEM_PREFIX: u8 = 0xff;

/// Whether `key` is in the reserved system key space.
pub fn is_system_key(key: &[u8]) -> bool {
    key.first() == Some(&SYSTEM_PREFIX)
}

/// One half-open byte range `[start, end)` of a snapshot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRange {
    /// Inclusive lower bound.
    pub start: Vec<u8>,
    /// Exclusive upper bound.
    pub end: Vec<u8>,
    /// At most this many entries (at least 1).
    pub limit: u32,
    /// Scan from `end` downwards. The bounds keep their meaning.
    pub reverse: bool,
}

/// The range that holds exactly `key`.
pub fn point_range(key: &[u8]) -> ReadRange {
    let mut end = key.to_vec();
    end.push(0);
    ReadRange {
        start: key.to_vec(),
        end,
        limit: 1,
        reverse: false,
    }
}

/// The most entries a read may ask for (summed over its ranges) and still
/// run on the caller's thread in the embedded backends: Deno's default list
/// batch, so a listing's batches skip the hand-off to a backend thread and
/// back (for a Deno client listing 1000 keys through `kv serve`, 38% less
/// server CPU).
pub const INLINE_READ_ENTRIES: u32 = 100;

/// The most bytes of keys and values such a read copies on the caller's
/// thread: one that finds more (large values) stops and is done again on a
/// backend thread, so the caller's executor is never held for long.
pub const INLINE_READ_BYTES: usize = 256 * 1024;

/// The bytes of keys and values a read may still copy. Backends that run
/// small reads on the caller's thread give those a budget
/// ([`ReadBudget::inline`]): a read that turns out large stops and is done
/// again on a thread of the backend's own, so the caller's executor never
/// copies more than the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBudget {
    left: usize,
    exceeded: bool,
}

impl ReadBudget {
    /// At most `bytes`.
    pub fn new(bytes: usize) -> Self {
        ReadBudget {
            left: bytes,
            exceeded: false,
        }
    }

    /// The budget of a read of `ranges` on the caller's thread
    /// ([`INLINE_READ_BYTES`]), or `None` when it asks for more than
    /// [`INLINE_READ_ENTRIES`] and belongs on a backend thread outright.
    pub fn inline(ranges: &[ReadRange]) -> Option<Self> {
        let wanted: u64 = ranges.iter().map(|r| u64::from(r.limit)).sum();
        (wanted <= u64::from(INLINE_READ_ENTRIES)).then(|| Self::new(INLINE_READ_BYTES))
    }

    /// No limit: [`spend`](Self::spend) always answers `true`.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Counts an entry of `bytes` just copied; `false` once the budget is
    /// exceeded, when the read should stop.
    pub fn spend(&mut self, bytes: usize) -> bool {
        match self.left.checked_sub(bytes) {
            Some(left) => self.left = left,
            None => self.exceeded = true,
        }
        !self.exceeded
    }

    /// Whether the read stopped early: its result is incomplete.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }
}

/// Where the entries of a read go as a backend reads them
/// ([`Backend::snapshot_read_into`]): borrowed from the backend's storage,
/// valid only during the call. `Vec<Vec<RawEntry>>` is the sink that keeps
/// owned copies.
///
/// The contract:
/// - Entries count only once `snapshot_read_into` returns `Ok`: until then
///   a backend may [`clear`](Self::clear) the sink and start the read over
///   (a read on the caller's thread that exceeds its [`ReadBudget`], a
///   retried attempt, a response decoded again another way). A sink that
///   passes entries on keeps them until the read has ended. On `Err` the
///   sink is dropped.
/// - Hand the backend an empty sink: `clear` forgets everything in it.
/// - The methods run on whichever thread the backend reads on, one of its
///   own threads included: they must be quick, must not block and must not
///   panic (a backend answers a panicking read with an error, but the
///   work is lost).
pub trait ReadSink: Any + Send {
    /// The entries of the next range follow. Called once per range, in the
    /// order of the request, also for ranges that turn out empty.
    fn begin_range(&mut self);

    /// One entry of the current range, in the range's order.
    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp);

    /// Forgets everything received: the read starts over.
    fn clear(&mut self);

    /// Whether the sink needs the entries' values (by default it does). A
    /// sink that keeps only keys and versionstamps (a keys-only listing, a
    /// count) returns `false`, and a backend may then leave the values out:
    /// such a backend hands every value as `ValueRef::Bytes(&[])`, and a
    /// remote one does not ship them over the network. A backend may also
    /// ignore it and hand the values; wrappers that pass entries on to
    /// another sink answer for that sink.
    fn wants_values(&self) -> bool {
        true
    }
}

impl ReadSink for Vec<Vec<RawEntry>> {
    fn begin_range(&mut self) {
        self.push(Vec::new());
    }

    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp) {
        debug_assert!(!self.is_empty(), "an entry before its range");
        if let Some(range) = self.last_mut() {
            range.push(RawEntry {
                key: key.to_vec(),
                value: value.to_value(),
                versionstamp,
            });
        }
    }

    fn clear(&mut self) {
        Vec::clear(self);
    }
}

/// Reads `ranges` from one snapshot of `backend` into `sink`
/// ([`Backend::snapshot_read_into`]) and gives the sink back.
///
/// # Errors
/// As [`Backend::snapshot_read`], and as [`downcast_sink`].
pub async fn read_into<S: ReadSink, B: Backend + ?Sized>(
    backend: &B,
    ranges: Vec<ReadRange>,
    consistency: Consistency,
    sink: S,
) -> Result<S> {
    let sink = backend
        .snapshot_read_into(ranges, consistency, Box::new(sink))
        .await?;
    downcast_sink(sink, backend.name())
}

/// The sink of type `S` that `backend` gave back from
/// [`Backend::snapshot_read_into`]: for backends that take a sink of their
/// own through the boxed path (callers use [`read_into`]).
///
/// # Errors
/// [`Error::Backend`] if it is another sink than it was handed (a bug in
/// the backend).
pub fn downcast_sink<S: ReadSink>(sink: Box<dyn ReadSink>, backend: &str) -> Result<S> {
    let sink: Box<dyn Any> = sink;
    sink.downcast::<S>()
        .map(|s| *s)
        .map_err(|_| Error::Backend {
            backend: backend.to_owned(),
            source: "snapshot_read_into returned another sink".into(),
        })
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Sees every commit acknowledged before the read began (linearizable).
    #[default]
    Strong,
    /// May be served by a replica and miss recent commits.
    Eventual,
}

/// A stored entry with its encoded key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The value.
    pub value: KvValue,
    /// The versionstamp of the commit that last wrote the key.
    pub versionstamp: Versionstamp,
}

/// An optimistic-concurrency condition of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The encoded key.
    pub key: Vec<u8>,
    /// `None`: the key must not exist. `Some(v)`: it must exist with exactly
    /// versionstamp `v`.
    pub versionstamp: Option<Versionstamp>,
}

/// A change to one key, applied in order within a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// The encoded key. For [`MutationKind::SetSuffixVersionstampedKey`] the
    /// prefix to which the versionstamp part is appended.
    pub key: Vec<u8>,
    /// What to do.
    pub kind: MutationKind,
}

/// The kinds of [`Mutation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MutationKind {
    /// Write `value`, replacing value, versionstamp and expiry.
    Set {
        /// The value.
        value: KvValue,
        /// Absolute expiry in Unix milliseconds; `None` never expires.
        expire_at_ms: Option<u64>,
    },
    /// Remove the key (a no-op when absent).
    Delete,
    /// Add `value`: `U64` wraps modulo 2^64; a V8 number or bigint operand
    /// sums V8 numbers or bigints, optionally bounded by V8-encoded `min` /
    /// `max` (`clamp` clamps instead of failing). Clears any expiry.
    Sum {
        /// The operand.
        value: KvValue,
        /// V8-encoded lower bound, if any.
        min: Option<Vec<u8>>,
        /// V8-encoded upper bound, if any.
        max: Option<Vec<u8>>,
        /// Clamp to the bounds instead of failing.
        clamp: bool,
    },
    /// Keep the smaller `U64`. Clears any expiry.
    Min(KvValue),
    /// Keep the larger `U64`. Clears any expiry.
    Max(KvValue),
    /// Write `value` at `key ++ 02 ++ <20 hex chars of the commit's
    /// versionstamp> ++ 00`.
    SetSuffixVersionstampedKey {
        /// The value.
        value: KvValue,
        /// Absolute expiry in Unix milliseconds; `None` never expires.
        expire_at_ms: Option<u64>,
    },
}

impl MutationKind {
    /// The value and expiry a set (plain or versionstamped) stores as it
    /// is; `None` for the kinds that delete or combine with the current
    /// value.
    pub fn stored(&self) -> Option<(&KvValue, Option<u64>)> {
        match self {
            MutationKind::Set {
                value,
                expire_at_ms,
            }
            | MutationKind::SetSuffixVersionstampedKey {
                value,
                expire_at_ms,
            } => Some((value, *expire_at_ms)),
            _ => None,
        }
    }
}

/// A queue message carried by a commit (see the kv-queue crate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueue {
    /// V8-encoded payload.
    pub payload: Vec<u8>,
    /// When the message becomes ready, Unix milliseconds.
    pub deadline_ms: u64,
    /// Encoded keys that receive the payload if delivery finally fails.
    pub keys_if_undelivered: Vec<Vec<u8>>,
    /// Retry delays in ms; `None` means [`DEFAULT_BACKOFF_SCHEDULE`],
    /// `Some(vec![])` no retry.
    pub backoff_schedule: Option<Vec<u32>>,
}

/// The retry delays, in ms, of a message that names none (Deno's default).
pub const DEFAULT_BACKOFF_SCHEDULE: [u32; 5] = [100, 1000, 5000, 30000, 60000];

/// One atomic commit: all checks hold and every mutation applies, or nothing
/// changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AtomicWrite {
    /// Conditions evaluated against the state before the commit.
    pub checks: Vec<Check>,
    /// Changes, applied in order; each sees the effect of the previous ones.
    pub mutations: Vec<Mutation>,
    /// Queue messages. Storage backends do not store these themselves: the
    /// queue layer turns them into mutations under [`SYSTEM_PREFIX`] before
    /// the write reaches storage, and a storage backend that still receives
    /// one returns [`crate::Error::Unsupported`]. A remote backend forwards
    /// them to its server.
    pub enqueues: Vec<Enqueue>,
}

/// The operation [`StorageWrite::new`] names in its [`Error::Unsupported`].
pub const ENQUEUE_WITHOUT_QUEUE_LAYER: &str =
    "enqueue without the queue layer (wrap it in kv_queue::QueueBackend, as kv::open does)";

/// A commit as a storage engine stores it: the checks and mutations of an
/// [`AtomicWrite`] whose enqueues are already mutations (the queue layer,
/// kv-queue's `QueueBackend`, turns them into records under
/// [`SYSTEM_PREFIX`]). Storage engines take this type, not
/// [`AtomicWrite`], so none of them can drop a queue message unnoticed:
/// [`StorageWrite::new`] is the one place that refuses a write that still
/// carries enqueues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageWrite {
    /// Conditions evaluated against the state before the commit.
    pub checks: Vec<Check>,
    /// Changes, applied in order; each sees the effect of the previous ones.
    pub mutations: Vec<Mutation>,
}

impl StorageWrite {
    /// The storage form of `write`, for the storage backend named
    /// `backend`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when `write` still carries enqueues: the
    /// backend was used without the queue layer.
    pub fn new(write: AtomicWrite, backend: &str) -> Result<Self> {
        if !write.enqueues.is_empty() {
            return Err(Error::Unsupported {
                backend: backend.to_owned(),
                op: ENQUEUE_WITHOUT_QUEUE_LAYER,
            });
        }
        Ok(StorageWrite {
            checks: write.checks,
            mutations: write.mutations,
        })
    }
}

/// The result of a commit that was well-formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Applied; every written key now carries `versionstamp`.
    Committed {
        /// The commit's versionstamp.
        versionstamp: Versionstamp,
    },
    /// A check did not hold; nothing was written and no versionstamp used.
    CheckFailed,
}

impl CommitOutcome {
    /// The versionstamp if the commit applied.
    pub fn versionstamp(&self) -> Option<Versionstamp> {
        match self {
            CommitOutcome::Committed { versionstamp } => Some(*versionstamp),
            CommitOutcome::CheckFailed => None,
        }
    }

    /// Whether the commit applied.
    pub fn is_ok(&self) -> bool {
        matches!(self, CommitOutcome::Committed { .. })
    }
}

/// A stream of watch snapshots: one `Option<RawEntry>` per watched key, in
/// the order the keys were given (`None` = absent).
pub type WatchStream = BoxStream<'static, Result<Vec<Option<RawEntry>>>>;

/// A storage engine for Deno KV data.
///
/// # Contract
///
/// - **Keys** are compared as unsigned bytes, a proper prefix first.
/// - **`snapshot_read`** returns, for each range in order, up to `limit`
///   entries inside `[start, end)`, ascending or (with `reverse`) descending.
///   All ranges of one call see one consistent snapshot. A `Strong` read sees
///   every commit acknowledged before it started. Entries whose expiry time
///   has passed are never returned.
/// - **`atomic_write`** evaluates every check against the state before the
///   commit (an expired key counts as absent), then applies the mutations in
///   order. If any check fails it returns `Ok(CheckFailed)` and changes
///   nothing. If any mutation fails (for example a `sum` on a non-U64 value)
///   it returns the error and changes nothing. Otherwise every written key
///   gets one new versionstamp, strictly greater than every versionstamp the
///   backend returned before, and the commit is durable when the call
///   returns. A commit with no mutations still gets a versionstamp.
/// - **`watch`** yields first the current state of all keys, promptly, then
///   a new snapshot (all keys, read together) after a commit changes any of
///   them. Snapshots may coalesce intermediate states and may repeat an
///   unchanged state; callers filter. Writes from other processes sharing
///   the storage must be seen too (embedded backends: within 100 ms). The
///   stream ends when the backend is closed.
/// - **`close`** stops background work and ends watch streams; it is
///   idempotent. Calls after it return [`crate::Error::Closed`].
///
/// Callers enforce the limits of [`crate::limits`] before calling; backends
/// may trust them. The reserved space under [`SYSTEM_PREFIX`] is ordinary
/// data to a backend.
///
/// # Errors
///
/// `Unavailable` for transient faults the caller may retry, `Closed` after
/// `close`, `TypeMismatch` for failed `sum`/`min`/`max`, `Unsupported` for
/// what the backend cannot do, `Backend` for engine failures.
#[async_trait]
pub trait Backend: Send + Sync + Debug + 'static {
    /// A short name for errors and logs, like `"sqlite"`.
    fn name(&self) -> &str;

    /// Reads `ranges` from one snapshot.
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>>;

    /// Reads `ranges` from one snapshot like
    /// [`snapshot_read`](Self::snapshot_read), handing each entry to `sink`
    /// as it is read, and returns the sink. Callers use [`read_into`].
    ///
    /// The default hands over what `snapshot_read` returns; a storage
    /// backend overrides it to give its stored bytes without building
    /// [`RawEntry`]s, so a caller that only passes entries on (the KV
    /// Connect server) copies each once.
    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
        mut sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        for range in self.snapshot_read(ranges, consistency).await? {
            sink.begin_range();
            for e in &range {
                sink.entry(&e.key, e.value.as_value_ref(), e.versionstamp);
            }
        }
        Ok(sink)
    }

    /// Commits `write` atomically.
    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome>;

    /// Watches `keys` (encoded), see the contract.
    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream;

    /// Releases resources; idempotent.
    async fn close(&self);
}

macro_rules! forward_backend {
    ($ty:ty) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: Backend + ?Sized> Backend for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }

            async fn snapshot_read(
                &self,
                ranges: Vec<ReadRange>,
                consistency: Consistency,
            ) -> Result<Vec<Vec<RawEntry>>> {
                (**self).snapshot_read(ranges, consistency).await
            }

            async fn snapshot_read_into(
                &self,
                ranges: Vec<ReadRange>,
                consistency: Consistency,
                sink: Box<dyn ReadSink>,
            ) -> Result<Box<dyn ReadSink>> {
                (**self).snapshot_read_into(ranges, consistency, sink).await
            }

            async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
                (**self).atomic_write(write).await
            }

            fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
                (**self).watch(keys)
            }

            async fn close(&self) {
                (**self).close().await
            }
        }
    };
}

forward_backend!(Arc<T>);
forward_backend!(Box<T>);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::{Kv, MemoryBackend, PrefixBackend, key};

    fn ranges() -> Vec<ReadRange> {
        let range = |start: &[u8], end: &[u8], limit, reverse| ReadRange {
            start: start.to_vec(),
            end: end.to_vec(),
            limit,
            reverse,
        };
        let b = key!["b"].encode().unwrap();
        let mut after_b = b.clone();
        after_b.push(0);
        vec![
            range(&[0x00], &[0xfe], 10, false),
            range(&[0x00], &[0xfe], 2, true),
            range(&b, &after_b, 1, false),
            range(&[0x30], &[0x31], 10, false),
        ]
    }

    /// Through the default method and through a namespace (whose sink
    /// strips the prefix), a sink sees exactly what `snapshot_read` returns.
    #[tokio::test]
    async fn read_into_hands_over_what_snapshot_read_returns() {
        let memory = Arc::new(MemoryBackend::new());
        let namespace = PrefixBackend::new(memory.clone(), b"ns".to_vec());
        let kv = Kv::new(namespace.clone());
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            kv.set(key![name], KvValue::U64(i as u64)).await.unwrap();
        }
        kv.set(key!["d"], KvValue::V8(vec![0xff, 0x0f, 0x22, 0x01, 0x78]))
            .await
            .unwrap();
        for backend in [&namespace as &dyn Backend, &memory] {
            let expected = backend
                .snapshot_read(ranges(), Consistency::Strong)
                .await
                .unwrap();
            let got = read_into(backend, ranges(), Consistency::Strong, Vec::new())
                .await
                .unwrap();
            assert_eq!(got, expected);
        }
        let got = namespace.snapshot_read(ranges(), Consistency::Strong).await;
        let got = got.unwrap();
        assert_eq!(got[0].len(), 4);
        assert_eq!(got[0][0].key, key!["a"].encode().unwrap());
        assert_eq!(got[2].len(), 1, "the point read finds b");
        assert!(got[3].is_empty());
    }

    /// Gives back a sink of its own instead of the caller's.
    #[derive(Debug)]
    struct SwapsTheSink(MemoryBackend);

    #[async_trait]
    impl Backend for SwapsTheSink {
        fn name(&self) -> &str {
            "swaps-the-sink"
        }

        async fn snapshot_read(
            &self,
            ranges: Vec<ReadRange>,
            consistency: Consistency,
        ) -> Result<Vec<Vec<RawEntry>>> {
            self.0.snapshot_read(ranges, consistency).await
        }

        async fn snapshot_read_into(
            &self,
            _ranges: Vec<ReadRange>,
            _consistency: Consistency,
            _sink: Box<dyn ReadSink>,
        ) -> Result<Box<dyn ReadSink>> {
            Ok(Box::new(Vec::<Vec<RawEntry>>::new()))
        }

        async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
            self.0.atomic_write(write).await
        }

        fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
            self.0.watch(keys)
        }

        async fn close(&self) {
            self.0.close().await;
        }
    }

    #[tokio::test]
    async fn a_backend_that_swaps_the_sink_gets_an_error_not_a_panic() {
        struct Count(usize);
        impl ReadSink for Count {
            fn begin_range(&mut self) {}
            fn entry(&mut self, _: &[u8], _: ValueRef<'_>, _: Versionstamp) {
                self.0 += 1;
            }
            fn clear(&mut self) {
                self.0 = 0;
            }
        }
        let backend = SwapsTheSink(MemoryBackend::new());
        let result = read_into(&backend, ranges(), Consistency::Strong, Count(0)).await;
        assert!(
            matches!(&result, Err(Error::Backend { backend, .. }) if backend == "swaps-the-sink"),
            "{:?}",
            result.map(|c| c.0)
        );
    }

    #[test]
    fn a_read_budget_is_exceeded_by_the_entry_that_overdraws_it() {
        let mut budget = ReadBudget::new(100);
        assert!(budget.spend(60));
        assert!(budget.spend(40), "exactly the budget is within it");
        assert!(!budget.exceeded());
        assert!(!budget.spend(1));
        assert!(budget.exceeded());
        assert!(!budget.spend(0), "stays exceeded");
        let range = |limit| super::ReadRange {
            start: vec![1],
            end: vec![2],
            limit,
            reverse: false,
        };
        assert_eq!(
            ReadBudget::inline(&[range(60), range(40)]),
            Some(ReadBudget::new(super::INLINE_READ_BYTES))
        );
        assert_eq!(ReadBudget::inline(&[range(60), range(41)]), None);
        let mut unlimited = ReadBudget::unlimited();
        assert!(unlimited.spend(usize::MAX / 2) && unlimited.spend(usize::MAX / 2));
    }
}

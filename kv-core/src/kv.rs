//! The user's API, mirroring `Deno.Kv`.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};

use crate::backend::{
    AtomicWrite, Backend, Check, CommitOutcome, Consistency, Enqueue, Mutation, MutationKind,
    RawEntry, ReadRange, point_range,
};
use crate::clock::{Clock, SystemClock};
use crate::error::Limit;
use crate::limits::{self, DEFAULT_BATCH_SIZE, MAX_DERIVED_BATCH_SIZE, MAX_GET_MANY};
use crate::selector::{Selector, SelectorBounds};
use crate::{Error, Key, KvEntry, KvValue, Result, Versionstamp};

/// A handle on a database: typed keys, limits checked before any I/O, Deno's
/// semantics. Cheap to clone; clones share the backend.
///
/// ```
/// # futures::executor::block_on(async {
/// use kv_core::{Kv, KvValue, MemoryBackend, key};
///
/// let kv = Kv::new(MemoryBackend::new());
/// kv.set(key!["users", "alice"], KvValue::Bytes(b"hi".to_vec())).await?;
/// let entry = kv.get(key!["users", "alice"]).await?.expect("just written");
/// assert_eq!(entry.value, KvValue::Bytes(b"hi".to_vec()));
/// # Ok::<(), kv_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Kv {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
}

/// Options of [`Kv::set_with`] and [`AtomicOperation::set_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Delete the key this long after the commit (never earlier).
    pub expire_in: Option<Duration>,
}

impl SetOptions {
    /// Expires the key `expire_in` after now.
    pub fn with_expire_in(mut self, expire_in: Duration) -> Self {
        self.expire_in = Some(expire_in);
        self
    }
}

impl Kv {
    /// Wraps a backend.
    pub fn new(backend: impl Backend) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// Wraps a shared backend.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        Kv {
            backend,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` to turn `expire_in` into absolute times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The backend this handle uses.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Reads one key (strongly consistent).
    ///
    /// # Errors
    /// `InvalidKey` / `LimitExceeded` for a bad key, and backend errors.
    pub async fn get(&self, key: impl Into<Key>) -> Result<Option<KvEntry>> {
        self.get_with(key, Consistency::Strong).await
    }

    /// Reads one key with the given consistency.
    ///
    /// # Errors
    /// As [`Kv::get`].
    pub async fn get_with(
        &self,
        key: impl Into<Key>,
        consistency: Consistency,
    ) -> Result<Option<KvEntry>> {
        let mut out = self.get_many_with(&[key.into()], consistency).await?;
        Ok(out.pop().flatten())
    }

    /// Reads up to 10 keys from one snapshot, in order.
    ///
    /// # Errors
    /// `LimitExceeded` for more than 10 keys; as [`Kv::get`].
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<KvEntry>>> {
        self.get_many_with(keys, Consistency::Strong).await
    }

    /// [`Kv::get_many`] with the given consistency.
    ///
    /// # Errors
    /// As [`Kv::get_many`].
    pub async fn get_many_with(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Option<KvEntry>>> {
        if keys.len() > MAX_GET_MANY {
            return Err(Error::LimitExceeded {
                limit: Limit::Ranges,
                max: MAX_GET_MANY as u64,
                actual: keys.len() as u64,
            });
        }
        let mut ranges = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes = key.encode()?;
            limits::check_read_key(&bytes)?;
            ranges.push(point_range(&bytes));
        }
        limits::check_read(&ranges)?;
        let results = self.backend.snapshot_read(ranges, consistency).await?;
        Ok(keys
            .iter()
            .zip(results)
            .map(|(key, mut entries)| {
                entries.pop().map(|e| KvEntry {
                    key: key.clone(),
                    value: e.value,
                    versionstamp: e.versionstamp,
                })
            })
            .collect())
    }

    /// Lists the keys a selector chooses, in batches.
    ///
    /// # Errors
    /// The stream yields backend errors, and an [`Error::InvalidKey`] item
    /// for a stored key that is not an encoded key tuple (raw bytes another
    /// KV Connect client wrote); the listing goes on after it.
    pub fn list(&self, selector: Selector, options: ListOptions) -> ListIterator {
        ListIterator::new(self.backend.clone(), selector, options)
    }

    /// Writes one key.
    ///
    /// # Errors
    /// Key and value limits, and backend errors.
    pub async fn set(
        &self,
        key: impl Into<Key>,
        value: impl Into<KvValue>,
    ) -> Result<Versionstamp> {
        self.set_with(key, value, SetOptions::default()).await
    }

    /// Writes one key with options.
    ///
    /// # Errors
    /// As [`Kv::set`].
    pub async fn set_with(
        &self,
        key: impl Into<Key>,
        value: impl Into<KvValue>,
        options: SetOptions,
    ) -> Result<Versionstamp> {
        let mut op = self.atomic();
        op.set_with(key, value, options);
        committed(op.commit_once().await?)
    }

    /// Deletes one key (a no-op commit if it is absent).
    ///
    /// # Errors
    /// Key limits and backend errors.
    pub async fn delete(&self, key: impl Into<Key>) -> Result<()> {
        let mut op = self.atomic();
        op.delete(key);
        committed(op.commit_once().await?).map(|_| ())
    }

    /// Enqueues one message (V8-encoded `payload`) on the database's queue.
    ///
    /// # Errors
    /// Invalid options, limits, `Unsupported` without a queue layer, and
    /// backend errors.
    pub async fn enqueue(&self, payload: Vec<u8>, options: EnqueueOptions) -> Result<Versionstamp> {
        let mut op = self.atomic();
        op.enqueue(payload, options);
        committed(op.commit_once().await?)
    }

    /// The clock this handle uses.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Starts an atomic operation.
    pub fn atomic(&self) -> AtomicOperation {
        AtomicOperation {
            kv: self.clone(),
            write: AtomicWrite::default(),
            error: None,
        }
    }

    /// Watches up to 10 keys. The stream yields the current state of every
    /// key at once, then again whenever any of their versionstamps changes
    /// (intermediate states may be skipped). It ends when the database closes.
    /// The stream is `Unpin`: call `.next()` on it directly.
    ///
    /// # Errors
    /// `LimitExceeded` for more than 10 keys or an oversized key.
    pub fn watch(
        &self,
        keys: &[Key],
    ) -> Result<impl Stream<Item = Result<Vec<Option<KvEntry>>>> + Send + Unpin + 'static + use<>>
    {
        let encoded: Vec<Vec<u8>> = keys.iter().map(Key::encode).collect::<Result<_>>()?;
        limits::check_watch(&encoded)?;
        let keys = keys.to_vec();
        let mut last: Option<Vec<Option<Versionstamp>>> = None;
        Ok(self.backend.watch(encoded).filter_map(move |snapshot| {
            let out = match snapshot {
                Err(e) => Some(Err(e)),
                Ok(entries) => {
                    let stamps: Vec<_> = entries
                        .iter()
                        .map(|e| e.as_ref().map(|e| e.versionstamp))
                        .collect();
                    if last.as_ref() == Some(&stamps) {
                        None
                    } else {
                        last = Some(stamps);
                        Some(Ok(keys
                            .iter()
                            .zip(entries)
                            .map(|(k, e)| {
                                e.map(|e| KvEntry {
                                    key: k.clone(),
                                    value: e.value,
                                    versionstamp: e.versionstamp,
                                })
                            })
                            .collect()))
                    }
                }
            };
            futures::future::ready(out)
        }))
    }

    /// Closes the backend; later calls fail with `Closed`. Idempotent.
    pub async fn close(&self) {
        self.backend.close().await;
    }
}

fn committed(outcome: CommitOutcome) -> Result<Versionstamp> {
    outcome.versionstamp().ok_or_else(|| {
        Error::InvalidArgument("a commit without checks reported a failed check".into())
    })
}

/// A commit under construction, mirroring `Deno.AtomicOperation`. Errors in
/// arguments (bad keys) are reported by [`AtomicOperation::commit`].
#[derive(Debug)]
#[must_use = "an atomic operation does nothing until committed"]
pub struct AtomicOperation {
    kv: Kv,
    write: AtomicWrite,
    error: Option<Error>,
}

impl AtomicOperation {
    fn encode(&mut self, key: Key) -> Option<Vec<u8>> {
        match key.encode() {
            Ok(k) => Some(k),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn push(&mut self, key: Key, kind: MutationKind) -> &mut Self {
        if let Some(key) = self.encode(key) {
            self.write.mutations.push(Mutation { key, kind });
        }
        self
    }

    fn expiry(&self, options: SetOptions) -> Option<u64> {
        options
            .expire_in
            .map(|d| self.kv.clock.now_ms().saturating_add(d.as_millis() as u64))
    }

    /// Requires `key` to be at `versionstamp` (`None`: absent) when the
    /// commit applies.
    pub fn check(&mut self, key: impl Into<Key>, versionstamp: Option<Versionstamp>) -> &mut Self {
        if let Some(key) = self.encode(key.into()) {
            self.write.checks.push(Check { key, versionstamp });
        }
        self
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<Key>, value: impl Into<KvValue>) -> &mut Self {
        self.set_with(key, value, SetOptions::default())
    }

    /// Sets `key` to `value` with options.
    pub fn set_with(
        &mut self,
        key: impl Into<Key>,
        value: impl Into<KvValue>,
        options: SetOptions,
    ) -> &mut Self {
        let expire_at_ms = self.expiry(options);
        self.push(
            key.into(),
            MutationKind::Set {
                value: value.into(),
                expire_at_ms,
            },
        )
    }

    /// Sets `prefix ++ [<commit versionstamp as a string>]` to `value`.
    pub fn set_versionstamped(
        &mut self,
        prefix: impl Into<Key>,
        value: impl Into<KvValue>,
        options: SetOptions,
    ) -> &mut Self {
        let expire_at_ms = self.expiry(options);
        self.push(
            prefix.into(),
            MutationKind::SetSuffixVersionstampedKey {
                value: value.into(),
                expire_at_ms,
            },
        )
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<Key>) -> &mut Self {
        self.push(key.into(), MutationKind::Delete)
    }

    /// Adds `n` to the KvU64 at `key` (wrapping modulo 2^64; absent = 0).
    pub fn sum(&mut self, key: impl Into<Key>, n: u64) -> &mut Self {
        let kind = MutationKind::Sum {
            value: KvValue::U64(n),
            min: None,
            max: None,
            clamp: false,
        };
        self.push(key.into(), kind)
    }

    /// Keeps the smaller of the KvU64 at `key` and `n`.
    pub fn min(&mut self, key: impl Into<Key>, n: u64) -> &mut Self {
        self.push(key.into(), MutationKind::Min(KvValue::U64(n)))
    }

    /// Keeps the larger of the KvU64 at `key` and `n`.
    pub fn max(&mut self, key: impl Into<Key>, n: u64) -> &mut Self {
        self.push(key.into(), MutationKind::Max(KvValue::U64(n)))
    }

    /// Adds any mutation, such as a V8 `Sum` with bounds.
    pub fn mutate(&mut self, key: impl Into<Key>, kind: MutationKind) -> &mut Self {
        self.push(key.into(), kind)
    }

    /// Enqueues a message (V8-encoded `payload`) that is stored if and only
    /// if this commit succeeds. Needs a backend with a queue layer
    /// (`kv::open` adds one); otherwise the commit fails with `Unsupported`.
    pub fn enqueue(&mut self, payload: Vec<u8>, options: EnqueueOptions) -> &mut Self {
        if let Err(e) = options.validate() {
            self.error.get_or_insert(e);
            return self;
        }
        let mut keys_if_undelivered = Vec::with_capacity(options.keys_if_undelivered.len());
        for key in options.keys_if_undelivered {
            match self.encode(key) {
                Some(k) => keys_if_undelivered.push(k),
                None => return self,
            }
        }
        let delay = options.delay.map_or(0, |d| d.as_millis() as u64);
        self.write.enqueues.push(Enqueue {
            payload,
            deadline_ms: self.kv.clock.now_ms().saturating_add(delay),
            keys_if_undelivered,
            backoff_schedule: options
                .backoff_schedule
                .map(|s| s.iter().map(|d| d.as_millis() as u32).collect()),
        });
        self
    }

    /// The raw write built so far.
    pub fn as_write(&self) -> &AtomicWrite {
        &self.write
    }

    /// Commits: `Committed` with the versionstamp, or `CheckFailed`.
    ///
    /// The operation keeps its checks and mutations, so committing it again
    /// (after an `Unavailable` error, say) sends the same write again, as
    /// Deno's `commit()` does; an error met while building it is returned
    /// by every commit. The returned future owns what it sends, so it may
    /// outlive the operation.
    ///
    /// # Errors
    /// Argument and limit errors (nothing is sent), `TypeMismatch` from
    /// `sum`/`min`/`max` (nothing is written), and backend errors.
    pub fn commit(&self) -> impl Future<Output = Result<CommitOutcome>> + Send + 'static {
        let write = self.prepared().map(|()| self.write.clone());
        let backend = self.kv.backend.clone();
        async move { backend.atomic_write(write?).await }
    }

    /// [`commit`](Self::commit) without copying the write, for the one-shot
    /// writes of [`Kv`].
    async fn commit_once(self) -> Result<CommitOutcome> {
        self.prepared()?;
        self.kv.backend.atomic_write(self.write).await
    }

    /// The error that stops this operation from being sent, if any.
    fn prepared(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err(e.duplicate()),
            None => limits::check_write(&self.write),
        }
    }
}

/// Options of [`AtomicOperation::enqueue`] and [`Kv::enqueue`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnqueueOptions {
    /// Deliver no earlier than this long after the commit (at most 30 days).
    pub delay: Option<Duration>,
    /// Keys that receive the payload if every delivery attempt fails.
    pub keys_if_undelivered: Vec<Key>,
    /// Delays between attempts (at most 5, each at most one hour); `None`
    /// means Deno's default `[100 ms, 1 s, 5 s, 30 s, 60 s]`, `Some(vec![])`
    /// means no retry. (Over KV Connect, "no retry" needs a kv server: the
    /// protocol's own message cannot say it, so against denokv or Deno
    /// Deploy such a commit fails with `Unsupported` rather than retry.)
    pub backoff_schedule: Option<Vec<Duration>>,
}

impl EnqueueOptions {
    /// Delays delivery by `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Writes the payload to `key` if delivery finally fails.
    pub fn with_key_if_undelivered(mut self, key: impl Into<Key>) -> Self {
        self.keys_if_undelivered.push(key.into());
        self
    }

    /// Retries after these delays.
    pub fn with_backoff_schedule(mut self, schedule: Vec<Duration>) -> Self {
        self.backoff_schedule = Some(schedule);
        self
    }

    fn validate(&self) -> Result<()> {
        if let Some(delay) = self.delay {
            let ms = delay.as_millis();
            if ms > u128::from(limits::MAX_DELAY_MS) {
                return Err(Error::InvalidArgument(format!(
                    "Delay cannot be greater than 30 days: received {ms}"
                )));
            }
        }
        if self.keys_if_undelivered.len() > limits::MAX_UNDELIVERED_KEYS {
            return Err(Error::LimitExceeded {
                limit: Limit::UndeliveredKeys,
                max: limits::MAX_UNDELIVERED_KEYS as u64,
                actual: self.keys_if_undelivered.len() as u64,
            });
        }
        if let Some(schedule) = &self.backoff_schedule {
            let delays: Vec<u64> = schedule.iter().map(|d| duration_ms(*d)).collect();
            limits::check_backoff_schedule(delays.iter().copied(), limits::MAX_BACKOFF_INTERVALS)
                .map_err(|e| invalid_backoff_schedule(e, &delays))?;
        }
        Ok(())
    }
}

/// `d` in whole milliseconds, saturating.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A failed [`limits::check_backoff_schedule`] in the Deno runtime's words
/// (a `TypeError` there), which name the first delay that is too long by
/// its index.
fn invalid_backoff_schedule(e: Error, delays: &[u64]) -> Error {
    match e {
        Error::LimitExceeded {
            limit: Limit::BackoffIntervals,
            max,
            ..
        } => Error::InvalidArgument(format!(
            "Invalid backoffSchedule, max {max} intervals allowed"
        )),
        Error::LimitExceeded {
            limit: Limit::BackoffInterval,
            actual,
            ..
        } => {
            // The check reports the first delay over the limit, so the
            // first delay equal to it is the one.
            let i = delays.iter().position(|&ms| ms == actual).unwrap_or(0);
            Error::InvalidArgument(format!(
                "Invalid backoffSchedule, interval at index {i} is invalid"
            ))
        }
        other => other,
    }
}

/// Options of [`Kv::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Stop after this many entries.
    pub limit: Option<usize>,
    /// Descending order.
    pub reverse: bool,
    /// Resume after the position this cursor describes.
    pub cursor: Option<String>,
    /// Entries per snapshot read (default: `limit` up to 500, else 100;
    /// at most 1000).
    pub batch_size: Option<usize>,
    /// Consistency of each batch.
    pub consistency: Consistency,
}

impl ListOptions {
    /// Stops after `limit` entries.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Lists in descending order.
    pub fn with_reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }
    /// Resumes from `cursor`.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
    /// Reads `batch_size` entries per snapshot.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }
    /// Uses `consistency` for each batch.
    pub fn with_consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }
}

/// The stream of entries of [`Kv::list`]. Each batch is its own snapshot.
pub struct ListIterator {
    backend: Arc<dyn Backend>,
    bounds: Option<SelectorBounds>,
    error: Option<Error>,
    reverse: bool,
    consistency: Consistency,
    batch_size: usize,
    remaining: Option<usize>,
    range: (Vec<u8>, Vec<u8>),
    /// The fetched batch not yet yielded (taken over whole, not copied).
    buffer: std::vec::IntoIter<RawEntry>,
    exhausted: bool,
    pending: Option<BoxFuture<'static, Result<Vec<Vec<RawEntry>>>>>,
    /// The cursor the listing resumed from, until an entry is yielded.
    given_cursor: Option<String>,
    /// The encoded key of the last entry yielded; its cursor is encoded
    /// only when asked for (most listings never ask), then kept.
    last_key: Option<Vec<u8>>,
    last_cursor: OnceLock<String>,
    done: bool,
    failed: bool,
    /// Done because `limit` entries were yielded: the cursor stays at the
    /// last one (more may follow), as in Deno.
    at_limit: bool,
}

impl std::fmt::Debug for ListIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListIterator")
            .field("bounds", &self.bounds)
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

impl ListIterator {
    fn new(backend: Arc<dyn Backend>, selector: Selector, options: ListOptions) -> Self {
        let mut it = ListIterator {
            backend,
            bounds: None,
            error: None,
            reverse: options.reverse,
            consistency: options.consistency,
            batch_size: DEFAULT_BATCH_SIZE,
            remaining: options.limit,
            range: (Vec::new(), Vec::new()),
            buffer: Vec::new().into_iter(),
            exhausted: false,
            pending: None,
            given_cursor: options.cursor.clone().filter(|c| !c.is_empty()),
            last_key: None,
            last_cursor: OnceLock::new(),
            done: false,
            failed: false,
            at_limit: false,
        };
        if let Err(e) = it.init(selector, &options) {
            it.error = Some(e);
        }
        it
    }

    fn init(&mut self, selector: Selector, options: &ListOptions) -> Result<()> {
        if options.limit == Some(0) {
            return Err(Error::InvalidArgument(
                "Limit must be a positive integer: received 0".into(),
            ));
        }
        self.batch_size = match (options.batch_size, options.limit) {
            (Some(0), _) => {
                return Err(Error::InvalidArgument(
                    "batchSize must be a positive integer: received 0".into(),
                ));
            }
            (Some(b), _) => b,
            (None, Some(l)) => l.min(MAX_DERIVED_BATCH_SIZE),
            (None, None) => DEFAULT_BATCH_SIZE,
        };
        if self.batch_size > limits::MAX_READ_ENTRIES {
            return Err(Error::LimitExceeded {
                limit: Limit::Entries,
                max: limits::MAX_READ_ENTRIES as u64,
                actual: self.batch_size as u64,
            });
        }
        let bounds = selector.bounds()?;
        limits::check_read_key(&bounds.start)?;
        limits::check_read_key(&bounds.end)?;
        self.range = bounds.resume(options.cursor.as_deref().unwrap_or(""), self.reverse)?;
        self.bounds = Some(bounds);
        Ok(())
    }

    /// The cursor after the last entry yielded: pass it as
    /// [`ListOptions::cursor`] to resume. `None` before the first entry
    /// (unless a cursor was given), `""` once the listing is exhausted. A
    /// listing that stopped at its `limit` is not exhausted: its cursor is
    /// the last entry's, the next page's start.
    pub fn cursor(&self) -> Option<&str> {
        if self.done && !self.failed && !self.at_limit {
            return Some("");
        }
        match (&self.last_key, &self.bounds) {
            // The key was checked to lie under the common prefix when it
            // was yielded, so encoding it cannot fail.
            (Some(key), Some(bounds)) => Some(
                self.last_cursor
                    .get_or_init(|| bounds.cursor_after(key).unwrap_or_default()),
            ),
            _ => self.given_cursor.as_deref(),
        }
    }

    /// Collects every remaining entry.
    ///
    /// # Errors
    /// The first error of the listing.
    pub async fn collect_all(mut self) -> Result<Vec<KvEntry>> {
        let mut out = Vec::new();
        while let Some(entry) = self.next().await {
            // Room for the rest of the batch just fetched at once, rather
            // than growing entry by entry.
            out.reserve(self.buffer.len() + 1);
            out.push(entry?);
        }
        Ok(out)
    }

    /// Entries the next read asks for: a batch, or what is left of the
    /// limit if less.
    fn batch_limit(&self) -> usize {
        self.remaining
            .map_or(self.batch_size, |r| r.min(self.batch_size))
    }

    /// What the listing does next, from what it holds: end, yield an
    /// error or a buffered entry, or read the next batch.
    fn next_step(&mut self) -> ListStep {
        if self.done {
            return ListStep::End;
        }
        if let Some(e) = self.error.take() {
            self.done = true;
            self.failed = true;
            return ListStep::Yield(Err(e));
        }
        if self.remaining == Some(0) {
            self.done = true;
            self.at_limit = true;
            return ListStep::End;
        }
        if let Some(raw) = self.buffer.next() {
            return ListStep::Yield(self.entry(raw));
        }
        if self.exhausted || (self.pending.is_none() && self.range.0 >= self.range.1) {
            self.done = true;
            return ListStep::End;
        }
        ListStep::Read
    }

    /// A fetched entry as the listing yields it; the cursor moves past it.
    fn entry(&mut self, raw: RawEntry) -> Result<KvEntry> {
        if let Some(r) = self.remaining.as_mut() {
            *r -= 1;
        }
        let bounds = self.bounds.as_ref().expect("bounds are set once listing");
        bounds.check_boundary(&raw.key)?;
        // The cursor moves past the entry even when its key does not
        // decode, so a caller can resume after it.
        let key = Key::decode(&raw.key);
        self.last_key = Some(raw.key);
        self.last_cursor = OnceLock::new();
        Ok(KvEntry {
            key: key?,
            value: raw.value,
            versionstamp: raw.versionstamp,
        })
    }

    /// Starts the read of the next batch unless one is under way, and
    /// polls it; once it is done, its entries (or its error) wait in the
    /// listing for [`ListIterator::next_step`].
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let limit = self.batch_limit();
        let pending = self.pending.get_or_insert_with(|| {
            let range = ReadRange {
                start: self.range.0.clone(),
                end: self.range.1.clone(),
                limit: limit as u32,
                reverse: self.reverse,
            };
            let backend = self.backend.clone();
            let consistency = self.consistency;
            async move { backend.snapshot_read(vec![range], consistency).await }.boxed()
        });
        let result = std::task::ready!(pending.as_mut().poll(cx));
        self.pending = None;
        match result {
            Ok(mut ranges) => self.take_batch(ranges.pop().unwrap_or_default()),
            Err(e) => self.error = Some(e),
        }
        Poll::Ready(())
    }

    /// Buffers a fetched batch and moves the range past it; a short batch
    /// is the last.
    fn take_batch(&mut self, entries: Vec<RawEntry>) {
        if entries.len() < self.batch_limit() {
            self.exhausted = true;
        }
        match entries.last() {
            Some(last) if self.reverse => self.range.1 = last.key.clone(),
            Some(last) => {
                let mut start = last.key.clone();
                start.push(0);
                self.range.0 = start;
            }
            None => self.exhausted = true,
        }
        self.buffer = entries.into_iter();
    }
}

/// One step of [`ListIterator`]'s stream.
enum ListStep {
    /// The listing is over.
    End,
    /// Hand this to the caller.
    Yield(Result<KvEntry>),
    /// Read the next batch.
    Read,
}

impl Stream for ListIterator {
    type Item = Result<KvEntry>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.next_step() {
                ListStep::End => return Poll::Ready(None),
                ListStep::Yield(item) => return Poll::Ready(Some(item)),
                ListStep::Read => std::task::ready!(this.poll_read(cx)),
            }
        }
    }
}

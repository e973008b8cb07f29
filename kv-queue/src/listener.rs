//! Delivering messages: claiming by compare-and-swap, leases kept alive
//! while a handler runs, retries with backoff, dead letters.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kv_core::backend::{
    AtomicWrite, Backend, Check, CommitOutcome, Consistency, Mutation, MutationKind, RawEntry,
    ReadRange, WatchStream,
};
use kv_core::{Clock, Error, KvValue, Result, SystemClock, Versionstamp};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::DEFAULT_BACKOFF_SCHEDULE;
use crate::layout::{self, Message};
use crate::lease::{Held, Lease, MIN_LEASE};
use crate::time::sleep_until;

/// What a handler receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The V8-encoded payload, as enqueued.
    pub payload: Vec<u8>,
    /// 0 for the first attempt, 1 for the first retry, …
    pub attempt: u32,
    /// A stable identifier of the message across its attempts.
    pub id: Vec<u8>,
}

/// A handler's failure: the message is retried per its backoff schedule.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// How long a listener's lease on a message lasts without a renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// How many handlers one listener runs at once by default.
pub const DEFAULT_CONCURRENCY: usize = 100;
/// How often a listener looks for work without a notification by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How soon, in real time, a listener tries again after a failed step; the
/// wait grows by this much with each failure in a row, up to the poll
/// interval.
const RETRY_SOON: Duration = Duration::from_millis(100);
/// A listener gives up after this many transient claim failures in a row.
const MAX_CLAIM_FAILURES: u32 = 50;
/// Most messages claimed in one round (their claims go out together).
const MAX_CLAIMS_PER_ROUND: usize = 64;
/// Expired leases are looked for this many times per lease.
const RECOVERIES_PER_LEASE: u32 = 2;
/// Running records one recovery pass examines.
const RECOVERY_BATCH: u32 = 100;
/// Attempts at recording a handler's outcome while the backend is
/// unavailable; the waits between them double from `FINISH_RETRY_FIRST`
/// up to `FINISH_RETRY_LAST`.
const FINISH_ATTEMPTS: u32 = 20;
const FINISH_RETRY_FIRST: Duration = Duration::from_millis(10);
const FINISH_RETRY_LAST: Duration = Duration::from_millis(2560);
/// Entries per read when counting or peeking.
const PAGE: u32 = 1000;
/// Counting stops once this many of a kind are counted.
const STATS_CAP: u64 = 100_000;

type HandlerFuture = Pin<Box<dyn Future<Output = std::result::Result<(), HandlerError>> + Send>>;
type Handler = Arc<dyn Fn(Delivery) -> HandlerFuture + Send + Sync>;

/// Counts of a queue's messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Due now and waiting for a listener.
    pub ready: u64,
    /// Due later (delayed, or waiting for a retry).
    pub delayed: u64,
    /// Being handled (leased by a listener).
    pub running: u64,
}

/// A queue on a backend: listen to it, inspect it. Enqueue through
/// `Kv::enqueue` / `AtomicOperation::enqueue` on a backend wrapped in
/// [`crate::QueueBackend`].
///
/// Delivery is at least once. Each message is handled by one listener at a
/// time, across tasks, processes and (over KV Connect) machines: a listener
/// claims a message by compare-and-swap and holds a lease it renews while
/// the handler runs ([`crate::lease`]), so a slow handler is not delivered
/// twice; a listener that dies loses its lease and the message is retried.
/// A handler whose lease was taken over meanwhile runs to its end, but its
/// result is not recorded: the message is neither acknowledged nor retried
/// by that listener.
#[derive(Clone, Debug)]
pub struct Queue {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    lease: Duration,
    concurrency: usize,
    poll: Duration,
}

impl Queue {
    /// The queue stored in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Queue {
            backend,
            clock: Arc::new(SystemClock),
            lease: DEFAULT_LEASE,
            concurrency: DEFAULT_CONCURRENCY,
            poll: DEFAULT_POLL_INTERVAL,
        }
    }

    /// Uses `clock` for due times and leases (tests pass a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A listener that has not renewed its lease for this long is presumed
    /// dead and its message is retried (default 10 s, at least 30 ms;
    /// renewed every third).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// At most this many handlers run at once in one listener (default 100).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Also looks for work this often without a notification (default 1 s).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Counts ready, delayed and running messages (up to 100,000 each).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn stats(&self) -> Result<QueueStats> {
        let now = self.clock.now_ms();
        let mut stats = QueueStats::default();
        self.scan(&layout::MESSAGE_PREFIX, |page| {
            for e in page {
                let due = layout::decode_message(&e.key, &record(&e.value)?)?.due_ms;
                if due <= now {
                    stats.ready += 1
                } else {
                    stats.delayed += 1
                }
            }
            Ok(stats.ready + stats.delayed)
        })
        .await?;
        self.scan(&layout::RUNNING_PREFIX, |page| {
            stats.running += page.len() as u64;
            Ok(stats.running)
        })
        .await?;
        Ok(stats)
    }

    /// Reads every entry under `prefix` a page at a time, handing each page
    /// to `count`, which answers how many it has counted so far; stops once
    /// that reaches [`STATS_CAP`].
    async fn scan(
        &self,
        prefix: &[u8],
        mut count: impl FnMut(&[RawEntry]) -> Result<u64>,
    ) -> Result<()> {
        let mut range = layout::prefix_range(prefix, PAGE);
        loop {
            let page = self.read(range.clone()).await?;
            let counted = count(&page)?;
            match page.last() {
                Some(last) if page.len() == PAGE as usize && counted < STATS_CAP => {
                    range.start = [last.key.as_slice(), &[0]].concat();
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next `n` messages in due order (ready first), without claiming them.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn peek(&self, n: u32) -> Result<Vec<Message>> {
        let entries = self
            .read(layout::prefix_range(
                &layout::MESSAGE_PREFIX,
                n.clamp(1, PAGE),
            ))
            .await?;
        entries
            .iter()
            .map(|e| layout::decode_message(&e.key, &record(&e.value)?))
            .collect()
    }

    async fn read(&self, range: ReadRange) -> Result<Vec<RawEntry>> {
        Ok(self
            .backend
            .snapshot_read(vec![range], Consistency::Strong)
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// The lease this queue's listeners take on the messages they handle.
    fn lease(&self) -> Lease {
        Lease::new(self.clock.clone(), self.lease)
    }

    /// Delivers messages to `handler` until `shutdown` resolves, then waits
    /// for running handlers to finish and returns. A handler that returns
    /// an error or panics fails the attempt: the message is retried after
    /// the next delay of its backoff schedule, and after the last one its
    /// payload is written to its dead-letter keys (or dropped if it has
    /// none).
    ///
    /// Each round recovers expired leases when due, claims ready messages
    /// for the free handler slots, then waits: for shutdown, a handler
    /// finishing, an enqueue, the next due time or the poll interval.
    ///
    /// # Errors
    /// Backend errors that persist (a transient one is retried).
    pub async fn listen<F, Fut>(
        &self,
        handler: F,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()>
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |d| Box::pin(handler(d)) as HandlerFuture);
        let mut listener = Listener::new(self.clone(), handler);
        let mut notifications = self.backend.watch(vec![layout::NOTIFY_KEY.to_vec()]);
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let result = loop {
            // After a failed step the next round comes soon in real time:
            // the listener's clock may be a manual one that does not move.
            let mut retry_in = listener.recover_if_due().await;
            // Once shutdown is asked for, no new message is claimed (a
            // handler may ask for it: `kv listen --count`). Checked last
            // thing before claiming: a handler may finish during recovery.
            if futures::poll!(&mut shutdown).is_ready() {
                break Ok(());
            }
            match listener.claim().await {
                Ok(Claimed::SlotsLeft) => continue,
                Ok(Claimed::Wait) => {}
                Ok(Claimed::RetrySoon(backoff)) => {
                    retry_in = Some(retry_in.map_or(backoff, |r| r.min(backoff)));
                }
                Err(e) => break Err(e),
            }
            let wake_at = listener.wake_at().await;
            let wake = listener
                .wait(wake_at, retry_in, shutdown.as_mut(), &mut notifications)
                .await;
            if wake == Wake::Stop {
                break Ok(());
            }
        };
        listener.drain().await;
        result
    }

    /// Claims up to `permits.len()` of the messages due now; returns how
    /// many claims it sent and the messages they won, each with its
    /// handler slot and the versionstamp of the claim.
    async fn claim_ready(
        &self,
        mut permits: Vec<OwnedSemaphorePermit>,
    ) -> Result<Vec<(Claim, OwnedSemaphorePermit)>> {
        let ready = self
            .read(layout::due_range(self.clock.now_ms(), permits.len() as u32))
            .await?;
        // Claims go out together, so a group-committing backend makes one
        // transaction of them; each is its own compare-and-swap.
        let mut claims = Vec::new();
        for entry in ready {
            let Some(permit) = permits.pop() else {
                break;
            };
            let Some(id) = layout::message_id(&entry.key).map(<[u8]>::to_vec) else {
                continue;
            };
            let message = layout::decode_message(&entry.key, &record(&entry.value)?)?;
            let write = AtomicWrite {
                checks: vec![Check {
                    key: entry.key.clone(),
                    versionstamp: Some(entry.versionstamp),
                }],
                mutations: vec![
                    Mutation {
                        key: entry.key.clone(),
                        kind: MutationKind::Delete,
                    },
                    set(
                        layout::running_key(&id),
                        layout::encode_running(self.lease().deadline(), &message),
                    ),
                ],
                enqueues: vec![],
            };
            let backend = self.backend.clone();
            claims.push(async move {
                let outcome = backend.atomic_write(write).await;
                (outcome, id, message, permit)
            });
        }
        let mut won = Vec::new();
        let mut first_error = None;
        for (outcome, id, message, permit) in futures::future::join_all(claims).await {
            match outcome {
                Ok(CommitOutcome::Committed { versionstamp }) => won.push((
                    Claim {
                        id,
                        message,
                        stamp: versionstamp,
                    },
                    permit,
                )),
                // Another listener claimed it first.
                Ok(CommitOutcome::CheckFailed) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if won.is_empty() => Err(e),
            _ => Ok(won),
        }
    }

    /// The due time of the earliest waiting message.
    async fn next_due(&self) -> Result<Option<u64>> {
        let first = self
            .read(layout::prefix_range(&layout::MESSAGE_PREFIX, 1))
            .await?;
        Ok(first.first().and_then(|e| layout::message_due(&e.key)))
    }

    /// Runs the handler while holding the lease, then records the outcome
    /// (unless the lease was taken over meanwhile).
    async fn run_one(&self, handler: Handler, claim: Claim) {
        let Claim { id, message, stamp } = claim;
        let delivery = Delivery {
            payload: message.payload.clone(),
            attempt: message.attempts,
            id: id.clone(),
        };
        let work = guarded(&handler, delivery);
        let renew = |stamp| self.renew(&id, &message, stamp);
        match self.lease().hold(stamp, work, renew).await {
            Held::Kept { output, stamp } => {
                self.record_outcome(&id, &message, stamp, output).await;
            }
            Held::Lost => {}
        }
    }

    /// Writes a new lease deadline into the running record, checked against
    /// the last write of it.
    async fn renew(
        &self,
        id: &[u8],
        message: &Message,
        stamp: Versionstamp,
    ) -> Result<Option<Versionstamp>> {
        let key = layout::running_key(id);
        let write = AtomicWrite {
            checks: vec![Check {
                key: key.clone(),
                versionstamp: Some(stamp),
            }],
            mutations: vec![set(
                key,
                layout::encode_running(self.lease().deadline(), message),
            )],
            enqueues: vec![],
        };
        Ok(self.backend.atomic_write(write).await?.versionstamp())
    }

    /// [`Queue::finish`], tried again with growing waits while the backend
    /// is unavailable.
    async fn record_outcome(
        &self,
        id: &[u8],
        message: &Message,
        stamp: Versionstamp,
        success: bool,
    ) {
        let mut wait = FINISH_RETRY_FIRST;
        for _ in 0..FINISH_ATTEMPTS {
            match self.finish(id, message, stamp, success).await {
                Ok(()) => return,
                Err(e) if e.is_retryable() => {
                    tracing_warn(&e);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(FINISH_RETRY_LAST);
                }
                Err(e) => {
                    tracing_warn(&e);
                    return;
                }
            }
        }
    }

    /// Deletes the running record and, for a failure, schedules the retry
    /// or writes the dead letters — all in one commit that only applies if
    /// this listener still holds the lease.
    async fn finish(
        &self,
        id: &[u8],
        message: &Message,
        stamp: Versionstamp,
        success: bool,
    ) -> Result<()> {
        let key = layout::running_key(id);
        let mut write = AtomicWrite {
            checks: vec![Check {
                key: key.clone(),
                versionstamp: Some(stamp),
            }],
            mutations: vec![Mutation {
                key,
                kind: MutationKind::Delete,
            }],
            enqueues: vec![],
        };
        if !success {
            write.mutations.extend(self.failure_mutations(id, message));
        }
        self.backend.atomic_write(write).await?;
        Ok(())
    }

    fn failure_mutations(&self, id: &[u8], message: &Message) -> Vec<Mutation> {
        let schedule = message
            .backoff_schedule
            .clone()
            .unwrap_or_else(|| DEFAULT_BACKOFF_SCHEDULE.to_vec());
        match schedule.split_first() {
            Some((delay, rest)) => {
                let due = self.clock.now_ms() + u64::from(*delay);
                let retry = Message {
                    due_ms: due,
                    attempts: message.attempts + 1,
                    backoff_schedule: Some(rest.to_vec()),
                    ..message.clone()
                };
                vec![
                    set(layout::message_key(due, id), layout::encode_message(&retry)),
                    layout::notify(due),
                ]
            }
            None => message
                .keys_if_undelivered
                .iter()
                .map(|k| Mutation {
                    key: k.clone(),
                    kind: MutationKind::Set {
                        value: KvValue::V8(message.payload.clone()),
                        expire_at_ms: None,
                    },
                })
                .collect(),
        }
    }

    /// Messages whose listener stopped renewing its lease count as failed
    /// attempts.
    async fn recover_expired_leases(&self) -> Result<()> {
        let now = self.clock.now_ms();
        for entry in self
            .read(layout::prefix_range(
                &layout::RUNNING_PREFIX,
                RECOVERY_BATCH,
            ))
            .await?
        {
            let (deadline, message) = layout::decode_running(&record(&entry.value)?)?;
            if deadline > now {
                continue;
            }
            let id = &entry.key[layout::RUNNING_PREFIX.len()..];
            self.finish(id, &message, entry.versionstamp, false).await?;
        }
        Ok(())
    }
}

/// A message this listener claimed: its id, its record and the
/// versionstamp of the claim (the lease's first write).
struct Claim {
    id: Vec<u8>,
    message: Message,
    stamp: Versionstamp,
}

/// What a round's claim step leaves for the rest of the round.
#[derive(Debug, PartialEq, Eq)]
enum Claimed {
    /// Messages were started and handler slots are still free: claim again
    /// at once, more may be ready.
    SlotsLeft,
    /// Nothing (more) to claim now, or no free slot: wait.
    Wait,
    /// The backend is unavailable for a moment: wait at most this long.
    RetrySoon(Duration),
}

/// Why a round's wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// Start the next round.
    Round,
    /// Shutdown was asked for, or the backend closed.
    Stop,
}

/// The state of one [`Queue::listen`] call between its rounds.
struct Listener {
    queue: Queue,
    handler: Handler,
    /// One per handler that may run at once; a claim takes one first, so a
    /// claimed message always runs.
    permits: Arc<Semaphore>,
    running: JoinSet<()>,
    /// When the last recovery pass succeeded (clock ms).
    last_recovery: u64,
    recovery_failures: u32,
    claim_failures: u32,
}

impl Listener {
    fn new(queue: Queue, handler: Handler) -> Self {
        Listener {
            permits: Arc::new(Semaphore::new(queue.concurrency)),
            queue,
            handler,
            running: JoinSet::new(),
            last_recovery: 0,
            recovery_failures: 0,
            claim_failures: 0,
        }
    }

    /// Recovers expired leases if a pass is due (a few times per lease).
    /// After a failed pass, answers how soon to try again: the next round,
    /// not a part of a lease later, as a dead listener's message waits.
    async fn recover_if_due(&mut self) -> Option<Duration> {
        let now = self.queue.clock.now_ms();
        let every = self.queue.lease.as_millis() as u64 / u64::from(RECOVERIES_PER_LEASE);
        if now < self.last_recovery + every {
            return None;
        }
        match self.queue.recover_expired_leases().await {
            Ok(()) => {
                self.last_recovery = now;
                self.recovery_failures = 0;
                None
            }
            Err(e) => {
                tracing_warn(&e);
                self.recovery_failures = self.recovery_failures.saturating_add(1);
                Some(self.retry_after(self.recovery_failures))
            }
        }
    }

    /// Claims ready messages for the free handler slots and starts their
    /// handlers.
    ///
    /// # Errors
    /// A backend error that is not transient, or the
    /// [`MAX_CLAIM_FAILURES`]th transient one in a row.
    async fn claim(&mut self) -> Result<Claimed> {
        let free = self.permits.available_permits().min(MAX_CLAIMS_PER_ROUND);
        let permits: Vec<_> = (0..free)
            .map_while(|_| self.permits.clone().try_acquire_owned().ok())
            .collect();
        if permits.is_empty() {
            // Every slot is busy: nothing was tried, nothing failed.
            self.claim_failures = 0;
            return Ok(Claimed::Wait);
        }
        match self.queue.claim_ready(permits).await {
            Ok(won) => {
                self.claim_failures = 0;
                let started = !won.is_empty();
                for (claim, permit) in won {
                    let queue = self.queue.clone();
                    let handler = self.handler.clone();
                    self.running.spawn(async move {
                        queue.run_one(handler, claim).await;
                        drop(permit);
                    });
                }
                Ok(if started && self.permits.available_permits() > 0 {
                    Claimed::SlotsLeft
                } else {
                    Claimed::Wait
                })
            }
            Err(e) if e.is_retryable() && self.claim_failures < MAX_CLAIM_FAILURES => {
                self.claim_failures += 1;
                tracing_warn(&e);
                Ok(Claimed::RetrySoon(self.retry_after(self.claim_failures)))
            }
            Err(e) => Err(e),
        }
    }

    /// When to look again without a notification: the earliest due message
    /// (now, if one is overdue), or a poll interval from now, whichever
    /// comes first; a poll interval from now while every slot is busy.
    async fn wake_at(&self) -> u64 {
        let next_due = self.queue.next_due().await.unwrap_or(None);
        let now = self.queue.clock.now_ms();
        let poll = now + self.queue.poll.as_millis() as u64;
        match next_due {
            _ if self.permits.available_permits() == 0 => poll,
            Some(due) => poll.min(due.max(now)),
            None => poll,
        }
    }

    /// Waits for whichever comes first: shutdown, a handler finishing, a
    /// notification of an enqueue, the clock reaching `wake_at`, or (after
    /// a failed step) `retry_in` of real time.
    async fn wait<S>(
        &mut self,
        wake_at: u64,
        retry_in: Option<Duration>,
        mut shutdown: Pin<&mut S>,
        notifications: &mut WatchStream,
    ) -> Wake
    where
        S: Future<Output = ()>,
    {
        tokio::select! {
            biased;
            () = &mut shutdown => Wake::Stop,
            Some(_) = self.running.join_next(), if !self.running.is_empty() => Wake::Round,
            n = notifications.next() => match n {
                Some(_) => Wake::Round,
                // The backend closed.
                None => Wake::Stop,
            },
            () = sleep_until(&*self.queue.clock, wake_at) => Wake::Round,
            () = tokio::time::sleep(retry_in.unwrap_or_default()), if retry_in.is_some() => Wake::Round,
        }
    }

    /// Waits for the running handlers to finish.
    async fn drain(&mut self) {
        while self.running.join_next().await.is_some() {}
    }

    /// The real-time wait after the `n`th failure in a row: from
    /// [`RETRY_SOON`] up to the poll interval, so a lasting failure is not
    /// retried in a tight loop, and the [`MAX_CLAIM_FAILURES`] claim
    /// failures a listener tolerates span about as many polls.
    fn retry_after(&self, n: u32) -> Duration {
        (RETRY_SOON * n).min(self.queue.poll)
    }
}

/// The handler's future for `delivery`, which fails instead of unwinding
/// when the handler panics, before it returns its future or while it runs:
/// both count as a failed attempt. Resolves to whether the attempt
/// succeeded.
fn guarded(handler: &Handler, delivery: Delivery) -> impl Future<Output = bool> + Send + 'static {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let work = match catch_unwind(AssertUnwindSafe(|| handler(delivery))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().boxed(),
        Err(panic) => futures::future::ready(Err(panic)).boxed(),
    };
    work.map(|result| matches!(result, Ok(Ok(()))))
}

fn set(key: Vec<u8>, record: Vec<u8>) -> Mutation {
    Mutation {
        key,
        kind: MutationKind::Set {
            value: KvValue::Bytes(record),
            expire_at_ms: None,
        },
    }
}

fn record(value: &KvValue) -> Result<Vec<u8>> {
    match value {
        KvValue::Bytes(b) => Ok(b.clone()),
        _ => Err(Error::InvalidValue("queue record is not bytes".into())),
    }
}

fn tracing_warn(e: &Error) {
    tracing::warn!(error = %e, "queue listener");
}

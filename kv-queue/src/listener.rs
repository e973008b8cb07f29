//! Delivering messages: claiming by compare-and-swap, leases kept alive
//! while a handler runs, retries with backoff, dead letters.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kv_core::backend::{
    AtomicWrite, Backend, Check, CommitOutcome, Consistency, Mutation, MutationKind,
};
use kv_core::{Clock, Error, KvValue, Result, SystemClock, Versionstamp};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::DEFAULT_BACKOFF_SCHEDULE;
use crate::layout::{self, Message};

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

/// How soon, in real time, a listener tries again after a failed step.
const RETRY_SOON: Duration = Duration::from_millis(100);

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
/// the handler runs, so a slow handler is not delivered twice; a listener
/// that dies loses its lease and the message is retried.
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
            lease: Duration::from_secs(10),
            concurrency: 100,
            poll: Duration::from_secs(1),
        }
    }

    /// Uses `clock` for due times and leases (tests pass a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A listener that has not renewed its lease for this long is presumed
    /// dead and its message is retried (default 10 s; renewed every third).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
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
        let mut range = layout::prefix_range(&layout::MESSAGE_PREFIX, 1000);
        loop {
            let batch = self.read(range.clone()).await?;
            for e in &batch {
                let due = layout::decode_message(&e.key, &record(&e.value)?)?.due_ms;
                if due <= now {
                    stats.ready += 1
                } else {
                    stats.delayed += 1
                }
            }
            match batch.last() {
                Some(last) if batch.len() == 1000 && stats.ready + stats.delayed < 100_000 => {
                    range.start = [last.key.as_slice(), &[0]].concat();
                }
                _ => break,
            }
        }
        let mut range = layout::prefix_range(&layout::RUNNING_PREFIX, 1000);
        loop {
            let batch = self.read(range.clone()).await?;
            stats.running += batch.len() as u64;
            match batch.last() {
                Some(last) if batch.len() == 1000 && stats.running < 100_000 => {
                    range.start = [last.key.as_slice(), &[0]].concat();
                }
                _ => break,
            }
        }
        Ok(stats)
    }

    /// The next `n` messages in due order (ready first), without claiming them.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn peek(&self, n: u32) -> Result<Vec<Message>> {
        let entries = self
            .read(layout::prefix_range(
                &layout::MESSAGE_PREFIX,
                n.clamp(1, 1000),
            ))
            .await?;
        entries
            .iter()
            .map(|e| layout::decode_message(&e.key, &record(&e.value)?))
            .collect()
    }

    async fn read(
        &self,
        range: kv_core::backend::ReadRange,
    ) -> Result<Vec<kv_core::backend::RawEntry>> {
        Ok(self
            .backend
            .snapshot_read(vec![range], Consistency::Strong)
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn sleep_until(&self, at_ms: u64) {
        match self.clock.as_manual() {
            Some(manual) => manual.sleep_until(at_ms).await,
            None => {
                let ms = at_ms.saturating_sub(self.clock.now_ms());
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }

    /// Delivers messages to `handler` until `shutdown` resolves, then waits
    /// for running handlers to finish and returns. A handler that returns
    /// an error or panics fails the attempt: the message is retried after
    /// the next delay of its backoff schedule, and after the last one its
    /// payload is written to its dead-letter keys (or dropped if it has
    /// none).
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
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut notifications = self.backend.watch(vec![layout::NOTIFY_KEY.to_vec()]);
        let mut running = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut last_recovery = 0u64;
        let mut failures = 0u32;
        let mut recovery_failures = 0u32;
        loop {
            // After a failed step the next round comes soon in real time:
            // the listener's clock may be a manual one that does not move.
            let mut retry_in: Option<Duration> = None;
            let now = self.clock.now_ms();
            if now >= last_recovery + self.lease.as_millis() as u64 / 2 {
                // A failed pass is tried again on the next round, not half a
                // lease later: a dead listener's message waits for it.
                match self.recover_expired_leases().await {
                    Ok(()) => {
                        last_recovery = now;
                        recovery_failures = 0;
                    }
                    Err(e) => {
                        tracing_warn(&e);
                        recovery_failures = recovery_failures.saturating_add(1);
                        retry_in = Some(self.retry_after(recovery_failures));
                    }
                }
            }
            // Once shutdown is asked for, no new message is claimed (a
            // handler may ask for it: `kv listen --count`). Checked last
            // thing before claiming: a handler may finish during recovery.
            if futures::poll!(&mut shutdown).is_ready() {
                break;
            }
            let claimed = match self.claim_ready(&permits, &handler, &mut running).await {
                Ok(n) => {
                    failures = 0;
                    n
                }
                Err(e) if e.is_retryable() && failures < 50 => {
                    failures += 1;
                    tracing_warn(&e);
                    let backoff = self.retry_after(failures);
                    retry_in = Some(retry_in.map_or(backoff, |r| r.min(backoff)));
                    0
                }
                Err(e) => {
                    while running.join_next().await.is_some() {}
                    return Err(e);
                }
            };
            if claimed > 0 && permits.available_permits() > 0 {
                continue;
            }
            let next_due = self.next_due().await.unwrap_or(None);
            let now = self.clock.now_ms();
            let mut wake_at = now + self.poll.as_millis() as u64;
            if let Some(due) = next_due {
                wake_at = wake_at.min(due.max(now));
            }
            if permits.available_permits() == 0 {
                wake_at = now + self.poll.as_millis() as u64;
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                n = notifications.next() => {
                    if n.is_none() {
                        // The backend closed.
                        break;
                    }
                }
                () = self.sleep_until(wake_at) => {}
                () = tokio::time::sleep(retry_in.unwrap_or_default()), if retry_in.is_some() => {}
            }
        }
        while running.join_next().await.is_some() {}
        Ok(())
    }

    /// The real-time wait after the `n`th failure in a row: from 100 ms up
    /// to the poll interval, so a lasting failure is not retried in a tight
    /// loop, and the 50 claim failures a listener tolerates span about 50
    /// polls.
    fn retry_after(&self, n: u32) -> Duration {
        (RETRY_SOON * n).min(self.poll)
    }

    async fn next_due(&self) -> Result<Option<u64>> {
        let first = self
            .read(layout::prefix_range(&layout::MESSAGE_PREFIX, 1))
            .await?;
        Ok(first.first().and_then(|e| {
            e.key
                .get(3..11)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
        }))
    }

    /// Claims up to the free handler slots of ready messages; returns how
    /// many it started.
    async fn claim_ready(
        &self,
        permits: &Arc<Semaphore>,
        handler: &Handler,
        running: &mut JoinSet<()>,
    ) -> Result<usize> {
        let free = permits.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let ready = self
            .read(layout::due_range(now, free.min(64) as u32))
            .await?;
        // Claims go out together, so a group-committing backend makes one
        // transaction of them; each is its own compare-and-swap.
        let mut claims = Vec::new();
        for entry in ready {
            // Take a handler slot first, so a claimed message always runs.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some(id) = layout::message_id(&entry.key).map(<[u8]>::to_vec) else {
                continue;
            };
            let message = layout::decode_message(&entry.key, &record(&entry.value)?)?;
            let deadline = self.clock.now_ms() + self.lease.as_millis() as u64;
            let claim = AtomicWrite {
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
                        layout::encode_running(deadline, &message),
                    ),
                ],
                enqueues: vec![],
            };
            let backend = self.backend.clone();
            claims.push(async move {
                let outcome = backend.atomic_write(claim).await;
                (outcome, id, message, permit)
            });
        }
        let mut started = 0;
        let mut first_error = None;
        for (outcome, id, message, permit) in futures::future::join_all(claims).await {
            let versionstamp = match outcome {
                Ok(CommitOutcome::Committed { versionstamp }) => versionstamp,
                // Another listener claimed it first.
                Ok(CommitOutcome::CheckFailed) => continue,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let this = self.clone();
            let handler = handler.clone();
            running.spawn(async move {
                this.run_one(handler, id, message, versionstamp).await;
                drop(permit);
            });
            started += 1;
        }
        if let (0, Some(e)) = (started, first_error) {
            return Err(e);
        }
        Ok(started)
    }

    /// Runs the handler while renewing the lease, then records the outcome.
    async fn run_one(
        &self,
        handler: Handler,
        id: Vec<u8>,
        message: Message,
        mut stamp: Versionstamp,
    ) {
        let delivery = Delivery {
            payload: message.payload.clone(),
            attempt: message.attempts,
            id: id.clone(),
        };
        // A handler may panic before it returns its future, too: both count
        // as a failed attempt.
        let work =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(delivery))) {
                Ok(future) => std::panic::AssertUnwindSafe(future).catch_unwind().boxed(),
                Err(panic) => futures::future::ready(Err(panic)).boxed(),
            };
        let mut work = std::pin::pin!(work);
        let renew_every = self.lease.as_millis() as u64 / 3;
        let outcome = loop {
            let renew_at = self.clock.now_ms() + renew_every;
            tokio::select! {
                result = &mut work => break matches!(result, Ok(Ok(()))),
                () = self.sleep_until(renew_at) => {
                    match self.renew(&id, &message, stamp).await {
                        Ok(Some(s)) => stamp = s,
                        // The lease was taken over: let the handler finish,
                        // but its outcome no longer counts.
                        Ok(None) => { let _ = work.await; return; }
                        Err(e) => tracing_warn(&e),
                    }
                }
            }
        };
        for attempt in 0..20 {
            match self.finish(&id, &message, stamp, outcome).await {
                Ok(()) => return,
                Err(e) if e.is_retryable() => {
                    tracing_warn(&e);
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(8))).await;
                }
                Err(e) => {
                    tracing_warn(&e);
                    return;
                }
            }
        }
    }

    async fn renew(
        &self,
        id: &[u8],
        message: &Message,
        stamp: Versionstamp,
    ) -> Result<Option<Versionstamp>> {
        let key = layout::running_key(id);
        let deadline = self.clock.now_ms() + self.lease.as_millis() as u64;
        let write = AtomicWrite {
            checks: vec![Check {
                key: key.clone(),
                versionstamp: Some(stamp),
            }],
            mutations: vec![set(key, layout::encode_running(deadline, message))],
            enqueues: vec![],
        };
        Ok(self.backend.atomic_write(write).await?.versionstamp())
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
            .read(layout::prefix_range(&layout::RUNNING_PREFIX, 100))
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

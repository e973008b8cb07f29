//! Scheduled jobs for kv, on any [`Backend`]: register the same job in
//! every process that shares a database, and each tick runs exactly once
//! among them.
//!
//! Schedules are 5-field cron strings in UTC ([`Schedule::parse`]) or
//! Deno's object form ([`ScheduleObject`]). Day of week follows POSIX cron:
//! 0 or 7 is Sunday, 1 Monday — Deno's own parser numbers 1–7 from Sunday.
//!
//! A job's state (the last tick claimed, and the lease of a running tick)
//! lives under the reserved system key space. A process claims a tick by
//! compare-and-swap on that state, so with N processes each tick runs once;
//! a run holds a lease that it renews, so runs never overlap across
//! processes; a process that dies mid-run loses its lease, and its tick is
//! not run again. Ticks missed while a run lasts (or while no process was
//! up) are skipped, never caught up: the next tick is computed from now.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kv_core::{ManualClock, MemoryBackend};
//! use kv_cron::{CronOptions, Schedule, Scheduler};
//!
//! let clock = Arc::new(ManualClock::new(0));
//! let scheduler = Scheduler::new(Arc::new(MemoryBackend::new())).with_clock(clock.clone());
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! scheduler.register("report", Schedule::parse("*/5 * * * *")?, CronOptions::default(), move || {
//!     let tx = tx.clone();
//!     async move {
//!         tx.send(()).ok();
//!         Ok(())
//!     }
//! })?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(async move { scheduler.run(async { stopped.await.ok(); }).await });
//! tokio::task::yield_now().await;
//! clock.advance(5 * 60_000);
//! rx.recv().await;
//! stop.send(()).ok();
//! running.await??;
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use kv_core::backend::{
    AtomicWrite, Backend, Check, CommitOutcome, Consistency, Mutation, MutationKind, SYSTEM_PREFIX,
};
use kv_core::backend::point_range;
use kv_core::{Clock, KvValue, SystemClock, Versionstamp};

mod schedule;

pub use schedule::{Field, Schedule, ScheduleObject};

/// Deno's default retry delays for a failed run.
pub const DEFAULT_BACKOFF_SCHEDULE: [u64; 5] = [100, 1000, 5000, 30000, 60000];
/// Registration fails once a scheduler holds more than this many jobs: the
/// 101st is still accepted and the 102nd refused, exactly as Deno does
/// (it checks the count before adding).
pub const MAX_CRONS: usize = 100;

/// Prefix of the job state keys (the rest is the job name).
pub const STATE_PREFIX: [u8; 3] = [SYSTEM_PREFIX, b'c', b'j'];

/// Why a job could not be registered or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    /// The name is too long or has characters other than letters, digits,
    /// white space, `-` and `_`.
    #[error("{0}")]
    InvalidName(String),
    /// A job with this name is already registered with this scheduler.
    #[error("Cron with this name already exists")]
    DuplicateName,
    /// The schedule cannot be parsed.
    #[error("{0}")]
    InvalidSchedule(String),
    /// More than 5 delays, or one over an hour.
    #[error("Invalid backoff schedule")]
    InvalidBackoffSchedule,
    /// More than [`MAX_CRONS`] jobs.
    #[error("Too many crons")]
    TooManyCrons,
    /// The database failed.
    #[error(transparent)]
    Backend(#[from] kv_core::Error),
}

/// A handler's failure: the run is retried per the backoff schedule.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Handler = Arc<dyn Fn(u64) -> HandlerFuture + Send + Sync>;

/// Options of [`Scheduler::register`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CronOptions {
    /// Delays before retrying a failed run (at most 5, each at most an
    /// hour); `None` means Deno's default `[100 ms, 1 s, 5 s, 30 s, 60 s]`.
    pub backoff_schedule: Option<Vec<Duration>>,
}

impl CronOptions {
    /// Retries a failed run after these delays.
    pub fn with_backoff_schedule(mut self, schedule: Vec<Duration>) -> Self {
        self.backoff_schedule = Some(schedule);
        self
    }
}

#[derive(Clone)]
struct Job {
    name: String,
    registered_at: u64,
    schedule: Schedule,
    backoff: Vec<u64>,
    handler: Handler,
}

/// Runs registered jobs on their schedules.
#[derive(Clone)]
pub struct Scheduler {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    lease: Duration,
    jobs: Arc<Mutex<Vec<Job>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.lock().iter().map(|j| j.name.clone()).collect();
        f.debug_struct("Scheduler")
            .field("jobs", &names)
            .finish_non_exhaustive()
    }
}

/// Checks a job name as Deno does (at most 64 characters of ASCII letters,
/// digits, white space, `-` and `_`).
///
/// # Errors
/// `InvalidName` with Deno's message.
pub fn validate_name(name: &str) -> Result<(), CronError> {
    if name.len() > 64 {
        return Err(CronError::InvalidName(format!(
            "Cron name cannot exceed 64 characters: current length {}",
            name.len()
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || c == '-' || c == '_')
    {
        return Err(CronError::InvalidName(
            "Invalid cron name: only alphanumeric characters, whitespace, hyphens, and underscores are allowed"
                .into(),
        ));
    }
    Ok(())
}

/// Job state: the last tick claimed and the lease of the running tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    last_tick: u64,
    lease_until: u64,
}

impl State {
    fn encode(self) -> KvValue {
        let mut out = vec![1];
        out.extend_from_slice(&self.last_tick.to_le_bytes());
        out.extend_from_slice(&self.lease_until.to_le_bytes());
        KvValue::Bytes(out)
    }

    fn decode(value: &KvValue) -> Option<State> {
        let KvValue::Bytes(b) = value else {
            return None;
        };
        if b.len() != 17 || b[0] != 1 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().unwrap_or([0; 8]));
        Some(State {
            last_tick: u(1..9),
            lease_until: u(9..17),
        })
    }
}

impl Scheduler {
    /// A scheduler whose jobs keep their state in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Scheduler {
            backend,
            clock: Arc::new(SystemClock),
            lease: Duration::from_secs(30),
            jobs: Arc::default(),
        }
    }

    /// Uses `clock` (tests pass a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A run that stops renewing its lease for this long is presumed dead
    /// (default 30 s, renewed every third of it).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a job. Every process sharing the database may register the
    /// same job; each tick runs in one of them.
    ///
    /// # Errors
    /// `InvalidName`, `DuplicateName` (in this scheduler), `InvalidBackoffSchedule`,
    /// `TooManyCrons`.
    pub fn register<F, Fut>(
        &self,
        name: &str,
        schedule: Schedule,
        options: CronOptions,
        handler: F,
    ) -> Result<(), CronError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.register_with_tick(name, schedule, options, move |_tick| handler())
    }

    /// [`Scheduler::register`] with a handler that receives the scheduled
    /// time of the tick it runs (Unix ms), the same on every retry.
    ///
    /// # Errors
    /// As [`Scheduler::register`].
    pub fn register_with_tick<F, Fut>(
        &self,
        name: &str,
        schedule: Schedule,
        options: CronOptions,
        handler: F,
    ) -> Result<(), CronError>
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        validate_name(name)?;
        let backoff = match options.backoff_schedule {
            None => DEFAULT_BACKOFF_SCHEDULE.to_vec(),
            Some(s) => {
                if s.len() > 5 || s.iter().any(|d| d.as_millis() > 3_600_000) {
                    return Err(CronError::InvalidBackoffSchedule);
                }
                s.iter().map(|d| d.as_millis() as u64).collect()
            }
        };
        let mut jobs = self.lock();
        if jobs.iter().any(|j| j.name == name) {
            return Err(CronError::DuplicateName);
        }
        if jobs.len() > MAX_CRONS {
            return Err(CronError::TooManyCrons);
        }
        let handler: Handler = Arc::new(move |tick| Box::pin(handler(tick)) as HandlerFuture);
        jobs.push(Job {
            name: name.to_owned(),
            registered_at: self.clock.now_ms(),
            schedule,
            backoff,
            handler,
        });
        Ok(())
    }

    /// The names of the registered jobs.
    pub fn names(&self) -> HashSet<String> {
        self.lock().iter().map(|j| j.name.clone()).collect()
    }

    /// Runs every registered job until `shutdown` resolves; a run in
    /// progress is finished first.
    ///
    /// # Errors
    /// A database error that persists.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), CronError> {
        let jobs = self.lock().clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let this = self.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move { this.run_job(job, stop).await });
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut result = Ok(());
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                done = tasks.join_next() => match done {
                    None => break,
                    Some(Ok(Err(e))) => { result = Err(e); break }
                    Some(_) => {}
                },
            }
        }
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        result
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

    async fn read_state(
        &self,
        key: &[u8],
    ) -> Result<(State, Option<Versionstamp>), kv_core::Error> {
        let entry = self
            .backend
            .snapshot_read(vec![point_range(key)], Consistency::Strong)
            .await?
            .pop()
            .and_then(|mut r| r.pop());
        Ok(match entry {
            Some(e) => (
                State::decode(&e.value).unwrap_or_default(),
                Some(e.versionstamp),
            ),
            None => (State::default(), None),
        })
    }

    async fn cas(
        &self,
        key: &[u8],
        expected: Option<Versionstamp>,
        state: State,
    ) -> Result<Option<Versionstamp>, kv_core::Error> {
        let write = AtomicWrite {
            checks: vec![Check {
                key: key.to_vec(),
                versionstamp: expected,
            }],
            mutations: vec![Mutation {
                key: key.to_vec(),
                kind: MutationKind::Set {
                    value: state.encode(),
                    expire_at_ms: None,
                },
            }],
            enqueues: vec![],
        };
        Ok(match self.backend.atomic_write(write).await? {
            CommitOutcome::Committed { versionstamp } => Some(versionstamp),
            CommitOutcome::CheckFailed => None,
        })
    }

    async fn run_job(
        &self,
        job: Job,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), CronError> {
        let key = [&STATE_PREFIX[..], job.name.as_bytes()].concat();
        // The first tick is the first one after registration that is not
        // already past: a restart does not catch up.
        let mut after = job.registered_at.max(self.clock.now_ms().saturating_sub(1));
        let mut errors = 0u32;
        loop {
            let step = self.step(&job, &key, &mut after, &mut stop).await;
            match step {
                Ok(true) => errors = 0,
                Ok(false) => return Ok(()),
                Err(e) if e.is_retryable() && errors < 100 => {
                    errors += 1;
                    tracing::warn!(job = %job.name, error = %e, "cron state unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits for the next tick and runs it if this process wins it. `false`
    /// when the scheduler stops.
    async fn step(
        &self,
        job: &Job,
        key: &[u8],
        after: &mut u64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<bool, kv_core::Error> {
        let (state, _) = self.read_state(key).await?;
        let base = (*after).max(state.last_tick);
        let Some(tick) = job.schedule.next_after(base) else {
            return Ok(false);
        };
        tokio::select! {
            () = self.sleep_until(tick) => {}
            _ = stop.wait_for(|s| *s) => return Ok(false),
        }
        let (state, stamp) = self.read_state(key).await?;
        if state.last_tick >= tick {
            // Another process ran this tick.
            *after = state.last_tick;
            return Ok(true);
        }
        let now = self.clock.now_ms();
        if state.lease_until > now {
            // Another process's run is still going: runs never overlap, so
            // this tick is skipped.
            *after = tick;
            return Ok(true);
        }
        let lease = self.lease.as_millis() as u64;
        let claimed = State {
            last_tick: tick,
            lease_until: now + lease,
        };
        let Some(mut stamp) = self.cas(key, stamp, claimed).await? else {
            return Ok(true);
        };
        // Run, retrying per the backoff schedule, renewing the lease.
        let mut attempt = 0usize;
        loop {
            let work = std::panic::AssertUnwindSafe((job.handler)(tick)).catch_unwind();
            let mut work = std::pin::pin!(work);
            let ok = loop {
                let renew_at = self.clock.now_ms() + lease / 3;
                tokio::select! {
                    r = &mut work => break matches!(r, Ok(Ok(()))),
                    () = self.sleep_until(renew_at) => {
                        let renewed = State { last_tick: tick, lease_until: self.clock.now_ms() + lease };
                        match self.cas(key, Some(stamp), renewed).await {
                            Ok(Some(s)) => stamp = s,
                            Ok(None) => tracing::warn!(job = %job.name, "cron lease lost"),
                            Err(e) => tracing::warn!(job = %job.name, error = %e, "cron lease renewal failed"),
                        }
                    }
                }
            };
            if ok {
                break;
            }
            tracing::warn!(job = %job.name, attempt, "Exception in cron handler");
            let Some(delay) = job.backoff.get(attempt) else {
                break;
            };
            attempt += 1;
            let at = self.clock.now_ms() + delay;
            let renewed = State {
                last_tick: tick,
                lease_until: at + lease,
            };
            if let Ok(Some(s)) = self.cas(key, Some(stamp), renewed).await {
                stamp = s;
            }
            // Stopping the scheduler abandons the remaining retries.
            let stopping = tokio::select! {
                () = self.sleep_until(at) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                break;
            }
        }
        let done = State {
            last_tick: tick,
            lease_until: 0,
        };
        let _ = self.cas(key, Some(stamp), done).await?;
        // Ticks that passed during the run are skipped. A run that ends
        // exactly on a tick lets that tick run: it does not overlap.
        *after = self.clock.now_ms().saturating_sub(1).max(tick);
        Ok(true)
    }
}

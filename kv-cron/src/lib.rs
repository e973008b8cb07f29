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
//! a run holds a lease that it renews ([`kv_queue::lease`], shared with
//! queue listeners) from its claim, through its retries, until the tick is
//! marked done, so runs never overlap across processes; a process that
//! dies mid-run loses its lease, and its tick is not run again. A run whose
//! lease was taken over finishes its current attempt, but its result is
//! not recorded: no retry, no "done". Ticks missed while a run lasts (or
//! while no process was up) are skipped, never caught up: the next tick is
//! computed from now.
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
use kv_core::backend::point_range;
use kv_core::backend::{
    AtomicWrite, Backend, Check, CommitOutcome, Consistency, Mutation, MutationKind, SYSTEM_PREFIX,
};
use kv_core::limits::{self, MAX_BACKOFF_INTERVALS};
use kv_core::{Clock, KvValue, SystemClock, Versionstamp};
use kv_queue::lease::{Held, Lease, MIN_LEASE};
use kv_queue::time::sleep_until;

mod schedule;

pub use schedule::{Field, Schedule, ScheduleObject};

/// Deno's default retry delays for a failed run.
pub const DEFAULT_BACKOFF_SCHEDULE: [u64; 5] = [100, 1000, 5000, 30000, 60000];
/// Registration fails once a scheduler holds more than this many jobs: the
/// 101st is still accepted and the 102nd refused, exactly as Deno does
/// (it checks the count before adding).
pub const MAX_CRONS: usize = 100;

/// Longest job name, in bytes (Deno's limit).
pub const MAX_NAME_LEN: usize = 64;
/// How long a run's lease lasts without a renewal, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Prefix of the job state keys (the rest is the job name).
pub const STATE_PREFIX: [u8; 3] = [SYSTEM_PREFIX, b'c', b'j'];

/// A job gives up (and [`Scheduler::run`] fails) after this many transient
/// database errors in a row, each followed by [`STATE_RETRY_DELAY`].
const MAX_STATE_FAILURES: u32 = 100;
const STATE_RETRY_DELAY: Duration = Duration::from_millis(100);

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
    if name.len() > MAX_NAME_LEN {
        return Err(CronError::InvalidName(format!(
            "Cron name cannot exceed {MAX_NAME_LEN} characters: current length {}",
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

/// The state record: a format byte, then `last_tick` and `lease_until` as
/// u64 LE.
const STATE_FORMAT: u8 = 1;
const STATE_LEN: usize = 17;

impl State {
    fn encode(self) -> KvValue {
        let mut out = Vec::with_capacity(STATE_LEN);
        out.push(STATE_FORMAT);
        out.extend_from_slice(&self.last_tick.to_le_bytes());
        out.extend_from_slice(&self.lease_until.to_le_bytes());
        KvValue::Bytes(out)
    }

    fn decode(value: &KvValue) -> Option<State> {
        let KvValue::Bytes(b) = value else {
            return None;
        };
        if b.len() != STATE_LEN || b[0] != STATE_FORMAT {
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
            lease: DEFAULT_LEASE,
            jobs: Arc::default(),
        }
    }

    /// Uses `clock` (tests pass a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A run that stops renewing its lease for this long is presumed dead
    /// (default 30 s, at least 30 ms; renewed every third of it).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// The lease a run takes on its job's state.
    fn lease(&self) -> Lease {
        Lease::new(self.clock.clone(), self.lease)
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
                let delays: Vec<u64> = s
                    .iter()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .collect();
                limits::check_backoff_schedule(delays.iter().copied(), MAX_BACKOFF_INTERVALS)
                    .map_err(|_| CronError::InvalidBackoffSchedule)?;
                delays
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
        let mut failures = 0u32;
        loop {
            match self.step(&job, &key, &mut after, &mut stop).await {
                Ok(Step::Next) => failures = 0,
                Ok(Step::Stop) => return Ok(()),
                Err(e) if e.is_retryable() && failures < MAX_STATE_FAILURES => {
                    failures += 1;
                    tracing::warn!(job = %job.name, error = %e, "cron state unavailable; retrying");
                    tokio::time::sleep(STATE_RETRY_DELAY).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One tick of a job: wait for it, claim it, run it if this process
    /// won it. `after` is the time after which the next tick is looked for;
    /// each outcome moves it on.
    async fn step(
        &self,
        job: &Job,
        key: &[u8],
        after: &mut u64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Step, kv_core::Error> {
        let (state, _) = self.read_state(key).await?;
        let Some(tick) = job.schedule.next_after((*after).max(state.last_tick)) else {
            return Ok(Step::Stop);
        };
        if !self.sleep_unless_stopped(tick, stop).await {
            return Ok(Step::Stop);
        }
        match self.claim(key, tick).await? {
            TickClaim::RanElsewhere { last_tick } => *after = last_tick,
            // Runs never overlap, so this tick is skipped.
            TickClaim::Overlaps => *after = tick,
            // Another process claimed it first; the next step sees its
            // claim.
            TickClaim::Raced => {}
            TickClaim::Won(stamp) => {
                self.run_tick(job, key, tick, stamp, stop).await?;
                // Ticks that passed during the run are skipped. A run that
                // ends exactly on a tick lets that tick run: it does not
                // overlap.
                *after = self.clock.now_ms().saturating_sub(1).max(tick);
            }
        }
        Ok(Step::Next)
    }

    /// Sleeps until `at` on the clock; `false` if the scheduler stops first.
    async fn sleep_unless_stopped(
        &self,
        at: u64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        tokio::select! {
            () = sleep_until(&*self.clock, at) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// Claims `tick` by compare-and-swap on the job's state, taking the
    /// run's lease, unless another process ran it or is still running an
    /// earlier one.
    async fn claim(&self, key: &[u8], tick: u64) -> Result<TickClaim, kv_core::Error> {
        let (state, stamp) = self.read_state(key).await?;
        if state.last_tick >= tick {
            return Ok(TickClaim::RanElsewhere {
                last_tick: state.last_tick,
            });
        }
        if state.lease_until > self.clock.now_ms() {
            return Ok(TickClaim::Overlaps);
        }
        let claimed = State {
            last_tick: tick,
            lease_until: self.lease().deadline(),
        };
        Ok(match self.cas(key, stamp, claimed).await? {
            Some(stamp) => TickClaim::Won(stamp),
            None => TickClaim::Raced,
        })
    }

    /// Runs a claimed tick, retrying per the backoff schedule, while
    /// holding its lease (`stamp` is the claim's versionstamp); then marks
    /// it done. Stopping the scheduler abandons the remaining retries. A
    /// lost lease ends the run at once: the new holder owns the tick, so
    /// nothing more is written.
    async fn run_tick(
        &self,
        job: &Job,
        key: &[u8],
        tick: u64,
        mut stamp: Versionstamp,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), kv_core::Error> {
        let lease = &self.lease();
        let renew = move |stamp| {
            let renewed = State {
                last_tick: tick,
                lease_until: lease.deadline(),
            };
            self.cas(key, Some(stamp), renewed)
        };
        for attempt in 0.. {
            let run = std::panic::AssertUnwindSafe((job.handler)(tick)).catch_unwind();
            let work = async move { matches!(run.await, Ok(Ok(()))) };
            let Some(succeeded) = kept(lease.hold(stamp, work, &renew).await, &mut stamp) else {
                return Ok(());
            };
            if succeeded {
                break;
            }
            tracing::warn!(job = %job.name, attempt, "Exception in cron handler");
            let Some(delay) = job.backoff.get(attempt) else {
                break;
            };
            let retry_at = self.clock.now_ms() + delay;
            let wait = self.sleep_unless_stopped(retry_at, stop);
            let Some(waited) = kept(lease.hold(stamp, wait, &renew).await, &mut stamp) else {
                return Ok(());
            };
            if !waited {
                break;
            }
        }
        let done = State {
            last_tick: tick,
            lease_until: 0,
        };
        self.cas(key, Some(stamp), done).await?;
        Ok(())
    }
}

/// The output of work done under a lease, the lease's last versionstamp
/// kept in `stamp`; `None` once the lease was lost.
fn kept<T>(held: Held<T>, stamp: &mut Versionstamp) -> Option<T> {
    match held {
        Held::Kept { output, stamp: s } => {
            *stamp = s;
            Some(output)
        }
        Held::Lost => None,
    }
}

/// What one step of a job's loop leads to.
enum Step {
    /// Look for the next tick.
    Next,
    /// The scheduler stops, or the schedule has no further tick.
    Stop,
}

/// The outcome of claiming a tick.
enum TickClaim {
    /// This process won the tick; the versionstamp of its claim.
    Won(Versionstamp),
    /// Another process already ran this tick (or a later one).
    RanElsewhere { last_tick: u64 },
    /// Another process's run still holds its lease.
    Overlaps,
    /// Another process claimed the tick between the read and the claim.
    Raced,
}

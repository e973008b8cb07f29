//! A run whose lease is taken over while its handler runs lets the handler
//! finish, but records nothing: no retry, no "done", not even another
//! renewal. Whoever took the tick over owns it (`kv_queue::lease`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, Mutation, MutationKind, RawEntry, ReadRange,
    WatchStream,
};
use kv_core::{Clock, ManualClock, MemoryBackend, Result, Versionstamp};
use kv_cron::{CronOptions, STATE_PREFIX, Schedule, Scheduler};
use tokio::sync::{mpsc, oneshot, watch};

const MINUTE: u64 = 60_000;
const START: u64 = 1_795_737_600_000;

/// Memory storage that notes the keys each commit checks.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryBackend,
    checked: Mutex<Vec<Vec<u8>>>,
}

impl Recording {
    /// How many commits so far were checked against `key`.
    fn writes_checking(&self, key: &[u8]) -> usize {
        let checked = self.checked.lock().unwrap();
        checked.iter().filter(|k| k.as_slice() == key).count()
    }
}

#[async_trait]
impl Backend for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let keys = write.checks.iter().map(|c| c.key.clone());
        self.checked.lock().unwrap().extend(keys);
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

async fn read(backend: &dyn Backend, key: &[u8]) -> RawEntry {
    let range = ReadRange {
        start: key.to_vec(),
        end: [key, &[0]].concat(),
        limit: 1,
        reverse: false,
    };
    let mut ranges = backend
        .snapshot_read(vec![range], Consistency::Strong)
        .await
        .unwrap();
    ranges.pop().unwrap().pop().unwrap()
}

/// What another process does when it takes a run over: it writes the
/// job's state anew. Returns the new state's versionstamp.
async fn take_over(backend: &dyn Backend, key: &[u8]) -> Versionstamp {
    let state = read(backend, key).await.value;
    let write = AtomicWrite {
        mutations: vec![Mutation {
            key: key.to_vec(),
            kind: MutationKind::Set {
                value: state,
                expire_at_ms: None,
            },
        }],
        ..AtomicWrite::default()
    };
    backend
        .atomic_write(write)
        .await
        .unwrap()
        .versionstamp()
        .unwrap()
}

/// Moves `clock` on by `step_ms` at a time, letting the scheduler act
/// after each step, until `done`.
async fn advance_until(clock: &ManualClock, step_ms: u64, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        clock.advance(step_ms);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not done after 1000 steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_was_taken_over_is_neither_retried_nor_marked_done() {
    let storage = Arc::new(Recording::default());
    let backend: Arc<dyn Backend> = storage.clone();
    let clock = Arc::new(ManualClock::new(START));
    // Renewed every second of the manual clock.
    let lease = Duration::from_secs(3);
    let scheduler = Scheduler::new(backend.clone())
        .with_clock(clock.clone())
        .with_lease(lease);
    let (runs_tx, mut runs) = mpsc::unbounded_channel();
    let (finished_tx, mut finished) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let c = clock.clone();
    // A failed run would be retried 10 ms later.
    let options = CronOptions::default().with_backoff_schedule(vec![Duration::from_millis(10)]);
    scheduler
        .register(
            "job",
            Schedule::parse("* * * * *").unwrap(),
            options,
            move || {
                let _ = runs_tx.send(c.now_ms());
                let (mut released, finished) = (released.clone(), finished_tx.clone());
                async move {
                    let _ = released.wait_for(|r| *r).await;
                    let _ = finished.send(());
                    Err::<(), kv_cron::HandlerError>("the handler fails".into())
                }
            },
        )
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        scheduler
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    clock.set(START + MINUTE);
    let ran_at = tokio::time::timeout(Duration::from_secs(10), runs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ran_at, START + MINUTE);
    let key = [&STATE_PREFIX[..], b"job"].concat();
    let taken = take_over(&*backend, &key).await;
    let before = storage.writes_checking(&key);

    // The next renewal's check fails: the lease is lost. (The clock moves
    // until it comes: the handler started before the lease's first sleep.)
    advance_until(&clock, 1000, || storage.writes_checking(&key) > before).await;
    release.send(true).unwrap();
    // The handler ran to its end, and failed.
    tokio::time::timeout(Duration::from_secs(10), finished.recv())
        .await
        .unwrap()
        .unwrap();
    // Past the retry's delay (several times, in case a retry's sleep
    // starts late): no retry comes.
    for _ in 0..5 {
        clock.advance(20);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(runs.try_recv().is_err(), "the run was retried");
    let _ = stop.send(());
    running.await.unwrap().unwrap();

    assert_eq!(
        storage.writes_checking(&key),
        before + 1,
        "after losing its lease the run wrote the job's state again"
    );
    assert_eq!(read(&*backend, &key).await.versionstamp, taken);
}

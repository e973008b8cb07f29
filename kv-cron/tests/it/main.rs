//! Integration tests of kv-cron (the conformance suite has the rest).

#![allow(clippy::unwrap_used)]

mod lease;
mod processes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::Backend;
use kv_core::{Clock, ManualClock, MemoryBackend};
use kv_cron::{CronOptions, Schedule, Scheduler};
use tokio::sync::{mpsc, oneshot};

const MINUTE: u64 = 60_000;
const START: u64 = 1_795_737_600_000;

fn scheduler(
    backend: Arc<dyn Backend>,
    clock: &Arc<ManualClock>,
    schedule: &str,
    tx: mpsc::UnboundedSender<u64>,
) -> Scheduler {
    let s = Scheduler::new(backend).with_clock(clock.clone());
    let c = clock.clone();
    s.register(
        "job",
        Schedule::parse(schedule).unwrap(),
        CronOptions::default(),
        move || {
            let _ = tx.send(c.now_ms());
            async { Ok(()) }
        },
    )
    .unwrap();
    s
}

async fn run(
    s: Scheduler,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), kv_cron::CronError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        s.run(async {
            let _ = stopped.await;
        })
        .await
    });
    (stop, task)
}

/// 30 simulated days of `*/5 * * * *`: exactly 8,640 runs, one per tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_every_five_minutes() {
    let clock = Arc::new(ManualClock::new(START));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, task) = run(scheduler(
        Arc::new(MemoryBackend::new()),
        &clock,
        "*/5 * * * *",
        tx,
    ))
    .await;
    let ticks = 30 * 24 * 12u64;
    for tick in 1..=ticks {
        clock.set(START + tick * 5 * MINUTE);
        let at = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(at, START + tick * 5 * MINUTE);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(50), rx.recv())
            .await
            .is_err()
    );
    assert_eq!(ticks, 8640);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// Three schedulers on one SQLite file, each with its own connection (as
/// three processes would be): every tick runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_connections_to_one_sqlite_file_share_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cron.sqlite3");
    let clock = Arc::new(ManualClock::new(START));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    for _ in 0..3 {
        let backend: Arc<dyn Backend> = Arc::new(kv_sqlite::SqliteBackend::open(&path).unwrap());
        running.push(run(scheduler(backend, &clock, "* * * * *", tx.clone())).await);
    }
    let mut per_tick: BTreeMap<u64, u32> = BTreeMap::new();
    for tick in 1..=120u64 {
        clock.set(START + tick * MINUTE);
        let at = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        *per_tick.entry(at).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Ok(at) = rx.try_recv() {
            *per_tick.entry(at).or_default() += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(at) = rx.try_recv() {
        *per_tick.entry(at).or_default() += 1;
    }
    assert_eq!(per_tick.len(), 120);
    assert!(per_tick.values().all(|n| *n == 1), "{per_tick:?}");
    for (stop, task) in running {
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}

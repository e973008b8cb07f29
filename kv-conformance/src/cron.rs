//! Cron: each tick runs once among every scheduler sharing the database,
//! runs never overlap, failures are retried, nothing is caught up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use kv_core::ManualClock;
use kv_cron::{CronError, CronOptions, Schedule, Scheduler};
use tokio::sync::{mpsc, oneshot};

use crate::Cx;

declare_cases!("cron":
    one_day_every_5_minutes_runs_288_times,
    three_schedulers_run_each_tick_once,
    failed_run_is_retried_per_backoff,
    runs_never_overlap,
    restart_does_not_catch_up,
    tick_of_a_dead_scheduler_is_not_rerun,
    registration_errors,
);

const MINUTE: u64 = 60_000;
/// 2026-11-27 00:00:00 UTC.
const START: u64 = 1_795_737_600_000;

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), CronError>>,
}

impl Running {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("scheduler did not stop")???;
        Ok(())
    }
}

fn start(scheduler: Scheduler) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        scheduler
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    Running {
        stop: Some(stop),
        task,
    }
}

/// A scheduler with one job whose runs report the clock time.
fn counting(
    cx: &Cx,
    clock: &Arc<ManualClock>,
    schedule: &str,
    tx: mpsc::UnboundedSender<u64>,
) -> anyhow::Result<Scheduler> {
    let scheduler = Scheduler::new(cx.backend.clone()).with_clock(clock.clone());
    let c = clock.clone();
    scheduler.register(
        "job",
        Schedule::parse(schedule)?,
        CronOptions::default(),
        move || {
            let _ = tx.send(kv_core::Clock::now_ms(c.as_ref()));
            async { Ok(()) }
        },
    )?;
    Ok(scheduler)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<u64>) -> anyhow::Result<u64> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no run within 10 s")?
        .context("ended")
}

async fn quiet(rx: &mut mpsc::UnboundedReceiver<u64>, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), rx.recv())
        .await
        .is_err()
}

async fn one_day_every_5_minutes_runs_288_times(cx: Cx) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(START));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = start(counting(&cx, &clock, "*/5 * * * *", tx)?);
    let mut runs = 0;
    for tick in 1..=288u64 {
        clock.set(START + tick * 5 * MINUTE);
        let at = recv(&mut rx).await?;
        ensure!(at == START + tick * 5 * MINUTE, "tick {tick} ran at {at}");
        runs += 1;
    }
    ensure!(runs == 288);
    running.stop().await
}

async fn three_schedulers_run_each_tick_once(cx: Cx) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(START));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running: Vec<Running> = (0..3)
        .map(|_| counting(&cx, &clock, "* * * * *", tx.clone()).map(start))
        .collect::<anyhow::Result<_>>()?;
    let mut per_tick: BTreeMap<u64, u32> = BTreeMap::new();
    for tick in 1..=60u64 {
        clock.set(START + tick * MINUTE);
        let at = recv(&mut rx).await?;
        *per_tick.entry(at).or_default() += 1;
        // Give the other schedulers time to (fail to) claim the same tick.
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Ok(at) = rx.try_recv() {
            *per_tick.entry(at).or_default() += 1;
        }
    }
    ensure!(quiet(&mut rx, 100).await);
    ensure!(
        per_tick.len() == 60 && per_tick.values().all(|n| *n == 1),
        "{per_tick:?}"
    );
    for r in running {
        r.stop().await?;
    }
    Ok(())
}

async fn failed_run_is_retried_per_backoff(cx: Cx) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(START));
    let scheduler = Scheduler::new(cx.backend.clone()).with_clock(clock.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let options = CronOptions::default()
        .with_backoff_schedule(vec![Duration::from_millis(10), Duration::from_millis(20)]);
    scheduler.register(
        "failing",
        Schedule::parse("* * * * *")?,
        options,
        move || {
            let _ = tx.send(0);
            async { Err("always fails".into()) }
        },
    )?;
    let running = start(scheduler);
    clock.set(START + MINUTE);
    recv(&mut rx).await?;
    for delay in [10, 20] {
        ensure!(quiet(&mut rx, 50).await, "a retry came before its delay");
        clock.advance(delay);
        recv(&mut rx).await?;
    }
    clock.advance(1000);
    ensure!(
        quiet(&mut rx, 100).await,
        "three invocations per tick, no fourth"
    );
    clock.set(START + 2 * MINUTE);
    recv(&mut rx).await?;
    running.stop().await
}

async fn runs_never_overlap(cx: Cx) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(START));
    let scheduler = Scheduler::new(cx.backend.clone())
        .with_clock(clock.clone())
        .with_lease(Duration::from_secs(600));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let c = clock.clone();
    scheduler.register(
        "slow",
        Schedule::parse("* * * * *")?,
        CronOptions::default(),
        move || {
            let _ = tx.send(kv_core::Clock::now_ms(c.as_ref()));
            let mut release = release_rx.clone();
            async move {
                let _ = release.wait_for(|r| *r).await;
                Ok(())
            }
        },
    )?;
    let running = start(scheduler);
    clock.set(START + MINUTE);
    recv(&mut rx).await?;
    for m in 2..=4 {
        clock.set(START + m * MINUTE);
        ensure!(
            quiet(&mut rx, 50).await,
            "a run started while another was running"
        );
    }
    clock.set(START + 4 * MINUTE + 30_000);
    release_tx.send(true)?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Ticks missed during the long run are skipped; the next one runs.
    ensure!(
        quiet(&mut rx, 50).await,
        "missed ticks must not be caught up"
    );
    clock.set(START + 5 * MINUTE);
    ensure!(recv(&mut rx).await? == START + 5 * MINUTE);
    running.stop().await
}

async fn restart_does_not_catch_up(cx: Cx) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(START));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first = start(counting(&cx, &clock, "*/5 * * * *", tx.clone())?);
    clock.set(START + 5 * MINUTE);
    recv(&mut rx).await?;
    first.stop().await?;
    clock.set(START + 60 * MINUTE + 1);
    let second = start(counting(&cx, &clock, "*/5 * * * *", tx)?);
    ensure!(
        quiet(&mut rx, 100).await,
        "ticks missed while nothing ran are not caught up"
    );
    clock.set(START + 65 * MINUTE);
    ensure!(recv(&mut rx).await? == START + 65 * MINUTE);
    second.stop().await
}

async fn tick_of_a_dead_scheduler_is_not_rerun(cx: Cx) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(START));
    let lease = Duration::from_secs(120);
    let runs = Arc::new(Mutex::new(Vec::new()));
    // The first scheduler claims the tick and dies mid-run.
    let dying = Scheduler::new(cx.backend.clone())
        .with_clock(clock.clone())
        .with_lease(lease);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (c, r) = (clock.clone(), runs.clone());
    dying.register(
        "job",
        Schedule::parse("* * * * *")?,
        CronOptions::default(),
        move || {
            let now = kv_core::Clock::now_ms(c.as_ref());
            r.lock().unwrap_or_else(|e| e.into_inner()).push(now);
            let _ = tx.send(now);
            std::future::pending::<Result<(), kv_cron::HandlerError>>()
        },
    )?;
    let dying = start(dying);
    clock.set(START + MINUTE);
    recv(&mut rx).await?;
    dying.task.abort();
    // A second scheduler neither reruns that tick nor overlaps the dead
    // run's lease; it runs the first tick after the lease expired.
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let survivor = start(counting(&cx, &clock, "* * * * *", tx2)?.with_lease(lease));
    clock.set(START + 2 * MINUTE);
    ensure!(
        quiet(&mut rx2, 100).await,
        "ran while the dead run's lease was valid"
    );
    clock.set(START + 4 * MINUTE);
    ensure!(recv(&mut rx2).await? == START + 4 * MINUTE);
    ensure!(runs.lock().unwrap_or_else(|e| e.into_inner()).len() == 1);
    survivor.stop().await
}

async fn registration_errors(cx: Cx) -> anyhow::Result<()> {
    let s = Scheduler::new(cx.backend.clone());
    let every = || Schedule::parse("* * * * *");
    let ok = || async { Ok(()) };
    s.register("a-valid name_1\t", every()?, CronOptions::default(), ok)?;
    s.register("", every()?, CronOptions::default(), ok)?;
    ensure!(matches!(
        s.register("a-valid name_1\t", every()?, CronOptions::default(), ok),
        Err(CronError::DuplicateName)
    ));
    ensure!(matches!(
        s.register(&"x".repeat(65), every()?, CronOptions::default(), ok),
        Err(CronError::InvalidName(_))
    ));
    ensure!(matches!(
        s.register("é", every()?, CronOptions::default(), ok),
        Err(CronError::InvalidName(_))
    ));
    ensure!(
        s.register(&"x".repeat(64), every()?, CronOptions::default(), ok)
            .is_ok()
    );
    let six = CronOptions::default().with_backoff_schedule(vec![Duration::from_millis(1); 6]);
    ensure!(matches!(
        s.register("six", every()?, six, ok),
        Err(CronError::InvalidBackoffSchedule)
    ));
    let long = CronOptions::default().with_backoff_schedule(vec![Duration::from_millis(3_600_001)]);
    ensure!(matches!(
        s.register("long", every()?, long, ok),
        Err(CronError::InvalidBackoffSchedule)
    ));
    ensure!(matches!(
        Schedule::parse("* * * *"),
        Err(CronError::InvalidSchedule(_))
    ));
    let many = Scheduler::new(cx.backend.clone());
    for i in 0..101 {
        many.register(&format!("c{i}"), every()?, CronOptions::default(), ok)?;
    }
    ensure!(matches!(
        many.register("c101", every()?, CronOptions::default(), ok),
        Err(CronError::TooManyCrons)
    ));
    Ok(())
}

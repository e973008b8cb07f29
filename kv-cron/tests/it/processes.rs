//! Three processes register the same job on one SQLite file: every tick
//! runs exactly once among them.
//!
//! The test re-runs this binary three times as children (the child test is
//! a no-op unless `KV_CRON_CHILD` is set). Each child runs a scheduler on a
//! clock that moves 600 times faster than real time from a shared starting
//! point, so 4 real seconds cover 40 scheduled minutes of `* * * * *`; the
//! three clocks disagree by a few simulated seconds at most, which the
//! compare-and-swap on the job's state must absorb. Every run adds 1 to a
//! per-tick counter in the database; afterwards every counter is exactly 1.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kv_core::backend::Backend;
use kv_core::{Kv, KvValue, ListOptions, ManualClock, Selector, key};
use kv_cron::{CronOptions, Schedule, Scheduler};

const CHILD: &str = "KV_CRON_CHILD";
const SPEED: u64 = 600;
const REAL_SECS: u64 = 4;

fn real_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn cron_process_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    // PATH|REAL_START_MS|SIM_START_MS
    let parts: Vec<&str> = spec.split('|').collect();
    let (path, real_start, sim_start): (&str, u64, u64) = (
        parts[0],
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend: Arc<dyn Backend> = Arc::new(kv_sqlite::SqliteBackend::open(path).unwrap());
        let clock = Arc::new(ManualClock::new(sim_start));
        let ticker = {
            let clock = clock.clone();
            tokio::spawn(async move {
                loop {
                    let elapsed = real_ms().saturating_sub(real_start);
                    clock.set(sim_start + elapsed * SPEED);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let kv = Kv::from_arc(backend.clone());
        let scheduler = Scheduler::new(backend.clone()).with_clock(clock.clone());
        scheduler
            .register_with_tick(
                "shared job",
                Schedule::parse("* * * * *").unwrap(),
                CronOptions::default(),
                move |tick| {
                    let kv = kv.clone();
                    async move {
                        kv.atomic().sum(key!["ran", tick], 1).commit().await?;
                        Ok(())
                    }
                },
            )
            .unwrap();
        let until = real_start + REAL_SECS * 1000;
        scheduler
            .run(async move {
                while real_ms() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap();
        ticker.abort();
        backend.close().await;
    });
}

#[test]
fn three_processes_run_each_tick_once() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cron.sqlite3");
    drop(kv_sqlite::SqliteBackend::open(&path).unwrap());
    let real_start = real_ms() + 1500;
    let sim_start = 1_795_737_600_000u64;
    let spec = format!("{}|{real_start}|{sim_start}", path.display());
    let started = Instant::now();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "processes::cron_process_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, &spec)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a scheduler process failed");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kv = Kv::new(kv_sqlite::SqliteBackend::open(&path).unwrap());
        let ran = kv
            .list(Selector::prefix(key!["ran"]), ListOptions::default())
            .collect_all()
            .await
            .unwrap();
        let ticks = REAL_SECS * SPEED * 1000 / 60_000;
        assert!(
            ran.len() as u64 >= ticks * 3 / 4,
            "only {} of about {ticks} ticks ran",
            ran.len()
        );
        for e in &ran {
            assert_eq!(
                e.value,
                KvValue::U64(1),
                "tick {} ran more than once",
                e.key
            );
        }
        eprintln!("{} ticks, each run once across 3 processes", ran.len());
    });
}

//! No queue message is lost or stuck when consumers are killed.
//!
//! The story: a producer process enqueues work into a SQLite database while
//! a consumer process handles it — and the consumer is killed with SIGKILL
//! over and over (deploys, OOM kills, crashes), sometimes in the middle of
//! a handler, sometimes between a handler's effect and its acknowledgement.
//! Messages whose consumer died must come back after the lease expires;
//! none may be dropped, none may stay leased forever. Delivery is at least
//! once, so a message may be handled twice, never zero times.
//!
//! The test re-runs this binary as the producer and as the consumer (the
//! child test is a no-op unless `KV_QUEUE_CRASH_ROLE` is set). Messages:
//! `KV_QUEUE_CRASH_MESSAGES`, else 2,000 (10,000 with `KV_SLOW_TESTS=1`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_core::backend::Backend;
use kv_core::{EnqueueOptions, Kv, KvValue, key};
use kv_queue::{Queue, QueueBackend};
use kv_sqlite::SqliteBackend;
use rand::Rng;

const ROLE: &str = "KV_QUEUE_CRASH_ROLE";
const PATH: &str = "KV_QUEUE_CRASH_PATH";
const COUNT: &str = "KV_QUEUE_CRASH_COUNT";
const LEASE: Duration = Duration::from_millis(400);

fn messages() -> u64 {
    if let Some(n) = std::env::var(COUNT).ok().and_then(|n| n.parse().ok()) {
        return n;
    }
    if let Some(n) = std::env::var("KV_QUEUE_CRASH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return n;
    }
    if std::env::var_os("KV_SLOW_TESTS").is_some() {
        10_000
    } else {
        2_000
    }
}

fn open(path: &str) -> Arc<dyn Backend> {
    Arc::new(QueueBackend::new(SqliteBackend::open(path).unwrap()))
}

/// The child processes: `producer` enqueues `n` messages in batches of 50;
/// `consumer` handles messages until killed (or, with a deadline, until the
/// queue is empty).
#[test]
fn queue_crash_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = std::env::var(PATH).unwrap();
    let n: u64 = std::env::var(COUNT).unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = open(&path);
        let kv = Kv::from_arc(backend.clone());
        match role.as_str() {
            "producer" => {
                for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
                    let mut op = kv.atomic();
                    for i in chunk {
                        op.enqueue(i.to_le_bytes().to_vec(), EnqueueOptions::default());
                    }
                    op.commit().await.unwrap();
                }
            }
            _ => {
                let queue = Queue::new(backend.clone())
                    .with_lease(LEASE)
                    .with_poll_interval(Duration::from_millis(100));
                let handled = kv.clone();
                let drain = role == "drain";
                let stop_when_empty = async {
                    if !drain {
                        return std::future::pending().await;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let stats = Queue::new(backend.clone()).stats().await.unwrap();
                        if stats == Default::default() {
                            return;
                        }
                    }
                };
                queue
                    .listen(
                        move |d| {
                            let kv = handled.clone();
                            async move {
                                let i = u64::from_le_bytes(d.payload.as_slice().try_into()?);
                                kv.set(key!["handled", i], KvValue::U64(u64::from(d.attempt)))
                                    .await?;
                                Ok(())
                            }
                        },
                        stop_when_empty,
                    )
                    .await
                    .unwrap();
            }
        }
        backend.close().await;
    });
}

fn spawn(role: &str, path: &str, n: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::queue_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(PATH, path)
        .env(COUNT, n.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn killed_consumers_lose_no_message() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let n = messages();
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("queue.sqlite3")
        .to_string_lossy()
        .into_owned();
    // Create the file before two processes race to set it up.
    drop(SqliteBackend::open(&path).unwrap());

    let mut producer = spawn("producer", &path, n);
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    let started = Instant::now();
    loop {
        let mut consumer = spawn("consumer", &path, n);
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..400)));
        consumer.kill().unwrap();
        consumer.wait().unwrap();
        kills += 1;
        if let Some(status) = producer.try_wait().unwrap()
            && kills >= 10
        {
            assert!(status.success(), "producer failed");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "producer too slow"
        );
    }
    // A last consumer runs until the queue is empty: every message whose
    // consumer died must come back once its lease expires.
    let mut drain = spawn("drain", &path, n);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = drain.try_wait().unwrap() {
            assert!(status.success(), "drain failed");
            break;
        }
        if Instant::now() > deadline {
            drain.kill().unwrap();
            panic!("the queue did not drain within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = open(&path);
        let stats = Queue::new(backend.clone()).stats().await.unwrap();
        assert_eq!(
            stats,
            Default::default(),
            "nothing ready, delayed or leased remains"
        );
        let kv = Kv::from_arc(backend.clone());
        let mut missing = Vec::new();
        let mut retried = 0;
        for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
            let keys: Vec<_> = chunk.iter().map(|i| key!["handled", *i]).collect();
            for (i, e) in chunk.iter().zip(kv.get_many(&keys).await.unwrap()) {
                match e {
                    None => missing.push(*i),
                    Some(e) if e.value != KvValue::U64(0) => retried += 1,
                    Some(_) => {}
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} messages never handled, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        eprintln!("{n} messages, {kills} consumer kills, {retried} handled on a retry");
        backend.close().await;
    });
}

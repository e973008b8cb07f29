//! Rough throughput numbers, printed (not asserted: machines differ). Runs a
//! short version by default and a longer one with `KV_SLOW_TESTS=1`; use
//! `cargo test --release -p kv-redb perf -- --nocapture` to read them.

use std::time::Instant;

use kv_core::{Kv, KvValue, key};
use kv_redb::RedbConfig;

use crate::{TempDb, TestResult, slow};

/// Sequential gets, reported as the best of several rounds (the machine may
/// be shared).
async fn get_rate(label: &str) -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    let mut op = kv.atomic();
    for i in 0..100u64 {
        op.set(key!["k", i], KvValue::U64(i));
    }
    op.commit().await?;
    let (rounds, n) = if slow() { (20, 20_000) } else { (3, 2_000) };
    let mut best = 0f64;
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..n {
            let entry = kv.get(key!["k", i % 100]).await?;
            assert!(entry.is_some());
        }
        best = best.max(f64::from(n) / start.elapsed().as_secs_f64());
    }
    eprintln!("{label}: sequential gets, best of {rounds} x {n}: {best:.0}/s");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_get_rate() -> TestResult {
    get_rate("tokio multi-thread").await
}

#[tokio::test]
async fn sequential_get_rate_current_thread() -> TestResult {
    get_rate("tokio current-thread").await
}

#[test]
fn sequential_get_rate_block_on() -> TestResult {
    futures::executor::block_on(get_rate("futures block_on"))
}

/// Durable commits of 64 concurrent writers, `per_writer` each, through a
/// backend that groups at most `max_batch` writes per transaction.
async fn commit_rate(max_batch: usize, per_writer: u64) -> TestResult {
    let db = TempDb::new()?;
    let kv = Kv::new(
        RedbConfig::new(db.path())
            .with_max_batch(max_batch)
            .open()?,
    );
    let writers = 64u64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    kv.set(key!["w", w, i], KvValue::U64(i)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    let n = writers * per_writer;
    eprintln!(
        "{n} durable commits by {writers} writers, at most {max_batch} per transaction, \
         in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
    kv.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commit_rate() -> TestResult {
    commit_rate(256, if slow() { 500 } else { 20 }).await
}

/// The same without group commit: one transaction and one fsync per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commit_rate_without_grouping() -> TestResult {
    commit_rate(1, if slow() { 50 } else { 5 }).await
}

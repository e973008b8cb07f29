//! Rough throughput numbers, printed (not asserted: machines differ). The
//! callers run a short version by default and a longer one with
//! `KV_SLOW_TESTS=1`; `cargo test --release -p kv-sqlite perf --
//! --nocapture` shows them.

use std::time::Instant;

use anyhow::ensure;
use kv_core::{Kv, KvValue, key};

use super::{FileBackend, OpenOptions, TempDb};

/// Sequential gets of 100 keys, `n` per round, reported as the best of
/// `rounds` (the machine may be shared) under `label`.
///
/// # Errors
/// When a get fails or misses.
pub async fn get_rate(
    b: &'static dyn FileBackend,
    label: &str,
    rounds: u32,
    n: u32,
) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    let mut op = kv.atomic();
    for i in 0..100u64 {
        op.set(key!["k", i], KvValue::U64(i));
    }
    op.commit().await?;
    let mut best = 0f64;
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..n {
            let entry = kv.get(key!["k", u64::from(i % 100)]).await?;
            ensure!(entry.is_some(), "k/{} is missing", i % 100);
        }
        best = best.max(f64::from(n) / start.elapsed().as_secs_f64());
    }
    eprintln!("{label}: sequential gets, best of {rounds} x {n}: {best:.0}/s");
    kv.close().await;
    Ok(())
}

/// Durable commits of 64 concurrent tokio tasks, `per_writer` each, through
/// a backend that groups at most `max_batch` writes per transaction.
///
/// # Errors
/// When a commit fails.
pub async fn commit_rate(
    b: &'static dyn FileBackend,
    max_batch: usize,
    per_writer: u64,
) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = Kv::from_arc(db.open(&OpenOptions::default().with_max_batch(max_batch))?);
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

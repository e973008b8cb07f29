//! Rough throughput numbers, printed (not asserted: machines differ). Runs a
//! short version by default and a longer one with `KV_SLOW_TESTS=1`; use
//! `cargo test --release -p kv-sqlite perf -- --nocapture` to read them.

use kv_conformance::durable::{perf, slow};

use crate::{Sqlite, TestResult};

/// Sequential gets, reported as the best of several rounds.
async fn get_rate(label: &str) -> TestResult {
    let (rounds, n) = if slow() { (20, 10_000) } else { (2, 2_000) };
    perf::get_rate(&Sqlite, label, rounds, n).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commit_rate() -> TestResult {
    perf::commit_rate(&Sqlite, 256, if slow() { 500 } else { 20 }).await
}

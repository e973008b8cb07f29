//! Rough throughput numbers, printed (not asserted: machines differ). Runs a
//! short version by default and a longer one with `KV_SLOW_TESTS=1`; use
//! `cargo test --release -p kv-redb perf -- --nocapture` to read them.

use kv_conformance::durable::{perf, slow};

use crate::{Redb, TestResult};

/// Sequential gets, reported as the best of several rounds.
async fn get_rate(label: &str) -> TestResult {
    let (rounds, n) = if slow() { (20, 20_000) } else { (3, 2_000) };
    perf::get_rate(&Redb, label, rounds, n).await
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
    perf::commit_rate(&Redb, 256, if slow() { 500 } else { 20 }).await
}

/// The same without group commit: one transaction and one fsync per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commit_rate_without_grouping() -> TestResult {
    perf::commit_rate(&Redb, 1, if slow() { 50 } else { 5 }).await
}

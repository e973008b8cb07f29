//! Many concurrent writers share transactions (group commit) without
//! affecting each other; see `kv_conformance::durable::group_commit`.

use kv_conformance::durable::{group_commit, slow};
use kv_core::Kv;
use kv_sqlite::SqliteConfig;

use crate::{Sqlite, TestResult};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits() -> TestResult {
    let commits = if slow() { 200 } else { 50 };
    group_commit::concurrent_writers_share_commits(&Sqlite, commits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_of_one_behave_the_same() -> TestResult {
    group_commit::batches_of_one_behave_the_same(&Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_group_commit() -> TestResult {
    let kv = Kv::new(SqliteConfig::in_memory().open()?);
    group_commit::run_writers(&kv, 10).await?;
    Ok(())
}

#[tokio::test]
async fn failed_write_leaves_nothing() -> TestResult {
    group_commit::failed_write_leaves_nothing(&Sqlite).await
}

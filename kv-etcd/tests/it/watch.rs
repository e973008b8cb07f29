//! Watches across clients and across member failures.

use std::time::Duration;

use anyhow::{Context, ensure};
use futures::{Stream, StreamExt};
use kv_core::{KvEntry, KvValue, Result as KvResult, key};

use crate::{Cluster, TestResult};

type Snapshot = Vec<Option<KvEntry>>;

async fn next<S: Stream<Item = KvResult<Snapshot>> + Unpin>(s: &mut S) -> anyhow::Result<Snapshot> {
    let item = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .context("no watch emission within 10 s")?;
    Ok(item.context("watch stream ended")??)
}

/// Waits until the watch shows `want` for its one key.
async fn until<S: Stream<Item = KvResult<Snapshot>> + Unpin>(s: &mut S, want: u64) -> TestResult {
    loop {
        let snap = next(s).await?;
        if snap[0].as_ref().map(|e| e.value.clone()) == Some(KvValue::U64(want)) {
            return Ok(());
        }
    }
}

/// A watch in one client sees commits of another, and keeps doing so while
/// each member in turn is killed and restarted (the watch's own stream
/// breaks when its member dies and is resumed on another).
#[tokio::test]
async fn watch_follows_another_client_through_member_restarts() -> TestResult {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let config = cluster.config()?;
    let watcher = kv_core::Kv::new(config.clone().connect().await?);
    let writer = kv_core::Kv::new(config.connect().await?);
    let mut w = Box::pin(watcher.watch(&[key!["n"]])?);
    ensure!(next(&mut w).await?[0].is_none(), "first emission: absent");
    writer.set(key!["n"], KvValue::U64(0)).await?;
    until(&mut w, 0).await?;
    for member in 0..3 {
        cluster.kill(member)?;
        let want = member as u64 + 1;
        // Writes may fail while a new leader is elected.
        let mut tries = 0;
        while writer.set(key!["n"], KvValue::U64(want)).await.is_err() {
            tries += 1;
            ensure!(tries < 100, "no write accepted with one member down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until(&mut w, want).await?;
        cluster.restart(member)?;
        cluster.wait_healthy().await?;
    }
    watcher.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    ensure!(matches!(end, Ok(None)), "close ends the stream");
    Ok(())
}

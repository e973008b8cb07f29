//! Watch streams: this handle's commits, other handles' commits on the same
//! file (as another process would make them), and the end on close.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_conformance::durable::watch;
use kv_core::{KvValue, key};

use crate::{Sqlite, TestResult, temp_db};

/// How soon another connection's commit must reach a watcher.
const CROSS_PROCESS_LATENCY: Duration = Duration::from_millis(100);

#[tokio::test]
async fn watch_sees_own_commits_and_ends_on_close() -> TestResult {
    watch::watch_sees_own_commits_and_ends_on_close(&Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_other_connections_within_100ms() -> TestResult {
    let db = temp_db()?;
    let watcher = db.kv()?;
    let other = db.kv()?;
    let mut watch = Box::pin(watcher.watch(&[key!["shared"]])?);
    assert_eq!(watch.next().await.expect("first snapshot")?, vec![None]);

    for i in 0..5u64 {
        let stamp = other.set(key!["shared"], KvValue::U64(i)).await?;
        let written = Instant::now();
        let snapshot = tokio::time::timeout(CROSS_PROCESS_LATENCY, watch.next())
            .await
            .map_err(|_| anyhow::anyhow!("write {i} not seen within {CROSS_PROCESS_LATENCY:?}"))?
            .expect("open")?;
        let entry = snapshot[0].as_ref().expect("written");
        assert_eq!(
            (entry.value.clone(), entry.versionstamp),
            (KvValue::U64(i), stamp)
        );
        eprintln!("cross-connection watch latency: {:?}", written.elapsed());
    }
    // And the other way round, through reads: both handles agree.
    let stamp = watcher.set(key!["back"], KvValue::U64(9)).await?;
    assert_eq!(
        other
            .get(key!["back"])
            .await?
            .expect("visible")
            .versionstamp,
        stamp
    );
    Ok(())
}

//! Watch streams: this handle's commits reach watchers at once, and streams
//! end on close. (No other process can commit to the file: redb locks it,
//! see `lock.rs`.)

use std::time::Duration;

use futures::StreamExt;
use kv_conformance::durable::watch;
use kv_core::{KvValue, key};

use crate::{Redb, TestResult, temp_db};

#[tokio::test]
async fn watch_sees_own_commits_and_ends_on_close() -> TestResult {
    watch::watch_sees_own_commits_and_ends_on_close(&Redb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_of_one_key_see_the_last_of_many_writes() -> TestResult {
    let db = temp_db()?;
    let kv = db.kv()?;
    let mut watchers = Vec::new();
    for _ in 0..4 {
        let mut w = Box::pin(kv.watch(&[key!["n"]])?);
        assert_eq!(w.next().await.expect("first")?, vec![None]);
        watchers.push(w);
    }
    let writers: Vec<_> = (0..8u64)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    kv.atomic().sum(key!["n"], 1).commit().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    // Snapshots may coalesce, but each watcher reaches the final state.
    for mut w in watchers {
        loop {
            let snapshot = tokio::time::timeout(Duration::from_secs(2), w.next())
                .await?
                .expect("open")?;
            if snapshot[0].as_ref().map(|e| e.value.clone()) == Some(KvValue::U64(80)) {
                break;
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn versionstamped_keys_wake_their_watchers() -> TestResult {
    let db = temp_db()?;
    let kv = db.kv()?;
    // The versionstamp of the next commit is the counter plus one.
    let last = kv.set(key!["x"], KvValue::U64(0)).await?;
    let next = kv_core::Versionstamp::from_counter(last.counter() + 1);
    let target = key!["log", next.to_string()];
    let mut watch = Box::pin(kv.watch(std::slice::from_ref(&target))?);
    assert_eq!(watch.next().await.expect("first")?, vec![None]);
    let stamp = kv
        .atomic()
        .set_versionstamped(key!["log"], KvValue::U64(1), Default::default())
        .commit()
        .await?
        .versionstamp()
        .expect("no checks");
    assert_eq!(stamp, next);
    let snapshot = tokio::time::timeout(Duration::from_secs(1), watch.next())
        .await?
        .expect("open")?;
    assert_eq!(snapshot[0].as_ref().map(|e| e.versionstamp), Some(stamp));
    Ok(())
}

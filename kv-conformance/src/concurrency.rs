//! Concurrent clients: optimistic concurrency must not lose updates.

use anyhow::ensure;
use kv_core::{Kv, KvValue, key};

use crate::Cx;

declare_cases!("concurrency":
    concurrent_check_and_set_incrementers,
    concurrent_sums_are_all_applied,
    concurrent_writers_get_distinct_versionstamps,
);

async fn increment(kv: Kv) -> anyhow::Result<u32> {
    let mut retries = 0;
    loop {
        let current = kv.get(key!["counter"]).await?;
        let n = match current.as_ref().map(|e| &e.value) {
            Some(KvValue::U64(n)) => *n,
            None => 0,
            Some(other) => anyhow::bail!("unexpected {other:?}"),
        };
        let o = kv
            .atomic()
            .check(key!["counter"], current.map(|e| e.versionstamp))
            .set(key!["counter"], KvValue::U64(n + 1))
            .commit()
            .await?;
        if o.is_ok() {
            return Ok(retries);
        }
        retries += 1;
    }
}

async fn concurrent_check_and_set_incrementers(cx: Cx) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let kv = cx.kv.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    increment(kv.clone()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let v = cx.kv.get(key!["counter"]).await?.map(|e| e.value);
    ensure!(v == Some(KvValue::U64(100)), "20 × 5 increments, got {v:?}");
    Ok(())
}

async fn concurrent_sums_are_all_applied(cx: Cx) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let kv = cx.kv.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    kv.atomic().sum(key!["sum"], 1).commit().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    ensure!(cx.kv.get(key!["sum"]).await?.map(|e| e.value) == Some(KvValue::U64(100)));
    Ok(())
}

async fn concurrent_writers_get_distinct_versionstamps(cx: Cx) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let kv = cx.kv.clone();
            tokio::spawn(async move {
                let mut stamps = Vec::new();
                for j in 0..10u64 {
                    stamps.push(kv.set(key!["w", i, j], KvValue::U64(j)).await?);
                }
                anyhow::Ok(stamps)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let stamps = t.await??;
        ensure!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "one writer's stamps increase"
        );
        all.extend(stamps);
    }
    let n = all.len();
    all.sort();
    all.dedup();
    ensure!(all.len() == n, "every commit has its own versionstamp");
    Ok(())
}

//! etcd's `--max-txn-ops`: Deno's limits need 2048; a cluster configured
//! lower refuses large commits with a clear `LimitExceeded`.

use anyhow::ensure;
use kv_core::{Error, KvValue, Limit, key};

use crate::{Cluster, TestResult};

#[tokio::test]
async fn a_cluster_at_etcds_default_refuses_large_commits_clearly() -> TestResult {
    let Some(cluster) = Cluster::start_with(1, 128)? else {
        return Ok(());
    };
    let (kv, _clock) = cluster.kv_with_clock().await?;
    // 127 keys and the commit marker: 128 operations fit.
    let mut op = kv.atomic();
    for i in 0..127u64 {
        op.set(key!["m", i], KvValue::U64(i));
    }
    ensure!(op.commit().await?.is_ok());
    for n in [200u64, 1000] {
        let mut op = kv.atomic();
        for i in 0..n {
            op.sum(key!["s", i], 1);
        }
        match op.commit().await {
            Err(Error::LimitExceeded {
                limit: Limit::Mutations,
                max: 128,
                actual,
            }) if actual == n + 1 => {}
            other => anyhow::bail!("{n} sums: expected LimitExceeded(max 128), got {other:?}"),
        }
    }
    ensure!(kv.get(key!["s", 0u64]).await?.is_none(), "nothing written");
    // Checks count too: 100 checks and the marker.
    let mut op = kv.atomic();
    for i in 0..100u64 {
        op.check(key!["m", i], None);
    }
    ensure!(
        op.commit().await?.versionstamp().is_none(),
        "checks failed, no error"
    );
    Ok(())
}

#[tokio::test]
async fn the_recommended_cluster_takes_denos_largest_commits() -> TestResult {
    let Some(cluster) = Cluster::start_with(1, 2048)? else {
        return Ok(());
    };
    let (kv, _clock) = cluster.kv_with_clock().await?;
    // 1000 sums read 1000 keys, compare them and write them: the most
    // operations a commit can need, with 100 checks besides.
    let mut op = kv.atomic();
    for i in 0..100u64 {
        op.check(key!["c", i], None);
    }
    for i in 0..1000u64 {
        op.sum(key!["s", i], i);
    }
    ensure!(op.commit().await?.is_ok());
    ensure!(kv.get(key!["s", 999u64]).await?.map(|e| e.value) == Some(KvValue::U64(999)));
    // 800 KiB in one commit fits etcd's default --max-request-bytes.
    let mut op = kv.atomic();
    for i in 0..13u8 {
        op.set(key!["big", i], KvValue::Bytes(vec![i; 62_000]));
    }
    ensure!(op.commit().await?.is_ok());
    Ok(())
}

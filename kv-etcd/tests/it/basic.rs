//! Opening, the data layout, versionstamps from revisions, concurrency
//! between separate clients, expiry through leases.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use kv_core::{
    Backend, CommitOutcome, Consistency, Error, Key, KeyPart, Kv, KvValue, ListOptions, Selector,
    SetOptions, Versionstamp, key,
};
use kv_etcd::{EtcdBackend, EtcdConfig};

use crate::{Cluster, TestResult, slow};

#[tokio::test]
async fn urls_are_parsed_and_checked() -> TestResult {
    let c = EtcdConfig::from_url("etcd://a:1,b:2/app/kv/")?;
    ensure!(c.endpoints() == ["a:1", "b:2"] && c.prefix() == "app/kv");
    let c = EtcdConfig::from_url("etcd://a:1")?;
    ensure!(c.prefix() == kv_etcd::DEFAULT_PREFIX);
    for bad in ["etcd://", "etcd:///x", "redb://x", "etcd://a b:1/x"] {
        ensure!(
            matches!(EtcdConfig::from_url(bad), Err(Error::InvalidArgument(_))),
            "{bad} is refused"
        );
    }
    Ok(())
}

#[tokio::test]
async fn no_cluster_is_unavailable_not_a_hang() -> TestResult {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let r = EtcdConfig::new([format!("127.0.0.1:{port}")], "x")
        .with_request_timeout(Duration::from_secs(1))
        .with_connect_timeout(Duration::from_millis(300))
        .connect()
        .await;
    ensure!(
        matches!(r, Err(Error::Unavailable { .. })),
        "got {:?}",
        r.map(|_| ())
    );
    ensure!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn layout_versionstamps_and_concurrency() -> TestResult {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    layout_is_documented(&cluster).await?;
    stamps_are_cluster_revisions(&cluster).await?;
    separate_clients_sum_exactly(&cluster).await?;
    versionstamped_commits_under_write_load(&cluster).await?;
    eventual_reads_answer(&cluster).await?;
    close_is_final(&cluster).await?;
    Ok(())
}

/// Values at `P/d/<key>`, the commit marker at `P/c`, records as the
/// crate docs describe them.
async fn layout_is_documented(cluster: &Cluster) -> TestResult {
    let backend = EtcdConfig::from_url(&cluster.url("layout/test"))?
        .connect()
        .await?;
    let kv = Kv::new(backend.clone());
    let stamp = kv.set(key!["a"], KvValue::U64(7)).await?;
    let mut client = backend.client().clone();
    let mut raw = b"layout/test/d/".to_vec();
    raw.extend(key!["a"].encode()?);
    let got = client.get(raw, None).await?;
    let kv0 = got.kvs().first().context("the value is at P/d/<key>")?;
    ensure!(kv0.value() == [1, 2, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    ensure!(Versionstamp::from_counter(kv0.mod_revision() as u64) == stamp);
    let marker = client.get("layout/test/c", None).await?;
    ensure!(
        marker.kvs().first().map(|m| m.mod_revision()) == Some(kv0.mod_revision()),
        "the commit wrote the marker"
    );
    Ok(())
}

async fn stamps_are_cluster_revisions(cluster: &Cluster) -> TestResult {
    // Two databases on one cluster share its revision counter.
    let a = Kv::new(cluster.backend().await?);
    let b = Kv::new(cluster.backend().await?);
    let mut last = Versionstamp::ZERO;
    for i in 0..5u64 {
        for kv in [&a, &b] {
            let s = kv.set(key!["k", i], KvValue::U64(i)).await?;
            ensure!(s > last, "stamps increase across databases");
            ensure!(s.0[8..] == [0, 0]);
            last = s;
        }
    }
    // One commit, one stamp for every key.
    let o = a
        .atomic()
        .set(key!["x"], KvValue::U64(1))
        .sum(key!["n"], 2)
        .delete(key!["k", 0u64])
        .set_versionstamped(key!["log"], KvValue::U64(3), SetOptions::default())
        .commit()
        .await?;
    let s = o.versionstamp().context("committed")?;
    ensure!(s > last);
    for k in [key!["x"], key!["n"]] {
        ensure!(a.get(k).await?.map(|e| e.versionstamp) == Some(s));
    }
    let log = a
        .list(Selector::prefix(key!["log"]), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(log.len() == 1 && log[0].versionstamp == s);
    ensure!(log[0].key.0.last() == Some(&KeyPart::String(s.to_string())));
    // A commit that changes nothing visible still gets a new stamp.
    let s2 = a.atomic().delete(key!["absent"]).commit().await?;
    ensure!(s2.versionstamp() > Some(s));
    Ok(())
}

/// Separate connections (as separate processes would have) summing one
/// counter: optimistic concurrency loses no update.
async fn separate_clients_sum_exactly(cluster: &Cluster) -> TestResult {
    let config = cluster.config()?;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let kv = Kv::new(config.clone().connect().await?);
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                kv.atomic()
                    .sum(key!["counter"], 1)
                    .max(key!["max"], 5)
                    .commit()
                    .await?;
            }
            kv.close().await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let kv = Kv::new(config.connect().await?);
    let v = kv.get(key!["counter"]).await?.map(|e| e.value);
    ensure!(v == Some(KvValue::U64(100)), "4 × 25 sums, got {v:?}");
    Ok(())
}

/// Versionstamped commits compete with plain writes for the commit marker;
/// they still commit, and their stamps keep the order of acknowledgement.
async fn versionstamped_commits_under_write_load(cluster: &Cluster) -> TestResult {
    let config = cluster.config()?;
    let writer = Kv::new(config.clone().connect().await?);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer.set(key!["load", n % 10], KvValue::U64(n)).await?;
                n += 1;
            }
            anyhow::Ok(n)
        })
    };
    let kv = Kv::new(config.connect().await?);
    let mut stamps = Vec::new();
    for i in 0..20u64 {
        let o = kv
            .atomic()
            .set_versionstamped(key!["q"], KvValue::U64(i), SetOptions::default())
            .commit()
            .await?;
        stamps.push(o.versionstamp().context("committed")?);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let plain = load.await??;
    ensure!(stamps.windows(2).all(|w| w[0] < w[1]));
    let listed = kv
        .list(Selector::prefix(key!["q"]), ListOptions::default())
        .collect_all()
        .await?;
    let listed: Vec<Versionstamp> = listed.iter().map(|e| e.versionstamp).collect();
    ensure!(listed == stamps, "keys in commit order");
    ensure!(plain > 0);
    Ok(())
}

async fn eventual_reads_answer(cluster: &Cluster) -> TestResult {
    let backend = cluster.backend().await?;
    let kv = Kv::new(backend.clone());
    kv.set(key!["e"], KvValue::U64(1)).await?;
    let raw = backend
        .snapshot_read(
            vec![kv_core::backend::point_range(&key!["e"].encode()?)],
            Consistency::Eventual,
        )
        .await?;
    // A serializable read may lag, but on a healthy loopback cluster the
    // write is applied everywhere within moments.
    ensure!(raw.len() == 1);
    let listed = kv
        .list(
            Selector::prefix(Key::empty()),
            ListOptions::default().with_consistency(Consistency::Eventual),
        )
        .collect_all()
        .await?;
    ensure!(listed.len() <= 1);
    Ok(())
}

async fn close_is_final(cluster: &Cluster) -> TestResult {
    let backend: EtcdBackend = cluster.backend().await?;
    backend.close().await;
    backend.close().await;
    let r = backend
        .atomic_write(kv_core::backend::AtomicWrite::default())
        .await;
    ensure!(matches!(r, Err(Error::Closed)));
    Ok(())
}

/// Expired keys vanish from reads at once (by the handle's clock) and from
/// etcd when their lease ends, within a 10-second window plus a second.
#[tokio::test]
async fn expiry_hides_at_once_and_leases_collect() -> TestResult {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let (kv, clock) = cluster.kv_with_clock().await?;
    let expiring = SetOptions::default().with_expire_in(Duration::from_millis(500));
    kv.set_with(key!["t", 1], KvValue::U64(1), expiring).await?;
    kv.set_with(key!["t", 2], KvValue::U64(2), expiring).await?;
    kv.set(key!["t", 3], KvValue::U64(3)).await?;
    clock.advance(1_000);
    ensure!(kv.get(key!["t", 1]).await?.is_none());
    let listed = kv
        .list(
            Selector::prefix(key!["t"]),
            ListOptions::default().with_limit(1),
        )
        .collect_all()
        .await?;
    ensure!(
        listed.len() == 1 && listed[0].key == key!["t", 3],
        "a limited list reads past expired keys"
    );
    // The expired key is still in etcd, attached to a lease.
    let backend = kv.backend().clone();
    let o = kv
        .atomic()
        .check(key!["t", 1], None)
        .sum(key!["t", 2], 5)
        .commit()
        .await?;
    ensure!(o.is_ok(), "expired keys are absent for checks and sums");
    ensure!(kv.get(key!["t", 2]).await?.map(|e| e.value) == Some(KvValue::U64(5)));
    drop(backend);
    if slow() {
        // Wait for etcd to delete `t/1` (real time: within about 11 s).
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut client = cluster.member_client(0).await?;
        loop {
            let all = client
                .get("it/", Some(etcd_client::GetOptions::new().with_prefix()))
                .await?;
            let expiring_left = all.kvs().iter().filter(|kv| kv.lease() != 0).count();
            if expiring_left == 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "leases did not delete expired keys"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    ensure!(matches!(
        kv.atomic().commit().await?,
        CommitOutcome::Committed { .. }
    ));
    Ok(())
}

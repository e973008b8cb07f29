//! Expired keys disappear from reads and checks at once and from the file
//! soon after, driven by a manual clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{KvValue, ListOptions, ManualClock, Selector, SetOptions, key};

use crate::{TempDb, TestResult};

const START: u64 = 1_700_000_000_000;

fn expire_in(ms: u64) -> SetOptions {
    SetOptions::default().with_expire_in(Duration::from_millis(ms))
}

/// Waits (in real time) until `f` holds, for at most two seconds.
async fn eventually(mut f: impl FnMut() -> anyhow::Result<bool>) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !f()? {
        anyhow::ensure!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn expired_keys_are_hidden_then_swept() -> TestResult {
    let db = TempDb::new()?;
    let clock = Arc::new(ManualClock::new(START));
    let kv = db.kv_with_clock(clock.clone())?;
    let stamp = kv
        .set_with(key!["tmp", 1], KvValue::U64(1), expire_in(1000))
        .await?;
    kv.set(key!["tmp", 2], KvValue::U64(2)).await?;
    let raw = db.raw()?;
    let expiration: i64 = raw.query_row(
        "select expiration_ms from kv where version = ?1",
        [stamp.counter() as i64],
        |r| r.get(0),
    )?;
    assert_eq!(expiration as u64, START + 1000);

    let mut watch = Box::pin(kv.watch(&[key!["tmp", 1]])?);
    let first = watch.next().await.expect("first snapshot")?;
    assert_eq!(first[0].as_ref().map(|e| e.versionstamp), Some(stamp));

    clock.set(START + 999);
    assert!(
        kv.get(key!["tmp", 1]).await?.is_some(),
        "not expired before its time"
    );

    clock.set(START + 1000);
    assert_eq!(kv.get(key!["tmp", 1]).await?, None);
    let listed = kv
        .list(Selector::prefix(key!["tmp"]), ListOptions::default())
        .collect_all()
        .await?;
    assert_eq!(
        listed.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        vec![key!["tmp", 2]]
    );
    // An expired key is absent for checks too.
    let stale = kv
        .atomic()
        .check(key!["tmp", 1], Some(stamp))
        .commit()
        .await?;
    assert!(!stale.is_ok());

    // The sweep deletes the row, advances the counter and wakes the watcher.
    let snapshot = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await?
        .expect("stream open")?;
    assert_eq!(snapshot[0], None);
    eventually(|| {
        let n: i64 = raw.query_row(
            "select count(*) from kv where expiration_ms >= 0",
            [],
            |r| r.get(0),
        )?;
        Ok(n == 0)
    })
    .await?;
    let next = kv.set(key!["after"], KvValue::U64(0)).await?;
    // One more set, the failed check took no step and the sweep took one.
    assert_eq!(next.counter(), stamp.counter() + 3);
    Ok(())
}

#[tokio::test]
async fn checks_and_sums_treat_expired_keys_as_absent() -> TestResult {
    let db = TempDb::new()?;
    let clock = Arc::new(ManualClock::new(START));
    let kv = db.kv_with_clock(clock.clone())?;
    kv.set_with(key!["n"], KvValue::U64(40), expire_in(10))
        .await?;
    kv.set_with(key!["gone"], KvValue::U64(1), expire_in(10))
        .await?;
    clock.advance(10);

    let created = kv
        .atomic()
        .check(key!["gone"], None)
        .sum(key!["n"], 2)
        .commit()
        .await?;
    assert!(
        created.is_ok(),
        "an expired key must pass a must-not-exist check"
    );
    let n = kv.get(key!["n"]).await?.expect("summed");
    assert_eq!(n.value, KvValue::U64(2), "the sum starts from absent");

    // sum/min/max clear an expiry.
    kv.set_with(key!["m"], KvValue::U64(5), expire_in(10))
        .await?;
    kv.atomic().max(key!["m"], 7).commit().await?;
    clock.advance(100);
    assert_eq!(
        kv.get(key!["m"]).await?.expect("no longer expires").value,
        KvValue::U64(7)
    );
    let raw = db.raw()?;
    let expirations: Vec<i64> = raw
        .prepare("select expiration_ms from kv where k = ?1")?
        .query_map([key!["m"].encode()?], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(expirations, vec![-1]);
    Ok(())
}

#[tokio::test]
async fn expired_rows_are_swept_at_open() -> TestResult {
    let db = TempDb::new()?;
    let clock = Arc::new(ManualClock::new(START));
    {
        let kv = db.kv_with_clock(clock.clone())?;
        kv.set_with(key!["old"], KvValue::U64(1), expire_in(5))
            .await?;
        kv.close().await;
    }
    clock.advance(5);
    let kv = db.kv_with_clock(clock.clone())?;
    let raw = db.raw()?;
    eventually(|| Ok(raw.query_row("select count(*) from kv", [], |r| r.get::<_, i64>(0))? == 0))
        .await?;
    kv.close().await;
    Ok(())
}

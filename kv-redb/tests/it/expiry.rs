//! Expired keys disappear from reads and checks at once and from the file
//! soon after, driven by a manual clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{KvValue, ListOptions, ManualClock, Selector, SetOptions, key};

use crate::{TempDb, TestResult, raw};

const START: u64 = 1_700_000_000_000;

fn expire_in(ms: u64) -> SetOptions {
    SetOptions::default().with_expire_in(Duration::from_millis(ms))
}

/// Waits (in real time) until `f` holds, for at most two seconds.
async fn eventually(mut f: impl AsyncFnMut() -> anyhow::Result<bool>) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !f().await? {
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

    // The sweep deletes the key, advances the counter and wakes the watcher.
    let snapshot = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await?
        .expect("stream open")?;
    assert_eq!(snapshot[0], None);
    let next = kv.set(key!["after"], KvValue::U64(0)).await?;
    // One more set, the failed check took no step and the sweep took one.
    assert_eq!(next.counter(), stamp.counter() + 3);
    kv.close().await;

    let raw = raw::inspect(db.path())?;
    assert_eq!((raw.keys, raw.expiry_entries), (2, 0));
    assert_eq!(raw.counter, next.counter());
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

    // sum/min/max clear an expiry, and so does a plain set.
    kv.set_with(key!["m"], KvValue::U64(5), expire_in(10))
        .await?;
    kv.atomic().max(key!["m"], 7).commit().await?;
    kv.set_with(key!["s"], KvValue::U64(5), expire_in(10))
        .await?;
    kv.set(key!["s"], KvValue::U64(6)).await?;
    clock.advance(100);
    assert_eq!(
        kv.get(key!["m"]).await?.expect("no longer expires").value,
        KvValue::U64(7)
    );
    assert_eq!(
        kv.get(key!["s"]).await?.expect("no longer expires").value,
        KvValue::U64(6)
    );
    kv.close().await;
    // Only "gone" still has an index entry (it was never swept before the
    // close, or the sweep removed it); the rewritten keys have none.
    let raw = raw::inspect(db.path())?;
    assert!(raw.expiry_entries <= 1, "{} entries", raw.expiry_entries);
    Ok(())
}

#[tokio::test]
async fn expired_keys_are_swept_at_open() -> TestResult {
    let db = TempDb::new()?;
    let clock = Arc::new(ManualClock::new(START));
    {
        let kv = db.kv_with_clock(clock.clone())?;
        kv.set_with(key!["old"], KvValue::U64(1), expire_in(5))
            .await?;
        kv.set_with(key!["new"], KvValue::U64(1), expire_in(50))
            .await?;
        kv.close().await;
    }
    clock.advance(5);
    let kv = db.kv_with_clock(clock.clone())?;
    // The writer sweeps before it serves the first write.
    let probe = kv.set(key!["probe"], KvValue::U64(0)).await?;
    assert_eq!(probe.counter(), 4, "two sets, the sweep, the probe");
    kv.close().await;
    let raw = raw::inspect(db.path())?;
    assert_eq!((raw.keys, raw.expiry_entries), (2, 1), "old is gone");
    Ok(())
}

#[tokio::test]
async fn many_expired_keys_are_swept_in_chunks() -> TestResult {
    let db = TempDb::new()?;
    let clock = Arc::new(ManualClock::new(START));
    let kv = db.kv_with_clock(clock.clone())?;
    let n = 3000u64;
    for chunk in 0..n / 500 {
        let mut op = kv.atomic();
        for i in chunk * 500..(chunk + 1) * 500 {
            op.set_with(key!["e", i], KvValue::U64(i), expire_in(10 + i % 7));
        }
        op.commit().await?;
    }
    let before = kv.set(key!["keep"], KvValue::U64(1)).await?;
    clock.advance(100);
    assert!(
        kv.list(Selector::prefix(key!["e"]), ListOptions::default())
            .collect_all()
            .await?
            .is_empty()
    );
    // Each sweep transaction deletes at most 1024 keys and takes one step
    // of the counter: 3000 keys take three.
    let mut ticks = 0;
    eventually(async || {
        let stamp = kv.set(key!["tick"], KvValue::U64(0)).await?;
        ticks += 1;
        Ok(stamp.counter() == before.counter() + ticks + 3)
    })
    .await?;
    kv.close().await;
    let raw = raw::inspect(db.path())?;
    assert_eq!((raw.keys, raw.expiry_entries), (2, 0));
    Ok(())
}

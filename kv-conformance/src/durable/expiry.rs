//! Expired keys disappear from reads and checks at once and from the file
//! soon after, driven by a manual clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::StreamExt;
use kv_core::{KvValue, ListOptions, ManualClock, Selector, SetOptions, key};

use super::{FileBackend, TempDb};

/// Where the manual clock of these tests starts, in Unix ms.
pub const START: u64 = 1_700_000_000_000;

/// Set options that expire the key `ms` after the clock's now.
pub fn expire_in(ms: u64) -> SetOptions {
    SetOptions::default().with_expire_in(Duration::from_millis(ms))
}

/// Waits (in real time) until `f` holds, for at most two seconds.
///
/// # Errors
/// When `f` fails, or does not hold within two seconds.
pub async fn eventually(mut f: impl AsyncFnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !f().await? {
        ensure!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A key is visible until its expiry and absent from gets, lists and
/// checks from that moment; the sweep then deletes it, takes one
/// versionstamp and wakes its watcher.
///
/// # Errors
/// When the key shows too long or too short, or the file keeps it.
pub async fn expired_keys_are_hidden_then_swept(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let clock = Arc::new(ManualClock::new(START));
    let kv = db.kv_with_clock(clock.clone())?;
    let stamp = kv
        .set_with(key!["tmp", 1], KvValue::U64(1), expire_in(1000))
        .await?;
    kv.set(key!["tmp", 2], KvValue::U64(2)).await?;
    // The file records the absolute expiry (read closed: redb locks it).
    kv.close().await;
    let expirations = db.inspect()?.expirations;
    ensure!(
        expirations == BTreeMap::from([(key!["tmp", 1].encode()?, START + 1000)]),
        "{expirations:?}"
    );
    let kv = db.kv_with_clock(clock.clone())?;

    let mut watch = kv.watch(&[key!["tmp", 1]])?;
    let first = watch.next().await.context("first snapshot")??;
    ensure!(
        first[0].as_ref().map(|e| e.versionstamp) == Some(stamp),
        "{first:?}"
    );

    clock.set(START + 999);
    ensure!(
        kv.get(key!["tmp", 1]).await?.is_some(),
        "expired before its time"
    );

    clock.set(START + 1000);
    ensure!(kv.get(key!["tmp", 1]).await?.is_none(), "visible when due");
    let listed: Vec<_> = kv
        .list(Selector::prefix(key!["tmp"]), ListOptions::default())
        .collect_all()
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect();
    ensure!(listed == vec![key!["tmp", 2]], "{listed:?}");
    // An expired key is absent for checks too.
    let stale = kv
        .atomic()
        .check(key!["tmp", 1], Some(stamp))
        .commit()
        .await?;
    ensure!(!stale.is_ok(), "a check saw the expired key");

    // The sweep deletes the key, advances the counter and wakes the watcher.
    let snapshot = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await?
        .context("the stream is open")??;
    ensure!(snapshot[0].is_none(), "{snapshot:?}");
    let next = kv.set(key!["after"], KvValue::U64(0)).await?;
    // One more set, the failed check took no step and the sweep took one.
    ensure!(
        next.counter() == stamp.counter() + 3,
        "{next} after {stamp}"
    );
    kv.close().await;

    let raw = db.inspect()?;
    ensure!(raw.keys == 2, "{} keys: tmp/2 and after", raw.keys);
    ensure!(raw.expirations.is_empty(), "{:?}", raw.expirations);
    ensure!(
        raw.counter == next.counter(),
        "file counter {}",
        raw.counter
    );
    Ok(())
}

/// Checks and `sum` treat an expired key as absent; `sum`/`min`/`max` and a
/// plain set clear an expiry, in the file too.
///
/// # Errors
/// When an expired key counts, or an expiry stays.
pub async fn checks_and_sums_treat_expired_keys_as_absent(
    b: &'static dyn FileBackend,
) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
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
    ensure!(
        created.is_ok(),
        "an expired key must pass a must-not-exist check"
    );
    let n = kv.get(key!["n"]).await?.context("summed")?;
    ensure!(
        n.value == KvValue::U64(2),
        "the sum starts from absent: {:?}",
        n.value
    );

    // sum/min/max clear an expiry, and so does a plain set.
    kv.set_with(key!["m"], KvValue::U64(5), expire_in(10))
        .await?;
    kv.atomic().max(key!["m"], 7).commit().await?;
    kv.set_with(key!["s"], KvValue::U64(5), expire_in(10))
        .await?;
    kv.set(key!["s"], KvValue::U64(6)).await?;
    clock.advance(100);
    let m = kv.get(key!["m"]).await?.context("m no longer expires")?;
    ensure!(m.value == KvValue::U64(7), "{:?}", m.value);
    let s = kv.get(key!["s"]).await?.context("s no longer expires")?;
    ensure!(s.value == KvValue::U64(6), "{:?}", s.value);
    kv.close().await;
    // Only "gone" may still have an expiry (the sweep may not have run
    // before the close); the rewritten keys have none.
    let expirations = db.inspect()?.expirations;
    let gone = BTreeMap::from([(key!["gone"].encode()?, START + 10)]);
    ensure!(
        expirations.is_empty() || expirations == gone,
        "{expirations:?}"
    );
    Ok(())
}

/// Keys that expired while the file was closed are swept when it opens,
/// before the first write is served; keys not yet due stay.
///
/// # Errors
/// When the sweep does not happen first, or removes the wrong keys.
pub async fn expired_keys_are_swept_at_open(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let clock = Arc::new(ManualClock::new(START));
    {
        let kv = db.kv_with_clock(clock.clone())?;
        kv.set_with(key!["old"], KvValue::U64(1), expire_in(5))
            .await?;
        kv.set_with(key!["new"], KvValue::U64(1), expire_in(50))
            .await?;
        kv.close().await;
    }
    let new = (key!["new"].encode()?, START + 50);
    let expirations = db.inspect()?.expirations;
    ensure!(
        expirations == BTreeMap::from([(key!["old"].encode()?, START + 5), new.clone()]),
        "{expirations:?}"
    );
    clock.advance(5);
    let kv = db.kv_with_clock(clock.clone())?;
    // The writer sweeps before it serves the first write.
    let probe = kv.set(key!["probe"], KvValue::U64(0)).await?;
    ensure!(
        probe.counter() == 4,
        "two sets, the sweep, the probe: {probe}"
    );
    kv.close().await;
    let raw = db.inspect()?;
    ensure!(raw.keys == 2, "{} keys: old is gone", raw.keys);
    ensure!(
        raw.expirations == BTreeMap::from([new]),
        "{:?}",
        raw.expirations
    );
    Ok(())
}

//! Expired keys disappear from reads and checks at once and from the file
//! soon after, driven by a manual clock; see
//! `kv_conformance::durable::expiry`. redb sweeps in chunks, tested here.

use std::sync::Arc;

use kv_conformance::durable::expiry::{self, START, eventually, expire_in};
use kv_core::{KvValue, ListOptions, ManualClock, Selector, key};

use crate::{Redb, TestResult, temp_db};

#[tokio::test]
async fn expired_keys_are_hidden_then_swept() -> TestResult {
    expiry::expired_keys_are_hidden_then_swept(&Redb).await
}

#[tokio::test]
async fn checks_and_sums_treat_expired_keys_as_absent() -> TestResult {
    expiry::checks_and_sums_treat_expired_keys_as_absent(&Redb).await
}

#[tokio::test]
async fn expired_keys_are_swept_at_open() -> TestResult {
    expiry::expired_keys_are_swept_at_open(&Redb).await
}

#[tokio::test]
async fn many_expired_keys_are_swept_in_chunks() -> TestResult {
    let db = temp_db()?;
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
    let raw = db.inspect()?;
    assert_eq!((raw.keys, raw.expirations.len()), (2, 0));
    Ok(())
}

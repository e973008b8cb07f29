//! `expire_in`: keys vanish from reads and checks once they expire.

use std::time::Duration;

use anyhow::{Context, ensure};
use futures::StreamExt;
use kv_core::{CommitOutcome, Key, ListOptions, Selector, SetOptions, key};

use crate::Cx;
use crate::util::b;

declare_cases!("expiry":
    key_is_visible_before_expiry,
    expired_key_is_hidden_from_get_and_list,
    expired_key_counts_as_absent_for_checks,
    overwrite_without_expiry_clears_it,
    overwrite_with_new_expiry_resets_it,
    expiry_in_atomic_applies_to_all_keys,
    zero_expiry_expires_at_once,
    a_watch_sees_its_key_expire,
);

fn expiring(ms: u64) -> SetOptions {
    SetOptions::default().with_expire_in(Duration::from_millis(ms))
}

async fn key_is_visible_before_expiry(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set_with(key!["t"], b("x"), expiring(60_000)).await?;
    cx.advance(100).await;
    ensure!(cx.kv.get(key!["t"]).await?.is_some());
    Ok(())
}

async fn expired_key_is_hidden_from_get_and_list(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set_with(key!["t", 1], b("x"), expiring(300)).await?;
    cx.kv.set(key!["t", 2], b("y")).await?;
    cx.advance(1000).await;
    ensure!(cx.kv.get(key!["t", 1]).await?.is_none());
    let listed = cx
        .kv
        .list(Selector::prefix(key!["t"]), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(listed.len() == 1 && listed[0].key == key!["t", 2]);
    Ok(())
}

async fn expired_key_counts_as_absent_for_checks(cx: Cx) -> anyhow::Result<()> {
    let s = cx.kv.set_with(key!["t"], b("x"), expiring(300)).await?;
    cx.advance(1000).await;
    let o = cx.kv.atomic().check(key!["t"], Some(s)).commit().await?;
    ensure!(o == CommitOutcome::CheckFailed);
    let o = cx
        .kv
        .atomic()
        .check(key!["t"], None)
        .set(key!["t"], b("new"))
        .commit()
        .await?;
    ensure!(
        o.is_ok(),
        "an expired key is absent for a must-not-exist check"
    );
    Ok(())
}

async fn overwrite_without_expiry_clears_it(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set_with(key!["t"], b("x"), expiring(300)).await?;
    cx.kv.set(key!["t"], b("y")).await?;
    cx.advance(1000).await;
    ensure!(cx.kv.get(key!["t"]).await?.map(|e| e.value) == Some(b("y")));
    Ok(())
}

async fn overwrite_with_new_expiry_resets_it(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set_with(key!["t"], b("x"), expiring(300)).await?;
    cx.kv.set_with(key!["t"], b("y"), expiring(60_000)).await?;
    cx.advance(1000).await;
    ensure!(cx.kv.get(key!["t"]).await?.is_some());
    Ok(())
}

async fn expiry_in_atomic_applies_to_all_keys(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .atomic()
        .set_with(key!["t", 1], b("x"), expiring(300))
        .set_with(key!["t", 2], b("x"), expiring(300))
        .set(key!["t", 3], b("x"))
        .commit()
        .await?;
    cx.advance(1000).await;
    let got = cx
        .kv
        .get_many(&[key!["t", 1], key!["t", 2], key!["t", 3]])
        .await?;
    ensure!(got[0].is_none() && got[1].is_none() && got[2].is_some());
    Ok(())
}

async fn zero_expiry_expires_at_once(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set_with(key!["t"], b("x"), expiring(0)).await?;
    cx.advance(10).await;
    ensure!(cx.kv.get(key!["t"]).await?.is_none());
    ensure!(
        cx.kv
            .list(Selector::prefix(Key::empty()), ListOptions::default())
            .collect_all()
            .await?
            .is_empty()
    );
    Ok(())
}

/// A watcher learns that its key expired without any other write: every
/// backend deletes expired keys in the background and wakes their
/// watchers (within milliseconds on the embedded backends; etcd's lease
/// ends up to 11 s after the expiry).
async fn a_watch_sees_its_key_expire(cx: Cx) -> anyhow::Result<()> {
    // On a real clock the first snapshot must come before the expiry, on a
    // loaded machine too.
    let ttl = if cx.has_manual_clock() { 500 } else { 3_000 };
    let stamp = cx.kv.set_with(key!["w"], b("x"), expiring(ttl)).await?;
    let mut watch = cx.kv.watch(&[key!["w"]])?;
    let first = watch.next().await.context("watch ended")??;
    ensure!(
        first[0].as_ref().map(|e| e.versionstamp) == Some(stamp),
        "{first:?}"
    );
    cx.advance(2 * ttl).await;
    let next = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .context("no snapshot within 20 s of the expiry")?
        .context("watch ended")??;
    ensure!(next[0].is_none(), "expired key still reported: {next:?}");
    Ok(())
}

//! `watch`: first the current state, then every change.

use std::time::Duration;

use anyhow::{Context, ensure};
use futures::{Stream, StreamExt};
use kv_core::{KvEntry, KvValue, Result as KvResult, key};

use crate::Cx;
use crate::util::b;

declare_cases!("watch":
    first_emission_is_current_state,
    set_emits_new_value,
    delete_emits_absent,
    watches_several_keys,
    unrelated_writes_do_not_emit,
    watch_from_another_handle_sees_writes,
    close_ends_the_stream,
    rapid_writes_end_on_latest_state,
);

type Snapshot = Vec<Option<KvEntry>>;

async fn next<S: Stream<Item = KvResult<Snapshot>> + Unpin>(s: &mut S) -> anyhow::Result<Snapshot> {
    let item = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .context("no watch emission within 5 s")?;
    Ok(item.context("watch stream ended")??)
}

fn value(s: &Snapshot, i: usize) -> Option<KvValue> {
    s[i].as_ref().map(|e| e.value.clone())
}

async fn first_emission_is_current_state(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["b"], b("B")).await?;
    let mut w = cx.kv.watch(&[key!["a"], key!["b"]])?;
    let first = next(&mut w).await?;
    ensure!(first.len() == 2 && first[0].is_none() && value(&first, 1) == Some(b("B")));
    Ok(())
}

async fn set_emits_new_value(cx: Cx) -> anyhow::Result<()> {
    let mut w = cx.kv.watch(&[key!["a"]])?;
    ensure!(next(&mut w).await?[0].is_none());
    let s = cx.kv.set(key!["a"], b("1")).await?;
    let snap = next(&mut w).await?;
    ensure!(value(&snap, 0) == Some(b("1")));
    ensure!(snap[0].as_ref().map(|e| e.versionstamp) == Some(s));
    Ok(())
}

async fn delete_emits_absent(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("1")).await?;
    let mut w = cx.kv.watch(&[key!["a"]])?;
    ensure!(value(&next(&mut w).await?, 0) == Some(b("1")));
    cx.kv.delete(key!["a"]).await?;
    ensure!(next(&mut w).await?[0].is_none());
    Ok(())
}

async fn watches_several_keys(cx: Cx) -> anyhow::Result<()> {
    let mut w = cx.kv.watch(&[key!["a"], key!["b"]])?;
    next(&mut w).await?;
    cx.kv.set(key!["b"], b("2")).await?;
    let snap = next(&mut w).await?;
    ensure!(snap[0].is_none() && value(&snap, 1) == Some(b("2")));
    cx.kv.set(key!["a"], b("1")).await?;
    let snap = next(&mut w).await?;
    ensure!(value(&snap, 0) == Some(b("1")) && value(&snap, 1) == Some(b("2")));
    Ok(())
}

async fn unrelated_writes_do_not_emit(cx: Cx) -> anyhow::Result<()> {
    let mut w = cx.kv.watch(&[key!["a"]])?;
    next(&mut w).await?;
    cx.kv.set(key!["other"], b("x")).await?;
    cx.kv.delete(key!["a"]).await?; // absent before and after: no visible change
    let quiet = tokio::time::timeout(Duration::from_millis(300), w.next()).await;
    ensure!(quiet.is_err(), "no emission without a versionstamp change");
    cx.kv.set(key!["a"], b("now")).await?;
    ensure!(value(&next(&mut w).await?, 0) == Some(b("now")));
    Ok(())
}

async fn watch_from_another_handle_sees_writes(cx: Cx) -> anyhow::Result<()> {
    let other = kv_core::Kv::from_arc(cx.backend.clone());
    let mut w = other.watch(&[key!["a"]])?;
    next(&mut w).await?;
    cx.kv.set(key!["a"], b("from elsewhere")).await?;
    ensure!(value(&next(&mut w).await?, 0) == Some(b("from elsewhere")));
    Ok(())
}

async fn close_ends_the_stream(cx: Cx) -> anyhow::Result<()> {
    let fresh = cx.fresh().await?;
    let mut w = fresh.kv.watch(&[key!["a"]])?;
    next(&mut w).await?;
    fresh.backend.close().await;
    // The namespace wrapper does not own the database: close the database
    // itself through a handle that does.
    fresh.close_database().await;
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    ensure!(
        matches!(end, Ok(None)),
        "the stream ends when the database closes"
    );
    Ok(())
}

async fn rapid_writes_end_on_latest_state(cx: Cx) -> anyhow::Result<()> {
    let mut w = cx.kv.watch(&[key!["n"]])?;
    next(&mut w).await?;
    for i in 1..=50u64 {
        cx.kv.set(key!["n"], KvValue::U64(i)).await?;
    }
    // Intermediate states may be skipped, but the last one must arrive.
    loop {
        let snap = next(&mut w).await?;
        if value(&snap, 0) == Some(KvValue::U64(50)) {
            return Ok(());
        }
    }
}

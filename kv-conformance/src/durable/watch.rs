//! Watch streams on a file: this handle's commits reach watchers at once,
//! and streams end on close.

use std::time::Duration;

use anyhow::{Context, ensure};
use futures::StreamExt;
use kv_core::{KvValue, key};

use super::{FileBackend, TempDb};

/// A watch sees the handle's own commits of its keys (and nothing for
/// other keys), and ends when the handle closes.
///
/// # Errors
/// When a snapshot is missing, late or wrong, or the stream outlives close.
pub async fn watch_sees_own_commits_and_ends_on_close(
    b: &'static dyn FileBackend,
) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    let mut watch = kv.watch(&[key!["a"], key!["b"]])?;
    let first = watch.next().await.context("first snapshot")??;
    ensure!(first == vec![None, None], "{first:?}");

    let stamp = kv.set(key!["b"], KvValue::U64(1)).await?;
    let next = tokio::time::timeout(Duration::from_secs(1), watch.next())
        .await?
        .context("the stream is open")??;
    ensure!(next[0].is_none(), "{next:?}");
    let b = next[1].as_ref().context("b was set")?;
    ensure!(
        (&b.value, b.versionstamp) == (&KvValue::U64(1), stamp),
        "{b:?}"
    );

    // Unrelated keys do not produce snapshots; a change of "b" does.
    kv.set(key!["c"], KvValue::U64(1)).await?;
    kv.delete(key!["b"]).await?;
    let next = tokio::time::timeout(Duration::from_secs(1), watch.next())
        .await?
        .context("the stream is open")??;
    ensure!(next == vec![None, None], "{next:?}");

    kv.close().await;
    let end = tokio::time::timeout(Duration::from_secs(1), watch.next()).await?;
    ensure!(end.is_none(), "the stream ends on close, got {end:?}");
    Ok(())
}

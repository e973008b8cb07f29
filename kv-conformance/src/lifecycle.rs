//! Closing a database.

use anyhow::ensure;
use kv_core::{Error, key};

use crate::Cx;
use crate::util::b;

declare_cases!("lifecycle":
    operations_after_close_fail_with_closed,
    close_is_idempotent,
);

async fn operations_after_close_fail_with_closed(cx: Cx) -> anyhow::Result<()> {
    let fresh = cx.fresh().await?;
    fresh.kv.set(key!["a"], b("1")).await?;
    fresh.close_database().await;
    assert_err!(fresh.kv.get(key!["a"]).await, Error::Closed);
    assert_err!(fresh.kv.set(key!["a"], b("2")).await, Error::Closed);
    Ok(())
}

async fn close_is_idempotent(cx: Cx) -> anyhow::Result<()> {
    let fresh = cx.fresh().await?;
    fresh.close_database().await;
    fresh.close_database().await;
    ensure!(fresh.kv.get(key!["a"]).await.is_err());
    Ok(())
}

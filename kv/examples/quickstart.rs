//! A tour of the kv API on a SQLite file: `cargo run -p kv --example quickstart [PATH]`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use futures::StreamExt;
use kv::{KvValue, ListOptions, Selector, SetOptions, key};

#[tokio::main]
async fn main() -> Result<(), kv::Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "quickstart.sqlite3".into());
    let db = kv::open(&path).await?;

    db.set(key!["users", "alice"], KvValue::Bytes(b"Alice".to_vec()))
        .await?;
    db.set(key!["users", "bob"], KvValue::Bytes(b"Bob".to_vec()))
        .await?;
    db.set_with(
        key!["sessions", "s1"],
        KvValue::Bytes(b"token".to_vec()),
        SetOptions::default().with_expire_in(Duration::from_secs(60)),
    )
    .await?;

    let mut users = db.list(Selector::prefix(key!["users"]), ListOptions::default());
    while let Some(entry) = users.next().await {
        let entry = entry?;
        println!("{} = {:?} @ {}", entry.key, entry.value, entry.versionstamp);
    }

    // A counter with optimistic concurrency: retry until the check holds.
    loop {
        let current = db.get(key!["visits"]).await?;
        let outcome = db
            .atomic()
            .check(key!["visits"], current.map(|e| e.versionstamp))
            .sum(key!["visits"], 1)
            .commit()
            .await?;
        if outcome.is_ok() {
            break;
        }
    }
    let visits = db.get(key!["visits"]).await?.map(|e| e.value);
    println!("visits = {visits:?}");
    db.close().await;
    Ok(())
}

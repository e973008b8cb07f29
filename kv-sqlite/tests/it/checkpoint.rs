//! The checkpointer thread copies committed pages into the database file
//! soon after commits, long before the writer's own backstop (64 MiB of WAL)
//! would.

use std::time::{Duration, Instant};

use kv_conformance::durable::TempDb;
use kv_core::{KvValue, key};

use crate::{Sqlite, TestResult};

#[tokio::test]
async fn commits_reach_the_database_file_in_the_background() -> TestResult {
    let db = TempDb::new(&Sqlite)?;
    let kv = db.kv()?;
    let initial = std::fs::metadata(db.path())?.len();
    // 4 MiB of values: far below the writer's backstop.
    for batch in 0..32u64 {
        let mut op = kv.atomic();
        for i in 0..32u64 {
            op.set(key!["big", batch, i], KvValue::Bytes(vec![7; 4096]));
        }
        anyhow::ensure!(op.commit().await?.is_ok(), "no checks to fail");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let size = std::fs::metadata(db.path())?.len();
        if size >= initial + 4 * 1024 * 1024 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the database file is still {size} bytes (from {initial}) 5 s after 4 MiB of commits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every value is still there, now read from the file and the WAL alike.
    let entry = kv.get(key!["big", 31u64, 31u64]).await?;
    anyhow::ensure!(entry.is_some_and(|e| e.value == KvValue::Bytes(vec![7; 4096])));
    kv.close().await;
    Ok(())
}

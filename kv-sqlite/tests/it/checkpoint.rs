//! The checkpointer thread copies committed pages into the database file
//! soon after commits, long before the writer's own backstop (64 MiB of WAL)
//! would, and the WAL starts over from its beginning while commits go on.

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

/// The size of `db`'s WAL file (0 if there is none).
fn wal_len(db: &TempDb) -> anyhow::Result<u64> {
    let mut wal = db.path().as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(wal) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn the_wal_starts_over_while_commits_continue() -> TestResult {
    let db = TempDb::new(&Sqlite)?;
    let kv = db.kv()?;
    // One commit after another for well over the checkpointer's rounds
    // (50 ms each): a checkpoint running beside them never copies the last
    // frames, so only the writer finishing it lets the WAL start over.
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < Duration::from_millis(800) || commits < 200 {
        kv.set(key!["seq", commits], KvValue::Bytes(vec![1; 100]))
            .await?;
        commits += 1;
    }
    // Each commit appends at least two 4 KiB frames (its row and the
    // counter); a WAL that never started over holds all of them.
    let appended = commits * 2 * 4096;
    let wal = wal_len(&db)?;
    anyhow::ensure!(
        wal < appended / 2,
        "the WAL is {wal} bytes after {commits} commits (at least {appended} bytes of frames): it never started over"
    );
    kv.close().await;
    Ok(())
}

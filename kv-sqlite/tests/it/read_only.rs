//! Read-only databases (`SqliteConfig::with_read_only`, `kv serve
//! --read-only`): they read what is there, refuse commits, announce
//! expiries to watchers, and never change the file.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kv_conformance::durable::TempDb;
use kv_core::{Error, Kv, KvValue, ListOptions, ManualClock, Selector, SetOptions, key};
use kv_sqlite::{SqliteConfig, SqliteError};

use crate::{TestResult, temp_db};

/// A read-only handle on `db`'s file.
fn read_only(db: &TempDb, clock: Option<Arc<ManualClock>>) -> anyhow::Result<Kv> {
    let mut config = SqliteConfig::new(db.path()).with_read_only(true);
    if let Some(clock) = clock {
        config = config.with_clock(clock);
    }
    Ok(Kv::new(config.open()?))
}

/// The SQLite error inside `err`, if any.
fn sqlite_error(err: &Error) -> Option<&SqliteError> {
    std::error::Error::source(err).and_then(|s| s.downcast_ref::<SqliteError>())
}

#[tokio::test]
async fn reads_what_is_there_and_refuses_commits() -> TestResult {
    let db = temp_db()?;
    let writer = db.kv()?;
    let stamp = writer.set(key!["a"], KvValue::U64(1)).await?;
    writer.set(key!["b"], KvValue::U64(2)).await?;
    writer.close().await;
    let before = std::fs::read(db.path())?;

    let kv = read_only(&db, None)?;
    let a = kv.get(key!["a"]).await?.expect("written before");
    assert_eq!((a.value, a.versionstamp), (KvValue::U64(1), stamp));
    let listed = kv
        .list(Selector::prefix(key![]), ListOptions::default())
        .collect_all()
        .await?;
    assert_eq!(listed.len(), 2);

    let err = kv
        .set(key!["c"], KvValue::U64(3))
        .await
        .expect_err("read only");
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    let mut op = kv.atomic();
    op.check(key!["a"], Some(stamp)).sum(key!["a"], 1);
    let err = op.commit().await.expect_err("read only");
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    kv.close().await;
    assert!(
        std::fs::read(db.path())? == before,
        "the file must not change"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sees_another_writer_and_wakes_watchers() -> TestResult {
    let db = temp_db()?;
    let writer = db.kv()?;
    let reader = read_only(&db, None)?;
    let mut watch = Box::pin(reader.watch(&[key!["shared"]])?);
    assert_eq!(watch.next().await.expect("first snapshot")?, vec![None]);
    let stamp = writer.set(key!["shared"], KvValue::U64(7)).await?;
    let snapshot = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await?
        .expect("open")?;
    let entry = snapshot[0].as_ref().expect("written");
    assert_eq!(
        (entry.value.clone(), entry.versionstamp),
        (KvValue::U64(7), stamp)
    );
    assert_eq!(
        reader.get(key!["shared"]).await?.map(|e| e.versionstamp),
        Some(stamp)
    );
    Ok(())
}

/// Nothing deletes an expired row of a read-only file, so the handle itself
/// wakes the watchers when a key's time is up, and the row stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_are_announced_not_deleted() -> TestResult {
    let db = temp_db()?;
    let clock = Arc::new(ManualClock::new(1_000));
    let writer = db.kv_with_clock(clock.clone())?;
    for (name, secs) in [("brief", 1), ("later", 3600)] {
        let options = SetOptions::default().with_expire_in(Duration::from_secs(secs));
        writer
            .set_with(key![name], KvValue::U64(1), options)
            .await?;
    }
    writer.close().await;
    let before = std::fs::read(db.path())?;

    let kv = read_only(&db, Some(clock.clone()))?;
    let mut watch = Box::pin(kv.watch(&[key!["brief"], key!["later"]])?);
    let first = watch.next().await.expect("first snapshot")?;
    assert!(first.iter().all(Option::is_some), "nothing expired yet");
    clock.set(5_000);
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .map_err(|_| anyhow::anyhow!("the watcher never heard that the key expired"))?
        .expect("open")?;
    assert!(next[0].is_none() && next[1].is_some(), "{next:?}");
    assert_eq!(kv.get(key!["brief"]).await?, None);
    // The expiry was handled by the pass that announced it; a handle that
    // deleted rows would have deleted this one by now.
    kv.close().await;
    assert!(std::fs::read(db.path())? == before, "the row must stay");
    Ok(())
}

#[test]
fn needs_an_existing_kv_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.sqlite3");
    let err = SqliteConfig::new(&missing)
        .with_read_only(true)
        .open()
        .expect_err("no file");
    assert!(
        matches!(sqlite_error(&err), Some(SqliteError::Missing(_))),
        "{err:?}"
    );
    assert!(
        !missing.exists(),
        "a read-only open must not create the file"
    );

    let plain = dir.path().join("plain.sqlite3");
    rusqlite::Connection::open(&plain)?.execute_batch("create table t (x)")?;
    let err = SqliteConfig::new(&plain)
        .with_read_only(true)
        .open()
        .expect_err("no schema");
    assert!(
        matches!(sqlite_error(&err), Some(SqliteError::NoSchema(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("plain.sqlite3"), "{err}");

    let err = SqliteConfig::in_memory()
        .with_read_only(true)
        .open()
        .expect_err("memory");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    Ok(())
}

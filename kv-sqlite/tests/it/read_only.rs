//! Read-only databases (`SqliteConfig::read_only`, `kv serve --read-only`):
//! they read what is there, refuse commits, and never change the file.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kv_core::{Error, Kv, KvValue, ManualClock, SetOptions, key};
use kv_sqlite::{SqliteConfig, SqliteError};

use crate::{TestResult, raw, temp_db};

/// The stored counter, the row count and the rows that expire.
fn file_state(db: &kv_conformance::durable::TempDb) -> anyhow::Result<(i64, i64, i64)> {
    let raw = raw(db)?;
    let counter = raw.query_row("select version from data_version where k = 0", [], |r| {
        r.get(0)
    })?;
    let rows = raw.query_row("select count(*) from kv", [], |r| r.get(0))?;
    let expiring = raw.query_row(
        "select count(*) from kv where expiration_ms >= 0",
        [],
        |r| r.get(0),
    )?;
    Ok((counter, rows, expiring))
}

#[tokio::test]
async fn reads_what_is_there_and_refuses_commits() -> TestResult {
    let db = temp_db()?;
    let writer = db.kv()?;
    let stamp = writer.set(key!["a"], KvValue::U64(1)).await?;
    writer.set(key!["b"], KvValue::U64(2)).await?;
    writer.close().await;
    let before = file_state(&db)?;

    let kv = Kv::new(SqliteConfig::new(db.path()).read_only().open()?);
    let a = kv.get(key!["a"]).await?.expect("written before");
    assert_eq!((a.value, a.versionstamp), (KvValue::U64(1), stamp));
    let listed = kv
        .list(
            kv_core::Selector::prefix(key![]),
            kv_core::ListOptions::default(),
        )
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
    assert_eq!(file_state(&db)?, before, "the file must not change");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sees_another_writer_and_wakes_watchers() -> TestResult {
    let db = temp_db()?;
    let writer = db.kv()?;
    let reader = Kv::new(SqliteConfig::new(db.path()).read_only().open()?);
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

#[tokio::test]
async fn hides_expired_keys_without_deleting_them() -> TestResult {
    let db = temp_db()?;
    let clock = Arc::new(ManualClock::new(1_000));
    let writer = db.kv_with_clock(clock.clone())?;
    writer
        .set_with(
            key!["brief"],
            KvValue::U64(1),
            SetOptions::default().with_expire_in(Duration::from_secs(1)),
        )
        .await?;
    writer.close().await;
    clock.set(60_000);
    let kv = Kv::new(
        SqliteConfig::new(db.path())
            .with_clock(clock.clone())
            .read_only()
            .open()?,
    );
    assert_eq!(kv.get(key!["brief"]).await?, None);
    // A writable handle would sweep the row at once; give it the chance.
    tokio::time::sleep(Duration::from_millis(100)).await;
    kv.close().await;
    assert_eq!(file_state(&db)?.2, 1, "the expired row is still stored");
    Ok(())
}

#[test]
fn needs_an_existing_kv_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.sqlite3");
    let err = SqliteConfig::new(&missing)
        .read_only()
        .open()
        .expect_err("no file");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<SqliteError>());
    assert!(matches!(source, Some(SqliteError::Missing(_))), "{err:?}");
    assert!(
        !missing.exists(),
        "a read-only open must not create the file"
    );

    let plain = dir.path().join("plain.sqlite3");
    rusqlite::Connection::open(&plain)?.execute_batch("create table t (x)")?;
    let err = SqliteConfig::new(&plain)
        .read_only()
        .open()
        .expect_err("no schema");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<SqliteError>());
    assert!(matches!(source, Some(SqliteError::NoSchema)), "{err:?}");

    let err = SqliteConfig::in_memory()
        .read_only()
        .open()
        .expect_err("memory");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    Ok(())
}

/// Nothing deletes an expired row of a read-only file, so the handle itself
/// must wake the watchers when a key's time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_when_a_key_expires() -> TestResult {
    let db = temp_db()?;
    let clock = Arc::new(ManualClock::new(1_000));
    let writer = db.kv_with_clock(clock.clone())?;
    writer
        .set_with(
            key!["brief"],
            KvValue::U64(1),
            SetOptions::default().with_expire_in(Duration::from_secs(1)),
        )
        .await?;
    writer.close().await;
    let kv = Kv::new(
        SqliteConfig::new(db.path())
            .with_clock(clock.clone())
            .read_only()
            .open()?,
    );
    let mut watch = Box::pin(kv.watch(&[key!["brief"]])?);
    let first = watch.next().await.expect("first snapshot")?;
    assert!(first[0].is_some(), "not expired yet");
    clock.set(5_000);
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .map_err(|_| anyhow::anyhow!("the watcher never heard that the key expired"))?
        .expect("open")?;
    assert_eq!(next, vec![None]);
    Ok(())
}

//! Another process holding the write lock makes commits fail with the
//! retryable `Unavailable` (never a panic), while reads go on.

use std::time::Duration;

use kv_core::{Error, Kv, KvValue, key};
use kv_sqlite::SqliteConfig;

use crate::{TestResult, raw, temp_db};

#[tokio::test]
async fn a_held_write_lock_makes_commits_unavailable() -> TestResult {
    let db = temp_db()?;
    let kv = Kv::new(
        SqliteConfig::new(db.path())
            .with_busy_timeout(Duration::from_millis(20))
            .open()?,
    );
    let stamp = kv.set(key!["a"], KvValue::U64(1)).await?;

    let other = raw(&db)?;
    other.execute_batch("begin immediate; insert into kv (k, v, v_encoding, version) values (x'0262', x'00', 3, 99);")?;
    let err = kv
        .set(key!["b"], KvValue::U64(2))
        .await
        .expect_err("the file is locked");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    // WAL: readers are not blocked by the other writer.
    assert_eq!(kv.get(key!["a"]).await?.expect("set").versionstamp, stamp);

    other.execute_batch("rollback")?;
    let next = kv.set(key!["b"], KvValue::U64(2)).await?;
    assert_eq!(
        next.counter(),
        stamp.counter() + 1,
        "the failed commit took no step"
    );
    Ok(())
}

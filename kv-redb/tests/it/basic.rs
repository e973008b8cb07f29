//! Reads, writes and lifecycle through `Kv` on a file.

use kv_core::backend::{AtomicWrite, Enqueue};
use kv_core::{Backend, Error, Kv, KvValue, ListOptions, Selector, Versionstamp, key};
use kv_redb::{RedbBackend, RedbError};

use crate::{TempDb, TestResult, raw};

#[tokio::test]
async fn set_get_list_delete() -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    assert_eq!(kv.backend().name(), "redb");

    kv.set(key!["fruit", "apple"], KvValue::U64(3)).await?;
    kv.set(key!["fruit", "pear"], KvValue::Bytes(b"green".to_vec()))
        .await?;
    kv.set(
        key!["fruit", "fig"],
        KvValue::V8(vec![0xff, 0x0f, 0x49, 0x02]),
    )
    .await?;
    kv.set(key!["veg", "leek"], KvValue::U64(1)).await?;

    let apple = kv
        .get(key!["fruit", "apple"])
        .await?
        .expect("apple was set");
    assert_eq!(apple.value, KvValue::U64(3));
    assert_eq!(kv.get(key!["fruit", "kiwi"]).await?, None);

    let fruit = kv
        .list(Selector::prefix(key!["fruit"]), ListOptions::default())
        .collect_all()
        .await?;
    let names: Vec<_> = fruit.iter().map(|e| e.key.clone()).collect();
    assert_eq!(
        names,
        vec![
            key!["fruit", "apple"],
            key!["fruit", "fig"],
            key!["fruit", "pear"]
        ]
    );
    assert_eq!(
        fruit[1].value,
        KvValue::V8(vec![0xff, 0x0f, 0x49, 0x02]),
        "V8 bytes are kept as they are"
    );

    let last_two = kv
        .list(
            Selector::prefix(key!["fruit"]),
            ListOptions::default().with_reverse(true).with_limit(2),
        )
        .collect_all()
        .await?;
    let names: Vec<_> = last_two.iter().map(|e| e.key.clone()).collect();
    assert_eq!(names, vec![key!["fruit", "pear"], key!["fruit", "fig"]]);

    let many = kv
        .get_many(&[key!["veg", "leek"], key!["nope"], key!["fruit", "fig"]])
        .await?;
    assert_eq!(
        many.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, true]
    );

    kv.delete(key!["fruit", "apple"]).await?;
    kv.delete(key!["fruit", "absent"]).await?;
    assert_eq!(kv.get(key!["fruit", "apple"]).await?, None);
    let fruit = kv
        .list(Selector::prefix(key!["fruit"]), ListOptions::default())
        .collect_all()
        .await?;
    assert_eq!(fruit.len(), 2);
    kv.close().await;
    Ok(())
}

#[tokio::test]
async fn versionstamps_strictly_increase() -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    let mut last = Versionstamp::ZERO;
    for i in 0..20u64 {
        let stamp = kv.set(key!["n"], KvValue::U64(i)).await?;
        assert!(stamp > last, "{stamp} after {last}");
        last = stamp;
    }
    // An empty commit and a delete of an absent key still take a stamp.
    let empty = kv
        .atomic()
        .commit()
        .await?
        .versionstamp()
        .expect("no checks");
    assert!(empty > last);
    // A failed check does not advance the counter.
    let failed = kv
        .atomic()
        .check(key!["n"], None)
        .set(key!["n"], KvValue::U64(0))
        .commit()
        .await?;
    assert!(!failed.is_ok());
    let next = kv.set(key!["m"], KvValue::U64(0)).await?;
    assert_eq!(next.counter(), empty.counter() + 1);
    assert_eq!(
        kv.get(key!["n"]).await?.expect("set").value,
        KvValue::U64(19)
    );
    kv.close().await;
    assert_eq!(raw::inspect(db.path())?.counter, next.counter());
    Ok(())
}

#[tokio::test]
async fn mutations_see_each_other_in_order() -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    let stamp = kv
        .atomic()
        .set(key!["a"], KvValue::U64(1))
        .sum(key!["a"], 10)
        .set(key!["b"], KvValue::U64(1))
        .delete(key!["b"])
        .delete(key!["c"])
        .set(key!["c"], KvValue::U64(5))
        .max(key!["c"], 9)
        .min(key!["d"], 4)
        .set_versionstamped(key!["log"], KvValue::U64(0), Default::default())
        .commit()
        .await?
        .versionstamp()
        .expect("no checks");
    assert_eq!(
        kv.get(key!["a"]).await?.expect("set").value,
        KvValue::U64(11)
    );
    assert_eq!(kv.get(key!["b"]).await?, None);
    let c = kv.get(key!["c"]).await?.expect("set");
    assert_eq!((c.value, c.versionstamp), (KvValue::U64(9), stamp));
    assert_eq!(
        kv.get(key!["d"]).await?.expect("set").value,
        KvValue::U64(4)
    );
    let log = kv
        .get(key!["log", stamp.to_string()])
        .await?
        .expect("versionstamped key");
    assert_eq!(log.versionstamp, stamp);
    Ok(())
}

#[tokio::test]
async fn reopen_keeps_data() -> TestResult {
    let db = TempDb::new()?;
    let stamp = {
        let kv = db.kv()?;
        kv.set(key!["a"], KvValue::Bytes(b"kept".to_vec())).await?;
        let stamp = kv.set(key!["b"], KvValue::U64(7)).await?;
        kv.close().await;
        stamp
    };
    let kv = db.kv()?;
    let b = kv.get(key!["b"]).await?.expect("survives reopen");
    assert_eq!((b.value, b.versionstamp), (KvValue::U64(7), stamp));
    assert_eq!(
        kv.get(key!["a"]).await?.expect("survives").value,
        KvValue::Bytes(b"kept".to_vec())
    );
    assert!(kv.set(key!["c"], KvValue::U64(0)).await? > stamp);
    Ok(())
}

#[tokio::test]
async fn dropped_handle_without_close_keeps_data_and_unlocks() -> TestResult {
    let db = TempDb::new()?;
    {
        let kv = db.kv()?;
        let clone = kv.clone();
        kv.set(key!["a"], KvValue::U64(1)).await?;
        drop(kv);
        // A remaining clone keeps the database open.
        clone.set(key!["b"], KvValue::U64(2)).await?;
    }
    // Dropping the last handle stopped the threads and closed the file.
    let kv = db.kv()?;
    assert_eq!(
        kv.get_many(&[key!["a"], key!["b"]])
            .await?
            .into_iter()
            .map(|e| e.map(|e| e.value))
            .collect::<Vec<_>>(),
        [Some(KvValue::U64(1)), Some(KvValue::U64(2))]
    );
    Ok(())
}

#[tokio::test]
async fn close_is_idempotent_and_final() -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    kv.set(key!["a"], KvValue::U64(1)).await?;
    kv.close().await;
    kv.close().await;
    assert!(matches!(kv.get(key!["a"]).await, Err(Error::Closed)));
    assert!(matches!(
        kv.set(key!["a"], KvValue::U64(2)).await,
        Err(Error::Closed)
    ));
    // A clone shares the closed state.
    let clone = kv.clone();
    assert!(matches!(clone.get(key!["a"]).await, Err(Error::Closed)));
    Ok(())
}

#[test]
fn works_without_a_runtime() -> TestResult {
    let db = TempDb::new()?;
    futures::executor::block_on(async {
        let kv = Kv::new(RedbBackend::open(db.path())?);
        kv.set(key!["a"], KvValue::U64(1)).await?;
        kv.atomic().sum(key!["a"], 2).commit().await?;
        assert_eq!(
            kv.get(key!["a"]).await?.expect("set").value,
            KvValue::U64(3)
        );
        kv.close().await;
        Ok(())
    })
}

#[test]
fn an_empty_path_is_refused() -> TestResult {
    let err = RedbBackend::open("").expect_err("empty path");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    Ok(())
}

#[test]
fn a_missing_directory_is_a_backend_error() -> TestResult {
    let db = TempDb::new()?;
    let err = RedbBackend::open(db.path().join("no/such/dir.redb")).expect_err("missing dir");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    Ok(())
}

#[test]
fn a_file_that_is_not_redb_is_refused() -> TestResult {
    let db = TempDb::new()?;
    std::fs::write(
        db.path(),
        b"SQLite format 3\0 and then some more bytes".repeat(200),
    )?;
    let err = RedbBackend::open(db.path()).expect_err("not a redb file");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    Ok(())
}

#[test]
fn a_file_of_another_format_version_is_refused() -> TestResult {
    let db = TempDb::new()?;
    {
        let file = redb::Database::create(db.path())?;
        let txn = file.begin_write()?;
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))?
            .insert("format", 2)?;
        txn.commit()?;
    }
    let err = RedbBackend::open(db.path()).expect_err("format 2");
    let Error::Backend { source, .. } = &err else {
        anyhow::bail!("expected a backend error, got {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<RedbError>(),
            Some(RedbError::FormatVersion {
                found: 2,
                expected: 1
            })
        ),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn enqueue_is_unsupported() -> TestResult {
    let db = TempDb::new()?;
    let backend = db.backend()?;
    let write = AtomicWrite {
        enqueues: vec![Enqueue {
            payload: vec![0xff, 0x0f, 0x5f],
            deadline_ms: 0,
            keys_if_undelivered: vec![],
            backoff_schedule: None,
        }],
        ..AtomicWrite::default()
    };
    let err = backend
        .atomic_write(write)
        .await
        .expect_err("enqueue must fail");
    assert!(
        matches!(&err, Error::Unsupported { backend, op: "enqueue" } if backend == "redb"),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn debug_names_the_file() -> TestResult {
    let db = TempDb::new()?;
    let backend = db.backend()?;
    let shown = format!("{backend:?}");
    assert!(
        shown.starts_with("RedbBackend") && shown.contains("kv.redb"),
        "{shown}"
    );
    Ok(())
}

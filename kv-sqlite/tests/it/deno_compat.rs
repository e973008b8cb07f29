//! The file layout is Deno's own (migration version 3): files Deno wrote
//! open here, and what kv writes is stored the way Deno stores it.

use kv_conformance::durable::TempDb;
use kv_core::{Error, KvValue, SetOptions, Versionstamp, key};

use crate::{TestResult, raw, temp_db};

/// The schema Deno 2.9.6 leaves in a fresh file, as `sqlite_master` shows it.
const DENO_SCHEMA: &str = "
CREATE TABLE migration_state(k integer not null primary key, version integer not null);
CREATE TABLE data_version (k integer primary key, version integer not null, seq integer not null default 0);
CREATE TABLE kv (k blob primary key, v blob not null, v_encoding integer not null, version integer not null, seq integer not null default 0, expiration_ms integer not null default -1) without rowid;
CREATE TABLE queue (ts integer not null, id text not null, data blob not null, backoff_schedule text not null, keys_if_undelivered blob not null, primary key (ts, id));
CREATE TABLE queue_running(deadline integer not null, id text not null, data blob not null, backoff_schedule text not null, keys_if_undelivered blob not null, primary key (deadline, id));
CREATE INDEX kv_expiration_ms_idx on kv (expiration_ms);
";

/// Writes a file the way Deno would have: schema, counter 9 and one V8 row.
fn deno_file(db: &TempDb) -> anyhow::Result<()> {
    let raw = raw(db)?;
    raw.pragma_update(None, "journal_mode", "wal")?;
    raw.execute_batch(DENO_SCHEMA)?;
    raw.execute_batch(
        "insert into migration_state (k, version) values (0, 3);
         insert into data_version (k, version, seq) values (0, 9, 0);
         insert into kv (k, v, v_encoding, version, seq, expiration_ms)
           values (x'026100', x'ff104902', 1, 9, 0, -1);",
    )?;
    Ok(())
}

#[tokio::test]
async fn reads_a_deno_file_and_continues_its_counter() -> TestResult {
    let db = temp_db()?;
    deno_file(&db)?;
    let kv = db.kv()?;
    let a = kv.get(key!["a"]).await?.expect("Deno's row");
    assert_eq!(a.value, KvValue::V8(vec![0xff, 0x10, 0x49, 0x02]));
    assert_eq!(a.versionstamp.to_string(), "00000000000000090000");

    let stamp = kv.set(key!["b"], KvValue::U64(5)).await?;
    assert_eq!(stamp, "000000000000000a0000".parse::<Versionstamp>()?);
    kv.close().await;

    let raw = raw(&db)?;
    let counter: i64 = raw.query_row("select version from data_version where k = 0", [], |r| {
        r.get(0)
    })?;
    assert_eq!(counter, 10);
    let tables: i64 = raw.query_row("select count(*) from sqlite_master", [], |r| r.get(0))?;
    assert!(tables >= 6, "the schema was kept");
    Ok(())
}

#[tokio::test]
async fn stores_rows_the_way_deno_does() -> TestResult {
    let db = temp_db()?;
    let kv = db.kv()?;
    let u = kv.set(key!["u"], KvValue::U64(0x0102)).await?;
    kv.set(key!["bytes"], KvValue::Bytes(vec![1, 2, 3])).await?;
    kv.set(key!["v8"], KvValue::V8(vec![0xff, 0x0f, 0x54]))
        .await?;
    let options = SetOptions::default().with_expire_in(std::time::Duration::from_secs(3600));
    kv.set_with(key!["ttl"], KvValue::U64(1), options).await?;
    kv.close().await;

    let raw = raw(&db)?;
    let mode: String = raw.query_row("pragma journal_mode", [], |r| r.get(0))?;
    assert_eq!(mode, "wal");
    let migration: (i64, i64) =
        raw.query_row("select k, version from migration_state", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    assert_eq!(migration, (0, 3));
    for table in [
        "migration_state",
        "data_version",
        "kv",
        "queue",
        "queue_running",
    ] {
        let n: i64 = raw.query_row(
            "select count(*) from sqlite_master where type = 'table' and name = ?1",
            [table],
            |r| r.get(0),
        )?;
        assert_eq!(n, 1, "table {table}");
    }

    let row = |k: &[u8]| -> anyhow::Result<(Vec<u8>, i64, i64, i64, i64)> {
        Ok(raw.query_row(
            "select v, v_encoding, version, seq, expiration_ms from kv where k = ?1",
            [k],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?)
    };
    assert_eq!(
        row(b"\x02u\x00")?,
        (vec![2, 1, 0, 0, 0, 0, 0, 0], 2, u.counter() as i64, 0, -1)
    );
    assert_eq!(row(b"\x02bytes\x00")?, (vec![1, 2, 3], 3, 2, 0, -1));
    assert_eq!(row(b"\x02v8\x00")?, (vec![0xff, 0x0f, 0x54], 1, 3, 0, -1));
    let (_, _, _, _, expiration) = row(b"\x02ttl\x00")?;
    assert!(expiration > 0, "expiry stored in ms: {expiration}");
    Ok(())
}

#[tokio::test]
async fn refuses_other_schema_versions() -> TestResult {
    let db = temp_db()?;
    deno_file(&db)?;
    raw(&db)?.execute("update migration_state set version = 4 where k = 0", [])?;
    let err = db.kv().expect_err("version 4 must be refused");
    let err = err.downcast::<Error>()?;
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("version 4"), "{err}");
    Ok(())
}

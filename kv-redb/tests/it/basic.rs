//! Reads, writes and lifecycle through `Kv` on a file.

use kv_conformance::durable::basic;
use kv_core::{Error, Kv};
use kv_redb::{RedbBackend, RedbError};

use crate::{Redb, TestResult, temp_db};

#[tokio::test]
async fn set_get_list_delete() -> TestResult {
    basic::set_get_list_delete(&Redb).await
}

#[tokio::test]
async fn versionstamps_strictly_increase() -> TestResult {
    basic::versionstamps_strictly_increase(&Redb).await
}

#[tokio::test]
async fn mutations_see_each_other_in_order() -> TestResult {
    basic::mutations_see_each_other_in_order(&Redb).await
}

#[tokio::test]
async fn reopen_keeps_data() -> TestResult {
    basic::reopen_keeps_data(&Redb).await
}

#[tokio::test]
async fn dropped_handle_without_close_keeps_data_and_unlocks() -> TestResult {
    basic::dropped_handle_without_close_keeps_data(&Redb).await
}

#[tokio::test]
async fn a_namespace_reads_into_a_sink() -> TestResult {
    basic::a_namespace_reads_into_a_sink(&Redb).await
}

#[tokio::test]
async fn a_panicking_sink_fails_only_its_read() -> TestResult {
    basic::a_panicking_sink_fails_only_its_read(&Redb).await
}

#[tokio::test]
async fn close_is_idempotent_and_final() -> TestResult {
    basic::close_is_idempotent_and_final(&Redb).await
}

#[test]
fn small_reads_from_many_threads_agree() -> TestResult {
    basic::small_reads_from_many_threads_agree(&Redb)
}

#[test]
fn works_without_a_runtime() -> TestResult {
    let db = temp_db()?;
    basic::works_without_a_runtime(Kv::new(RedbBackend::open(db.path())?))
}

#[test]
fn an_empty_path_is_refused() -> TestResult {
    basic::an_empty_path_is_refused(&Redb)
}

#[test]
fn a_missing_directory_is_a_backend_error() -> TestResult {
    let db = temp_db()?;
    let err = RedbBackend::open(db.path().join("no/such/dir.redb")).expect_err("missing dir");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    Ok(())
}

#[test]
fn a_file_that_is_not_redb_is_refused() -> TestResult {
    let db = temp_db()?;
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
    let db = temp_db()?;
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
    basic::enqueue_is_unsupported(&Redb).await
}

#[test]
fn debug_names_the_file() -> TestResult {
    let db = temp_db()?;
    let backend = db.backend()?;
    let shown = format!("{backend:?}");
    assert!(
        shown.starts_with("RedbBackend") && shown.contains("kv.redb"),
        "{shown}"
    );
    Ok(())
}

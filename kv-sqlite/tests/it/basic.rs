//! Reads, writes and lifecycle through `Kv` on a file.

use kv_conformance::durable::basic;
use kv_core::{Kv, KvValue, ListOptions, Selector, key};
use kv_sqlite::{SqliteBackend, SqliteConfig};

use crate::{Sqlite, TestResult};

#[tokio::test]
async fn set_get_list_delete() -> TestResult {
    basic::set_get_list_delete(&Sqlite).await
}

#[tokio::test]
async fn versionstamps_strictly_increase() -> TestResult {
    basic::versionstamps_strictly_increase(&Sqlite).await
}

#[tokio::test]
async fn reopen_keeps_data() -> TestResult {
    basic::reopen_keeps_data(&Sqlite).await
}

#[tokio::test]
async fn dropped_handle_without_close_keeps_data() -> TestResult {
    basic::dropped_handle_without_close_keeps_data(&Sqlite).await
}

#[tokio::test]
async fn a_namespace_reads_into_a_sink() -> TestResult {
    basic::a_namespace_reads_into_a_sink(&Sqlite).await
}

#[tokio::test]
async fn a_panicking_sink_fails_only_its_read() -> TestResult {
    basic::a_panicking_sink_fails_only_its_read(&Sqlite).await
}

#[tokio::test]
async fn close_is_idempotent_and_final() -> TestResult {
    basic::close_is_idempotent_and_final(&Sqlite).await
}

#[test]
fn small_reads_from_many_threads_agree() -> TestResult {
    basic::small_reads_from_many_threads_agree(&Sqlite)
}

#[test]
fn works_without_a_runtime() -> TestResult {
    basic::works_without_a_runtime(Kv::new(SqliteBackend::open_in_memory()?))
}

#[tokio::test]
async fn in_memory_databases_are_private() -> TestResult {
    let a = Kv::new(SqliteConfig::new(":memory:").open()?);
    let b = Kv::new(SqliteBackend::open_in_memory()?);
    a.set(key!["x"], KvValue::U64(1)).await?;
    assert_eq!(b.get(key!["x"]).await?, None);
    let entries = a
        .list(Selector::prefix(key![]), ListOptions::default())
        .collect_all()
        .await?;
    assert_eq!(entries.len(), 1);
    Ok(())
}

#[test]
fn an_empty_path_is_refused() -> TestResult {
    basic::an_empty_path_is_refused(&Sqlite)
}

#[tokio::test]
async fn enqueue_is_unsupported() -> TestResult {
    basic::enqueue_is_unsupported(&Sqlite).await
}

#[tokio::test]
async fn mutations_see_each_other_in_order() -> TestResult {
    basic::mutations_see_each_other_in_order(&Sqlite).await
}

/// A directory is named as such (SQLite itself says "disk I/O error").
#[test]
fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    match SqliteBackend::open(dir.path()) {
        Err(kv_core::Error::InvalidArgument(m)) => {
            assert!(m.ends_with("is a directory, not a database file"), "{m}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a directory opened as a database"),
    }
}

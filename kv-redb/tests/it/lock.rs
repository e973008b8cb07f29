//! redb locks its file: a second open, in this process or another, fails
//! with a clear error instead of hanging or panicking, and close or drop
//! releases the lock at once.

use std::io::Write;
use std::process::Command;

use kv_core::{Error, KvValue, key};
use kv_redb::{RedbBackend, RedbError};

use crate::{TestResult, temp_db};

const CHILD_ENV: &str = "KV_LOCK_CHILD";

/// Whether `err` says that the file is already open.
fn is_already_open(err: &Error) -> bool {
    match err {
        Error::Backend { backend, source } => {
            backend == "redb"
                && source
                    .downcast_ref::<RedbError>()
                    .is_some_and(RedbError::is_already_open)
        }
        _ => false,
    }
}

#[test]
fn second_open_in_the_same_process_is_refused() -> TestResult {
    let db = temp_db()?;
    let _first = db.backend()?;
    let err = RedbBackend::open(db.path()).expect_err("the file is locked");
    assert!(is_already_open(&err), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("already open") && message.contains("kv.redb"),
        "{message}"
    );
    Ok(())
}

/// The child: tries to open the file that the parent holds and prints what
/// happened.
#[test]
fn lock_child() -> TestResult {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let line = match RedbBackend::open(&path) {
        Ok(_) => "result: opened".to_owned(),
        Err(e) if is_already_open(&e) => format!("result: already-open: {e}"),
        Err(e) => format!("result: other error: {e:?}"),
    };
    writeln!(std::io::stdout(), "{line}")?;
    Ok(())
}

#[tokio::test]
async fn open_in_another_process_is_refused() -> TestResult {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Ok(());
    }
    let db = temp_db()?;
    let kv = db.kv()?;
    kv.set(key!["a"], KvValue::U64(1)).await?;
    let output = Command::new(std::env::current_exe()?)
        .args(["lock::lock_child", "--exact", "--nocapture", "-q"])
        .env(CHILD_ENV, db.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("result: already-open"),
        "child said: {stdout}"
    );

    // Once closed, another process can open it.
    kv.close().await;
    let output = Command::new(std::env::current_exe()?)
        .args(["lock::lock_child", "--exact", "--nocapture", "-q"])
        .env(CHILD_ENV, db.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("result: opened"), "child said: {stdout}");
    Ok(())
}

#[tokio::test]
async fn close_releases_the_lock_at_once() -> TestResult {
    let db = temp_db()?;
    for i in 0..5u64 {
        let kv = db.kv()?;
        let _watch = kv.watch(&[key!["a"]])?;
        kv.set(key!["a"], KvValue::U64(i)).await?;
        kv.close().await;
        // The watch stream and `kv` are still alive, the file is free.
    }
    let kv = db.kv()?;
    assert_eq!(
        kv.get(key!["a"]).await?.expect("set").value,
        KvValue::U64(4)
    );
    Ok(())
}

#[test]
fn a_failed_open_leaves_the_file_usable() -> TestResult {
    let db = temp_db()?;
    let first = db.backend()?;
    assert!(RedbBackend::open(db.path()).is_err());
    drop(first);
    db.backend()?;
    Ok(())
}

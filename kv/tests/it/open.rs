//! `OpenOptions`: mistakes in naming a database file get an error that
//! names the path, and create nothing.

use kv::{Error, OpenOptions};

fn utf8(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn a_file_that_must_exist_is_not_created() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for name in ["missing.sqlite3", "missing.redb"] {
        let path = dir.path().join(name);
        let opened = OpenOptions::new()
            .with_must_exist(true)
            .open_backend(utf8(&path))
            .await;
        match opened {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains(utf8(&path)), "{message}");
                assert!(message.contains("does not exist"), "{message}");
            }
            other => anyhow::bail!("{name}: {other:?}"),
        }
        assert!(!path.exists(), "{name} was created");
    }
    // Without the option, the same path is a new database.
    let path = dir.path().join("new.sqlite3");
    OpenOptions::new().open(utf8(&path)).await?.close().await;
    assert!(path.exists());
    Ok(())
}

#[tokio::test]
async fn a_missing_directory_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("no-such-dir").join("kv.sqlite3");
    match OpenOptions::new().open_backend(utf8(&path)).await {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains("no-such-dir"), "{message}");
            assert!(message.contains("directory"), "{message}");
        }
        other => anyhow::bail!("{other:?}"),
    }
    assert!(!dir.path().join("no-such-dir").exists());
    Ok(())
}

/// A directory nobody may create files in (here `/sys`, refused even to
/// root) is reported as a permission problem, not as SQLite's "unable to
/// open database file".
#[tokio::test]
async fn an_unwritable_directory_is_a_permission_error() -> anyhow::Result<()> {
    if !std::path::Path::new("/sys/kernel").exists() {
        return Ok(());
    }
    match OpenOptions::new()
        .open_backend("/sys/kv-test.sqlite3")
        .await
    {
        Err(Error::PermissionDenied(message)) => {
            assert!(message.contains("/sys"), "{message}");
        }
        other => anyhow::bail!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_unknown_scheme_lists_the_accepted_ones() -> anyhow::Result<()> {
    match kv::open("ftp://somewhere/db").await {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains("ftp"), "{message}");
            assert!(message.contains("sqlite:PATH"), "{message}");
        }
        other => anyhow::bail!("{:?}", other.map(|_| ())),
    }
    Ok(())
}

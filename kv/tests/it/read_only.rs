//! `open_backend_read_only`, served over KV Connect as `kv serve
//! --read-only` serves it: reads pass, writes come back as the typed
//! `Error::ReadOnly` (HTTP 400 on the wire), and the file never changes.

use kv::{Error, KvValue, key};

use crate::Served;

const TOKEN: &str = "read-only-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_file_served_remotely_refuses_writes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.sqlite3");
    let url = format!("sqlite:{}", path.display());
    let writable = kv::open(&url).await?;
    let stamp = writable.set(key!["a"], KvValue::U64(1)).await?;
    writable.close().await;
    let before = std::fs::read(&path)?;

    let backend = kv::open_backend_read_only(&url).await?;
    let served = Served::start(backend.clone(), TOKEN).await?;
    let remote = &served.client;
    assert_eq!(
        remote.get(key!["a"]).await?.map(|e| e.versionstamp),
        Some(stamp)
    );
    let err = remote
        .set(key!["b"], KvValue::U64(2))
        .await
        .expect_err("read only");
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    let err = remote
        .enqueue(vec![0xff, 0x0f, 0x5f], Default::default())
        .await
        .expect_err("read only");
    assert!(matches!(err, Error::ReadOnly), "{err:?}");

    served.stop().await?;
    backend.close().await;
    assert!(std::fs::read(&path)? == before, "the file must not change");
    Ok(())
}

#[tokio::test]
async fn only_sqlite_files_open_read_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.sqlite3");
    let err = kv::open_backend_read_only(&missing.display().to_string())
        .await
        .expect_err("no such file");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(!missing.exists(), "nothing is created");
    for (url, backend) in [("redb:x.redb", "redb"), ("http://127.0.0.1:1", "remote")] {
        match kv::open_backend_read_only(url).await {
            Err(Error::Unsupported { backend: b, .. }) => assert_eq!(b, backend),
            other => panic!("{url}: {other:?}"),
        }
    }
    for url in ["memory:", ":memory:"] {
        let err = kv::open_backend_read_only(url).await.expect_err(url);
        assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err:?}");
    }
    Ok(())
}

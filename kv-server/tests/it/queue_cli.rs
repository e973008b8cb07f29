//! `kv queue` only looks: it neither changes the file it inspects nor
//! creates one.

use std::process::Command;
use std::time::Duration;

use kv::{EnqueueOptions, KvValue, SetOptions, key};

fn kv_queue(path: &std::path::Path) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["queue", "--path", path.to_str().expect("utf-8 path")])
        .output()?)
}

#[tokio::test]
async fn inspecting_a_queue_leaves_the_file_alone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let db = kv::open(file.to_str().expect("utf-8 path")).await?;
    db.enqueue(vec![0xff, 0x0f, 0x49, 0x02], EnqueueOptions::default())
        .await?;
    // A writable open would sweep this key once it expired.
    db.set_with(
        key!["brief"],
        KvValue::U64(1),
        SetOptions::default().with_expire_in(Duration::from_millis(1)),
    )
    .await?;
    db.close().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = std::fs::read(&file)?;

    let out = kv_queue(&file)?;
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(out.stdout)?;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("\"payload_bytes\":4"), "{listed}");
    assert!(std::fs::read(&file)? == before, "kv queue changed the file");

    let missing = dir.path().join("missing.sqlite3");
    let out = kv_queue(&missing)?;
    assert!(!out.status.success());
    assert!(!missing.exists(), "kv queue created a file");
    Ok(())
}

/// A fresh SQLite file holding `n` ready messages (the numbers 0..n).
async fn queued(n: u8) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let db = kv::open(file.to_str().expect("utf-8 path")).await?;
    for i in 0..n {
        // V8 for the small integer i.
        db.enqueue(vec![0xff, 0x0f, 0x49, i * 2], EnqueueOptions::default())
            .await?;
    }
    db.close().await;
    Ok((dir, file))
}

/// `kv listen --count N` takes exactly N messages and leaves the rest
/// queued (it once claimed a batch and acknowledged them all).
#[tokio::test]
async fn listen_with_a_count_takes_only_that_many() -> anyhow::Result<()> {
    let (_dir, file) = queued(5).await?;
    let path = file.to_str().expect("utf-8 path");

    let listen = |count: &str| {
        Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(["listen", "--path", path, "--count", count])
            .args(["--idle-timeout", "10"])
            .output()
    };
    let out = listen("2")?;
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout)?;
    assert_eq!(printed.lines().count(), 2, "{printed}");

    let out = kv_queue(&file)?;
    let left = String::from_utf8(out.stdout)?;
    assert_eq!(
        left.lines().count(),
        3,
        "three messages stay queued:\n{left}"
    );

    let out = listen("0")?;
    assert!(
        !out.status.success(),
        "--count 0 would wait forever: {out:?}"
    );
    Ok(())
}

/// `kv listen` whose output nobody reads any more stops with an error,
/// fails the messages it could not print (to be retried) and acknowledges
/// nothing: it used to panic in the handler and go on claiming messages.
#[tokio::test]
async fn listen_stops_when_its_output_is_closed() -> anyhow::Result<()> {
    let (_dir, file) = queued(3).await?;
    let path = file.to_str().expect("utf-8 path");

    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["listen", "--path", path, "--idle-timeout", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    drop(child.stdout.take());
    let status = child.wait()?;
    assert!(!status.success(), "{status}");

    let out = kv_queue(&file)?;
    let left = String::from_utf8(out.stdout)?;
    assert_eq!(
        left.lines().count(),
        3,
        "every message stays queued:\n{left}"
    );
    assert_eq!(
        left.matches("\"attempts\":1").count(),
        3,
        "each unprinted message failed once, to be retried:\n{left}"
    );
    Ok(())
}

/// `kv queue` lists every message, not the first page of a thousand (it
/// once showed 1,000 of 10,000 and said nothing).
#[tokio::test]
async fn inspecting_lists_every_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let db = kv::open(file.to_str().expect("utf-8 path")).await?;
    const MESSAGES: usize = 2_500;
    let mut pending = Vec::new();
    for i in 0..MESSAGES {
        // V8 for the small integer i % 64.
        let payload = vec![0xff, 0x0f, 0x49, ((i % 64) * 2) as u8];
        pending.push(db.enqueue(payload, EnqueueOptions::default()));
    }
    for outcome in futures::future::join_all(pending).await {
        outcome?;
    }
    db.close().await;
    let out = kv_queue(&file)?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout)?.lines().count(), MESSAGES);
    Ok(())
}

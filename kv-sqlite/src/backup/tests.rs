use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use kv_core::backend::{AtomicWrite, Mutation, MutationKind};
use kv_core::{Kv, KvValue, SetOptions, key};

use super::*;
use crate::SqliteBackend;

type TestResult = anyhow::Result<()>;

/// A row of table `kv`, every column.
type Row = (Vec<u8>, Vec<u8>, i64, i64, i64);

fn rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt =
        conn.prepare("select k, v, v_encoding, version, expiration_ms from kv order by k")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn counter(path: &Path) -> anyhow::Result<u64> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let n: i64 = conn.query_row("select version from data_version where k = 0", [], |r| {
        r.get(0)
    })?;
    Ok(n as u64)
}

fn names(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// A database at `path` holding `n` keys; the versionstamp of its last
/// commit.
async fn database(path: &Path, n: u64) -> anyhow::Result<kv_core::Versionstamp> {
    let kv = Kv::new(SqliteBackend::open(path)?);
    let mut last = None;
    for i in 0..n {
        last = Some(kv.set(key!["k", i], KvValue::U64(i)).await?);
    }
    kv.close().await;
    last.context("n > 0")
}

/// A backup of a database that is open (and written to) keeps every row:
/// keys, values, encodings, versionstamps, expiries, system keys. Restoring
/// it gives the same rows, and the next commit comes after the bump.
#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_keep_every_row_and_move_the_counter_forward() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    let kv = Kv::new(SqliteBackend::open(&source)?);
    kv.set(key!["plain"], KvValue::Bytes(b"hello".to_vec()))
        .await?;
    let hour = SetOptions::default().with_expire_in(Duration::from_secs(3600));
    kv.set_with(key!["expiring"], KvValue::U64(7), hour).await?;
    // A system key, as the queue layer stores its records.
    let write = AtomicWrite {
        mutations: vec![Mutation {
            key: vec![0xff, b'q', 1, 2],
            kind: MutationKind::Set {
                value: KvValue::Bytes(vec![9]),
                expire_at_ms: None,
            },
        }],
        ..AtomicWrite::default()
    };
    let last = kv
        .backend()
        .atomic_write(write)
        .await?
        .versionstamp()
        .context("committed")?;

    let file = dir.path().join("backup.sqlite3");
    let info = backup(&source, &file, &BackupOptions::new())?;
    assert_eq!(info.versionstamp, last);
    assert_eq!(info.bytes, std::fs::metadata(&file)?.len());
    assert_eq!(rows(&file)?, rows(&source)?);
    assert_eq!(rows(&file)?.len(), 3);
    // One file, no journal or temporary file left beside it.
    let backups: Vec<String> = names(dir.path())?
        .into_iter()
        .filter(|n| !n.starts_with("source"))
        .collect();
    assert_eq!(backups, ["backup.sqlite3"]);
    kv.close().await;

    let target = dir.path().join("restored.sqlite3");
    let restored = restore(&file, &target, &RestoreOptions::new().with_bump(1000))?;
    assert_eq!(restored.versionstamp, last);
    assert_eq!(restored.bumped_to.counter(), last.counter() + 1000);
    assert!(!restored.replaced);
    assert_eq!(rows(&target)?, rows(&source)?);
    let kv = Kv::new(SqliteBackend::open(&target)?);
    let next = kv.set(key!["after"], KvValue::U64(1)).await?;
    assert_eq!(next.counter(), last.counter() + 1001);
    let entry = kv.get(key!["expiring"]).await?.context("restored")?;
    assert_eq!(entry.value, KvValue::U64(7));
    kv.close().await;
    Ok(())
}

/// A target that holds keys is refused, and so is one another connection
/// has open, even with `force`; the target keeps its rows. With `force` and
/// nobody using it, it is replaced, and the counter moves past the larger
/// of the two databases' counters.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_with_data_or_in_use_is_refused_and_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    let last = database(&source, 1).await?;
    let file = dir.path().join("backup.sqlite3");
    backup(&source, &file, &BackupOptions::new())?;
    let target = dir.path().join("target.sqlite3");
    let target_last = database(&target, 5).await?;
    assert!(target_last.counter() > last.counter());
    let bytes = std::fs::read(&target)?;

    let e = restore(&file, &target, &RestoreOptions::new()).expect_err("not empty");
    assert!(
        matches!(&e, BackupError::NotEmpty(p) if p == &target),
        "{e:?}"
    );
    assert!(e.to_string().contains("target.sqlite3"), "{e}");
    assert!(std::fs::read(&target)? == bytes, "a refusal wrote");

    let kept = rows(&target)?;
    let open = Kv::new(SqliteBackend::open(&target)?);
    let force = RestoreOptions::new().with_force(true).with_bump(10);
    let e = restore(&file, &target, &force).expect_err("in use");
    assert!(matches!(&e, BackupError::InUse(p) if p == &target), "{e:?}");
    assert!(open.get(key!["k", 4]).await?.is_some());
    open.close().await;
    assert_eq!(rows(&target)?, kept);

    let restored = restore(&file, &target, &force)?;
    assert!(restored.replaced);
    assert_eq!(restored.bumped_to.counter(), target_last.counter() + 10);
    assert_eq!(rows(&target)?, rows(&source)?);
    assert_eq!(counter(&target)?, target_last.counter() + 10);
    // Nothing is left beside it but the files SQLite itself keeps.
    assert!(
        names(dir.path())?
            .iter()
            .all(|n| !n.ends_with(".restore") && !n.ends_with("-journal")),
        "{:?}",
        names(dir.path())?
    );
    let kv = Kv::new(SqliteBackend::open(&target)?);
    assert_eq!(
        kv.set(key!["x"], KvValue::U64(0)).await?.counter(),
        target_last.counter() + 11
    );
    kv.close().await;
    Ok(())
}

/// A file that is no Deno KV database is refused by name, as a backup, a
/// source or a target, and nothing is created or changed.
#[tokio::test(flavor = "multi_thread")]
async fn files_that_are_not_deno_kv_databases_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.sqlite3");
    database(&good, 2).await?;
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, but long enough to look like a header\n",
    )?;
    let other = dir.path().join("other.sqlite3");
    Connection::open(&other)?.execute_batch("create table t (x); insert into t values (1);")?;
    let missing = dir.path().join("missing.sqlite3");
    let target = dir.path().join("target.sqlite3");
    database(&target, 3).await?;
    let bytes = std::fs::read(&target)?;
    let listing = names(dir.path())?;

    let force = RestoreOptions::new().with_force(true);
    for bad in [&text, &other, dir.path()] {
        let e = restore(bad, &target, &force).expect_err("not a backup");
        assert!(
            matches!(&e, BackupError::NotKv { path, .. } if path == bad),
            "{e:?}"
        );
        assert!(e.to_string().contains(&*bad.to_string_lossy()), "{e}");
        let e = backup(bad, &dir.path().join("b.sqlite3"), &BackupOptions::new())
            .expect_err("not a source");
        assert!(
            matches!(&e, BackupError::NotKv { path, .. } if path == bad),
            "{e:?}"
        );
    }
    let e = restore(&missing, &target, &force).expect_err("missing");
    assert!(
        matches!(&e, BackupError::Missing(p) if p == &missing),
        "{e:?}"
    );
    assert!(std::fs::read(&target)? == bytes, "a refusal wrote");

    // Targets that are not Deno KV databases are not replaced, even forced.
    for bad in [&text, &other] {
        let before = std::fs::read(bad)?;
        let e = restore(&good, bad, &force).expect_err("not a target");
        assert!(
            matches!(&e, BackupError::NotKv { path, .. } if path == bad),
            "{e:?}"
        );
        assert!(std::fs::read(bad)? == before, "a refusal wrote");
    }
    assert_eq!(names(dir.path())?, listing, "a refusal created a file");
    Ok(())
}

/// An existing backup file is replaced only when asked, never when it is
/// the source or has a -wal beside it; a -wal without its database stops a
/// restore.
#[tokio::test(flavor = "multi_thread")]
async fn existing_files_are_replaced_only_when_safe() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    database(&source, 2).await?;
    let file = dir.path().join("backup.sqlite3");
    backup(&source, &file, &BackupOptions::new())?;
    let e = backup(&source, &file, &BackupOptions::new()).expect_err("exists");
    assert!(matches!(&e, BackupError::Exists(p) if p == &file), "{e:?}");
    let overwrite = BackupOptions::new().with_overwrite(true);
    backup(&source, &file, &overwrite)?;
    let e = backup(&source, &source, &overwrite).expect_err("same file");
    assert!(matches!(e, BackupError::SameFile(_)), "{e:?}");
    std::fs::write(sidecar(&file, "-wal"), b"")?;
    let e = backup(&source, &file, &overwrite).expect_err("in use");
    assert!(matches!(e, BackupError::InUse(_)), "{e:?}");

    let target = dir.path().join("gone.sqlite3");
    std::fs::write(sidecar(&target, "-wal"), b"frames of a deleted database")?;
    let e = restore(&source, &target, &RestoreOptions::new()).expect_err("orphan");
    assert!(matches!(e, BackupError::Orphan(_)), "{e:?}");
    assert!(!target.exists());
    let e =
        restore(&source, &source, &RestoreOptions::new().with_force(true)).expect_err("same file");
    assert!(matches!(e, BackupError::SameFile(_)), "{e:?}");
    Ok(())
}

/// The bump must fit SQLite's integer.
#[tokio::test(flavor = "multi_thread")]
async fn a_bump_past_the_largest_counter_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    database(&source, 1).await?;
    let target = dir.path().join("target.sqlite3");
    let e = restore(
        &source,
        &target,
        &RestoreOptions::new().with_bump(i64::MAX as u64),
    )
    .expect_err("overflow");
    assert!(matches!(e, BackupError::Bump { counter: 1, .. }), "{e:?}");
    assert!(!target.exists());
    Ok(())
}

/// Backups taken while four writers commit are each one state of the
/// database: every commit adds one to a writer's own key and to a total,
/// so the total equals the sum of the writers' keys only in a snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_during_commits_is_one_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    let kv = Kv::new(SqliteBackend::open(&source)?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (kv, stop) = (kv.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                kv.atomic()
                    .set(key!["w", w], KvValue::U64(n))
                    .sum(key!["total"], 1)
                    .commit()
                    .await?;
            }
            anyhow::Ok(n)
        }));
    }
    let mut seen = BTreeSet::new();
    for i in 0..5 {
        let file = dir.path().join(format!("backup-{i}.sqlite3"));
        let (s, f) = (source.clone(), file.clone());
        let info =
            tokio::task::spawn_blocking(move || backup(&s, &f, &BackupOptions::new())).await??;
        let rows = rows(&file)?;
        let value = |row: &Row| u64::from_le_bytes(row.1.as_slice().try_into().expect("LE64"));
        let total = rows
            .iter()
            .find(|r| r.0 == key!["total"].encode().expect("a key"));
        let total = total.map_or(0, value);
        let sum: u64 = rows
            .iter()
            .filter(|r| r.0 != key!["total"].encode().expect("a key"))
            .map(value)
            .sum();
        assert_eq!(sum, total, "backup {i} is not one state");
        assert_eq!(info.versionstamp.counter(), counter(&file)?);
        seen.insert(total);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await??;
    }
    kv.close().await;
    assert!(
        seen.len() > 1,
        "the writers did not commit between backups: {seen:?}"
    );
    Ok(())
}

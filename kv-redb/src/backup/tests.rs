use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use kv_core::backend::{AtomicWrite, Mutation, MutationKind};
use kv_core::{Kv, KvValue, SetOptions, key};
use redb::TableDefinition;

use super::*;

type TestResult = anyhow::Result<()>;

/// Every record of the three tables of a closed file.
#[derive(Debug, PartialEq, Eq)]
struct Dump {
    kv: Vec<(Vec<u8>, Vec<u8>)>,
    expiry: Vec<Vec<u8>>,
    meta: Vec<(String, u64)>,
}

impl Dump {
    fn counter(&self) -> u64 {
        self.meta
            .iter()
            .find(|(k, _)| k == COUNTER)
            .map_or(0, |(_, v)| *v)
    }

    fn without_counter(mut self) -> Dump {
        self.meta.retain(|(k, _)| k != COUNTER);
        self
    }
}

fn dump(path: &Path) -> anyhow::Result<Dump> {
    let db = ReadOnlyDatabase::open(path)?;
    let txn = db.begin_read()?;
    let mut out = Dump {
        kv: Vec::new(),
        expiry: Vec::new(),
        meta: Vec::new(),
    };
    for item in txn.open_table(KV)?.iter()? {
        let (k, v) = item?;
        out.kv.push((k.value().to_vec(), v.value().to_vec()));
    }
    for item in txn.open_table(EXPIRY)?.iter()? {
        out.expiry.push(item?.0.value().to_vec());
    }
    for item in txn.open_table(META)?.iter()? {
        let (k, v) = item?;
        out.meta.push((k.value().to_owned(), v.value()));
    }
    Ok(out)
}

fn names(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// A closed database at `path` holding `n` keys; its last versionstamp.
async fn database(path: &Path, n: u64) -> anyhow::Result<Versionstamp> {
    let kv = Kv::new(RedbBackend::open(path)?);
    let mut last = None;
    for i in 0..n {
        last = Some(kv.set(key!["k", i], KvValue::U64(i)).await?);
    }
    kv.close().await;
    last.context("n > 0")
}

/// The backup of an open database keeps every record (values, versionstamps,
/// expiries and their index, system keys); a restore gives the same tables
/// with the counter moved forward, and the next commit comes after it.
#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_keep_every_record_and_move_the_counter_forward() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.redb");
    let backend = RedbBackend::open(&source)?;
    let kv = Kv::new(backend.clone());
    kv.set(key!["plain"], KvValue::Bytes(b"hello".to_vec()))
        .await?;
    let hour = SetOptions::default().with_expire_in(Duration::from_secs(3600));
    kv.set_with(key!["expiring"], KvValue::U64(7), hour).await?;
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

    // The file is open: only the backend that has it can copy it.
    let file = dir.path().join("backup.redb");
    let e = backup(&source, &file, &BackupOptions::new()).expect_err("in use");
    assert!(matches!(&e, BackupError::InUse(p) if p == &source), "{e:?}");
    let info = backend.backup(&file, &BackupOptions::new())?;
    assert_eq!(info.versionstamp, last);
    assert_eq!(info.bytes, std::fs::metadata(&file)?.len());
    kv.close().await;
    let e = backend
        .backup(&dir.path().join("late.redb"), &BackupOptions::new())
        .expect_err("closed");
    assert!(matches!(e, BackupError::Closed), "{e:?}");
    let original = dump(&source)?;
    assert_eq!(dump(&file)?, original);
    assert_eq!(original.kv.len(), 3);
    assert_eq!(original.expiry.len(), 1);
    assert_eq!(
        names(dir.path())?,
        ["backup.redb".to_owned(), "source.redb".to_owned()].into()
    );
    // A file no process has open is copied by path.
    let again = dir.path().join("again.redb");
    assert_eq!(
        backup(&source, &again, &BackupOptions::new())?.versionstamp,
        last
    );
    assert_eq!(dump(&again)?, original);

    let target = dir.path().join("restored.redb");
    let restored = restore(&file, &target, &RestoreOptions::new().with_bump(1000))?;
    assert_eq!(restored.versionstamp, last);
    assert_eq!(restored.bumped_to.counter(), last.counter() + 1000);
    assert!(!restored.replaced);
    let got = dump(&target)?;
    assert_eq!(got.counter(), last.counter() + 1000);
    assert_eq!(got.without_counter(), dump(&source)?.without_counter());
    let kv = Kv::new(RedbBackend::open(&target)?);
    let next = kv.set(key!["after"], KvValue::U64(1)).await?;
    assert_eq!(next.counter(), last.counter() + 1001);
    let entry = kv.get(key!["expiring"]).await?.context("restored")?;
    assert_eq!(entry.value, KvValue::U64(7));
    kv.close().await;
    Ok(())
}

/// A target holding keys is refused, and one a process has open is
/// refused even with `force`; either way it keeps its bytes. Forced, a
/// target nobody uses is replaced and the counter moves past the larger
/// of the two.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_with_data_or_in_use_is_refused_and_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.redb");
    database(&source, 1).await?;
    let target = dir.path().join("target.redb");
    let target_last = database(&target, 5).await?;
    let bytes = std::fs::read(&target)?;

    let e = restore(&source, &target, &RestoreOptions::new()).expect_err("not empty");
    assert!(
        matches!(&e, BackupError::NotEmpty(p) if p == &target),
        "{e:?}"
    );
    assert!(e.to_string().contains("target.redb"), "{e}");
    assert!(std::fs::read(&target)? == bytes, "a refusal wrote");

    let force = RestoreOptions::new().with_force(true).with_bump(10);
    let kept = dump(&target)?;
    let open = Kv::new(RedbBackend::open(&target)?);
    let e = restore(&source, &target, &force).expect_err("in use");
    assert!(matches!(&e, BackupError::InUse(p) if p == &target), "{e:?}");
    assert!(e.to_string().contains("target.redb"), "{e}");
    assert!(open.get(key!["k", 4]).await?.is_some());
    open.close().await;
    assert_eq!(dump(&target)?, kept);

    let restored = restore(&source, &target, &force)?;
    assert!(restored.replaced);
    assert_eq!(restored.bumped_to.counter(), target_last.counter() + 10);
    assert_eq!(
        dump(&target)?.without_counter(),
        dump(&source)?.without_counter()
    );
    assert_eq!(
        names(dir.path())?,
        ["source.redb".to_owned(), "target.redb".to_owned()].into()
    );
    Ok(())
}

/// Files that are no kv redb database are refused by name, as backups,
/// sources and targets, and nothing is created or changed.
#[tokio::test(flavor = "multi_thread")]
async fn files_that_are_not_kv_databases_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.redb");
    database(&good, 2).await?;
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database\n".repeat(100))?;
    let other = dir.path().join("other.redb");
    {
        let db = Database::create(&other)?;
        let txn = db.begin_write()?;
        txn.open_table(TableDefinition::<u64, u64>::new("t"))?
            .insert(1, 1)?;
        txn.commit()?;
    }
    let missing = dir.path().join("missing.redb");
    let target = dir.path().join("target.redb");
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
        let e = backup(bad, &dir.path().join("b.redb"), &BackupOptions::new())
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

/// An existing backup file is replaced only when asked, and never when it
/// is the source or open; the bump must fit 64 bits.
#[tokio::test(flavor = "multi_thread")]
async fn existing_files_are_replaced_only_when_safe() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.redb");
    database(&source, 2).await?;
    let file = dir.path().join("backup.redb");
    backup(&source, &file, &BackupOptions::new())?;
    let e = backup(&source, &file, &BackupOptions::new()).expect_err("exists");
    assert!(matches!(&e, BackupError::Exists(p) if p == &file), "{e:?}");
    let overwrite = BackupOptions::new().with_overwrite(true);
    backup(&source, &file, &overwrite)?;
    let e = backup(&source, &source, &overwrite).expect_err("same file");
    assert!(matches!(e, BackupError::SameFile(_)), "{e:?}");
    let open = RedbBackend::open(&file)?;
    let e = backup(&source, &file, &overwrite).expect_err("in use");
    assert!(matches!(&e, BackupError::InUse(p) if p == &file), "{e:?}");
    kv_core::Backend::close(&open).await;

    let target = dir.path().join("target.redb");
    let e = restore(&source, &target, &RestoreOptions::new().with_bump(u64::MAX))
        .expect_err("overflow");
    assert!(matches!(e, BackupError::Bump { counter: 2, .. }), "{e:?}");
    assert!(!target.exists());
    let e =
        restore(&source, &source, &RestoreOptions::new().with_force(true)).expect_err("same file");
    assert!(matches!(e, BackupError::SameFile(_)), "{e:?}");
    Ok(())
}

/// Backups of an open database taken while four writers commit are each
/// one state: every commit adds one to a writer's own key and to a total.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_during_commits_is_one_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = RedbBackend::open(dir.path().join("source.redb"))?;
    let kv = Kv::new(backend.clone());
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
    let total_key = key!["total"].encode()?;
    let mut seen = BTreeSet::new();
    for i in 0..5 {
        let file = dir.path().join(format!("backup-{i}.redb"));
        let (b, f) = (backend.clone(), file.clone());
        let info =
            tokio::task::spawn_blocking(move || b.backup(&f, &BackupOptions::new())).await??;
        let copy = dump(&file)?;
        assert_eq!(info.versionstamp.counter(), copy.counter());
        let value = |record: &[u8]| -> anyhow::Result<u64> {
            match store::Record::decode(record)?.value {
                KvValue::U64(n) => Ok(n),
                other => anyhow::bail!("not a u64: {other:?}"),
            }
        };
        let mut total = 0;
        let mut sum = 0;
        for (k, v) in &copy.kv {
            if *k == total_key {
                total = value(v)?;
            } else {
                sum += value(v)?;
            }
        }
        assert_eq!(sum, total, "backup {i} is not one state");
        seen.insert(total);
        tokio::time::sleep(Duration::from_millis(5)).await;
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

//! `kv backup` and `kv restore` on SQLite and redb files: a backup taken
//! while writers commit is one prefix of their commits; a restore brings
//! back every key, value, expiry and queue record, Deno reads it, and the
//! next commit's versionstamp is above the bump; refusals name the file
//! and leave the target as it was.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use kv::{Clock, EnqueueOptions, Kv, KvValue, Versionstamp, key};

use crate::data_cli::{deno, run_deno};

/// A row of a SQLite file's table `kv`, every column.
type Row = (Vec<u8>, Vec<u8>, i64, i64, i64);

fn rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt =
        conn.prepare("select k, v, v_encoding, version, expiration_ms from kv order by k")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// `kv ARGS`, with no database in the environment.
fn kv(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(args)
        .env_remove("KV_DB")
        .env_remove("DENO_KV_SQLITE_PATH")
        .stdin(Stdio::null())
        .output()?)
}

/// `kv ARGS`, which must succeed; its standard output.
fn ok(args: &[&str]) -> anyhow::Result<String> {
    let out = kv(args)?;
    anyhow::ensure!(
        out.status.success(),
        "kv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `kv ARGS`, which must fail; its standard error.
fn fails(args: &[&str]) -> anyhow::Result<String> {
    let out = kv(args)?;
    anyhow::ensure!(
        !out.status.success(),
        "kv {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8(out.stderr)?)
}

fn utf8(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a UTF-8 path")
}

/// The versionstamp after `label ` in a line `kv` printed.
fn stamp_after(text: &str, label: &str) -> anyhow::Result<u64> {
    let at = text
        .find(label)
        .with_context(|| format!("no {label:?} in {text:?}"))?;
    let hex = &text[at + label.len()..][..20];
    Ok(Versionstamp::from_slice(&hex_bytes(hex)?)?.counter())
}

fn hex_bytes(hex: &str) -> anyhow::Result<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&hex[i..i + 2], 16)?))
        .collect()
}

/// The versionstamp `kv set` prints for a new commit.
fn next_commit(db: &str) -> anyhow::Result<u64> {
    let printed = ok(&["set", "after-restore", "1", "--db", db])?;
    stamp_after(&format!("v {}", printed.trim()), "v ")
}

/// A `kv serve` over `db`, stopped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db: &str) -> anyhow::Result<Server> {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--access-token",
            "backup-cli-token",
        ])
        .args(["--db", db])
        .env_remove("KV_DB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("piped")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .context("kv serve ended before it listened")??;
        if line.starts_with("listening on ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Server(child))
}

/// Four writers commit continuously, each setting its own key to 1, 2, 3…
/// and adding 1 to a total in the same commit, while `kv backup` (another
/// process) copies the file. The backup holds exactly the commits up to its
/// versionstamp: for each writer, the last value it had acknowledged at or
/// below that versionstamp, with that commit's versionstamp; the total is
/// their sum; and everything acknowledged before the backup began is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_commits_is_one_prefix_of_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("live.sqlite3");
    let kv = Kv::new(kv_sqlite::SqliteBackend::open(&source)?);
    // Some bulk, so that the copy takes a while.
    for chunk in 0..20u64 {
        let mut op = kv.atomic();
        for i in 0..100u64 {
            op.set(key!["filler", chunk, i], KvValue::Bytes(vec![7; 2000]));
        }
        op.commit().await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (kv, stop, acked) = (kv.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut stamps = vec![Versionstamp::ZERO];
            while !stop.load(Ordering::SeqCst) {
                let n = stamps.len() as u64;
                let outcome = kv
                    .atomic()
                    .set(key!["w", w], KvValue::U64(n))
                    .sum(key!["total"], 1)
                    .commit()
                    .await?;
                let stamp = outcome.versionstamp().context("no check to fail")?;
                acked.fetch_max(stamp.counter(), Ordering::SeqCst);
                stamps.push(stamp);
            }
            anyhow::Ok(stamps)
        }));
    }
    while acked.load(Ordering::SeqCst) < 3_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_before = acked.load(Ordering::SeqCst);
    let file = dir.path().join("backup.sqlite3");
    let (s, f) = (source.clone(), file.clone());
    let printed =
        tokio::task::spawn_blocking(move || ok(&["backup", utf8(&s)?, utf8(&f)?])).await??;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    let mut stamps = Vec::new();
    for w in writers {
        stamps.push(w.await??);
    }
    kv.close().await;

    let at = stamp_after(&printed, "versionstamp ")?;
    assert!(at >= acked_before, "{at} < {acked_before}: {printed}");
    assert!(
        stamps
            .iter()
            .any(|s| s.last().is_some_and(|v| v.counter() > at)),
        "no commit after the backup: the writers did not overlap it"
    );
    let copy = Kv::new(
        kv_sqlite::SqliteConfig::new(&file)
            .with_read_only(true)
            .open()?,
    );
    let mut sum = 0;
    for (w, stamps) in stamps.iter().enumerate() {
        // Stamps increase, so the commits at or below `at` are a prefix.
        let n = stamps.iter().rposition(|s| s.counter() <= at).unwrap_or(0);
        let entry = copy.get(key!["w", w as u64]).await?;
        if n == 0 {
            assert!(entry.is_none(), "writer {w}: {entry:?}");
            continue;
        }
        let entry = entry.with_context(|| format!("writer {w} missing"))?;
        assert_eq!(entry.value, KvValue::U64(n as u64), "writer {w}");
        assert_eq!(entry.versionstamp, stamps[n], "writer {w}");
        sum += n as u64;
    }
    let total = copy.get(key!["total"]).await?.context("a total")?;
    assert_eq!(total.value, KvValue::U64(sum));
    assert!(total.versionstamp.counter() <= at);
    copy.close().await;
    Ok(())
}

/// Deno writes every value and key type; kv adds a key that expires and a
/// queued message. After `kv backup` and `kv restore` into a new file, the
/// export (keys, values, versionstamps, expiries) and the queue are the
/// same, `kv get` and Deno read the values, and the next commit, by kv or
/// by Deno, is above the bump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_back_every_entry_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    run_deno("write", &source)?;
    let src = utf8(&source)?;
    ok(&["set", "expiring", "5", "--expire-in", "7d", "--db", src])?;
    let db = kv::open(src).await?;
    let payload = kv_v8::encode(&kv_v8::JsValue::String("job".into()))?;
    db.enqueue(
        payload,
        EnqueueOptions::default().with_delay(Duration::from_secs(3600)),
    )
    .await?;
    db.close().await;

    let file = dir.path().join("backup.sqlite3");
    let printed = ok(&["backup", src, utf8(&file)?])?;
    assert!(printed.contains("backed up"), "{printed}");
    let target = dir.path().join("restored.sqlite3");
    let tgt = utf8(&target)?;
    let restored = ok(&["restore", utf8(&file)?, tgt])?;
    let bumped = stamp_after(&restored, "above ")?;
    let held = stamp_after(&restored, "versionstamp is ")?;
    assert_eq!(bumped, held + (1 << 40), "{restored}");
    assert_eq!(
        stamp_after(&printed, "versionstamp ")?,
        held,
        "{printed} / {restored}"
    );

    // Every row: key, value, encoding, versionstamp, expiry; system keys
    // (the queue's records) included.
    let source_rows = rows(&source)?;
    assert!(source_rows.iter().any(|r| r.4 > 0), "no expiry");
    assert!(
        source_rows.iter().any(|r| r.0.starts_with(b"\xff")),
        "no queue record"
    );
    assert!(rows(&target)? == source_rows, "the restored rows differ");
    assert_eq!(ok(&["export", "--db", tgt])?, ok(&["export", "--db", src])?);
    let queued = ok(&["queue", "--db", src])?;
    assert_eq!(queued.lines().count(), 1, "{queued}");
    assert_eq!(ok(&["queue", "--db", tgt])?, queued);
    let got = ok(&["get", "expiring", "--db", tgt])?;
    assert!(got.contains("\t5\t"), "{got}");
    run_deno("check", &target)?;

    // Deno's next commit on the restored file is above the bump, and so
    // is kv's after it.
    let script = dir.path().join("next.ts");
    std::fs::write(
        &script,
        "const kv = await Deno.openKv(Deno.args[0]);\n\
         const r = await kv.set([\"deno-after-restore\"], 1);\n\
         console.log(r.versionstamp);\n\
         kv.close();\n",
    )?;
    let out = Command::new(deno()?)
        .args(["run", "-A", "--unstable-kv"])
        .arg(&script)
        .arg(&target)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deno_next = stamp_after(&format!("v {}", String::from_utf8(out.stdout)?), "v ")?;
    assert!(deno_next > bumped, "{deno_next} <= {bumped}");
    assert!(next_commit(tgt)? > deno_next);
    Ok(())
}

/// The same on redb: the restored export and queue match, and the next
/// commit is above the bump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_back_every_entry_on_redb() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = format!("redb:{}", dir.path().join("source.redb").display());
    for (key, value) in [("a", "1"), ("b", r#"{"x": [1, "two"]}"#), ("c", "true")] {
        ok(&["set", key, value, "--db", &source])?;
    }
    ok(&["set", "expiring", "5", "--expire-in", "7d", "--db", &source])?;
    let db = kv::open(&source).await?;
    let payload = kv_v8::encode(&kv_v8::JsValue::String("job".into()))?;
    db.enqueue(
        payload,
        EnqueueOptions::default().with_delay(Duration::from_secs(3600)),
    )
    .await?;
    db.close().await;

    let file = dir.path().join("backup.redb");
    ok(&["backup", &source, utf8(&file)?])?;
    let target = format!("redb:{}", dir.path().join("restored.redb").display());
    let restored = ok(&["restore", utf8(&file)?, &target, "--bump", "1000"])?;
    let bumped = stamp_after(&restored, "above ")?;
    assert_eq!(bumped, stamp_after(&restored, "versionstamp is ")? + 1000);
    assert_eq!(
        ok(&["export", "--db", &target])?,
        ok(&["export", "--db", &source])?
    );
    let queued = ok(&["queue", "--db", &source])?;
    assert_eq!(queued.lines().count(), 1, "{queued}");
    assert_eq!(ok(&["queue", "--db", &target])?, queued);
    assert_eq!(next_commit(&target)?, bumped + 1);
    // The expiry came back: the key is there now and gone in eight days.
    let restored_file = dir.path().join("restored.redb");
    for (days, present) in [(0, true), (8, false)] {
        let now = kv::SystemClock.now_ms() + days * 86_400_000;
        let db = Kv::new(
            kv_redb::RedbConfig::new(&restored_file)
                .with_clock(Arc::new(kv::ManualClock::new(now)))
                .open()?,
        );
        assert_eq!(
            db.get(key!["expiring"]).await?.is_some(),
            present,
            "{days} days"
        );
        db.close().await;
    }
    Ok(())
}

/// What `kv restore` refuses, on either engine: a target that holds keys
/// (without --force), one a server has open (even with --force), a file
/// that is not a backup of the target's engine, a missing file. Each
/// message names the file, and the target keeps its bytes.
#[test]
fn refused_restores_name_the_file_and_leave_the_target() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    ok(&["set", "a", "1", "--db", utf8(&p("source.sqlite3"))?])?;
    ok(&[
        "set",
        "a",
        "1",
        "--db",
        &format!("redb:{}", p("source.redb").display()),
    ])?;
    ok(&[
        "backup",
        utf8(&p("source.sqlite3"))?,
        utf8(&p("backup.sqlite3"))?,
    ])?;
    ok(&["backup", utf8(&p("source.redb"))?, utf8(&p("backup.redb"))?])?;
    std::fs::write(p("notes.txt"), "a text file, not a backup\n")?;
    rusqlite::Connection::open(p("other.sqlite3"))?
        .execute_batch("create table t (x); insert into t values (1);")?;

    for (target, backup, foreign) in [
        ("target.sqlite3", "backup.sqlite3", "backup.redb"),
        ("target.redb", "backup.redb", "backup.sqlite3"),
    ] {
        let db = utf8(&p(target))?.to_owned();
        ok(&["set", "keep", r#""me""#, "--db", &db])?;
        let bytes = std::fs::read(p(target))?;
        let unchanged = |why: &str| -> anyhow::Result<()> {
            anyhow::ensure!(
                std::fs::read(p(target))? == bytes,
                "{target} changed after {why}"
            );
            Ok(())
        };

        let e = fails(&["restore", utf8(&p(backup))?, &db])?;
        assert!(e.contains(target) && e.contains("--force"), "{e}");
        unchanged("a refusal of a non-empty target")?;

        for bad in ["notes.txt", "other.sqlite3", foreign, "missing.file"] {
            let e = fails(&["restore", utf8(&p(bad))?, &db, "--force"])?;
            assert!(e.contains(bad), "{bad}: {e}");
            unchanged(bad)?;
        }
        let e = fails(&["restore", utf8(&p(foreign))?, &db, "--force"])?;
        let other = if target.ends_with(".redb") {
            "SQLite"
        } else {
            "redb"
        };
        assert!(e.contains(&format!("is a {other} database")), "{e}");

        {
            let _server = serve(&db)?;
            let e = fails(&["restore", utf8(&p(backup))?, &db, "--force"])?;
            assert!(e.contains(target) && e.contains("in use"), "{e}");
        }
        let after = ok(&["get", "keep", "--db", &db])?;
        assert!(after.contains("me"), "{after}");
        ok(&["restore", utf8(&p(backup))?, &db, "--force"])?;
        let after = ok(&["get", "keep", "--db", &db])?;
        assert!(after.contains("not found"), "{after}");
    }
    Ok(())
}

/// What `kv backup` refuses: an existing file without --force (kept as it
/// was), a database that is not a SQLite or redb file (naming `kv
/// export`), and a redb file a server has open.
#[test]
fn refused_backups_say_why_and_write_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    let src = utf8(&source)?;
    ok(&["set", "a", "1", "--db", src])?;
    let file = dir.path().join("backup.sqlite3");
    std::fs::write(&file, "precious")?;
    let e = fails(&["backup", src, utf8(&file)?])?;
    assert!(e.contains("backup.sqlite3") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&file)?, "precious");
    ok(&["backup", src, utf8(&file)?, "--force"])?;
    assert!(std::fs::read(&file)?.starts_with(b"SQLite format 3\0"));

    for url in ["memory:", "http://127.0.0.1:9", "etcd://127.0.0.1:2379"] {
        let e = fails(&["backup", url, utf8(&dir.path().join("x"))?])?;
        assert!(e.contains(url) && e.contains("kv export"), "{e}");
    }
    let e = fails(&["backup", "memory", "x"])?;
    assert!(e.contains("memory:"), "{e}");
    let e = fails(&["backup", utf8(&dir.path().join("missing.sqlite3"))?, "x"])?;
    assert!(
        e.contains("missing.sqlite3") && e.contains("does not exist"),
        "{e}"
    );

    let redb = format!("redb:{}", dir.path().join("served.redb").display());
    ok(&["set", "a", "1", "--db", &redb])?;
    let _server = serve(&redb)?;
    let e = fails(&["backup", &redb, utf8(&dir.path().join("b.redb"))?])?;
    assert!(e.contains("served.redb") && e.contains("kv export"), "{e}");
    assert!(!dir.path().join("b.redb").exists());
    assert!(!dir.path().join("x").exists());
    Ok(())
}

//! Acknowledged commits survive `kill -9`.
//!
//! The story: an application commits, gets its versionstamp back, tells a
//! user "saved" — and the process is killed a moment later (OOM killer,
//! deploy, power cut of the container). When the database is opened again,
//! everything that was acknowledged must be there, nothing may be half
//! there (a commit writes several keys, in one group commit with other
//! writers), and versionstamps must keep growing so that optimistic checks
//! taken before the crash cannot be fooled. The file must also come back
//! intact by the engine's own integrity check (SQLite's `PRAGMA
//! integrity_check` on the recovered WAL; redb repairs the file on the next
//! open, and `check_integrity` agrees).
//!
//! The test re-runs the calling test binary as a child (a test that calls
//! [`child`], a no-op unless `KV_CRASH_CHILD` names the file) that commits
//! in a loop from a few concurrent writers and prints every acknowledged
//! commit. The parent ([`acknowledged_commits_survive_kill_9`]) kills it
//! with SIGKILL after a random 20–200 ms, reopens and checks. Rounds:
//! `KV_CRASH_ROUNDS`, else 20 (100 with `KV_SLOW_TESTS=1`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use kv_core::{Kv, KvValue, ListOptions, Selector, Versionstamp, key};
use rand::Rng;

use super::{FileBackend, OpenOptions, TempDb, slow};

/// Names the file the child writes to; set only in the child.
const CHILD_ENV: &str = "KV_CRASH_CHILD";
/// The round the child writes, so that rounds use disjoint keys.
const ROUND_ENV: &str = "KV_CRASH_ROUND";
/// Concurrent writers in the child, so that commits share transactions.
const STREAMS: u64 = 4;
/// Keys written by every commit.
const KEYS_PER_COMMIT: u64 = 4;

/// The child: commits until killed, printing `ack <stream> <i>` after each
/// acknowledged commit. Returns at once unless `KV_CRASH_CHILD` is set, so
/// the test that calls it passes in a normal run.
///
/// # Errors
/// When the file cannot be opened or a commit fails.
pub fn child(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let round: u64 = std::env::var(ROUND_ENV)?.parse()?;
    futures::executor::block_on(async {
        let kv = Kv::from_arc(b.open(Path::new(&path), &OpenOptions::default())?);
        let streams = (0..STREAMS).map(|stream| {
            let kv = kv.clone();
            async move {
                for i in 0u64.. {
                    let mut op = kv.atomic();
                    for k in 0..KEYS_PER_COMMIT {
                        op.set(key!["r", round, stream, i, k], KvValue::U64(i));
                    }
                    op.commit().await?;
                    // One write per line, so a kill cannot split a line.
                    let mut out = std::io::stdout().lock();
                    out.write_all(format!("ack {stream} {i}\n").as_bytes())?;
                    out.flush()?;
                }
                anyhow::Ok(())
            }
        });
        futures::future::try_join_all(streams).await?;
        Ok(())
    })
}

/// The parent: runs the rounds, each spawning the current test binary with
/// the filter `child_test` (the exact name of the test that calls
/// [`child`], e.g. `crash::crash_child`), killing it and checking the file.
/// Does nothing inside the child.
///
/// # Errors
/// When an acknowledged commit is missing, a commit is partly there,
/// versionstamps go back, the file fails its integrity check, or no round
/// acknowledged anything (the child never ran).
pub fn acknowledged_commits_survive_kill_9(
    b: &'static dyn FileBackend,
    child_test: &str,
) -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Ok(());
    }
    let rounds: u64 = match std::env::var("KV_CRASH_ROUNDS") {
        Ok(n) => n.parse().context("KV_CRASH_ROUNDS")?,
        Err(_) if slow() => 100,
        Err(_) => 20,
    };
    let db = TempDb::new(b)?;
    let exe = std::env::current_exe()?;
    let mut rng = rand::thread_rng();
    let mut last_stamp = Versionstamp::ZERO;
    let mut total_acked = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                child_test,
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(CHILD_ENV, db.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..=200)));
        child.kill()?;
        child.wait()?;
        let lines = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;

        let mut acked: HashMap<u64, u64> = HashMap::new();
        for line in lines.iter().filter_map(|l| l.strip_prefix("ack ")) {
            let (stream, i) = line
                .split_once(' ')
                .with_context(|| format!("not `ack <stream> <i>`: {line}"))?;
            let (stream, i): (u64, u64) = (stream.parse()?, i.parse()?);
            let count = acked.entry(stream).or_default();
            ensure!(*count == i, "stream {stream} acknowledged {i} out of order");
            *count = i + 1;
            total_acked += 1;
        }
        last_stamp = futures::executor::block_on(verify_round(&db, round, &acked, last_stamp))?;
    }
    // Guards the test itself: a child that never starts (a wrong
    // `child_test`) acknowledges nothing, and every check above would pass.
    ensure!(
        rounds == 0 || total_acked > 0,
        "no commit acknowledged in {rounds} rounds: does `{child_test}` call `crash::child`?"
    );
    eprintln!("{rounds} kill -9 rounds, {total_acked} acknowledged commits, all present");
    Ok(())
}

/// Checks the file after round `round` was killed and returns the largest
/// versionstamp seen so far.
async fn verify_round(
    db: &TempDb,
    round: u64,
    acked: &HashMap<u64, u64>,
    before: Versionstamp,
) -> anyhow::Result<Versionstamp> {
    let kv = db.kv()?;
    let mut last = before;
    for stream in 0..STREAMS {
        let entries = kv
            .list(
                Selector::prefix(key!["r", round, stream]),
                ListOptions::default(),
            )
            .collect_all()
            .await?;
        // Entries come in key order: commit i, then key k.
        let commits: Vec<_> = entries.chunks(KEYS_PER_COMMIT as usize).collect();
        for (i, commit) in commits.iter().enumerate() {
            let i = i as u64;
            ensure!(
                commit.len() == KEYS_PER_COMMIT as usize,
                "round {round} stream {stream}: commit {i} partly applied"
            );
            for (k, entry) in commit.iter().enumerate() {
                ensure!(
                    entry.key == key!["r", round, stream, i, k as u64],
                    "round {round} stream {stream}: commit {i} has a gap or a partial write"
                );
                ensure!(entry.value == KvValue::U64(i), "wrong value in commit {i}");
                ensure!(
                    entry.versionstamp == commit[0].versionstamp,
                    "commit {i} of stream {stream} has mixed versionstamps"
                );
            }
            ensure!(
                commit[0].versionstamp > before,
                "round {round}: versionstamp {} not after the previous round's {before}",
                commit[0].versionstamp
            );
            last = last.max(commit[0].versionstamp);
        }
        let acked = acked.get(&stream).copied().unwrap_or(0);
        let present = commits.len() as u64;
        ensure!(
            present >= acked,
            "round {round} stream {stream}: {acked} commits acknowledged, only {present} present"
        );
        // At most the one commit in flight when the child died may be there
        // without its acknowledgement.
        ensure!(
            present <= acked + 1,
            "round {round} stream {stream}: {present} > {acked} + 1"
        );
    }
    kv.close().await;
    drop(kv);

    let raw = db.inspect()?;
    ensure!(raw.integrity_ok, "round {round}: integrity check failed");
    // Later commits must still get larger versionstamps.
    ensure!(
        Versionstamp::from_counter(raw.counter) >= last,
        "counter behind the data"
    );
    Ok(last)
}

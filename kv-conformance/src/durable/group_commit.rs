//! Many concurrent writers share transactions (group commit) without
//! affecting each other: every write keeps its own checks, its own
//! versionstamp and its own failure.
//!
//! The writers are tokio tasks: call these from a multi-threaded tokio
//! runtime, so that writes really arrive together.

use std::time::Instant;

use anyhow::{Context, ensure};
use kv_core::{CommitOutcome, Error, Kv, KvValue, ListOptions, Selector, Versionstamp, key};

use super::{FileBackend, OpenOptions, TempDb};

/// Concurrent writers in [`run_writers`].
pub const WRITERS: u64 = 64;

/// What one writer task saw.
#[derive(Default)]
struct Seen {
    committed: Vec<Versionstamp>,
    check_failures: usize,
    mutation_failures: usize,
}

async fn writer(kv: Kv, id: u64, commits: u64) -> anyhow::Result<Seen> {
    let mut seen = Seen::default();
    let mut last: Option<Versionstamp> = None;
    for j in 0..commits {
        let outcome = kv
            .atomic()
            .check(key!["w", id], last)
            .sum(key!["counter"], 1)
            .set(key!["w", id], KvValue::U64(j))
            .commit()
            .await?;
        let CommitOutcome::Committed { versionstamp } = outcome else {
            anyhow::bail!("writer {id}: its own key changed under it at commit {j}");
        };
        seen.committed.push(versionstamp);
        last = Some(versionstamp);

        if j % 5 == id % 5 {
            // A stale check fails alone.
            let stale = kv
                .atomic()
                .check(key!["w", id], Some(Versionstamp::ZERO))
                .sum(key!["counter"], 1000)
                .commit()
                .await?;
            ensure!(!stale.is_ok(), "a stale check passed");
            seen.check_failures += 1;

            // A failing mutation leaves nothing of its write behind, not
            // even the sum before it, which later writes of the same group
            // must not see either.
            let failed = kv
                .atomic()
                .set(key!["bad", id, j, "a"], KvValue::U64(1))
                .sum(key!["counter"], 1000)
                .sum(key!["text"], 1)
                .set(key!["bad", id, j, "b"], KvValue::U64(1))
                .commit()
                .await;
            ensure!(matches!(failed, Err(Error::TypeMismatch(_))), "{failed:?}");
            seen.mutation_failures += 1;
        }
    }
    Ok(seen)
}

/// Runs [`WRITERS`] tasks of `commits` commits each on `kv` (a fresh
/// database), mixed with stale checks and failing mutations, and checks
/// the result: every commit counted once, no trace of failed writes, and
/// the committed versionstamps exactly the next ones after the setup's.
/// Returns the committed stamps, sorted.
///
/// # Errors
/// When a writer sees something wrong or the end state is off.
pub async fn run_writers(kv: &Kv, commits: u64) -> anyhow::Result<Vec<Versionstamp>> {
    let base = kv
        .set(key!["text"], KvValue::Bytes(b"not a number".to_vec()))
        .await?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(kv.clone(), id, commits)))
        .collect();
    let mut stamps = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let seen = task.await??;
        stamps.extend(seen.committed);
        failures += seen.check_failures + seen.mutation_failures;
    }
    let elapsed = start.elapsed();
    eprintln!(
        "{} commits and {failures} failed writes by {WRITERS} writers in {elapsed:?} ({:.0} commits/s)",
        stamps.len(),
        stamps.len() as f64 / elapsed.as_secs_f64()
    );
    let expected_failures: u64 = (0..WRITERS)
        .map(|id| 2 * (0..commits).filter(|j| j % 5 == id % 5).count() as u64)
        .sum();
    ensure!(
        failures as u64 == expected_failures,
        "{failures} failed writes, expected {expected_failures}"
    );

    let counter = kv.get(key!["counter"]).await?.context("summed")?;
    ensure!(
        counter.value == KvValue::U64(WRITERS * commits),
        "counter {:?}",
        counter.value
    );
    for id in 0..WRITERS {
        let w = kv.get(key!["w", id]).await?.context("written")?;
        ensure!(
            w.value == KvValue::U64(commits - 1),
            "writer {id}: {:?}",
            w.value
        );
    }
    let bad = kv
        .list(Selector::prefix(key!["bad"]), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(bad.is_empty(), "failed writes left {} keys", bad.len());

    // Every successful write took exactly one step of the counter; failed
    // ones took none.
    stamps.sort();
    let expected: Vec<_> = (1..=stamps.len() as u64)
        .map(|n| Versionstamp::from_counter(base.counter() + n))
        .collect();
    ensure!(
        stamps == expected,
        "the committed stamps are not the next {} after {base}",
        expected.len()
    );
    Ok(stamps)
}

/// [`run_writers`] on a file with `commits` commits per writer; after
/// close, the file is intact and its counter and key count agree.
///
/// # Errors
/// As [`run_writers`], or when the file disagrees.
pub async fn concurrent_writers_share_commits(
    b: &'static dyn FileBackend,
    commits: u64,
) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    run_writers(&kv, commits).await?;
    kv.close().await;

    // Everything acknowledged is in the file, and the counter agrees.
    let raw = db.inspect()?;
    ensure!(raw.integrity_ok, "integrity check failed");
    ensure!(
        raw.counter == 1 + WRITERS * commits,
        "file counter {}",
        raw.counter
    );
    // "text", "counter" and one key per writer.
    ensure!(raw.keys == 2 + WRITERS, "{} keys in the file", raw.keys);
    Ok(())
}

/// [`run_writers`] with one write per transaction: grouping changes no
/// outcome.
///
/// # Errors
/// As [`run_writers`].
pub async fn batches_of_one_behave_the_same(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = Kv::from_arc(db.open(&OpenOptions::default().with_max_batch(1))?);
    run_writers(&kv, 5).await?;
    Ok(())
}

/// A write whose `sum` fails midway leaves nothing behind, takes no
/// versionstamp, and fails with Deno's message.
///
/// # Errors
/// When the write succeeds, fails otherwise, or leaves a trace.
pub async fn failed_write_leaves_nothing(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    kv.set(key!["str"], KvValue::Bytes(b"x".to_vec())).await?;
    let before = kv.set(key!["n"], KvValue::U64(1)).await?;
    let result = kv
        .atomic()
        .set(key!["a"], KvValue::U64(1))
        .sum(key!["n"], 1)
        .sum(key!["str"], 1)
        .set(key!["b"], KvValue::U64(1))
        .commit()
        .await;
    let Err(Error::TypeMismatch(message)) = result else {
        anyhow::bail!("expected a type mismatch, got {result:?}");
    };
    ensure!(
        message == "Failed to perform 'sum' mutation on a non-U64 value in the database",
        "{message}"
    );
    ensure!(kv.get(key!["a"]).await?.is_none(), "a was written");
    ensure!(kv.get(key!["b"]).await?.is_none(), "b was written");
    let n = kv.get(key!["n"]).await?.context("n was set")?;
    ensure!(
        (&n.value, n.versionstamp) == (&KvValue::U64(1), before),
        "{n:?}"
    );
    let next = kv.set(key!["c"], KvValue::U64(1)).await?;
    ensure!(
        next.counter() == before.counter() + 1,
        "{next} after {before}"
    );
    Ok(())
}

//! Many concurrent writers share transactions (group commit) without
//! affecting each other: every write keeps its own checks, its own
//! versionstamp and its own failure.

use std::time::Instant;

use kv_core::{CommitOutcome, Error, Kv, KvValue, ListOptions, Selector, Versionstamp, key};
use kv_redb::RedbConfig;

use crate::{TempDb, TestResult, raw, slow};

const WRITERS: u64 = 64;

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
            anyhow::ensure!(!stale.is_ok(), "a stale check passed");
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
            anyhow::ensure!(matches!(failed, Err(Error::TypeMismatch(_))), "{failed:?}");
            seen.mutation_failures += 1;
        }
    }
    Ok(seen)
}

async fn run_writers(kv: &Kv, commits: u64) -> anyhow::Result<Vec<Versionstamp>> {
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
    assert_eq!(failures as u64, expected_failures);

    let counter = kv.get(key!["counter"]).await?.expect("summed");
    assert_eq!(counter.value, KvValue::U64(WRITERS * commits));
    for id in 0..WRITERS {
        let w = kv.get(key!["w", id]).await?.expect("written");
        assert_eq!(w.value, KvValue::U64(commits - 1));
    }
    let bad = kv
        .list(Selector::prefix(key!["bad"]), ListOptions::default())
        .collect_all()
        .await?;
    assert!(bad.is_empty(), "failed writes left {} keys", bad.len());

    // Every successful write took exactly one step of the counter; failed
    // ones took none.
    stamps.sort();
    let expected: Vec<_> = (1..=stamps.len() as u64)
        .map(|n| Versionstamp::from_counter(base.counter() + n))
        .collect();
    assert_eq!(stamps, expected);
    Ok(stamps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits() -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    let commits = if slow() { 200 } else { 30 };
    run_writers(&kv, commits).await?;
    kv.close().await;

    // Everything acknowledged is in the file, and the counter agrees.
    let raw = raw::inspect(db.path())?;
    assert!(raw.integrity_ok);
    assert_eq!(raw.counter, 1 + WRITERS * commits);
    // "text", "counter" and one key per writer.
    assert_eq!(raw.keys, 2 + WRITERS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_of_one_behave_the_same() -> TestResult {
    let db = TempDb::new()?;
    let kv = Kv::new(RedbConfig::new(db.path()).with_max_batch(1).open()?);
    run_writers(&kv, 5).await?;
    Ok(())
}

#[tokio::test]
async fn failed_write_leaves_nothing() -> TestResult {
    let db = TempDb::new()?;
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
    assert_eq!(
        message,
        "Failed to perform 'sum' mutation on a non-U64 value in the database"
    );
    assert_eq!(kv.get(key!["a"]).await?, None);
    assert_eq!(kv.get(key!["b"]).await?, None);
    let n = kv.get(key!["n"]).await?.expect("set");
    assert_eq!((n.value, n.versionstamp), (KvValue::U64(1), before));
    let next = kv.set(key!["c"], KvValue::U64(1)).await?;
    assert_eq!(next.counter(), before.counter() + 1);
    Ok(())
}

/// Writes queued together see each other in queue order: the second write's
/// check sees the first write's key, a failed write in between changes
/// nothing that the third one reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_evaluates_writes_in_order() -> TestResult {
    let db = TempDb::new()?;
    let kv = db.kv()?;
    kv.set(key!["text"], KvValue::Bytes(b"x".to_vec())).await?;
    for round in 0..20u64 {
        // Issued together so that they usually share a group.
        let mut create = kv.atomic();
        create
            .check(key!["k", round], None)
            .set(key!["k", round], KvValue::U64(1));
        let mut failing = kv.atomic();
        failing.sum(key!["k", round], 5).sum(key!["text"], 1);
        let mut bump = kv.atomic();
        bump.sum(key!["k", round], 10);
        let mut duplicate = kv.atomic();
        duplicate
            .check(key!["k", round], None)
            .set(key!["k", round], KvValue::U64(100));
        let (a, b, c, d) = futures::join!(
            create.commit(),
            failing.commit(),
            bump.commit(),
            duplicate.commit()
        );
        assert!(a?.is_ok());
        assert!(matches!(b, Err(Error::TypeMismatch(_))), "{b:?}");
        let c = c?.versionstamp().expect("no checks");
        assert!(!d?.is_ok(), "the key exists by then");
        let k = kv.get(key!["k", round]).await?.expect("created");
        assert_eq!((k.value, k.versionstamp), (KvValue::U64(11), c));
    }
    Ok(())
}

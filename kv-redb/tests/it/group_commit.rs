//! Many concurrent writers share transactions (group commit) without
//! affecting each other; see `kv_conformance::durable::group_commit`.
//! redb evaluates a group against an overlay of its earlier writes, tested
//! here.

use kv_conformance::durable::{group_commit, slow};
use kv_core::{Error, KvValue, key};

use crate::{Redb, TestResult, temp_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits() -> TestResult {
    let commits = if slow() { 200 } else { 30 };
    group_commit::concurrent_writers_share_commits(&Redb, commits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_of_one_behave_the_same() -> TestResult {
    group_commit::batches_of_one_behave_the_same(&Redb).await
}

#[tokio::test]
async fn failed_write_leaves_nothing() -> TestResult {
    group_commit::failed_write_leaves_nothing(&Redb).await
}

/// Writes queued together see each other in queue order: the second write's
/// check sees the first write's key, a failed write in between changes
/// nothing that the third one reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_evaluates_writes_in_order() -> TestResult {
    let db = temp_db()?;
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

//! Recording and checking end to end: every backend passes a small run,
//! and backends with planted bugs (stale reads, acknowledged writes that
//! are dropped) are caught.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kv::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, WatchStream,
};
use kv::{Kv, MemoryBackend, Versionstamp};
use kv_consistency::faults::SlowBackend;
use kv_consistency::recorder::Workload;
use kv_consistency::run::{Target, run};
use kv_consistency::{ViolationKind, check, record};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn small() -> Workload {
    Workload::default().with_ops_per_client(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_passes_a_small_run() -> TestResult {
    for target in [Target::Memory, Target::Sqlite, Target::Redb, Target::Remote] {
        let summary = run(&target, 2, 4, &small()).await?;
        assert_eq!(summary.histories, 2);
        assert!(
            summary.operations > 2 * 4 * 60,
            "{}: {summary:?}",
            target.name()
        );
        assert!(
            summary.violations.is_empty(),
            "{}: {:#?}",
            target.name(),
            summary.violations
        );
    }
    Ok(())
}

/// Per range start: reads so far and the last answer.
type ReadCache = HashMap<Vec<u8>, (u32, Vec<RawEntry>)>;

/// Planted bug: every third read of a range answers with what the previous
/// read of that range returned.
#[derive(Debug, Default)]
struct StaleReads {
    inner: MemoryBackend,
    cache: Mutex<ReadCache>,
}

#[async_trait]
impl Backend for StaleReads {
    fn name(&self) -> &str {
        "stale-reads"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> kv::Result<Vec<Vec<RawEntry>>> {
        let fresh = self
            .inner
            .snapshot_read(ranges.clone(), consistency)
            .await?;
        let mut cache = self.cache.lock().map_err(|_| kv::Error::Closed)?;
        Ok(ranges
            .iter()
            .zip(fresh)
            .map(|(range, fresh)| {
                let slot = cache
                    .entry(range.start.clone())
                    .or_insert((0, fresh.clone()));
                slot.0 += 1;
                if slot.0 % 3 == 0 {
                    slot.1.clone()
                } else {
                    slot.1 = fresh.clone();
                    fresh
                }
            })
            .collect())
    }

    async fn atomic_write(&self, write: AtomicWrite) -> kv::Result<CommitOutcome> {
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// Planted bug: every seventh commit is acknowledged with a fresh
/// versionstamp but never applied.
#[derive(Debug, Default)]
struct LostWrites {
    inner: MemoryBackend,
    commits: Mutex<u64>,
}

#[async_trait]
impl Backend for LostWrites {
    fn name(&self) -> &str {
        "lost-writes"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> kv::Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> kv::Result<CommitOutcome> {
        let n = {
            let mut n = self.commits.lock().map_err(|_| kv::Error::Closed)?;
            *n += 1;
            *n
        };
        if n > 1 && n % 7 == 0 {
            // Burn a versionstamp with an empty commit, apply nothing.
            let outcome = self.inner.atomic_write(AtomicWrite::default()).await?;
            let versionstamp = outcome.versionstamp().unwrap_or(Versionstamp::ZERO);
            return Ok(CommitOutcome::Committed { versionstamp });
        }
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// Planted bug: a commit evaluates only its first check (and takes a
/// moment first, so that concurrent transactions overlap).
#[derive(Debug, Default)]
struct FirstCheckOnly {
    inner: MemoryBackend,
}

#[async_trait]
impl Backend for FirstCheckOnly {
    fn name(&self) -> &str {
        "first-check-only"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> kv::Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn atomic_write(&self, mut write: AtomicWrite) -> kv::Result<CommitOutcome> {
        tokio::time::sleep(std::time::Duration::from_micros(300)).await;
        write.checks.truncate(1);
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

async fn violations_on(
    backend: Arc<dyn Backend>,
) -> Result<Vec<ViolationKind>, Box<dyn std::error::Error>> {
    let kv = Kv::from_arc(backend);
    let history = record(vec![kv; 4], &small()).await?;
    Ok(check(&history).into_iter().map(|v| v.kind).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_are_caught() -> TestResult {
    let found = violations_on(Arc::new(StaleReads::default())).await?;
    assert!(found.contains(&ViolationKind::NotLinearizable), "{found:?}");
    assert!(found.contains(&ViolationKind::NoSnapshot), "{found:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_but_lost_writes_are_caught() -> TestResult {
    let found = violations_on(Arc::new(LostWrites::default())).await?;
    assert!(found.contains(&ViolationKind::NotLinearizable), "{found:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_checks_make_dependency_cycles() -> TestResult {
    let found = violations_on(Arc::new(FirstCheckOnly::default())).await?;
    assert!(
        found
            .iter()
            .any(|k| matches!(k, ViolationKind::CycleG2 | ViolationKind::CycleGSingle)),
        "{found:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_leaves_unknown_outcomes_that_check_out() -> TestResult {
    // Stalls on a third of the calls, longer than the clients wait: commits
    // time out before or after they apply.
    let slow = Arc::new(
        SlowBackend::new(Arc::new(MemoryBackend::new()), 7)
            .with_stalls(std::time::Duration::from_millis(40), 300),
    );
    let kv = Kv::from_arc(slow.clone());
    let workload = Workload::default()
        .with_ops_per_client(40)
        .with_op_timeout(std::time::Duration::from_millis(20));
    let history = record(vec![kv; 4], &workload).await?;
    let unknown = history.unknown_commits();
    assert!(slow.stalls() > 10, "{} stalls", slow.stalls());
    assert!(unknown > 0, "no commit timed out");
    let violations = check(&history);
    assert!(violations.is_empty(), "{violations:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_in_separate_processes_merge_into_one_history() -> TestResult {
    const TOKEN: &str = "kv-consistency-test-token";
    let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse()?).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kv_remote::serve(
        listener,
        storage,
        kv_remote::ServerConfig::new([TOKEN]),
        async {
            let _ = stopped.await;
        },
    ));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_kv-consistency"));
    let history =
        kv_consistency::run::record_processes(bin, &format!("http://{addr}"), TOKEN, 3, &small())
            .await?;
    let _ = stop.send(());
    server.await??;
    // Every client reported (the bank's opening is the parent's), each
    // with at least one operation per step of its workload.
    let mut clients: Vec<u32> = history.ops.iter().map(|op| op.client).collect();
    clients.sort_unstable();
    clients.dedup();
    assert_eq!(clients, vec![0, 1, 2, u32::MAX]);
    assert!(history.len() > 3 * 60, "{} operations", history.len());
    let violations = check(&history);
    assert!(violations.is_empty(), "{violations:#?}");
    Ok(())
}

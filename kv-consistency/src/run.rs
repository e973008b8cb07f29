//! Records and checks many histories against one backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv::{Backend, Kv};

use crate::faults::{FaultCounts, KvServe, Proxy, SlowBackend};
use crate::history::{OpKind, Outcome};
use crate::recorder::{Workload, record};
use crate::{ConsistencyError, Violation, check};

const TOKEN: &str = "kv-consistency-token-0123456789";

/// A backend to record histories against; each history gets a fresh
/// database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `memory:`.
    Memory,
    /// A SQLite file.
    Sqlite,
    /// A SQLite file behind [`SlowBackend`](crate::faults::SlowBackend):
    /// random delays around every call and stalls longer than the clients'
    /// timeout.
    SlowSqlite,
    /// A redb file.
    Redb,
    /// kv's KV Connect server in this process over SQLite, one
    /// `RemoteBackend` connection per client.
    Remote,
    /// A `kv serve` process (this binary) over SQLite, one connection per
    /// client through a proxy, with faults injected: SIGKILL and restart of
    /// the process, and dropped connections.
    ServeFaults(PathBuf),
}

impl Target {
    /// The name printed in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Memory => "memory",
            Target::Sqlite => "sqlite",
            Target::SlowSqlite => "sqlite+slow",
            Target::Redb => "redb",
            Target::Remote => "remote",
            Target::ServeFaults(_) => "serve+faults",
        }
    }
}

/// The totals of one backend's run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Histories recorded and checked.
    pub histories: usize,
    /// Operations in them.
    pub operations: usize,
    /// Commits with an unknown outcome.
    pub unknown: usize,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Every violation found (must be empty).
    pub violations: Vec<Violation>,
    /// Wall time of recording and checking.
    pub elapsed: Duration,
}

/// Records `histories` histories of `clients` clients on `target` and
/// checks each.
///
/// # Errors
/// When a database, server or connection cannot be set up.
pub async fn run(
    target: &Target,
    histories: usize,
    clients: usize,
    workload: &Workload,
) -> Result<Summary, ConsistencyError> {
    let start = Instant::now();
    let dir = tempfile::tempdir().map_err(|source| ConsistencyError::Io {
        what: "create a temporary directory".into(),
        source,
    })?;
    let mut summary = Summary::default();
    for h in 0..histories {
        let workload = workload
            .clone()
            .with_seed(workload.seed.wrapping_add(h as u64));
        let history = match target {
            Target::Memory => embedded("memory:", clients, &workload).await?,
            Target::Sqlite => {
                let url = format!(
                    "sqlite:{}",
                    dir.path().join(format!("{h}.sqlite3")).display()
                );
                embedded(&url, clients, &workload).await?
            }
            Target::SlowSqlite => {
                let url = format!(
                    "sqlite:{}",
                    dir.path().join(format!("{h}.sqlite3")).display()
                );
                let (history, stalls) = slow(&url, clients, &workload).await?;
                summary.faults.stalls += stalls;
                history
            }
            Target::Redb => {
                let url = format!("redb:{}", dir.path().join(format!("{h}.redb")).display());
                embedded(&url, clients, &workload).await?
            }
            Target::Remote => {
                let url = format!(
                    "sqlite:{}",
                    dir.path().join(format!("{h}.sqlite3")).display()
                );
                remote(&url, clients, &workload).await?
            }
            Target::ServeFaults(bin) => {
                let path = dir.path().join(format!("{h}.sqlite3"));
                let (history, faults) = serve_faults(bin, &path, clients, &workload).await?;
                summary.faults.kills += faults.kills;
                summary.faults.drops += faults.drops;
                history
            }
        };
        summary.histories += 1;
        summary.operations += history.len();
        summary.unknown += history
            .ops
            .iter()
            .filter(|op| {
                matches!(
                    op.kind,
                    OpKind::Commit {
                        outcome: Outcome::Unknown,
                        ..
                    }
                )
            })
            .count();
        let violations = tokio::task::spawn_blocking(move || check(&history))
            .await
            .expect("the checker does not panic");
        summary.violations.extend(violations);
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

async fn embedded(
    url: &str,
    clients: usize,
    workload: &Workload,
) -> Result<crate::History, ConsistencyError> {
    let backend = kv::open_backend(url).await?;
    let kv = Kv::from_arc(backend);
    let history = record(vec![kv.clone(); clients], workload).await?;
    kv.close().await;
    Ok(history)
}

/// Stalls last 200 ms and clients give up after 100 ms, so a stall after a
/// commit leaves an applied commit with an unknown outcome.
async fn slow(
    url: &str,
    clients: usize,
    workload: &Workload,
) -> Result<(crate::History, usize), ConsistencyError> {
    let storage = kv::open_backend(url).await?;
    let backend = Arc::new(SlowBackend::new(storage, workload.seed));
    let kv = Kv::from_arc(backend.clone());
    let workload = workload.clone().with_op_timeout(Duration::from_millis(150));
    let history = record(vec![kv.clone(); clients], &workload).await?;
    kv.close().await;
    Ok((history, backend.stalls()))
}

async fn remote(
    url: &str,
    clients: usize,
    workload: &Workload,
) -> Result<crate::History, ConsistencyError> {
    let storage: Arc<dyn Backend> = kv::open_backend(url).await?;
    let addr = "127.0.0.1:0".parse().expect("a valid socket address");
    let (listener, addr) = kv_remote::bind(addr)
        .await
        .map_err(|source| ConsistencyError::Io {
            what: "bind the KV Connect server".into(),
            source,
        })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kv_remote::serve(
        listener,
        storage.clone(),
        kv_remote::ServerConfig::new([TOKEN]),
        async {
            let _ = stopped.await;
        },
    ));
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = kv_remote::RemoteConfig::new(format!("http://{addr}"), TOKEN)
            .connect()
            .await?;
        handles.push(Kv::new(client));
    }
    let history = record(handles, workload).await;
    let _ = stop.send(());
    let _ = server.await;
    storage.close().await;
    history
}

async fn serve_faults(
    bin: &std::path::Path,
    path: &std::path::Path,
    clients: usize,
    workload: &Workload,
) -> Result<(crate::History, FaultCounts), ConsistencyError> {
    let mut server = KvServe::start(bin, path, TOKEN).await?;
    let proxy = Proxy::start(server.addr()).await?;
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = kv_remote::RemoteConfig::new(format!("http://{}", proxy.addr()), TOKEN)
            .with_max_retries(0)
            .with_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        handles.push(Kv::new(client));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let workload = workload.clone().with_op_timeout(Duration::from_secs(3));
    let recording = async {
        let history = record(handles, &workload).await;
        let _ = stop.send(());
        history
    };
    let (history, faults) = tokio::join!(
        recording,
        crate::faults::inject(&mut server, &proxy, workload.seed, stopped)
    );
    let faults = faults?;
    let history = history?;
    server.kill9().await?;
    Ok((history, faults))
}

//! Records and checks many histories against one backend.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv::{Backend, Kv};

use crate::etcd::{EtcdCluster, inject_leader_kills};
use crate::faults::{FaultCounts, KvServe, Proxy, SlowBackend};
use crate::recorder::{Clock, Workload, open_bank, record};
use crate::staleness::{Staleness, measure};
use crate::wire::from_line;
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
    /// A SQLite file behind [`SlowBackend`]:
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
    /// As [`Target::ServeFaults`], with every client an OS process of its
    /// own (`client`: the `kv-consistency` binary, run as `kv-consistency
    /// client`) reporting its operations as JSON lines.
    ServeProcesses {
        /// The `kv` binary.
        kv: PathBuf,
        /// The `kv-consistency` binary.
        client: PathBuf,
    },
    /// A 3-member etcd cluster, one `EtcdBackend` connection per client,
    /// with the leader killed with SIGKILL and restarted while they run.
    /// Eventual reads (etcd's serializable reads) may lag: they are
    /// measured, not checked.
    Etcd(EtcdCluster),
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
            Target::ServeProcesses { .. } => "serve+procs",
            Target::Etcd(_) => "etcd+kills",
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
    /// How stale strong and eventual reads were.
    pub staleness: Staleness,
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
                let (history, faults) = serve_faults(bin, None, &path, clients, &workload).await?;
                summary.faults.kills += faults.kills;
                summary.faults.drops += faults.drops;
                history
            }
            Target::Etcd(cluster) => {
                let (history, kills) = etcd(cluster, h, clients, &workload).await?;
                summary.faults.leader_kills += kills;
                history
            }
            Target::ServeProcesses { kv, client } => {
                let path = dir.path().join(format!("{h}.sqlite3"));
                let (history, faults) =
                    serve_faults(kv, Some(client), &path, clients, &workload).await?;
                summary.faults.kills += faults.kills;
                summary.faults.drops += faults.drops;
                history
            }
        };
        summary.histories += 1;
        summary.operations += history.len();
        summary.unknown += history.unknown_commits();
        let (history, violations, staleness) = tokio::task::spawn_blocking(move || {
            let violations = check(&history);
            let staleness = measure(&history).0;
            (history, violations, staleness)
        })
        .await
        .expect("the checker does not panic");
        if !violations.is_empty()
            && let Some(dir) = std::env::var_os("KV_CONSISTENCY_DUMP")
        {
            dump(&PathBuf::from(dir), target.name(), h, &history)?;
        }
        summary.violations.extend(violations);
        summary.staleness.merge(staleness);
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

/// One history on a fresh prefix of the cluster, with leader kills.
async fn etcd(
    cluster: &EtcdCluster,
    h: usize,
    clients: usize,
    workload: &Workload,
) -> Result<(crate::History, usize), ConsistencyError> {
    // A prefix of its own per run and history: earlier runs' data stays
    // out of the way.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let url = cluster.url(&format!("consistency-{run}-{h}"));
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let backend = kv_etcd::EtcdConfig::from_url(&url)?
            .with_request_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        handles.push(Kv::new(backend));
    }
    let workload = workload
        .clone()
        .with_op_timeout(FAULT_OP_TIMEOUT)
        .with_lagging_eventual_reads(true);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let recording = async {
        let history = record(handles, &workload).await;
        let _ = stop.send(());
        history
    };
    let (history, kills) = tokio::join!(
        recording,
        inject_leader_kills(cluster, workload.seed, stopped)
    );
    Ok((history?, kills?))
}

/// Writes a history with violations to `dir/<target>-<n>.jsonl` (one
/// operation per line, as `wire` writes them), for a closer look.
fn dump(
    dir: &Path,
    target: &str,
    n: usize,
    history: &crate::History,
) -> Result<(), ConsistencyError> {
    let path = dir.join(format!("{target}-{n}.jsonl"));
    let mut text = String::new();
    for op in &history.ops {
        text.push_str(&crate::wire::to_line(op));
        text.push('\n');
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|source| ConsistencyError::Io {
            what: format!("write {}", path.display()),
            source,
        })
}

/// The client configuration under faults: no retries (a retried commit
/// could apply twice) and a 2 s timeout.
pub fn fault_client(url: &str, token: &str) -> kv_remote::RemoteConfig {
    kv_remote::RemoteConfig::new(url, token)
        .with_max_retries(0)
        .with_timeout(Duration::from_secs(2))
}

/// Connects a [`fault_client`], retrying for up to 10 s: the server may be
/// down for a restart when a client starts.
///
/// # Errors
/// The last error, when no attempt succeeded.
pub async fn connect_retrying(url: &str, token: &str) -> Result<Kv, ConsistencyError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fault_client(url, token).connect().await {
            Ok(client) => return Ok(Kv::new(client)),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// How long a client under faults waits for a call before it records an
/// unknown outcome.
pub const FAULT_OP_TIMEOUT: Duration = Duration::from_secs(3);

async fn serve_faults(
    bin: &Path,
    client_bin: Option<&PathBuf>,
    path: &Path,
    clients: usize,
    workload: &Workload,
) -> Result<(crate::History, FaultCounts), ConsistencyError> {
    let mut server = KvServe::start(bin, path, TOKEN).await?;
    let proxy = Proxy::start(server.addr()).await?;
    let url = format!("http://{}", proxy.addr());
    let workload = workload.clone().with_op_timeout(FAULT_OP_TIMEOUT);
    let mut handles = Vec::new();
    if client_bin.is_none() {
        for _ in 0..clients {
            handles.push(connect_retrying(&url, TOKEN).await?);
        }
    }
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let recording = async {
        let history = match client_bin {
            Some(bin) => record_processes(bin, &url, TOKEN, clients, &workload).await,
            None => record(handles, &workload).await,
        };
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

/// Records one history of `clients` client processes against the KV
/// Connect server at `url`: opens the bank from this process, then runs
/// `client_bin client …` once per client (each with its own connection,
/// configured by [`fault_client`]) and merges the operations they print.
/// Every process times operations with [`Clock::system`], one clock for
/// the whole machine.
///
/// # Errors
/// When the bank cannot be opened, a client cannot be started, exits with
/// an error, or prints a line that is not an operation.
pub async fn record_processes(
    client_bin: &Path,
    url: &str,
    token: &str,
    clients: usize,
    workload: &Workload,
) -> Result<crate::History, ConsistencyError> {
    let clock = Clock::system();
    let mut history = workload.empty_history();
    let opener = connect_retrying(url, token).await?;
    history
        .ops
        .extend(open_bank(&opener, workload, clock).await?);
    let timeout_ms = workload.op_timeout.as_millis().to_string();
    let mut waits = Vec::with_capacity(clients);
    for id in 0..clients {
        let child = tokio::process::Command::new(client_bin)
            .arg("client")
            .args(["--url", url, "--token", token])
            .args(["--id", &id.to_string()])
            .args(["--seed", &workload.seed.to_string()])
            .args(["--ops", &workload.ops_per_client.to_string()])
            .args(["--op-timeout-ms", &timeout_ms])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ConsistencyError::Io {
                what: format!("start client {id} ({})", client_bin.display()),
                source,
            })?;
        // Each output is read as it comes, so no client blocks on a full pipe.
        waits.push(tokio::spawn(child.wait_with_output()));
    }
    for (id, wait) in waits.into_iter().enumerate() {
        let output = wait
            .await
            .expect("waiting for a child does not panic")
            .map_err(|source| ConsistencyError::Io {
                what: format!("wait for client {id}"),
                source,
            })?;
        if !output.status.success() {
            return Err(ConsistencyError::Client(format!(
                "client {id} exited with {}",
                output.status
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            history
                .ops
                .push(from_line(line).map_err(|e| ConsistencyError::Client(e.to_string()))?);
        }
    }
    opener.close().await;
    Ok(history)
}

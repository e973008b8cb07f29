//! Faults while recording: a `kv serve` process killed with SIGKILL and
//! restarted on the same file and port, a TCP proxy in front of it that
//! drops every open connection, and [`SlowBackend`], a slow disk. Calls in
//! flight during a fault fail or time out, and their commits get unknown
//! outcomes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kv::Backend;
use kv::backend::{
    AtomicWrite, CommitOutcome, Consistency, RawEntry, ReadRange, ReadSink, WatchStream,
};
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::{AbortHandle, JoinHandle};

use crate::ConsistencyError;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ConsistencyError {
    let what = what.into();
    move |source| ConsistencyError::Io { what, source }
}

/// A `kv serve` child process over one SQLite file.
#[derive(Debug)]
pub struct KvServe {
    bin: PathBuf,
    path: PathBuf,
    addr: SocketAddr,
    token: String,
    child: Option<Child>,
}

impl KvServe {
    /// Starts `bin serve --path path` on a free loopback port and waits until
    /// it accepts connections.
    ///
    /// # Errors
    /// When the process cannot be started or does not listen within 10 s.
    pub async fn start(bin: &Path, path: &Path, token: &str) -> Result<Self, ConsistencyError> {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("pick a port"))?;
        let addr = probe.local_addr().map_err(io("pick a port"))?;
        drop(probe);
        let mut server = KvServe {
            bin: bin.to_path_buf(),
            path: path.to_path_buf(),
            addr,
            token: token.to_owned(),
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn spawn(&mut self) -> Result<(), ConsistencyError> {
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--path")
            .arg(&self.path)
            .arg("--addr")
            .arg(self.addr.to_string())
            .arg("--access-token")
            .arg(&self.token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start {}", self.bin.display())))?;
        self.child = Some(child);
        for _ in 0..1000 {
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(ConsistencyError::ServerStart(format!(
                    "exited with {status}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(ConsistencyError::ServerStart(format!(
            "not listening on {} after 10 s",
            self.addr
        )))
    }

    /// Kills the process with SIGKILL and waits for it to die.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub async fn kill9(&mut self) -> Result<(), ConsistencyError> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.map_err(io("kill -9 kv serve"))?;
        }
        Ok(())
    }

    /// Starts the process again on the same file and port.
    ///
    /// # Errors
    /// As [`KvServe::start`].
    pub async fn restart(&mut self) -> Result<(), ConsistencyError> {
        self.kill9().await?;
        self.spawn().await
    }
}

/// A TCP proxy whose open connections can all be cut at once.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: SocketAddr) -> Result<Self, ConsistencyError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind the proxy"))?;
        let addr = listener.local_addr().map_err(io("bind the proxy"))?;
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let conns = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = conns.lock().expect("the proxy's lock is never poisoned");
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        });
        Ok(Proxy {
            addr,
            connections,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every open connection (both directions, mid-request or not).
    pub fn drop_connections(&self) {
        let conns = std::mem::take(
            &mut *self
                .connections
                .lock()
                .expect("the proxy's lock is never poisoned"),
        );
        for c in conns {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// `kill -9` and restart of `kv serve`.
    pub kills: usize,
    /// All connections dropped by the proxy.
    pub drops: usize,
    /// Slow-disk stalls.
    pub stalls: usize,
    /// etcd leaders killed with SIGKILL (and restarted).
    pub leader_kills: usize,
}

impl FaultCounts {
    /// Every fault of every kind.
    pub fn total(&self) -> usize {
        self.kills + self.drops + self.stalls + self.leader_kills
    }
}

/// Injects faults every 40–160 ms until `stop` resolves: a SIGKILL and
/// restart of `server`, or a drop of every connection through `proxy`.
///
/// # Errors
/// When the server cannot be restarted.
pub async fn inject(
    server: &mut KvServe,
    proxy: &Proxy,
    seed: u64,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<FaultCounts, ConsistencyError> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut counts = FaultCounts::default();
    tokio::pin!(stop);
    loop {
        let wait = Duration::from_millis(rng.gen_range(40..160));
        tokio::select! {
            _ = &mut stop => return Ok(counts),
            () = tokio::time::sleep(wait) => {}
        }
        if rng.gen_bool(0.5) {
            server.restart().await?;
            counts.kills += 1;
        } else {
            proxy.drop_connections();
            counts.drops += 1;
        }
    }
}

/// A slow disk, simulated around a backend: reads and commits wait a
/// random moment before and after the inner call (each side one time in
/// four), and now and then stall for much longer. A stall after a commit widens the window between
/// applying and acknowledging it, so the client's timeout fires on commits
/// that did apply (unknown outcomes the checkers must place); a stall before
/// one cancels it unapplied.
#[derive(Debug)]
pub struct SlowBackend {
    inner: Arc<dyn Backend>,
    max_delay: Duration,
    stall: Duration,
    /// Stalls per 1,000 calls, each before or after the inner call.
    stalls_per_mille: u32,
    rng: Mutex<rand::rngs::StdRng>,
    stalls: AtomicUsize,
}

impl SlowBackend {
    /// Delays of up to 2 ms on a quarter of the sides of calls, and stalls
    /// of 200 ms on 1 call in 200.
    pub fn new(inner: Arc<dyn Backend>, seed: u64) -> Self {
        use rand::SeedableRng;
        SlowBackend {
            inner,
            max_delay: Duration::from_millis(2),
            stall: Duration::from_millis(200),
            stalls_per_mille: 5,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            stalls: AtomicUsize::new(0),
        }
    }

    /// Waits up to `max` on a quarter of the sides of calls.
    pub fn with_max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Stalls for `stall` on `per_mille` calls in 1,000.
    pub fn with_stalls(mut self, stall: Duration, per_mille: u32) -> Self {
        self.stall = stall;
        self.stalls_per_mille = per_mille;
        self
    }

    /// How many stalls were injected so far.
    pub fn stalls(&self) -> usize {
        self.stalls.load(Ordering::Relaxed)
    }

    /// The waits before and after one call.
    fn delays(&self) -> (Duration, Duration) {
        let mut rng = self.rng.lock().expect("the rng's lock is never poisoned");
        let max = u64::try_from(self.max_delay.as_micros()).unwrap_or(u64::MAX);
        // Most calls go straight through: a timer sleeps at least a
        // millisecond, and a delay on every call would make the run slow
        // without making it any more varied.
        let mut delay = || {
            if rng.gen_ratio(1, 4) {
                Duration::from_micros(rng.gen_range(0..=max))
            } else {
                Duration::ZERO
            }
        };
        let (mut before, mut after) = (delay(), delay());
        if rng.gen_ratio(self.stalls_per_mille.min(1000), 1000) {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            if rng.gen_bool(0.5) {
                before += self.stall;
            } else {
                after += self.stall;
            }
        }
        (before, after)
    }
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for SlowBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> kv::Result<Vec<Vec<RawEntry>>> {
        let (before, after) = self.delays();
        pause(before).await;
        let result = self.inner.snapshot_read(ranges, consistency).await;
        pause(after).await;
        result
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
        sink: Box<dyn ReadSink>,
    ) -> kv::Result<Box<dyn ReadSink>> {
        let (before, after) = self.delays();
        pause(before).await;
        let result = self
            .inner
            .snapshot_read_into(ranges, consistency, sink)
            .await;
        pause(after).await;
        result
    }

    async fn atomic_write(&self, write: AtomicWrite) -> kv::Result<CommitOutcome> {
        let (before, after) = self.delays();
        pause(before).await;
        let result = self.inner.atomic_write(write).await;
        pause(after).await;
        result
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.inner.watch(keys)
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

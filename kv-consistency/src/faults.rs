//! Faults while recording: a `kv serve` process killed with SIGKILL and
//! restarted on the same file and port, and a TCP proxy in front of it that
//! drops every open connection. Calls in flight during a fault fail or time
//! out, and their commits get unknown outcomes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

/// Injects faults every 100–400 ms until `stop` resolves: a SIGKILL and
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
        let wait = Duration::from_millis(rng.gen_range(100..400));
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
